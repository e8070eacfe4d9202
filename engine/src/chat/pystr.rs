//! Python's `str()` of template values, which is what Jinja2 prints for `{{ value }}`:
//! `True`, `None`, `2.5`, `['a', 1]`, `{'k': 'v'}` — where minijinja would print `true`, `none`
//! and JSON-like lists. Installed as the environment's formatter, so chat templates that print
//! a flag or a list render as they do in transformers.

use minijinja::value::{Value, ValueKind};

use super::pyjson::python_float_repr;

/// `str(value)` as Python writes it; undefined prints as nothing, as in Jinja2.
pub fn python_str(value: &Value) -> String {
    match value.kind() {
        ValueKind::Undefined => String::new(),
        ValueKind::String => value.as_str().unwrap_or_default().to_string(),
        _ => python_repr(value),
    }
}

/// `repr(value)` as Python writes it.
fn python_repr(value: &Value) -> String {
    match value.kind() {
        ValueKind::Undefined => String::new(),
        ValueKind::None => "None".into(),
        ValueKind::Bool => if value.is_true() { "True" } else { "False" }.into(),
        ValueKind::Number if value.is_integer() => value.to_string(),
        ValueKind::Number => match f64::try_from(value.clone()) {
            Ok(x) if x.is_nan() => "nan".into(),
            Ok(x) if x.is_infinite() => if x > 0.0 { "inf" } else { "-inf" }.into(),
            Ok(x) => python_float_repr(x),
            Err(_) => value.to_string(),
        },
        ValueKind::String => quoted(value.as_str().unwrap_or_default()),
        ValueKind::Seq => match value.try_iter() {
            Ok(items) => {
                let parts: Vec<String> = items.map(|v| python_repr(&v)).collect();
                format!("[{}]", parts.join(", "))
            }
            Err(_) => value.to_string(),
        },
        ValueKind::Map => match value.try_iter() {
            Ok(keys) => {
                let parts: Vec<String> = keys
                    .map(|k| {
                        let v = value.get_item(&k).unwrap_or_default();
                        format!("{}: {}", python_repr(&k), python_repr(&v))
                    })
                    .collect();
                format!("{{{}}}", parts.join(", "))
            }
            Err(_) => value.to_string(),
        },
        _ => value.to_string(),
    }
}

/// A string literal as Python's `repr` writes it: single quotes unless the text holds a single
/// quote and no double quote.
fn quoted(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_print_as_python_prints_them() {
        let v: serde_json::Value =
            serde_json::from_str(r#"[1, 2.5, true, null, "it's", "a\"b\n", {"k": [false]}]"#)
                .unwrap();
        assert_eq!(
            python_str(&Value::from_serialize(&v)),
            r#"[1, 2.5, True, None, "it's", 'a"b\n', {'k': [False]}]"#
        );
        assert_eq!(python_str(&Value::from(false)), "False");
        assert_eq!(python_str(&Value::from(1e-5)), "1e-05");
        assert_eq!(python_str(&Value::UNDEFINED), "");
        assert_eq!(python_str(&Value::from("plain 'text'")), "plain 'text'");
    }
}
