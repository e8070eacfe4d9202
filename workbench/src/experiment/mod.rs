//! Experiments: one TOML file describes a whole steering experiment; one run records the
//! detection set, ranks experts, steers the top N and N random experts of the same layers,
//! measures behaviour and perplexity, and writes a report folder (Markdown, SVG plots,
//! Parquet/CSV of every number, the resolved configuration). The report is rewritten after
//! every condition, so a cancelled run leaves a usable partial report.

mod config;
mod folder;
mod report;
mod setup;

use std::path::{Path, PathBuf};

use moescope_analysis::output::write_text;
use moescope_analysis::stats::contrast::{contrast, risk_difference};
use moescope_analysis::stats::npmi::npmi;
use moescope_analysis::{bootstrap_mean, Estimate, Records, Table};
use moescope_engine::{
    Checkpoint, Intervention, InterventionKind, RoutingPolicy, ScopeName, SteeringProfile,
};

use crate::attribution::{attribution_ranking, scored_pairs};
use crate::error::{bail, input_error, Result, ResultExt};
use crate::eval::Evaluator;
use crate::metric::{perplexity, Values};
use crate::open::ModelSpec;
use crate::profiles::save_profile;
use crate::progress::{stage, CancelFlag, Progress, Silent};
use crate::prompts::prompts_with_label;
use crate::rankings::{npmi_event, write_exports, Export, PlotSpec};
use crate::record::{record, RecordJob};

use crate::select::{candidates, describe, random_like, ExpertId};
pub use config::{ExperimentConfig, EXPERIMENT_VERSION};
use folder::{check_out, prepare_out, replace_report, staging_dir, REPORT_MARKER};
use report::{Condition, Report, Selection};
pub use setup::Setup;

/// How to run an experiment file.
#[derive(Debug, Clone)]
pub struct ExperimentRun {
    /// The experiment TOML file.
    pub file: PathBuf,
    /// The report folder (default: `reports/<slug of the name>`).
    pub out: Option<PathBuf>,
    /// Replace an earlier report in `out`.
    pub overwrite: bool,
    /// `cpu` or `cuda:N`.
    pub device: String,
    /// Prompts run together.
    pub batch: usize,
    /// Bootstrap resamples.
    pub resamples: usize,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct ExperimentOutcome {
    /// The report folder as the user named it.
    pub out: PathBuf,
    /// When it ended.
    pub ended: Ended,
}

/// When a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ended {
    /// Cancelled while the model loaded: nothing written, an old report untouched.
    BeforeWriting,
    /// Cancelled while recording the detection set: a partial report, nothing steered.
    InDetection,
    /// After the steering conditions: all of them (`complete`) or those done when cancelled.
    Conditions {
        /// Whether every condition was measured.
        complete: bool,
        /// One line per arm saying whether the top experts moved the metric as expected.
        verdicts: Vec<String>,
    },
}

/// What `check` found: the file and its inputs are valid for the model.
#[derive(Debug, Clone)]
pub struct CheckedExperiment {
    /// The parsed file.
    pub config: ExperimentConfig,
    /// Prompts in the detection set.
    pub detect_prompts: usize,
    /// Conditions a run would measure.
    pub conditions: usize,
}

