//! The metrics that evaluation and experiments measure on a prompt set: one type for both, so
//! a metric means the same thing wherever it is asked for.

use std::path::PathBuf;

use moescope_analysis::{
    bootstrap_grid_mean, bootstrap_mean, bootstrap_ratio, Estimate, Rule, RuleSet,
};

use crate::error::{bail, Result};

/// A behaviour or quality metric of a prompt set under one routing policy.
#[derive(Debug, Clone)]
pub enum Metric {
    /// Share of the greedy generations that a rule matches.
    Rule(Rule),
    /// Share of the greedy generations that contain each prompt's `target` as a whole word.
    Answer,
    /// Mean log-probability of each prompt's `target` after the prompt.
    TargetLogprob,
    /// Perplexity of the prompts' own text (pooled per-token NLL, exponentiated).
    Perplexity,
}

impl Metric {
    /// Parses an evaluation metric: `rules:FILE` (one metric per rule of the TOML rules
    /// file), `answer`, `target-logprob` or `perplexity`.
    pub fn parse(spec: &str) -> Result<Vec<Metric>> {
        Ok(match spec.split_once(':') {
            Some(("rules", file)) => RuleSet::load(&PathBuf::from(file))?
                .rules
                .into_iter()
                .map(Metric::Rule)
                .collect(),
            None if spec == "target-logprob" => vec![Metric::TargetLogprob],
            None if spec == "perplexity" => vec![Metric::Perplexity],
            None if spec == "answer" => vec![Metric::Answer],
            _ => {
                bail!("--metric {spec}: expected rules:FILE, target-logprob, perplexity or answer")
            }
        })
    }

    /// How reports name the metric.
    pub fn label(&self) -> String {
        match self {
            Metric::Rule(r) => format!("rate: {}", r.name),
            Metric::Answer => "rate: answer contains target".into(),
            Metric::TargetLogprob => "target log-prob".into(),
            Metric::Perplexity => "perplexity".into(),
        }
    }

    /// Whether measuring it needs the greedy generations (shared by all metrics that do).
    pub fn needs_generations(&self) -> bool {
        matches!(self, Metric::Rule(_) | Metric::Answer)
    }
}

/// What a metric measured: one value per prompt (estimated by their mean), or per-text
/// `(summed NLL, predicted tokens)` pairs (estimated as a perplexity).
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// One value per prompt.
    PerPrompt(Vec<f64>),
    /// `(summed negative log-likelihood, predicted tokens)` per text.
    Nll(Vec<(f64, f64)>),
    /// One value per prompt for each of several random draws (`draws × prompts`).
    Grid(Vec<Vec<f64>>),
}

impl Values {
    /// The estimate with a bootstrap interval at `level`.
    pub fn estimate(&self, resamples: usize, level: f64, seed: u64) -> Estimate {
        match self {
            Values::PerPrompt(v) => bootstrap_mean(v, resamples, level, seed),
            Values::Nll(pairs) => perplexity(pairs, resamples, level, seed),
            Values::Grid(grid) => bootstrap_grid_mean(grid, resamples, level, seed),
        }
    }

    /// The values of several random draws of one metric as one: per-prompt values as a grid
    /// (estimated over draws and prompts), NLL pairs pooled.
    pub fn pool(draws: Vec<Values>) -> Values {
        let mut grid = Vec::new();
        let mut pairs = Vec::new();
        for v in draws {
            match v {
                Values::PerPrompt(row) => grid.push(row),
                Values::Grid(rows) => grid.extend(rows),
                Values::Nll(p) => pairs.extend(p),
            }
        }
        if grid.is_empty() {
            Values::Nll(pairs)
        } else {
            Values::Grid(grid)
        }
    }
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

/// 1 where `rule` matches the output, else 0.
pub fn rule_hits(outputs: &[String], rule: &Rule) -> Vec<f64> {
    outputs
        .iter()
        .map(|t| f64::from(u8::from(rule.matches(t))))
        .collect()
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
