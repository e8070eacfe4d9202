//! The routing heatmap: one column per token, one row per MoE layer, each cell coloured by the
//! token's first-choice expert or by the weight a selected expert got there. Hovering shows the
//! token, the layer and every chosen expert with its weight; clicking selects the cell's first
//! expert. Cells whose choice differs from a reference run are outlined (underlined when
//! small). Drawn with
//! [`matrix_view`](crate::matrix_view), so thousands of tokens pan and zoom with the token and
//! layer labels in view. Cells are named `t{position}:L{layer}`.

use std::f32::consts::FRAC_PI_2;

use eframe::egui::{self, pos2, Align2, Color32, Painter, Rect, Ui};

use crate::colors::{expert_color, sequential, text_on};
use crate::matrix_view::{self, CellMarks, MatrixContent, MatrixFrame, MatrixState};
use crate::run_view::RunView;

/// How cells are coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeatColour {
    /// By the first-choice expert's id.
    #[default]
    Expert,
    /// By the selected expert's weight (dark where it was not chosen).
    SelectedWeight,
}

/// The heatmap's view settings, kept across frames.
#[derive(Debug, Clone, PartialEq)]
pub struct HeatmapView {
    /// Zoom and scroll.
    pub matrix: MatrixState,
}

impl Default for HeatmapView {
    fn default() -> Self {
        Self {
            matrix: MatrixState::new(CELL),
        }
    }
}

const CELL: f32 = 22.0;
const LABEL_W: f32 = 34.0;
const TOKEN_H: f32 = 70.0;
/// Cells smaller than this carry no expert number.
const TEXT_MIN_CELL: f32 = 18.0;

/// Draws the heatmap of `view`; outlines cells that differ from `reference`. Returns the
/// (decoder layer, expert) clicked, if any.
pub fn routing_heatmap(
    ui: &mut Ui,
    state: &mut HeatmapView,
    view: &RunView,
    reference: Option<&RunView>,
    colour: HeatColour,
    selected: Option<(usize, usize)>,
) -> Option<(usize, usize)> {
    let content = HeatContent {
        view,
        reference,
        colour,
        selected,
        cell: state.matrix.cell,
        warn: ui.visuals().warn_fg_color,
    };
    let frame = MatrixFrame {
        id: "routing heatmap",
        label_width: LABEL_W,
        header_height: TOKEN_H,
        max_height: 420.0,
    };
    let out = matrix_view::show(ui, frame, &mut state.matrix, &content);
    ui.small(format!(
        "{} tokens ({} prompt) × {} MoE layers; showing tokens {}–{}; Ctrl+wheel or +/- zooms, \
         arrows pan",
        view.positions(),
        view.prompt_len,
        view.layers.len(),
        out.visible_cols.start,
        out.visible_cols.end.saturating_sub(1),
    ));
    let (slot, p) = out.clicked?;
    view.choice(slot, p)
        .first()
        .map(|&(e, _)| (view.layers[slot], e as usize))
}

struct HeatContent<'a> {
    view: &'a RunView,
    reference: Option<&'a RunView>,
    colour: HeatColour,
    selected: Option<(usize, usize)>,
    cell: f32,
    warn: Color32,
}

