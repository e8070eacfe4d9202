//! The inference thread: it owns the model, so the UI thread never blocks on a forward pass.
//! The UI sends [`Job`]s and polls [`Event`]s; a wake-up callback asks the window to repaint
//! when an event arrives.

use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use candle_core::DType;
use moescope_engine::{
    trace_batch_streaming, CancelFlag, Checkpoint, GenerateOptions, ModelConfig, RoutingPolicy,
};

use moescope_analysis::Records;

use moescope_workbench::forcing::{teacher_force, ForcedToken};
use moescope_workbench::generation::{encode_prompt, Exchange, PromptText};
use moescope_workbench::{ModelSpec, Silent, WorkbenchError};

use crate::basis::GenerationSettings;
use crate::error::chain;
use crate::recording::{expert_page, sequence_view, ExpertPage};
use crate::run_view::RunView;
use crate::set_work::{run_rank_job, run_set_job, RankJob, SetJob, SetOutcome, SetProgress};

/// A generation to run: unsteered, and steered when a policy is given.
#[derive(Debug, Clone)]
pub struct GenerateJob {
    /// The user's text.
    pub prompt: String,
    /// Send it through the checkpoint's chat template as a user message.
    pub chat: bool,
    /// The chat's earlier turns, before the message (read with the chat template only).
    pub earlier: Vec<Exchange>,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// System message, sampling and stop strings.
    pub settings: GenerationSettings,
    /// The steered run's policy (already checked against the model); `None` runs baseline only.
    pub steered: Option<RoutingPolicy>,
    /// Raised by the UI's cancel button.
    pub cancel: CancelFlag,
}

/// What the UI asks for.
#[derive(Debug)]
pub enum Job {
    /// Generate and trace.
    Generate(GenerateJob),
    /// Read one sequence of a recording.
    Browse(Arc<Records>, u32),
    /// Read the page of (layer, expert) from a recording.
    ExpertPage(Arc<Records>, usize, usize),
    /// Record, evaluate or attribute over a prompt set.
    Set(Box<SetJob>),
    /// Rank a recording's experts by a statistic.
    Rank(Box<RankJob>),
}

/// Which of the two runs of a job an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// The unsteered model.
    Baseline,
    /// The model under the steering list.
    Steered,
}

/// What the worker reports.
#[derive(Debug)]
pub enum Event {
    /// The model is loaded and ready.
    Loaded(Box<ModelSummary>),
    /// A run's text so far.
    Partial(Which, String),
    /// A run finished (or was cancelled) with its routing.
    Finished(Which, Box<RunView>),
    /// The baseline's text scored by the steered model (teacher forcing), per generated token.
    Forced(Vec<ForcedToken>),
    /// Every run of the job is done.
    JobDone {
        /// Whether the user cancelled it.
        cancelled: bool,
    },
    /// A recorded sequence, read.
    Browsed(Box<RunView>),
    /// The page of an expert read from a recording.
    ExpertPage(Box<ExpertPage>),
    /// A prompt-set task's progress.
    SetProgress(SetProgress),
    /// A prompt-set task finished.
    SetDone(SetOutcome),
    /// Something failed; the message names what and how to fix it.
    Failed(String),
}

/// What the UI needs to know about the loaded model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSummary {
    /// The checkpoint folder.
    pub dir: PathBuf,
    /// The dtype its weights were loaded in.
    pub dtype: DType,
    /// Its configuration (layers, experts, top-k), for validating steering.
    pub config: ModelConfig,
    /// Whether it has a chat template.
    pub has_chat_template: bool,
}

/// Handle to the inference thread.
pub struct Worker {
    jobs: Sender<Job>,
    events: Receiver<Event>,
    _thread: JoinHandle<()>,
}

