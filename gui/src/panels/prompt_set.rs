//! The "Prompt set" panel: with a prompt set loaded, record its routing into a records folder
//! (opened for browsing when done), evaluate metrics with intervals for the unsteered and the
//! steered model, or rank experts by attribution (shown on the grid as a ranking). The work
//! runs on the worker thread through the workbench library ([`crate::set_work`]); the fields
//! are [`crate::set_work::SetForm`].

use std::path::{Path, PathBuf};

use eframe::egui::{self, Ui};
use moescope_analysis::Table;
use moescope_engine::CancelFlag;
use moescope_workbench::eval::{EvalRow, EvalSettings};
use moescope_workbench::Metric;

use crate::ranking::Ranking;
use crate::set_work::{SetJob, SetOutcome, SetProgress, SetTask};
use crate::state::MoescopeApp;
use crate::worker::Job;

/// The confidence level of the panel's intervals.
const LEVEL: f64 = 0.95;

impl MoescopeApp {
    /// Draws the panel (below the prompt box).
    pub(crate) fn prompt_set_panel(&mut self, ui: &mut Ui) {
        ui.strong("Prompt set");
        if self.prompt_set.is_empty() {
            ui.weak("load a prompt set above to record, evaluate or attribute it");
            return;
        }
        let ready = self.model.is_some() && !self.busy;
        ui.horizontal(|ui| {
            ui.add(
                egui::TextEdit::singleline(&mut self.set_form.records_out)
                    .hint_text("records folder")
                    .desired_width(120.0),
            );
            ui.add(egui::DragValue::new(&mut self.set_form.record_generate).range(0..=256))
                .on_hover_text("tokens generated and recorded after each prompt");
            if ui
                .add_enabled(ready, egui::Button::new("Record"))
                .on_hover_text("record the routing of every prompt (under the steering list)")
                .clicked()
            {
                self.start_record();
            }
        });
        ui.horizontal(|ui| {
            ui.add(
                egui::TextEdit::singleline(&mut self.set_form.metrics)
                    .hint_text("perplexity, answer, target-logprob, rules:FILE")
                    .desired_width(190.0),
            );
            ui.add(egui::DragValue::new(&mut self.set_form.random_draws).range(0..=20))
                .on_hover_text(
                    "random-experts controls: the steering's edits on as many random experts of the same layers",
                );
            if ui
                .add_enabled(ready, egui::Button::new("Evaluate"))
                .on_hover_text("each metric for the unsteered and the steered model, 95% intervals")
                .clicked()
            {
                self.start_evaluate();
            }
        });
        ui.horizontal(|ui| {
            ui.add(
                egui::TextEdit::singleline(&mut self.set_form.target)
                    .hint_text("target (default: each prompt's)")
                    .desired_width(190.0),
            );
            if ui
                .add_enabled(ready, egui::Button::new("Attribute"))
                .on_hover_text("rank experts by the drop in the target's log-prob when masked")
                .clicked()
            {
                self.start_attribute();
            }
        });
        if let Some(p) = &self.set_form.progress {
            let fraction = p.total.map_or(0.0, |t| p.done as f32 / t.max(1) as f32);
            let text = match p.total {
                Some(t) => format!("{} {}/{t}", p.what, p.done),
                None => p.what.clone(),
            };
            ui.horizontal(|ui| {
                ui.add(
                    egui::ProgressBar::new(fraction)
                        .text(text)
                        .desired_width(220.0),
                );
                if ui.button("Cancel").clicked() {
                    self.cancel();
                }
            });
        }
        if !self.set_form.eval_rows.is_empty() {
            eval_table(ui, &self.set_form.eval_rows);
        }
    }

