//! Plots of expert rankings, as SVG (no font files needed): a layer × expert heatmap of one
//! statistic and a bar chart of the top-ranked experts.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::{AnalysisError, Result};
use crate::output::OutputSet;

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

/// Draws an SVG of `size` with `draw` and stages it as `path` in `set` (drawn in memory, so
/// a failing disk reads as a failed write).
fn svg_file(
    set: &mut OutputSet,
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(DrawingArea<SVGBackend, Shift>) -> Result<()>,
) -> Result<()> {
    let mut svg = String::new();
    draw(SVGBackend::with_string(&mut svg, size).into_drawing_area())?;
    set.text(path, &svg)
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
pub fn heatmap(
    set: &mut OutputSet,
    path: &Path,
    title: &str,
    cells: &[Cell],
    signed: bool,
) -> Result<()> {
    let layers = cells.iter().map(|c| c.layer + 1).max().unwrap_or(1);
    let experts = cells.iter().map(|c| c.expert + 1).max().unwrap_or(1);
    let finite = cells.iter().map(|c| c.value).filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    let width = (120 + experts * 18).clamp(480, 2400);
    let height = (110 + layers * 22).clamp(240, 1800);
    svg_file(set, path, (width, height), |root| {
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
pub fn ranked_bars(
    set: &mut OutputSet,
    path: &Path,
    title: &str,
    bars: &[(String, f64)],
) -> Result<()> {
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
    svg_file(set, path, (720, height), |root| {
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

/// One line of a sweep plot: a value with its interval at each x.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// `(x, value, low, high)`, x ascending.
    pub points: Vec<(f64, f64, f64, f64)>,
}

/// Draws lines with interval bars against x (e.g. behaviour rate against the number of
/// experts steered), with an optional dashed horizontal reference (the unsteered value).
pub fn sweep_plot(
    set: &mut OutputSet,
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    reference: Option<(String, f64)>,
) -> Result<()> {
    let all = series.iter().flat_map(|s| s.points.iter());
    let xs: Vec<f64> = all.clone().map(|p| p.0).collect();
    let ys: Vec<f64> = all
        .flat_map(|p| [p.1, p.2, p.3])
        .chain(reference.iter().map(|r| r.1))
        .filter(|v| v.is_finite())
        .collect();
    let (x0, x1) = xs
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let (y0, y1) = ys
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let (x0, x1) = if x0.is_finite() { (x0, x1) } else { (0.0, 1.0) };
    let (y0, y1) = if y0.is_finite() { (y0, y1) } else { (0.0, 1.0) };
    let (xp, yp) = (((x1 - x0) * 0.06).max(0.5), ((y1 - y0) * 0.08).max(1e-3));
    const PALETTE: [RGBColor; 4] = [
        RGBColor(178, 24, 43),
        RGBColor(90, 90, 90),
        RGBColor(33, 102, 172),
        RGBColor(27, 120, 55),
    ];
    svg_file(set, path, (720, 440), |root| {
        root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(14)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d((x0 - xp)..(x1 + xp), (y0 - yp)..(y1 + yp))
            .map_err(|e| plot_err(path, e))?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .draw()
            .map_err(|e| plot_err(path, e))?;
        if let Some((name, y)) = &reference {
            let grey = RGBColor(120, 120, 120);
            chart
                .draw_series(DashedLineSeries::new(
                    [(x0 - xp, *y), (x1 + xp, *y)],
                    6,
                    4,
                    grey.stroke_width(1),
                ))
                .map_err(|e| plot_err(path, e))?
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], grey));
        }
        for (i, s) in series.iter().enumerate() {
            let c = PALETTE[i % PALETTE.len()];
            let pts: Vec<_> = s.points.iter().filter(|p| p.1.is_finite()).collect();
            chart
                .draw_series(LineSeries::new(
                    pts.iter().map(|p| (p.0, p.1)),
                    c.stroke_width(2),
                ))
                .map_err(|e| plot_err(path, e))?
                .label(s.name.as_str())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], c.stroke_width(2)));
            chart
                .draw_series(
                    pts.iter()
                        .filter(|p| p.2.is_finite() && p.3.is_finite())
                        .map(|p| ErrorBar::new_vertical(p.0, p.2, p.1, p.3, c.filled(), 8)),
                )
                .map_err(|e| plot_err(path, e))?;
            chart
                .draw_series(pts.iter().map(|p| Circle::new((p.0, p.1), 3, c.filled())))
                .map_err(|e| plot_err(path, e))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| plot_err(path, e))?;
        root.present().map_err(|e| plot_err(path, e))?;
        Ok(())
    })
}
