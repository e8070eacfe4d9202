//! Python's `json.dumps` over template values, byte for byte.
//!
//! transformers replaces Jinja's HTML-escaping `tojson` filter with `json.dumps(x,
//! ensure_ascii=False, indent=None, separators=None, sort_keys=False)`, and chat templates use it
//! to print tool signatures and call arguments into the prompt. The token ids a model is fed
//! depend on every space and escape of that output, so this module reproduces Python's rules:
//! `", "` and `": "` separators (`","` once an indent is given), insertion order of keys, Python's
//! shortest float `repr` (`1e-05`, `1e+16`, `2.0`), `NaN` and `Infinity`, and the two escaping
//! modes.

use minijinja::value::{Value, ValueKind};

/// The options of `json.dumps` that transformers' filter passes on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DumpOptions {
    /// Escape every character outside printable ASCII as `\uXXXX`.
    pub ensure_ascii: bool,
    /// `None`: one line; `Some(s)`: one item a line, each level indented by `s`.
    pub indent: Option<String>,
    /// Item and key separators; Python's defaults depend on `indent`.
    pub separators: Option<(String, String)>,
    /// Order the keys of every map.
    pub sort_keys: bool,
}

/// `json.dumps(value, **options)`; an error names what Python would refuse to serialise.
pub fn dumps(value: &Value, options: &DumpOptions) -> Result<String, String> {
    let (item_sep, key_sep) = match &options.separators {
        Some((i, k)) => (i.clone(), k.clone()),
        None if options.indent.is_some() => (",".to_string(), ": ".to_string()),
        None => (", ".to_string(), ": ".to_string()),
    };
    let mut writer = Writer {
        options,
        item_sep,
        key_sep,
        out: String::new(),
    };
    writer.value(value, 0)?;
    Ok(writer.out)
}

struct Writer<'a> {
    options: &'a DumpOptions,
    item_sep: String,
    key_sep: String,
    out: String,
}

impl Writer<'_> {
    fn value(&mut self, value: &Value, depth: usize) -> Result<(), String> {
        match value.kind() {
            ValueKind::None => self.out.push_str("null"),
            ValueKind::Bool => self
                .out
                .push_str(if value.is_true() { "true" } else { "false" }),
            ValueKind::Number => self.out.push_str(&number(value)?),
            ValueKind::String => self.string(value.as_str().unwrap_or_default()),
            ValueKind::Seq => {
                let items: Vec<Value> = value.try_iter().map_err(|e| e.to_string())?.collect();
                self.container('[', ']', items.len(), depth, |w, i, d| {
                    w.value(&items[i], d)
                })?;
            }
            ValueKind::Map => {
                let mut pairs = Vec::new();
                for key in value.try_iter().map_err(|e| e.to_string())? {
                    let item = value.get_item(&key).map_err(|e| e.to_string())?;
                    pairs.push((key_text(&key)?, item));
                }
                if self.options.sort_keys {
                    pairs.sort_by(|a, b| a.0.cmp(&b.0));
                }
                self.container('{', '}', pairs.len(), depth, |w, i, d| {
                    w.string(&pairs[i].0);
                    w.out.push_str(&w.key_sep.clone());
                    w.value(&pairs[i].1, d)
                })?;
            }
            kind => return Err(format!("Object of type {kind} is not JSON serializable")),
        }
        Ok(())
    }

    /// Writes `len` items between `open` and `close`, one a line when an indent is set.
    fn container(
        &mut self,
        open: char,
        close: char,
        len: usize,
        depth: usize,
        mut item: impl FnMut(&mut Self, usize, usize) -> Result<(), String>,
    ) -> Result<(), String> {
        self.out.push(open);
        if len == 0 {
            self.out.push(close);
            return Ok(());
        }
        let indent = self.options.indent.clone();
        let newline = |w: &mut Self, level: usize| {
            if let Some(unit) = &indent {
                w.out.push('\n');
                for _ in 0..level {
                    w.out.push_str(unit);
                }
            }
        };
        for i in 0..len {
            if i > 0 {
                let sep = self.item_sep.clone();
                self.out.push_str(&sep);
            }
            newline(self, depth + 1);
            item(self, i, depth + 1)?;
        }
        newline(self, depth);
        self.out.push(close);
        Ok(())
    }

    fn string(&mut self, s: &str) {
        self.out.push('"');
        for c in s.chars() {
            match c {
                '"' => self.out.push_str("\\\""),
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                '\r' => self.out.push_str("\\r"),
                '\t' => self.out.push_str("\\t"),
                '\u{8}' => self.out.push_str("\\b"),
                '\u{c}' => self.out.push_str("\\f"),
                c if (c as u32) < 0x20 => self.escape_unit(c as u32),
                c if self.options.ensure_ascii && !(' '..='~').contains(&c) => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        self.escape_unit(u32::from(*unit));
                    }
                }
                c => self.out.push(c),
            }
        }
        self.out.push('"');
    }

    fn escape_unit(&mut self, unit: u32) {
        self.out.push_str(&format!("\\u{unit:04x}"));
    }
}

