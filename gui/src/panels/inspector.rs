//! The expert inspector: one expert's numbers, its page from a recording (label shares,
//! heaviest contexts, tokens against their frequency), and the controls that steer it.

use eframe::egui::{self, RichText, Ui};
use moescope_engine::InterventionKind;

use crate::ranking::Ranking;
use crate::recording::{one_line, ExpertPage};
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
            ranking_values(ui, r, (layer, expert), "ranking values");
        }
        let mut chosen = None;
        for (i, r) in self.earlier_rankings.iter().enumerate() {
            let name = r.path.file_name().map_or_else(
                || r.path.display().to_string(),
                |n| n.to_string_lossy().to_string(),
            );
            ui.horizontal(|ui| {
                ui.weak(format!("in {name}:"));
                if ui
                    .small_button("Use")
                    .on_hover_text(format!("colour the grid by {}", r.path.display()))
                    .clicked()
                {
                    chosen = Some(i);
                }
            });
            ranking_values(ui, r, (layer, expert), &format!("earlier ranking {i}"));
        }
        if let Some(i) = chosen {
            let r = self.earlier_rankings.remove(i);
            self.use_ranking(r);
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
                .add_enabled(enabled, egui::Button::new("Expert page from recording"))
                .on_hover_text("its tokens, its share of each label and its heaviest contexts")
                .clicked()
                && self
                    .worker
                    .submit(Job::ExpertPage(rec.clone(), layer, expert))
            {
                self.busy = true;
                self.set_status("reading the expert's page from the recording …", false);
            }
            let page = self
                .expert_page
                .as_ref()
                .filter(|p| p.key == (layer, expert))
                .cloned();
            if let Some(page) = page {
                if let Some(seq) = expert_page_view(ui, &page) {
                    if !self.busy && self.worker.submit(Job::Browse(rec, seq)) {
                        self.busy = true;
                        self.browsing = Some(seq);
                        self.set_status(format!("reading sequence {seq} …"), false);
                    }
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

/// Draws an expert's page: its share of each label's tokens, its heaviest contexts (the token
/// highlighted among its neighbours; a click opens the sequence) and the tokens it takes, each
/// against how often it occurs. Returns the sequence clicked, if any.
fn expert_page_view(ui: &mut Ui, page: &ExpertPage) -> Option<u32> {
    ui.label("share of each label's tokens:");
    egui::Grid::new("expert labels")
        .striped(true)
        .show(ui, |ui| {
            for l in &page.labels {
                ui.label(&l.label);
                ui.label(format!("{:.1}%", 100.0 * l.rate()));
                ui.label(RichText::new(format!("{} of {}", l.routed, l.tokens)).weak());
                ui.end_row();
            }
        });
    ui.label("heaviest contexts (click to open the sequence):");
    let mut clicked = None;
    let font = egui::TextStyle::Small.resolve(ui.style());
    let normal = ui.visuals().weak_text_color();
    let strong = ui.visuals().strong_text_color();
    for c in &page.contexts {
        let mut job = egui::text::LayoutJob::default();
        let plain = egui::TextFormat::simple(font.clone(), normal);
        job.append(&one_line(&c.before.concat()), 0.0, plain.clone());
        let mut mark = egui::TextFormat::simple(font.clone(), strong);
        mark.background = ui.visuals().selection.bg_fill;
        job.append(&one_line(&c.token), 0.0, mark);
        job.append(&one_line(&c.after.concat()), 0.0, plain);
        job.append(
            &format!("  {:.2} · seq {}", c.weight, c.seq_index),
            0.0,
            egui::TextFormat::simple(font.clone(), normal),
        );
        let response = ui.add(egui::Label::new(job).sense(egui::Sense::click()));
        if response.clicked() {
            clicked = Some(c.seq_index);
        }
    }
    ui.label("tokens taken (routed here / occurrences):");
    egui::Grid::new("expert tokens")
        .striped(true)
        .show(ui, |ui| {
            for t in &page.tokens {
                ui.label(RichText::new(format!("{:?}", t.text)).monospace());
                ui.label(format!("{} / {}", t.routed, t.seen));
                ui.label(format!("{:.0}%", 100.0 * t.rate()));
                ui.end_row();
            }
        });
    clicked
}

/// The expert's value in every column of `ranking` (nothing when it is not ranked there).
fn ranking_values(ui: &mut Ui, ranking: &Ranking, expert: (usize, usize), id: &str) {
    let Some(vals) = ranking.values.get(&expert) else {
        ui.weak("not ranked there");
        return;
    };
    egui::Grid::new(id).striped(true).show(ui, |ui| {
        for (c, v) in ranking.columns.iter().zip(vals) {
            ui.label(c);
            ui.label(format!("{v:.4}"));
            ui.end_row();
        }
    });
}
