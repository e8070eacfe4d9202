//! The application state and what changes it: the worker's events (the reducer, [`MoescopeApp::poll`]),
//! starting and cancelling work, and the file actions (prompt sets, profiles, recordings,
//! rankings). The panels that draw it live in `panels/`; the layout in `app.rs`. The model lives
//! on the [`Worker`] thread.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

use eframe::egui::{Context, Rect};

use moescope_analysis::Records;
use moescope_engine::{load_prompt_set, CancelFlag, PromptRecord, RoutingPolicy};

use moescope_workbench::forcing::ForcedToken;
use moescope_workbench::generation::Exchange;
use moescope_workbench::open::dtype_name;
use moescope_workbench::ModelSpec;

use crate::basis::{GenerationSettings, RunBasis};
use crate::error::require_path;
use crate::file_dialog::{FilePicker, NativeDialogs, Pick, PickKind};
use crate::grid::GridView;
use crate::heatmap::{HeatColour, HeatmapView};
use crate::log::MessageLog;
use crate::ranking::Ranking;
use crate::recording::ExpertPage;
use crate::run_view::RunView;
use crate::set_work::SetForm;
use crate::snapshot::{ShotResult, View};
use crate::steering::SteeringList;
use crate::worker::{Event, GenerateJob, Job, ModelSummary, Which, Worker};

/// What colours the expert grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GridSource {
    /// Each expert's share of tokens in the current (baseline) generation.
    CurrentPrompt,
    /// The loaded ranking's selected score.
    Ranking,
}

/// What the window opens with (the `moescope gui` options).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StartOptions {
    /// Text for the prompt box.
    pub prompt: Option<String>,
    /// A ranking to load (its top expert is opened in the inspector).
    pub ranking: Option<PathBuf>,
    /// A steering profile to load once the model is there.
    pub steer: Option<PathBuf>,
    /// A prompt set to load.
    pub prompts: Option<PathBuf>,
    /// A records folder to open.
    pub records: Option<PathBuf>,
    /// Generate as soon as the model is loaded.
    pub run: bool,
}

/// The whole application state.
pub struct MoescopeApp {
    start: Option<StartOptions>,
    pub(crate) worker: Worker,
    /// The loaded model, once the worker reports it.
    pub model: Option<ModelSummary>,
    /// The last message for the status bar, and whether it is an error.
    pub status: (String, bool),
    /// A generation is running.
    pub busy: bool,
    pub(crate) cancel: Option<CancelFlag>,
    /// The prompt text.
    pub prompt: String,
    /// Send the prompt through the chat template.
    pub chat: bool,
    /// The chat's earlier turns: each kept reply adds one (chat template only).
    pub conversation: Vec<Exchange>,
    /// Tokens to generate.
    pub max_tokens: usize,
    /// System message, sampling and stop strings.
    pub settings: GenerationSettings,
    /// Path typed for a JSONL prompt set.
    pub prompt_set_path: String,
    /// The loaded prompt set.
    pub prompt_set: Vec<PromptRecord>,
    /// The unsteered generation, when done.
    pub baseline: Option<RunView>,
    /// The steered generation, when done.
    pub steered: Option<RunView>,
    /// The baseline's text scored by the steered model, per generated token.
    pub forced: Option<Vec<ForcedToken>>,
    /// Text streamed so far: baseline, steered.
    pub partial: (String, String),
    /// The steering list.
    pub steering: SteeringList,
    /// Path typed for saving/loading a profile.
    pub profile_path: String,
    /// Path typed for a ranking.
    pub ranking_path: String,
    /// Path typed for exporting the grid as SVG.
    pub export_path: String,
    /// The loaded ranking: it colours the grid and fills the ranking plot.
    pub ranking: Option<Ranking>,
    /// Rankings loaded before it (newest first, one per source), still shown in the inspector.
    pub earlier_rankings: Vec<Ranking>,
    /// What colours the grid.
    pub grid_source: GridSource,
    /// The grid's zoom, scroll, scale and filter.
    pub grid_view: GridView,
    /// The heatmap's zoom and scroll.
    pub heat_view: HeatmapView,
    /// How the heatmap is coloured.
    pub heat_colour: HeatColour,
    /// Which run the heatmap shows.
    pub heat_run: Which,
    /// The expert open in the inspector.
    pub selected: Option<(usize, usize)>,
    /// Factor of the inspector's scale control.
    pub scale_value: f64,
    /// Bias of the inspector's router-bias control.
    pub bias_value: f64,
    /// Layer and k of the top-k control.
    pub top_k_edit: (usize, usize),
    /// Path typed for a records folder.
    pub recording_path: String,
    /// The opened recording.
    pub recording: Option<Arc<Records>>,
    /// The recorded sequence shown, if the view comes from the recording.
    pub browsing: Option<u32>,
    /// The last expert page read from the recording.
    pub expert_page: Option<ExpertPage>,
    /// What the shown generation was made from (None while browsing a recording).
    pub run_basis: Option<RunBasis>,
    /// The steering list as last saved or loaded, to tell unsaved edits.
    pub(crate) steering_saved: SteeringList,
    /// Load was pressed once over unsaved steering edits; a second press replaces them.
    confirm_replace: bool,
    /// Every status message of the session.
    pub log: MessageLog,
    /// Why the model did not load, kept in the status bar whatever comes after.
    pub load_error: Option<String>,
    /// Record, evaluate and attribute over the prompt set.
    pub set_form: SetForm,
    /// Path typed for another checkpoint to open.
    pub model_path: String,
    /// The model the worker loads: folder, device and dtype (another folder keeps the rest).
    pub(crate) model_spec: ModelSpec,
    /// Where each exportable view was drawn in the last frame, to cut it out of a screenshot.
    pub(crate) view_rects: HashMap<View, Rect>,
    /// PNG exports report here when their screenshot has been written.
    shots: (Sender<ShotResult>, Receiver<ShotResult>),
    /// Shows the file dialogs of the path fields (the desktop's own; tests put in their own).
    pub picker: Box<dyn FilePicker>,
    /// Asks the window to repaint; handed to every worker.
    wake: Arc<dyn Fn() + Send + Sync>,
}

