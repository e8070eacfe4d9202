//! The steering list: what is masked, forced or re-weighted, saved and loaded as a profile.

use eframe::egui::{self, Ui};

use crate::file_dialog::{Pick, PickKind};
use crate::state::MoescopeApp;
use crate::steering::describe;
use crate::widgets::path_row;

impl MoescopeApp {
    pub(crate) fn steering_panel(&mut self, ui: &mut Ui) {
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
        match path_row(
            ui,
            &mut self.profile_path,
            "profile .toml",
            140.0,
            &buttons,
            (
                &*self.picker,
                Pick {
                    kind: PickKind::OpenFile(&["toml"]),
                    title: "Load a steering profile",
                    then: 1,
                },
            ),
        ) {
            Some(0) => self.save_profile(),
            Some(1) => self.load_profile(),
            Some(_) => self.steering.clear(),
            None => {}
        }
    }
}