/// The model an experiment file names, on `device`.
fn model_spec(cfg: &ExperimentConfig, device: &str) -> ModelSpec {
    ModelSpec {
        dir: cfg.model.clone(),
        device: device.to_string(),
        dtype: cfg.dtype.clone(),
        template_args: cfg
            .template_args
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// Checks an experiment file and every input it names against its model, running nothing.
pub fn check(file: &Path, progress: &dyn Progress) -> Result<CheckedExperiment> {
    let config = ExperimentConfig::load(file)?;
    let ck = model_spec(&config, "cpu").open(progress)?;
    let setup = Setup::load(&config, &ck).with_context(|| file.display().to_string())?;
    Ok(CheckedExperiment {
        detect_prompts: setup.detect_prompts,
        conditions: setup.conditions(&config),
        config,
    })
}

/// Runs an experiment file and writes its report; `stop` ends it after the current step with
/// a partial report (an old report in the way stays until the new one is done).
pub fn run(
    args: &ExperimentRun,
    progress: &dyn Progress,
    stop: &CancelFlag,
) -> Result<ExperimentOutcome> {
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let cfg = ExperimentConfig::load(&args.file)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("reports").join(slug(&cfg.name)));
    check_out(&out, args.overwrite)?;
    let ck = model_spec(&cfg, &args.device).open(progress)?;
    let setup = Setup::load(&cfg, &ck).with_context(|| args.file.display().to_string())?;
    if stop.is_cancelled() {
        // Stopped while loading: nothing written, the old report untouched.
        return Ok(ExperimentOutcome {
            out,
            ended: Ended::BeforeWriting,
        });
    }
    // Everything is checked. An old report stays in place until the new one is complete (or
    // cancelled, and so complete but partial): the run writes beside it and then swaps.
    let replacing = out.join(REPORT_MARKER).is_file();
    let dir = if replacing {
        staging_dir(&out)
    } else {
        out.clone()
    };
    prepare_out(&dir)?;
    let run = Conduct {
        args,
        cfg: &cfg,
        ck: &ck,
        setup: &setup,
        dir: &dir,
        out: &out,
        progress,
        stop,
    };
    match (run.conduct(), replacing) {
        (Ok(outcome), true) => replace_report(&dir, &out).map(|()| outcome),
        (Err(e), true) => {
            let _ = std::fs::remove_dir_all(&dir);
            Err(e)
        }
        (result, false) => result,
    }
}

/// One run in progress: its inputs, checked, and where it writes.
struct Conduct<'a> {
    args: &'a ExperimentRun,
    cfg: &'a ExperimentConfig,
    ck: &'a Checkpoint,
    setup: &'a Setup,
    /// Where the report is written (a staging folder when an old report is replaced).
    dir: &'a Path,
    /// The report folder as the user named it.
    out: &'a Path,
    progress: &'a dyn Progress,
    stop: &'a CancelFlag,
}

impl Conduct<'_> {
    /// Runs the experiment, writing its report into `dir`.
    fn conduct(&self) -> Result<ExperimentOutcome> {
        let Conduct {
            args,
            cfg,
            ck,
            setup,
            dir,
            out,
            progress,
            stop,
        } = *self;
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
            progress,
            stop,
        )?;
        let mut report = Report::new(cfg, dir, setup.conditions(cfg));
        if !recorded.complete() {
            report.note(format!(
            "Interrupted while recording the detection set ({} of {} prompts); nothing was steered.",
            recorded.done, recorded.total
        ));
            report.write(false)?;
            return Ok(ExperimentOutcome {
                out: out.to_path_buf(),
                ended: Ended::InDetection,
            });
        }
        // The ranking runs to its end once started; the flag is checked between conditions.
        let ranking = rank(
            cfg,
            &detect_dir,
            ck,
            args.batch,
            progress,
            &CancelFlag::new(),
        )?;
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
        progress.begin("steering", Some(setup.conditions(cfg) as u64), "conditions");
        let runner = Runner {
            ck,
            setup,
            batch: args.batch,
            resamples: args.resamples,
            seed: cfg.seed,
            never: CancelFlag::new(),
        };
        progress.note("baseline");
        let quality = runner.perplexity(&RoutingPolicy::new())?;
        report.set_baseline_quality(quality);
        for e in &cfg.evals {
            if cfg.arms.iter().any(|a| a.eval == e.name) {
                let m = runner.measure(&e.name, &RoutingPolicy::new())?;
                report.set_baseline(&e.name, m);
            }
        }
        progress.advance(1);
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
                    progress.advance(1 + cfg.sweep.random_draws as u64);
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
                    if stop.is_cancelled() {
                        interrupted = true;
                        break 'arms;
                    }
                    progress.note(&format!("{} N={size} {}", arm.name, selection.label(draw)));
                    let profile = steering_profile(cfg, arm, &set, size, selection, draw)?;
                    let policy = profile
                        .to_policy(&format!("arm {}", arm.name), ck.model.config())
                        .with_context(|| format!("[[arm]] {:?}", arm.name))?;
                    if selection == Selection::Top {
                        let profiles = dir.join("profiles");
                        std::fs::create_dir_all(&profiles)
                            .with_context(|| format!("creating {}", profiles.display()))?;
                        let name = format!("{}-top{size}.toml", slug(&arm.name));
                        save_profile(&profile, &profiles.join(name))?;
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
                    progress.advance(1);
                }
            }
        }
        progress.end();
        if interrupted {
            report.note(
                "Interrupted (Ctrl-C); the numbers above are the conditions finished by then."
                    .into(),
            );
        }
        report.write(!interrupted)?;
        Ok(ExperimentOutcome {
            out: out.to_path_buf(),
            ended: Ended::Conditions {
                complete: !interrupted,
                verdicts: report.verdicts(),
            },
        })
    }
}

