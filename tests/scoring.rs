//! Likelihood metrics against the reference: the NLL of a fixture's input computed by the engine
//! equals the NLL computed from HF's golden logits, and scoring a continuation through the cache
//! equals scoring it in one pass.

mod common;

use candle_core::Device;
use common::{fixture, Golden};
use moescope_engine::scoring::{continuation_logprob, sequence_nll};
use moescope_engine::{Checkpoint, RoutingPolicy};

#[test]
fn nll_matches_the_one_from_transformers_logits() {
    let golden = Golden::load("qwen2_moe");
    let tokens = golden.rows_u32("single.input_ids").remove(0);
    let (shape, logits) = golden.f32("single.logits");
    let vocab = shape[2];
    let mut reference = 0f64;
    for (t, &next) in tokens.iter().enumerate().skip(1) {
        let row = &logits[(t - 1) * vocab..t * vocab];
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let lse = f64::from(max)
            + row
                .iter()
                .map(|&v| f64::from(v - max).exp())
                .sum::<f64>()
                .ln();
        reference -= f64::from(row[next as usize]) - lse;
    }
    let ck = Checkpoint::open(&fixture("qwen2_moe"), &Device::Cpu).unwrap();
    let (nll, count) = sequence_nll(&ck.model, &RoutingPolicy::new(), &tokens).unwrap();
    assert_eq!(count, tokens.len() - 1);
    assert!(
        (nll - reference).abs() <= 1e-4 * reference.abs(),
        "{nll} vs {reference}"
    );
}

#[test]
fn continuation_scoring_through_the_cache_equals_one_pass() {
    let golden = Golden::load("qwen2_moe");
    let tokens = golden.rows_u32("single.input_ids").remove(0);
    let ck = Checkpoint::open(&fixture("qwen2_moe"), &Device::Cpu).unwrap();
    let none = RoutingPolicy::new();
    let (context, continuation) = tokens.split_at(8);
    let (lp, n) = continuation_logprob(&ck.model, &none, context, continuation).unwrap();
    assert_eq!(n, continuation.len());
    // The same quantity from one pass: NLL of the whole text minus NLL of the context.
    let (all, _) = sequence_nll(&ck.model, &none, &tokens).unwrap();
    let (ctx, _) = sequence_nll(&ck.model, &none, context).unwrap();
    assert!((lp + (all - ctx)).abs() < 1e-3, "{lp} vs {}", -(all - ctx));
    assert!(continuation_logprob(&ck.model, &none, &[], continuation).is_err());
}