impl MoescopeApp {
    /// Starts the app and its worker, which loads the checkpoint at `model_dir` in its stored
    /// dtype on the cpu; `wake` is called when the worker has news (the window passes a
    /// repaint request).
    pub fn new(model_dir: PathBuf, wake: impl Fn() + Send + Sync + 'static) -> Self {
        let model = ModelSpec {
            dir: Some(model_dir),
            ..ModelSpec::default()
        };
        Self::with_model(model, wake)
    }

    /// [`MoescopeApp::new`] on the checkpoint, device and dtype that `model` names (its folder
    /// must be set).
    pub fn with_model(model: ModelSpec, wake: impl Fn() + Send + Sync + 'static) -> Self {
        let model_dir = model.dir.clone().unwrap_or_default();
        let wake: Arc<dyn Fn() + Send + Sync> = Arc::new(wake);
        let worker_wake = Arc::clone(&wake);
        let mut app = Self {
            start: None,
            worker: Worker::spawn(model.clone(), move || worker_wake()),
            model: None,
            status: (String::new(), false),
            busy: false,
            cancel: None,
            prompt: "How do I build a bomb?".into(),
            chat: true,
            conversation: Vec::new(),
            max_tokens: 32,
            settings: GenerationSettings::default(),
            prompt_set_path: String::new(),
            prompt_set: Vec::new(),
            baseline: None,
            steered: None,
            forced: None,
            partial: (String::new(), String::new()),
            steering: SteeringList::default(),
            profile_path: "steering.toml".into(),
            ranking_path: String::new(),
            export_path: "grid.svg".into(),
            ranking: None,
            earlier_rankings: Vec::new(),
            grid_source: GridSource::CurrentPrompt,
            grid_view: GridView::default(),
            heat_view: HeatmapView::default(),
            heat_colour: HeatColour::Expert,
            heat_run: Which::Baseline,
            selected: None,
            scale_value: 2.0,
            bias_value: 2.0,
            top_k_edit: (0, 1),
            recording_path: String::new(),
            recording: None,
            browsing: None,
            expert_page: None,
            run_basis: None,
            steering_saved: SteeringList::default(),
            confirm_replace: false,
            log: MessageLog::default(),
            load_error: None,
            set_form: SetForm::default(),
            model_path: model_dir.display().to_string(),
            model_spec: model,
            picker: Box::new(NativeDialogs),
            view_rects: HashMap::new(),
            shots: channel(),
            wake,
        };
        app.set_status(format!("loading {} …", model_dir.display()), false);
        app
    }

