//! Prompt sets: JSONL files with one prompt per line, in the schema of `datasets/README.md`
//! (`id`, `prompt` or `messages`, optional `label`, `pair_id`, `target`, and for chat prompts
//! `tools` and `template_args`). Every line is checked on load; a bad line is an error naming
//! the file and the line.

use std::collections::HashSet;
use std::path::Path;

use serde::Deserialize;

use crate::chat::{check_template_arg_name, ChatMessage, ChatOptions, TemplateArgs};
use crate::error::{EngineError, Result};
use crate::tokenizer::TextCodec;

/// What the model is fed for one prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptInput {
    /// Raw text, fed as is.
    Text(String),
    /// A conversation, rendered through the checkpoint's chat template with its tools and
    /// template arguments.
    Chat {
        /// The turns, in order.
        messages: Vec<ChatMessage>,
        /// Tools and template arguments of this prompt.
        options: ChatOptions,
    },
}

/// One prompt of a set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptRecord {
    /// The 1-based line of the file it came from (for messages about it).
    pub line: usize,
    /// Unique within the file.
    pub id: String,
    /// The text or conversation.
    pub input: PromptInput,
    /// The behaviour or class the prompt belongs to (e.g. `refusal`, `allowed`).
    pub label: Option<String>,
    /// Links the two prompts of a pair (same template, the behaviour differing).
    pub pair_id: Option<String>,
    /// A continuation whose log-probability can be measured.
    pub target: Option<String>,
}

impl PromptRecord {
    /// The text the model is fed: the prompt, or the messages through the chat template.
    pub fn render(&self, codec: &TextCodec) -> Result<String> {
        match &self.input {
            PromptInput::Text(t) => Ok(t.clone()),
            PromptInput::Chat { messages, options } => codec.apply_chat_template(messages, options),
        }
    }

    /// The token ids the model is fed: raw text encoded as it is, a conversation rendered and
    /// encoded as transformers' `apply_chat_template(tokenize=True)` encodes it.
    pub fn token_ids(&self, codec: &TextCodec) -> Result<Vec<u32>> {
        self.token_ids_of(codec, &self.render(codec)?)
    }

