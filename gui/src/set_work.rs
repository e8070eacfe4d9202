//! Work over a whole prompt set or a recording, run on the worker thread through the workbench
//! library (the same functions as `moescope record`, `eval` and `analyze`): recording a set's
//! routing to a records folder, evaluating metrics with intervals for the unsteered and the
//! steered model, ranking experts by attribution, and ranking a recording's experts by a
//! statistic. Progress goes back to the UI as events.

use std::cell::Cell;
use std::path::PathBuf;

use std::sync::Arc;

use moescope_analysis::stats::npmi::TokenEvent;
use moescope_analysis::{Positions, Records, Table};
use moescope_engine::{CancelFlag, Checkpoint, RoutingPolicy};
use moescope_workbench::attribution::Attribution;
use moescope_workbench::eval::{evaluate, EvalRow, EvalSettings};
use moescope_workbench::prompts::prompts_with_label;
use moescope_workbench::rankings::Statistic;
use moescope_workbench::record::{record, RecordJob};
use moescope_workbench::{Metric, Progress, PromptSet, WorkbenchError};

/// What the panel's fields hold and what its last task produced.
#[derive(Debug, Clone)]
pub struct SetForm {
    /// Records folder typed for Record.
    pub records_out: String,
    /// Tokens generated after each prompt while recording.
    pub record_generate: usize,
    /// Metrics typed for Evaluate, comma-separated (`perplexity`, `answer`, `target-logprob`,
    /// `rules:FILE`).
    pub metrics: String,
    /// Continuation typed for Attribute; empty: each prompt's `target`.
    pub target: String,
    /// The running task's progress.
    pub progress: Option<SetProgress>,
    /// Random-experts controls beside the steered model in Evaluate.
    pub random_draws: usize,
    /// The last evaluation's estimates.
    pub eval_rows: Vec<EvalRow>,
    /// The statistic the recording panel ranks by.
    pub statistic: StatChoice,
    /// Behaviour label for the recording's statistic.
    pub behaviour: String,
    /// Control label for the recording's statistic.
    pub control: String,
    /// Which token positions the recording's statistic counts.
    pub positions: Positions,
}

impl Default for SetForm {
    fn default() -> Self {
        Self {
            records_out: "rec".into(),
            record_generate: 16,
            metrics: "perplexity".into(),
            target: String::new(),
            progress: None,
            random_draws: 3,
            eval_rows: Vec::new(),
            statistic: StatChoice::Contrast,
            behaviour: String::new(),
            control: String::new(),
            positions: Positions::All,
        }
    }
}

/// What to do with the prompt set.
#[derive(Debug, Clone)]
pub enum SetTask {
    /// Record its routing (greedy, `generate` tokens after each prompt) into `out`.
    Record {
        /// The records folder (must not hold a recording).
        out: PathBuf,
        /// Tokens generated after each prompt and recorded.
        generate: usize,
        /// Routing in effect while recording.
        policy: RoutingPolicy,
        /// The steering as text, stored with the recording.
        interventions: String,
    },
    /// Measure metrics for the unsteered model and, when `policy` is not empty, the steered one.
    Evaluate {
        /// The metrics.
        metrics: Vec<Metric>,
        /// The steered run's policy.
        policy: RoutingPolicy,
        /// Generation length, batch and bootstrap settings.
        settings: EvalSettings,
    },
    /// Rank every routed expert by what masking it costs `target` (or each prompt's own).
    Attribute {
        /// One continuation for all prompts; `None`: each prompt's `target`.
        target: Option<String>,
    },
}

/// A task over the prompt set in `prompts`.
#[derive(Debug, Clone)]
pub struct SetJob {
    /// The JSONL prompt set.
    pub prompts: PathBuf,
    /// What to do.
    pub task: SetTask,
    /// Raised by the UI's cancel button.
    pub cancel: CancelFlag,
}

/// A statistic the recording panel offers, with the labels it compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatChoice {
    /// Activation rate per expert.
    Frequency,
    /// Behaviour vs control labels, two-proportion z-test.
    Contrast,
    /// Behaviour vs control labels, risk difference.
    RiskDifference,
    /// nPMI between the behaviour label's tokens and each expert.
    Npmi,
}

impl StatChoice {
    /// Every choice, in menu order.
    pub const ALL: [StatChoice; 4] = [
        StatChoice::Frequency,
        StatChoice::Contrast,
        StatChoice::RiskDifference,
        StatChoice::Npmi,
    ];

    /// The name the CLI gives it (`moescope analyze NAME`).
    pub fn name(self) -> &'static str {
        match self {
            StatChoice::Frequency => "freq",
            StatChoice::Contrast => "contrast",
            StatChoice::RiskDifference => "rd",
            StatChoice::Npmi => "npmi",
        }
    }

    /// Whether it compares a behaviour label with a control label.
    pub fn needs_control(self) -> bool {
        matches!(self, StatChoice::Contrast | StatChoice::RiskDifference)
    }

    /// The workbench statistic over `behaviour` and `control`.
    pub fn statistic(self, behaviour: &str, control: &str) -> Statistic {
        match self {
            StatChoice::Frequency => Statistic::Frequency,
            StatChoice::Contrast => Statistic::Contrast {
                behaviour: behaviour.into(),
                control: control.into(),
            },
            StatChoice::RiskDifference => Statistic::RiskDifference {
                behaviour: behaviour.into(),
                control: control.into(),
            },
            StatChoice::Npmi => Statistic::Npmi {
                event: TokenEvent::Label(behaviour.into()),
                min_count: 5,
            },
        }
    }
}

