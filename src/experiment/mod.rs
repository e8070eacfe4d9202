//! `moescope experiment`: one TOML file describes a whole steering experiment; one command
//! records the detection set, ranks experts, steers the top N and N random experts of the same
//! layers, measures behaviour and perplexity, and writes a report folder (Markdown, SVG plots,
//! Parquet/CSV of every number, the resolved configuration). The report is rewritten after
//! every condition, so Ctrl-C leaves a usable partial report.

mod config;
mod report;
mod select;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use moescope_analysis::output::write_text;
use moescope_analysis::stats::contrast::{contrast, risk_difference};
use moescope_analysis::stats::npmi::npmi;
use moescope_analysis::{bootstrap_mean, Estimate, Positions, Records, Rule, RuleSet, Table};
use moescope_engine::{
    load_prompt_set, Checkpoint, Intervention, InterventionKind, PromptRecord, RoutingPolicy,
    ScopeName, SteeringProfile,
};

use crate::analyze::{npmi_event, spin, write_exports, Export, PlotSpec};
use crate::attribute::{attribution_ranking, prompts_with_label, scored_pairs};
use crate::cli::{ExperimentArgs, ExperimentCommand, ExperimentRunArgs, ModelArgs};
use crate::eval::{answer_hits, perplexity, rule_hits, Evaluator};
use crate::record::{record, RecordJob};
use crate::session::{interrupt_flag, load};

pub use config::ExperimentConfig;
use report::{Condition, Report, Selection};
use select::{candidates, describe, random_like, ExpertId};

/// Runs `moescope experiment …`.
pub fn run(args: &ExperimentArgs) -> Result<()> {
    match &args.command {
        ExperimentCommand::Run(a) => run_experiment(a),
        ExperimentCommand::Check { file } => {
            let cfg = ExperimentConfig::load(file)?;
            let ck = load(&model_args(&cfg, "cpu"))?;
            let setup = Setup::load(&cfg, &ck).with_context(|| file.display().to_string())?;
            println!(
                "{}: ok — {} detection prompts, {} arms × sizes {:?} × (top + {} random), {} conditions",
                file.display(),
                setup.detect_prompts,
                cfg.arms.len(),
                cfg.sweep.sizes,
                cfg.sweep.random_draws,
                setup.conditions(&cfg)
            );
            Ok(())
        }
    }
}

fn model_args(cfg: &ExperimentConfig, device: &str) -> ModelArgs {
    ModelArgs {
        model: cfg.model.clone(),
        device: device.to_string(),
        dtype: cfg.dtype.clone(),
        template_args: cfg
            .template_args
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// A behaviour metric of an evaluation set.
enum MetricKind {
    Rule(Rule),
    Answer,
}

/// An evaluation set, tokenised, with its metrics.
struct LoadedEval {
    records: Vec<PromptRecord>,
    texts: Vec<Vec<u32>>,
    metrics: Vec<(String, MetricKind)>,
    max_tokens: usize,
}

/// Everything read before the run starts, so that bad input fails before any work.
struct Setup {
    evals: BTreeMap<String, LoadedEval>,
    quality: Vec<Vec<u32>>,
    detect_prompts: usize,
    max_per_layer: usize,
}

impl Setup {
    fn load(cfg: &ExperimentConfig, ck: &Checkpoint) -> Result<Self> {
        let encode = |path: &Path| -> Result<(Vec<PromptRecord>, Vec<Vec<u32>>)> {
            let records = load_prompt_set(path)?;
            if records.is_empty() {
                bail!("{}: no prompts", path.display());
            }
            let texts = records
                .iter()
                .map(|r| Ok(r.token_ids(&ck.codec)?))
                .collect::<Result<Vec<_>>>()
                .with_context(|| format!("rendering {}", path.display()))?;
            Ok((records, texts))
        };
        let (detect_records, _) = encode(&cfg.detect.prompts)?;
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
            let (records, texts) = encode(&e.prompts)?;
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
                            .with_context(|| {
                                format!(
                                    "[[eval]] {:?}: metric {m}: no rule named {name:?} in its rules file",
                                    e.name
                                )
                            })?;
                        MetricKind::Rule(rule.clone())
                    }
                    None => {
                        if records.iter().any(|r| r.target.is_none()) {
                            bail!(
                                "[[eval]] {:?}: metric answer needs a `target` on every prompt of {}",
                                e.name,
                                e.prompts.display()
                            );
                        }
                        MetricKind::Answer
                    }
                };
                metrics.push((m.clone(), kind));
            }
            evals.insert(
                e.name.clone(),
                LoadedEval {
                    records,
                    texts,
                    metrics,
                    max_tokens: e.max_tokens,
                },
            );
        }
        let quality: Vec<Vec<u32>> = encode(&cfg.quality.prompts)?
            .1
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

    fn conditions(&self, cfg: &ExperimentConfig) -> usize {
        1 + cfg.arms.len() * cfg.sweep.sizes.len() * (1 + cfg.sweep.random_draws)
    }
}

