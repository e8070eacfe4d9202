//! One decode step of attention (the cache append and `attend_causal`) at real models' head
//! counts and context lengths: what a decoded token pays per layer besides the weight products.
//! A benchmark, not a test.
//!
//!     cargo run --release -p moescope-engine --example attn_probe

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use moescope_engine::attention::{attend_causal, LayerKv};

/// Head width of both models below.
const HEAD_DIM: usize = 128;
/// Decode steps timed per shape.
const STEPS: usize = 64;

fn main() -> moescope_engine::Result<()> {
    let dev = Device::Cpu;
    let random =
        |heads: usize, len: usize| Tensor::randn(0f32, 1.0, (1, heads, len, HEAD_DIM), &dev);
    println!("{} threads", rayon::current_num_threads());
    // (model, query heads, kv heads): OLMoE-1B-7B and Qwen3-30B-A3B.
    for (model, heads, kv_heads) in [("OLMoE", 16, 16), ("Qwen3-30B-A3B", 32, 4)] {
        for past in [128, 512] {
            let mut cache = LayerKv::default();
            cache.reserve(past + STEPS);
            cache.append(random(kv_heads, past)?, random(kv_heads, past)?)?;
            let q = random(heads, 1)?;
            let mut seconds = 0.0;
            for _ in 0..STEPS {
                let (k, v) = (random(kv_heads, 1)?, random(kv_heads, 1)?);
                let start = Instant::now();
                let (keys, values) = cache.append(k, v)?;
                let mask = Tensor::zeros((1, 1, 1, keys.dim(2)?), DType::F32, &dev)?;
                std::hint::black_box(attend_causal(&q, &keys, &values, &mask, kv_heads, None)?);
                seconds += start.elapsed().as_secs_f64();
            }
            let cache_mb = 2.0 * (kv_heads * (past + STEPS / 2) * HEAD_DIM * 4) as f64 / 1e6;
            println!(
                "{model:<14} heads {heads:>2}/{kv_heads:<2} context {past:>3}+: {:>6.1} µs a step, {cache_mb:.1} MB of f32 cache read",
                seconds / STEPS as f64 * 1e6
            );
        }
    }
    Ok(())
}
