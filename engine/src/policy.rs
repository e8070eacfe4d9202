//! Interventions on routing: per MoE layer and expert, scoped to prompt tokens, generated tokens
//! or both. Every change to routing enters through a [`RoutingPolicy`]; nothing else alters it.
//!
//! At a layer the interventions apply in this order (router logits are captured before step 1):
//! 1. **logit bias**: add a value to the expert's router logit;
//! 2. **soft activate / deactivate** (SteerMoE): set the expert's logit to the row's maximum + ε or
//!    minimum − ε. On log-softmax scores `s = z − logsumexp(z)` this is exactly SteerMoE's
//!    `s_e = max(s) ± ε`, since a softmax router is unchanged by a shift of the whole row; for
//!    sigmoid routers the rule applies to the logits as written;
//! 3. **mask**: the logit becomes −∞, so the expert can't be chosen and leaves its group's score;
//! 4. **force**: the expert is chosen first, whatever its score (its group is kept);
//! 5. **top-k override**: the layer chooses this many experts instead of the model's `top_k`;
//! 6. the routing rule scores, chooses and weights (renormalising over the chosen experts);
//! 7. **scale**: the expert's final mixing weight is multiplied by a factor.

use std::collections::BTreeMap;

use crate::error::{EngineError, Result};

/// Which tokens an intervention applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    /// Only while the prompt is processed.
    Prompt,
    /// Only while new tokens are generated.
    Generated,
    /// Always.
    #[default]
    Both,
}

/// What a forward call is processing, to match against a [`Scope`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Prompt tokens (prefill).
    Prompt,
    /// Generated tokens (decode steps).
    Generated,
}

impl Scope {
    /// Whether an intervention with this scope applies during `phase`.
    pub fn covers(self, phase: Phase) -> bool {
        matches!(
            (self, phase),
            (Scope::Both, _)
                | (Scope::Prompt, Phase::Prompt)
                | (Scope::Generated, Phase::Generated)
        )
    }
}

/// One change to how an expert is routed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ExpertEdit {
    /// Never choose the expert; the next best takes its place.
    Mask,
    /// Always choose the expert.
    Force,
    /// Multiply the expert's mixing weight by this factor when it is chosen.
    Scale(f32),
    /// Add this to the expert's router logit.
    LogitBias(f32),
    /// SteerMoE activation: the expert's score becomes the row's best plus `epsilon`.
    SoftActivate(f32),
    /// SteerMoE deactivation: the expert's score becomes the row's worst minus `epsilon`.
    SoftDeactivate(f32),
}

/// An edit of one expert with its scope.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScopedEdit {
    /// Expert id within the layer.
    pub expert: usize,
    /// What changes.
    pub edit: ExpertEdit,
    /// When it applies.
    pub scope: Scope,
}

/// The interventions at one MoE layer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LayerPolicy {
    /// Per-expert edits, applied in the documented order whatever order they were added in.
    pub edits: Vec<ScopedEdit>,
    /// Experts chosen per token instead of the model's `top_k`, and when.
    pub top_k: Option<(usize, Scope)>,
}

/// The interventions that apply at one layer for one forward call, resolved from a
/// [`LayerPolicy`].
#[derive(Debug, Clone, PartialEq)]
pub struct LayerPlan {
    edits: Vec<(usize, ExpertEdit)>,
    /// Experts that must be chosen.
    pub forced: Vec<usize>,
    /// Experts chosen per token.
    pub top_k: usize,
}

impl LayerPolicy {
    /// The edits that apply during `phase`, or `None` when nothing does.
    pub fn plan(&self, phase: Phase, default_top_k: usize) -> Option<LayerPlan> {
        let edits: Vec<(usize, ExpertEdit)> = self
            .edits
            .iter()
            .filter(|e| e.scope.covers(phase))
            .map(|e| (e.expert, e.edit))
            .collect();
        let top_k = match self.top_k {
            Some((k, scope)) if scope.covers(phase) => Some(k),
            _ => None,
        };
        if edits.is_empty() && top_k.is_none() {
            return None;
        }
        let forced = edits
            .iter()
            .filter(|(_, e)| *e == ExpertEdit::Force)
            .map(|&(x, _)| x)
            .collect();
        Some(LayerPlan {
            edits,
            forced,
            top_k: top_k.unwrap_or(default_top_k),
        })
    }
}

