//! The prompt box: a loaded prompt set to pick from, the text, chat template and length, the
//! generation settings (system message, temperature, top-p, seed, stop strings), Generate,
//! Cancel, and Copy as command.

use std::path::PathBuf;

use eframe::egui::{self, Ui};
use moescope_engine::PromptInput;

use crate::command::generate_command;
use crate::state::MoescopeApp;
use crate::widgets::{path_row, prompt_text};

impl MoescopeApp {
    /// Puts the command that reproduces the next generation on the clipboard.
    fn copy_command(&mut self, ui: &Ui) {
        let Some(model) = &self.model else {
            self.set_status("the model is not loaded yet", true);
            return;
        };
        let profile = PathBuf::from(self.profile_path.trim());
        let basis = self.current_basis();
        let command = generate_command(&model.dir, &basis, Some(&profile));
        ui.ctx().copy_text(command.clone());
        let unsaved = !self.steering.is_empty() && self.steering != self.steering_saved;
        if unsaved {
            self.set_status(
                format!(
                    "copied: {command} — it names {}: save the steering list there first",
                    profile.display()
                ),
                true,
            );
        } else {
            self.set_status(format!("copied: {command}"), false);
        }
    }

    pub(crate) fn prompt_panel(&mut self, ui: &mut Ui) {
        ui.strong("Model");
        if path_row(
            ui,
            &mut self.model_path,
            "checkpoint folder",
            200.0,
            &["Open model"],
        )
        .is_some()
        {
            let dir = PathBuf::from(self.model_path.trim());
            match crate::error::require_path(&dir, "a checkpoint folder") {
                Ok(()) => self.open_model(dir),
                Err(e) => self.set_status(e.to_string(), true),
            }
        }
        ui.separator();
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
            ui.add(
                egui::Slider::new(&mut self.max_tokens, 1..=4096)
                    .logarithmic(true)
                    .text("tokens"),
            );
        });
        egui::CollapsingHeader::new("Generation settings").show(ui, |ui| {
            let s = &mut self.settings;
            ui.add_enabled(
                self.chat,
                egui::TextEdit::multiline(&mut s.system)
                    .desired_rows(1)
                    .desired_width(f32::INFINITY)
                    .hint_text("system message (chat template)"),
            );
            ui.add(
                egui::Slider::new(&mut s.temperature, 0.0..=2.0)
                    .text("temperature")
                    .fixed_decimals(2),
            )
            .on_hover_text("0 is greedy and reproducible; above 0 samples");
            ui.add_enabled(
                s.temperature > 0.0,
                egui::Slider::new(&mut s.top_p, 0.05..=1.0)
                    .text("top-p")
                    .fixed_decimals(2),
            );
            ui.horizontal(|ui| {
                ui.add_enabled(s.temperature > 0.0, egui::DragValue::new(&mut s.seed));
                ui.label("seed");
            });
            ui.add(
                egui::TextEdit::multiline(&mut s.stop)
                    .desired_rows(1)
                    .desired_width(f32::INFINITY)
                    .hint_text("stop strings, one per line"),
            );
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
            if ui
                .button("Copy as command")
                .on_hover_text(
                    "the `moescope generate` command that runs this prompt, settings and steering",
                )
                .clicked()
            {
                self.copy_command(ui);
            }
        });
    }
}
