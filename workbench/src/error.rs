//! The workbench's error: what the engine or the analysis layer reported, an input the
//! workbench refuses (with what to do instead), or either of those with what was being done.

use moescope_analysis::AnalysisError;
use moescope_engine::EngineError;

/// Why a workbench operation failed. Printed with its source chain (`{:#}` in `anyhow`), it
/// reads "what was being done: why".
#[derive(Debug, thiserror::Error)]
pub enum WorkbenchError {
    /// The engine failed (loading, tokenising, a forward pass).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The analysis layer failed (records, statistics, writing outputs).
    #[error(transparent)]
    Analysis(#[from] AnalysisError),
    /// A file operation failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The cancel flag was raised before the work was done.
    #[error("cancelled")]
    Cancelled,
    /// An input the workbench refuses; the message names it and the fix.
    #[error("{0}")]
    Input(String),
    /// An error with what was being done when it happened.
    #[error("{context}")]
    Context {
        /// What was being done.
        context: String,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The result of workbench operations.
pub type Result<T, E = WorkbenchError> = std::result::Result<T, E>;

/// Adds what was being done to an error, as `anyhow::Context` does for binaries.
pub trait ResultExt<T> {
    /// Wraps the error with `context`.
    fn context(self, context: impl Into<String>) -> Result<T>;
    /// Wraps the error with the context `f` makes (only on failure).
    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T>;
}

impl<T, E> ResultExt<T> for std::result::Result<T, E>
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| WorkbenchError::Context {
            context: context.into(),
            source: Box::new(e),
        })
    }

    fn with_context<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| WorkbenchError::Context {
            context: f().into(),
            source: Box::new(e),
        })
    }
}

/// Returns early with [`WorkbenchError::Input`] made from a format string.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::error::WorkbenchError::Input(format!($($arg)*)))
    };
}
pub(crate) use bail;

/// [`WorkbenchError::Input`] made from a format string, for `map_err` and `ok_or_else`.
macro_rules! input_error {
    ($($arg:tt)*) => {
        $crate::error::WorkbenchError::Input(format!($($arg)*))
    };
}
pub(crate) use input_error;
