//! `moescope analyze attribute`: which experts a target continuation's log-probability owes
//! most to, by ablation (mask each expert, re-score) and by first-order gate gradients (one
//! backward pass), with the rank agreement of the two.

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use moescope_analysis::stats::attribution::{attribution_table, spearman, ExpertAttribution};
use moescope_analysis::{Column, Table};
use moescope_engine::{
    gate_gradients, load_prompt_set, target_logprobs, Checkpoint, PromptRecord, RoutingPolicy,
    ScoredPair,
};
use std::path::Path;

use crate::analyze::{say_written, spin, write_exports, Export, PlotSpec};
use crate::cli::AttributeArgs;
use crate::session::load;

/// Runs the attribution and writes its tables and plots.
pub fn run(args: &AttributeArgs) -> Result<()> {
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let ck = load(&args.model)?;
    let records = prompts_with_label(&args.prompts, args.label.as_deref())?;
    let pairs = scored_pairs(&ck, &records, args.target.as_deref(), &args.prompts)?;
    let (table, rows, base) = attribution_ranking(&ck, &pairs, args.batch)?;
    let rho = spearman(
        &rows.iter().map(|r| r.ablation_drop).collect::<Vec<_>>(),
        &rows.iter().map(|r| r.first_order_drop).collect::<Vec<_>>(),
    );
    let summary = Table::default()
        .with("prompts", Column::Int(vec![pairs.len() as u64]))
        .with(
            "target_logprob_mean",
            Column::Float(vec![base / pairs.len() as f64]),
        )
        .with("experts", Column::Int(vec![rows.len() as u64]))
        .with("spearman_rho", Column::Float(vec![rho]));
    let first_order = table.sorted_desc("first_order_drop", false);
    let exports = [
        Export {
            part: "",
            table,
            plot: Some(PlotSpec {
                value: "ablation_drop",
                signed: true,
            }),
            title: "drop in target log-prob when masked".into(),
        },
        Export {
            part: "first-order",
            table: first_order,
            plot: Some(PlotSpec {
                value: "first_order_drop",
                signed: true,
            }),
            title: "first-order drop (gate × ∂log-prob/∂gate)".into(),
        },
        Export {
            part: "summary",
            table: summary,
            plot: None,
            title: String::new(),
        },
    ];
    let written =
        write_exports(&args.out, args.top, &exports).context("writing the attribution")?;
    print!("{}", exports[0].table.to_markdown(args.top));
    println!(
        "\n{} prompts, mean target log-prob {:.4}; Spearman ρ between ablation and first-order attribution over {} experts: {rho:.3}",
        pairs.len(),
        base / pairs.len() as f64,
        rows.len()
    );
    say_written(&written);
    Ok(())
}

/// `(context, target)` token pairs of `records`: each rendered prompt with `target`, or with its
/// own `target` field when `target` is `None`.
pub fn scored_pairs(
    ck: &Checkpoint,
    records: &[PromptRecord],
    target: Option<&str>,
    path: &Path,
) -> Result<Vec<ScoredPair>> {
    let mut pairs = Vec::with_capacity(records.len());
    for r in records {
        let Some(t) = target.or(r.target.as_deref()) else {
            bail!(
                "{}: prompt {} has no `target`; give one continuation for all (--target TEXT, or `target` in an experiment's [detect])",
                path.display(),
                r.id
            );
        };
        let context = r.token_ids(&ck.codec)?;
        let t = ck.codec.encode(t)?;
        if context.is_empty() || t.is_empty() {
            bail!(
                "{}: prompt {} or its target is empty after tokenisation",
                path.display(),
                r.id
            );
        }
        pairs.push((context, t));
    }
    Ok(pairs)
}

/// Ablation and first-order attribution of every routed expert for the summed target
/// log-probability of `pairs`: the ranking table, its rows, and the unsteered metric.
pub fn attribution_ranking(
    ck: &Checkpoint,
    pairs: &[ScoredPair],
    batch: usize,
) -> Result<(Table, Vec<ExpertAttribution>, f64)> {
    let model = &ck.model;
    let base_policy = RoutingPolicy::new();
    let base: f64 = target_logprobs(model, &base_policy, pairs, batch)?
        .iter()
        .sum();
    let (_, grads) = spin("gate gradients (one backward pass per prompt)", || {
        Ok(gate_gradients(model, &base_policy, pairs)?)
    })?;
    let c = model.config();
    let layers = c.moe_layers();
    let bar = ProgressBar::new((layers.len() * c.moe.num_experts) as u64);
    bar.set_style(ProgressStyle::with_template(
        "ablating {bar:40} {pos}/{len} experts ({elapsed}, eta {eta})",
    )?);
    let mut rows = Vec::new();
    for &layer in &layers {
        for expert in 0..c.moe.num_experts {
            let mut policy = RoutingPolicy::new();
            policy.mask(layer, expert);
            let masked: f64 = target_logprobs(model, &policy, pairs, batch)?.iter().sum();
            rows.push(ExpertAttribution {
                layer,
                expert,
                ablation_drop: base - masked,
                first_order_drop: grads.get(&layer).map_or(f64::NAN, |g| g[expert]),
            });
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    Ok((attribution_table(&rows), rows, base))
}

/// The prompts of a set, only those with `label` when one is given; an error when none is left.
pub fn prompts_with_label(path: &Path, label: Option<&str>) -> Result<Vec<PromptRecord>> {
    let records: Vec<PromptRecord> = load_prompt_set(path)?
        .into_iter()
        .filter(|r| label.is_none() || r.label.as_deref() == label)
        .collect();
    if records.is_empty() {
        bail!(
            "{}: no prompts{}",
            path.display(),
            label.map_or(String::new(), |l| format!(" with label `{l}`"))
        );
    }
    Ok(records)
}
