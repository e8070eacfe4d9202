//! moescope's desktop app: type a prompt, watch which experts every token is routed to, load a
//! ranking of behaviour-linked experts, mask, force or re-weight them, and compare the steered
//! generation with the unsteered one, side by side.

pub mod app;
pub mod basis;
pub mod colors;
pub mod command;
pub mod error;
pub mod file_dialog;
pub mod forcing_view;
pub mod grid;
pub mod heatmap;
pub mod log;
pub mod matrix_view;
pub mod panels;
pub mod plots;
pub mod ranking;
pub mod recording;
pub mod run_view;
pub mod set_work;
pub mod snapshot;
pub mod state;
pub mod steering;
pub mod widgets;
pub mod worker;

use moescope_workbench::ModelSpec;

pub use error::{GuiError, Result};
pub use state::{MoescopeApp, StartOptions};

/// Opens the window on the checkpoint `model` names (folder, device, dtype) and returns when it
/// is closed.
pub fn run(model: ModelSpec, start: StartOptions) -> Result<()> {
    let options = eframe::NativeOptions {
        viewport: eframe::egui::ViewportBuilder::default()
            .with_inner_size([1280.0, 800.0])
            .with_title("moescope"),
        ..Default::default()
    };
    eframe::run_native(
        "moescope",
        options,
        Box::new(move |cc| {
            let ctx = cc.egui_ctx.clone();
            let app = MoescopeApp::with_model(model, move || ctx.request_repaint());
            Ok(Box::new(app.with_start(start)))
        }),
    )
    .map_err(|e| GuiError::Window(e.to_string()))
}
