//! The routing heatmap: one column per token, one row per MoE layer, each cell coloured by the
//! token's first-choice expert or by the weight a selected expert got there. Hovering shows the
//! token, the layer and every chosen expert with its weight; clicking selects the cell's first
//! expert. Cells whose choice differs from a reference run are outlined.

use std::f32::consts::FRAC_PI_2;

use eframe::egui::{
    self, pos2, vec2, Align2, Color32, FontId, Rect, Sense, Stroke, StrokeKind, Ui,
};

use crate::colors::{expert_color, sequential, text_on};
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

const CELL: f32 = 22.0;
const LABEL_W: f32 = 34.0;
const TOKEN_H: f32 = 70.0;

/// Draws the heatmap of `view`; outlines cells that differ from `reference`. Returns the
/// (decoder layer, expert) clicked, if any.
pub fn routing_heatmap(
    ui: &mut Ui,
    view: &RunView,
    reference: Option<&RunView>,
    colour: HeatColour,
    selected: Option<(usize, usize)>,
) -> Option<(usize, usize)> {
    let positions = view.positions();
    let size = vec2(
        LABEL_W + CELL * positions as f32,
        TOKEN_H + CELL * view.layers.len() as f32,
    );
    let (rect, response) = ui.allocate_exact_size(size, Sense::click());
    response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Image, true, "routing heatmap"));
    let painter = ui.painter_at(rect);
    let font = FontId::monospace(10.0);
    let text_color = ui.visuals().text_color();
    let cell_rect = |slot: usize, p: usize| {
        Rect::from_min_size(
            pos2(
                rect.left() + LABEL_W + CELL * p as f32,
                rect.top() + TOKEN_H + CELL * slot as f32,
            ),
            vec2(CELL - 1.0, CELL - 1.0),
        )
    };
    for (p, token) in view.tokens.iter().enumerate() {
        let shown: String = token.replace('\n', "\\n").chars().take(10).collect();
        let galley = painter.layout_no_wrap(shown, font.clone(), text_color);
        let at = pos2(
            rect.left() + LABEL_W + CELL * p as f32 + 4.0,
            rect.top() + TOKEN_H - 4.0,
        );
        painter.add(egui::epaint::TextShape::new(at, galley, text_color).with_angle(-FRAC_PI_2));
        if p == view.prompt_len && p > 0 {
            let x = rect.left() + LABEL_W + CELL * p as f32 - 1.0;
            painter.line_segment(
                [pos2(x, rect.top()), pos2(x, rect.bottom())],
                Stroke::new(2.0, ui.visuals().warn_fg_color),
            );
        }
    }
    for (slot, &layer) in view.layers.iter().enumerate() {
        painter.text(
            pos2(
                rect.left() + 2.0,
                rect.top() + TOKEN_H + CELL * (slot as f32 + 0.5),
            ),
            Align2::LEFT_CENTER,
            format!("L{layer}"),
            font.clone(),
            text_color,
        );
        let selected_here = selected.filter(|s| s.0 == layer).map(|s| s.1 as u32);
        for p in 0..positions {
            let choice = view.choice(slot, p);
            let fill = match colour {
                HeatColour::Expert => choice
                    .first()
                    .map_or(Color32::from_gray(40), |&(e, _)| expert_color(e)),
                HeatColour::SelectedWeight => {
                    let w =
                        selected_here.and_then(|s| choice.iter().find(|c| c.0 == s).map(|c| c.1));
                    sequential(f64::from(w.unwrap_or(0.0)))
                }
            };
            let r = cell_rect(slot, p);
            painter.rect_filled(r, 2.0, fill);
            if colour == HeatColour::Expert {
                if let Some(&(e, _)) = choice.first() {
                    painter.text(
                        r.center(),
                        Align2::CENTER_CENTER,
                        e,
                        font.clone(),
                        text_on(fill),
                    );
                }
            }
            let differs = reference.is_some_and(|base| {
                let mut a: Vec<u32> = base.choice(slot, p).iter().map(|c| c.0).collect();
                let mut b: Vec<u32> = choice.iter().map(|c| c.0).collect();
                a.sort_unstable();
                b.sort_unstable();
                a != b
            });
            if differs {
                painter.rect_stroke(r, 2.0, Stroke::new(2.0, Color32::WHITE), StrokeKind::Inside);
            }
        }
    }
    let hovered = response.hover_pos().and_then(|pos| {
        let p = ((pos.x - rect.left() - LABEL_W) / CELL).floor();
        let slot = ((pos.y - rect.top() - TOKEN_H) / CELL).floor();
        (p >= 0.0 && slot >= 0.0 && (p as usize) < positions && (slot as usize) < view.layers.len())
            .then_some((slot as usize, p as usize))
    });
    if let Some((slot, p)) = hovered {
        let choice = view.choice(slot, p);
        let part = if p < view.prompt_len {
            "prompt"
        } else {
            "generated"
        };
        let mut text = format!(
            "token {p} ({part}): {:?}\nlayer {}",
            view.tokens[p], view.layers[slot]
        );
        for (e, w) in &choice {
            text.push_str(&format!("\n  expert {e}: weight {w:.3}"));
        }
        response.clone().on_hover_text_at_pointer(text);
        if response.clicked() {
            return choice
                .first()
                .map(|&(e, _)| (view.layers[slot], e as usize));
        }
    }
    None
}
