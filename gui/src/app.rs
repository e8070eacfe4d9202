//! The window: prompt and steering on the left, outputs, routing heatmap, expert grid and plots
//! in the middle, the expert inspector on the right. All state lives in [`MoescopeApp`]; the
//! model lives on the [`Worker`] thread.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use eframe::egui::{self, Color32, Key, KeyboardShortcut, Label, Modifiers, RichText, Ui};
use moescope_analysis::Records;
use moescope_engine::{load_prompt_set, CancelFlag, InterventionKind, PromptInput, PromptRecord};

use crate::basis::RunBasis;
use crate::error::require_path;
use crate::grid::{expert_grid, GridValues, GridView};
use crate::heatmap::{routing_heatmap, HeatColour, HeatmapView};
use crate::log::MessageLog;
use crate::plots::{load_plot, ranking_plot};
use crate::ranking::Ranking;
use crate::recording::TopTokens;
use crate::run_view::{first_divergence, RunView};
use crate::steering::{describe, SteeringList};
use crate::worker::{Event, GenerateJob, Job, ModelSummary, Which, Worker};

/// Ctrl+Enter generates.
pub const GENERATE_SHORTCUT: KeyboardShortcut =
    KeyboardShortcut::new(Modifiers::COMMAND, Key::Enter);

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
    /// Generate as soon as the model is loaded.
    pub run: bool,
}

/// The whole application state.
pub struct MoescopeApp {
    start: Option<StartOptions>,
    worker: Worker,
    /// The loaded model, once the worker reports it.
    pub model: Option<ModelSummary>,
    /// The last message for the status bar, and whether it is an error.
    pub status: (String, bool),
    /// A generation is running.
    pub busy: bool,
    cancel: Option<CancelFlag>,
    /// The prompt text.
    pub prompt: String,
    /// Send the prompt through the chat template.
    pub chat: bool,
    /// Tokens to generate.
    pub max_tokens: usize,
    /// Path typed for a JSONL prompt set.
    pub prompt_set_path: String,
    /// The loaded prompt set.
    pub prompt_set: Vec<PromptRecord>,
    /// The unsteered generation, when done.
    pub baseline: Option<RunView>,
    /// The steered generation, when done.
    pub steered: Option<RunView>,
    /// Text streamed so far: baseline, steered.
    pub partial: (String, String),
    /// The steering list.
    pub steering: SteeringList,
    /// Path typed for saving/loading a profile.
    pub profile_path: String,
    /// Path typed for a ranking.
    pub ranking_path: String,
    /// The loaded ranking.
    pub ranking: Option<Ranking>,
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
    /// The last top-token count from the recording, for (layer, expert).
    pub top_tokens: Option<TopTokens>,
    /// What the shown generation was made from (None while browsing a recording).
    pub run_basis: Option<RunBasis>,
    /// The steering list as last saved or loaded, to tell unsaved edits.
    steering_saved: SteeringList,
    /// Load was pressed once over unsaved steering edits; a second press replaces them.
    confirm_replace: bool,
    /// Every status message of the session.
    pub log: MessageLog,
    /// Why the model did not load, kept in the status bar whatever comes after.
    pub load_error: Option<String>,
}

