//! A records folder: open it, browse its sequences, and rank its experts by a statistic.

use std::collections::BTreeSet;
use std::sync::Arc;

use eframe::egui::{self, Ui};
use moescope_analysis::{Positions, Records};

use crate::file_dialog::{Pick, PickKind};
use crate::set_work::{RankJob, StatChoice};
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
            (
                &*self.picker,
                Pick {
                    kind: PickKind::OpenFolder,
                    title: "Open a records folder",
                    then: 0,
                },
            ),
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
            if !self.busy && self.worker.submit(Job::Browse(rec.clone(), seq)) {
                self.busy = true;
                self.browsing = Some(seq);
                self.set_status(format!("reading sequence {seq} …"), false);
            }
        }
        self.rank_row(ui, &rec);
    }

    /// Ranks the recording's experts by a statistic (as `moescope analyze`), onto the grid.
    fn rank_row(&mut self, ui: &mut Ui, rec: &Arc<Records>) {
        let labels: BTreeSet<&str> = rec
            .sequences
            .iter()
            .filter_map(|s| s.label.as_deref())
            .collect();
        let form = &mut self.set_form;
        let mut rank = false;
        ui.horizontal(|ui| {
            egui::ComboBox::from_id_salt("statistic")
                .selected_text(form.statistic.name())
                .width(80.0)
                .show_ui(ui, |ui| {
                    for s in StatChoice::ALL {
                        ui.selectable_value(&mut form.statistic, s, s.name());
                    }
                });
            let label_box = |ui: &mut Ui, id: &str, value: &mut String| {
                egui::ComboBox::from_id_salt(id)
                    .selected_text(if value.is_empty() { id } else { value.as_str() })
                    .width(80.0)
                    .show_ui(ui, |ui| {
                        for l in &labels {
                            ui.selectable_value(value, l.to_string(), *l);
                        }
                    });
            };
            if form.statistic != StatChoice::Frequency {
                label_box(ui, "behaviour", &mut form.behaviour);
            }
            if form.statistic.needs_control() {
                label_box(ui, "control", &mut form.control);
            }
            egui::ComboBox::from_id_salt("positions")
                .selected_text(positions_name(form.positions))
                .width(80.0)
                .show_ui(ui, |ui| {
                    for p in [Positions::All, Positions::Prompt, Positions::Generated] {
                        ui.selectable_value(&mut form.positions, p, positions_name(p));
                    }
                });
            rank = ui
                .add_enabled(!self.busy, egui::Button::new("Rank"))
                .on_hover_text(
                    "rank the recording's experts by this statistic (as `moescope analyze`)",
                )
                .clicked();
        });
        if rank {
            self.start_rank(rec);
        }
    }

    fn start_rank(&mut self, rec: &Arc<Records>) {
        let form = &self.set_form;
        let choice = form.statistic;
        let missing = (choice != StatChoice::Frequency && form.behaviour.is_empty())
            || (choice.needs_control() && form.control.is_empty());
        if missing {
            self.set_status(
                format!("{}: pick the labels to compare first", choice.name()),
                true,
            );
            return;
        }
        let job = RankJob {
            records: Arc::clone(rec),
            statistic: choice.statistic(&form.behaviour, &form.control),
            positions: form.positions,
            title: format!("{} of {}", choice.name(), rec.dir.display()),
        };
        if self.worker.submit(Job::Rank(Box::new(job))) {
            self.busy = true;
            self.set_status(format!("computing {} …", choice.name()), false);
        }
    }
}

/// How the CLI's `--positions` names which tokens count.
fn positions_name(p: Positions) -> &'static str {
    match p {
        Positions::All => "all",
        Positions::Prompt => "prompt",
        Positions::Generated => "generated",
    }
}
