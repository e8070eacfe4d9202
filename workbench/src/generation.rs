//! One prompt's generation as both front ends run it: what the user typed turned into the
//! model's input (raw text, or a chat message through the checkpoint's template), and where a
//! steered output first departs from the baseline.

use moescope_engine::{ChatMessage, ChatOptions, TextCodec};

use crate::error::Result;

/// One earlier turn of a chat: what the user said and what the assistant replied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The user's message.
    pub user: String,
    /// The assistant's reply to it.
    pub assistant: String,
}

/// What the user typed.
#[derive(Debug, Clone, Copy)]
pub enum PromptText<'a> {
    /// Text fed to the model as it is.
    Raw(&'a str),
    /// A user message sent through the chat template, after an optional system message and
    /// the conversation so far; the model answers it as the assistant.
    Chat {
        /// The system message, if any.
        system: Option<&'a str>,
        /// The earlier turns, oldest first (empty for a single message).
        earlier: &'a [Exchange],
        /// The user's message.
        user: &'a str,
    },
}

/// The text the model sees and its token ids: raw text encoded as the tokenizer does, a chat
/// rendered by the template and encoded without added special tokens (as transformers does).
pub fn encode_prompt(codec: &TextCodec, prompt: PromptText<'_>) -> Result<(String, Vec<u32>)> {
    match prompt {
        PromptText::Raw(text) => Ok((text.to_string(), codec.encode(text)?)),
        PromptText::Chat {
            system,
            earlier,
            user,
        } => {
            let mut messages = Vec::new();
            if let Some(s) = system {
                messages.push(ChatMessage::new("system", s));
            }
            for turn in earlier {
                messages.push(ChatMessage::new("user", &turn.user));
                messages.push(ChatMessage::new("assistant", &turn.assistant));
            }
            messages.push(ChatMessage::new("user", user));
            let text = codec.apply_chat_template(&messages, &ChatOptions::default())?;
            let ids = codec.encode_rendered_chat(&text)?;
            Ok((text, ids))
        }
    }
}

/// Where the steered output first departs from the baseline: the index of the first generated
/// token that differs, or the length of the shorter one when one output is the other cut
/// short; `None` when they are the same. Greedy outputs agree up to this token; after it, a
/// token equal to the baseline's at the same position is so by coincidence of position.
pub fn first_divergence<T: PartialEq>(baseline: &[T], steered: &[T]) -> Option<usize> {
    let common = baseline
        .iter()
        .zip(steered)
        .take_while(|(a, b)| a == b)
        .count();
    (common < baseline.len().max(steered.len())).then_some(common)
}

#[cfg(test)]
mod tests {
    use super::first_divergence;

    #[test]
    fn divergence_is_the_first_difference_or_the_shorter_end() {
        assert_eq!(first_divergence(&[1, 2, 3], &[1, 2, 3]), None);
        assert_eq!(first_divergence(&[1, 2, 3], &[1, 5, 3]), Some(1));
        assert_eq!(first_divergence(&[1, 2], &[1, 2, 3]), Some(2));
        assert_eq!(first_divergence::<u32>(&[], &[]), None);
        assert_eq!(first_divergence(&[7], &[]), Some(0));
    }
}