fn run_experiment(args: &ExperimentRunArgs) -> Result<()> {
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let cfg = ExperimentConfig::load(&args.file)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("reports").join(slug(&cfg.name)));
    check_out(&out, args.overwrite)?;
    let stop = interrupt_flag();
    let ck = load(&model_args(&cfg, &args.device))?;
    let setup = Setup::load(&cfg, &ck).with_context(|| args.file.display().to_string())?;
    if stop.load(Ordering::SeqCst) {
        // Stopped while loading: nothing written, the old report untouched (exit 130).
        return Ok(());
    }
    // Everything is checked. An old report stays in place until the new one is complete (or
    // interrupted, and so complete but partial): the run writes beside it and then swaps.
    let replacing = out.join(REPORT_MARKER).is_file();
    let dir = if replacing {
        staging_dir(&out)
    } else {
        out.clone()
    };
    prepare_out(&dir)?;
    let conducted = conduct(args, &cfg, &ck, &setup, &dir, &out);
    match (conducted, replacing) {
        (Ok(()), true) => replace_report(&dir, &out),
        (Err(e), true) => {
            let _ = std::fs::remove_dir_all(&dir);
            Err(e)
        }
        (result, false) => result,
    }
}

/// Where a run that replaces the report in `out` writes until it is done: a hidden folder beside
/// it.
fn staging_dir(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "report".into());
    out.with_file_name(format!(".{name}.partial-report"))
}

/// Puts the finished report in `staged` in the place of the old one in `out`.
fn replace_report(staged: &Path, out: &Path) -> Result<()> {
    let old = staged.with_extension("old-report");
    if old.join(REPORT_MARKER).is_file() {
        std::fs::remove_dir_all(&old)
            .with_context(|| format!("cannot remove {}", old.display()))?;
    }
    std::fs::rename(out, &old).with_context(|| format!("cannot move {} aside", out.display()))?;
    std::fs::rename(staged, out).with_context(|| {
        format!(
            "cannot move the new report {} to {}; the old one is in {}",
            staged.display(),
            out.display(),
            old.display()
        )
    })?;
    std::fs::remove_dir_all(&old)
        .with_context(|| format!("cannot remove the old report {}", old.display()))
}

