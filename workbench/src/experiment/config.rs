//! The experiment file (`moescope experiment run exp.toml`): which model, how experts are
//! found, which sizes and interventions to sweep, how behaviour and quality are measured.
//! Parsed strictly (unknown fields are errors naming the line) and resolved with every default
//! filled in, so the report folder holds the exact configuration that produced it.

use std::path::{Path, PathBuf};

use crate::error::{bail, input_error, Result, ResultExt};
use serde::{Deserialize, Serialize};

/// The experiment format version this build reads.
pub const EXPERIMENT_VERSION: u32 = 1;

/// A whole experiment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// Must be [`EXPERIMENT_VERSION`].
    pub version: u32,
    /// Short name, used in titles.
    pub name: String,
    /// What the experiment tests.
    #[serde(default)]
    pub description: String,
    /// Checkpoint folder; the embedded model when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<PathBuf>,
    /// Compute dtype (`auto`: the checkpoint's stored dtype, `f32`, `bf16`, `f16`), as the
    /// CLI's `--dtype`.
    #[serde(default = "auto_dtype")]
    pub dtype: String,
    /// Keyword arguments for the chat template (`[template_args]`, e.g. `enable_thinking =
    /// false`), as the CLI's `--template-arg`; a prompt set's own `template_args` override them.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub template_args: moescope_engine::TemplateArgs,
    /// Seed of the random expert draws and of the bootstrap.
    #[serde(default)]
    pub seed: u64,
    /// How the candidate experts are found.
    pub detect: Detect,
    /// Sizes and random baselines.
    pub sweep: Sweep,
    /// The interventions applied to the selected experts, each with its evaluation set.
    #[serde(rename = "arm")]
    pub arms: Vec<Arm>,
    /// Behaviour evaluation sets, referred to by name from the arms.
    #[serde(rename = "eval")]
    pub evals: Vec<EvalSet>,
    /// General-quality check: perplexity on neutral text.
    pub quality: Quality,
}

/// The detection step: record a prompt set, rank experts by a statistic.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Detect {
    /// JSONL prompt set used only for detection.
    pub prompts: PathBuf,
    /// Tokens generated (greedy) per prompt while recording, so answers are routed too.
    #[serde(default)]
    pub generate: usize,
    /// `contrast`, `rd`, `npmi` or `attribution` (ablation of each expert on the log-probability
    /// of `target`).
    pub statistic: String,
    /// contrast/rd: label of the behaviour set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behaviour: Option<String>,
    /// contrast/rd: label of the control set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<String>,
    /// npmi: the event is one of these tokens (comma-separated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<String>,
    /// npmi: the event is a span `OPEN,CLOSE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span: Option<String>,
    /// npmi: the event is the sequence's label; attribution: only prompts with this label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// attribution: the continuation scored after every prompt (default: each prompt's
    /// `target`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// npmi: pairs seen together fewer times are not candidates.
    #[serde(default = "default_min_count")]
    pub min_count: u64,
    /// Token positions counted: `all`, `prompt` or `generated`.
    #[serde(default = "default_positions")]
    pub positions: String,
    /// Most experts taken from one layer (default: the model's top-k, so a selection can also
    /// be forced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_layer: Option<usize>,
}

/// The sizes swept and the random baselines.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sweep {
    /// Numbers of experts N (each ≥ 1).
    pub sizes: Vec<usize>,
    /// Random sets of the same size drawn per N (same layers as the top-N set).
    #[serde(default = "default_draws")]
    pub random_draws: usize,
}

/// One intervention applied to the selected experts and where its effect is measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arm {
    /// Name in tables and plots.
    pub name: String,
    /// `mask`, `force`, `scale`, `logit_bias`, `soft_activate` or `soft_deactivate`.
    pub intervention: String,
    /// The intervention's number (scale factor, bias, ε).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// `prompt`, `generated` or `both`.
    #[serde(default = "default_scope")]
    pub scope: String,
    /// Name of the `[[eval]]` set measured.
    pub eval: String,
    /// Expected direction of the behaviour metric: `lower` or `higher`.
    pub expect: String,
}

/// A behaviour evaluation set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSet {
    /// Name the arms refer to.
    pub name: String,
    /// JSONL prompt set (held out from detection).
    pub prompts: PathBuf,
    /// Rules file for `rule:NAME` metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<PathBuf>,
    /// Metrics: `rule:NAME` (share of generations matching the rule) or `answer` (share
    /// containing the prompt's target). The first is the behaviour plotted against N.
    pub metrics: Vec<String>,
    /// Tokens generated per prompt (greedy).
    #[serde(default = "default_max_tokens")]
    pub max_tokens: usize,
}

