//! Named hook points (TransformerLens style, `blocks.{l}.moe.router_logits`) and the
//! [`Recorder`] that subscribes to them. A forward pass with no recorder, or with a recorder
//! subscribed to nothing at a layer, computes nothing extra there.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use crate::error::EngineError;

/// What a hook point observes inside one layer's MoE block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MoeHook {
    /// Router logits `[tokens, num_experts]`, before any intervention.
    RouterLogits,
    /// The experts the unsteered router would have chosen `[tokens, top_k]` (only differs from
    /// `TopkIds` when a routing policy is active).
    UnsteeredTopkIds,
    /// The experts finally chosen `[tokens, top_k]`, after interventions.
    TopkIds,
    /// Their mixing weights `[tokens, top_k]`.
    TopkWeights,
    /// Max |down_proj output| of each chosen expert on each token `[tokens, top_k]`
    /// (before weighting), the signal behind super-expert detection.
    ExpertOutMaxAbs,
}

impl MoeHook {
    /// Every MoE hook, in a stable order.
    pub const ALL: [MoeHook; 5] = [
        MoeHook::RouterLogits,
        MoeHook::UnsteeredTopkIds,
        MoeHook::TopkIds,
        MoeHook::TopkWeights,
        MoeHook::ExpertOutMaxAbs,
    ];

    /// The last segment of the hook point name.
    pub fn name(self) -> &'static str {
        match self {
            MoeHook::RouterLogits => "router_logits",
            MoeHook::UnsteeredTopkIds => "unsteered_topk_ids",
            MoeHook::TopkIds => "topk_ids",
            MoeHook::TopkWeights => "topk_weights",
            MoeHook::ExpertOutMaxAbs => "expert_out_maxabs",
        }
    }
}

/// A hook point at one layer, written `blocks.{layer}.moe.{hook}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HookPoint {
    /// Decoder layer index.
    pub layer: usize,
    /// What is observed.
    pub hook: MoeHook,
}

impl fmt::Display for HookPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blocks.{}.moe.{}", self.layer, self.hook.name())
    }
}

/// A subscription: one hook at one layer, or at every layer (`blocks.*.moe.topk_ids`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HookPattern {
    /// `None` matches every layer.
    pub layer: Option<usize>,
    /// What is observed.
    pub hook: MoeHook,
}

impl FromStr for HookPattern {
    type Err = EngineError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |message: &str| EngineError::InvalidHook {
            name: s.to_string(),
            message: message.to_string(),
        };
        let parts: Vec<&str> = s.split('.').collect();
        let [blocks, layer, moe, hook] = parts.as_slice() else {
            return Err(bad(
                "expected blocks.{layer}.moe.{hook}, e.g. blocks.3.moe.topk_ids",
            ));
        };
        if *blocks != "blocks" || *moe != "moe" {
            return Err(bad(
                "expected blocks.{layer}.moe.{hook}, e.g. blocks.3.moe.topk_ids",
            ));
        }
        let layer = match *layer {
            "*" => None,
            l => Some(l.parse().map_err(|_| bad("layer must be a number or *"))?),
        };
        let hook = MoeHook::ALL
            .into_iter()
            .find(|h| h.name() == *hook)
            .ok_or_else(|| {
                let names: Vec<_> = MoeHook::ALL.iter().map(|h| h.name()).collect();
                bad(&format!("unknown hook; known: {}", names.join(", ")))
            })?;
        Ok(Self { layer, hook })
    }
}

/// Values captured at a hook point during one forward call.
#[derive(Debug, Clone, PartialEq)]
pub enum CaptureData {
    /// Floating-point values.
    F32(Vec<f32>),
    /// Expert ids.
    U32(Vec<u32>),
}

/// One capture: where, its shape `[tokens, width]`, and the values (row-major; tokens are the
/// forward call's batch rows times positions, flattened row by row).
#[derive(Debug, Clone, PartialEq)]
pub struct Capture {
    /// Where it was captured.
    pub point: HookPoint,
    /// `[tokens, width]`.
    pub shape: [usize; 2],
    /// The values.
    pub data: CaptureData,
}

/// Subscribes to hook points and collects what the forward pass captures at them.
#[derive(Debug, Default, Clone)]
pub struct Recorder {
    patterns: HashSet<HookPattern>,
    captures: Vec<Capture>,
}

impl Recorder {
    /// A recorder subscribed to nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// A recorder subscribed to the given patterns.
    pub fn with_patterns(patterns: impl IntoIterator<Item = HookPattern>) -> Self {
        Self {
            patterns: patterns.into_iter().collect(),
            captures: Vec::new(),
        }
    }

    /// Subscribes to a hook at every layer.
    pub fn subscribe_all_layers(&mut self, hook: MoeHook) -> &mut Self {
        self.patterns.insert(HookPattern { layer: None, hook });
        self
    }

    /// Subscribes to one pattern.
    pub fn subscribe(&mut self, pattern: HookPattern) -> &mut Self {
        self.patterns.insert(pattern);
        self
    }

    /// Whether anything at `point` is wanted.
    pub fn wants(&self, layer: usize, hook: MoeHook) -> bool {
        self.patterns.contains(&HookPattern { layer: None, hook })
            || self.patterns.contains(&HookPattern {
                layer: Some(layer),
                hook,
            })
    }

    /// Stores a capture (called by the forward pass).
    pub fn record(&mut self, point: HookPoint, shape: [usize; 2], data: CaptureData) {
        self.captures.push(Capture { point, shape, data });
    }

    /// The captures so far, in the order they were made.
    pub fn captures(&self) -> &[Capture] {
        &self.captures
    }

    /// Hands over the captures so far and starts afresh.
    pub fn take(&mut self) -> Vec<Capture> {
        std::mem::take(&mut self.captures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_names_are_rejected() {
        let p: HookPattern = "blocks.3.moe.topk_ids".parse().unwrap();
        assert_eq!(p.layer, Some(3));
        assert_eq!(p.hook, MoeHook::TopkIds);
        let point = HookPoint {
            layer: 3,
            hook: MoeHook::TopkIds,
        };
        assert_eq!(point.to_string(), "blocks.3.moe.topk_ids");
        let all: HookPattern = "blocks.*.moe.router_logits".parse().unwrap();
        assert_eq!(all.layer, None);
        for bad in [
            "blocks.x.moe.topk_ids",
            "blocks.1.mlp.topk_ids",
            "blocks.1.moe.nope",
            "",
            "a.b",
        ] {
            assert!(bad.parse::<HookPattern>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn wants_matches_exact_and_wildcard_layers() {
        let mut r = Recorder::new();
        assert!(!r.wants(0, MoeHook::TopkIds));
        r.subscribe("blocks.2.moe.topk_ids".parse().unwrap());
        assert!(r.wants(2, MoeHook::TopkIds));
        assert!(!r.wants(1, MoeHook::TopkIds));
        r.subscribe_all_layers(MoeHook::RouterLogits);
        assert!(r.wants(7, MoeHook::RouterLogits));
    }
}
