//! `moescope eval`: behaviour metrics on a prompt set for the unsteered and the steered model
//! in one run, each with a bootstrap confidence interval.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use moescope_analysis::{bootstrap_mean, bootstrap_ratio, Estimate, RuleSet};
use moescope_engine::scoring::{continuation_logprob, sequence_nll};
use moescope_engine::{
    load_prompt_set, Checkpoint, GenerateOptions, GenerateRequest, PromptRecord, RoutingPolicy,
};

use crate::cli::EvalArgs;
use crate::session::{load, steering_policy};

/// A metric asked for on the command line.
enum Metric {
    Rules(RuleSet),
    TargetLogprob,
    Perplexity,
    Answer,
}

/// One row of the report.
struct Row {
    metric: String,
    variant: &'static str,
    estimate: Estimate,
}

fn parse_metric(spec: &str) -> Result<Metric> {
    Ok(match spec.split_once(':') {
        Some(("rules", file)) => Metric::Rules(RuleSet::load(&PathBuf::from(file))?),
        None if spec == "target-logprob" => Metric::TargetLogprob,
        None if spec == "perplexity" => Metric::Perplexity,
        None if spec == "answer" => Metric::Answer,
        _ => bail!("--metric {spec}: expected rules:FILE, target-logprob, perplexity or answer"),
    })
}

/// Runs the evaluation and prints the report.
pub fn run(args: &EvalArgs) -> Result<()> {
    crate::session::end_at_once_on_interrupt();
    if args.batch == 0 || !(args.level > 0.0 && args.level < 1.0) {
        bail!("--batch must be at least 1 and --level between 0 and 1");
    }
    let metrics = args
        .metrics
        .iter()
        .map(|m| parse_metric(m))
        .collect::<Result<Vec<_>>>()?;
    let ck = load(&args.model)?;
    let records = load_prompt_set(&args.prompts)?;
    if records.is_empty() {
        bail!("{}: no prompts", args.prompts.display());
    }
    let texts: Vec<Vec<u32>> = records
        .iter()
        .map(|r| Ok(r.token_ids(&ck.codec)?))
        .collect::<Result<_>>()
        .with_context(|| format!("rendering {}", args.prompts.display()))?;
    let policy = steering_policy(&ck, args.steer.as_deref(), &args.mask)?;
    let mut variants = vec![("baseline", RoutingPolicy::new())];
    if !policy.is_empty() {
        variants.push(("steered", policy));
    }
    let bar = ProgressBar::new((variants.len() * metrics.len() * records.len()) as u64);
    bar.set_style(ProgressStyle::with_template(
        "{bar:40} {pos}/{len} {msg} ({eta})",
    )?);
    let mut rows = Vec::new();
    for (variant, policy) in &variants {
        for metric in &metrics {
            bar.set_message(variant.to_string());
            let ev = Evaluator {
                ck: &ck,
                policy,
                max_tokens: args.max_tokens,
                batch: args.batch,
                bar: &bar,
            };
            rows.extend(measure(&ev, args, metric, &records, &texts, variant)?);
        }
    }
    bar.finish_and_clear();
    print_rows(&rows, args);
    Ok(())
}

/// Runs behaviour metrics for one routing policy: the pieces `moescope eval` and
/// `moescope experiment` share. Each method returns one value per prompt, so callers choose how
/// to aggregate and bootstrap.
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
    pub bar: &'a ProgressBar,
}

impl Evaluator<'_> {
    /// Greedy generations for every prompt, in batches.
    pub fn generations(&self, texts: &[Vec<u32>]) -> Result<Vec<String>> {
        let opts = GenerateOptions {
            max_new_tokens: self.max_tokens,
            ..Default::default()
        };
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(self.batch.max(1)) {
            let model = &self.ck.model;
            let generated = GenerateRequest {
                model,
                codec: Some(&self.ck.codec),
                policy: self.policy,
                options: &opts,
            }
            .run(chunk)?;
            out.extend(generated.into_iter().map(|g| g.text));
            self.bar.inc(chunk.len() as u64);
        }
        Ok(out)
    }

    /// `(summed negative log-likelihood, predicted tokens)` of each text with at least two
    /// tokens.
    pub fn nll_pairs(&self, texts: &[Vec<u32>]) -> Result<Vec<(f64, f64)>> {
        let mut pairs = Vec::new();
        for t in texts {
            self.bar.inc(1);
            if t.len() >= 2 {
                let (nll, n) = sequence_nll(&self.ck.model, self.policy, t)?;
                pairs.push((nll, n as f64));
            }
        }
        Ok(pairs)
    }

    /// Log-probability of each record's `target` after its prompt (records without one are
    /// skipped).
    pub fn target_logprobs(
        &self,
        records: &[PromptRecord],
        texts: &[Vec<u32>],
    ) -> Result<Vec<f64>> {
        let mut values = Vec::new();
        for (r, context) in records.iter().zip(texts) {
            self.bar.inc(1);
            if let Some(target) = &r.target {
                let target = self.ck.codec.encode(target)?;
                values.push(continuation_logprob(&self.ck.model, self.policy, context, &target)?.0);
            }
        }
        Ok(values)
    }
}

