//! Chat templates render byte for byte as transformers' `apply_chat_template` renders them, and
//! encode to the same token ids. The templates and conversations in `tests/fixtures/chat/` were
//! written for these tests; `tests/fixtures/make_chat_fixtures.py` rendered them with
//! transformers 5.24 (jinja2 3.1.6) into `expected.json`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use moescope_engine::{ChatMessage, ChatOptions, TemplateArgs, TextCodec};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    name: String,
    messages: Vec<ChatMessage>,
    #[serde(default)]
    tools: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    template_args: TemplateArgs,
    #[serde(default)]
    add_generation_prompt: Option<bool>,
}

/// One rendering by transformers: text and ids, or the message of `raise_exception`, or
/// another error.
#[derive(Deserialize)]
struct Expected {
    folder: String,
    case: String,
    text: Option<String>,
    ids: Option<Vec<u32>>,
    raised: Option<String>,
    error: Option<String>,
}

fn chat_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat")
}

fn read<T: for<'de> Deserialize<'de>>(name: &str) -> T {
    let text = std::fs::read_to_string(chat_dir().join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn templates_render_and_encode_as_transformers_does() {
    let cases: Vec<Case> = read("cases.json");
    let expected: Vec<Expected> = read("expected.json");
    assert!(expected.len() >= 50, "{} renderings", expected.len());
    let mut codecs: HashMap<String, TextCodec> = HashMap::new();
    let mut failures = Vec::new();
    for e in &expected {
        let codec = codecs
            .entry(e.folder.clone())
            .or_insert_with(|| TextCodec::open(&chat_dir().join(&e.folder), &[]).unwrap());
        let case = cases.iter().find(|c| c.name == e.case).unwrap();
        let options = ChatOptions {
            tools: case.tools.clone(),
            template_args: case.template_args.clone(),
            add_generation_prompt: case.add_generation_prompt.unwrap_or(true),
        };
        let label = format!("{} / {}", e.folder, e.case);
        let rendered = codec.apply_chat_template(&case.messages, &options);
        match (&e.text, &e.raised, &e.error, rendered) {
            (Some(want), _, _, Ok(got)) => {
                if &got != want {
                    failures.push(format!(
                        "{label}: rendered\n{got}\n--- transformers\n{want}"
                    ));
                    continue;
                }
                let ids = codec.encode_chat(&case.messages, &options).unwrap();
                if Some(&ids) != e.ids.as_ref() {
                    failures.push(format!("{label}: ids {ids:?}\n vs {:?}", e.ids));
                }
            }
            (_, Some(message), _, Err(err)) if err.to_string().contains(message.as_str()) => {}
            (_, _, Some(_), Err(_)) => {}
            (_, _, _, got) => failures.push(format!(
                "{label}: got {got:?}, transformers gave {:?}",
                e.text.as_ref().or(e.raised.as_ref()).or(e.error.as_ref())
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} renderings differ:\n\n{}",
        failures.len(),
        expected.len(),
        failures.join("\n\n")
    );
}

#[test]
fn a_prompt_sets_template_args_override_the_commands() {
    let mut codec = TextCodec::open(&chat_dir().join("chatml_tools"), &[]).unwrap();
    let messages = [ChatMessage::new("user", "hi")];
    let mut from_cli = TemplateArgs::new();
    from_cli.insert("enable_thinking".into(), false.into());
    codec.set_template_args(from_cli);
    let off = codec
        .apply_chat_template(&messages, &ChatOptions::default())
        .unwrap();
    assert!(off.ends_with("<think>\n\n</think>\n\n"), "{off:?}");
    let mut own = ChatOptions::default();
    own.template_args
        .insert("enable_thinking".into(), true.into());
    let on = codec.apply_chat_template(&messages, &own).unwrap();
    assert!(on.ends_with("<|im_start|>assistant\n"), "{on:?}");
}
