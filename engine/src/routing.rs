//! The routing step of the shared MoE block: router logits → (optional interventions) →
//! chosen experts and their mixing weights. Every architecture differs here only by its
//! [`RoutingRule`]; every intervention enters through one [`RoutingPolicy`].

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{EngineError, Result};

/// How an architecture turns router logits into the chosen experts and their weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RoutingRule {
    /// Scores are `softmax(logits)`; the top-k scores are the weights, renormalised to sum to
    /// one when `norm_topk_prob` (Mixtral always; OLMoE and Qwen by config).
    Softmax {
        /// Renormalise the chosen weights over the top k.
        norm_topk_prob: bool,
    },
}

/// The experts chosen for a batch of tokens at one layer, `top_k` per token, best first.
#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    /// Number of experts chosen per token.
    pub top_k: usize,
    /// Expert ids, row-major `[tokens, top_k]`.
    pub ids: Vec<u32>,
    /// Mixing weights, row-major `[tokens, top_k]`.
    pub weights: Vec<f32>,
}

impl Routing {
    /// Number of tokens routed.
    pub fn num_tokens(&self) -> usize {
        self.ids.len() / self.top_k.max(1)
    }
}

impl RoutingRule {
    /// Chooses `top_k` experts per row of `logits` (row-major `[tokens, num_experts]`).
    /// Ties go to the lower expert id; NaN never wins.
    pub fn route(&self, logits: &[f32], num_experts: usize, top_k: usize) -> Routing {
        let tokens = logits.len() / num_experts;
        let mut ids = Vec::with_capacity(tokens * top_k);
        let mut weights = Vec::with_capacity(tokens * top_k);
        let mut scores = vec![0f32; num_experts];
        let mut order: Vec<usize> = Vec::with_capacity(num_experts);
        for row in logits.chunks_exact(num_experts) {
            match self {
                RoutingRule::Softmax { norm_topk_prob } => {
                    softmax_into(row, &mut scores);
                    top_k_indices(&scores, top_k, &mut order);
                    let chosen: Vec<f32> = order.iter().map(|&e| scores[e]).collect();
                    let denom = if *norm_topk_prob {
                        chosen.iter().sum::<f32>()
                    } else {
                        1.0
                    };
                    for (&e, &w) in order.iter().zip(&chosen) {
                        ids.push(e as u32);
                        weights.push(w / denom);
                    }
                }
            }
        }
        Routing {
            top_k,
            ids,
            weights,
        }
    }
}

/// Numerically stable softmax of `row` into `out`.
fn softmax_into(row: &[f32], out: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for (o, &x) in out.iter_mut().zip(row) {
        *o = (x - max).exp();
        sum += *o;
    }
    for o in out.iter_mut() {
        *o /= sum;
    }
}

/// Indices of the `k` largest values, largest first, ties to the lower index.
fn top_k_indices(values: &[f32], k: usize, order: &mut Vec<usize>) {
    order.clear();
    order.extend(0..values.len());
    let key = |i: usize| {
        if values[i].is_nan() {
            f32::NEG_INFINITY
        } else {
            values[i]
        }
    };
    order.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
    order.truncate(k);
}

/// The interventions applied at one layer's routing step.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LayerPolicy {
    /// Experts the router may never choose: their logits become −∞ before scoring, so the next
    /// best expert takes their place.
    pub masked: BTreeSet<usize>,
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
        self.layers.values().all(|p| p.masked.is_empty())
    }

    /// Forbids `expert` at `layer`.
    pub fn mask(&mut self, layer: usize, expert: usize) -> &mut Self {
        self.layers.entry(layer).or_default().masked.insert(expert);
        self
    }

    /// The interventions at `layer`, if any.
    pub fn layer(&self, layer: usize) -> Option<&LayerPolicy> {
        self.layers.get(&layer).filter(|p| !p.masked.is_empty())
    }

    /// Checks every layer and expert id against the model, and that each layer keeps at least
    /// `top_k` experts to choose from.
    pub fn validate(&self, moe_layers: &[usize], num_experts: usize, top_k: usize) -> Result<()> {
        for (&layer, policy) in &self.layers {
            if !moe_layers.contains(&layer) {
                return Err(EngineError::InvalidPolicy(format!(
                    "layer {layer} is not an MoE layer; MoE layers are {moe_layers:?}"
                )));
            }
            if let Some(&e) = policy.masked.iter().find(|&&e| e >= num_experts) {
                return Err(EngineError::InvalidPolicy(format!(
                    "layer {layer}: expert {e} does not exist; expert ids run 0..{}",
                    num_experts - 1
                )));
            }
            if num_experts - policy.masked.len() < top_k {
                return Err(EngineError::InvalidPolicy(format!(
                    "layer {layer}: {} of {num_experts} experts masked leaves fewer than top_k = {top_k} to choose",
                    policy.masked.len()
                )));
            }
        }
        Ok(())
    }
}

impl LayerPolicy {
    /// Applies the policy to router logits (row-major `[tokens, num_experts]`) in place.
    pub fn apply(&self, logits: &mut [f32], num_experts: usize) {
        for row in logits.chunks_exact_mut(num_experts) {
            for &e in &self.masked {
                row[e] = f32::NEG_INFINITY;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_top2_renormalised_by_hand() {
        // logits ln(1), ln(2), ln(3), ln(4): probabilities 0.1, 0.2, 0.3, 0.4.
        let logits: Vec<f32> = [1f32, 2., 3., 4.].iter().map(|x| x.ln()).collect();
        let r = RoutingRule::Softmax {
            norm_topk_prob: true,
        }
        .route(&logits, 4, 2);
        assert_eq!(r.ids, vec![3, 2]);
        assert!((r.weights[0] - 4. / 7.).abs() < 1e-6);
        assert!((r.weights[1] - 3. / 7.).abs() < 1e-6);
        let r = RoutingRule::Softmax {
            norm_topk_prob: false,
        }
        .route(&logits, 4, 2);
        assert!((r.weights[0] - 0.4).abs() < 1e-6);
        assert!((r.weights[1] - 0.3).abs() < 1e-6);
    }

    #[test]
    fn mask_hands_the_slot_to_the_next_best() {
        let mut logits: Vec<f32> = [1f32, 2., 3., 4.].iter().map(|x| x.ln()).collect();
        let mut policy = RoutingPolicy::new();
        policy.mask(0, 3);
        policy.layer(0).unwrap().apply(&mut logits, 4);
        let r = RoutingRule::Softmax {
            norm_topk_prob: false,
        }
        .route(&logits, 4, 2);
        assert_eq!(r.ids, vec![2, 1]);
        // Probabilities renormalise over the three remaining experts: 3/6 and 2/6.
        assert!((r.weights[0] - 0.5).abs() < 1e-6);
        assert!((r.weights[1] - 1. / 3.).abs() < 1e-6);
    }

    #[test]
    fn validate_rejects_unknown_layer_expert_and_overmasking() {
        let mut p = RoutingPolicy::new();
        p.mask(5, 0);
        assert!(p.validate(&[0, 1], 4, 2).is_err());
        let mut p = RoutingPolicy::new();
        p.mask(1, 4);
        assert!(p.validate(&[0, 1], 4, 2).is_err());
        let mut p = RoutingPolicy::new();
        p.mask(1, 0).mask(1, 1).mask(1, 2);
        assert!(p.validate(&[0, 1], 4, 2).is_err());
        let mut p = RoutingPolicy::new();
        p.mask(1, 0).mask(1, 1);
        assert!(p.validate(&[0, 1], 4, 2).is_ok());
    }
}
