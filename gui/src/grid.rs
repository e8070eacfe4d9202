//! The layer × expert grid: one cell per routed expert, coloured by a statistic (its share of
//! tokens on the current prompt, or a loaded ranking's score), marked when steered. It scales
//! to real models (61 layers × 256 experts) through [`matrix_view`](crate::matrix_view): it
//! pans and zooms, keeps the layer and expert labels in view, shows each layer's top expert
//! beside its label, a colour legend that names the scale, and can dim all but the top N cells.
//! Cells are named `L{layer}:E{expert}`, so tests (and screen readers) find experts by name.

use eframe::egui::{self, pos2, vec2, Align2, Color32, Painter, Rect, Ui};
use moescope_engine::InterventionKind;

use crate::colors::{text_on, ScaleKind, ValueScale};
use crate::matrix_view::{self, CellMarks, MatrixContent, MatrixFrame, MatrixState};
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

/// The grid's view settings, kept across frames.
#[derive(Debug, Clone, PartialEq)]
pub struct GridView {
    /// Zoom and scroll.
    pub matrix: MatrixState,
    /// How values map to colour.
    pub scale: ScaleKind,
    /// Show only the N largest |values| in colour (0: all).
    pub top_n: usize,
    /// The selection last brought into view, so a new one (from the heatmap, a ranking or
    /// the inspector) scrolls the grid to it once.
    revealed: Option<(usize, usize)>,
}

impl Default for GridView {
    fn default() -> Self {
        Self {
            matrix: MatrixState::new(CELL),
            scale: ScaleKind::default(),
            top_n: 0,
            revealed: None,
        }
    }
}

/// Default cell edge, in points.
const CELL: f32 = 24.0;
/// Width of the label band: the layer and its top expert.
const LABEL_W: f32 = 104.0;
const HEADER_H: f32 = 16.0;
/// Height a row label needs; at smaller zooms every 2nd, 4th, … row is labelled.
const ROW_LABEL_H: f32 = 12.0;
/// Cells smaller than this carry no steering letter.
const MARK_MIN_CELL: f32 = 12.0;

/// Draws the controls, the grid and its legend; returns the (layer, expert) clicked.
pub fn expert_grid(
    ui: &mut Ui,
    view: &mut GridView,
    grid: &GridValues<'_>,
    steering: &SteeringList,
    selected: Option<(usize, usize)>,
) -> Option<(usize, usize)> {
    controls(ui, view);
    let scale = ValueScale::fit(
        grid.values.iter().flatten().copied(),
        grid.signed,
        view.scale,
    );
    let content = GridContent {
        grid,
        scale: &scale,
        steering,
        selected,
        threshold: top_n_threshold(grid, view.top_n),
        cell: view.matrix.cell,
    };
    if selected != view.revealed {
        view.revealed = selected;
        if let Some((layer, expert)) = selected {
            if let Some(slot) = grid.layers.iter().position(|&l| l == layer) {
                view.matrix.reveal = Some((slot, expert));
            }
        }
    }
    let frame = MatrixFrame {
        id: "expert grid",
        label_width: LABEL_W,
        header_height: HEADER_H,
        max_height: 460.0,
    };
    let out = matrix_view::show(ui, frame, &mut view.matrix, &content);
    legend(ui, &scale);
    out.clicked
        .map(|(slot, expert)| (grid.layers[slot], expert))
}

fn controls(ui: &mut Ui, view: &mut GridView) {
    ui.horizontal(|ui| {
        egui::ComboBox::from_label("colour scale")
            .selected_text(view.scale.name())
            .show_ui(ui, |ui| {
                for kind in ScaleKind::ALL {
                    ui.selectable_value(&mut view.scale, kind, kind.name());
                }
            });
        ui.separator();
        ui.label("top N only");
        ui.add(egui::DragValue::new(&mut view.top_n).range(0..=100_000))
            .on_hover_text("colour only the N largest values (0: all)");
        ui.separator();
        ui.label("zoom");
        ui.add(
            egui::Slider::new(
                &mut view.matrix.cell,
                matrix_view::MIN_CELL..=matrix_view::MAX_CELL,
            )
            .show_value(false),
        )
        .on_hover_text("or Ctrl+wheel, + and - over the grid; arrows pan, 0 resets");
    });
}

/// The |value| a cell needs to be among the `n` largest (0: no filter).
fn top_n_threshold(grid: &GridValues<'_>, n: usize) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let mut magnitudes: Vec<f64> = grid
        .values
        .iter()
        .flatten()
        .filter(|v| v.is_finite())
        .map(|v| v.abs())
        .collect();
    if n > magnitudes.len() {
        return 0.0;
    }
    let (_, nth, _) = magnitudes.select_nth_unstable_by(n - 1, |a, b| b.total_cmp(a));
    *nth
}

struct GridContent<'a> {
    grid: &'a GridValues<'a>,
    scale: &'a ValueScale,
    steering: &'a SteeringList,
    selected: Option<(usize, usize)>,
    threshold: f64,
    cell: f32,
}

impl GridContent<'_> {
    fn value(&self, slot: usize, expert: usize) -> f64 {
        self.grid
            .values
            .get(slot)
            .and_then(|row| row.get(expert))
            .copied()
            .unwrap_or(f64::NAN)
    }

    /// The layer's expert with the largest |value|.
    fn top_of(&self, slot: usize) -> Option<(usize, f64)> {
        self.grid
            .values
            .get(slot)?
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
    }
}