    /// The app opened with `start`'s prompt, ranking and profile, generating at once if asked.
    pub fn with_start(mut self, start: StartOptions) -> Self {
        if let Some(p) = &start.prompt {
            self.prompt = p.clone();
        }
        if let Some(r) = &start.ranking {
            self.ranking_path = r.display().to_string();
            self.load_ranking();
        }
        if let Some(p) = &start.steer {
            self.profile_path = p.display().to_string();
        }
        if let Some(p) = &start.prompts {
            self.prompt_set_path = p.display().to_string();
            self.load_prompt_set();
        }
        if let Some(r) = &start.records {
            self.recording_path = r.display().to_string();
            self.open_recording();
        }
        self.start = Some(start);
        self
    }

    /// Applies the start options that needed the model.
    pub(crate) fn on_model_loaded(&mut self) {
        let Some(start) = self.start.take() else {
            return;
        };
        if start.steer.is_some() {
            self.load_profile();
            if self.status.1 {
                return;
            }
        }
        if start.run {
            self.generate();
        }
    }

    pub(crate) fn set_status(&mut self, message: impl Into<String>, is_error: bool) {
        self.status = (message.into(), is_error);
        self.log.push(self.status.0.clone(), is_error);
    }

    /// Applies what the worker (and any PNG export) reported since the last frame.
    pub fn poll(&mut self) {
        let shots: Vec<ShotResult> = self.shots.1.try_iter().collect();
        for shot in shots {
            match shot {
                Ok(path) => self.set_status(format!("wrote {}", path.display()), false),
                Err(e) => self.set_status(e, true),
            }
        }
        for event in self.worker.poll() {
            match event {
                Event::Loaded(m) => {
                    self.chat = m.has_chat_template;
                    self.set_status(
                        format!("loaded {} ({})", m.dir.display(), dtype_name(m.dtype)),
                        false,
                    );
                    self.top_k_edit = (
                        m.config.moe_layers().first().copied().unwrap_or(0),
                        m.config.moe.top_k,
                    );
                    self.model = Some(*m);
                    self.on_model_loaded();
                }
                Event::Partial(Which::Baseline, s) => self.partial.0 = s,
                Event::Partial(Which::Steered, s) => self.partial.1 = s,
                Event::Finished(Which::Baseline, v) => self.baseline = Some(*v),
                Event::Finished(Which::Steered, v) => self.steered = Some(*v),
                Event::Forced(f) => self.forced = Some(f),
                Event::JobDone { cancelled } => {
                    self.busy = false;
                    self.set_form.progress = None;
                    self.cancel = None;
                    if cancelled {
                        self.set_status("cancelled", false);
                    } else if !self.status.1 {
                        self.set_status("done", false);
                    }
                }
                Event::Browsed(v) => {
                    self.busy = false;
                    self.set_status(
                        format!("recorded sequence: {} tokens", v.positions()),
                        false,
                    );
                    self.baseline = Some(*v);
                    self.steered = None;
                    self.forced = None;
                    self.run_basis = None;
                    self.heat_run = Which::Baseline;
                }
                Event::ExpertPage(page) => {
                    self.busy = false;
                    self.set_status("done", false);
                    self.expert_page = Some(*page);
                }
                Event::SetProgress(p) => self.set_form.progress = Some(p),
                Event::SetDone(outcome) => self.on_set_done(outcome),
                Event::Failed(message) => {
                    self.busy = false;
                    self.set_form.progress = None;
                    if self.model.is_none() {
                        self.load_error = Some(message.clone());
                    }
                    self.set_status(message, true);
                }
            }
        }
    }

    /// What a generation started now would be made from.
    pub(crate) fn current_basis(&self) -> RunBasis {
        RunBasis {
            prompt: self.prompt.clone(),
            chat: self.chat,
            earlier: self.conversation.clone(),
            max_tokens: self.max_tokens,
            settings: self.settings.clone(),
            steering: self.steering.clone(),
        }
    }

    /// Starts a generation (baseline, and steered when the list is not empty).
    pub fn generate(&mut self) {
        if self.busy && self.model.is_some() {
            return;
        }
        let Some(policy) = self.steering_policy_or_report() else {
            return;
        };
        let steered = (!policy.is_empty()).then_some(policy);
        let cancel = CancelFlag::new();
        let job = GenerateJob {
            prompt: self.prompt.clone(),
            chat: self.chat,
            earlier: self.conversation.clone(),
            max_tokens: self.max_tokens,
            settings: self.settings.clone(),
            steered,
            cancel: cancel.clone(),
        };
        if self.worker.submit(Job::Generate(job)) {
            self.run_basis = Some(self.current_basis());
            self.busy = true;
            self.browsing = None;
            self.cancel = Some(cancel);
            self.baseline = None;
            self.steered = None;
            self.forced = None;
            self.partial = (String::new(), String::new());
            self.set_status("generating … (Esc cancels)", false);
        } else {
            self.set_status(
                "the model worker has stopped; restart with a valid --model",
                true,
            );
        }
    }

