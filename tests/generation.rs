//! Generation stops where it should: on an EOS token (not included) and on a stop string (cut
//! from the text), and sampling is reproducible for a seed.

mod common;

use candle_core::Device;
use common::{fixture, Golden};
use moescope_engine::{
    trace_batch_streaming, CancelFlag, Checkpoint, GenerateOptions, GenerateRequest, RoutingPolicy,
    SelfContrast, StopReason,
};

fn greedy_reference() -> (Vec<Vec<u32>>, Vec<u32>) {
    let golden = Golden::load("qwen3_moe");
    let prompt = golden.rows_u32("single.input_ids");
    let expected = golden.rows_u32("single.greedy").remove(0);
    (prompt, expected)
}

fn run(
    dir: &std::path::Path,
    prompt: &[Vec<u32>],
    opts: &GenerateOptions,
) -> moescope_engine::Generated {
    let ck = Checkpoint::open(dir, &Device::Cpu).unwrap();
    GenerateRequest {
        model: &ck.model,
        codec: Some(&ck.codec),
        policy: &RoutingPolicy::new(),
        options: opts,
    }
    .run(prompt)
    .unwrap()
    .remove(0)
}

#[test]
fn eos_from_generation_config_stops_before_it() {
    let (prompt, expected) = greedy_reference();
    // A copy of the fixture whose generation_config names the third greedy token as EOS.
    let dir = std::env::temp_dir().join(format!("moescope-eos-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(fixture("qwen3_moe")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
    let eos = expected[2];
    std::fs::write(
        dir.join("generation_config.json"),
        format!("{{\"eos_token_id\": [{eos}]}}"),
    )
    .unwrap();
    let opts = GenerateOptions {
        max_new_tokens: 10,
        ..Default::default()
    };
    let out = run(&dir, &prompt, &opts);
    let _ = std::fs::remove_dir_all(&dir);
    let first = expected.iter().position(|&t| t == eos).unwrap();
    assert_eq!(out.stop, StopReason::Eos);
    assert_eq!(out.tokens, expected[..first]);
}

#[test]
fn cancelling_stops_before_the_next_token_and_keeps_the_routing_so_far() {
    let (prompt, expected) = greedy_reference();
    let ck = Checkpoint::open(&fixture("qwen3_moe"), &Device::Cpu).unwrap();
    let cancel = CancelFlag::new();
    let opts = GenerateOptions {
        max_new_tokens: 10,
        ignore_eos: true,
        cancel: Some(cancel.clone()),
        ..Default::default()
    };
    let mut streamed = Vec::new();
    let traces = trace_batch_streaming(
        &ck.model,
        Some(&ck.codec),
        &prompt,
        &opts,
        &RoutingPolicy::new(),
        |_, t| {
            streamed.push(t);
            if streamed.len() == 3 {
                cancel.cancel();
            }
        },
    )
    .unwrap();
    let gen = traces[0].generated.as_ref().unwrap();
    assert_eq!(gen.stop, StopReason::Cancelled);
    assert_eq!(gen.tokens, expected[..3]);
    assert_eq!(streamed, expected[..3]);
    // The prompt and the two generated tokens that were fed back have routing.
    assert_eq!(traces[0].tokens.len(), prompt[0].len() + 2);
    let k = ck.model.config().moe.top_k;
    assert!(traces[0]
        .layers
        .iter()
        .all(|l| l.positions() == traces[0].tokens.len() && l.ids.len() == l.positions() * k));
}

#[test]
fn stop_string_cuts_the_text() {
    let (prompt, expected) = greedy_reference();
    let ck = Checkpoint::open(&fixture("qwen3_moe"), &Device::Cpu).unwrap();
    let full = ck.codec.decode(&expected).unwrap();
    // Stop at the text of the fifth greedy token, wherever it first appears.
    let stop = ck.codec.decode(&expected[4..5]).unwrap();
    assert!(!stop.is_empty());
    let opts = GenerateOptions {
        max_new_tokens: 10,
        ignore_eos: true,
        stop_strings: vec![stop.clone()],
        ..Default::default()
    };
    let out = run(&fixture("qwen3_moe"), &prompt, &opts);
    assert_eq!(out.stop, StopReason::StopString);
    assert_eq!(out.text, full[..full.find(&stop).unwrap()]);
    assert!(out.tokens.len() <= 5);
}

#[test]
fn sampling_is_reproducible_for_a_seed_and_differs_across_seeds() {
    let (prompt, _) = greedy_reference();
    let opts = |seed| GenerateOptions {
        max_new_tokens: 12,
        temperature: 1.5,
        top_p: 0.95,
        seed,
        ignore_eos: true,
        ..Default::default()
    };
    let dir = fixture("qwen3_moe");
    let a = run(&dir, &prompt, &opts(1));
    assert_eq!(a.tokens, run(&dir, &prompt, &opts(1)).tokens);
    let others: Vec<Vec<u32>> = (2..6)
        .map(|s| run(&dir, &prompt, &opts(s)).tokens)
        .collect();
    assert!(
        others.iter().any(|o| *o != a.tokens),
        "five seeds gave the same sample"
    );
}

#[test]
fn self_contrast_reduces_to_greedy_when_it_should() {
    let (prompt, expected) = greedy_reference();
    let ck = Checkpoint::open(&fixture("qwen3_moe"), &Device::Cpu).unwrap();
    let tokens = |contrast| {
        let opts = GenerateOptions {
            max_new_tokens: 10,
            ignore_eos: true,
            contrast: Some(contrast),
            ..Default::default()
        };
        GenerateRequest {
            model: &ck.model,
            codec: None,
            policy: &RoutingPolicy::new(),
            options: &opts,
        }
        .run(&prompt)
        .unwrap()
        .remove(0)
        .tokens
    };
    let config = ck.model.config();
    // β = 0: only the strong distribution counts, and its best token is always plausible.
    assert_eq!(
        tokens(SelfContrast::weak_top_k(config, 1, 0.0, 0.1)),
        expected
    );
    // A weak pass routed like the strong one: (1 + β)·s − β·s = s.
    let same = SelfContrast {
        weak: RoutingPolicy::new(),
        beta: 2.0,
        alpha: 0.1,
    };
    assert_eq!(tokens(same), expected);
    // A real contrast against top-1 routing runs and stays within the vocabulary.
    let contrasted = tokens(SelfContrast::weak_top_k(config, 1, 1.0, 0.1));
    assert_eq!(contrasted.len(), 10);
    assert!(
        contrasted.iter().all(|&t| (t as usize) < config.vocab_size),
        "{contrasted:?}"
    );
}
