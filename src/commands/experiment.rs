//! `moescope experiment run|check`: a scripted steering experiment and its report folder.

use anyhow::Result;
use moescope_workbench::experiment::{check, run as run_experiment, Ended, ExperimentRun};

use crate::cli::{ExperimentArgs, ExperimentCommand};
use crate::signals::interrupt_flag;
use crate::terminal::TerminalProgress;

/// Runs `moescope experiment …`.
pub fn run(args: &ExperimentArgs) -> Result<()> {
    let progress = TerminalProgress::default();
    match &args.command {
        ExperimentCommand::Run(a) => {
            let stop = interrupt_flag();
            let outcome = run_experiment(
                &ExperimentRun {
                    file: a.file.clone(),
                    out: a.out.clone(),
                    overwrite: a.overwrite,
                    device: a.device.clone(),
                    batch: a.batch,
                    resamples: a.resamples,
                },
                &progress,
                &stop,
            )?;
            match outcome.ended {
                // Stopped while loading: nothing written, the old report untouched (exit 130).
                Ended::BeforeWriting => {}
                Ended::InDetection => {
                    println!("interrupted; partial report in {}", outcome.out.display());
                }
                Ended::Conditions { complete, verdicts } => {
                    println!("{}", verdicts.join("\n"));
                    println!(
                        "{} report in {}",
                        if complete { "complete" } else { "partial" },
                        outcome.out.join("report.md").display()
                    );
                }
            }
            Ok(())
        }
        ExperimentCommand::Check { file } => {
            let checked = check(file, &progress)?;
            let cfg = &checked.config;
            println!(
                "{}: ok — {} detection prompts, {} arms × sizes {:?} × (top + {} random), {} conditions",
                file.display(),
                checked.detect_prompts,
                cfg.arms.len(),
                cfg.sweep.sizes,
                cfg.sweep.random_draws,
                checked.conditions
            );
            Ok(())
        }
    }
}
