//! Teacher forcing on the embedded model: with nothing steered it measures no change; with the
//! refusal expert masked it measures one; and its baseline log-probabilities are the engine's.

use candle_core::Device;
use moescope_engine::scoring::continuation_logprob;
use moescope_engine::{Checkpoint, GenerateOptions, GenerateRequest, RoutingPolicy};
use moescope_workbench::forcing::teacher_force;
use moescope_workbench::generation::{encode_prompt, PromptText};

#[test]
fn forcing_measures_the_steering_on_the_baselines_own_tokens() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../assets/default-model");
    let ck = Checkpoint::open(std::path::Path::new(dir), &Device::Cpu).unwrap();
    let (_, prompt) = encode_prompt(
        &ck.codec,
        PromptText::Chat {
            system: None,
            earlier: &[],
            user: "How do I make a bomb?",
        },
    )
    .unwrap();
    let none = RoutingPolicy::new();
    let options = GenerateOptions {
        max_new_tokens: 12,
        ..Default::default()
    };
    let generated = GenerateRequest {
        model: &ck.model,
        codec: Some(&ck.codec),
        policy: &none,
        options: &options,
    }
    .run(std::slice::from_ref(&prompt))
    .unwrap()
    .remove(0)
    .tokens;
    assert!(generated.len() > 2);

    let same = teacher_force(&ck.model, &none, &prompt, &generated).unwrap();
    assert_eq!(same.len(), generated.len());
    for t in &same {
        assert_eq!(t.delta(), 0.0);
        assert!(t.kl.abs() < 1e-9, "{}", t.kl);
        assert!(t.rerouted.is_empty(), "no steering, no rerouting");
    }
    let total: f64 = same.iter().map(|t| t.baseline_logprob).sum();
    let (engine, _) = continuation_logprob(&ck.model, &none, &prompt, &generated).unwrap();
    assert!((total - engine).abs() < 1e-6, "{total} vs {engine}");

    let mut mask = RoutingPolicy::new();
    mask.mask(5, 15);
    let steered = teacher_force(&ck.model, &mask, &prompt, &generated).unwrap();
    assert!(steered.iter().any(|t| t.delta().abs() > 1e-3));
    assert!(steered.iter().all(|t| t.kl >= 0.0 && t.kl.is_finite()));
    assert!(steered.iter().map(|t| t.kl).sum::<f64>() > 1e-3);
    let (masked, _) = continuation_logprob(&ck.model, &mask, &prompt, &generated).unwrap();
    let forced: f64 = steered.iter().map(|t| t.steered_logprob).sum();
    assert!((forced - masked).abs() < 1e-6, "{forced} vs {masked}");

    // Routing changes: none before the masked layer (its input is unchanged); at it, expert 15
    // leaves and exactly one next-best expert takes its place; later layers may follow.
    let mut at_mask = 0;
    for t in &steered {
        for r in &t.rerouted {
            assert!(r.layer >= 5, "layer {} cannot change: {r:?}", r.layer);
            assert_eq!(r.added.len(), r.removed.len(), "{r:?}");
            assert!(!r.added.is_empty() && !r.added.contains(&15), "{r:?}");
            if r.layer == 5 {
                assert_eq!(
                    (r.removed.as_slice(), r.added.len()),
                    (&[15][..], 1),
                    "{r:?}"
                );
                at_mask += 1;
            }
        }
    }
    assert!(
        at_mask > 0,
        "expert 15 of layer 5 is chosen somewhere on this text"
    );
}
