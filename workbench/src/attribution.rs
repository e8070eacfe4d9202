//! Attribution: which experts a target continuation's log-probability owes most to, by
//! ablation (mask each expert, re-score) and by first-order gate gradients (one backward
//! pass), with the rank agreement of the two.

use std::path::Path;

use moescope_analysis::stats::attribution::{attribution_table, spearman, ExpertAttribution};
use moescope_analysis::{Column, Table};
use moescope_engine::{
    gate_gradients, target_logprobs, Checkpoint, PromptRecord, RoutingPolicy, ScoredPair,
};

use crate::error::{bail, Result, WorkbenchError};
use crate::progress::{stage, CancelFlag, Progress};
use crate::rankings::{Export, PlotSpec};

/// An attribution over a prompt set: every routed expert's two drops, their summary.
pub struct Attribution {
    /// Prompts scored.
    pub prompts: usize,
    /// The ranking by ablation drop.
    pub table: Table,
    /// One row per routed expert.
    pub rows: Vec<ExpertAttribution>,
    /// Summed target log-probability of the unsteered model.
    pub base: f64,
}

impl Attribution {
    /// Scores `records` (each with `target`, or its own `target` field) and attributes.
    pub fn run(
        ck: &Checkpoint,
        records: &[PromptRecord],
        target: Option<&str>,
        path: &Path,
        batch: usize,
        progress: &dyn Progress,
        stop: &CancelFlag,
    ) -> Result<Self> {
        if batch == 0 {
            bail!("--batch must be at least 1");
        }
        let pairs = scored_pairs(ck, records, target, path)?;
        let (table, rows, base) = attribution_ranking(ck, &pairs, batch, progress, stop)?;
        Ok(Self {
            prompts: pairs.len(),
            table,
            rows,
            base,
        })
    }

    /// Mean target log-probability of the unsteered model.
    pub fn mean_logprob(&self) -> f64 {
        self.base / self.prompts as f64
    }

    /// Spearman's rank correlation of the ablation and the first-order drops.
    pub fn agreement(&self) -> f64 {
        spearman(
            &self
                .rows
                .iter()
                .map(|r| r.ablation_drop)
                .collect::<Vec<_>>(),
            &self
                .rows
                .iter()
                .map(|r| r.first_order_drop)
                .collect::<Vec<_>>(),
        )
    }

    /// The tables to write: the ablation ranking, the first-order ranking and a summary.
    pub fn exports(&self) -> Vec<Export> {
        let summary = Table::default()
            .with("prompts", Column::Int(vec![self.prompts as u64]))
            .with(
                "target_logprob_mean",
                Column::Float(vec![self.mean_logprob()]),
            )
            .with("experts", Column::Int(vec![self.rows.len() as u64]))
            .with("spearman_rho", Column::Float(vec![self.agreement()]));
        vec![
            Export {
                part: "",
                table: self.table.clone(),
                plot: Some(PlotSpec {
                    value: "ablation_drop",
                    signed: true,
                }),
                title: "drop in target log-prob when masked".into(),
            },
            Export {
                part: "first-order",
                table: self.table.sorted_desc("first_order_drop", false),
                plot: Some(PlotSpec {
                    value: "first_order_drop",
                    signed: true,
                }),
                title: "first-order drop (gate × ∂log-prob/∂gate)".into(),
            },
            Export::table("summary", summary),
        ]
    }
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
    progress: &dyn Progress,
    stop: &CancelFlag,
) -> Result<(Table, Vec<ExpertAttribution>, f64)> {
    let model = &ck.model;
    let base_policy = RoutingPolicy::new();
    let base: f64 = target_logprobs(model, &base_policy, pairs, batch)?
        .iter()
        .sum();
    let (_, grads) = stage(
        progress,
        "computing gate gradients (one backward pass per prompt)",
        || gate_gradients(model, &base_policy, pairs),
    )?;
    let c = model.config();
    let layers = c.moe_layers();
    progress.begin(
        "ablating",
        Some((layers.len() * c.moe.num_experts) as u64),
        "experts",
    );
    let mut rows = Vec::new();
    for &layer in &layers {
        for expert in 0..c.moe.num_experts {
            if stop.is_cancelled() {
                progress.end();
                return Err(WorkbenchError::Cancelled);
            }
            let mut policy = RoutingPolicy::new();
            policy.mask(layer, expert);
            let masked: f64 = target_logprobs(model, &policy, pairs, batch)?.iter().sum();
            rows.push(ExpertAttribution {
                layer,
                expert,
                ablation_drop: base - masked,
                first_order_drop: grads.get(&layer).map_or(f64::NAN, |g| g[expert]),
            });
            progress.advance(1);
        }
    }
    progress.end();
    Ok((attribution_table(&rows), rows, base))
}
