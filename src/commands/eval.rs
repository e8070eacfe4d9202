//! `moescope eval`: metrics of a prompt set for the unsteered and the steered model, each with
//! a bootstrap interval, printed as a table or JSON lines.

use anyhow::Result;
use moescope_workbench::eval::{evaluate, EvalRow, EvalSettings};
use moescope_workbench::open::steering_policy;
use moescope_workbench::{Metric, PromptSet};

use moescope_workbench::CancelFlag;

use crate::cli::EvalArgs;
use crate::signals::end_at_once_on_interrupt;
use crate::terminal::{open_model, TerminalProgress};

/// Runs the evaluation and prints the report.
pub fn run(args: &EvalArgs) -> Result<()> {
    end_at_once_on_interrupt();
    let settings = EvalSettings {
        max_tokens: args.max_tokens,
        batch: args.batch,
        resamples: args.resamples,
        level: args.level,
        seed: args.seed,
        random_draws: args.random_draws,
    };
    settings.check()?;
    let mut metrics = Vec::new();
    for spec in &args.metrics {
        metrics.extend(Metric::parse(spec)?);
    }
    let ck = open_model(&args.model)?;
    let set = PromptSet::load(&args.prompts, &ck.codec)?;
    let policy = steering_policy(&ck, args.steer.as_deref(), &args.mask)?;
    let rows = evaluate(
        &ck,
        &set,
        &metrics,
        &policy,
        &settings,
        &TerminalProgress::default(),
        &CancelFlag::new(),
    )?;
    print_rows(&rows, args);
    Ok(())
}

fn print_rows(rows: &[EvalRow], args: &EvalArgs) {
    let pct = (args.level * 100.0).round();
    if args.json {
        for r in rows {
            let e = &r.estimate;
            println!(
                "{}",
                serde_json::json!({"metric": r.metric, "variant": r.variant, "value": e.value,
                    "low": e.low, "high": e.high, "n": e.n, "level": args.level})
            );
        }
        return;
    }
    println!("| metric | variant | value | {pct}% interval | n |");
    println!("| --- | --- | ---: | --- | ---: |");
    for r in rows {
        let e = &r.estimate;
        println!(
            "| {} | {} | {:.4} | [{:.4}, {:.4}] | {} |",
            r.metric, r.variant, e.value, e.low, e.high, e.n
        );
    }
}
