//! The prompt box: a loaded prompt set to pick from, the text, chat template and length, the
//! generation settings (system message, temperature, top-p, seed, stop strings), Generate,
//! Cancel, and Copy as command.

use std::path::PathBuf;

use eframe::egui::{self, Ui};
use moescope_engine::PromptInput;
use moescope_workbench::open::dtype_name;

use crate::command::generate_command;
use crate::file_dialog::{Pick, PickKind};
use crate::state::MoescopeApp;
use crate::widgets::{chat_parts, path_row, prompt_text};
use crate::worker::Which;

impl MoescopeApp {
    /// Puts the command that reproduces the next generation on the clipboard.
    fn copy_command(&mut self, ui: &Ui) {
        let Some(model) = &self.model else {
            self.set_status("the model is not loaded yet", true);
            return;
        };
        let profile = PathBuf::from(self.profile_path.trim());
        let basis = self.current_basis();
        let command = generate_command(
            &model.dir,
            &self.model_spec.device,
            model.dtype,
            &basis,
            Some(&profile),
        );
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
        ui.horizontal(|ui| {
            ui.strong("Model");
            if let Some(m) = &self.model {
                ui.weak(dtype_name(m.dtype))
                    .on_hover_text("the dtype its weights are loaded in");
            }
            egui::ComboBox::from_id_salt("dtype")
                .selected_text(format!("open as {}", self.model_spec.dtype))
                .show_ui(ui, |ui| {
                    for d in ["auto", "bf16", "f16", "f32"] {
                        ui.selectable_value(&mut self.model_spec.dtype, d.to_string(), d);
                    }
                })
                .response
                .on_hover_text(
                    "the dtype Open model loads in: auto is the checkpoint's stored dtype; f32 \
                     needs twice the memory of bf16",
                );
        });
        if path_row(
            ui,
            &mut self.model_path,
            "checkpoint folder",
            200.0,
            &["Open model"],
            (
                &*self.picker,
                Pick {
                    kind: PickKind::OpenFolder,
                    title: "Open a checkpoint folder",
                    then: 0,
                },
            ),
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
            (
                &*self.picker,
                Pick {
                    kind: PickKind::OpenFile(&["jsonl"]),
                    title: "Load a prompt set",
                    then: 0,
                },
            ),
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
                let (system, earlier, user) = chat_parts(p);
                self.prompt = user;
                self.chat = matches!(p.input, PromptInput::Chat { .. });
                self.conversation = earlier;
                if let Some(system) = system {
                    self.settings.system = system;
                }
            }
        }
        if self.chat && !self.conversation.is_empty() {
            self.conversation_view(ui);
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
        let chat_result = self.run_basis.as_ref().is_some_and(|b| b.chat);
        if chat_result && self.baseline.is_some() && !self.busy {
            ui.horizontal(|ui| {
                ui.label("Continue the chat with the");
                if ui.button("baseline reply").clicked() {
                    self.keep_reply(Which::Baseline);
                }
                if self.steered.is_some() && ui.button("steered reply").clicked() {
                    self.keep_reply(Which::Steered);
                }
            });
        }
    }

    /// The chat's earlier turns above the prompt box, one line each (the whole text on hover),
    /// and Clear chat.
    fn conversation_view(&mut self, ui: &mut Ui) {
        let mut clear = false;
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.weak(format!("chat: {} earlier turns", self.conversation.len()));
                clear = ui.small_button("Clear chat").clicked();
            });
            egui::ScrollArea::vertical()
                .id_salt("conversation")
                .max_height(120.0)
                .show(ui, |ui| {
                    for turn in &self.conversation {
                        for (who, text) in [("you", &turn.user), ("model", &turn.assistant)] {
                            let line: String = text.replace('\n', " ⏎ ").chars().take(80).collect();
                            ui.label(format!("{who}: {line}"))
                                .on_hover_text(text.as_str());
                        }
                    }
                });
        });
        if clear {
            self.conversation.clear();
            self.set_status(
                "chat cleared: the next message starts a new conversation",
                false,
            );
        }
    }
}
