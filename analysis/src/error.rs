//! The analysis crate's error type.

use std::path::PathBuf;

/// Errors from reading analysis inputs.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// A file could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A rules file is malformed.
    #[error("{path}{}: {message}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Rules {
        /// The rules file.
        path: PathBuf,
        /// The 1-based line, where known.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
}