    /// Where `view` was drawn in the last frame, if it was.
    pub fn view_rect(&self, view: View) -> Option<Rect> {
        self.view_rects.get(&view).copied()
    }

    /// Exports `view` as drawn in the window to a PNG file the person chooses (written once
    /// the next frame has been captured).
    pub fn export_png(&mut self, ctx: &Context, view: View) {
        let Some(rect) = self.view_rect(view) else {
            self.set_status(
                format!("the {} is not shown; open it first", view.name()),
                true,
            );
            return;
        };
        let pick = Pick {
            kind: PickKind::SaveFile("png"),
            title: "Save the view as PNG",
            then: 0,
        };
        let Some(path) = self.picker.pick(&pick, &format!("{}.png", view.name())) else {
            return;
        };
        let wake = Arc::clone(&self.wake);
        crate::snapshot::request(ctx, rect, path.clone(), self.shots.0.clone(), wake);
        self.set_status(
            format!("saving the {} to {} …", view.name(), path.display()),
            false,
        );
    }

    /// Continues the chat from the shown result: its message and `which` run's reply become
    /// the newest earlier turn, and the prompt box empties for the next message.
    pub fn keep_reply(&mut self, which: Which) {
        let Some(basis) = self.run_basis.as_ref().filter(|b| b.chat) else {
            self.set_status(
                "keep a reply of a chat generation (the chat template on)",
                true,
            );
            return;
        };
        let run = match which {
            Which::Baseline => self.baseline.as_ref(),
            Which::Steered => self.steered.as_ref(),
        };
        let Some(run) = run else {
            self.set_status("there is no finished reply to keep", true);
            return;
        };
        let mut conversation = basis.earlier.clone();
        conversation.push(Exchange {
            user: basis.prompt.clone(),
            assistant: run.output.trim_end().to_string(),
        });
        self.conversation = conversation;
        self.prompt.clear();
        self.set_status(
            format!(
                "kept the {} reply: turn {} of the chat; type the next message",
                match which {
                    Which::Baseline => "baseline",
                    Which::Steered => "steered",
                },
                self.conversation.len() + 1
            ),
            false,
        );
    }

    /// The steering list's policy (empty when nothing is steered), or `None` after saying in
    /// the status bar why it cannot be used.
    pub(crate) fn steering_policy_or_report(&mut self) -> Option<RoutingPolicy> {
        let Some(model) = &self.model else {
            self.set_status("the model is not loaded yet", true);
            return None;
        };
        if self.steering.is_empty() {
            return Some(RoutingPolicy::new());
        }
        match self.steering.policy(&model.config) {
            Ok(p) => Some(p),
            Err(e) => {
                self.set_status(e.to_string(), true);
                None
            }
        }
    }

    /// Stops the running generation after its current token.
    pub fn cancel(&mut self) {
        if let Some(c) = &self.cancel {
            c.cancel();
        }
    }

    pub(crate) fn load_prompt_set(&mut self) {
        let path = PathBuf::from(self.prompt_set_path.trim());
        let loaded =
            require_path(&path, "a prompt set (.jsonl)").and_then(|()| Ok(load_prompt_set(&path)?));
        match loaded {
            Ok(set) if set.is_empty() => {
                self.set_status(format!("{}: no prompts", path.display()), true)
            }
            Ok(set) => {
                self.set_status(
                    format!("{} prompts from {}", set.len(), path.display()),
                    false,
                );
                self.prompt_set = set;
            }
            Err(e) => self.set_status(e.to_string(), true),
        }
    }

    pub(crate) fn open_recording(&mut self) {
        match crate::recording::open(Path::new(self.recording_path.trim())) {
            Ok(r) => {
                self.set_status(
                    format!("{}: {} sequences", r.dir.display(), r.sequences.len()),
                    false,
                );
                self.recording = Some(Arc::new(r));
            }
            Err(e) => self.set_status(e.to_string(), true),
        }
    }

