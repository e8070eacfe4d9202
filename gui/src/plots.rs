//! Plots with egui_plot: how the tokens of a generation spread over one layer's experts
//! (baseline beside steered), and a loaded ranking's top experts.

use eframe::egui::{Color32, Ui};
use egui_plot::{Bar, BarChart, Legend, Plot};

use crate::ranking::Ranking;
use crate::run_view::RunView;

/// Share of tokens per expert at `layer` (the first MoE layer when none is selected).
pub fn load_plot(
    ui: &mut Ui,
    baseline: Option<&RunView>,
    steered: Option<&RunView>,
    layer: Option<usize>,
) {
    let Some(base) = baseline else {
        ui.weak("generate to see the expert load");
        return;
    };
    let layer = layer.or_else(|| base.layers.first().copied()).unwrap_or(0);
    ui.label(format!("expert load at layer {layer} (share of tokens)"));
    let bars = |v: &RunView, offset: f64| -> Vec<Bar> {
        let Some(slot) = v.slot_of(layer) else {
            return Vec::new();
        };
        v.load()[slot]
            .iter()
            .enumerate()
            .map(|(e, &s)| Bar::new(e as f64 + offset, s).width(0.4))
            .collect()
    };
    let base_chart =
        BarChart::new("baseline", bars(base, -0.2)).color(Color32::from_rgb(90, 150, 220));
    let steered_chart = steered
        .map(|s| BarChart::new("steered", bars(s, 0.2)).color(Color32::from_rgb(230, 140, 60)));
    Plot::new("load plot")
        .height(180.0)
        .legend(Legend::default())
        .allow_scroll(false)
        .show(ui, |p| {
            p.bar_chart(base_chart);
            if let Some(c) = steered_chart {
                p.bar_chart(c);
            }
        });
}

/// The ranking's first 15 experts as bars of the selected score.
pub fn ranking_plot(ui: &mut Ui, ranking: &Ranking) {
    let column = &ranking.columns[ranking.selected];
    ui.label(format!("top experts by {column}"));
    let bars: Vec<Bar> = ranking
        .top(15)
        .into_iter()
        .enumerate()
        .map(|(i, ((l, e), v))| {
            Bar::new(i as f64, if v.is_finite() { v } else { 0.0 })
                .name(format!("L{l}:E{e}"))
                .width(0.7)
        })
        .collect();
    Plot::new("ranking plot")
        .height(180.0)
        .allow_scroll(false)
        .show(ui, |p| p.bar_chart(BarChart::new(column.clone(), bars)));
}