/// A map key as Python's `json.dumps` writes it: strings as they are, numbers, booleans and
/// `None` converted to text, anything else refused.
fn key_text(key: &Value) -> Result<String, String> {
    match key.kind() {
        ValueKind::String => Ok(key.as_str().unwrap_or_default().to_string()),
        ValueKind::Number => number(key),
        ValueKind::Bool => Ok(if key.is_true() { "true" } else { "false" }.into()),
        ValueKind::None => Ok("null".into()),
        kind => Err(format!(
            "keys must be str, int, float, bool or None, not {kind}"
        )),
    }
}

fn number(value: &Value) -> Result<String, String> {
    if value.is_integer() {
        return Ok(value.to_string());
    }
    let x = f64::try_from(value.clone()).map_err(|e| e.to_string())?;
    Ok(python_float_repr(x))
}

/// Python's `repr(float)`: the shortest digits that read back to the same value, written fixed
/// when the decimal exponent is in [-4, 16) and as `d.ddde±XX` otherwise; JSON's `NaN`,
/// `Infinity` and `-Infinity` for the rest.
pub fn python_float_repr(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: `-1.2345e-5`.
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    // Python's decimal point position: the value is 0.DIGITS × 10^decpt.
    let decpt = exp + 1;
    if !(-3..=16).contains(&decpt) {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{frac}e{esign}{:02}", exp.abs());
    }
    let n = digits.len() as i32;
    let body = if decpt <= 0 {
        format!("0.{}{digits}", "0".repeat((-decpt) as usize))
    } else if decpt >= n {
        format!("{digits}{}.0", "0".repeat((decpt - n) as usize))
    } else {
        let (int, frac) = digits.split_at(decpt as usize);
        format!("{int}.{frac}")
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> Value {
        let parsed: serde_json::Value = serde_json::from_str(text).unwrap();
        Value::from_serialize(&parsed)
    }

    #[test]
    fn floats_read_as_python_writes_them() {
        let cases = [
            (1.0, "1.0"),
            (0.5, "0.5"),
            (-2.25, "-2.25"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123456789.125, "123456789.125"),
            (1.5e300, "1.5e+300"),
            (-3.2e-7, "-3.2e-07"),
            (0.1 + 0.2, "0.30000000000000004"),
            (-0.0, "-0.0"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
        ];
        for (x, want) in cases {
            assert_eq!(python_float_repr(x), want, "{x:e}");
        }
    }

    #[test]
    fn separators_indent_and_order_follow_python() {
        let v = json(r#"{"b": [1, 2.0, {"x": null}], "a": {}, "c": [], "d": true}"#);
        assert_eq!(
            dumps(&v, &DumpOptions::default()).unwrap(),
            r#"{"b": [1, 2.0, {"x": null}], "a": {}, "c": [], "d": true}"#
        );
        let indented = DumpOptions {
            indent: Some("  ".into()),
            sort_keys: true,
            ..DumpOptions::default()
        };
        assert_eq!(
            dumps(&v, &indented).unwrap(),
            "{\n  \"a\": {},\n  \"b\": [\n    1,\n    2.0,\n    {\n      \"x\": null\n    }\n  ],\n  \"c\": [],\n  \"d\": true\n}"
        );
        let compact = DumpOptions {
            separators: Some((",".into(), ":".into())),
            ..DumpOptions::default()
        };
        assert_eq!(
            dumps(&json("[1, {\"k\": 2}]"), &compact).unwrap(),
            "[1,{\"k\":2}]"
        );
    }

    #[test]
    fn strings_escape_as_python_does() {
        let v = Value::from("q\"b\\n\n\t\u{1}\u{7f}é😀");
        assert_eq!(
            dumps(&v, &DumpOptions::default()).unwrap(),
            "\"q\\\"b\\\\n\\n\\t\\u0001\u{7f}é😀\""
        );
        let ascii = DumpOptions {
            ensure_ascii: true,
            ..DumpOptions::default()
        };
        assert_eq!(
            dumps(&v, &ascii).unwrap(),
            "\"q\\\"b\\\\n\\n\\t\\u0001\\u007f\\u00e9\\ud83d\\ude00\""
        );
    }

    #[test]
    fn undefined_is_refused() {
        assert!(dumps(&Value::UNDEFINED, &DumpOptions::default()).is_err());
    }
}