/// 1 where `rule` matches the output, else 0.
pub fn rule_hits(outputs: &[String], rule: &moescope_analysis::Rule) -> Vec<f64> {
    outputs
        .iter()
        .map(|t| f64::from(u8::from(rule.matches(t))))
        .collect()
}

/// 1 where the output contains the record's `target` as a whole word, else 0; every record
/// needs a target.
pub fn answer_hits(outputs: &[String], records: &[PromptRecord]) -> Result<Vec<f64>> {
    if records.iter().any(|r| r.target.is_none()) {
        bail!("answer: every prompt needs a `target` (the expected answer)");
    }
    Ok(outputs
        .iter()
        .zip(records)
        .map(|(o, r)| {
            f64::from(u8::from(contains_word(
                o,
                r.target.as_deref().unwrap_or(""),
            )))
        })
        .collect())
}

/// Perplexity (exp of the pooled per-token NLL) with its interval.
pub fn perplexity(pairs: &[(f64, f64)], resamples: usize, level: f64, seed: u64) -> Estimate {
    let e = bootstrap_ratio(pairs, resamples, level, seed);
    Estimate {
        value: e.value.exp(),
        low: e.low.exp(),
        high: e.high.exp(),
        n: e.n,
    }
}

fn measure(
    ev: &Evaluator<'_>,
    args: &EvalArgs,
    metric: &Metric,
    records: &[PromptRecord],
    texts: &[Vec<u32>],
    variant: &'static str,
) -> Result<Vec<Row>> {
    let a = args;
    let row = |metric: String, estimate| Row {
        metric,
        variant,
        estimate,
    };
    Ok(match metric {
        Metric::Rules(rules) => {
            let outputs = ev.generations(texts)?;
            rules
                .rules
                .iter()
                .map(|r| {
                    row(
                        format!("rate: {}", r.name),
                        bootstrap_mean(&rule_hits(&outputs, r), a.resamples, a.level, a.seed),
                    )
                })
                .collect()
        }
        Metric::Answer => {
            let outputs = ev.generations(texts)?;
            let hits = answer_hits(&outputs, records)?;
            vec![row(
                "rate: answer contains target".into(),
                bootstrap_mean(&hits, a.resamples, a.level, a.seed),
            )]
        }
        Metric::TargetLogprob => {
            let values = ev.target_logprobs(records, texts)?;
            if values.is_empty() {
                bail!(
                    "target-logprob: no prompt in {} has a `target`",
                    a.prompts.display()
                );
            }
            vec![row(
                "target log-prob".into(),
                bootstrap_mean(&values, a.resamples, a.level, a.seed),
            )]
        }
        Metric::Perplexity => {
            let pairs = ev.nll_pairs(texts)?;
            vec![row(
                "perplexity".into(),
                perplexity(&pairs, a.resamples, a.level, a.seed),
            )]
        }
    })
}

fn print_rows(rows: &[Row], args: &EvalArgs) {
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

/// Whether `needle` occurs in `text` not glued to letters or digits (so "12" is not found in
/// "112").
pub fn contains_word(text: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return false;
    }
    text.match_indices(needle).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + needle.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

#[cfg(test)]
mod tests {
    use super::contains_word;

    #[test]
    fn answers_match_whole_numbers_only() {
        assert!(contains_word("The answer is 52.", "52"));
        assert!(!contains_word("The answer is 152.", "52"));
        assert!(!contains_word("The answer is 521.", "52"));
        assert!(!contains_word("anything", ""));
    }
}
