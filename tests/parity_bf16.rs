//! Reduced-precision parity: the engine computing in bf16 (weights, activations and matmuls;
//! norms, softmaxes and routing in f32) against the Hugging Face f32 golden outputs of every
//! fixture, on the `single` and `padded` cases.
//!
//! Tolerances:
//! - logits: max |ours − HF| ≤ 2e-2 × max |HF| over the compared positions, or at most twice
//!   the error of HF's own bf16 run (`golden_bf16.safetensors`, made by
//!   `make_bf16_reference.py`) where that is larger, as it is on several of these tiny random
//!   models. Tokens whose expert set differs from the f32 reference at some layer, in our run or
//!   HF's bf16 run, are left out (a flipped expert moves logits by more than rounding);
//! - chosen experts: the same set, except at a token whose HF f32 router logits put an expert we
//!   dropped and one we chose within twice the layer's measured bf16 router-logit error of each
//!   other (a near-tie that bf16 rounding may flip). Such tokens are counted and printed. Routers
//!   whose choice is not a plain top-k of the logits (a selection bias, group-limited routing)
//!   cannot be judged pair by pair: their differing tokens are counted and must stay rare (≤ 5%,
//!   or no more than in HF's own bf16 run).
//!
//! Runs on the cpu (bf16 weights multiplied in place by the engine's kernels with f32
//! accumulation, on the portable path and on the one this CPU has), or on a GPU with
//! `MOESCOPE_TEST_DEVICE=cuda:N` in a cuda build.

mod common;

use candle_core::DType;
use common::{fixture_model, run_case, test_device, Golden, FIXTURES};
use moescope_engine::kernels::{self, KernelPath};
use moescope_engine::routing::Scoring;
use moescope_engine::{CaptureData, Checkpoint, MoeHook, RoutingPolicy};

const LOGIT_RTOL: f32 = 2e-2;
/// On these tiny random models HF's own bf16 run often strays further than `LOGIT_RTOL` from
/// its f32 run (up to 5e-2); the bar is then this multiple of HF's own bf16 error.
const HF_FACTOR: f32 = 2.0;
/// Largest share of token-layers whose expert set may differ where a difference cannot be
/// checked pair by pair, unless HF's own bf16 run differs at as many.
const UNJUDGED_SHARE: f64 = 0.05;

/// What one fixture's comparison found.
#[derive(Default)]
struct Outcome {
    worst_rel: f32,
    hf_worst_rel: f32,
    hf_flips: usize,
    skipped_tokens: usize,
    token_layers: usize,
    near_ties: usize,
    unjudged: usize,
    failures: Vec<String>,
}

