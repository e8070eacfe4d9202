//! Teacher forcing, drawn: the baseline's tokens coloured by how the steering changed their
//! log-probability, and under them, token by token, the change in log-probability beside the
//! number of MoE layers whose routing the steering changed at the position that predicts the
//! token — so a drop in probability can be read against the rerouting behind it.

use eframe::egui::{self, Color32, Rect, Sense, Stroke, Ui};

use moescope_workbench::forcing::{ForcedToken, Rerouting};

use crate::colors::{diverging, text_on};

/// Width of one token's column in the lined-up chart, in points.
const COLUMN: f32 = 10.0;
/// Height of each of the chart's two rows.
const ROW: f32 = 14.0;

/// The summary line, the coloured token strip and the lined-up chart of `forced` (one entry
/// per baseline token in `tokens`; the model has `moe_layers` MoE layers).
pub fn forcing_view(ui: &mut Ui, forced: &[ForcedToken], tokens: &[String], moe_layers: usize) {
    ui.small(summary(forced, tokens, moe_layers));
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().item_spacing.x = 0.0;
        for (i, t) in forced.iter().enumerate() {
            let text = tokens.get(i).map_or("?", String::as_str);
            let background = diverging(t.delta() / 2.0);
            let mut label = egui::RichText::new(text)
                .background_color(background)
                .color(text_on(background));
            if !t.rerouted.is_empty() {
                label = label.underline();
            }
            ui.label(label).on_hover_text(details(i, t, text));
        }
    });
    lined_up(ui, forced, tokens, moe_layers);
}

/// One line that sums the effect up: mean Δlog-prob and KL, the largest drop, and how often
/// the routing changed.
fn summary(forced: &[ForcedToken], tokens: &[String], moe_layers: usize) -> String {
    let n = forced.len().max(1) as f64;
    let mean_delta = forced.iter().map(ForcedToken::delta).sum::<f64>() / n;
    let mean_kl = forced.iter().map(|t| t.kl).sum::<f64>() / n;
    let rerouted = forced.iter().filter(|t| !t.rerouted.is_empty()).count();
    let layers: usize = forced.iter().map(|t| t.rerouted.len()).sum();
    let mut line = format!(
        "teacher forcing (the baseline's {} tokens through the steered model): mean Δlog-prob \
         {mean_delta:+.3}, mean KL {mean_kl:.3} nats; routing changed before {rerouted} of {} \
         tokens ({:.1} of {moe_layers} MoE layers on average, underlined)",
        forced.len(),
        forced.len(),
        layers as f64 / n,
    );
    let worst = forced
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.delta().total_cmp(&b.1.delta()));
    if let Some((i, t)) = worst {
        let text = tokens.get(i).map_or(String::new(), |s| format!(" {s:?}"));
        line.push_str(&format!(
            "; largest drop at token {i}{text} ({:+.2})",
            t.delta()
        ));
    }
    line
}

/// The hover text of token `i`: its two log-probabilities, the KL, and each rerouted layer.
fn details(i: usize, t: &ForcedToken, text: &str) -> String {
    let mut out = format!(
        "token {i} {text:?}: log p baseline {:.3}, steered {:.3} (Δ {:+.3}); KL {:.4} nats",
        t.baseline_logprob,
        t.steered_logprob,
        t.delta(),
        t.kl
    );
    if t.rerouted.is_empty() {
        out.push_str("\nrouting before it: unchanged");
    } else {
        out.push_str(&format!(
            "\nrouting before it changed at {} layers:",
            t.rerouted.len()
        ));
        for r in &t.rerouted {
            out.push_str(&format!("\n  {}", rerouting_text(r)));
        }
    }
    out
}

/// `L5: −E15 +E3`.
pub fn rerouting_text(r: &Rerouting) -> String {
    let ids = |sign: char, ids: &[u32]| -> Vec<String> {
        ids.iter().map(|e| format!("{sign}E{e}")).collect()
    };
    let mut parts = ids('−', &r.removed);
    parts.extend(ids('+', &r.added));
    format!("L{}: {}", r.layer, parts.join(" "))
}

/// Two rows of one column per token: Δlog-prob (coloured as the strip) and the share of MoE
/// layers rerouted (grey, darker is more), scrolled sideways when the tokens do not fit.
fn lined_up(ui: &mut Ui, forced: &[ForcedToken], tokens: &[String], moe_layers: usize) {
    ui.horizontal(|ui| {
        ui.vertical(|ui| {
            ui.add_sized(
                [70.0, ROW],
                egui::Label::new(egui::RichText::new("Δlog-prob").small()),
            );
            ui.add_sized(
                [70.0, ROW],
                egui::Label::new(egui::RichText::new("rerouted").small()),
            );
        });
        egui::ScrollArea::horizontal()
            .id_salt("forcing chart")
            .show(ui, |ui| {
                let size = egui::vec2(COLUMN * forced.len() as f32, 2.0 * ROW + 2.0);
                let (rect, response) = ui.allocate_exact_size(size, Sense::hover());
                let painter = ui.painter_at(rect);
                let layers = moe_layers.max(1) as f32;
                for (i, t) in forced.iter().enumerate() {
                    let x = rect.left() + COLUMN * i as f32;
                    let top = Rect::from_min_size(
                        egui::pos2(x, rect.top()),
                        egui::vec2(COLUMN - 1.0, ROW),
                    );
                    painter.rect_filled(top, 0.0, diverging(t.delta() / 2.0));
                    let share = t.rerouted.len() as f32 / layers;
                    let grey = (235.0 - 200.0 * share.clamp(0.0, 1.0)) as u8;
                    let bottom = top.translate(egui::vec2(0.0, ROW + 2.0));
                    painter.rect_filled(bottom, 0.0, Color32::from_gray(grey));
                    if !t.rerouted.is_empty() {
                        painter.rect_stroke(
                            bottom,
                            0.0,
                            Stroke::new(1.0, Color32::from_gray(60)),
                            egui::StrokeKind::Inside,
                        );
                    }
                }
                if let Some(pos) = response.hover_pos() {
                    let i = ((pos.x - rect.left()) / COLUMN) as usize;
                    if let Some(t) = forced.get(i) {
                        let text = tokens.get(i).map_or("?", String::as_str);
                        response.on_hover_text_at_pointer(details(i, t, text));
                    }
                }
            });
    });
}
