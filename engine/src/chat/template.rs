//! The Jinja environment transformers renders chat templates in, rebuilt on minijinja.
//!
//! transformers (`chat_template_utils.py`) compiles a template with `trim_blocks` and
//! `lstrip_blocks`, the `loopcontrols` extension and a `{% generation %}` block tag (which renders
//! its body unchanged and only marks assistant spans); it replaces `tojson` with `json.dumps`
//! and adds the globals `raise_exception` and `strftime_now`; values print as Python's `str()`
//! (also through the `string` and `trim` filters). Before rendering it drops message
//! keys whose value is `None`, copies a message's reasoning between `reasoning_content` and
//! `thinking`, and passes the tokenizer's named special tokens and the caller's keyword
//! arguments beside `messages`, `tools`, `documents` and `add_generation_prompt`. Each of those
//! is reproduced here; `tests/chat_templates.rs` compares the output with transformers' byte
//! for byte.

use std::sync::OnceLock;

use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, Error, ErrorKind};
use serde_json::Map;

use super::pyjson::{self, DumpOptions};
use super::pystr::python_str;
use super::{ChatMessage, ChatOptions};

/// Names a message's reasoning may be given under, in the order transformers looks for it.
const REASONING_FIELDS: [&str; 3] = ["reasoning_content", "thinking", "reasoning"];

/// Renders `source` over `messages` as transformers' `apply_chat_template(…, tokenize=False)`
/// does; `special_tokens` are the tokenizer's named special tokens (`bos_token`, …).
pub fn render(
    source: &str,
    messages: &[ChatMessage],
    options: &ChatOptions,
    special_tokens: &[(String, String)],
) -> Result<String, Error> {
    let mut env = Environment::new();
    minijinja_contrib::add_to_environment(&mut env);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_formatter(|out, _state, value| {
        out.write_str(&python_str(value))
            .map_err(|_| Error::new(ErrorKind::WriteFailure, "cannot write the rendered text"))
    });
    env.add_filter("tojson", tojson);
    env.add_filter("string", |value: &Value| python_str(value));
    env.add_filter("trim", trim);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    let source = generation_blocks_as_plain_blocks(source);
    env.add_template("chat", &source)?;

    let mut context = Map::new();
    for (name, token) in special_tokens {
        context.insert(name.clone(), token.clone().into());
    }
    for (name, value) in &options.template_args {
        context.insert(name.clone(), value.clone());
    }
    let messages: Vec<Map<String, serde_json::Value>> = messages
        .iter()
        .map(message_as_transformers_sees_it)
        .collect();
    context.insert(
        "messages".into(),
        serde_json::to_value(messages).unwrap_or_default(),
    );
    context.insert(
        "tools".into(),
        options
            .tools
            .clone()
            .map(serde_json::Value::Array)
            .unwrap_or_default(),
    );
    context.insert("documents".into(), serde_json::Value::Null);
    context.insert(
        "add_generation_prompt".into(),
        options.add_generation_prompt.into(),
    );
    env.get_template("chat")?
        .render(Value::from_serialize(&context))
}

/// A message with its `null` keys dropped and its reasoning under both names templates read.
fn message_as_transformers_sees_it(message: &ChatMessage) -> Map<String, serde_json::Value> {
    let fields: Map<String, serde_json::Value> = message
        .fields()
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let Some(reasoning) = REASONING_FIELDS
        .iter()
        .find_map(|name| fields.get(*name))
        .cloned()
    else {
        return fields;
    };
    // Python: {"thinking": r, **message, "reasoning_content": r}
    let mut aliased = Map::new();
    aliased.insert("thinking".into(), reasoning.clone());
    aliased.extend(fields);
    aliased.insert("reasoning_content".into(), reasoning);
    aliased
}

/// Rewrites `{% generation %}` … `{% endgeneration %}` as an always-true `if` block, keeping the
/// whitespace markers, so trimming around the tags works as in transformers' extension.
fn generation_blocks_as_plain_blocks(source: &str) -> String {
    static TAG: OnceLock<regex::Regex> = OnceLock::new();
    let tag = TAG.get_or_init(|| {
        regex::Regex::new(r"\{%([-+]?)\s*(end)?generation\s*([-+]?)%\}").expect("valid regex")
    });
    tag.replace_all(source, |c: &regex::Captures<'_>| {
        let word = if c.get(2).is_some() {
            "endif"
        } else {
            "if true"
        };
        format!("{{%{} {word} {}%}}", &c[1], &c[3])
    })
    .into_owned()
}

/// Jinja2's `trim(value, chars=None)`: Python's `str(value).strip(chars)`.
fn trim(value: &Value, chars: Option<String>) -> String {
    let text = python_str(value);
    match chars {
        Some(chars) => text.trim_matches(|c| chars.contains(c)).to_string(),
        None => text.trim().to_string(),
    }
}

