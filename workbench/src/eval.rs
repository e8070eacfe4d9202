//! Evaluation: metrics of a prompt set for the unsteered and the steered model in one run,
//! each with a bootstrap confidence interval. [`Evaluator`] measures one policy and is shared
//! with experiments.

use moescope_analysis::Estimate;
use moescope_engine::scoring::{continuation_logprob, sequence_nll};
use moescope_engine::{Checkpoint, GenerateOptions, GenerateRequest, RoutingPolicy};

use crate::error::{bail, Result, WorkbenchError};
use crate::metric::{contains_word, rule_hits, Metric, Values};
use crate::progress::{CancelFlag, Progress};
use crate::prompts::PromptSet;
use crate::select::random_counterpart;

/// How an evaluation runs and estimates.
#[derive(Debug, Clone, Copy)]
pub struct EvalSettings {
    /// Tokens generated per prompt (greedy) for metrics on generations.
    pub max_tokens: usize,
    /// Prompts generated together.
    pub batch: usize,
    /// Bootstrap resamples.
    pub resamples: usize,
    /// Confidence level of the intervals, in (0, 1).
    pub level: f64,
    /// Seed of the bootstrap and of the random expert sets.
    pub seed: u64,
    /// Random-experts controls measured beside the steered model (0: none): each draw applies
    /// the steering's edits to as many random experts of the same layers.
    pub random_draws: usize,
}

impl EvalSettings {
    /// Fails on settings no evaluation can run with.
    pub fn check(&self) -> Result<()> {
        if self.batch == 0 || !(self.level > 0.0 && self.level < 1.0) {
            bail!("--batch must be at least 1 and --level between 0 and 1");
        }
        Ok(())
    }
}

/// One estimate of an evaluation.
#[derive(Debug, Clone)]
pub struct EvalRow {
    /// The metric's label.
    pub metric: String,
    /// `baseline`, `steered`, or `random` (the random-experts controls, pooled).
    pub variant: &'static str,
    /// The value with its interval.
    pub estimate: Estimate,
}

/// Measures `metrics` on `set` for the unsteered model and, when `steered` is not empty, for
/// the steered one and its random-experts controls (`settings.random_draws` of them, pooled
/// into one `random` row per metric, when the steering edits experts): rows by variant, then
/// metric.
pub fn evaluate(
    ck: &Checkpoint,
    set: &PromptSet,
    metrics: &[Metric],
    steered: &RoutingPolicy,
    settings: &EvalSettings,
    progress: &dyn Progress,
    stop: &CancelFlag,
) -> Result<Vec<EvalRow>> {
    settings.check()?;
    let baseline = RoutingPolicy::new();
    let mut variants: Vec<(&'static str, Vec<RoutingPolicy>)> = vec![("baseline", vec![baseline])];
    if !steered.is_empty() {
        variants.push(("steered", vec![steered.clone()]));
        if settings.random_draws > 0 && !steered.edited_experts().is_empty() {
            let experts = ck.model.config().moe.num_experts;
            let draws = (0..settings.random_draws)
                .map(|d| random_counterpart(steered, experts, settings.seed, d))
                .collect();
            variants.push(("random", draws));
        }
    }
    let passes = usize::from(metrics.iter().any(Metric::needs_generations))
        + metrics.iter().filter(|m| !m.needs_generations()).count();
    let runs: usize = variants.iter().map(|(_, p)| p.len()).sum();
    progress.begin("", Some((runs * passes * set.len()) as u64), "");
    let mut rows = Vec::new();
    for (variant, policies) in &variants {
        progress.note(variant);
        let mut values: Vec<Vec<Values>> = vec![Vec::new(); metrics.len()];
        for policy in policies {
            let ev = Evaluator {
                ck,
                policy,
                max_tokens: settings.max_tokens,
                batch: settings.batch,
                progress,
                stop,
            };
            let mut outputs = None;
            for (metric, v) in metrics.iter().zip(&mut values) {
                v.push(ev.values(metric, set, &mut outputs)?);
            }
        }
        for (metric, v) in metrics.iter().zip(values) {
            let v = if v.len() == 1 {
                v.into_iter()
                    .next()
                    .unwrap_or(Values::PerPrompt(Vec::new()))
            } else {
                Values::pool(v)
            };
            rows.push(EvalRow {
                metric: metric.label(),
                variant,
                estimate: v.estimate(settings.resamples, settings.level, settings.seed),
            });
        }
    }
    progress.end();
    Ok(rows)
}

/// Runs metrics for one routing policy: the pieces evaluation and experiments share. Each
/// method returns one value per prompt, so callers choose how to aggregate and bootstrap.
pub struct Evaluator<'a> {
    /// The model.
    pub ck: &'a Checkpoint,
    /// The routing in effect.
    pub policy: &'a RoutingPolicy,
    /// Tokens generated per prompt (greedy).
    pub max_tokens: usize,
    /// Prompts generated together.
    pub batch: usize,
    /// Advanced by one per prompt processed.
    pub progress: &'a dyn Progress,
    /// Checked before each batch or prompt; once raised, the next step fails as cancelled.
    pub stop: &'a CancelFlag,
}

