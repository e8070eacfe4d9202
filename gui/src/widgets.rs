//! Small pieces the panels share: a path field with its buttons, and the text a prompt
//! record puts in the prompt box.

use eframe::egui::{self, Ui};
use moescope_engine::{PromptInput, PromptRecord};

/// A path field followed by buttons; the index of the button clicked, if any.
pub fn path_row(
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
pub fn prompt_text(p: &PromptRecord) -> String {
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
