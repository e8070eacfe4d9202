//! The message log: every status message of the session with the time it came, errors marked,
//! shown wrapped in a panel whose text can be selected and copied, so that a long error is never
//! lost at the window's edge or under a later "done".

use std::time::{SystemTime, UNIX_EPOCH};

use eframe::egui::{self, Label, RichText, Ui};

/// Messages kept; older ones are dropped first.
const KEEP: usize = 1000;

/// One status message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Wall-clock time it came, `HH:MM:SS` UTC.
    pub at: String,
    /// The text as shown in the status bar.
    pub text: String,
    /// Whether it reports a failure.
    pub error: bool,
}

/// Every message of the session, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageLog {
    messages: Vec<Message>,
    /// Whether the log panel is open.
    pub open: bool,
}

impl MessageLog {
    /// Adds a message (the same text twice in a row is kept once).
    pub fn push(&mut self, text: impl Into<String>, error: bool) {
        let text = text.into();
        if self
            .messages
            .last()
            .is_some_and(|m| m.text == text && m.error == error)
        {
            return;
        }
        if self.messages.len() == KEEP {
            self.messages.remove(0);
        }
        self.messages.push(Message {
            at: clock(SystemTime::now()),
            text,
            error,
        });
    }

    /// Every message, oldest first.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// How many messages are errors.
    pub fn errors(&self) -> usize {
        self.messages.iter().filter(|m| m.error).count()
    }

    /// The whole log as text, one message a line, errors marked.
    pub fn text(&self) -> String {
        self.messages
            .iter()
            .map(|m| {
                let mark = if m.error { "error: " } else { "" };
                format!("{} {mark}{}\n", m.at, m.text)
            })
            .collect()
    }

    /// The log's panel body: a copy button and the messages, wrapped and selectable.
    pub fn show(&mut self, ui: &mut Ui) {
        ui.horizontal(|ui| {
            ui.strong("Messages");
            if ui.button("Copy all").clicked() {
                ui.ctx().copy_text(self.text());
            }
            if ui.button("Close").clicked() {
                self.open = false;
            }
        });
        egui::ScrollArea::vertical()
            .stick_to_bottom(true)
            .auto_shrink([false, true])
            .show(ui, |ui| {
                for m in &self.messages {
                    let text = RichText::new(format!("{}  {}", m.at, m.text));
                    let text = if m.error {
                        text.color(ui.visuals().error_fg_color)
                    } else {
                        text
                    };
                    ui.add(Label::new(text).wrap().selectable(true));
                }
            });
    }
}

/// `HH:MM:SS` (UTC) of `t`.
fn clock(t: SystemTime) -> String {
    let s = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn keeps_every_message_once_in_order_and_counts_errors() {
        let mut log = MessageLog::default();
        log.push("loading", false);
        log.push("no such folder", true);
        log.push("no such folder", true);
        log.push("done", false);
        assert_eq!(log.messages().len(), 3);
        assert_eq!(log.errors(), 1);
        let text = log.text();
        assert!(text.contains("error: no such folder\n"), "{text}");
        assert!(text.ends_with("done\n"), "{text}");
        for i in 0..KEEP + 5 {
            log.push(format!("m{i}"), false);
        }
        assert_eq!(log.messages().len(), KEEP);
        assert_eq!(log.messages()[KEEP - 1].text, format!("m{}", KEEP + 4));
    }

    #[test]
    fn the_clock_is_utc_hours_minutes_seconds() {
        let t = UNIX_EPOCH + Duration::from_secs(86_400 * 3 + 7 * 3600 + 5 * 60 + 9);
        assert_eq!(clock(t), "07:05:09");
    }
}