impl Evaluator<'_> {
    fn check_stop(&self) -> Result<()> {
        if self.stop.is_cancelled() {
            return Err(WorkbenchError::Cancelled);
        }
        Ok(())
    }

    /// What `metric` measures on `set`; `outputs` caches the greedy generations, made on
    /// the first metric that needs them.
    pub fn values(
        &self,
        metric: &Metric,
        set: &PromptSet,
        outputs: &mut Option<Vec<String>>,
    ) -> Result<Values> {
        if metric.needs_generations() && outputs.is_none() {
            *outputs = Some(self.generations(&set.texts)?);
        }
        let generated = outputs.as_deref().unwrap_or_default();
        Ok(match metric {
            Metric::Rule(rule) => Values::PerPrompt(rule_hits(generated, rule)),
            Metric::Answer => Values::PerPrompt(answer_hits(generated, set)?),
            Metric::TargetLogprob => {
                let values = self.target_logprobs(set)?;
                if values.is_empty() {
                    bail!(
                        "target-logprob: no prompt in {} has a `target`",
                        set.path.display()
                    );
                }
                Values::PerPrompt(values)
            }
            Metric::Perplexity => Values::Nll(self.nll_pairs(&set.texts)?),
        })
    }

    /// Greedy generations for every prompt, in batches.
    pub fn generations(&self, texts: &[Vec<u32>]) -> Result<Vec<String>> {
        let opts = GenerateOptions {
            max_new_tokens: self.max_tokens,
            ..Default::default()
        };
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(self.batch.max(1)) {
            self.check_stop()?;
            let generated = GenerateRequest {
                model: &self.ck.model,
                codec: Some(&self.ck.codec),
                policy: self.policy,
                options: &opts,
            }
            .run(chunk)?;
            out.extend(generated.into_iter().map(|g| g.text));
            self.progress.advance(chunk.len() as u64);
        }
        Ok(out)
    }

    /// `(summed negative log-likelihood, predicted tokens)` of each text with at least two
    /// tokens.
    pub fn nll_pairs(&self, texts: &[Vec<u32>]) -> Result<Vec<(f64, f64)>> {
        let mut pairs = Vec::new();
        for t in texts {
            self.check_stop()?;
            self.progress.advance(1);
            if t.len() >= 2 {
                let (nll, n) = sequence_nll(&self.ck.model, self.policy, t)?;
                pairs.push((nll, n as f64));
            }
        }
        Ok(pairs)
    }

    /// Log-probability of each record's `target` after its prompt (records without one are
    /// skipped).
    pub fn target_logprobs(&self, set: &PromptSet) -> Result<Vec<f64>> {
        let mut values = Vec::new();
        for (r, context) in set.records.iter().zip(&set.texts) {
            self.check_stop()?;
            self.progress.advance(1);
            if let Some(target) = &r.target {
                let target = self.ck.codec.encode(target)?;
                values.push(continuation_logprob(&self.ck.model, self.policy, context, &target)?.0);
            }
        }
        Ok(values)
    }
}

/// 1 where the output contains the record's `target` as a whole word, else 0; every record
/// needs a target.
pub fn answer_hits(outputs: &[String], set: &PromptSet) -> Result<Vec<f64>> {
    if set.records.iter().any(|r| r.target.is_none()) {
        bail!("answer: every prompt needs a `target` (the expected answer)");
    }
    Ok(outputs
        .iter()
        .zip(&set.records)
        .map(|(o, r)| {
            f64::from(u8::from(contains_word(
                o,
                r.target.as_deref().unwrap_or(""),
            )))
        })
        .collect())
}