    /// Applies a finished task.
    pub(crate) fn on_set_done(&mut self, outcome: SetOutcome) {
        self.busy = false;
        self.set_form.progress = None;
        match outcome {
            SetOutcome::Recorded { out, done, total } => {
                self.set_status(
                    format!("recorded {done} of {total} prompts → {}", out.display()),
                    false,
                );
                self.recording_path = out.display().to_string();
                self.open_recording();
            }
            SetOutcome::Evaluated(rows) => {
                self.set_status(format!("evaluated: {} estimates", rows.len()), false);
                self.set_form.eval_rows = rows;
            }
            SetOutcome::Attributed { table, agreement } => {
                let source = format!("attribution of {}", self.prompt_set_path);
                let note = format!("; Spearman ρ of ablation and first-order drops {agreement:.3}");
                self.show_ranking(&source, &table, &note);
            }
            SetOutcome::Ranked { table, title } => self.show_ranking(&title, &table, ""),
        }
    }

    /// Shows a ranking computed in the session on the grid, its top expert opened.
    fn show_ranking(&mut self, source: &str, table: &Table, note: &str) {
        match Ranking::from_table(&PathBuf::from(source), table) {
            Ok(r) => {
                self.set_status(
                    format!("{source}: {} experts ranked{note}", r.order.len()),
                    false,
                );
                self.selected = r.order.first().copied();
                self.use_ranking(r);
            }
            Err(e) => self.set_status(e.to_string(), true),
        }
    }

    fn start_record(&mut self) {
        let out = PathBuf::from(self.set_form.records_out.trim());
        if out.as_os_str().is_empty() {
            self.set_status("type the records folder to write first", true);
            return;
        }
        let Some(policy) = self.steering_policy_or_report() else {
            return;
        };
        let interventions = self.steering.to_profile_text();
        let generate = self.set_form.record_generate;
        self.submit_set(SetTask::Record {
            out,
            generate,
            policy,
            interventions,
        });
    }

    fn start_evaluate(&mut self) {
        let mut metrics = Vec::new();
        for spec in self.set_form.metrics.split(',').map(str::trim) {
            if spec.is_empty() {
                continue;
            }
            match Metric::parse(spec) {
                Ok(m) => metrics.extend(m),
                Err(e) => {
                    self.set_status(e.to_string().replace("--metric ", "metric "), true);
                    return;
                }
            }
        }
        if metrics.is_empty() {
            self.set_status("type one or more metrics, e.g. perplexity", true);
            return;
        }
        let Some(policy) = self.steering_policy_or_report() else {
            return;
        };
        let settings = EvalSettings {
            max_tokens: self.max_tokens,
            batch: 8,
            resamples: 1000,
            level: LEVEL,
            seed: 0,
            random_draws: self.set_form.random_draws,
        };
        self.submit_set(SetTask::Evaluate {
            metrics,
            policy,
            settings,
        });
    }

    fn start_attribute(&mut self) {
        let target = Some(self.set_form.target.trim().to_string()).filter(|t| !t.is_empty());
        self.submit_set(SetTask::Attribute { target });
    }

    /// Sends a task over the loaded prompt set to the worker.
    fn submit_set(&mut self, task: SetTask) {
        let cancel = CancelFlag::new();
        let job = SetJob {
            prompts: Path::new(self.prompt_set_path.trim()).to_path_buf(),
            task,
            cancel: cancel.clone(),
        };
        if self.worker.submit(Job::Set(Box::new(job))) {
            self.busy = true;
            self.cancel = Some(cancel);
            self.set_form.progress = Some(SetProgress {
                what: "starting".into(),
                done: 0,
                total: None,
            });
            self.set_status("working on the prompt set … (Esc cancels)", false);
        } else {
            self.set_status(
                "the model worker has stopped; restart with a valid --model",
                true,
            );
        }
    }
}

/// The evaluation's estimates as a table: metric, variant, value, interval, n.
fn eval_table(ui: &mut Ui, rows: &[EvalRow]) {
    egui::Grid::new("evaluation")
        .striped(true)
        .num_columns(5)
        .show(ui, |ui| {
            for h in ["metric", "variant", "value", "95% interval", "n"] {
                ui.strong(h);
            }
            ui.end_row();
            for r in rows {
                let e = &r.estimate;
                ui.label(&r.metric);
                ui.label(r.variant);
                ui.label(format!("{:.4}", e.value));
                ui.label(format!("[{:.4}, {:.4}]", e.low, e.high));
                ui.label(e.n.to_string());
                ui.end_row();
            }
        });
}
