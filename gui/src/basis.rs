//! What a shown result was made from (prompt, chat template, system message, sampling, token
//! count, steering), so the app can say when the result no longer matches what the controls now
//! say — a stale result is marked, not silently shown as if it were current.

use moescope_workbench::generation::Exchange;

use crate::steering::SteeringList;

/// How a generation samples and ends, beside its prompt: the CLI's `--system`,
/// `--temperature`, `--top-p`, `--seed` and `--stop`.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationSettings {
    /// A system message before the user's (chat template only); empty for none.
    pub system: String,
    /// 0: greedy; above 0: sampled at this temperature.
    pub temperature: f64,
    /// Nucleus sampling threshold (1: off).
    pub top_p: f64,
    /// Seed of the sampler.
    pub seed: u64,
    /// Strings that end the generation, one per line.
    pub stop: String,
}

impl Default for GenerationSettings {
    fn default() -> Self {
        Self {
            system: String::new(),
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
            stop: String::new(),
        }
    }
}

impl GenerationSettings {
    /// The stop strings, one per non-empty line.
    pub fn stop_strings(&self) -> Vec<String> {
        self.stop
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// The system message, if one is typed.
    pub fn system_message(&self) -> Option<&str> {
        Some(self.system.as_str()).filter(|s| !s.trim().is_empty())
    }
}

/// The inputs of one generation.
#[derive(Debug, Clone, PartialEq)]
pub struct RunBasis {
    /// The prompt text.
    pub prompt: String,
    /// Whether it went through the chat template.
    pub chat: bool,
    /// The chat's earlier turns (used with the chat template only).
    pub earlier: Vec<Exchange>,
    /// Tokens asked for.
    pub max_tokens: usize,
    /// System message, sampling and stop strings.
    pub settings: GenerationSettings,
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
        if self.chat && self.earlier != now.earlier {
            parts.push("conversation");
        }
        if self.max_tokens != now.max_tokens {
            parts.push("token count");
        }
        if self.settings.system != now.settings.system {
            parts.push("system message");
        }
        let sampling = |s: &GenerationSettings| (s.temperature, s.top_p, s.seed, s.stop.clone());
        if sampling(&self.settings) != sampling(&now.settings) {
            parts.push("sampling settings");
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
            earlier: Vec::new(),
            max_tokens: 32,
            settings: GenerationSettings::default(),
            steering: SteeringList::default(),
        };
        assert!(basis.changed(&basis.clone()).is_empty());
        let mut now = basis.clone();
        now.prompt.push('!');
        now.steering.set(1, 2, InterventionKind::Mask, None);
        now.settings.temperature = 0.7;
        now.earlier.push(Exchange {
            user: "hello".into(),
            assistant: "hi there".into(),
        });
        assert_eq!(
            basis.changed(&now),
            ["prompt", "conversation", "sampling settings", "steering"]
        );
        // A renamed profile with the same interventions steers the same way.
        let mut renamed = basis.clone();
        renamed.steering.profile.name = Some("other".into());
        assert!(basis.changed(&renamed).is_empty());
    }
}