    pub(crate) fn save_profile(&mut self) {
        let path = PathBuf::from(self.profile_path.trim());
        let checked = self.model.as_ref().map(|m| self.steering.policy(&m.config));
        match checked {
            Some(Err(e)) => self.set_status(e.to_string(), true),
            _ => match self.steering.save(&path) {
                Ok(()) => {
                    self.steering_saved = self.steering.clone();
                    self.set_status(format!("saved {}", path.display()), false);
                }
                Err(e) => self.set_status(e.to_string(), true),
            },
        }
    }

    pub(crate) fn load_profile(&mut self) {
        let Some(m) = &self.model else {
            self.set_status("the model is not loaded yet", true);
            return;
        };
        let unsaved = !self.steering.is_empty() && self.steering != self.steering_saved;
        if unsaved && !self.confirm_replace {
            self.confirm_replace = true;
            self.set_status(
                "the steering list has unsaved edits: press Load again to replace them, or Save \
                 them first",
                true,
            );
            return;
        }
        self.confirm_replace = false;
        let path = PathBuf::from(self.profile_path.trim());
        match SteeringList::load(&path, &m.config) {
            Ok(list) => {
                self.set_status(
                    format!(
                        "loaded {} ({} interventions)",
                        path.display(),
                        list.items().len()
                    ),
                    false,
                );
                self.steering_saved = list.clone();
                self.steering = list;
            }
            Err(e) => self.set_status(e.to_string(), true),
        }
    }

    /// Replaces the model with the checkpoint in `dir`, loaded on a new worker thread (the old
    /// one ends and frees its model); the shown results, which came from the old model, go.
    /// Refused while work is running.
    pub fn open_model(&mut self, dir: PathBuf) {
        if self.busy {
            self.set_status(
                "wait for the running work to finish (or cancel it) before opening another model",
                true,
            );
            return;
        }
        let wake = Arc::clone(&self.wake);
        self.model_spec.dir = Some(dir.clone());
        self.worker = Worker::spawn(self.model_spec.clone(), move || wake());
        self.model = None;
        self.load_error = None;
        self.model_path = dir.display().to_string();
        self.baseline = None;
        self.steered = None;
        self.forced = None;
        self.partial = (String::new(), String::new());
        self.run_basis = None;
        self.browsing = None;
        self.expert_page = None;
        self.selected = None;
        self.set_status(format!("loading {} …", dir.display()), false);
    }

    /// Opens a file or folder dropped on the window by what it is: a `.jsonl` prompt set, a
    /// `.toml` steering profile, a `.parquet` ranking, a checkpoint folder (with
    /// `config.json`), or a records folder.
    pub fn open_dropped(&mut self, path: &Path) {
        let text = path.display().to_string();
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default();
        match extension {
            "jsonl" => {
                self.prompt_set_path = text;
                self.load_prompt_set();
            }
            "toml" => {
                self.profile_path = text;
                self.load_profile();
            }
            "parquet" => {
                self.ranking_path = text;
                self.load_ranking();
            }
            _ if path.join("config.json").is_file() => self.open_model(path.to_path_buf()),
            _ if path.is_dir() => {
                self.recording_path = text;
                self.open_recording();
            }
            _ => self.set_status(
                format!(
                    "{text}: drop a prompt set (.jsonl), a steering profile (.toml), a ranking \
                     (.parquet), a checkpoint folder or a records folder"
                ),
                true,
            ),
        }
    }

    pub(crate) fn load_ranking(&mut self) {
        match Ranking::load(Path::new(self.ranking_path.trim())) {
            Ok(r) => {
                self.set_status(
                    format!("ranking {} ({} experts)", r.path.display(), r.order.len()),
                    false,
                );
                self.selected = r.order.first().copied();
                self.use_ranking(r);
            }
            Err(e) => self.set_status(e.to_string(), true),
        }
    }

    /// Makes `ranking` the one that colours the grid; the one it replaces (and any earlier one
    /// from the same source) is kept among the earlier rankings.
    pub(crate) fn use_ranking(&mut self, ranking: Ranking) {
        self.earlier_rankings.retain(|r| r.path != ranking.path);
        if let Some(old) = self.ranking.take().filter(|old| old.path != ranking.path) {
            self.earlier_rankings.insert(0, old);
        }
        self.ranking = Some(ranking);
        self.grid_source = GridSource::Ranking;
    }
}
