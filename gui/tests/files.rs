//! The app's file dialogs and picture exports: each path field's "…" asks the desktop's dialog
//! (stood in for here by a picker that answers as a person would) and then acts as its button;
//! the heatmap, grid and plots save as PNG cut from the window's next frame.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use eframe::egui::{self, Color32, ColorImage};
use egui_kittest::kittest::Queryable;
use moescope_gui::file_dialog::{FilePicker, Pick, PickKind};

mod common;
use common::{embedded_model, harness, repo, wait_for};

/// Answers every dialog with a path by what it asks for, and remembers the titles asked.
#[derive(Clone, Default)]
struct Person {
    asked: Arc<Mutex<Vec<&'static str>>>,
    save_to: PathBuf,
}

impl FilePicker for Person {
    fn pick(&self, pick: &Pick, _current: &str) -> Option<PathBuf> {
        self.asked.lock().unwrap().push(pick.title);
        match pick.kind {
            PickKind::OpenFile(["jsonl"]) => Some(repo("datasets/examples/smoke.jsonl")),
            PickKind::OpenFile(_) => None,
            PickKind::OpenFolder => Some(embedded_model()),
            PickKind::SaveFile(_) => Some(self.save_to.clone()),
        }
    }
}

#[test]
fn the_dots_open_the_dialog_and_the_chosen_file_loads() {
    let mut h = harness(embedded_model());
    wait_for(&mut h, "the model", |a| a.model.is_some());
    let person = Person::default();
    h.state_mut().picker = Box::new(person.clone());
    // The prompt box's rows come first: the model folder, then the prompt set.
    let dots: Vec<_> = h.get_all_by_label("…").collect();
    assert!(dots.len() >= 6, "a dialog button beside every path field");
    dots[1].click();
    h.run_steps(2);
    assert_eq!(h.state().prompt_set.len(), 6, "{}", h.state().status.0);
    assert_eq!(
        h.state().prompt_set_path,
        repo("datasets/examples/smoke.jsonl").display().to_string()
    );
    assert_eq!(*person.asked.lock().unwrap(), ["Load a prompt set"]);
}

#[test]
fn views_save_as_png_cut_from_the_next_frame() {
    let dir = std::env::temp_dir().join(format!("moescope-gui-png-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("heatmap.png");
    let mut h = harness(embedded_model());
    wait_for(&mut h, "the model", |a| a.model.is_some());
    h.state_mut().picker = Box::new(Person {
        save_to: out.clone(),
        ..Person::default()
    });
    h.state_mut().max_tokens = 4;
    h.get_by_label("Generate").click();
    h.run_steps(1);
    wait_for(&mut h, "the run", |a| !a.busy);

    h.get_by_label("Save heatmap PNG…").click();
    h.step();
    // The test harness draws no pixels, so the screenshot the app asked for is answered here
    // with a window-sized image, each pixel holding its own coordinates.
    let requests: Vec<_> = h
        .output()
        .viewport_output
        .values()
        .flat_map(|v| v.commands.iter())
        .filter_map(|c| match c {
            egui::ViewportCommand::Screenshot(callback) => Some(callback.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        requests.len(),
        1,
        "one screenshot asked for: {}",
        h.state().status.0
    );
    let (w, h_px) = (1280, 800);
    let pixels = (0..h_px)
        .flat_map(|y| (0..w).map(move |x| Color32::from_rgb((x % 256) as u8, (y % 256) as u8, 7)))
        .collect();
    requests[0]
        .clone()
        .complete(Arc::new(ColorImage::new([w, h_px], pixels)));
    wait_for(&mut h, "the file", |a| a.status.0.starts_with("wrote"));
    assert!(!h.state().status.1, "{}", h.state().status.0);

    let (width, height, first) = read_png(&out);
    let rect = h
        .state()
        .view_rect(moescope_gui::snapshot::View::Heatmap)
        .unwrap();
    assert_eq!(
        (width, height),
        (rect.width().round() as u32, rect.height().round() as u32)
    );
    let (x0, y0) = (rect.min.x.round() as u32, rect.min.y.round() as u32);
    assert_eq!(
        first,
        [(x0 % 256) as u8, (y0 % 256) as u8, 7, 255],
        "cut where the view is"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Width, height and first pixel of an 8-bit RGBA PNG.
fn read_png(path: &Path) -> (u32, u32, [u8; 4]) {
    let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let mut reader = png::Decoder::new(file).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    (info.width, info.height, [buf[0], buf[1], buf[2], buf[3]])
}
