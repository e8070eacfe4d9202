//! The layer × expert grid: one cell per routed expert, coloured by a statistic (its share of
//! tokens on the current prompt, or a loaded ranking's score), marked when steered. Each cell
//! is a widget named `L{layer}:E{expert}`, so clicking (and tests) select experts by name.

use eframe::egui::{self, vec2, Align2, Color32, FontId, Sense, Stroke, StrokeKind, Ui};
use moescope_engine::InterventionKind;

use crate::colors::{diverging, sequential, text_on};
use crate::steering::SteeringList;

/// Values to colour by: `values[slot][expert]` for MoE layers `layers`.
pub struct GridValues<'a> {
    /// What the values are, for hover text.
    pub name: &'a str,
    /// Decoder index of each row.
    pub layers: &'a [usize],
    /// One row per MoE layer.
    pub values: Vec<Vec<f64>>,
    /// Signed values get a diverging scale around 0; unsigned a sequential one from 0.
    pub signed: bool,
}

const CELL: f32 = 26.0;

/// Draws the grid; returns the (layer, expert) clicked.
pub fn expert_grid(
    ui: &mut Ui,
    grid: &GridValues<'_>,
    steering: &SteeringList,
    selected: Option<(usize, usize)>,
) -> Option<(usize, usize)> {
    let max = grid
        .values
        .iter()
        .flatten()
        .filter(|v| v.is_finite())
        .fold(0f64, |m, v| m.max(v.abs()));
    let scale = |v: f64| {
        if max == 0.0 {
            sequential(0.0)
        } else if grid.signed {
            diverging(v / max)
        } else {
            sequential(v / max)
        }
    };
    let font = FontId::monospace(10.0);
    let mut clicked = None;
    ui.horizontal(|ui| {
        ui.add_space(34.0);
        let experts = grid.values.first().map_or(0, Vec::len);
        for e in 0..experts {
            let (r, _) = ui.allocate_exact_size(vec2(CELL, 14.0), Sense::hover());
            ui.painter().text(
                r.center(),
                Align2::CENTER_CENTER,
                e,
                font.clone(),
                ui.visuals().text_color(),
            );
        }
    });
    for (slot, &layer) in grid.layers.iter().enumerate() {
        ui.horizontal(|ui| {
            ui.add_sized(vec2(30.0, CELL), egui::Label::new(format!("L{layer}")));
            let row = grid.values.get(slot).cloned().unwrap_or_default();
            for (expert, &v) in row.iter().enumerate() {
                let (r, resp) = ui.allocate_exact_size(vec2(CELL, CELL), Sense::click());
                let name = format!("L{layer}:E{expert}");
                resp.widget_info(|| {
                    egui::WidgetInfo::labeled(egui::Role::Button, true, name.clone())
                });
                let fill = scale(v);
                let cell = r.shrink(1.0);
                ui.painter().rect_filled(cell, 2.0, fill);
                let mark = steering.on_expert(layer, expert).map(|i| match i.kind {
                    InterventionKind::Mask | InterventionKind::SoftDeactivate => "M",
                    InterventionKind::Force | InterventionKind::SoftActivate => "F",
                    _ => "S",
                });
                if let Some(m) = mark {
                    ui.painter().text(
                        cell.center(),
                        Align2::CENTER_CENTER,
                        m,
                        font.clone(),
                        text_on(fill),
                    );
                }
                if selected == Some((layer, expert)) {
                    ui.painter().rect_stroke(
                        cell,
                        2.0,
                        Stroke::new(2.0, Color32::YELLOW),
                        StrokeKind::Inside,
                    );
                } else if resp.hovered() {
                    ui.painter().rect_stroke(
                        cell,
                        2.0,
                        Stroke::new(1.0, Color32::WHITE),
                        StrokeKind::Inside,
                    );
                }
                let value = if v.is_finite() {
                    format!("{v:.4}")
                } else {
                    "—".into()
                };
                let resp = resp.on_hover_text(format!(
                    "layer {layer}, expert {expert}\n{}: {value}",
                    grid.name
                ));
                if resp.clicked() {
                    clicked = Some((layer, expert));
                }
            }
        });
    }
    clicked
}
