//! Small pieces the panels share: a path field with its buttons and its file dialog, and what a
//! prompt record puts in the prompt box.

use eframe::egui::{self, Ui};
use moescope_engine::{PromptInput, PromptRecord};
use moescope_workbench::generation::Exchange;

use crate::file_dialog::{FilePicker, Pick};

/// A path field, a "…" button that opens the file dialog `browse` describes, and buttons; the
/// index of the button clicked (or acted as, once the dialog chose a path), if any.
pub fn path_row(
    ui: &mut Ui,
    path: &mut String,
    hint: &str,
    width: f32,
    buttons: &[&str],
    browse: (&dyn FilePicker, Pick),
) -> Option<usize> {
    ui.horizontal(|ui| {
        ui.add(
            egui::TextEdit::singleline(path)
                .hint_text(hint)
                .desired_width(width),
        );
        let (picker, pick) = browse;
        let mut clicked = None;
        if ui.button("…").on_hover_text(pick.title).clicked() {
            if let Some(chosen) = picker.pick(&pick, path) {
                *path = chosen.display().to_string();
                clicked = Some(pick.then);
            }
        }
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

/// A chat record as the prompt box holds it: the system message, the earlier exchanges (each
/// user message with the assistant reply that follows it) and the last user message.
pub fn chat_parts(p: &PromptRecord) -> (Option<String>, Vec<Exchange>, String) {
    let PromptInput::Chat { messages, .. } = &p.input else {
        return (None, Vec::new(), prompt_text(p));
    };
    let text = |i: usize| messages[i].text().unwrap_or_default().to_string();
    let last_user = messages.iter().rposition(|m| m.role() == "user");
    let mut system = None;
    let mut earlier = Vec::new();
    let before = last_user.unwrap_or(messages.len());
    for i in 0..before {
        match messages[i].role() {
            "system" => system = Some(text(i)),
            "user" if i + 1 < before && messages[i + 1].role() == "assistant" => {
                earlier.push(Exchange {
                    user: text(i),
                    assistant: text(i + 1),
                })
            }
            _ => {}
        }
    }
    (system, earlier, last_user.map(text).unwrap_or_default())
}
