//! Reference parity: the engine against Hugging Face transformers on tiny random checkpoints of
//! every supported architecture (made by `tests/fixtures/make_fixtures.py`).
//!
//! Tolerances (f32 compute):
//! - logits and router logits: max |ours − HF| ≤ 1e-4 × max |HF| over the compared values;
//! - expert ids: identical, in the same order (best first);
//! - expert weights: |ours − HF| ≤ 1e-5 before `routed_scaling_factor` (so 1e-5 × the factor
//!   after it);
//! - 10 greedy tokens: identical.
//!
//! Each fixture is checked for one sequence, a left-padded batch of two (padding positions are
//! not compared), and with one expert masked at one layer. `MOESCOPE_TEST_DEVICE=cuda:0` runs
//! the same checks on a GPU (cuda builds). Reduced precision is checked in `parity_bf16.rs`.

mod common;

use common::{fixture_model, meta, run_case, test_device, Golden, FIXTURES};
use moescope_engine::{
    generate, Capture, CaptureData, Checkpoint, ForwardOptions, GenerateOptions, GenerateRequest,
    KvCache, LogitsFor, MoeHook, Phase, Recorder, RoutingPolicy,
};

const LOGIT_RTOL: f32 = 1e-4;
const WEIGHT_ATOL: f32 = 1e-5;

