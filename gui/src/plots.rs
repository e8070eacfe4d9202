//! Plots with egui_plot: how the tokens of a generation spread over one layer's experts
//! (baseline beside steered), and a loaded ranking's top experts.

use eframe::egui::{Align2, Color32, RichText, Ui};
use egui_plot::{Bar, BarChart, GridMark, Legend, Plot, PlotPoint, Text};

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

/// The ranking's highest-scoring experts (up to 15, as many as the width gives room to label)
/// as bars of the selected score, highest first, each labelled `L{layer}:E{expert}` over its
/// bar and under it. Returns the expert whose bar was clicked.
pub fn ranking_plot(ui: &mut Ui, ranking: &Ranking) -> Option<(usize, usize)> {
    let column = &ranking.columns[ranking.selected];
    ui.label(format!("top experts by {column} (click a bar to open it)"));
    // A label `L60:E255` takes about 56 points in the small font.
    let count = ((ui.available_width() / 56.0) as usize).clamp(5, 15);
    let top = ranking.top(count);
    let names: Vec<String> = top.iter().map(|((l, e), _)| format!("L{l}:E{e}")).collect();
    // Scores that are not finite are drawn as empty bars.
    let heights: Vec<f64> = top
        .iter()
        .map(|&(_, v)| if v.is_finite() { v } else { 0.0 })
        .collect();
    let labels: Vec<Text> = names
        .iter()
        .zip(&heights)
        .enumerate()
        .map(|(i, (name, &v))| {
            Text::new(
                name.clone(),
                PlotPoint::new(i as f64, v.max(0.0)),
                RichText::new(name.clone()).small(),
            )
            .anchor(Align2::CENTER_BOTTOM)
        })
        .collect();
    let bars: Vec<Bar> = names
        .iter()
        .zip(&heights)
        .enumerate()
        .map(|(i, (name, &v))| Bar::new(i as f64, v).name(name).width(0.7))
        .collect();
    let label = move |mark: GridMark, _: &std::ops::RangeInclusive<f64>| {
        let i = mark.value.round();
        if (mark.value - i).abs() > 1e-6 || i < 0.0 {
            return String::new();
        }
        names.get(i as usize).cloned().unwrap_or_default()
    };
    let shown = Plot::new("ranking plot")
        .height(180.0)
        .allow_scroll(false)
        .allow_drag(false)
        .allow_zoom(false)
        .x_axis_formatter(label)
        .x_grid_spacer(|input| {
            // One mark per bar.
            let (lo, hi) = input.bounds;
            (lo.ceil().max(0.0) as i64..=hi.floor() as i64)
                .map(|i| GridMark {
                    value: i as f64,
                    step_size: 1.0,
                })
                .collect()
        })
        .show(ui, |p| {
            p.bar_chart(BarChart::new(column.clone(), bars));
            for label in labels {
                p.text(label);
            }
            p.pointer_coordinate()
        });
    if !shown.response.clicked() {
        return None;
    }
    let at = shown.inner?;
    bar_at(at.x, top.len()).map(|i| top[i].0)
}

/// The bar (of `count`, centred on 0, 1, …, each 0.7 wide) under plot coordinate `x`.
fn bar_at(x: f64, count: usize) -> Option<usize> {
    let i = x.round();
    (i >= 0.0 && (x - i).abs() <= 0.35 && (i as usize) < count).then_some(i as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_click_finds_the_bar_under_it_and_none_between_bars() {
        assert_eq!(bar_at(0.0, 3), Some(0));
        assert_eq!(bar_at(1.3, 3), Some(1));
        assert_eq!(bar_at(1.5, 3), None);
        assert_eq!(bar_at(-0.2, 3), Some(0));
        assert_eq!(bar_at(-0.6, 3), None);
        assert_eq!(bar_at(3.0, 3), None);
    }
}
