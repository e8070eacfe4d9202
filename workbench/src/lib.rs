//! The workbench layer of moescope, shared by the CLI and the desktop app: opening a model for
//! a run ([`open`]), recording routing to Parquet ([`record`]), evaluating metrics with
//! intervals ([`eval`], [`metric`]), expert rankings by statistic ([`rankings`]) or by
//! attribution ([`attribution`]), and scripted experiments with their reports
//! ([`experiment`]). Long work reports through [`Progress`] and stops on a [`CancelFlag`];
//! nothing here prints.

pub mod attribution;
pub mod error;
pub mod eval;
pub mod experiment;
pub mod forcing;
pub mod generation;
pub mod metric;
pub mod open;
pub mod outputs;
pub mod profiles;
pub mod progress;
pub mod prompts;
pub mod rankings;
pub mod record;
pub mod select;
pub mod throughput;

pub use error::{Result, ResultExt, WorkbenchError};
pub use metric::Metric;
pub use open::ModelSpec;
pub use progress::{CancelFlag, Progress, Silent};
pub use prompts::PromptSet;