impl Worker {
    /// Starts the thread, which loads the checkpoint `model` names first (on its device, in
    /// its dtype, as the CLI would); `wake` is called after every event (the app passes a
    /// repaint request).
    pub fn spawn(model: ModelSpec, wake: impl Fn() + Send + 'static) -> Self {
        let (jobs, job_rx) = channel::<Job>();
        let (event_tx, events) = channel::<Event>();
        let thread = std::thread::spawn(move || {
            let send = |e: Event| {
                let _ = event_tx.send(e);
                wake();
            };
            let ck: Checkpoint = match model.open(&Silent) {
                Ok(ck) => ck,
                Err(e) => {
                    send(Event::Failed(format!(
                        "could not load the model: {}",
                        chain(&e)
                    )));
                    return;
                }
            };
            send(Event::Loaded(Box::new(ModelSummary {
                dir: ck.dir.clone(),
                dtype: ck.model.dtype(),
                config: ck.model.config().clone(),
                has_chat_template: ck.codec.has_chat_template(),
            })));
            while let Ok(job) = job_rx.recv() {
                match job {
                    Job::Generate(job) => run_generation(&ck, &job, &send),
                    Job::Browse(records, seq) => match sequence_view(&records, seq) {
                        Ok(v) => send(Event::Browsed(Box::new(v))),
                        Err(e) => send(Event::Failed(e.to_string())),
                    },
                    Job::ExpertPage(records, layer, expert) => {
                        match expert_page(&records, layer, expert, 8) {
                            Ok(page) => send(Event::ExpertPage(Box::new(page))),
                            Err(e) => send(Event::Failed(e.to_string())),
                        }
                    }
                    Job::Rank(job) => {
                        let progress = |p| send(Event::SetProgress(p));
                        match run_rank_job(&job, &progress) {
                            Ok(outcome) => send(Event::SetDone(outcome)),
                            Err(e) => send(Event::Failed(chain(&e))),
                        }
                    }
                    Job::Set(job) => {
                        let progress = |p| send(Event::SetProgress(p));
                        match run_set_job(&ck, &job, &progress) {
                            Ok(outcome) => send(Event::SetDone(outcome)),
                            Err(WorkbenchError::Cancelled) => {
                                send(Event::JobDone { cancelled: true })
                            }
                            Err(e) => send(Event::Failed(chain(&e))),
                        }
                    }
                }
            }
        });
        Self {
            jobs,
            events,
            _thread: thread,
        }
    }

    /// Queues a job; `false` when the thread has stopped (the model failed to load).
    pub fn submit(&self, job: Job) -> bool {
        self.jobs.send(job).is_ok()
    }

    /// Events that arrived since the last call.
    pub fn poll(&self) -> Vec<Event> {
        self.events.try_iter().collect()
    }
}

/// Runs the baseline and, when asked, the steered generation, reporting as it goes.
fn run_generation(ck: &Checkpoint, job: &GenerateJob, send: &impl Fn(Event)) {
    let text = if job.chat {
        PromptText::Chat {
            system: job.settings.system_message(),
            earlier: &job.earlier,
            user: &job.prompt,
        }
    } else {
        PromptText::Raw(&job.prompt)
    };
    let prompt = match encode_prompt(&ck.codec, text) {
        Ok((_, p)) if !p.is_empty() => p,
        Ok(_) => {
            send(Event::Failed("the prompt is empty; type some text".into()));
            send(Event::JobDone { cancelled: false });
            return;
        }
        Err(e) => {
            send(Event::Failed(e.to_string()));
            send(Event::JobDone { cancelled: false });
            return;
        }
    };
    let opts = GenerateOptions {
        max_new_tokens: job.max_tokens,
        temperature: job.settings.temperature,
        top_p: job.settings.top_p,
        seed: job.settings.seed,
        stop_strings: job.settings.stop_strings(),
        cancel: Some(job.cancel.clone()),
        ..Default::default()
    };
    let baseline = RoutingPolicy::new();
    // The baseline's generated tokens, to score under the steering once both runs are done.
    let mut baseline_tokens: Option<Vec<u32>> = None;
    let runs = [
        (Which::Baseline, Some(&baseline)),
        (Which::Steered, job.steered.as_ref()),
    ];
    for (which, policy) in runs {
        let Some(policy) = policy else { continue };
        if job.cancel.is_cancelled() {
            break;
        }
        let mut so_far = Vec::new();
        let traced = trace_batch_streaming(
            &ck.model,
            Some(&ck.codec),
            std::slice::from_ref(&prompt),
            &opts,
            policy,
            |_, t| {
                so_far.push(t);
                if let Ok(s) = ck.codec.decode(&so_far) {
                    send(Event::Partial(which, s));
                }
            },
        );
        match traced {
            Ok(traces) => {
                if let Some(t) = traces.first() {
                    if which == Which::Baseline {
                        baseline_tokens = Some(t.tokens[t.prompt_len..].to_vec());
                    }
                    send(Event::Finished(
                        which,
                        Box::new(RunView::from_trace(t, &ck.codec)),
                    ));
                }
            }
            Err(e) => {
                send(Event::Failed(format!("generation failed: {e}")));
                break;
            }
        }
    }
    if let (Some(policy), Some(tokens), false) =
        (&job.steered, &baseline_tokens, job.cancel.is_cancelled())
    {
        if !tokens.is_empty() {
            match teacher_force(&ck.model, policy, &prompt, tokens) {
                Ok(forced) => send(Event::Forced(forced)),
                Err(e) => send(Event::Failed(format!(
                    "teacher forcing failed: {}",
                    chain(&e)
                ))),
            }
        }
    }
    send(Event::JobDone {
        cancelled: job.cancel.is_cancelled(),
    });
}