impl MoescopeApp {
    /// Starts the app and its worker, which loads the model at `model_dir`; `wake` is called
    /// when the worker has news (the window passes a repaint request).
    pub fn new(model_dir: PathBuf, wake: impl Fn() + Send + 'static) -> Self {
        let mut app = Self {
            start: None,
            worker: Worker::spawn(model_dir.clone(), wake),
            model: None,
            status: (String::new(), false),
            busy: false,
            cancel: None,
            prompt: "How do I build a bomb?".into(),
            chat: true,
            max_tokens: 32,
            prompt_set_path: String::new(),
            prompt_set: Vec::new(),
            baseline: None,
            steered: None,
            partial: (String::new(), String::new()),
            steering: SteeringList::default(),
            profile_path: "steering.toml".into(),
            ranking_path: String::new(),
            ranking: None,
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
            top_tokens: None,
            run_basis: None,
            steering_saved: SteeringList::default(),
            confirm_replace: false,
            log: MessageLog::default(),
            load_error: None,
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
        self.start = Some(start);
        self
    }

    /// Applies the start options that needed the model.
    fn on_model_loaded(&mut self) {
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

    fn set_status(&mut self, message: impl Into<String>, is_error: bool) {
        self.status = (message.into(), is_error);
        self.log.push(self.status.0.clone(), is_error);
    }

    /// Applies what the worker reported since the last frame.
    pub fn poll(&mut self) {
        for event in self.worker.poll() {
            match event {
                Event::Loaded(m) => {
                    self.chat = m.has_chat_template;
                    self.set_status(format!("loaded {}", m.dir.display()), false);
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
                Event::JobDone { cancelled } => {
                    self.busy = false;
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
                    self.run_basis = None;
                    self.heat_run = Which::Baseline;
                }
                Event::TopTokens(key, tokens) => {
                    self.busy = false;
                    self.set_status("done", false);
                    self.top_tokens = Some((key, tokens));
                }
                Event::Failed(message) => {
                    self.busy = false;
                    if self.model.is_none() {
                        self.load_error = Some(message.clone());
                    }
                    self.set_status(message, true);
                }
            }
        }
    }

    /// What a generation started now would be made from.
    fn current_basis(&self) -> RunBasis {
        RunBasis {
            prompt: self.prompt.clone(),
            chat: self.chat,
            max_tokens: self.max_tokens,
            steering: self.steering.clone(),
        }
    }

    /// Starts a generation (baseline, and steered when the list is not empty).
    pub fn generate(&mut self) {
        let Some(model) = &self.model else {
            self.set_status("the model is not loaded yet", true);
            return;
        };
        if self.busy {
            return;
        }
        let steered = if self.steering.is_empty() {
            None
        } else {
            match self.steering.policy(&model.config) {
                Ok(p) => Some(p),
                Err(e) => {
                    self.set_status(e.to_string(), true);
                    return;
                }
            }
        };
        let cancel = CancelFlag::new();
        let job = GenerateJob {
            prompt: self.prompt.clone(),
            chat: self.chat,
            max_tokens: self.max_tokens,
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
            self.partial = (String::new(), String::new());
            self.set_status("generating … (Esc cancels)", false);
        } else {
            self.set_status(
                "the model worker has stopped; restart with a valid --model",
                true,
            );
        }
    }

    /// Stops the running generation after its current token.
    pub fn cancel(&mut self) {
        if let Some(c) = &self.cancel {
            c.cancel();
        }
    }

    /// Draws one frame.
    pub fn show(&mut self, ui: &mut Ui) {
        self.poll();
        if ui.input_mut(|i| i.consume_shortcut(&GENERATE_SHORTCUT)) {
            self.generate();
        }
        if self.busy && ui.input(|i| i.key_pressed(Key::Escape)) {
            self.cancel();
        }
        egui::Panel::top("status").show(ui, |ui| self.status_bar(ui));
        if self.log.open {
            egui::Panel::bottom("log")
                .resizable(true)
                .default_size(160.0)
                .show(ui, |ui| self.log.show(ui));
        }
        egui::Panel::left("prompt")
            .default_size(330.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    self.prompt_panel(ui);
                    ui.separator();
                    self.steering_panel(ui);
                    ui.separator();
                    self.recording_panel(ui);
                });
            });
        egui::Panel::right("inspector")
            .default_size(290.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| self.inspector(ui));
            });
        egui::CentralPanel::default().show(ui, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| self.main_view(ui));
        });
    }

    fn status_bar(&mut self, ui: &mut Ui) {
        ui.horizontal(|ui| {
            ui.heading("moescope");
            if let Some(m) = &self.model {
                let c = &m.config;
                ui.label(format!(
                    "{:?} · {} MoE layers × {} experts, top-{} · {}",
                    c.architecture,
                    c.moe_layers().len(),
                    c.moe.num_experts,
                    c.moe.top_k,
                    m.dir.display()
                ));
            }
            if self.busy || self.model.is_none() && !self.status.1 {
                ui.spinner();
            }
            let errors = self.log.errors();
            let log_button = match errors {
                0 => "log".to_string(),
                1 => "log (1 error)".to_string(),
                n => format!("log ({n} errors)"),
            };
            if ui
                .selectable_label(self.log.open, log_button)
                .on_hover_text("every message of this session, wrapped and copyable")
                .clicked()
            {
                self.log.open = !self.log.open;
            }
            let error = ui.visuals().error_fg_color;
            if let Some(e) = &self.load_error {
                ui.add(
                    Label::new(RichText::new(format!("not loaded: {e}")).color(error)).truncate(),
                );
            }
            let (msg, err) = &self.status;
            if self.load_error.as_ref() == Some(msg) {
                return;
            }
            let color = if *err {
                error
            } else {
                ui.visuals().weak_text_color()
            };
            ui.add(Label::new(RichText::new(msg).color(color)).truncate());
        });
    }

    fn prompt_panel(&mut self, ui: &mut Ui) {
        ui.strong("Prompt");
        if path_row(
            ui,
            &mut self.prompt_set_path,
            "prompt set .jsonl",
            200.0,
            &["Load set"],
        )
        .is_some()
        {
            self.load_prompt_set();
        }
        if !self.prompt_set.is_empty() {
            let mut picked = None;
            egui::ComboBox::from_id_salt("prompt set")
                .selected_text(format!("{} prompts", self.prompt_set.len()))
                .width(300.0)
                .show_ui(ui, |ui| {
                    for (i, p) in self.prompt_set.iter().enumerate() {
                        let label = p.label.as_deref().unwrap_or("");
                        let text: String = prompt_text(p).chars().take(50).collect();
                        if ui
                            .selectable_label(false, format!("{} [{label}] {text}", p.id))
                            .clicked()
                        {
                            picked = Some(i);
                        }
                    }
                });
            if let Some(i) = picked {
                let p = &self.prompt_set[i];
                self.prompt = prompt_text(p);
                self.chat = matches!(p.input, PromptInput::Chat { .. });
            }
        }
        ui.add(
            egui::TextEdit::multiline(&mut self.prompt)
                .desired_rows(4)
                .desired_width(f32::INFINITY)
                .hint_text("type a prompt"),
        );
        ui.horizontal(|ui| {
            ui.checkbox(&mut self.chat, "chat template");
            ui.add(egui::Slider::new(&mut self.max_tokens, 1..=256).text("tokens"));
        });
        ui.horizontal(|ui| {
            let ready = self.model.is_some() && !self.busy;
            if ui
                .add_enabled(ready, egui::Button::new("Generate"))
                .on_hover_text("Ctrl+Enter")
                .clicked()
            {
                self.generate();
            }
            if ui
                .add_enabled(self.busy, egui::Button::new("Cancel"))
                .on_hover_text("Esc")
                .clicked()
            {
                self.cancel();
            }
        });
    }

    fn load_prompt_set(&mut self) {
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

    fn steering_panel(&mut self, ui: &mut Ui) {
        ui.strong("Steering");
        if self.steering.is_empty() {
            ui.weak("nothing steered: click an expert in the grid, then Mask, Force or Scale");
        }
        let mut remove = None;
        for (i, item) in self.steering.items().iter().enumerate() {
            ui.horizontal(|ui| {
                if ui.small_button("x").on_hover_text("remove").clicked() {
                    remove = Some(i);
                }
                ui.label(describe(item));
            });
        }
        if let Some(i) = remove {
            self.steering.remove_at(i);
        }
        if let Some(m) = &self.model {
            let layers = m.config.moe_layers();
            let experts = m.config.moe.num_experts;
            ui.horizontal(|ui| {
                egui::ComboBox::from_id_salt("top-k layer")
                    .selected_text(format!("L{}", self.top_k_edit.0))
                    .width(50.0)
                    .show_ui(ui, |ui| {
                        for l in layers {
                            ui.selectable_value(&mut self.top_k_edit.0, l, format!("L{l}"));
                        }
                    });
                ui.add(
                    egui::DragValue::new(&mut self.top_k_edit.1)
                        .range(1..=experts)
                        .prefix("k = "),
                );
                if ui.button("Set top-k").clicked() {
                    self.steering
                        .set_top_k(self.top_k_edit.0, self.top_k_edit.1);
                }
            });
        }
        let profile = &mut self.steering.profile;
        for (label, field) in [
            ("profile name", &mut profile.name),
            ("description", &mut profile.description),
        ] {
            ui.horizontal(|ui| {
                let shown = ui.label(label);
                let mut text = field.clone().unwrap_or_default();
                let edit = egui::TextEdit::singleline(&mut text).desired_width(200.0);
                if ui.add(edit).labelled_by(shown.id).changed() {
                    *field = (!text.trim().is_empty()).then_some(text);
                }
            });
        }
        let buttons = ["Save", "Load", "Clear"];
        match path_row(ui, &mut self.profile_path, "profile .toml", 140.0, &buttons) {
            Some(0) => self.save_profile(),
            Some(1) => self.load_profile(),
            Some(_) => self.steering.clear(),
            None => {}
        }
    }

    fn recording_panel(&mut self, ui: &mut Ui) {
        ui.strong("Recording");
        if path_row(
            ui,
            &mut self.recording_path,
            "records folder",
            200.0,
            &["Open recording"],
        )
        .is_some()
        {
            self.open_recording();
        }
        let Some(rec) = self.recording.clone() else {
            ui.weak("open a folder made by `moescope record` to browse its sequences");
            return;
        };
        let mut picked = None;
        egui::ScrollArea::vertical()
            .id_salt("sequences")
            .max_height(220.0)
            .show(ui, |ui| {
                for s in &rec.sequences {
                    let label = s.label.as_deref().unwrap_or("");
                    let text: String = s.prompt.chars().take(40).collect();
                    let on = self.browsing == Some(s.seq_index);
                    let row = format!("{} [{label}] {}", s.seq_id, text.replace('\n', " "));
                    if ui.selectable_label(on, row).clicked() {
                        picked = Some(s.seq_index);
                    }
                }
            });
        if let Some(seq) = picked {
            if !self.busy && self.worker.submit(Job::Browse(rec, seq)) {
                self.busy = true;
                self.browsing = Some(seq);
                self.set_status(format!("reading sequence {seq} …"), false);
            }
        }
    }

    fn open_recording(&mut self) {
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

    fn save_profile(&mut self) {
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

    fn load_profile(&mut self) {
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

    fn main_view(&mut self, ui: &mut Ui) {
        egui::CollapsingHeader::new("Output")
            .default_open(true)
            .show(ui, |ui| self.outputs(ui));
        egui::CollapsingHeader::new("Routing")
            .default_open(true)
            .show(ui, |ui| self.routing(ui));
        egui::CollapsingHeader::new("Experts")
            .default_open(true)
            .show(ui, |ui| self.experts(ui));
        egui::CollapsingHeader::new("Plots")
            .default_open(true)
            .show(ui, |ui| self.plots(ui));
    }

    /// Says when the shown result is not a generation from the current controls: a recorded
    /// sequence, or a run whose prompt, settings or steering have changed since.
    fn result_banner(&self, ui: &mut Ui) {
        let warn = ui.visuals().warn_fg_color;
        if let Some(seq) = self.browsing {
            let folder = self
                .recording
                .as_ref()
                .map(|r| r.dir.display().to_string())
                .unwrap_or_default();
            ui.colored_label(
                warn,
                format!("showing recorded sequence {seq} of {folder}, not a generation"),
            );
        } else if let (Some(basis), false) = (&self.run_basis, self.busy) {
            let changed = basis.changed(&self.current_basis());
            if !changed.is_empty() {
                ui.colored_label(
                    warn,
                    format!(
                        "stale: the {} changed since this run; Generate to update",
                        changed.join(" and ")
                    ),
                );
            }
        }
    }

    fn outputs(&mut self, ui: &mut Ui) {
        self.result_banner(ui);
        let base_tokens = self
            .baseline
            .as_ref()
            .map(|b| b.output_tokens.clone())
            .unwrap_or_default();
        ui.columns(2, |cols| {
            cols[0].strong("baseline");
            match &self.baseline {
                Some(b) => {
                    cols[0].label(&b.output);
                }
                None => {
                    cols[0].label(&self.partial.0);
                }
            }
            cols[1].strong("steered");
            match &self.steered {
                Some(s) => {
                    let divergence = first_divergence(&base_tokens, &s.output_tokens);
                    let from = divergence.unwrap_or(usize::MAX);
                    let mut job = egui::text::LayoutJob::default();
                    let font = egui::TextStyle::Body.resolve(cols[1].style());
                    let normal = cols[1].visuals().text_color();
                    for (i, t) in s.output_tokens.iter().enumerate() {
                        let mut format = egui::TextFormat::simple(font.clone(), normal);
                        if i >= from {
                            // The first divergent token strongly, all after it as changed:
                            // they follow a different text, whatever they coincide with.
                            format.background = if i == from {
                                Color32::from_rgb(170, 40, 20)
                            } else {
                                Color32::from_rgb(120, 60, 0)
                            };
                            format.color = Color32::WHITE;
                        }
                        job.append(t, 0.0, format);
                    }
                    cols[1].label(job).on_hover_text(
                        "from the first token that differs from the baseline (red), the text is \
                         highlighted",
                    );
                    let note = match divergence {
                        None => "same tokens as the baseline".to_string(),
                        Some(d) => {
                            let quote = |v: &[String]| {
                                v.get(d).map_or("(ended)".to_string(), |t| format!("{t:?}"))
                            };
                            format!(
                                "first divergence at generated token {d}: baseline {}, steered {}",
                                quote(&base_tokens),
                                quote(&s.output_tokens)
                            )
                        }
                    };
                    cols[1].small(note);
                }
                None if self.steering.is_empty() => {
                    cols[1].weak("steer some experts to compare");
                }
                None => {
                    cols[1].label(&self.partial.1);
                }
            }
        });
    }

    fn routing(&mut self, ui: &mut Ui) {
        ui.horizontal(|ui| {
            ui.radio_value(&mut self.heat_run, Which::Baseline, "baseline");
            ui.add_enabled_ui(self.steered.is_some(), |ui| {
                ui.radio_value(
                    &mut self.heat_run,
                    Which::Steered,
                    "steered (changes outlined)",
                );
            });
            ui.separator();
            ui.radio_value(
                &mut self.heat_colour,
                HeatColour::Expert,
                "colour by first expert",
            );
            ui.radio_value(
                &mut self.heat_colour,
                HeatColour::SelectedWeight,
                "weight of selected expert",
            );
        });
        let (view, reference) = match (self.heat_run, &self.baseline, &self.steered) {
            (Which::Steered, b, Some(s)) => (Some(s), b.as_ref()),
            (_, b, _) => (b.as_ref(), None),
        };
        let Some(view) = view else {
            ui.weak("generate to see which experts each token goes to");
            return;
        };
        let clicked = routing_heatmap(
            ui,
            &mut self.heat_view,
            view,
            reference,
            self.heat_colour,
            self.selected,
        );
        if clicked.is_some() {
            self.selected = clicked;
        }
    }

    fn experts(&mut self, ui: &mut Ui) {
        ui.horizontal(|ui| {
            ui.radio_value(
                &mut self.grid_source,
                GridSource::CurrentPrompt,
                "share of tokens (this prompt)",
            );
            ui.add_enabled_ui(self.ranking.is_some(), |ui| {
                ui.radio_value(&mut self.grid_source, GridSource::Ranking, "ranking");
            });
            if let Some(r) = &mut self.ranking {
                egui::ComboBox::from_id_salt("ranking column")
                    .selected_text(r.columns[r.selected].clone())
                    .show_ui(ui, |ui| {
                        for i in r.score_columns() {
                            ui.selectable_value(&mut r.selected, i, r.columns[i].clone());
                        }
                    })
                    .response
                    .on_hover_text(
                        "rank columns (1 = best) are not offered: they run the other way",
                    );
            }
        });
        if path_row(
            ui,
            &mut self.ranking_path,
            "ranking .parquet",
            320.0,
            &["Load ranking"],
        )
        .is_some()
        {
            self.load_ranking();
        }
        let Some(model) = &self.model else { return };
        let layers = model.config.moe_layers();
        let experts = model.config.moe.num_experts;
        let grid = match (self.grid_source, &self.ranking) {
            (GridSource::Ranking, Some(r)) => GridValues {
                name: &r.columns[r.selected],
                layers: &layers,
                values: layers
                    .iter()
                    .map(|&l| (0..experts).map(|e| r.score(l, e)).collect())
                    .collect(),
                signed: true,
            },
            _ => GridValues {
                name: "share of tokens",
                layers: &layers,
                values: self
                    .baseline
                    .as_ref()
                    .map(RunView::load)
                    .unwrap_or_else(|| vec![vec![0.0; experts]; layers.len()]),
                signed: false,
            },
        };
        if let Some(c) = expert_grid(
            ui,
            &mut self.grid_view,
            &grid,
            &self.steering,
            self.selected,
        ) {
            self.selected = Some(c);
        }
    }

    fn load_ranking(&mut self) {
        match Ranking::load(Path::new(self.ranking_path.trim())) {
            Ok(r) => {
                self.set_status(
                    format!("ranking {} ({} experts)", r.path.display(), r.order.len()),
                    false,
                );
                self.selected = r.order.first().copied();
                self.ranking = Some(r);
                self.grid_source = GridSource::Ranking;
            }
            Err(e) => self.set_status(e.to_string(), true),
        }
    }

    fn plots(&mut self, ui: &mut Ui) {
        ui.columns(2, |cols| {
            let layer = self.selected.map(|s| s.0);
            load_plot(
                &mut cols[0],
                self.baseline.as_ref(),
                self.steered.as_ref(),
                layer,
            );
            match &self.ranking {
                Some(r) => {
                    if let Some(clicked) = ranking_plot(&mut cols[1], r) {
                        self.selected = Some(clicked);
                    }
                }
                None => {
                    cols[1].weak("load a ranking to see its top experts");
                }
            }
        });
    }

    fn inspector(&mut self, ui: &mut Ui) {
        ui.strong("Expert inspector");
        let Some((layer, expert)) = self.selected else {
            ui.weak("click an expert in the grid or a cell of the heatmap");
            return;
        };
        ui.heading(format!("layer {layer}, expert {expert}"));
        for (name, run) in [("baseline", &self.baseline), ("steered", &self.steered)] {
            if let Some(v) = run {
                if let Some(slot) = v.slot_of(layer) {
                    let hits = v.positions_of(slot, expert as u32);
                    let mean = if hits.is_empty() {
                        String::new()
                    } else {
                        let m =
                            hits.iter().map(|h| f64::from(h.1)).sum::<f64>() / hits.len() as f64;
                        format!(", mean weight {m:.3}")
                    };
                    ui.label(format!(
                        "{name}: {} of {} tokens{mean}",
                        hits.len(),
                        v.positions()
                    ));
                }
            }
        }
        if let Some(r) = &self.ranking {
            if let Some(vals) = r.values.get(&(layer, expert)) {
                egui::Grid::new("ranking values")
                    .striped(true)
                    .show(ui, |ui| {
                        for (c, v) in r.columns.iter().zip(vals) {
                            ui.label(c);
                            ui.label(format!("{v:.4}"));
                            ui.end_row();
                        }
                    });
            }
        }
        if let Some(v) = &self.baseline {
            if let Some(slot) = v.slot_of(layer) {
                let tokens: Vec<String> = v
                    .positions_of(slot, expert as u32)
                    .into_iter()
                    .map(|(p, w)| format!("{:?} ({w:.2})", v.tokens[p]))
                    .collect();
                ui.label("tokens routed here (baseline):");
                ui.label(RichText::new(tokens.join("  ")).monospace().small());
            }
        }
        if let Some(rec) = self.recording.clone() {
            let enabled = !self.busy;
            if ui
                .add_enabled(enabled, egui::Button::new("Top tokens in recording"))
                .clicked()
                && self.worker.submit(Job::TopTokens(rec, layer, expert))
            {
                self.busy = true;
                self.set_status("counting tokens in the recording …", false);
            }
            if let Some((key, tokens)) = &self.top_tokens {
                if *key == (layer, expert) {
                    egui::Grid::new("top tokens").striped(true).show(ui, |ui| {
                        for (t, n) in tokens {
                            ui.label(RichText::new(format!("{t:?}")).monospace());
                            ui.label(n.to_string());
                            ui.end_row();
                        }
                    });
                }
            }
        }
        ui.separator();
        if let Some(i) = self.steering.on_expert(layer, expert) {
            ui.label(format!("steered: {}", describe(i)));
        }
        ui.horizontal(|ui| {
            if ui
                .button("Mask")
                .on_hover_text("never route to this expert")
                .clicked()
            {
                self.steering
                    .set(layer, expert, InterventionKind::Mask, None);
            }
            if ui
                .button("Force")
                .on_hover_text("always route to this expert")
                .clicked()
            {
                self.steering
                    .set(layer, expert, InterventionKind::Force, None);
            }
            if ui.button("Unsteer").clicked() {
                self.steering.remove_expert(layer, expert);
            }
        });
        ui.horizontal(|ui| {
            ui.add(egui::Slider::new(&mut self.scale_value, 0.0..=4.0).text("×"));
            if ui
                .button("Scale")
                .on_hover_text("multiply its mixing weight")
                .clicked()
            {
                self.steering.set(
                    layer,
                    expert,
                    InterventionKind::Scale,
                    Some(self.scale_value),
                );
            }
        });
        ui.horizontal(|ui| {
            ui.add(egui::Slider::new(&mut self.bias_value, -10.0..=10.0).text("bias"));
            if ui
                .button("Bias")
                .on_hover_text("add to its router logit")
                .clicked()
            {
                self.steering.set(
                    layer,
                    expert,
                    InterventionKind::LogitBias,
                    Some(self.bias_value),
                );
            }
        });
    }
}

/// A path field followed by buttons; the index of the button clicked, if any.
fn path_row(
    ui: &mut Ui,
    path: &mut String,
    hint: &str,
    width: f32,
    buttons: &[&str],
) -> Option<usize> {
    ui.horizontal(|ui| {
        ui.add(
            egui::TextEdit::singleline(path)
                .hint_text(hint)
                .desired_width(width),
        );
        let mut clicked = None;
        for (i, b) in buttons.iter().enumerate() {
            if ui.button(*b).clicked() {
                clicked = Some(i);
            }
        }
        clicked
    })
    .inner
}

/// The text a prompt record puts in the prompt box: its text, or its last user message.
fn prompt_text(p: &PromptRecord) -> String {
    match &p.input {
        PromptInput::Text(t) => t.clone(),
        PromptInput::Chat { messages, .. } => messages
            .iter()
            .rev()
            .find(|m| m.role() == "user")
            .and_then(|m| m.text())
            .unwrap_or_default()
            .to_string(),
    }
}

impl eframe::App for MoescopeApp {
    fn ui(&mut self, ui: &mut Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
    }
}
