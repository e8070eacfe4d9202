//! The outputs: the baseline and steered text with where they diverge, and the routing heatmap of a run.

use eframe::egui::{self, Color32, Ui};

use crate::forcing_view::forcing_view;
use crate::heatmap::{routing_heatmap, HeatColour};
use crate::run_view::first_divergence;
use crate::snapshot::View;
use crate::state::MoescopeApp;
use crate::worker::Which;

/// Draws one section of the main view.
type Section = fn(&mut MoescopeApp, &mut Ui);

impl MoescopeApp {
    pub(crate) fn main_view(&mut self, ui: &mut Ui) {
        egui::CollapsingHeader::new("Output")
            .default_open(true)
            .show(ui, |ui| self.outputs(ui));
        let sections: [(&str, View, Section); 3] = [
            ("Routing", View::Heatmap, Self::routing),
            ("Experts", View::Grid, Self::experts),
            ("Plots", View::Plots, Self::plots),
        ];
        for (title, view, draw) in sections {
            let shown = egui::CollapsingHeader::new(title)
                .default_open(true)
                .show(ui, |ui| draw(self, ui));
            match shown.body_response {
                Some(body) => self.view_rects.insert(view, body.rect),
                None => self.view_rects.remove(&view),
            };
        }
    }

    /// Says when the shown result is not a generation from the current controls: a recorded
    /// sequence, or a run whose prompt, settings or steering have changed since.
    pub(crate) fn result_banner(&self, ui: &mut Ui) {
        let warn = ui.visuals().warn_fg_color;
        if let Some(seq) = self.browsing {
            let folder = self
                .recording
                .as_ref()
                .map(|r| r.dir.display().to_string())
                .unwrap_or_default();
            ui.colored_label(
                warn,
                format!("showing recorded sequence {seq} of {folder}, not a generation"),
            );
        } else if let (Some(basis), false) = (&self.run_basis, self.busy) {
            let changed = basis.changed(&self.current_basis());
            if !changed.is_empty() {
                ui.colored_label(
                    warn,
                    format!(
                        "stale: the {} changed since this run; Generate to update",
                        changed.join(" and ")
                    ),
                );
            }
        }
    }

    pub(crate) fn outputs(&mut self, ui: &mut Ui) {
        self.result_banner(ui);
        let base_tokens = self
            .baseline
            .as_ref()
            .map(|b| b.output_tokens.clone())
            .unwrap_or_default();
        ui.columns(2, |cols| {
            cols[0].strong("baseline");
            match &self.baseline {
                Some(b) => {
                    cols[0].label(&b.output);
                }
                None => {
                    cols[0].label(&self.partial.0);
                }
            }
            cols[1].strong("steered");
            match &self.steered {
                Some(s) => {
                    let divergence = first_divergence(&base_tokens, &s.output_tokens);
                    let from = divergence.unwrap_or(usize::MAX);
                    let mut job = egui::text::LayoutJob::default();
                    let font = egui::TextStyle::Body.resolve(cols[1].style());
                    let normal = cols[1].visuals().text_color();
                    for (i, t) in s.output_tokens.iter().enumerate() {
                        let mut format = egui::TextFormat::simple(font.clone(), normal);
                        if i >= from {
                            // The first divergent token strongly, all after it as changed:
                            // they follow a different text, whatever they coincide with.
                            format.background = if i == from {
                                Color32::from_rgb(170, 40, 20)
                            } else {
                                Color32::from_rgb(120, 60, 0)
                            };
                            format.color = Color32::WHITE;
                        }
                        job.append(t, 0.0, format);
                    }
                    cols[1].label(job).on_hover_text(
                        "from the first token that differs from the baseline (red), the text is \
                         highlighted",
                    );
                    let note = match divergence {
                        None => "same tokens as the baseline".to_string(),
                        Some(d) => {
                            let quote = |v: &[String]| {
                                v.get(d).map_or("(ended)".to_string(), |t| format!("{t:?}"))
                            };
                            format!(
                                "first divergence at generated token {d}: baseline {}, steered {}",
                                quote(&base_tokens),
                                quote(&s.output_tokens)
                            )
                        }
                    };
                    cols[1].small(note);
                }
                None if self.steering.is_empty() => {
                    cols[1].weak("steer some experts to compare");
                }
                None => {
                    cols[1].label(&self.partial.1);
                }
            }
        });
        if let (Some(forced), Some(b)) = (&self.forced, &self.baseline) {
            let moe_layers = b.layers.len();
            forcing_view(ui, forced, &b.output_tokens, moe_layers);
        }
    }

    pub(crate) fn routing(&mut self, ui: &mut Ui) {
        ui.horizontal_wrapped(|ui| {
            ui.radio_value(&mut self.heat_run, Which::Baseline, "baseline");
            ui.add_enabled_ui(self.steered.is_some(), |ui| {
                ui.radio_value(
                    &mut self.heat_run,
                    Which::Steered,
                    "steered (changes outlined)",
                );
            });
            ui.separator();
            ui.radio_value(
                &mut self.heat_colour,
                HeatColour::Expert,
                "colour by first expert",
            );
            ui.radio_value(
                &mut self.heat_colour,
                HeatColour::SelectedWeight,
                "weight of selected expert",
            );
            ui.separator();
            if ui.button("Save heatmap PNG…").clicked() {
                self.export_png(ui.ctx(), View::Heatmap);
            }
        });
        let (view, reference) = match (self.heat_run, &self.baseline, &self.steered) {
            (Which::Steered, b, Some(s)) => (Some(s), b.as_ref()),
            (_, b, _) => (b.as_ref(), None),
        };
        let Some(view) = view else {
            ui.weak("generate to see which experts each token goes to");
            return;
        };
        let clicked = routing_heatmap(
            ui,
            &mut self.heat_view,
            view,
            reference,
            self.heat_colour,
            self.selected,
        );
        if clicked.is_some() {
            self.selected = clicked;
        }
    }
}
