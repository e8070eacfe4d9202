//! The window: the status bar on top, prompt, prompt set, steering and recording on the left,
//! outputs, routing heatmap, expert grid and plots in the middle, the expert inspector on the
//! right. Keyboard shortcuts and dropped files are read here; each panel draws itself
//! (`panels/`).

use std::path::PathBuf;

use eframe::egui::{self, Key, KeyboardShortcut, Label, Modifiers, RichText, Ui};

use crate::state::MoescopeApp;

/// Ctrl+Enter generates.
pub const GENERATE_SHORTCUT: KeyboardShortcut =
    KeyboardShortcut::new(Modifiers::COMMAND, Key::Enter);

impl MoescopeApp {
    /// Draws one frame.
    pub fn show(&mut self, ui: &mut Ui) {
        self.poll();
        if ui.input_mut(|i| i.consume_shortcut(&GENERATE_SHORTCUT)) {
            self.generate();
        }
        if self.busy && ui.input(|i| i.key_pressed(Key::Escape)) {
            self.cancel();
        }
        let dropped: Vec<PathBuf> = ui.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .collect()
        });
        for path in dropped {
            self.open_dropped(&path);
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
                    self.prompt_set_panel(ui);
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

    pub(crate) fn status_bar(&mut self, ui: &mut Ui) {
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
}

impl eframe::App for MoescopeApp {
    fn ui(&mut self, ui: &mut Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
    }
}
