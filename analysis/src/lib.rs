#![warn(missing_docs)]
//! Statistics over recorded MoE routing: the Parquet records format, expert rankings
//! (frequency, nPMI, risk difference, contrast, local consistency, super experts), their
//! exports and plots, behaviour classifiers and confidence intervals.

pub mod bootstrap;
pub mod classify;
pub mod error;
pub mod output;
pub mod plot;
pub mod read;
pub mod records;
pub mod scan;
pub mod stats;
pub mod table;

pub use bootstrap::{bootstrap_grid_mean, bootstrap_mean, bootstrap_ratio, Estimate};
pub use classify::{Rule, RuleSet};
pub use error::AnalysisError;
pub use output::OutputSet;
pub use records::{RecordWriter, Records, RunInfo, SequenceInfo, TokenRouting};
pub use stats::Positions;
pub use table::{Column, Table};
