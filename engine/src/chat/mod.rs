//! Chat messages and their rendering through a checkpoint's chat template, exactly as
//! transformers' `apply_chat_template` renders them (see `template`), so token ids match the
//! literature's.

mod pyjson;
mod pystr;
mod template;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use pyjson::python_float_repr;
pub use template::render;

/// Keyword arguments passed to a chat template beside the messages (`enable_thinking`,
/// `reasoning_effort`, …), as `apply_chat_template(**kwargs)` passes them.
pub type TemplateArgs = Map<String, Value>;

/// Names the renderer sets itself; a template argument may not take them.
pub const RESERVED_TEMPLATE_ARGS: [&str; 4] =
    ["messages", "tools", "documents", "add_generation_prompt"];

/// One chat message as chat templates see it: a JSON object with a string `role`, usually a
/// `content` (a string or a list of parts), and whatever else the conversation carries
/// (`reasoning_content`, `tool_calls`, `name`, …), in the order it was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Map<String, Value>", into = "Map<String, Value>")]
pub struct ChatMessage {
    fields: Map<String, Value>,
}

impl ChatMessage {
    /// A message with a role and text content.
    pub fn new(role: &str, content: &str) -> Self {
        let mut fields = Map::new();
        fields.insert("role".into(), role.into());
        fields.insert("content".into(), content.into());
        Self { fields }
    }

    /// `system`, `user`, `assistant`, `tool`, …
    pub fn role(&self) -> &str {
        self.fields
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// The content when it is text.
    pub fn text(&self) -> Option<&str> {
        self.fields.get("content").and_then(Value::as_str)
    }

    /// Every field, in the order given.
    pub fn fields(&self) -> &Map<String, Value> {
        &self.fields
    }
}

impl TryFrom<Map<String, Value>> for ChatMessage {
    type Error = String;

    fn try_from(fields: Map<String, Value>) -> Result<Self, String> {
        match fields.get("role") {
            Some(Value::String(_)) => Ok(Self { fields }),
            Some(_) => Err("a message's `role` must be a string".into()),
            None => Err("every message needs a `role`".into()),
        }
    }
}

impl From<ChatMessage> for Map<String, Value> {
    fn from(m: ChatMessage) -> Self {
        m.fields
    }
}

/// What a chat template is rendered with besides the messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatOptions {
    /// Tool signatures (JSON schemas), passed as `tools`; `None` renders `tools` as `none`.
    pub tools: Option<Vec<Value>>,
    /// Keyword arguments for the template; they override the tokenizer's special tokens.
    pub template_args: TemplateArgs,
    /// End with the assistant's turn opened (transformers' `add_generation_prompt`).
    pub add_generation_prompt: bool,
}

impl Default for ChatOptions {
    fn default() -> Self {
        Self {
            tools: None,
            template_args: TemplateArgs::new(),
            add_generation_prompt: true,
        }
    }
}

/// Parses `NAME=VALUE` as a template argument: VALUE is read as JSON when it is JSON
/// (`true`, `3`, `"x"`, `[…]`) and taken as a string otherwise (`high`).
pub fn parse_template_arg(text: &str) -> Result<(String, Value), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: write a template argument as NAME=VALUE"))?;
    let name = name.trim();
    let identifier = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !identifier {
        return Err(format!(
            "`{name}` is not a template variable name (letters, digits, _)"
        ));
    }
    check_template_arg_name(name)?;
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.into()));
    Ok((name.to_string(), value))
}

/// Refuses the names the renderer sets itself.
pub fn check_template_arg_name(name: &str) -> Result<(), String> {
    if RESERVED_TEMPLATE_ARGS.contains(&name) {
        return Err(format!(
            "`{name}` is set by moescope itself and cannot be a template argument"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_args_read_json_or_text() {
        assert_eq!(
            parse_template_arg("enable_thinking=false").unwrap(),
            ("enable_thinking".into(), Value::Bool(false))
        );
        assert_eq!(
            parse_template_arg("reasoning_effort=high").unwrap().1,
            Value::String("high".into())
        );
        assert_eq!(parse_template_arg("n=3").unwrap().1, Value::from(3));
        for bad in ["noequals", "1x=2", "a-b=1", "messages=[]", "=1"] {
            assert!(parse_template_arg(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn messages_need_a_string_role_and_keep_their_order() {
        let m: ChatMessage =
            serde_json::from_str(r#"{"content": "hi", "role": "user", "x": 1}"#).unwrap();
        assert_eq!(m.role(), "user");
        assert_eq!(m.text(), Some("hi"));
        let keys: Vec<&String> = m.fields().keys().collect();
        assert_eq!(keys, ["content", "role", "x"]);
        assert!(serde_json::from_str::<ChatMessage>(r#"{"content": "hi"}"#).is_err());
        assert!(serde_json::from_str::<ChatMessage>(r#"{"role": 3}"#).is_err());
    }
}
