//! PNG export of a view exactly as it is drawn: the window's next frame is captured (egui's
//! screenshot command), the view's rectangle cut out of it, and the file written whole or not
//! at all (staged, then renamed, as every moescope output).

use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::Arc;

use eframe::egui::{ColorImage, Context, Rect};
use moescope_analysis::error::AnalysisError;
use moescope_analysis::OutputSet;

use crate::error::{GuiError, Result};

/// The views that export as PNG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum View {
    /// The tokens × layers routing heatmap.
    Heatmap,
    /// The layer × expert grid.
    Grid,
    /// The load and ranking plots.
    Plots,
}

impl View {
    /// Its name in messages and default file names.
    pub fn name(self) -> &'static str {
        match self {
            View::Heatmap => "heatmap",
            View::Grid => "grid",
            View::Plots => "plots",
        }
    }
}

/// What a finished export reports: the file written, or why not.
pub type ShotResult = std::result::Result<PathBuf, String>;

/// Asks for a screenshot of the next frame and, when it arrives, writes the part inside
/// `rect` (in points) to `path`, reports on `done` and calls `wake`.
pub fn request(
    ctx: &Context,
    rect: Rect,
    path: PathBuf,
    done: Sender<ShotResult>,
    wake: Arc<dyn Fn() + Send + Sync>,
) {
    let pixels_per_point = ctx.pixels_per_point();
    ctx.request_screenshot(move |image| {
        let written = write_png(&image, rect, pixels_per_point, &path)
            .map(|()| path.clone())
            .map_err(|e| e.to_string());
        let _ = done.send(written);
        wake();
    });
}

/// The pixels of `image` inside `rect` (points, `pixels_per_point` pixels each), clipped to
/// the image; `None` when nothing of it is inside.
pub fn crop(image: &ColorImage, rect: Rect, pixels_per_point: f32) -> Option<ColorImage> {
    let [w, h] = image.size;
    let px = |v: f32, max: usize| ((v * pixels_per_point).round().max(0.0) as usize).min(max);
    let (x0, x1) = (px(rect.min.x, w), px(rect.max.x, w));
    let (y0, y1) = (px(rect.min.y, h), px(rect.max.y, h));
    if x1 <= x0 || y1 <= y0 {
        return None;
    }
    let pixels = (y0..y1)
        .flat_map(|y| image.pixels[y * w + x0..y * w + x1].iter().copied())
        .collect();
    Some(ColorImage::new([x1 - x0, y1 - y0], pixels))
}

/// Writes the part of `image` inside `rect` as an 8-bit RGBA PNG at `path`.
pub fn write_png(image: &ColorImage, rect: Rect, pixels_per_point: f32, path: &Path) -> Result<()> {
    let cut = crop(image, rect, pixels_per_point).ok_or_else(|| {
        GuiError::Input(format!(
            "{}: the view is not on screen; scroll it into the window and export again",
            path.display()
        ))
    })?;
    let rgba: Vec<u8> = cut.pixels.iter().flat_map(|c| c.to_array()).collect();
    let [w, h] = cut.size;
    let mut encoded = Vec::new();
    let mut encoder = png::Encoder::new(&mut encoded, w as u32, h as u32);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    encoder
        .write_header()
        .and_then(|mut writer| writer.write_image_data(&rgba))
        .map_err(|e| GuiError::Input(format!("{}: cannot encode the PNG: {e}", path.display())))?;
    let mut set = OutputSet::new();
    set.write(path, |staged| {
        std::fs::write(staged, &encoded).map_err(|error| AnalysisError::Write {
            path: path.to_path_buf(),
            error,
        })
    })?;
    set.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use eframe::egui::{pos2, Color32};

    fn image() -> ColorImage {
        // 8 × 4 pixels, each holding its own x in red and y in green.
        let pixels = (0..4)
            .flat_map(|y| (0..8).map(move |x| Color32::from_rgb(x, y, 0)))
            .collect();
        ColorImage::new([8, 4], pixels)
    }

    #[test]
    fn crops_the_rectangle_in_pixels_and_clips_it_to_the_image() {
        let cut = crop(
            &image(),
            Rect::from_min_max(pos2(1.0, 0.5), pos2(3.0, 1.5)),
            2.0,
        )
        .unwrap();
        assert_eq!(cut.size, [4, 2]);
        assert_eq!(cut.pixels[0], Color32::from_rgb(2, 1, 0));
        assert_eq!(cut.pixels[7], Color32::from_rgb(5, 2, 0));
        let clipped = crop(
            &image(),
            Rect::from_min_max(pos2(6.0, 3.0), pos2(20.0, 9.0)),
            1.0,
        )
        .unwrap();
        assert_eq!(clipped.size, [2, 1]);
        assert!(crop(
            &image(),
            Rect::from_min_max(pos2(9.0, 0.0), pos2(12.0, 2.0)),
            1.0
        )
        .is_none());
    }

    #[test]
    fn writes_a_png_that_reads_back_and_refuses_an_offscreen_view() {
        let dir = std::env::temp_dir().join(format!("moescope-png-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("view.png");
        let rect = Rect::from_min_max(pos2(2.0, 1.0), pos2(7.0, 4.0));
        write_png(&image(), rect, 1.0, &path).unwrap();
        let decoder =
            png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (5, 3));
        assert_eq!(&buf[..4], &[2, 1, 0, 255]);
        let off = Rect::from_min_max(pos2(50.0, 50.0), pos2(60.0, 60.0));
        let err = write_png(&image(), off, 1.0, &dir.join("none.png")).unwrap_err();
        assert!(err.to_string().contains("not on screen"), "{err}");
        assert!(!dir.join("none.png").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