impl MatrixContent for GridContent<'_> {
    fn rows(&self) -> usize {
        self.grid.layers.len()
    }

    fn cols(&self) -> usize {
        self.grid.values.first().map_or(0, Vec::len)
    }

    fn cell_fill(&self, slot: usize, expert: usize) -> Color32 {
        let v = self.value(slot, expert);
        if v.is_finite() && v.abs() < self.threshold {
            Color32::from_gray(30)
        } else {
            self.scale.color(v)
        }
    }

    fn paint_cell_mark(
        &self,
        marks: &mut CellMarks<'_>,
        rect: Rect,
        slot: usize,
        expert: usize,
        fill: Color32,
    ) {
        let layer = self.grid.layers[slot];
        if let Some(steered) = self.steering.on_expert(layer, expert) {
            if self.cell >= MARK_MIN_CELL {
                let mark = match steered.kind {
                    InterventionKind::Mask | InterventionKind::SoftDeactivate => "M",
                    InterventionKind::Force | InterventionKind::SoftActivate => "F",
                    _ => "S",
                };
                let colour = text_on(fill);
                marks.painter.text(
                    rect.center(),
                    Align2::CENTER_CENTER,
                    mark,
                    matrix_view::label_font(),
                    colour,
                );
            } else {
                marks.outline(rect, 1.0, Color32::WHITE);
            }
        }
        if self.selected == Some((layer, expert)) {
            marks.outline(rect.expand(1.0), 2.0, Color32::YELLOW);
        }
    }

    fn paint_row_label(&self, painter: &Painter, rect: Rect, slot: usize) {
        if !slot.is_multiple_of(matrix_view::label_stride(self.cell, ROW_LABEL_H)) {
            return;
        }
        let color = painter.ctx().global_style().visuals.text_color();
        let at = pos2(rect.left() + 2.0, rect.center().y);
        painter.text(
            at,
            Align2::LEFT_CENTER,
            format!("L{}", self.grid.layers[slot]),
            matrix_view::label_font(),
            color,
        );
        if let Some((expert, v)) = self.top_of(slot) {
            let at = pos2(rect.right() - 4.0, rect.center().y);
            let text = format!("E{expert} {}", compact(v));
            painter.text(
                at,
                Align2::RIGHT_CENTER,
                text,
                matrix_view::label_font(),
                self.scale.color(v),
            );
        }
    }

    fn paint_col_label(&self, painter: &Painter, rect: Rect, expert: usize) {
        // Label every expert when there is room, else every 2nd, 4th, … so labels do not
        // overlap.
        if expert.is_multiple_of(matrix_view::label_stride(self.cell, 22.0)) {
            let color = painter.ctx().global_style().visuals.text_color();
            let at = pos2(rect.left() + rect.width().min(22.0) / 2.0, rect.center().y);
            painter.text(
                at,
                Align2::CENTER_CENTER,
                expert,
                matrix_view::label_font(),
                color,
            );
        }
    }

    fn cell_name(&self, slot: usize, expert: usize) -> String {
        format!("L{}:E{expert}", self.grid.layers[slot])
    }

    fn row_name(&self, slot: usize) -> String {
        let layer = self.grid.layers[slot];
        match self.top_of(slot) {
            Some((e, v)) => format!("layer {layer}: top expert {e} ({})", compact(v)),
            None => format!("layer {layer}"),
        }
    }

    fn hover_text(&self, slot: usize, expert: usize) -> String {
        let v = self.value(slot, expert);
        let value = if v.is_finite() {
            format!("{v:.4}")
        } else {
            "—".into()
        };
        let layer = self.grid.layers[slot];
        let mut text = format!(
            "layer {layer}, expert {expert}\n{}: {value}",
            self.grid.name
        );
        if let Some(i) = self.steering.on_expert(layer, expert) {
            text.push_str(&format!("\nsteered: {:?}", i.kind));
        }
        text
    }
}

/// A value in at most six characters, for the label band.
fn compact(v: f64) -> String {
    if v != 0.0 && v.abs() < 0.01 {
        format!("{v:.0e}")
    } else {
        format!("{v:.3}")
    }
}

/// A colour bar from the scale's negative (or zero) end to its full colour, with the scale's
/// description.
pub fn legend(ui: &mut Ui, scale: &ValueScale) {
    ui.horizontal(|ui| {
        let (rect, _) = ui.allocate_exact_size(vec2(160.0, 12.0), egui::Sense::hover());
        let steps = 32;
        let painter = ui.painter_at(rect);
        for i in 0..steps {
            let t = (i as f64 + 0.5) / steps as f64;
            let t = if scale.signed { 2.0 * t - 1.0 } else { t };
            let x0 = rect.left() + rect.width() * i as f32 / steps as f32;
            let cell = Rect::from_min_max(
                pos2(x0, rect.top()),
                pos2(x0 + rect.width() / steps as f32 + 0.5, rect.bottom()),
            );
            let colour = if scale.signed {
                crate::colors::diverging(t)
            } else {
                crate::colors::sequential(t)
            };
            painter.rect_filled(cell, 0.0, colour);
        }
        ui.small(scale.describe());
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_n_threshold_is_the_nth_largest_magnitude() {
        let layers = [0, 1];
        let grid = GridValues {
            name: "score",
            layers: &layers,
            values: vec![vec![0.1, -0.9, f64::NAN], vec![0.5, 0.3, -0.2]],
            signed: true,
        };
        assert_eq!(top_n_threshold(&grid, 0), 0.0);
        assert_eq!(top_n_threshold(&grid, 1), 0.9);
        assert_eq!(top_n_threshold(&grid, 2), 0.5);
        assert_eq!(top_n_threshold(&grid, 5), 0.1);
        // More than there are finite values: no filter.
        assert_eq!(top_n_threshold(&grid, 6), 0.0);
    }
}