impl LayerPlan {
    /// Steps 1–3 of the documented order on router logits (row-major `[tokens, experts]`).
    pub fn apply_to_logits(&self, logits: &mut [f32], num_experts: usize) {
        for row in logits.chunks_exact_mut(num_experts) {
            for &(e, edit) in &self.edits {
                if let ExpertEdit::LogitBias(b) = edit {
                    row[e] += b;
                }
            }
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let min = row.iter().copied().fold(f32::INFINITY, f32::min);
            for &(e, edit) in &self.edits {
                match edit {
                    ExpertEdit::SoftActivate(eps) => row[e] = max + eps,
                    ExpertEdit::SoftDeactivate(eps) => row[e] = min - eps,
                    _ => {}
                }
            }
            for &(e, edit) in &self.edits {
                if edit == ExpertEdit::Mask {
                    row[e] = f32::NEG_INFINITY;
                }
            }
        }
    }

    /// Step 7: multiplies the weights of scaled experts (`ids`, `weights` row-major, `k` a row).
    pub fn scale_weights(&self, ids: &[u32], weights: &mut [f32]) {
        for &(e, edit) in &self.edits {
            if let ExpertEdit::Scale(factor) = edit {
                for (id, w) in ids.iter().zip(weights.iter_mut()) {
                    if *id as usize == e {
                        *w *= factor;
                    }
                }
            }
        }
    }
}

/// Interventions on routing, per MoE layer. Empty means the model routes as trained.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoutingPolicy {
    layers: BTreeMap<usize, LayerPolicy>,
}

impl RoutingPolicy {
    /// A policy that changes nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the policy changes nothing.
    pub fn is_empty(&self) -> bool {
        self.layers
            .values()
            .all(|p| p.edits.is_empty() && p.top_k.is_none())
    }

    /// Whether some intervention applies to prompt tokens only or to generated tokens only, so
    /// a text scored as context plus continuation must run them in their phases.
    pub fn is_phase_scoped(&self) -> bool {
        self.layers.values().any(|p| {
            p.edits.iter().any(|e| e.scope != Scope::Both)
                || p.top_k.is_some_and(|(_, s)| s != Scope::Both)
        })
    }

    /// Adds an edit of `expert` at `layer`.
    pub fn edit(
        &mut self,
        layer: usize,
        expert: usize,
        edit: ExpertEdit,
        scope: Scope,
    ) -> &mut Self {
        let edits = &mut self.layers.entry(layer).or_default().edits;
        edits.push(ScopedEdit {
            expert,
            edit,
            scope,
        });
        self
    }

    /// Forbids `expert` at `layer` for every token.
    pub fn mask(&mut self, layer: usize, expert: usize) -> &mut Self {
        self.edit(layer, expert, ExpertEdit::Mask, Scope::Both)
    }

    /// Makes `layer` choose `k` experts per token.
    pub fn top_k(&mut self, layer: usize, k: usize, scope: Scope) -> &mut Self {
        self.layers.entry(layer).or_default().top_k = Some((k, scope));
        self
    }

    /// Every `(layer, expert)` with an edit, each once, in layer then expert order.
    pub fn edited_experts(&self) -> Vec<(usize, usize)> {
        let set: std::collections::BTreeSet<(usize, usize)> = self
            .layers
            .iter()
            .flat_map(|(&l, p)| p.edits.iter().map(move |e| (l, e.expert)))
            .collect();
        set.into_iter().collect()
    }

    /// The same policy with each edited expert replaced as `replacement` says (experts it
    /// does not name keep their edits); top-k changes stay as they are. Used to build the
    /// random-experts control of a steering claim: the same edits on other experts of the same
    /// layers.
    pub fn with_experts_replaced(
        &self,
        replacement: &BTreeMap<(usize, usize), usize>,
    ) -> RoutingPolicy {
        let mut out = self.clone();
        for (&layer, p) in out.layers.iter_mut() {
            for e in &mut p.edits {
                if let Some(&other) = replacement.get(&(layer, e.expert)) {
                    e.expert = other;
                }
            }
        }
        out
    }

    /// The interventions at `layer`, if any.
    pub fn layer(&self, layer: usize) -> Option<&LayerPolicy> {
        self.layers
            .get(&layer)
            .filter(|p| !p.edits.is_empty() || p.top_k.is_some())
    }

