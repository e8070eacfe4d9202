//! A records folder: open it and browse its sequences.

use eframe::egui::{self, Ui};

use crate::state::MoescopeApp;
use crate::widgets::path_row;
use crate::worker::Job;

impl MoescopeApp {
    pub(crate) fn recording_panel(&mut self, ui: &mut Ui) {
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
}
