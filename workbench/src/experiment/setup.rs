//! Everything an experiment reads before it starts, so that bad input fails before any work:
//! the detection labels, the evaluation sets with their metrics, the quality texts, and the
//! sweep sizes against the model.

use std::collections::BTreeMap;
use std::path::Path;

use moescope_analysis::RuleSet;
use moescope_engine::Checkpoint;

use super::config::ExperimentConfig;
use crate::error::{bail, input_error, Result};
use crate::metric::Metric;
use crate::prompts::PromptSet;

/// An evaluation set, tokenised, with its metrics (each under the name the file gives it).
pub struct LoadedEval {
    pub set: PromptSet,
    pub metrics: Vec<(String, Metric)>,
    pub max_tokens: usize,
}

/// Everything read before the run starts, so that bad input fails before any work.
pub struct Setup {
    /// The evaluation sets by name.
    pub evals: BTreeMap<String, LoadedEval>,
    /// The quality set's texts of two tokens or more.
    pub quality: Vec<Vec<u32>>,
    /// Prompts in the detection set.
    pub detect_prompts: usize,
    /// Experts per layer a ranking may contribute (resolved default: top_k).
    pub max_per_layer: usize,
}

impl Setup {
    /// Reads and checks every input of `cfg` against the model.
    pub fn load(cfg: &ExperimentConfig, ck: &Checkpoint) -> Result<Self> {
        let encode = |path: &Path| PromptSet::load(path, &ck.codec);
        let detect_records = encode(&cfg.detect.prompts)?.records;
        let detect_prompts = detect_records.len();
        let d = &cfg.detect;
        for (key, label) in [
            ("behaviour", &d.behaviour),
            ("control", &d.control),
            ("label", &d.label),
        ] {
            if let Some(label) = label {
                if !detect_records
                    .iter()
                    .any(|r| r.label.as_deref() == Some(label.as_str()))
                {
                    bail!(
                        "[detect] {key} = {label:?}: no prompt of {} has that label",
                        d.prompts.display()
                    );
                }
            }
        }
        let mut evals = BTreeMap::new();
        for e in &cfg.evals {
            let set = encode(&e.prompts)?;
            let rules = match &e.rules {
                Some(p) => Some(RuleSet::load(p)?),
                None => None,
            };
            let mut metrics = Vec::new();
            for m in &e.metrics {
                let kind = match m.split_once(':') {
                    Some((_, name)) => {
                        let rule = rules
                            .as_ref()
                            .and_then(|rs| rs.rules.iter().find(|r| r.name == name))
                            .ok_or_else(|| {
                                input_error!(
                                    "[[eval]] {:?}: metric {m}: no rule named {name:?} in its rules file",
                                    e.name
                                )
                            })?;
                        Metric::Rule(rule.clone())
                    }
                    None => {
                        if set.records.iter().any(|r| r.target.is_none()) {
                            bail!(
                                "[[eval]] {:?}: metric answer needs a `target` on every prompt of {}",
                                e.name,
                                e.prompts.display()
                            );
                        }
                        Metric::Answer
                    }
                };
                metrics.push((m.clone(), kind));
            }
            evals.insert(
                e.name.clone(),
                LoadedEval {
                    set,
                    metrics,
                    max_tokens: e.max_tokens,
                },
            );
        }
        let quality: Vec<Vec<u32>> = encode(&cfg.quality.prompts)?
            .texts
            .into_iter()
            .filter(|t| t.len() >= 2)
            .collect();
        if quality.is_empty() {
            bail!(
                "[quality] {}: no text of two tokens or more to score",
                cfg.quality.prompts.display()
            );
        }
        let c = ck.model.config();
        let max_per_layer = cfg.detect.max_per_layer.unwrap_or(c.moe.top_k);
        let candidates = max_per_layer.min(c.moe.num_experts) * c.moe_layers().len();
        if let Some(&too_many) = cfg.sweep.sizes.iter().find(|&&n| n > candidates) {
            bail!(
                "[sweep] sizes: {too_many} experts asked for, but the ranking holds at most {candidates} \
                 ({max_per_layer} per layer × {} MoE layers); use sizes up to {candidates} or raise [detect] max_per_layer",
                c.moe_layers().len()
            );
        }
        let forcing = cfg.arms.iter().any(|a| a.intervention == "force");
        if forcing && max_per_layer > c.moe.top_k {
            bail!(
                "[detect] max_per_layer = {max_per_layer}: an arm forces experts, and at most top_k = {} can be forced in a layer",
                c.moe.top_k
            );
        }
        Ok(Self {
            evals,
            quality,
            detect_prompts,
            max_per_layer,
        })
    }

    /// Conditions the run measures: the baseline, then every arm × size × (top + random draws).
    pub fn conditions(&self, cfg: &ExperimentConfig) -> usize {
        1 + cfg.arms.len() * cfg.sweep.sizes.len() * (1 + cfg.sweep.random_draws)
    }
}
