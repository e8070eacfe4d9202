//! The checkpoint's tokenizer (`tokenizer.json`), its chat template
//! (`tokenizer_config.json`) and its generation defaults (`generation_config.json`).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::chat::{self, ChatMessage, ChatOptions, TemplateArgs};
use crate::config::{read_json, token_ids};
use crate::error::{EngineError, Result};

/// The tokenizer's named special tokens, which transformers passes to every chat template.
const SPECIAL_TOKEN_NAMES: [&str; 7] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];

/// Tokenizer, chat template and stop tokens of a checkpoint.
pub struct TextCodec {
    tokenizer: tokenizers::Tokenizer,
    tokenizer_path: PathBuf,
    /// Named templates (`default`, `tool_use`, …); one unnamed template is called `default`.
    chat_templates: Vec<(String, String)>,
    /// The file the chat template came from, named in its errors.
    template_path: PathBuf,
    special_tokens: Vec<(String, String)>,
    template_args: TemplateArgs,
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
        // As in transformers, a `chat_template.jinja` file takes priority over the config's entry.
        let jinja_path = dir.join("chat_template.jinja");
        let (chat_templates, template_path) = if jinja_path.exists() {
            let source =
                std::fs::read_to_string(&jinja_path).map_err(|source| EngineError::Io {
                    path: jinja_path.clone(),
                    source,
                })?;
            (vec![("default".to_string(), source)], jinja_path)
        } else {
            let templates = tok_cfg
                .as_ref()
                .and_then(|c| c.get("chat_template"))
                .map(chat_templates_of)
                .unwrap_or_default();
            (templates, config_path.clone())
        };
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
        if eos_ids.is_empty() {
            if let Some(id) = token_str("eos_token").and_then(|t| tokenizer.token_to_id(&t)) {
                eos_ids.push(id);
            }
        }
        let special_tokens = SPECIAL_TOKEN_NAMES
            .iter()
            .filter_map(|name| Some((name.to_string(), token_str(name)?)))
            .collect();
        Ok(Self {
            tokenizer,
            tokenizer_path,
            chat_templates,
            template_path,
            special_tokens,
            template_args: TemplateArgs::new(),
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
        !self.chat_templates.is_empty()
    }

    /// Sets the template arguments every chat rendering gets (`--template-arg`); a prompt's
    /// own arguments override them.
    pub fn set_template_args(&mut self, args: TemplateArgs) {
        self.template_args = args;
    }

    /// Renders messages through the chat template as transformers' `apply_chat_template` does.
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        options: &ChatOptions,
    ) -> Result<String> {
        let template = self.chat_template_for(options)?;
        let mut options = options.clone();
        let mut args = self.template_args.clone();
        args.append(&mut options.template_args);
        options.template_args = args;
        chat::render(template, messages, &options, &self.special_tokens).map_err(|e| {
            EngineError::ChatTemplate {
                path: self.template_path.clone(),
                message: format!("{e:#}"),
            }
        })
    }

    /// Token ids of a conversation: the rendered template, encoded without adding special
    /// tokens (the template writes them), as `apply_chat_template(tokenize=True)` does.
    pub fn encode_chat(&self, messages: &[ChatMessage], options: &ChatOptions) -> Result<Vec<u32>> {
        self.encode_rendered_chat(&self.apply_chat_template(messages, options)?)
    }

    /// Token ids of a conversation already rendered by [`TextCodec::apply_chat_template`].
    pub fn encode_rendered_chat(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| self.err(e))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The template transformers would pick: `tool_use` when tools are given and it exists,
    /// else `default`.
    fn chat_template_for(&self, options: &ChatOptions) -> Result<&str> {
        let named = |name: &str| {
            self.chat_templates
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t.as_str())
        };
        let tool_use = options.tools.as_ref().and_then(|_| named("tool_use"));
        if let Some(t) = tool_use.or_else(|| named("default")) {
            return Ok(t);
        }
        let names: Vec<&str> = self
            .chat_templates
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        Err(EngineError::ChatTemplate {
            path: self.template_path.clone(),
            message: if names.is_empty() {
                "this checkpoint has no chat_template; pass the prompt as raw text instead".into()
            } else {
                format!(
                    "chat_template has templates {} but none named `default`",
                    names.join(", ")
                )
            },
        })
    }

    fn err(&self, e: impl std::fmt::Display) -> EngineError {
        EngineError::Tokenizer {
            path: self.tokenizer_path.clone(),
            message: e.to_string(),
        }
    }
}

/// The templates of `chat_template`, which is a string or a list of `{name, template}`.
fn chat_templates_of(v: &Value) -> Vec<(String, String)> {
    match v {
        Value::String(s) => vec![("default".to_string(), s.clone())],
        Value::Array(items) => items
            .iter()
            .filter_map(|i| {
                let name = i.get("name")?.as_str()?;
                let template = i.get("template")?.as_str()?;
                Some((name.to_string(), template.to_string()))
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn read_json_if_present(path: &Path) -> Result<Option<Value>> {
    if path.exists() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}