/// The quality check.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quality {
    /// JSONL prompt set whose texts are scored (perplexity).
    pub prompts: PathBuf,
}

fn default_min_count() -> u64 {
    5
}
fn default_positions() -> String {
    "all".into()
}
fn default_draws() -> usize {
    5
}
fn default_scope() -> String {
    "both".into()
}
fn default_max_tokens() -> usize {
    32
}

impl ExperimentConfig {
    /// Reads and checks an experiment file; relative paths are taken from the working
    /// directory, as on the command line.
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("{}", path.display()))
    }

    /// Parses and checks experiment text.
    pub fn parse(text: &str) -> Result<Self> {
        let cfg: Self = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            match line {
                Some(l) => input_error!("line {l}: {}", e.message()),
                None => input_error!("{}", e.message()),
            }
        })?;
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<()> {
        if self.version != EXPERIMENT_VERSION {
            bail!(
                "version {}: this build reads version {EXPERIMENT_VERSION}",
                self.version
            );
        }
        check_name("name", &self.name)?;
        let mut arm_files = std::collections::HashMap::new();
        for a in &self.arms {
            check_name("[[arm]] name", &a.name)?;
            if let Some(other) = arm_files.insert(super::slug(&a.name), &a.name) {
                bail!(
                    "[[arm]] names {other:?} and {:?} name the same arm (file names use {:?}); give each arm its own name",
                    a.name,
                    super::slug(&a.name)
                );
            }
        }
        let mut evals = std::collections::HashSet::new();
        for e in &self.evals {
            check_name("[[eval]] name", &e.name)?;
            if !evals.insert(&e.name) {
                bail!(
                    "[[eval]] name {:?} is used twice; give each set its own name",
                    e.name
                );
            }
        }
        for name in self.template_args.keys() {
            moescope_engine::chat::check_template_arg_name(name)
                .map_err(|e| input_error!("[template_args]: {e}"))?;
        }
        if !["auto", "f32", "bf16", "f16"].contains(&self.dtype.as_str()) {
            bail!("dtype = \"{}\": use auto, f32, bf16 or f16", self.dtype);
        }
        let d = &self.detect;
        match d.statistic.as_str() {
            "contrast" | "rd" => {
                if d.behaviour.is_none() || d.control.is_none() {
                    bail!(
                        "[detect] statistic = \"{}\" needs `behaviour` and `control` labels",
                        d.statistic
                    );
                }
            }
            "npmi" => {
                let events = [&d.tokens, &d.span, &d.label]
                    .iter()
                    .filter(|e| e.is_some())
                    .count();
                if events != 1 {
                    bail!("[detect] statistic = \"npmi\" needs exactly one of `tokens`, `span`, `label`");
                }
            }
            "attribution" => {}
            other => bail!(
                "[detect] statistic = \"{other}\": expected contrast, rd, npmi or attribution"
            ),
        }
        d.positions
            .parse::<moescope_analysis::Positions>()
            .map_err(|e| input_error!("[detect] positions: {e}"))?;
        if d.max_per_layer == Some(0) {
            bail!("[detect] max_per_layer must be at least 1");
        }
        if self.sweep.random_draws == 0 {
            bail!("[sweep] random_draws = 0: the top experts are compared with random ones; use at least 1 (e.g. 5)");
        }
        if self.sweep.sizes.is_empty() || self.sweep.sizes.contains(&0) {
            bail!("[sweep] sizes: give one or more sizes, each at least 1, e.g. sizes = [1, 2, 5, 10]");
        }
        if self.arms.is_empty() {
            bail!("add at least one [[arm]] (e.g. intervention = \"mask\")");
        }
        for a in &self.arms {
            let ctx = format!("[[arm]] {:?}", a.name);
            let needs_value = match a.intervention.as_str() {
                "mask" | "force" => false,
                "scale" | "logit_bias" => true,
                "soft_activate" | "soft_deactivate" => false,
                other => bail!("{ctx}: intervention \"{other}\": expected mask, force, scale, logit_bias, soft_activate or soft_deactivate"),
            };
            if needs_value && a.value.is_none() {
                bail!("{ctx}: intervention \"{}\" needs a `value`", a.intervention);
            }
            if let Some(v) = a.value {
                let non_negative = a.intervention != "logit_bias";
                if !v.is_finite() || (non_negative && v < 0.0) {
                    bail!(
                        "{ctx}: value = {v}: {} needs a finite{} number",
                        a.intervention,
                        if non_negative { ", non-negative" } else { "" }
                    );
                }
            }
            if !matches!(a.scope.as_str(), "prompt" | "generated" | "both") {
                bail!(
                    "{ctx}: scope \"{}\": expected prompt, generated or both",
                    a.scope
                );
            }
            if !matches!(a.expect.as_str(), "lower" | "higher") {
                bail!("{ctx}: expect \"{}\": expected lower or higher", a.expect);
            }
            if !self.evals.iter().any(|e| e.name == a.eval) {
                bail!("{ctx}: eval \"{}\" names no [[eval]] set", a.eval);
            }
        }
        for e in &self.evals {
            let ctx = format!("[[eval]] {:?}", e.name);
            if e.metrics.is_empty() {
                bail!("{ctx}: give at least one metric (rule:NAME or answer)");
            }
            for m in &e.metrics {
                match m.split_once(':') {
                    Some(("rule", _)) if e.rules.is_none() => {
                        bail!("{ctx}: metric \"{m}\" needs a `rules` file")
                    }
                    Some(("rule", name)) if !name.is_empty() => {}
                    None if m == "answer" => {}
                    _ => bail!("{ctx}: metric \"{m}\": expected rule:NAME or answer"),
                }
            }
        }
        Ok(())
    }
}