/// transformers' `raise_exception(message)`: stops rendering with the template's message.
fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// transformers' `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`.
fn tojson(
    value: &Value,
    ensure_ascii: Option<Value>,
    indent: Option<Value>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let bad = |message: String| Error::new(ErrorKind::InvalidOperation, message);
    let ensure_ascii = match ensure_ascii {
        Some(v) => v.is_true(),
        None => kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false),
    };
    let indent = match indent {
        Some(v) => Some(v),
        None => kwargs.get::<Option<Value>>("indent")?,
    };
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) if v.is_integer() => {
            let n = i64::try_from(v)?;
            Some(" ".repeat(usize::try_from(n).unwrap_or(0)))
        }
        Some(v) if v.as_str().is_some() => v.as_str().map(str::to_string),
        Some(v) => {
            return Err(bad(format!(
                "tojson: indent must be an int or a string, not {v}"
            )))
        }
    };
    let separators = match kwargs.get::<Option<Value>>("separators")? {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => {
            let parts: Vec<String> = v
                .try_iter()?
                .map(|p| p.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or_else(|| bad("tojson: separators must be two strings".into()))?;
            match <[String; 2]>::try_from(parts) {
                Ok([item, key]) => Some((item, key)),
                Err(_) => return Err(bad("tojson: separators must be two strings".into())),
            }
        }
    };
    let sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    kwargs.assert_all_used()?;
    let options = DumpOptions {
        ensure_ascii,
        indent,
        separators,
        sort_keys,
    };
    pyjson::dumps(value, &options)
        .map(Value::from)
        .map_err(|e| bad(format!("tojson: {e}")))
}

/// transformers' `strftime_now(format)`: the local time now, through the C library's
/// `strftime` as Python's `datetime.strftime` does (`%f` is the microseconds, as in Python).
fn strftime_now(format: String) -> Result<Value, Error> {
    let bad = |message: &str| Error::new(ErrorKind::InvalidOperation, message.to_string());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| bad("strftime_now: the clock is before 1970"))?;
    let format = format
        .replace("%%", "\u{0}")
        .replace("%f", &format!("{:06}", now.subsec_micros()));
    let mut out = String::new();
    for (i, part) in format.split('\u{0}').enumerate() {
        if i > 0 {
            out.push('%');
        }
        out.push_str(&c_strftime(part, now.as_secs()).map_err(|e| bad(&e))?);
    }
    Ok(Value::from(out))
}

/// The C library's `strftime` of the local time at `secs` since the epoch.
fn c_strftime(format: &str, secs: u64) -> Result<String, String> {
    if format.is_empty() {
        return Ok(String::new());
    }
    let c_format = std::ffi::CString::new(format).map_err(|e| format!("strftime_now: {e}"))?;
    let t = libc::time_t::try_from(secs).map_err(|e| format!("strftime_now: {e}"))?;
    // SAFETY: `tm` is written by localtime_r before it is read; `buf` outlives the call and its
    // length is passed; the format is NUL-terminated.
    unsafe {
        tzset();
        let mut tm = std::mem::MaybeUninit::<libc::tm>::zeroed();
        if libc::localtime_r(&t, tm.as_mut_ptr()).is_null() {
            return Err("strftime_now: cannot read the local time".into());
        }
        let mut buf = vec![0u8; 256 + 64 * format.len()];
        let n = libc::strftime(
            buf.as_mut_ptr().cast(),
            buf.len(),
            c_format.as_ptr(),
            tm.as_ptr(),
        );
        buf.truncate(n);
        String::from_utf8(buf).map_err(|e| format!("strftime_now: {e}"))
    }
}

extern "C" {
    fn tzset();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_tags_become_plain_blocks() {
        assert_eq!(
            generation_blocks_as_plain_blocks("a{%- generation %}b{% endgeneration -%}c"),
            "a{%- if true %}b{% endif -%}c"
        );
        assert_eq!(
            generation_blocks_as_plain_blocks("{{ 'generation' }}{%generation%}"),
            "{{ 'generation' }}{% if true %}"
        );
    }

    #[test]
    fn reasoning_is_copied_as_transformers_copies_it() {
        let m: ChatMessage = serde_json::from_str(
            r#"{"role": "assistant", "content": "4", "reasoning": "2+2", "tool_calls": null}"#,
        )
        .unwrap();
        let seen = message_as_transformers_sees_it(&m);
        let keys: Vec<&str> = seen.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "thinking",
                "role",
                "content",
                "reasoning",
                "reasoning_content"
            ]
        );
        assert_eq!(seen["thinking"], "2+2");
        assert_eq!(seen["reasoning_content"], "2+2");
    }

    #[test]
    fn strftime_now_reads_the_clock() {
        let year = strftime_now("%Y|%%Y|%f".into()).unwrap().to_string();
        let parts: Vec<&str> = year.split('|').collect();
        assert_eq!(parts.len(), 3, "{year}");
        let y: i32 = parts[0].parse().unwrap();
        assert!((2024..3000).contains(&y), "{year}");
        assert_eq!(parts[1], "%Y");
        assert_eq!(parts[2].len(), 6);
    }
}
