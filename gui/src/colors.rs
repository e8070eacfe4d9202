//! Colours shared by the heatmap and the grid: one hue per expert, and value scales.

use eframe::egui::Color32;

/// A distinct colour per expert id (hues spaced by the golden angle).
pub fn expert_color(expert: u32) -> Color32 {
    let hue = (expert as f32 * 0.618_034).fract();
    hsv(hue, 0.55, 0.85)
}

/// A sequential scale for values in [0, 1]: dark to bright.
pub fn sequential(t: f64) -> Color32 {
    if !t.is_finite() {
        return Color32::from_gray(40);
    }
    let t = t.clamp(0.0, 1.0) as f32;
    hsv(0.58 - 0.45 * t, 0.75, 0.2 + 0.75 * t)
}

/// A diverging scale for values in [-1, 1]: blue for negative, red for positive.
pub fn diverging(t: f64) -> Color32 {
    if !t.is_finite() {
        return Color32::from_gray(40);
    }
    let t = t.clamp(-1.0, 1.0) as f32;
    let hue = if t >= 0.0 { 0.0 } else { 0.6 };
    hsv(hue, t.abs() * 0.85, 0.25 + 0.7 * t.abs())
}

/// Black or white, whichever reads better on `background`.
pub fn text_on(background: Color32) -> Color32 {
    let [r, g, b, _] = background.to_array();
    let luma = 0.299 * f32::from(r) + 0.587 * f32::from(g) + 0.114 * f32::from(b);
    if luma > 140.0 {
        Color32::BLACK
    } else {
        Color32::WHITE
    }
}

/// How values map to colour strength.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScaleKind {
    /// Full colour at the largest |value|: one outlier washes every other cell dark.
    Linear,
    /// Full colour at the 99th percentile of |value|; the few cells above it saturate.
    #[default]
    Robust,
    /// Colour by log10 |value| over the three decades below the largest.
    Log,
}

impl ScaleKind {
    /// Every kind, for a picker.
    pub const ALL: [Self; 3] = [Self::Linear, Self::Robust, Self::Log];

    /// The name shown in the picker and the legend.
    pub fn name(self) -> &'static str {
        match self {
            Self::Linear => "linear",
            Self::Robust => "robust (p99)",
            Self::Log => "log",
        }
    }
}

/// A value-to-colour scale fitted to the values on show, and what the legend says about it.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueScale {
    /// How values map to strength.
    pub kind: ScaleKind,
    /// Diverging around 0 (signed values) or sequential from 0.
    pub signed: bool,
    /// The |value| that gets full colour.
    pub full: f64,
    /// How many values lie above `full` (saturated).
    pub saturated: usize,
}

/// Decades below the largest value that the log scale spans.
const LOG_DECADES: f64 = 3.0;

impl ValueScale {
    /// Fits `kind` to `values` (non-finite ones ignored).
    pub fn fit(values: impl IntoIterator<Item = f64>, signed: bool, kind: ScaleKind) -> Self {
        let mut magnitudes: Vec<f64> = values
            .into_iter()
            .filter(|v| v.is_finite())
            .map(f64::abs)
            .collect();
        magnitudes.sort_unstable_by(f64::total_cmp);
        let max = magnitudes.last().copied().unwrap_or(0.0);
        let full = match kind {
            ScaleKind::Robust if !magnitudes.is_empty() => {
                let p99 = magnitudes[(magnitudes.len() - 1) * 99 / 100];
                if p99 > 0.0 {
                    p99
                } else {
                    max
                }
            }
            _ => max,
        };
        let saturated = magnitudes.iter().filter(|&&m| m > full).count();
        Self {
            kind,
            signed,
            full,
            saturated,
        }
    }

    /// The strength of `value` in [-1, 1] (in [0, 1] when unsigned); NaN stays NaN.
    pub fn strength(&self, value: f64) -> f64 {
        if !value.is_finite() || self.full <= 0.0 {
            return if value.is_finite() { 0.0 } else { f64::NAN };
        }
        let magnitude = match self.kind {
            ScaleKind::Linear | ScaleKind::Robust => value.abs() / self.full,
            ScaleKind::Log if value == 0.0 => 0.0,
            ScaleKind::Log => 1.0 + (value.abs() / self.full).log10() / LOG_DECADES,
        };
        magnitude.clamp(0.0, 1.0).copysign(value)
    }

    /// The colour of `value`.
    pub fn color(&self, value: f64) -> Color32 {
        let t = self.strength(value);
        if self.signed {
            diverging(t)
        } else {
            sequential(t)
        }
    }

    /// What the legend says: the kind, the value at full colour, what saturates.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "{} scale, full colour at {}",
            self.kind.name(),
            short(self.full)
        );
        if self.signed {
            text = format!("{text} (red positive, blue negative)");
        }
        if self.kind == ScaleKind::Log {
            text.push_str(&format!(", dark below {}", short(self.full / 1e3)));
        }
        if self.saturated > 0 {
            text.push_str(&format!("; {} above it saturate", self.saturated));
        }
        text
    }
}

/// A number in four significant digits.
fn short(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-3 || v.abs() >= 1e4) {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}

fn hsv(h: f32, s: f32, v: f32) -> Color32 {
    let i = (h * 6.0).floor();
    let f = h * 6.0 - i;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - f * s), v * (1.0 - (1.0 - f) * s));
    let (r, g, b) = match (i as i32).rem_euclid(6) {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    };
    let byte = |x: f32| (x.clamp(0.0, 1.0) * 255.0).round() as u8;
    Color32::from_rgb(byte(r), byte(g), byte(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_stay_in_range_and_experts_differ() {
        assert_ne!(expert_color(0), expert_color(1));
        assert_eq!(sequential(f64::NAN), Color32::from_gray(40));
        assert_eq!(sequential(2.0), sequential(1.0));
        assert_ne!(diverging(0.8), diverging(-0.8));
        assert_eq!(text_on(Color32::WHITE), Color32::BLACK);
        assert_eq!(text_on(Color32::BLACK), Color32::WHITE);
    }

    #[test]
    fn a_robust_scale_is_not_washed_out_by_one_outlier() {
        let mut values: Vec<f64> = (0..200).map(|i| f64::from(i) / 200.0).collect();
        values.push(1_000.0);
        values.push(f64::NAN);
        let linear = ValueScale::fit(values.iter().copied(), false, ScaleKind::Linear);
        let robust = ValueScale::fit(values.iter().copied(), false, ScaleKind::Robust);
        assert_eq!(linear.full, 1_000.0);
        assert!(linear.strength(0.5) < 0.001);
        assert!(robust.full < 1.0 && robust.full > 0.9, "{}", robust.full);
        assert!(robust.strength(0.5) > 0.5);
        assert_eq!(robust.strength(1_000.0), 1.0);
        assert_eq!(robust.saturated, 2, "{}", robust.describe());
        assert!(robust.describe().contains("robust"));
        assert!(robust.strength(f64::NAN).is_nan());
    }

    #[test]
    fn a_log_scale_spans_three_decades_and_keeps_the_sign() {
        let s = ValueScale::fit([-10.0, 0.01, 1.0], true, ScaleKind::Log);
        assert_eq!(s.full, 10.0);
        assert_eq!(s.strength(-10.0), -1.0);
        assert!((s.strength(0.1) - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(s.strength(0.001), 0.0);
        assert_eq!(s.strength(0.0), 0.0);
        assert!(s.describe().contains("log"));
        let empty = ValueScale::fit([], false, ScaleKind::Robust);
        assert_eq!(empty.strength(3.0), 0.0);
    }
}
