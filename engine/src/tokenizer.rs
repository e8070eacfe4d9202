//! The checkpoint's tokenizer (`tokenizer.json`), its chat template
//! (`tokenizer_config.json`) and its generation defaults (`generation_config.json`).

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::config::{read_json, token_ids};
use crate::error::{EngineError, Result};

/// One chat message, as chat templates expect it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The message text.
    pub content: String,
}

/// Tokenizer, chat template and stop tokens of a checkpoint.
pub struct TextCodec {
    tokenizer: tokenizers::Tokenizer,
    tokenizer_path: PathBuf,
    chat_template: Option<String>,
    config_path: PathBuf,
    bos_token: Option<String>,
    eos_token: Option<String>,
    eos_ids: Vec<u32>,
}

impl TextCodec {
    /// Loads `tokenizer.json`, plus `tokenizer_config.json` and `generation_config.json` when
    /// present; `config_eos` are the EOS ids from `config.json`, used when the others give none.
    pub fn open(dir: &Path, config_eos: &[u32]) -> Result<Self> {
        let tokenizer_path = dir.join("tokenizer.json");
        if !tokenizer_path.exists() {
            return Err(EngineError::MissingFile {
                path: tokenizer_path,
                what: "tokenizer",
            });
        }
        let tokenizer = tokenizers::Tokenizer::from_file(&tokenizer_path).map_err(|e| {
            EngineError::Tokenizer {
                path: tokenizer_path.clone(),
                message: format!("cannot load: {e}"),
            }
        })?;
        let config_path = dir.join("tokenizer_config.json");
        let tok_cfg = read_json_if_present(&config_path)?;
        let token_str = |key: &str| -> Option<String> {
            let v = tok_cfg.as_ref()?.get(key)?;
            v.as_str()
                .or_else(|| v.get("content").and_then(Value::as_str))
                .map(str::to_string)
        };
        let mut chat_template = tok_cfg
            .as_ref()
            .and_then(|c| chat_template_of(c.get("chat_template")?));
        let jinja_path = dir.join("chat_template.jinja");
        if chat_template.is_none() && jinja_path.exists() {
            chat_template =
                Some(
                    std::fs::read_to_string(&jinja_path).map_err(|source| EngineError::Io {
                        path: jinja_path.clone(),
                        source,
                    })?,
                );
        }
        let gen_path = dir.join("generation_config.json");
        let mut eos_ids = match read_json_if_present(&gen_path)? {
            Some(g) => match g.get("eos_token_id") {
                Some(v) => token_ids(v).ok_or_else(|| EngineError::BadConfig {
                    path: gen_path.clone(),
                    field: "eos_token_id".into(),
                    message: "expected a token id or a list of ids".into(),
                })?,
                None => Vec::new(),
            },
            None => Vec::new(),
        };
        if eos_ids.is_empty() {
            eos_ids = config_eos.to_vec();
        }
        let eos_token = token_str("eos_token");
        if eos_ids.is_empty() {
            if let Some(id) = eos_token.as_deref().and_then(|t| tokenizer.token_to_id(t)) {
                eos_ids.push(id);
            }
        }
        Ok(Self {
            tokenizer,
            tokenizer_path,
            chat_template,
            config_path,
            bos_token: token_str("bos_token"),
            eos_token,
            eos_ids,
        })
    }

    /// Token ids of raw text (special tokens written in the text are recognised; no BOS is added
    /// unless the tokenizer's post-processor adds one).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.tokenizer.encode(text, true).map_err(|e| self.err(e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of token ids, special tokens included so that `<think>` spans stay visible.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer.decode(ids, false).map_err(|e| self.err(e))
    }

    /// The text of one token, as shown in tables and heatmaps.
    pub fn token_text(&self, id: u32) -> String {
        self.tokenizer
            .decode(&[id], false)
            .unwrap_or_else(|_| format!("<{id}>"))
    }

    /// Number of tokens in the vocabulary, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// Token ids that end generation.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// Whether the checkpoint ships a chat template.
    pub fn has_chat_template(&self) -> bool {
        self.chat_template.is_some()
    }

    /// Renders messages through the chat template, ending with the assistant's turn opened.
    pub fn apply_chat_template(&self, messages: &[ChatMessage]) -> Result<String> {
        let template = self
            .chat_template
            .as_deref()
            .ok_or_else(|| EngineError::ChatTemplate {
                path: self.config_path.clone(),
                message:
                    "this checkpoint has no chat_template; pass the prompt as raw text instead"
                        .into(),
            })?;
        let err = |e: minijinja::Error| EngineError::ChatTemplate {
            path: self.config_path.clone(),
            message: format!("{e:#}"),
        };
        let mut env = minijinja::Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    msg,
                ))
            },
        );
        env.add_template("chat", template).map_err(err)?;
        let ctx = minijinja::context! {
            messages => messages,
            add_generation_prompt => true,
            bos_token => self.bos_token.clone().unwrap_or_default(),
            eos_token => self.eos_token.clone().unwrap_or_default(),
        };
        env.get_template("chat")
            .and_then(|t| t.render(ctx))
            .map_err(err)
    }

    fn err(&self, e: impl std::fmt::Display) -> EngineError {
        EngineError::Tokenizer {
            path: self.tokenizer_path.clone(),
            message: e.to_string(),
        }
    }
}

/// The default template from `chat_template`, which is a string or a list of named templates.
fn chat_template_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => items
            .iter()
            .find(|i| i.get("name").and_then(Value::as_str) == Some("default"))
            .or_else(|| items.first())
            .and_then(|i| i.get("template"))
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => None,
    }
}

fn read_json_if_present(path: &Path) -> Result<Option<Value>> {
    if path.exists() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}