fn open_bf16(name: &str) -> Checkpoint {
    Checkpoint::open_as(&fixture_model(name), &test_device(), DType::BF16)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

fn max_abs(v: &[f32]) -> f32 {
    v.iter().fold(0f32, |m, x| m.max(x.abs()))
}

fn check_case(name: &str, ck: &Checkpoint, golden: &Golden, case: &str, out: &mut Outcome) {
    let hooks = [MoeHook::RouterLogits, MoeHook::TopkIds];
    let run = run_case(ck, golden, case, &RoutingPolicy::new(), &hooks);
    let (keep, rows) = (&run.keep, |data: &[f32], width: usize| {
        run.rows(data, width)
    });
    let c = ck.model.config();
    let hf_bf16 = Golden::load_file(name, "golden_bf16.safetensors");
    let (e, k) = (c.moe.num_experts, c.moe.top_k);
    let plain_topk = c.moe.routing.group_limit.is_none()
        && !c.moe.selection_bias
        && matches!(c.moe.routing.scoring, Scoring::Softmax | Scoring::Sigmoid);
    let sorted_ids = |ids: &[u32], i: usize| -> Vec<u32> {
        let mut v = ids[i * k..(i + 1) * k].to_vec();
        v.sort_unstable();
        v
    };
    let as_u32 = |v: Vec<i64>| -> Vec<u32> { v.into_iter().map(|x| x as u32).collect() };
    // Tokens whose expert set differs from the f32 reference at some layer, in our run or in
    // HF's own bf16 run: their logits are not compared (a flipped expert moves them by more
    // than rounding).
    let mut flipped = vec![false; run.logits.len() / c.vocab_size];
    let captures = &run.captures;
    for layer in c.moe_layers() {
        let data = |hook: MoeHook| {
            &captures
                .iter()
                .find(|x| x.point.layer == layer && x.point.hook == hook)
                .unwrap()
                .data
        };
        let (CaptureData::F32(router), CaptureData::U32(ids)) =
            (data(MoeHook::RouterLogits), data(MoeHook::TopkIds))
        else {
            panic!("{name}: capture types")
        };
        let (_, g_router) = golden.f32(&format!("{case}.router_logits.{layer}"));
        let g_ids = as_u32(golden.i64(&format!("{case}.topk_ids.{layer}")).1);
        let hf_ids = as_u32(hf_bf16.i64(&format!("{case}.topk_ids.{layer}")).1);
        let err = max_diff(&rows(router, e), &rows(&g_router, e));
        for &i in keep {
            out.token_layers += 1;
            let (ours, theirs) = (sorted_ids(ids, i), sorted_ids(&g_ids, i));
            if sorted_ids(&hf_ids, i) != theirs {
                out.hf_flips += 1;
                flipped[i] = true;
            }
            if ours == theirs {
                continue;
            }
            flipped[i] = true;
            if !plain_topk {
                out.unjudged += 1;
                continue;
            }
            let g = &g_router[i * e..(i + 1) * e];
            let dropped: Vec<u32> = theirs
                .iter()
                .copied()
                .filter(|x| !ours.contains(x))
                .collect();
            for added in ours.iter().filter(|x| !theirs.contains(x)) {
                let gap = dropped
                    .iter()
                    .map(|&d| (g[d as usize] - g[*added as usize]).abs())
                    .fold(f32::INFINITY, f32::min);
                if gap > 2.0 * err {
                    out.failures.push(format!(
                        "{name}/{case} layer {layer} token {i}: bf16 chose expert {added} instead \
                         of one of {dropped:?}, but HF's f32 logits separate them by {gap}, more \
                         than twice the bf16 router error {err}"
                    ));
                }
            }
            out.near_ties += 1;
        }
    }

    let compared: Vec<usize> = keep.iter().copied().filter(|&i| !flipped[i]).collect();
    let rows_of = |data: &[f32]| -> Vec<f32> {
        let w = c.vocab_size;
        compared
            .iter()
            .flat_map(|&i| data[i * w..(i + 1) * w].iter().copied())
            .collect()
    };
    let theirs = rows_of(&golden.f32(&format!("{case}.logits")).1);
    let scale = max_abs(&theirs);
    let rel = max_diff(&rows_of(&run.logits), &theirs) / scale;
    let hf_rel = max_diff(&rows_of(&hf_bf16.f32(&format!("{case}.logits")).1), &theirs) / scale;
    let bar = LOGIT_RTOL.max(HF_FACTOR * hf_rel);
    if rel > bar {
        out.failures.push(format!(
            "{name}/{case} bf16 logits: max abs diff is {rel:.4} of max |HF|, over {bar:.4} \
             (HF's own bf16 run: {hf_rel:.4})"
        ));
    }
    out.worst_rel = out.worst_rel.max(rel);
    out.hf_worst_rel = out.hf_worst_rel.max(hf_rel);
    out.skipped_tokens += keep.len() - compared.len();
}

/// Runs the comparison on every kernel path this CPU has that differs in arithmetic: the
/// portable path (what a CPU without AVX2 runs, and what CI always exercises) and the one
/// detected here. The whole comparison runs once per path inside this one test, so no other
/// test in this binary sees a forced path.
#[test]
fn bf16_compute_matches_transformers_within_bf16_error() {
    let detected = KernelPath::detect();
    let mut paths = vec![KernelPath::Portable];
    if detected != KernelPath::Portable {
        paths.push(detected);
    }
    for path in paths {
        assert!(kernels::force_path(path));
        eprintln!("kernel path: {}", path.name());
        compare_all_fixtures();
    }
}

fn compare_all_fixtures() {
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for name in FIXTURES {
        let ck = open_bf16(name);
        assert_eq!(ck.model.dtype(), DType::BF16);
        let golden = Golden::load(name);
        let mut out = Outcome::default();
        for case in ["single", "padded"] {
            check_case(name, &ck, &golden, case, &mut out);
        }
        let share = out.unjudged as f64 / out.token_layers as f64;
        if share > UNJUDGED_SHARE && out.unjudged > out.hf_flips {
            out.failures.push(format!(
                "{name}: expert sets differ at {} of {} token-layers",
                out.unjudged, out.token_layers
            ));
        }
        failures.append(&mut out.failures);
        report.push(format!(
            "{name:<20} logits {:.1e} (HF bf16 {:.1e}) · sets differ: {} near-ties + {} unjudged of {} (HF bf16: {}) · {} tokens not compared",
            out.worst_rel, out.hf_worst_rel, out.near_ties, out.unjudged, out.token_layers, out.hf_flips, out.skipped_tokens
        ));
    }
    eprintln!("{}", report.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
