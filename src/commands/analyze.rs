//! `moescope analyze <stat>`: one statistic over a records folder, or attribution by running
//! the model; the ranking is printed and exported with its plots.

use anyhow::{Context, Result};
use moescope_analysis::Records;
use moescope_workbench::attribution::Attribution;
use moescope_workbench::prompts::prompts_with_label;
use moescope_workbench::rankings::{npmi_event, parse_positions, write_exports, Statistic};

use moescope_workbench::CancelFlag;

use crate::cli::{AnalyzeArgs, AttributeArgs, SetsArgs, Stat, StatCommon};
use crate::signals::end_at_once_on_interrupt;
use crate::terminal::{open_model, say_written, TerminalProgress};

/// Runs the statistic and writes its outputs.
pub fn run(args: &AnalyzeArgs) -> Result<()> {
    end_at_once_on_interrupt();
    let (common, statistic) = match &args.stat {
        Stat::Attribute(a) => return attribute(a),
        Stat::Freq(common) => (common, Statistic::Frequency),
        Stat::Npmi {
            common,
            tokens,
            label,
            span,
            min_count,
        } => {
            let event = npmi_event(tokens.as_deref(), label.as_deref(), span.as_deref())?;
            let min_count = *min_count;
            (common, Statistic::Npmi { event, min_count })
        }
        Stat::Rd(s) => (
            &s.common,
            Statistic::RiskDifference {
                behaviour: s.behaviour.clone(),
                control: s.control.clone(),
            },
        ),
        Stat::Contrast(SetsArgs {
            common,
            behaviour,
            control,
        }) => (
            common,
            Statistic::Contrast {
                behaviour: behaviour.clone(),
                control: control.clone(),
            },
        ),
        Stat::Consistency {
            common,
            segment,
            cache,
        } => (
            common,
            Statistic::Consistency {
                segment: *segment,
                cache: *cache,
            },
        ),
        Stat::SuperExperts { common, factor } => {
            (common, Statistic::SuperExperts { factor: *factor })
        }
    };
    let rec = open(common)?;
    let positions = parse_positions(&common.positions)?;
    let exports = statistic.rank(&rec, positions, &TerminalProgress::default())?;
    let written = write_exports(&common.out, common.top, &exports)?;
    print!("{}", exports[0].table.to_markdown(common.top));
    say_written(&written);
    Ok(())
}

/// Opens the records folder, noting when it is from an interrupted run.
fn open(common: &StatCommon) -> Result<Records> {
    let rec = Records::open(&common.records)?;
    if !rec.run.complete {
        eprintln!(
            "note: {} is from an interrupted run; it holds only the sequences finished by then",
            common.records.display()
        );
    }
    Ok(rec)
}

/// `moescope analyze attribute`: runs the attribution and writes its tables and plots.
fn attribute(args: &AttributeArgs) -> Result<()> {
    let ck = open_model(&args.model)?;
    let records = prompts_with_label(&args.prompts, args.label.as_deref())?;
    let progress = TerminalProgress::default();
    let attribution = Attribution::run(
        &ck,
        &records,
        args.target.as_deref(),
        &args.prompts,
        args.batch,
        &progress,
        &CancelFlag::new(),
    )?;
    let exports = attribution.exports();
    let written =
        write_exports(&args.out, args.top, &exports).context("writing the attribution")?;
    print!("{}", exports[0].table.to_markdown(args.top));
    println!(
        "\n{} prompts, mean target log-prob {:.4}; Spearman ρ between ablation and first-order attribution over {} experts: {:.3}",
        attribution.prompts,
        attribution.mean_logprob(),
        attribution.rows.len(),
        attribution.agreement()
    );
    say_written(&written);
    Ok(())
}
