//! The `moescope generate` command line that reproduces what the window would generate now, for
//! "Copy as command": the same model, device and dtype, prompt, chat template, system message,
//! sampling, stop strings, length and steering profile, quoted for a POSIX shell.

use std::path::Path;

use candle_core::DType;
use moescope_workbench::open::dtype_name;

use crate::basis::{GenerationSettings, RunBasis};

/// The command line for `basis` on the checkpoint in `model`, loaded on `device` in `dtype`;
/// `profile` is the steering profile file the command names when the basis steers (it must
/// hold the steering list).
pub fn generate_command(
    model: &Path,
    device: &str,
    dtype: DType,
    basis: &RunBasis,
    profile: Option<&Path>,
) -> String {
    let mut args: Vec<String> = vec!["moescope".into(), "generate".into()];
    let mut push = |flag: &str, value: String| {
        args.push(flag.into());
        args.push(quote(&value));
    };
    push("--model", model.display().to_string());
    if device != "cpu" {
        push("--device", device.to_string());
    }
    // Named even when it is the stored dtype, so the command computes as the window did.
    push("--dtype", dtype_name(dtype));
    if basis.chat {
        for turn in &basis.earlier {
            push("--chat", turn.user.clone());
            push("--reply", turn.assistant.clone());
        }
        push("--chat", basis.prompt.clone());
        if let Some(s) = basis.settings.system_message() {
            push("--system", s.to_string());
        }
    } else {
        push("--prompt", basis.prompt.clone());
    }
    push("--max-tokens", basis.max_tokens.to_string());
    let defaults = GenerationSettings::default();
    let s = &basis.settings;
    if s.temperature != defaults.temperature {
        push("--temperature", s.temperature.to_string());
        if s.top_p != defaults.top_p {
            push("--top-p", s.top_p.to_string());
        }
        push("--seed", s.seed.to_string());
    }
    for stop in s.stop_strings() {
        push("--stop", stop);
    }
    if let (false, Some(p)) = (basis.steering.is_empty(), profile) {
        push("--steer", p.display().to_string());
    }
    args.join(" ")
}

/// `text` as one word of a POSIX shell: bare when it holds only safe characters, else in single
/// quotes (a single quote inside written `'\''`).
pub fn quote(text: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c);
    if !text.is_empty() && text.chars().all(safe) {
        return text.to_string();
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steering::SteeringList;
    use moescope_engine::InterventionKind;
    use moescope_workbench::generation::Exchange;

    fn basis() -> RunBasis {
        RunBasis {
            prompt: "How do I make a bomb?".into(),
            chat: true,
            earlier: Vec::new(),
            max_tokens: 32,
            settings: GenerationSettings::default(),
            steering: SteeringList::default(),
        }
    }

    #[test]
    fn greedy_chat_without_steering() {
        let cmd = generate_command(
            Path::new("/m"),
            "cpu",
            DType::BF16,
            &basis(),
            Some(Path::new("s.toml")),
        );
        assert_eq!(
            cmd,
            "moescope generate --model /m --dtype bf16 --chat 'How do I make a bomb?' --max-tokens 32"
        );
    }

    #[test]
    fn sampling_system_stops_and_steering_are_named() {
        let mut b = basis();
        b.settings = GenerationSettings {
            system: "Be brief.".into(),
            temperature: 0.7,
            top_p: 0.9,
            seed: 3,
            stop: "\n\nUser:\nit's".into(),
        };
        b.steering.set(5, 15, InterventionKind::Mask, None);
        let cmd = generate_command(
            Path::new("/m"),
            "cpu",
            DType::BF16,
            &b,
            Some(Path::new("my steer.toml")),
        );
        assert_eq!(
            cmd,
            "moescope generate --model /m --dtype bf16 --chat 'How do I make a bomb?' --system 'Be brief.' \
             --max-tokens 32 --temperature 0.7 --top-p 0.9 --seed 3 --stop User: --stop 'it'\\''s' \
             --steer 'my steer.toml'"
        );
    }

    #[test]
    fn a_conversation_names_every_turn_in_order() {
        let mut b = basis();
        b.earlier = vec![
            Exchange {
                user: "Hi".into(),
                assistant: "Hello! How can I help?".into(),
            },
            Exchange {
                user: "Tell me a joke".into(),
                assistant: "No.".into(),
            },
        ];
        let cmd = generate_command(Path::new("/m"), "cpu", DType::BF16, &b, None);
        assert_eq!(
            cmd,
            "moescope generate --model /m --dtype bf16 --chat Hi --reply 'Hello! How can I help?' \
             --chat 'Tell me a joke' --reply No. --chat 'How do I make a bomb?' --max-tokens 32"
        );
    }

    #[test]
    fn raw_prompts_use_prompt() {
        let mut b = basis();
        b.chat = false;
        b.settings.system = "ignored without the chat template".into();
        let cmd = generate_command(Path::new("/m"), "cpu", DType::BF16, &b, None);
        assert_eq!(
            cmd,
            "moescope generate --model /m --dtype bf16 --prompt 'How do I make a bomb?' --max-tokens 32"
        );
    }
}
