//! Errors the GUI shows in its window instead of crashing.

use thiserror::Error;

/// What went wrong, worded for the status bar.
#[derive(Debug, Error)]
pub enum GuiError {
    /// From the engine: model folder, profile, generation.
    #[error(transparent)]
    Engine(#[from] moescope_engine::EngineError),
    /// From the analysis layer: reading a ranking.
    #[error(transparent)]
    Analysis(#[from] moescope_analysis::error::AnalysisError),
    /// From the workbench: recording, evaluation, attribution, saving a profile.
    #[error("{}", chain(.0))]
    Workbench(#[from] moescope_workbench::WorkbenchError),
    /// A field the user filled in is not usable.
    #[error("{0}")]
    Input(String),
    /// The window could not be opened.
    #[error(
        "could not open the window: {0}; a display is needed (set DISPLAY, or run under Xvfb)"
    )]
    Window(String),
}

/// An error with its causes, "what: why: …", as the CLI prints it.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// Result with [`GuiError`].
pub type Result<T> = std::result::Result<T, GuiError>;

/// Fails with "type the path of WHAT first" when the user left a path field empty.
pub fn require_path(path: &std::path::Path, what: &str) -> Result<()> {
    if path.as_os_str().is_empty() {
        return Err(GuiError::Input(format!("type the path of {what} first")));
    }
    Ok(())
}
