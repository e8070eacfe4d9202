//! The expert inspector: one expert's numbers, its top tokens in a recording, and the controls that steer it.

use eframe::egui::{self, RichText, Ui};
use moescope_engine::InterventionKind;

use crate::state::MoescopeApp;
use crate::steering::describe;
use crate::worker::Job;

impl MoescopeApp {
    pub(crate) fn inspector(&mut self, ui: &mut Ui) {
        ui.strong("Expert inspector");
        let Some((layer, expert)) = self.selected else {
            ui.weak("click an expert in the grid or a cell of the heatmap");
            return;
        };
        ui.heading(format!("layer {layer}, expert {expert}"));
        for (name, run) in [("baseline", &self.baseline), ("steered", &self.steered)] {
            if let Some(v) = run {
                if let Some(slot) = v.slot_of(layer) {
                    let hits = v.positions_of(slot, expert as u32);
                    let mean = if hits.is_empty() {
                        String::new()
                    } else {
                        let m =
                            hits.iter().map(|h| f64::from(h.1)).sum::<f64>() / hits.len() as f64;
                        format!(", mean weight {m:.3}")
                    };
                    ui.label(format!(
                        "{name}: {} of {} tokens{mean}",
                        hits.len(),
                        v.positions()
                    ));
                }
            }
        }
        if let Some(r) = &self.ranking {
            if let Some(vals) = r.values.get(&(layer, expert)) {
                egui::Grid::new("ranking values")
                    .striped(true)
                    .show(ui, |ui| {
                        for (c, v) in r.columns.iter().zip(vals) {
                            ui.label(c);
                            ui.label(format!("{v:.4}"));
                            ui.end_row();
                        }
                    });
            }
        }
        if let Some(v) = &self.baseline {
            if let Some(slot) = v.slot_of(layer) {
                let tokens: Vec<String> = v
                    .positions_of(slot, expert as u32)
                    .into_iter()
                    .map(|(p, w)| format!("{:?} ({w:.2})", v.tokens[p]))
                    .collect();
                ui.label("tokens routed here (baseline):");
                ui.label(RichText::new(tokens.join("  ")).monospace().small());
            }
        }
        if let Some(rec) = self.recording.clone() {
            let enabled = !self.busy;
            if ui
                .add_enabled(enabled, egui::Button::new("Top tokens in recording"))
                .clicked()
                && self.worker.submit(Job::TopTokens(rec, layer, expert))
            {
                self.busy = true;
                self.set_status("counting tokens in the recording …", false);
            }
            if let Some((key, tokens)) = &self.top_tokens {
                if *key == (layer, expert) {
                    egui::Grid::new("top tokens").striped(true).show(ui, |ui| {
                        for (t, n) in tokens {
                            ui.label(RichText::new(format!("{t:?}")).monospace());
                            ui.label(n.to_string());
                            ui.end_row();
                        }
                    });
                }
            }
        }
        ui.separator();
        if let Some(i) = self.steering.on_expert(layer, expert) {
            ui.label(format!("steered: {}", describe(i)));
        }
        ui.horizontal(|ui| {
            if ui
                .button("Mask")
                .on_hover_text("never route to this expert")
                .clicked()
            {
                self.steering
                    .set(layer, expert, InterventionKind::Mask, None);
            }
            if ui
                .button("Force")
                .on_hover_text("always route to this expert")
                .clicked()
            {
                self.steering
                    .set(layer, expert, InterventionKind::Force, None);
            }
            if ui.button("Unsteer").clicked() {
                self.steering.remove_expert(layer, expert);
            }
        });
        ui.horizontal(|ui| {
            ui.add(egui::Slider::new(&mut self.scale_value, 0.0..=4.0).text("×"));
            if ui
                .button("Scale")
                .on_hover_text("multiply its mixing weight")
                .clicked()
            {
                self.steering.set(
                    layer,
                    expert,
                    InterventionKind::Scale,
                    Some(self.scale_value),
                );
            }
        });
        ui.horizontal(|ui| {
            ui.add(egui::Slider::new(&mut self.bias_value, -10.0..=10.0).text("bias"));
            if ui
                .button("Bias")
                .on_hover_text("add to its router logit")
                .clicked()
            {
                self.steering.set(
                    layer,
                    expert,
                    InterventionKind::LogitBias,
                    Some(self.bias_value),
                );
            }
        });
    }
}