    /// [`PromptRecord::token_ids`] of this prompt's text as [`PromptRecord::render`] gave it.
    pub fn token_ids_of(&self, codec: &TextCodec, rendered: &str) -> Result<Vec<u32>> {
        match &self.input {
            PromptInput::Text(_) => codec.encode(rendered),
            PromptInput::Chat { .. } => codec.encode_rendered_chat(rendered),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    id: serde_json::Value,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    messages: Option<Vec<ChatMessage>>,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    pair_id: Option<serde_json::Value>,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    tools: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    template_args: Option<TemplateArgs>,
}

/// Reads and checks a JSONL prompt set. Blank lines are skipped.
pub fn load_prompt_set(path: &Path) -> Result<Vec<PromptRecord>> {
    let text = std::fs::read_to_string(path).map_err(|source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_prompt_set(&text, path)
}

/// Parses JSONL prompt-set text; `path` names it in errors.
pub fn parse_prompt_set(text: &str, path: &Path) -> Result<Vec<PromptRecord>> {
    let mut records = Vec::new();
    let mut ids = HashSet::new();
    for (i, raw) in text.lines().enumerate() {
        let bad = |message: String| EngineError::Dataset {
            path: path.to_path_buf(),
            line: i + 1,
            message,
        };
        if raw.trim().is_empty() {
            continue;
        }
        let line: Line = serde_json::from_str(raw).map_err(|e| bad(e.to_string()))?;
        let id =
            id_string(&line.id).ok_or_else(|| bad("`id` must be a string or an integer".into()))?;
        if !ids.insert(id.clone()) {
            return Err(bad(format!("id \"{id}\" appears twice")));
        }
        let chat_only = line.tools.is_some() || line.template_args.is_some();
        if let Some(name) = line
            .template_args
            .iter()
            .flat_map(|a| a.keys())
            .find_map(|name| check_template_arg_name(name).err())
        {
            return Err(bad(format!("`template_args`: {name}")));
        }
        let input = match (line.prompt, line.messages) {
            (Some(_), None) if chat_only => {
                return Err(bad(
                    "`tools` and `template_args` go with `messages`, not a raw `prompt`".into(),
                ))
            }
            (Some(p), None) => PromptInput::Text(p),
            (None, Some(m)) if !m.is_empty() => PromptInput::Chat {
                messages: m,
                options: ChatOptions {
                    tools: line.tools,
                    template_args: line.template_args.unwrap_or_default(),
                    add_generation_prompt: true,
                },
            },
            (None, Some(_)) => return Err(bad("`messages` is empty".into())),
            (Some(_), Some(_)) => return Err(bad("give `prompt` or `messages`, not both".into())),
            (None, None) => {
                return Err(bad("needs `prompt` (raw text) or `messages` (chat)".into()))
            }
        };
        let pair_id = match &line.pair_id {
            None => None,
            Some(v) => Some(
                id_string(v)
                    .ok_or_else(|| bad("`pair_id` must be a string or an integer".into()))?,
            ),
        };
        records.push(PromptRecord {
            line: i + 1,
            id,
            input,
            label: line.label,
            pair_id,
            target: line.target,
        });
    }
    Ok(records)
}

fn id_string(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) if n.is_u64() || n.is_i64() => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<PromptRecord>> {
        parse_prompt_set(text, Path::new("set.jsonl"))
    }

    #[test]
    fn reads_text_and_chat_prompts() {
        let text = r#"{"id": "a", "prompt": "Hello", "label": "prose", "target": " world"}

{"id": 2, "messages": [{"role": "user", "content": "Hi"}], "pair_id": 7, "tools": [{"type": "function"}], "template_args": {"enable_thinking": false}}
"#;
        let r = parse(text).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].input, PromptInput::Text("Hello".into()));
        assert_eq!(r[0].target.as_deref(), Some(" world"));
        assert_eq!(r[1].id, "2");
        assert_eq!(r[1].pair_id.as_deref(), Some("7"));
        let PromptInput::Chat { messages, options } = &r[1].input else {
            panic!("expected a chat prompt: {:?}", r[1].input);
        };
        assert_eq!(messages[0].text(), Some("Hi"));
        assert_eq!(options.tools.as_ref().map(Vec::len), Some(1));
        assert_eq!(options.template_args["enable_thinking"], false);
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let cases = [
            ("{\"id\": \"a\", \"prompt\": \"x\"}\n{\"id\": \"a\", \"prompt\": \"y\"}", "line 2", "twice"),
            ("{\"id\": \"a\"}", "line 1", "needs `prompt`"),
            ("{\"id\": \"a\", \"prompt\": \"x\", \"messages\": [{\"role\": \"user\", \"content\": \"y\"}]}", "line 1", "not both"),
            ("{\"id\": 1.5, \"prompt\": \"x\"}", "line 1", "`id`"),
            ("{\"id\": \"a\", \"prompt\": \"x\", \"lable\": \"typo\"}", "line 1", "unknown field"),
            ("\n\n{not json", "line 3", ""),
            ("{\"id\": \"a\", \"messages\": []}", "line 1", "empty"),
            ("{\"id\": \"a\", \"prompt\": \"x\", \"tools\": []}", "line 1", "go with `messages`"),
            ("{\"id\": \"a\", \"messages\": [{\"content\": \"x\"}]}", "line 1", "`role`"),
            ("{\"id\": \"a\", \"messages\": [{\"role\": \"user\"}], \"template_args\": {\"messages\": 1}}", "line 1", "set by moescope"),
        ];
        for (text, line, what) in cases {
            let msg = parse(text).unwrap_err().to_string();
            assert!(msg.starts_with("set.jsonl"), "{msg}");
            assert!(
                msg.contains(line) && msg.contains(what),
                "expected `{line}`, `{what}` in {msg}"
            );
        }
    }
}
