//! Steering profiles: a versioned TOML list of interventions that the CLI and the GUI both read
//! and write, turned into a [`RoutingPolicy`] after checking it against the model.
//!
//! ```toml
//! version = 1
//! name = "no refusal experts"
//!
//! [[intervention]]
//! layer = 3
//! expert = 17
//! kind = "mask"          # mask | force | scale | logit_bias | soft_activate | soft_deactivate | top_k
//! scope = "both"         # prompt | generated | both (default)
//!
//! [[intervention]]
//! layer = 5
//! expert = 2
//! kind = "scale"
//! value = 1.5            # scale factor, logit bias, ε for soft_*, or k for top_k (no expert)
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::ModelConfig;
use crate::error::{EngineError, Result};
use crate::policy::{ExpertEdit, RoutingPolicy, Scope};

/// The profile format version this build reads and writes.
pub const PROFILE_VERSION: u32 = 1;

/// What an intervention does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InterventionKind {
    /// Never choose the expert.
    Mask,
    /// Always choose the expert.
    Force,
    /// Multiply the expert's weight by `value`.
    Scale,
    /// Add `value` to the expert's router logit.
    LogitBias,
    /// SteerMoE activation with ε = `value` (default 0).
    SoftActivate,
    /// SteerMoE deactivation with ε = `value` (default 0).
    SoftDeactivate,
    /// Choose `value` experts per token at the layer (no `expert`).
    TopK,
}

/// Which tokens an intervention covers, as written in a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeName {
    /// Prompt tokens only.
    Prompt,
    /// Generated tokens only.
    Generated,
    /// Every token.
    #[default]
    Both,
}

impl From<ScopeName> for Scope {
    fn from(s: ScopeName) -> Self {
        match s {
            ScopeName::Prompt => Scope::Prompt,
            ScopeName::Generated => Scope::Generated,
            ScopeName::Both => Scope::Both,
        }
    }
}

/// One intervention as written in a profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intervention {
    /// Decoder layer index.
    pub layer: usize,
    /// Expert id (absent for `top_k`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expert: Option<usize>,
    /// What to do.
    pub kind: InterventionKind,
    /// The kind's number, where it takes one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Which tokens it covers.
    #[serde(default)]
    pub scope: ScopeName,
}

/// A steering profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SteeringProfile {
    /// Format version; must be [`PROFILE_VERSION`].
    pub version: u32,
    /// A short name for tables and the GUI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Free text: where the experts came from, what the profile is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The interventions, applied in the engine's fixed order whatever their order here.
    #[serde(default, rename = "intervention")]
    pub interventions: Vec<Intervention>,
}

/// The same shape, with each intervention's position in the file kept for error messages.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpannedProfile {
    version: u32,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default, rename = "intervention")]
    interventions: Vec<toml::Spanned<Intervention>>,
}

impl SteeringProfile {
    /// Reads a profile and checks it against `config`, returning it with its routing policy.
    pub fn load(path: &Path, config: &ModelConfig) -> Result<(Self, RoutingPolicy)> {
        let text = std::fs::read_to_string(path).map_err(|source| EngineError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path, config)
    }