/// A statistic to run over a recording.
#[derive(Debug, Clone)]
pub struct RankJob {
    /// The opened recording.
    pub records: Arc<Records>,
    /// What to compute.
    pub statistic: Statistic,
    /// Which token positions count.
    pub positions: Positions,
    /// How the ranking is named in the window.
    pub title: String,
}

/// Runs a statistic over a recording: its ranking table.
pub fn run_rank_job(
    job: &RankJob,
    progress: &dyn Fn(SetProgress),
) -> Result<SetOutcome, WorkbenchError> {
    let reporter = Reporter::new(progress);
    let exports = job.statistic.rank(&job.records, job.positions, &reporter)?;
    let table = exports
        .into_iter()
        .next()
        .map(|e| e.table)
        .unwrap_or_default();
    Ok(SetOutcome::Ranked {
        table: Box::new(table),
        title: job.title.clone(),
    })
}

/// Where a set task stands, for the progress bar.
#[derive(Debug, Clone, PartialEq)]
pub struct SetProgress {
    /// The stage running.
    pub what: String,
    /// Steps done.
    pub done: u64,
    /// Steps in the stage; `None` when unknown.
    pub total: Option<u64>,
}

/// What a set task produced.
#[derive(Debug)]
pub enum SetOutcome {
    /// Prompts recorded (of how many) into a folder.
    Recorded {
        /// The records folder.
        out: PathBuf,
        /// Prompts recorded.
        done: usize,
        /// Prompts in the set.
        total: usize,
    },
    /// The evaluation's estimates.
    Evaluated(Vec<EvalRow>),
    /// A recording's ranking by a statistic.
    Ranked {
        /// The ranking.
        table: Box<Table>,
        /// How it is named in the window.
        title: String,
    },
    /// The attribution ranking and the rank agreement of its two methods.
    Attributed {
        /// The ranking (ablation drop first).
        table: Box<Table>,
        /// Spearman's ρ between ablation and first-order drops.
        agreement: f64,
    },
}

/// [`Progress`] sent to the UI through `send`.
struct Reporter<'a> {
    send: &'a dyn Fn(SetProgress),
    stage: Cell<(u64, Option<u64>)>,
    what: std::cell::RefCell<String>,
}

impl<'a> Reporter<'a> {
    fn new(send: &'a dyn Fn(SetProgress)) -> Self {
        Self {
            send,
            stage: Cell::new((0, None)),
            what: Default::default(),
        }
    }

    fn report(&self) {
        let (done, total) = self.stage.get();
        (self.send)(SetProgress {
            what: self.what.borrow().clone(),
            done,
            total,
        });
    }
}

impl Progress for Reporter<'_> {
    fn begin(&self, what: &str, total: Option<u64>, unit: &str) {
        *self.what.borrow_mut() = format!("{what} {unit}").trim().to_string();
        self.stage.set((0, total));
        self.report();
    }

    fn advance(&self, steps: u64) {
        let (done, total) = self.stage.get();
        self.stage.set((done + steps, total));
        self.report();
    }

    fn note(&self, _: &str) {}

    fn end(&self) {}
}

/// Runs `job` on the model, reporting progress through `progress`.
pub fn run_set_job(
    ck: &Checkpoint,
    job: &SetJob,
    progress: &dyn Fn(SetProgress),
) -> Result<SetOutcome, WorkbenchError> {
    let reporter = Reporter::new(progress);
    match &job.task {
        SetTask::Record {
            out,
            generate,
            policy,
            interventions,
        } => {
            moescope_workbench::record::refuse_existing_recording(out, false)?;
            let r = record(
                &RecordJob {
                    ck,
                    prompts: &job.prompts,
                    out,
                    policy,
                    interventions: interventions.clone(),
                    generate: *generate,
                    full_probs: false,
                    batch: 8,
                    run_id: None,
                },
                &reporter,
                &job.cancel,
            )?;
            Ok(SetOutcome::Recorded {
                out: out.clone(),
                done: r.done,
                total: r.total,
            })
        }
        SetTask::Evaluate {
            metrics,
            policy,
            settings,
        } => {
            let set = PromptSet::load(&job.prompts, &ck.codec)?;
            let rows = evaluate(ck, &set, metrics, policy, settings, &reporter, &job.cancel)?;
            Ok(SetOutcome::Evaluated(rows))
        }
        SetTask::Attribute { target } => {
            let records = prompts_with_label(&job.prompts, None)?;
            let a = Attribution::run(
                ck,
                &records,
                target.as_deref(),
                &job.prompts,
                8,
                &reporter,
                &job.cancel,
            )?;
            Ok(SetOutcome::Attributed {
                agreement: a.agreement(),
                table: Box::new(a.table),
            })
        }
    }
}
