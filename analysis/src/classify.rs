//! Rule-based behaviour classifiers: named sets of regular expressions, read from TOML, that
//! say whether a generated text shows a behaviour (a refusal, a `<think>` span, …).
//!
//! ```toml
//! [[rule]]
//! name = "refusal"
//! patterns = ["(?i)\\bI can(no|')t help\\b", "(?i)\\bI won't\\b"]
//! ```

use std::path::Path;

use regex::Regex;
use serde::Deserialize;

use crate::error::AnalysisError;

/// A named behaviour and the patterns that detect it.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The behaviour's name, used as the metric name.
    pub name: String,
    patterns: Vec<Regex>,
}

impl Rule {
    /// Whether any pattern matches `text`.
    pub fn matches(&self, text: &str) -> bool {
        self.patterns.iter().any(|p| p.is_match(text))
    }
}

/// The rules of one file.
#[derive(Debug, Clone)]
pub struct RuleSet {
    /// The rules, in file order.
    pub rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    rule: Vec<toml::Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    patterns: Vec<String>,
}

impl RuleSet {
    /// Reads a rules file.
    pub fn load(path: &Path) -> Result<Self, AnalysisError> {
        let text = std::fs::read_to_string(path).map_err(|error| AnalysisError::Io {
            path: path.to_path_buf(),
            error,
        })?;
        Self::parse(&text, path)
    }

    /// Parses rules text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, AnalysisError> {
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let err = |line, message| AnalysisError::Rules {
            path: path.to_path_buf(),
            line,
            message,
        };
        let raw: RawFile = toml::from_str(text)
            .map_err(|e| err(e.span().map(|s| line_of(s.start)), e.message().to_string()))?;
        let mut rules = Vec::with_capacity(raw.rule.len());
        for spanned in raw.rule {
            let line = Some(line_of(spanned.span().start));
            let r = spanned.into_inner();
            if r.patterns.is_empty() {
                return Err(err(line, format!("rule \"{}\" has no patterns", r.name)));
            }
            let patterns = r
                .patterns
                .iter()
                .map(|p| Regex::new(p).map_err(|e| err(line, format!("rule \"{}\": {e}", r.name))))
                .collect::<Result<_, _>>()?;
            rules.push(Rule {
                name: r.name,
                patterns,
            });
        }
        Ok(Self { rules })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_and_bad_patterns_name_the_line() {
        let text = "[[rule]]\nname = \"refusal\"\npatterns = [\"(?i)i can't help\", \"sorry\"]\n\n[[rule]]\nname = \"think\"\npatterns = [\"<think>\"]\n";
        let set = RuleSet::parse(text, Path::new("r.toml")).unwrap();
        assert!(set.rules[0].matches("I CAN'T HELP with that"));
        assert!(set.rules[0].matches("so sorry"));
        assert!(!set.rules[0].matches("Sure, here it is"));
        assert!(set.rules[1].matches("a <think> b"));
        let bad = text.replace("<think>", "(unclosed");
        let msg = RuleSet::parse(&bad, Path::new("r.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("r.toml line 5") && msg.contains("think"),
            "{msg}"
        );
    }
}