    /// Checks every layer and expert id and value against the model: ids in range, finite
    /// values, no expert both masked and forced, at most `k` forced, and at least `k` experts
    /// left unmasked.
    pub fn validate(&self, moe_layers: &[usize], num_experts: usize, top_k: usize) -> Result<()> {
        let bad = |msg: String| Err(EngineError::InvalidPolicy(msg));
        for (&layer, policy) in &self.layers {
            if !moe_layers.contains(&layer) {
                return bad(format!(
                    "layer {layer} is not an MoE layer; MoE layers are {moe_layers:?}"
                ));
            }
            let k = policy.top_k.map_or(top_k, |(k, _)| k);
            if k == 0 || k > num_experts {
                return bad(format!(
                    "layer {layer}: top_k {k} must be between 1 and {num_experts}"
                ));
            }
            let (mut masked, mut forced) = (Vec::new(), Vec::new());
            for e in &policy.edits {
                if e.expert >= num_experts {
                    return bad(format!(
                        "layer {layer}: expert {} does not exist; expert ids run 0..{}",
                        e.expert,
                        num_experts - 1
                    ));
                }
                let value = match e.edit {
                    ExpertEdit::Mask => {
                        masked.push(e.expert);
                        None
                    }
                    ExpertEdit::Force => {
                        forced.push(e.expert);
                        None
                    }
                    ExpertEdit::Scale(v) if v < 0.0 => {
                        return bad(format!(
                            "layer {layer}, expert {}: scale {v} must be ≥ 0",
                            e.expert
                        ))
                    }
                    ExpertEdit::SoftActivate(v) | ExpertEdit::SoftDeactivate(v) if v < 0.0 => {
                        return bad(format!(
                            "layer {layer}, expert {}: epsilon {v} must be ≥ 0",
                            e.expert
                        ))
                    }
                    ExpertEdit::Scale(v)
                    | ExpertEdit::LogitBias(v)
                    | ExpertEdit::SoftActivate(v)
                    | ExpertEdit::SoftDeactivate(v) => Some(v),
                };
                if value.is_some_and(|v| !v.is_finite()) {
                    return bad(format!(
                        "layer {layer}, expert {}: value must be finite",
                        e.expert
                    ));
                }
            }
            masked.sort_unstable();
            masked.dedup();
            forced.sort_unstable();
            forced.dedup();
            if let Some(e) = masked.iter().find(|e| forced.contains(e)) {
                return bad(format!(
                    "layer {layer}: expert {e} is both masked and forced"
                ));
            }
            if forced.len() > k {
                return bad(format!(
                    "layer {layer}: {} experts forced but only {k} are chosen per token",
                    forced.len()
                ));
            }
            if num_experts - masked.len() < k {
                return bad(format!(
                    "layer {layer}: {} of {num_experts} experts masked leaves fewer than top_k = {k} to choose",
                    masked.len()
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::{Routing, RoutingRule};

    /// Routes one row of logits through a layer plan and the softmax rule.
    fn route(policy: &RoutingPolicy, phase: Phase, logits: &[f32], norm: bool) -> Routing {
        let e = logits.len();
        let mut z = logits.to_vec();
        let plan = policy.layer(0).and_then(|p| p.plan(phase, 2));
        let k = plan.as_ref().map_or(2, |p| p.top_k);
        let forced = plan.as_ref().map_or(Vec::new(), |p| p.forced.clone());
        if let Some(p) = &plan {
            p.apply_to_logits(&mut z, e);
        }
        let mut r = RoutingRule::softmax(norm).route(&z, e, k, None, &forced);
        if let Some(p) = &plan {
            p.scale_weights(&r.ids, &mut r.weights);
        }
        r
    }

    /// ln(1), ln(2), ln(3), ln(4): softmax probabilities 0.1, 0.2, 0.3, 0.4.
    fn logits() -> Vec<f32> {
        [1f32, 2., 3., 4.].iter().map(|x| x.ln()).collect()
    }

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6)
    }

    #[test]
    fn mask_hands_the_slot_to_the_next_best() {
        let mut p = RoutingPolicy::new();
        p.mask(0, 3);
        let r = route(&p, Phase::Prompt, &logits(), false);
        assert_eq!(r.ids, vec![2, 1]);
        // Probabilities renormalise over the three remaining experts: 3/6 and 2/6.
        assert!(close(&r.weights, &[0.5, 1. / 3.]));
    }

    #[test]
    fn force_takes_the_first_slot_with_its_own_score() {
        let mut p = RoutingPolicy::new();
        p.edit(0, 0, ExpertEdit::Force, Scope::Both);
        let r = route(&p, Phase::Prompt, &logits(), true);
        assert_eq!(r.ids, vec![0, 3]);
        // Renormalised over {0.1, 0.4}.
        assert!(close(&r.weights, &[0.2, 0.8]));
    }

    #[test]
    fn scale_multiplies_the_final_weight() {
        let mut p = RoutingPolicy::new();
        p.edit(0, 2, ExpertEdit::Scale(2.0), Scope::Both);
        let r = route(&p, Phase::Prompt, &logits(), true);
        assert_eq!(r.ids, vec![3, 2]);
        assert!(close(&r.weights, &[4. / 7., 6. / 7.]));
    }

    #[test]
    fn logit_bias_shifts_the_choice() {
        // +ln(5) on expert 0: exp values 5, 2, 3, 4 → experts 0 and 3, weights 5/14 and 4/14.
        let mut p = RoutingPolicy::new();
        p.edit(0, 0, ExpertEdit::LogitBias(5f32.ln()), Scope::Both);
        let r = route(&p, Phase::Prompt, &logits(), false);
        assert_eq!(r.ids, vec![0, 3]);
        assert!(close(&r.weights, &[5. / 14., 4. / 14.]));
    }

    #[test]
    fn soft_activate_and_deactivate_follow_steermoe() {
        // Activate expert 0 with ε = ln 2: its logit becomes ln 4 + ln 2 = ln 8, so the exp
        // values are 8, 2, 3, 4 → experts 0 and 3 with 8/17 and 4/17.
        let mut p = RoutingPolicy::new();
        p.edit(0, 0, ExpertEdit::SoftActivate(2f32.ln()), Scope::Both);
        let r = route(&p, Phase::Prompt, &logits(), false);
        assert_eq!(r.ids, vec![0, 3]);
        assert!(close(&r.weights, &[8. / 17., 4. / 17.]));
        // Deactivate expert 3 with ε = 0: its logit becomes ln 1, tying expert 0 (which wins
        // ties as the lower id): exp values 1, 2, 3, 1 → experts 2 and 1 with 3/7 and 2/7.
        let mut p = RoutingPolicy::new();
        p.edit(0, 3, ExpertEdit::SoftDeactivate(0.0), Scope::Both);
        let r = route(&p, Phase::Prompt, &logits(), false);
        assert_eq!(r.ids, vec![2, 1]);
        assert!(close(&r.weights, &[3. / 7., 2. / 7.]));
    }

    #[test]
    fn top_k_override_and_scope() {
        let mut p = RoutingPolicy::new();
        p.top_k(0, 3, Scope::Generated);
        // Not during the prompt…
        assert_eq!(route(&p, Phase::Prompt, &logits(), true).ids, vec![3, 2]);
        // …but for generated tokens: three experts, renormalised over 0.9.
        let r = route(&p, Phase::Generated, &logits(), true);
        assert_eq!(r.ids, vec![3, 2, 1]);
        assert!(close(&r.weights, &[4. / 9., 3. / 9., 2. / 9.]));
        let mut p = RoutingPolicy::new();
        p.edit(0, 3, ExpertEdit::Mask, Scope::Prompt);
        assert_eq!(route(&p, Phase::Prompt, &logits(), true).ids, vec![2, 1]);
        assert_eq!(route(&p, Phase::Generated, &logits(), true).ids, vec![3, 2]);
    }

    #[test]
    fn validate_rejects_what_the_model_cannot_do() {
        let check = |f: &dyn Fn(&mut RoutingPolicy)| {
            let mut p = RoutingPolicy::new();
            f(&mut p);
            p.validate(&[0, 1], 4, 2)
        };
        assert!(check(&|p| {
            p.mask(5, 0);
        })
        .is_err());
        assert!(check(&|p| {
            p.mask(1, 4);
        })
        .is_err());
        assert!(check(&|p| {
            p.mask(1, 0).mask(1, 1).mask(1, 2);
        })
        .is_err());
        assert!(check(&|p| {
            p.mask(1, 0).edit(1, 0, ExpertEdit::Force, Scope::Both);
        })
        .is_err());
        assert!(check(&|p| {
            for e in 0..3 {
                p.edit(1, e, ExpertEdit::Force, Scope::Both);
            }
        })
        .is_err());
        assert!(check(&|p| {
            p.top_k(1, 5, Scope::Both);
        })
        .is_err());
        assert!(check(&|p| {
            p.edit(1, 0, ExpertEdit::Scale(-1.0), Scope::Both);
        })
        .is_err());
        assert!(check(&|p| {
            p.edit(1, 0, ExpertEdit::LogitBias(f32::NAN), Scope::Both);
        })
        .is_err());
        assert!(check(&|p| {
            p.mask(1, 0)
                .mask(1, 1)
                .edit(1, 2, ExpertEdit::Scale(3.0), Scope::Generated);
        })
        .is_ok());
    }
}
