//! `moescope eval`: behaviour metrics on a prompt set for the unsteered and the steered model
//! in one run, each with a bootstrap confidence interval.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use moescope_analysis::{bootstrap_mean, bootstrap_ratio, Estimate, RuleSet};
use moescope_engine::scoring::{continuation_logprob, sequence_nll};
use moescope_engine::{
    generate, load_prompt_set, Checkpoint, GenerateOptions, PromptRecord, RoutingPolicy,
};

use crate::cli::EvalArgs;
use crate::commands::{load, steering_policy};

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
        .map(|r| Ok(ck.codec.encode(&r.render(&ck.codec)?)?))
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
            let ctx = Ctx {
                ck: &ck,
                policy,
                args,
                bar: &bar,
            };
            rows.extend(ctx.measure(metric, &records, &texts, variant)?);
        }
    }
    bar.finish_and_clear();
    print_rows(&rows, args);
    Ok(())
}

struct Ctx<'a> {
    ck: &'a Checkpoint,
    policy: &'a RoutingPolicy,
    args: &'a EvalArgs,
    bar: &'a ProgressBar,
}

impl Ctx<'_> {
    fn measure(
        &self,
        metric: &Metric,
        records: &[PromptRecord],
        texts: &[Vec<u32>],
        variant: &'static str,
    ) -> Result<Vec<Row>> {
        let (a, model) = (self.args, &self.ck.model);
        let row = |metric: String, estimate| Row {
            metric,
            variant,
            estimate,
        };
        Ok(match metric {
            Metric::Rules(rules) => {
                let outputs = self.generate_all(texts)?;
                rules
                    .rules
                    .iter()
                    .map(|r| {
                        let hits: Vec<f64> = outputs
                            .iter()
                            .map(|t| f64::from(u8::from(r.matches(t))))
                            .collect();
                        row(
                            format!("rate: {}", r.name),
                            bootstrap_mean(&hits, a.resamples, a.level, a.seed),
                        )
                    })
                    .collect()
            }
            Metric::Answer => {
                if records.iter().any(|r| r.target.is_none()) {
                    bail!("answer: every prompt needs a `target` (the expected answer)");
                }
                let outputs = self.generate_all(texts)?;
                let hits: Vec<f64> = outputs
                    .iter()
                    .zip(records)
                    .map(|(o, r)| {
                        f64::from(u8::from(contains_word(
                            o,
                            r.target.as_deref().unwrap_or(""),
                        )))
                    })
                    .collect();
                vec![row(
                    "rate: answer contains target".into(),
                    bootstrap_mean(&hits, a.resamples, a.level, a.seed),
                )]
            }
            Metric::TargetLogprob => {
                let mut values = Vec::new();
                for (r, context) in records.iter().zip(texts) {
                    self.bar.inc(1);
                    if let Some(target) = &r.target {
                        let target = self.ck.codec.encode(target)?;
                        values.push(continuation_logprob(model, self.policy, context, &target)?.0);
                    }
                }
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
                let mut pairs = Vec::new();
                for t in texts {
                    self.bar.inc(1);
                    if t.len() >= 2 {
                        let (nll, n) = sequence_nll(model, self.policy, t)?;
                        pairs.push((nll, n as f64));
                    }
                }
                let e = bootstrap_ratio(&pairs, a.resamples, a.level, a.seed);
                let exp = Estimate {
                    value: e.value.exp(),
                    low: e.low.exp(),
                    high: e.high.exp(),
                    n: e.n,
                };
                vec![row("perplexity".into(), exp)]
            }
        })
    }

    /// Greedy generations for every prompt, in batches.
    fn generate_all(&self, texts: &[Vec<u32>]) -> Result<Vec<String>> {
        let opts = GenerateOptions {
            max_new_tokens: self.args.max_tokens,
            ..Default::default()
        };
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(self.args.batch) {
            let model = &self.ck.model;
            let generated = generate(
                model,
                Some(&self.ck.codec),
                chunk,
                &opts,
                self.policy,
                None,
                |_, _| {},
            )?;
            out.extend(generated.into_iter().map(|g| g.text));
            self.bar.inc(chunk.len() as u64);
        }
        Ok(out)
    }
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
fn contains_word(text: &str, needle: &str) -> bool {
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
