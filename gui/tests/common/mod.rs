//! What the app's tests share: the repository's files, a window on a checkpoint, and stepping
//! it until the worker thread has reported.

#![allow(dead_code)] // Each test file uses part of it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use egui_kittest::Harness;
use moescope_gui::MoescopeApp;

/// A path inside the repository.
pub fn repo(path: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).join(path)
}

/// The model shipped in `assets/`.
pub fn embedded_model() -> PathBuf {
    repo("assets/default-model")
}

/// The app in a 1280 × 800 window on the checkpoint in `dir`.
pub fn harness(dir: PathBuf) -> Harness<'static, MoescopeApp> {
    Harness::builder()
        .with_size(eframe::egui::vec2(1280.0, 800.0))
        .build_ui_state(
            |ui, app: &mut MoescopeApp| app.show(ui),
            MoescopeApp::new(dir, || {}),
        )
}

/// Steps the UI until `done` holds (the worker runs on its own thread).
pub fn wait_for(
    h: &mut Harness<'static, MoescopeApp>,
    what: &str,
    done: impl Fn(&MoescopeApp) -> bool,
) {
    let start = Instant::now();
    while !done(h.state()) {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
        h.step();
    }
    h.run_steps(2);
}

/// The text the last frame put on the clipboard, if any.
pub fn copied_text(h: &Harness<'static, MoescopeApp>) -> Option<String> {
    h.output()
        .platform_output
        .commands
        .iter()
        .find_map(|c| match c {
            eframe::egui::OutputCommand::CopyText(t) => Some(t.clone()),
            _ => None,
        })
}