    /// Parses profile text (`path` names it in errors) and checks it against `config`.
    pub fn parse(text: &str, path: &Path, config: &ModelConfig) -> Result<(Self, RoutingPolicy)> {
        let err = |line: Option<usize>, message: String| EngineError::Profile {
            path: path.to_path_buf(),
            line,
            message,
        };
        let raw: SpannedProfile = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            err(line, e.message().to_string())
        })?;
        if raw.version != PROFILE_VERSION {
            return Err(err(
                Some(1),
                format!(
                    "version {} is not supported; this build reads version {PROFILE_VERSION}",
                    raw.version
                ),
            ));
        }
        let moe_layers = config.moe_layers();
        let (experts, top_k) = (config.moe.num_experts, config.moe.top_k);
        let mut policy = RoutingPolicy::new();
        for (i, spanned) in raw.interventions.iter().enumerate() {
            let line = Some(line_of(text, spanned.span().start));
            let bad = |m: String| err(line, format!("intervention {}: {m}", i + 1));
            let iv = spanned.get_ref();
            if !moe_layers.contains(&iv.layer) {
                return Err(bad(format!(
                    "layer {} is not an MoE layer; MoE layers are {moe_layers:?}",
                    iv.layer
                )));
            }
            let value = |default: Option<f64>| -> Result<f32> {
                match iv.value.or(default) {
                    Some(v) if v.is_finite() => Ok(v as f32),
                    Some(v) => Err(bad(format!("value {v} must be finite"))),
                    None => Err(bad(format!("kind {:?} needs a `value`", iv.kind))),
                }
            };
            let edit = match iv.kind {
                InterventionKind::TopK => {
                    if iv.expert.is_some() {
                        return Err(bad("top_k applies to a whole layer; remove `expert`".into()));
                    }
                    let k = value(None)?;
                    if k.fract() != 0.0 || k < 1.0 || k as usize > experts {
                        return Err(bad(format!(
                            "top_k value {k} must be a whole number from 1 to {experts}"
                        )));
                    }
                    policy.top_k(iv.layer, k as usize, iv.scope.into());
                    continue;
                }
                InterventionKind::Mask => ExpertEdit::Mask,
                InterventionKind::Force => ExpertEdit::Force,
                InterventionKind::Scale => ExpertEdit::Scale(value(None)?),
                InterventionKind::LogitBias => ExpertEdit::LogitBias(value(None)?),
                InterventionKind::SoftActivate => ExpertEdit::SoftActivate(value(Some(0.0))?),
                InterventionKind::SoftDeactivate => ExpertEdit::SoftDeactivate(value(Some(0.0))?),
            };
            let expert = iv
                .expert
                .ok_or_else(|| bad(format!("kind {:?} needs an `expert`", iv.kind)))?;
            if expert >= experts {
                return Err(bad(format!(
                    "expert {expert} does not exist; expert ids run 0..{}",
                    experts - 1
                )));
            }
            policy.edit(iv.layer, expert, edit, iv.scope.into());
        }
        policy
            .validate(&moe_layers, experts, top_k)
            .map_err(|e| err(None, e.to_string()))?;
        let profile = Self {
            version: raw.version,
            name: raw.name,
            description: raw.description,
            interventions: raw
                .interventions
                .into_iter()
                .map(toml::Spanned::into_inner)
                .collect(),
        };
        Ok((profile, policy))
    }

    /// The profile as TOML text, as a profile file holds it (the engine writes no files; the
    /// workbench and the app save this text).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| EngineError::Profile {
            path: self.name.clone().unwrap_or_default().into(),
            line: None,
            message: e.to_string(),
        })
    }

    /// The routing policy of a profile built in code, checked against `config` exactly as a
    /// profile file would be (`name` labels errors).
    pub fn to_policy(&self, name: &str, config: &ModelConfig) -> Result<RoutingPolicy> {
        Ok(Self::parse(&self.to_toml()?, Path::new(name), config)?.1)
    }
}

/// The 1-based line holding byte `offset` of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn config() -> ModelConfig {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/qwen3_moe/config.json");
        ModelConfig::from_file(&path).unwrap()
    }

    fn parse(text: &str) -> Result<(SteeringProfile, RoutingPolicy)> {
        SteeringProfile::parse(text, Path::new("p.toml"), &config())
    }

    const GOOD: &str = r#"version = 1
name = "demo"

[[intervention]]
layer = 1
expert = 3
kind = "mask"

[[intervention]]
layer = 2
expert = 5
kind = "scale"
value = 1.5
scope = "generated"

[[intervention]]
layer = 2
kind = "top_k"
value = 6
"#;

    #[test]
    fn a_good_profile_becomes_a_policy() {
        let (p, policy) = parse(GOOD).unwrap();
        assert_eq!(p.interventions.len(), 3);
        let l2 = policy.layer(2).unwrap();
        assert_eq!(l2.top_k, Some((6, Scope::Both)));
        assert_eq!(l2.edits[0].edit, ExpertEdit::Scale(1.5));
        assert_eq!(l2.edits[0].scope, Scope::Generated);
        assert_eq!(policy.layer(1).unwrap().edits[0].edit, ExpertEdit::Mask);
    }

    #[test]
    fn errors_name_the_line_and_the_fix() {
        let cases = [
            (
                GOOD.replace("layer = 2\nexpert = 5", "layer = 0\nexpert = 5"),
                "line 9",
                "not an MoE layer",
            ),
            (
                GOOD.replace("expert = 5", "expert = 16"),
                "line 9",
                "expert 16 does not exist",
            ),
            (
                GOOD.replace("kind = \"mask\"", "kind = \"zap\""),
                "line 7",
                "unknown variant",
            ),
            (
                GOOD.replace("value = 1.5\n", ""),
                "line 9",
                "needs a `value`",
            ),
            (
                GOOD.replace("value = 6", "value = 99"),
                "line 16",
                "top_k value 99",
            ),
            (
                GOOD.replace("scope = \"generated\"", "scope = \"generated\"\ncolour = 1"),
                "",
                "unknown field",
            ),
            (
                GOOD.replace("version = 1", "version = 7"),
                "line 1",
                "version 7",
            ),
            ("version = 1\n[[intervention]\n".to_string(), "line 2", ""),
        ];
        for (text, line, what) in cases {
            let msg = parse(&text).unwrap_err().to_string();
            assert!(msg.starts_with("p.toml"), "{msg}");
            assert!(
                msg.contains(line) && msg.contains(what),
                "expected `{line}` and `{what}` in: {msg}"
            );
        }
    }

    #[test]
    fn text_round_trip() {
        let (p, policy) = parse(GOOD).unwrap();
        let text = p.to_toml().unwrap();
        let (again, policy_again) =
            SteeringProfile::parse(&text, Path::new("again.toml"), &config()).unwrap();
        assert_eq!(again, p);
        assert_eq!(policy_again, policy);
    }
}
