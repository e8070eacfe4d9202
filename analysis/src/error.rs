//! The analysis crate's error type.

use std::path::PathBuf;

/// Errors from reading analysis inputs.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// A file could not be read.
    #[error("{path}: cannot read: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error (in the message, not a separate cause, so it is printed once).
        error: std::io::Error,
    },
    /// A file or folder could not be written (full disk, no permission, missing folder).
    #[error("{path}: cannot write: {error}")]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
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
    /// A Parquet file could not be written or read, or lacks what a statistic needs.
    #[error("{path}: {message}")]
    Records {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong, and what to do about it.
        message: String,
    },
    /// Arguments of a statistic are inconsistent with the records.
    #[error("{0}")]
    Invalid(String),
}

impl AnalysisError {
    /// A records error for `path`.
    pub fn records(path: &std::path::Path, message: impl std::fmt::Display) -> Self {
        Self::Records {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }
}

/// Results of the analysis crate.
pub type Result<T> = std::result::Result<T, AnalysisError>;
