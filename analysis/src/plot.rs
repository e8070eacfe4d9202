//! Plots of expert rankings, as SVG (no font files needed): a layer × expert heatmap of one
//! statistic and a bar chart of the top-ranked experts.

use std::path::Path;

use plotters::prelude::*;

use crate::error::{AnalysisError, Result};
use crate::table::write_atomically;

/// One cell of a layer × expert grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cell {
    /// Decoder layer.
    pub layer: u32,
    /// Expert id.
    pub expert: u32,
    /// The statistic (NaN: no value, drawn grey).
    pub value: f64,
}

fn plot_err(path: &Path, e: impl std::fmt::Display) -> AnalysisError {
    AnalysisError::records(path, format!("cannot draw the plot: {e}"))
}

/// Colour of `v` on a scale: diverging blue–white–red around 0 when `signed`, else white–red
/// from `lo` to `hi`.
fn colour(v: f64, lo: f64, hi: f64, signed: bool) -> RGBColor {
    if v.is_nan() {
        return RGBColor(200, 200, 200);
    }
    let mix = |t: f64, to: (u8, u8, u8)| {
        let t = t.clamp(0.0, 1.0);
        let c = |a: u8| (255.0 + (f64::from(a) - 255.0) * t).round() as u8;
        RGBColor(c(to.0), c(to.1), c(to.2))
    };
    if signed {
        let m = lo.abs().max(hi.abs()).max(1e-12);
        if v >= 0.0 {
            mix(v / m, (178, 24, 43))
        } else {
            mix(-v / m, (33, 102, 172))
        }
    } else {
        mix((v - lo) / (hi - lo).max(1e-12), (178, 24, 43))
    }
}

/// Draws a heatmap of `cells` with layers on the vertical axis and experts on the horizontal.
pub fn heatmap(path: &Path, title: &str, cells: &[Cell], signed: bool) -> Result<()> {
    let layers = cells.iter().map(|c| c.layer + 1).max().unwrap_or(1);
    let experts = cells.iter().map(|c| c.expert + 1).max().unwrap_or(1);
    let finite = cells.iter().map(|c| c.value).filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    let width = (120 + experts * 18).clamp(480, 2400);
    let height = (110 + layers * 22).clamp(240, 1800);
    write_atomically(path, |tmp| {
        let root = SVGBackend::new(tmp, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
        let caption = format!("{title}  (scale {lo:.3} … {hi:.3})");
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(44)
            .build_cartesian_2d(0u32..experts, 0u32..layers)
            .map_err(|e| plot_err(path, e))?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("expert")
            .y_desc("layer")
            .x_labels(experts.min(32) as usize)
            .y_labels(layers.min(40) as usize)
            .draw()
            .map_err(|e| plot_err(path, e))?;
        chart
            .draw_series(cells.iter().map(|c| {
                Rectangle::new(
                    [(c.expert, c.layer), (c.expert + 1, c.layer + 1)],
                    colour(c.value, lo, hi, signed).filled(),
                )
            }))
            .map_err(|e| plot_err(path, e))?;
        root.present().map_err(|e| plot_err(path, e))?;
        Ok(())
    })
}

/// Draws a horizontal bar chart of labelled values, in the given order (best first).
pub fn ranked_bars(path: &Path, title: &str, bars: &[(String, f64)]) -> Result<()> {
    let n = bars.len().max(1);
    let lo = bars
        .iter()
        .map(|b| b.1)
        .filter(|v| v.is_finite())
        .fold(0.0, f64::min);
    let hi = bars
        .iter()
        .map(|b| b.1)
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let pad = ((hi - lo) * 0.05).max(1e-9);
    let height = (90 + n * 22).clamp(200, 1600) as u32;
    write_atomically(path, |tmp| {
        let root = SVGBackend::new(tmp, (720, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(90)
            .build_cartesian_2d((lo - pad)..(hi + pad), 0..n)
            .map_err(|e| plot_err(path, e))?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&|i: &usize| {
                bars.get(n.saturating_sub(i + 1))
                    .map(|b| b.0.clone())
                    .unwrap_or_default()
            })
            .draw()
            .map_err(|e| plot_err(path, e))?;
        chart
            .draw_series(
                bars.iter()
                    .enumerate()
                    .filter(|(_, b)| b.1.is_finite())
                    .map(|(i, b)| {
                        let y = n - i - 1;
                        let colour = if b.1 >= 0.0 {
                            RGBColor(178, 24, 43)
                        } else {
                            RGBColor(33, 102, 172)
                        };
                        Rectangle::new([(0.0, y), (b.1, y + 1)], colour.filled())
                    }),
            )
            .map_err(|e| plot_err(path, e))?;
        root.present().map_err(|e| plot_err(path, e))?;
        Ok(())
    })
}
