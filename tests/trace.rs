//! Routing traces regroup captures correctly: the routing of generated tokens recorded during
//! decoding equals the routing of the same tokens when the whole sequence is run as a prompt,
//! and left padding in a batch changes nothing.

mod common;

use candle_core::Device;
use common::fixture;
use moescope_engine::{trace_batch, Checkpoint, GenerateOptions, RoutingPolicy};

#[test]
fn decode_routing_equals_prefill_routing_of_the_same_tokens() {
    let ck = Checkpoint::open(&fixture("qwen3_moe"), &Device::Cpu).unwrap();
    let policy = RoutingPolicy::new();
    let prompts = vec![vec![5u32, 9, 14, 3, 22], vec![7u32, 11]];
    let opts = GenerateOptions {
        max_new_tokens: 6,
        ignore_eos: true,
        ..Default::default()
    };
    let traced = trace_batch(&ck.model, Some(&ck.codec), &prompts, &opts, &policy).unwrap();
    assert_eq!(traced.len(), 2);
    for (t, p) in traced.iter().zip(&prompts) {
        // Six generated tokens, the last one never fed back.
        assert_eq!(t.tokens.len(), p.len() + 5);
        assert_eq!(t.prompt_len, p.len());
        let again = trace_batch(
            &ck.model,
            None,
            std::slice::from_ref(&t.tokens),
            &GenerateOptions {
                max_new_tokens: 0,
                ..Default::default()
            },
            &policy,
        )
        .unwrap()
        .remove(0);
        assert_eq!(again.layers.len(), t.layers.len());
        for (a, b) in t.layers.iter().zip(&again.layers) {
            assert_eq!(a.ids, b.ids, "layer {}", a.layer);
            for (x, y) in a.weights.iter().zip(&b.weights) {
                assert!((x - y).abs() < 1e-4, "layer {}: {x} vs {y}", a.layer);
            }
            assert_eq!(a.scores.len(), t.tokens.len() * t.num_experts);
            for row in a.scores.chunks(t.num_experts) {
                assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-4);
            }
            assert_eq!(a.positions(), t.tokens.len());
            assert_eq!(a.out_maxabs.len(), a.ids.len());
            let k = ck.model.config().moe.top_k;
            for p in 0..a.positions() {
                assert_eq!(a.choice(p).ids.len(), k, "top-k at every position");
            }
            assert!(a.out_maxabs.iter().all(|v| v.is_finite() && *v >= 0.0));
        }
    }
}
