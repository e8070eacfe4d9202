//! The prompt box: a loaded prompt set to pick from, the text, chat template and length, Generate and Cancel.

use eframe::egui::{self, Ui};
use moescope_engine::PromptInput;

use crate::state::MoescopeApp;
use crate::widgets::{path_row, prompt_text};

impl MoescopeApp {
    pub(crate) fn prompt_panel(&mut self, ui: &mut Ui) {
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
}