impl MatrixContent for HeatContent<'_> {
    fn rows(&self) -> usize {
        self.view.layers.len()
    }

    fn cols(&self) -> usize {
        self.view.positions()
    }

    fn cell_fill(&self, slot: usize, p: usize) -> Color32 {
        let choice = self.view.choice(slot, p);
        match self.colour {
            HeatColour::Expert => choice
                .first()
                .map_or(Color32::from_gray(40), |&(e, _)| expert_color(e)),
            HeatColour::SelectedWeight => {
                let layer = self.view.layers[slot];
                let w = self
                    .selected
                    .filter(|s| s.0 == layer)
                    .and_then(|s| choice.iter().find(|c| c.0 as usize == s.1))
                    .map(|c| c.1);
                sequential(f64::from(w.unwrap_or(0.0)))
            }
        }
    }

    fn paint_cell_mark(
        &self,
        marks: &mut CellMarks<'_>,
        rect: Rect,
        slot: usize,
        p: usize,
        fill: Color32,
    ) {
        let choice = self.view.choice(slot, p);
        if self.colour == HeatColour::Expert && self.cell >= TEXT_MIN_CELL {
            if let Some(&(e, _)) = choice.first() {
                let colour = text_on(fill);
                marks.painter.text(
                    rect.center(),
                    Align2::CENTER_CENTER,
                    e,
                    matrix_view::label_font(),
                    colour,
                );
            }
        }
        // The same set of experts, in any order (a token chooses an expert at most once).
        let differs = self.reference.is_some_and(|base| {
            let base = base.choice(slot, p);
            base.len() != choice.len() || !choice.iter().all(|c| base.iter().any(|b| b.0 == c.0))
        });
        if differs && self.cell >= 10.0 {
            marks.outline(rect, 2.0, Color32::WHITE);
        } else if differs {
            // Small cells are underlined: an outline would hide their colour.
            let line = Rect::from_min_max(pos2(rect.left(), rect.bottom() - 1.0), rect.max);
            marks.bar(line, Color32::WHITE);
        }
        if p == self.view.prompt_len && p > 0 {
            let x = rect.left();
            let bar = Rect::from_min_max(pos2(x - 1.5, rect.top()), pos2(x + 0.5, rect.bottom()));
            marks.bar(bar, self.warn);
        }
    }

    fn paint_row_label(&self, painter: &Painter, rect: Rect, slot: usize) {
        // A layer label needs 12 points of height; at smaller zooms every n-th is shown.
        if !slot.is_multiple_of(matrix_view::label_stride(self.cell, 12.0)) {
            return;
        }
        let color = painter.ctx().global_style().visuals.text_color();
        let at = pos2(rect.left() + 2.0, rect.center().y);
        let text = format!("L{}", self.view.layers[slot]);
        painter.text(
            at,
            Align2::LEFT_CENTER,
            text,
            matrix_view::label_font(),
            color,
        );
    }

    fn paint_col_label(&self, painter: &Painter, rect: Rect, p: usize) {
        // A token label needs about 11 points of width; at smaller zooms every n-th is shown.
        if !p.is_multiple_of(matrix_view::label_stride(self.cell, 11.0)) {
            return;
        }
        let color = if p < self.view.prompt_len {
            painter.ctx().global_style().visuals.text_color()
        } else {
            self.warn
        };
        let token = self.view.tokens.get(p).map_or("", String::as_str);
        let shown: String = token.replace('\n', "\\n").chars().take(10).collect();
        let galley = painter.layout_no_wrap(shown, matrix_view::label_font(), color);
        let at = pos2(
            rect.left() + (self.cell.min(22.0) - 12.0) / 2.0,
            rect.bottom() - 4.0,
        );
        painter.add(egui::epaint::TextShape::new(at, galley, color).with_angle(-FRAC_PI_2));
    }

    fn cell_name(&self, slot: usize, p: usize) -> String {
        format!("t{p}:L{}", self.view.layers[slot])
    }

    fn row_name(&self, slot: usize) -> String {
        format!("L{}", self.view.layers[slot])
    }

    fn hover_text(&self, slot: usize, p: usize) -> String {
        let view = self.view;
        let part = if p < view.prompt_len {
            "prompt"
        } else {
            "generated"
        };
        let mut text = format!(
            "token {p} ({part}): {:?}\nlayer {}",
            view.tokens.get(p).map_or("", String::as_str),
            view.layers[slot]
        );
        for &(e, w) in view.choice(slot, p) {
            text.push_str(&format!("\n  expert {e}: weight {w:.3}"));
        }
        text
    }
}
