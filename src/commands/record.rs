//! `moescope record`: a prompt set's routing to a Parquet records folder.

use anyhow::Result;
use moescope_workbench::open::{interventions_text, steering_policy};
use moescope_workbench::record::{record, refuse_existing_recording, RecordJob};

use crate::cli::RecordArgs;
use crate::signals::interrupt_flag;
use crate::terminal::{open_model, TerminalProgress};

/// Runs `moescope record`.
pub fn run(args: &RecordArgs) -> Result<()> {
    refuse_existing_recording(&args.out, args.overwrite)?;
    let ck = open_model(&args.model)?;
    let policy = steering_policy(&ck, args.steer.as_deref(), &args.mask)?;
    let job = RecordJob {
        ck: &ck,
        prompts: &args.prompts,
        out: &args.out,
        policy: &policy,
        interventions: interventions_text(args.steer.as_deref(), &args.mask)?,
        generate: args.generate,
        full_probs: args.full_probs,
        batch: args.batch,
        run_id: args.run_id.clone(),
    };
    let r = record(&job, &TerminalProgress::default(), &interrupt_flag())?;
    if r.complete() {
        println!(
            "recorded {} prompts, {} routing rows → {}",
            r.done,
            r.rows,
            args.out.display()
        );
    } else {
        println!(
            "interrupted: recorded {} of {} prompts, {} routing rows → {} (run.parquet says complete=false)",
            r.done,
            r.total,
            r.rows,
            args.out.display()
        );
    }
    Ok(())
}