/// The checkpoint of a fixture, in f32 on the test device.
fn open(name: &str) -> Checkpoint {
    Checkpoint::open(&fixture_model(name), &test_device()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn assert_close_rel(what: &str, ours: &[f32], golden: &[f32]) {
    assert_eq!(ours.len(), golden.len(), "{what}: length");
    let scale = golden.iter().fold(0f32, |m, x| m.max(x.abs()));
    let worst = ours
        .iter()
        .zip(golden)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        worst <= LOGIT_RTOL * scale,
        "{what}: max abs diff {worst} > {LOGIT_RTOL} × {scale}"
    );
}

/// Runs a case's inputs through the engine and compares logits and routing at every MoE layer
/// on the positions where `attention_mask` is 1.
fn check_case(name: &str, ck: &Checkpoint, golden: &Golden, case: &str, policy: &RoutingPolicy) {
    let hooks = [
        MoeHook::RouterLogits,
        MoeHook::TopkIds,
        MoeHook::TopkWeights,
    ];
    let run = run_case(ck, golden, case, policy, &hooks);
    let (keep, select) = (&run.keep, |data: &[f32], width: usize| {
        run.rows(data, width)
    });
    let vocab = ck.model.config().vocab_size;
    let (_, gl) = golden.f32(&format!("{case}.logits"));
    assert_close_rel(
        &format!("{name}/{case} logits"),
        &select(&run.logits, vocab),
        &select(&gl, vocab),
    );

    let moe_layers = ck.model.config().moe_layers();
    // HF returns some routers' top-k unsorted; those ids are compared as sets.
    let sorted = meta(name)["topk_sorted"].as_bool().unwrap_or(true);
    let weight_tol = WEIGHT_ATOL * ck.model.config().moe.routing.scaling.max(1.0);
    let captures = &run.captures;
    for &layer in &moe_layers {
        let get = |hook: MoeHook| -> &Capture {
            captures
                .iter()
                .find(|c| c.point.layer == layer && c.point.hook == hook)
                .unwrap_or_else(|| panic!("{name}: no capture {hook:?} at layer {layer}"))
        };
        let what = |w: &str| format!("{name}/{case} layer {layer} {w}");
        let CaptureData::F32(router) = &get(MoeHook::RouterLogits).data else {
            panic!()
        };
        let (_, g_router) = golden.f32(&format!("{case}.router_logits.{layer}"));
        let e = ck.model.config().moe.num_experts;
        assert_close_rel(
            &what("router logits"),
            &select(router, e),
            &select(&g_router, e),
        );

        let k = ck.model.config().moe.top_k;
        let CaptureData::U32(ids) = &get(MoeHook::TopkIds).data else {
            panic!()
        };
        let CaptureData::F32(weights) = &get(MoeHook::TopkWeights).data else {
            panic!()
        };
        let (_, g_ids) = golden.i64(&format!("{case}.topk_ids.{layer}"));
        let (_, g_w) = golden.f32(&format!("{case}.topk_weights.{layer}"));
        for &i in keep {
            let row = |ids: Vec<i64>, w: &[f32]| -> Vec<(i64, f32)> {
                let mut r: Vec<(i64, f32)> = ids.into_iter().zip(w.iter().copied()).collect();
                if !sorted {
                    r.sort_by_key(|p| p.0);
                }
                r
            };
            let span = i * k..(i + 1) * k;
            let ours = row(
                ids[span.clone()].iter().map(|&x| x as i64).collect(),
                &weights[span.clone()],
            );
            let theirs = row(g_ids[span.clone()].to_vec(), &g_w[span]);
            let (oi, ow): (Vec<i64>, Vec<f32>) = ours.into_iter().unzip();
            let (ti, tw): (Vec<i64>, Vec<f32>) = theirs.into_iter().unzip();
            assert_eq!(oi, ti, "{} token {i}", what("expert ids"));
            for (a, b) in ow.iter().zip(&tw) {
                assert!(
                    (a - b).abs() <= weight_tol,
                    "{} token {i}: {a} vs {b}",
                    what("expert weights")
                );
            }
        }
    }
}

fn check_greedy(name: &str, ck: &Checkpoint, golden: &Golden, case: &str) {
    let tokens = golden.rows_u32(&format!("{case}.input_ids"));
    let mask = golden.rows_u32(&format!("{case}.attention_mask"));
    let prompts: Vec<Vec<u32>> = tokens
        .iter()
        .zip(&mask)
        .map(|(t, m)| {
            t.iter()
                .zip(m)
                .filter(|(_, &m)| m == 1)
                .map(|(&t, _)| t)
                .collect()
        })
        .collect();
    let expected = golden.rows_u32(&format!("{case}.greedy"));
    let opts = GenerateOptions {
        max_new_tokens: expected[0].len(),
        ignore_eos: true,
        ..Default::default()
    };
    let out = GenerateRequest {
        model: &ck.model,
        codec: Some(&ck.codec),
        policy: &RoutingPolicy::new(),
        options: &opts,
    }
    .run(&prompts)
    .unwrap();
    for (row, (g, e)) in out.iter().zip(&expected).enumerate() {
        assert_eq!(&g.tokens, e, "{name}/{case} row {row} greedy tokens");
    }
}

fn check_fixture(name: &str) {
    let ck = open(name);
    let golden = Golden::load(name);
    let none = RoutingPolicy::new();
    check_case(name, &ck, &golden, "single", &none);
    check_case(name, &ck, &golden, "padded", &none);
    check_greedy(name, &ck, &golden, "single");
    check_greedy(name, &ck, &golden, "padded");

    let m = meta(name);
    let layer = m["masked_layer"].as_u64().unwrap() as usize;
    let expert = m["masked_expert"].as_u64().unwrap() as usize;
    let mut policy = RoutingPolicy::new();
    policy.mask(layer, expert);
    check_case(name, &ck, &golden, "masked", &policy);
}

#[test]
fn every_fixture_has_golden_outputs() {
    for name in FIXTURES {
        assert!(Golden::load(name).has("single.logits"), "{name}");
    }
}

#[test]
fn embedded_default_model_matches_transformers() {
    check_fixture("default_model");
}

#[test]
fn mixtral_matches_transformers() {
    check_fixture("mixtral");
}

#[test]
fn olmoe_matches_transformers() {
    check_fixture("olmoe");
}

#[test]
fn qwen2_moe_matches_transformers() {
    check_fixture("qwen2_moe");
}

#[test]
fn qwen3_moe_matches_transformers() {
    check_fixture("qwen3_moe");
}

#[test]
fn bf16_weights_match_transformers_in_f32() {
    check_fixture("qwen3_moe_bf16");
}

#[test]
fn sharded_f16_weights_match_transformers_in_f32() {
    check_fixture("olmoe_f16_sharded");
}

#[test]
fn deepseek_v2_matches_transformers() {
    check_fixture("deepseek_v2");
}

#[test]
fn deepseek_v3_matches_transformers() {
    check_fixture("deepseek_v3");
}

#[test]
fn deepseek_v3_shaped_routing_matches_transformers() {
    check_fixture("deepseek_v3_routing");
}

#[test]
fn deepseek_v2_shaped_routing_matches_transformers() {
    check_fixture("deepseek_v2_routing");
}

#[test]
fn gpt_oss_shaped_routing_matches_transformers() {
    check_fixture("gpt_oss_routing");
}

#[test]
fn gpt_oss_matches_transformers() {
    check_fixture("gpt_oss");
}

#[test]
fn gpt_oss_mxfp4_experts_match_transformers() {
    check_fixture("gpt_oss_mxfp4");
}

#[test]
fn fp8_block_quantized_qwen3_moe_matches_transformers() {
    check_fixture("qwen3_moe_fp8");
}

#[test]
fn fp8_block_quantized_deepseek_v3_matches_transformers() {
    check_fixture("deepseek_v3_fp8");
}

#[test]
fn masked_expert_is_never_chosen() {
    for name in FIXTURES {
        let ck = open(name);
        let golden = Golden::load(name);
        let m = meta(name);
        let layer = m["masked_layer"].as_u64().unwrap() as usize;
        let expert = m["masked_expert"].as_u64().unwrap() as u32;
        let mut policy = RoutingPolicy::new();
        policy.mask(layer, expert as usize);
        let mut rec = Recorder::new();
        rec.subscribe_all_layers(MoeHook::TopkIds);
        rec.subscribe_all_layers(MoeHook::UnsteeredTopkIds);
        let prompts = golden.rows_u32("single.input_ids");
        let opts = GenerateOptions {
            max_new_tokens: 5,
            ignore_eos: true,
            ..Default::default()
        };
        generate(
            &GenerateRequest {
                model: &ck.model,
                codec: None,
                policy: &policy,
                options: &opts,
            },
            &prompts,
            Some(&mut rec),
            |_, _| {},
        )
        .unwrap();
        let mut unsteered_had_it = false;
        for c in rec.captures().iter().filter(|c| c.point.layer == layer) {
            let CaptureData::U32(ids) = &c.data else {
                panic!()
            };
            match c.point.hook {
                MoeHook::TopkIds => assert!(!ids.contains(&expert), "{name}: masked expert chosen"),
                MoeHook::UnsteeredTopkIds => unsteered_had_it |= ids.contains(&expert),
                _ => {}
            }
        }
        assert!(unsteered_had_it, "{name}: the unsteered router never chose the masked expert, so the test proves nothing");
    }
}

/// A prompt longer than one attention query block (128) gives the same last-position logits
/// in one prefill as fed token by token through the KV cache, and in a left-padded batch.
#[test]
fn long_prompt_blocks_agree_with_incremental_decoding() {
    let ck = open("qwen2_moe");
    let none = RoutingPolicy::new();
    let len = 200;
    let prompt: Vec<u32> = (0..len).map(|i| 3 + (i * 37 % 300) as u32).collect();
    let run = |tokens: &[Vec<u32>], valid: &[Vec<bool>], cache: &mut KvCache| -> Vec<f32> {
        let opts = ForwardOptions {
            policy: &none,
            phase: Phase::Prompt,
            recorder: None,
            logits_for: LogitsFor::Last,
            gates: None,
        };
        let logits = ck.model.forward(tokens, valid, cache, opts).unwrap();
        logits.flatten_all().unwrap().to_vec1().unwrap()
    };
    let whole = run(
        std::slice::from_ref(&prompt),
        &[vec![true; len]],
        &mut KvCache::new(),
    );
    let mut cache = KvCache::new();
    let mut stepwise = Vec::new();
    for &t in &prompt {
        stepwise = run(&[vec![t]], &[vec![true]], &mut cache);
    }
    assert_close_rel("long prompt: whole vs stepwise", &whole, &stepwise);

    let short: Vec<u32> = prompt[..150].to_vec();
    let padded = [vec![0u32; len - 150], short.clone()].concat();
    let valid = [vec![false; len - 150], vec![true; 150]].concat();
    let batch = run(
        &[prompt.clone(), padded],
        &[vec![true; len], valid],
        &mut KvCache::new(),
    );
    let alone = run(
        std::slice::from_ref(&short),
        &[vec![true; 150]],
        &mut KvCache::new(),
    );
    let vocab = ck.model.config().vocab_size;
    assert_close_rel("long prompt: batch row 0", &batch[..vocab], &whole);
    assert_close_rel("long prompt: padded row 1", &batch[vocab..], &alone);
}