/// The ranking table of the detection statistic over the detection records.
fn rank(
    cfg: &ExperimentConfig,
    records: &Path,
    ck: &Checkpoint,
    batch: usize,
    progress: &dyn Progress,
    stop: &CancelFlag,
) -> Result<Table> {
    let d = &cfg.detect;
    if d.statistic == "attribution" {
        let prompts = prompts_with_label(&d.prompts, d.label.as_deref()).context("[detect]")?;
        let pairs = scored_pairs(ck, &prompts, d.target.as_deref(), &d.prompts)?;
        return Ok(attribution_ranking(ck, &pairs, batch, progress, stop)?.0);
    }
    let rec = Records::open(records)?;
    let positions = d
        .positions
        .parse()
        .map_err(|e: String| input_error!("[detect] positions: {e}"))?;
    let (b, c) = (
        d.behaviour.as_deref().unwrap_or_default(),
        d.control.as_deref().unwrap_or_default(),
    );
    stage(progress, &format!("computing {}", d.statistic), || {
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
    /// Conditions are never stopped halfway; the run checks its flag between them.
    never: CancelFlag,
}

/// Per-prompt outcomes of each metric of one evaluation set under one policy, with estimates.
pub struct Measured {
    /// `(metric, per-prompt values, estimate)`.
    pub metrics: Vec<(String, Vec<f64>, Estimate)>,
}

impl Runner<'_> {
    fn evaluator<'b>(&'b self, policy: &'b RoutingPolicy, max_tokens: usize) -> Evaluator<'b> {
        Evaluator {
            ck: self.ck,
            policy,
            max_tokens,
            batch: self.batch,
            progress: &Silent,
            stop: &self.never,
        }
    }

    fn measure(&self, eval: &str, policy: &RoutingPolicy) -> Result<Measured> {
        let e = &self.setup.evals[eval];
        let ev = self.evaluator(policy, e.max_tokens);
        let mut outputs = None;
        let mut metrics = Vec::new();
        for (name, metric) in &e.metrics {
            let Values::PerPrompt(values) = ev.values(metric, &e.set, &mut outputs)? else {
                bail!("[[eval]] {eval:?}: metric {name} has no value per prompt");
            };
            let est = bootstrap_mean(&values, self.resamples, 0.95, self.seed);
            metrics.push((name.clone(), values, est));
        }
        Ok(Measured { metrics })
    }

    fn perplexity(&self, policy: &RoutingPolicy) -> Result<Estimate> {
        let pairs = self.evaluator(policy, 0).nll_pairs(&self.setup.quality)?;
        Ok(perplexity(&pairs, self.resamples, 0.95, self.seed))
    }
}
