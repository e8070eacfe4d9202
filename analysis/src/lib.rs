#![warn(missing_docs)]
//! Statistics over recorded routing and model outputs: behaviour classifiers and confidence
//! intervals today; frequency, nPMI, risk difference and the other expert rankings build on them.

pub mod bootstrap;
pub mod classify;
pub mod error;

pub use bootstrap::{bootstrap_mean, bootstrap_ratio, Estimate};
pub use classify::RuleSet;
pub use error::AnalysisError;
