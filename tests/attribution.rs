//! Attribution on the embedded default model: batched target scoring agrees with the
//! one-sequence scorer, and the gate gradients from candle's backward pass agree with finite
//! differences of the engine's own weight-scaling intervention (an independent code path).

use std::path::PathBuf;

use candle_core::Device;
use moescope_engine::scoring::continuation_logprob;
use moescope_engine::{
    gate_gradients, target_logprobs, Checkpoint, ExpertEdit, RoutingPolicy, Scope, ScoredPair,
};

fn model() -> Checkpoint {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/default-model");
    Checkpoint::open(&dir, &Device::Cpu).expect("the embedded model loads")
}

fn pairs(ck: &Checkpoint) -> Vec<ScoredPair> {
    let chat = |q: &str| format!("<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n");
    [
        ("How do I make a bomb?", "I can't help with that."),
        ("What is 12 + 30?", "<think>"),
        (
            "Tell me how to bake bread at home, please.",
            "Sure! To bake bread",
        ),
    ]
    .iter()
    .map(|(q, t)| {
        (
            ck.codec.encode(&chat(q)).unwrap(),
            ck.codec.encode(t).unwrap(),
        )
    })
    .collect()
}

#[test]
fn batched_target_scoring_matches_the_sequential_scorer() {
    let ck = model();
    let pairs = pairs(&ck);
    let policy = RoutingPolicy::new();
    let batched = target_logprobs(&ck.model, &policy, &pairs, 3).unwrap();
    for ((c, t), b) in pairs.iter().zip(&batched) {
        let (one, n) = continuation_logprob(&ck.model, &policy, c, t).unwrap();
        assert_eq!(n, t.len());
        // f32 forward passes of different shapes (padding, KV cache vs one pass): 1e-4 relative.
        assert!((one - b).abs() <= 1e-4 * one.abs().max(1.0), "{one} vs {b}");
    }
}

#[test]
fn a_generated_scoped_intervention_is_scored_alike_by_eval_and_attribution() {
    let ck = model();
    let pairs = pairs(&ck);
    let layer = ck.model.config().moe_layers()[0];
    // Mask two experts of the first MoE layer on generated tokens only: the targets' scores
    // change, and eval and attribution must see the same change.
    let mut policy = RoutingPolicy::new();
    for e in 0..2 {
        policy.edit(layer, e, ExpertEdit::Mask, Scope::Generated);
    }
    let unsteered = target_logprobs(&ck.model, &RoutingPolicy::new(), &pairs, 3).unwrap();
    let attributed = target_logprobs(&ck.model, &policy, &pairs, 3).unwrap();
    let (metric, _) = gate_gradients(&ck.model, &policy, &pairs).unwrap();
    let mut changed = false;
    for (((c, t), a), u) in pairs.iter().zip(&attributed).zip(&unsteered) {
        let (evaluated, _) = continuation_logprob(&ck.model, &policy, c, t).unwrap();
        assert!(
            (evaluated - a).abs() <= 1e-4 * evaluated.abs().max(1.0),
            "eval scores {evaluated}, attribution {a}"
        );
        changed |= (a - u).abs() > 1e-3 * u.abs().max(1.0);
    }
    assert!(changed, "the scoped mask must change some target's score");
    let total: f64 = attributed.iter().sum();
    assert!(
        (metric - total).abs() <= 1e-4 * total.abs(),
        "{metric} vs {total}"
    );
}

#[test]
fn gate_gradients_match_finite_differences_of_weight_scaling() {
    let ck = model();
    let pairs = pairs(&ck);
    let base_policy = RoutingPolicy::new();
    let (metric, grads) = gate_gradients(&ck.model, &base_policy, &pairs).unwrap();
    let scored: f64 = target_logprobs(&ck.model, &base_policy, &pairs, 2)
        .unwrap()
        .iter()
        .sum();
    assert!(
        (metric - scored).abs() <= 1e-4 * scored.abs(),
        "{metric} vs {scored}"
    );
    let layers = ck.model.config().moe_layers();
    assert_eq!(grads.len(), layers.len());
    // The experts with the largest gradients, plus one chosen at random-ish, per a few layers.
    // A central difference of step h: small enough that no downstream top-k choice flips
    // (a flip is a jump the gradient rightly ignores; 1e-2 crosses one on this model), large
    // enough that f32 rounding of the summed log-probabilities (~1e-5) stays below 5e-3.
    let h = 2e-3;
    let mut checked = 0;
    for &layer in [layers[0], layers[layers.len() / 2], *layers.last().unwrap()].iter() {
        let g = &grads[&layer];
        let mut order: Vec<usize> = (0..g.len()).collect();
        order.sort_by(|&a, &b| g[b].abs().total_cmp(&g[a].abs()));
        for &expert in &order[..3] {
            let score = |factor: f32| -> f64 {
                let mut p = RoutingPolicy::new();
                p.edit(layer, expert, ExpertEdit::Scale(factor), Scope::Both);
                target_logprobs(&ck.model, &p, &pairs, 3)
                    .unwrap()
                    .iter()
                    .sum()
            };
            let fd = (score(1.0 + h as f32) - score(1.0 - h as f32)) / (2.0 * h);
            let tol = 0.02 * g[expert].abs().max(fd.abs()) + 5e-3;
            assert!(
                (fd - g[expert]).abs() <= tol,
                "layer {layer} expert {expert}: backward {} vs finite difference {fd}",
                g[expert]
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 9);
}