/// Longest name accepted for an experiment, arm or eval set.
const MAX_NAME_CHARS: usize = 64;

/// Names become folder and file names (through [`super::slug`]): each must hold a letter or
/// digit and be short; nothing in it can reach outside the report folder.
fn check_name(field: &str, name: &str) -> Result<()> {
    if !name.chars().any(|c| c.is_ascii_alphanumeric()) {
        bail!("{field} = {name:?}: give a name with at least one letter or digit, e.g. \"mask\"");
    }
    if name.contains(['/', '\\']) {
        bail!("{field} = {name:?}: names become file names; leave out / and \\");
    }
    if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        bail!("{field} = {name:?}: use at most {MAX_NAME_CHARS} printable characters");
    }
    Ok(())
}

fn auto_dtype() -> String {
    "auto".to_string()
}

/// The fuzz tests' text mutator, shared with the integration tests.
#[cfg(test)]
#[path = "../../../tests/common/mutate.rs"]
#[allow(dead_code)] // Shared with tests that use the rest of it.
mod mutate;

#[cfg(test)]
mod tests {
    use std::panic::{catch_unwind, AssertUnwindSafe};

    use rand::SeedableRng;

    use super::{mutate, ExperimentConfig};

    /// Mutated experiment files give `Ok` or an error, never a panic (seeded; longer runs
    /// with `MOESCOPE_FUZZ_ROUNDS`).
    #[test]
    fn mutated_experiment_files_never_panic() {
        let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
        let mut parsed = 0;
        for (seed, file) in [
            "experiments/refusal.toml",
            "experiments/think-attribution.toml",
        ]
        .iter()
        .enumerate()
        {
            let base = std::fs::read_to_string(root.join(file)).unwrap();
            assert!(ExperimentConfig::parse(&base).is_ok(), "{file} is valid");
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed as u64);
            let budget = mutate::Budget::part(300, 2);
            let mut round = 0;
            while budget.more(round) {
                let text = mutate::mutate(&base, &mut rng);
                match catch_unwind(AssertUnwindSafe(|| ExperimentConfig::parse(&text))) {
                    Ok(r) => parsed += usize::from(r.is_ok()),
                    Err(_) => panic!("{file} round {round} panicked on:\n{text}"),
                }
                round += 1;
            }
            eprintln!("experiment files ({file}): {round} mutated inputs, none panicked");
        }
        assert!(parsed > 0, "some mutations stay valid");
    }

    #[test]
    fn names_and_values_are_checked() {
        let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
        let base = std::fs::read_to_string(root.join("experiments/refusal.toml")).unwrap();
        for (from, to, why) in [
            ("name = \"refusal\"", "name = \"../../x\"", "leave out /"),
            ("name = \"refusal\"", "name = \"\"", "letter or digit"),
            ("name = \"force\"", "name = \"mask\"", "same arm"),
            ("name = \"allowed\"", "name = \"forbidden\"", "used twice"),
            ("random_draws = 5", "random_draws = 0", "random_draws = 0"),
            (
                "intervention = \"mask\"",
                "intervention = \"scale\"\nvalue = nan",
                "finite",
            ),
            (
                "intervention = \"mask\"",
                "intervention = \"scale\"\nvalue = -1.0",
                "non-negative",
            ),
        ] {
            let text = base.replacen(from, to, 1);
            assert_ne!(text, base, "{from}");
            let err = format!("{:#}", ExperimentConfig::parse(&text).unwrap_err());
            assert!(err.contains(why), "{to}: {err}");
        }
    }
}
