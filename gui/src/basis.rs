//! What a shown result was made from (prompt, chat template, token count, steering), so the app
//! can say when the result no longer matches what the controls now say — a stale result is
//! marked, not silently shown as if it were current.

use crate::steering::SteeringList;

/// The inputs of one generation.
#[derive(Debug, Clone, PartialEq)]
pub struct RunBasis {
    /// The prompt text.
    pub prompt: String,
    /// Whether it went through the chat template.
    pub chat: bool,
    /// Tokens asked for.
    pub max_tokens: usize,
    /// The steering list of the steered run.
    pub steering: SteeringList,
}

impl RunBasis {
    /// The parts of `now` that differ from this basis, as words for a message (empty: the
    /// result is current).
    pub fn changed(&self, now: &RunBasis) -> Vec<&'static str> {
        let mut parts = Vec::new();
        if self.prompt != now.prompt {
            parts.push("prompt");
        }
        if self.chat != now.chat {
            parts.push("chat template setting");
        }
        if self.max_tokens != now.max_tokens {
            parts.push("token count");
        }
        if self.steering.items() != now.steering.items() {
            parts.push("steering");
        }
        parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use moescope_engine::InterventionKind;

    #[test]
    fn names_each_changed_input_and_nothing_when_current() {
        let basis = RunBasis {
            prompt: "hi".into(),
            chat: true,
            max_tokens: 32,
            steering: SteeringList::default(),
        };
        assert!(basis.changed(&basis.clone()).is_empty());
        let mut now = basis.clone();
        now.prompt.push('!');
        now.steering.set(1, 2, InterventionKind::Mask, None);
        assert_eq!(basis.changed(&now), ["prompt", "steering"]);
        // A renamed profile with the same interventions steers the same way.
        let mut renamed = basis.clone();
        renamed.steering.profile.name = Some("other".into());
        assert!(basis.changed(&renamed).is_empty());
    }
}
