//! Work over a whole prompt set, run on the worker thread through the workbench library (the
//! same functions as `moescope record`, `eval` and `analyze attribute`): recording its routing
//! to a records folder, evaluating metrics with intervals for the unsteered and the steered
//! model, and ranking experts by attribution. Progress goes back to the UI as events.

use std::cell::Cell;
use std::path::PathBuf;

use moescope_analysis::Table;
use moescope_engine::{CancelFlag, Checkpoint, RoutingPolicy};
use moescope_workbench::attribution::Attribution;
use moescope_workbench::eval::{evaluate, EvalRow, EvalSettings};
use moescope_workbench::prompts::prompts_with_label;
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
    /// The last evaluation's estimates.
    pub eval_rows: Vec<EvalRow>,
}

impl Default for SetForm {
    fn default() -> Self {
        Self {
            records_out: "rec".into(),
            record_generate: 16,
            metrics: "perplexity".into(),
            target: String::new(),
            progress: None,
            eval_rows: Vec::new(),
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

impl Reporter<'_> {
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
    let reporter = Reporter {
        send: progress,
        stage: Cell::new((0, None)),
        what: Default::default(),
    };
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
