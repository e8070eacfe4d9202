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
}