/// Runs the experiment, writing its report into `dir` (shown to the user as `out`).
fn conduct(
    args: &ExperimentRunArgs,
    cfg: &ExperimentConfig,
    ck: &Checkpoint,
    setup: &Setup,
    dir: &Path,
    out: &Path,
) -> Result<()> {
    let stop = interrupt_flag();

    let mut resolved = cfg.clone();
    resolved.model = Some(ck.dir.clone());
    resolved.detect.max_per_layer = Some(setup.max_per_layer);
    let resolved_text = format!(
        "# Resolved by moescope {} from {}; re-run with\n#   moescope experiment run {} --out {}\n{}",
        env!("CARGO_PKG_VERSION"),
        args.file.display(),
        args.file.display(),
        out.display(),
        toml::to_string_pretty(&resolved).context("writing the resolved configuration")?
    );
    write_text(&dir.join("config.resolved.toml"), &resolved_text)?;

    // 1. Detection: record the detection prompts and rank experts.
    let detect_dir = dir.join("detect-records");
    let recorded = record(
        &RecordJob {
            ck,
            prompts: &cfg.detect.prompts,
            out: &detect_dir,
            policy: &RoutingPolicy::new(),
            interventions: String::new(),
            generate: cfg.detect.generate,
            full_probs: false,
            batch: args.batch,
            run_id: Some(format!("{}-detect", cfg.name)),
        },
        &stop,
    )?;
    let mut report = Report::new(cfg, dir, setup.conditions(cfg));
    if !recorded.complete() {
        report.note(format!(
            "Interrupted while recording the detection set ({} of {} prompts); nothing was steered.",
            recorded.done, recorded.total
        ));
        report.write(false)?;
        println!("interrupted; partial report in {}", out.display());
        return Ok(());
    }
    let ranking = rank(cfg, &detect_dir, ck, args.batch)?;
    let (value_col, signed) = ranking_value(&cfg.detect.statistic);
    let export = Export {
        part: "",
        table: ranking,
        plot: Some(PlotSpec {
            value: value_col,
            signed,
        }),
        title: format!(
            "{} on {}",
            cfg.detect.statistic,
            cfg.detect.prompts.display()
        ),
    };
    write_exports(&dir.join("ranking"), 20, std::slice::from_ref(&export))?;
    let ranking = export.table;
    let rows = ranking_rows(&ranking, value_col)?;
    let cands = candidates(&rows, setup.max_per_layer);
    report.set_ranking(&ranking);

    // 2. Baselines, then each arm × size × (top, random draws).
    let bar = ProgressBar::new(setup.conditions(cfg) as u64);
    bar.set_style(ProgressStyle::with_template(
        "steering {bar:40} {pos}/{len} conditions ({elapsed}, eta {eta}) {msg}",
    )?);
    let runner = Runner {
        ck,
        setup,
        batch: args.batch,
        resamples: args.resamples,
        seed: cfg.seed,
    };
    bar.set_message("baseline");
    let quality = runner.perplexity(&RoutingPolicy::new())?;
    report.set_baseline_quality(quality);
    for e in &cfg.evals {
        if cfg.arms.iter().any(|a| a.eval == e.name) {
            let m = runner.measure(&e.name, &RoutingPolicy::new())?;
            report.set_baseline(&e.name, m);
        }
    }
    bar.inc(1);
    report.write(false)?;
    let num_experts = ck.model.config().moe.num_experts;
    let mut interrupted = false;
    'arms: for arm in &cfg.arms {
        for &size in &cfg.sweep.sizes {
            if cands.len() < size {
                report.note(format!(
                    "{}: N = {size} skipped, only {} experts have a positive {} (at most {} per layer)",
                    arm.name,
                    cands.len(),
                    cfg.detect.statistic,
                    setup.max_per_layer
                ));
                bar.inc(1 + cfg.sweep.random_draws as u64);
                continue;
            }
            let top: Vec<ExpertId> = cands[..size].iter().map(|c| c.0).collect();
            let mut sets = vec![(Selection::Top, 0usize, top.clone())];
            for d in 0..cfg.sweep.random_draws {
                sets.push((
                    Selection::Random,
                    d + 1,
                    random_like(&top, num_experts, cfg.seed, d),
                ));
            }
            for (selection, draw, set) in sets {
                if stop.load(Ordering::SeqCst) {
                    interrupted = true;
                    break 'arms;
                }
                bar.set_message(format!("{} N={size} {}", arm.name, selection.label(draw)));
                let profile = steering_profile(cfg, arm, &set, size, selection, draw)?;
                let policy = profile
                    .to_policy(&format!("arm {}", arm.name), ck.model.config())
                    .with_context(|| format!("[[arm]] {:?}", arm.name))?;
                if selection == Selection::Top {
                    let profiles = dir.join("profiles");
                    std::fs::create_dir_all(&profiles)
                        .with_context(|| format!("creating {}", profiles.display()))?;
                    profile.save(&profiles.join(format!("{}-top{size}.toml", slug(&arm.name))))?;
                }
                let measured = runner.measure(&arm.eval, &policy)?;
                let ppl = runner.perplexity(&policy)?;
                report.add(Condition {
                    arm: arm.name.clone(),
                    eval: arm.eval.clone(),
                    size,
                    selection,
                    draw,
                    experts: describe(&set),
                    measured,
                    perplexity: ppl,
                });
                report.write(false)?;
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    if interrupted {
        report.note(
            "Interrupted (Ctrl-C); the numbers above are the conditions finished by then.".into(),
        );
    }
    report.write(!interrupted)?;
    println!("{}", report.verdicts().join("\n"));
    println!(
        "{} report in {}",
        if interrupted { "partial" } else { "complete" },
        out.join("report.md").display()
    );
    Ok(())
}

/// Refuses to mix a new report with an old one unless asked to replace it.
/// The file that marks a folder as a report of `experiment run`; `--overwrite` replaces only
/// folders that hold it.
const REPORT_MARKER: &str = ".moescope-report";

/// Fails, touching nothing, when `out` holds files and may not be replaced: without
/// `--overwrite`, or when it is not a report folder this command wrote.
fn check_out(out: &Path, overwrite: bool) -> Result<()> {
    if !out.exists() {
        return Ok(());
    }
    if !out.is_dir() {
        bail!(
            "--out {}: a file is in the way; choose another --out",
            out.display()
        );
    }
    let non_empty = std::fs::read_dir(out)
        .with_context(|| format!("cannot read {}", out.display()))?
        .next()
        .is_some();
    if !non_empty {
        return Ok(());
    }
    if !overwrite {
        bail!(
            "{} already holds files; pass --overwrite to replace that report, or choose another --out",
            out.display()
        );
    }
    if !out.join(REPORT_MARKER).is_file() {
        bail!(
            "{} holds files but is not a report written by `moescope experiment run` (no {REPORT_MARKER} in it), \
             so --overwrite will not delete it; choose another --out or empty it yourself",
            out.display()
        );
    }
    Ok(())
}

/// Makes the empty folder a report is written into and marks it as a report: `out` itself
/// when [`check_out`] found it absent or empty, or the staging folder beside an old report
/// (a stale one from a killed run is replaced; a folder of someone else's is refused).
fn prepare_out(out: &Path) -> Result<()> {
    if out.join(REPORT_MARKER).is_file() {
        std::fs::remove_dir_all(out)
            .with_context(|| format!("cannot remove the stale report {}", out.display()))?;
    }
    check_out(out, false)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    write_text(
        &out.join(REPORT_MARKER),
        "A report of `moescope experiment run`; `--overwrite` may replace this folder.\n",
    )
    .with_context(|| format!("cannot write in {}", out.display()))
}

/// The ranking table of the detection statistic over the detection records.
fn rank(cfg: &ExperimentConfig, records: &Path, ck: &Checkpoint, batch: usize) -> Result<Table> {
    let d = &cfg.detect;
    if d.statistic == "attribution" {
        let prompts = prompts_with_label(&d.prompts, d.label.as_deref()).context("[detect]")?;
        let pairs = scored_pairs(ck, &prompts, d.target.as_deref(), &d.prompts)?;
        return Ok(attribution_ranking(ck, &pairs, batch)?.0);
    }
    let rec = Records::open(records)?;
    let positions: Positions = d
        .positions
        .parse()
        .map_err(|e: String| anyhow::anyhow!("[detect] positions: {e}"))?;
    let (b, c) = (
        d.behaviour.as_deref().unwrap_or_default(),
        d.control.as_deref().unwrap_or_default(),
    );
    spin(&d.statistic, || {
        Ok(match d.statistic.as_str() {
            "contrast" => contrast(&rec, b, c, positions)?,
            // Steering wants experts that fire more on the behaviour: rank by signed Δ.
            "rd" => risk_difference(&rec, b, c, positions)?.sorted_desc("delta", false),
            _ => {
                let event = npmi_event(d.tokens.as_deref(), d.label.as_deref(), d.span.as_deref())?;
                npmi(&rec, &event, d.min_count, positions)?
            }
        })
    })
}

/// The column a statistic ranks by and whether it is signed.
fn ranking_value(statistic: &str) -> (&'static str, bool) {
    match statistic {
        "contrast" => ("z", true),
        "rd" => ("delta", true),
        "attribution" => ("ablation_drop", true),
        _ => ("npmi", true),
    }
}

/// `(layer, expert, score)` rows of a ranking, in its order.
fn ranking_rows(t: &Table, value: &str) -> Result<Vec<(usize, usize, f64)>> {
    let (Some(l), Some(e), Some(v)) = (t.floats("layer"), t.floats("expert"), t.floats(value))
    else {
        bail!("the ranking has no layer/expert/{value} columns");
    };
    Ok(l.iter()
        .zip(&e)
        .zip(&v)
        .map(|((&l, &e), &v)| (l as usize, e as usize, v))
        .collect())
}

/// The steering profile applying `arm` to `set`.
fn steering_profile(
    cfg: &ExperimentConfig,
    arm: &config::Arm,
    set: &[ExpertId],
    size: usize,
    selection: Selection,
    draw: usize,
) -> Result<SteeringProfile> {
    let kind = match arm.intervention.as_str() {
        "mask" => InterventionKind::Mask,
        "force" => InterventionKind::Force,
        "scale" => InterventionKind::Scale,
        "logit_bias" => InterventionKind::LogitBias,
        "soft_activate" => InterventionKind::SoftActivate,
        _ => InterventionKind::SoftDeactivate,
    };
    let scope = match arm.scope.as_str() {
        "prompt" => ScopeName::Prompt,
        "generated" => ScopeName::Generated,
        _ => ScopeName::Both,
    };
    Ok(SteeringProfile {
        version: moescope_engine::profile::PROFILE_VERSION,
        name: Some(format!(
            "{}: {} N={size} {}",
            cfg.name,
            arm.name,
            selection.label(draw)
        )),
        description: Some(format!(
            "Made by `moescope experiment run` ({}): {} the {} experts ranked by {} on {}.",
            cfg.name,
            arm.intervention,
            match selection {
                Selection::Top => format!("top {size}"),
                Selection::Random => format!("{size} random (draw {draw})"),
            },
            cfg.detect.statistic,
            cfg.detect.prompts.display()
        )),
        interventions: set
            .iter()
            .map(|&(layer, expert)| Intervention {
                layer,
                expert: Some(expert),
                kind,
                value: arm.value,
                scope,
            })
            .collect(),
    })
}

fn slug(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// Measures conditions: behaviour on an evaluation set and perplexity on the quality set.
struct Runner<'a> {
    ck: &'a Checkpoint,
    setup: &'a Setup,
    batch: usize,
    resamples: usize,
    seed: u64,
}

/// Per-prompt outcomes of each metric of one evaluation set under one policy, with estimates.
pub struct Measured {
    /// `(metric, per-prompt values, estimate)`.
    pub metrics: Vec<(String, Vec<f64>, Estimate)>,
}

impl Runner<'_> {
    fn evaluator<'b>(
        &'b self,
        policy: &'b RoutingPolicy,
        max_tokens: usize,
        bar: &'b ProgressBar,
    ) -> Evaluator<'b> {
        Evaluator {
            ck: self.ck,
            policy,
            max_tokens,
            batch: self.batch,
            bar,
        }
    }

    fn measure(&self, eval: &str, policy: &RoutingPolicy) -> Result<Measured> {
        let e = &self.setup.evals[eval];
        let hidden = ProgressBar::hidden();
        let outputs = self
            .evaluator(policy, e.max_tokens, &hidden)
            .generations(&e.texts)?;
        let mut metrics = Vec::new();
        for (name, kind) in &e.metrics {
            let values = match kind {
                MetricKind::Rule(r) => rule_hits(&outputs, r),
                MetricKind::Answer => answer_hits(&outputs, &e.records)?,
            };
            let est = bootstrap_mean(&values, self.resamples, 0.95, self.seed);
            metrics.push((name.clone(), values, est));
        }
        Ok(Measured { metrics })
    }

    fn perplexity(&self, policy: &RoutingPolicy) -> Result<Estimate> {
        let hidden = ProgressBar::hidden();
        let pairs = self
            .evaluator(policy, 0, &hidden)
            .nll_pairs(&self.setup.quality)?;
        Ok(perplexity(&pairs, self.resamples, 0.95, self.seed))
    }
}
