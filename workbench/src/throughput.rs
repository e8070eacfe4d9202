//! Throughput of a checkpoint: prefill and decode tokens per second, with and without routing
//! capture, as medians over repeated runs, and the process's peak memory meanwhile. What
//! `moescope bench` prints; a benchmark, not a test (numbers go to BENCHMARKS.md beside the HF
//! transformers reference, `tests/bench/hf_bench.py`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use moescope_engine::{
    EngineError, ForwardOptions, KvCache, LogitsFor, ModelConfig, MoeHook, MoeModel, Phase,
    Recorder, RoutingPolicy,
};

use crate::error::{bail, Result};

/// What to measure.
#[derive(Debug, Clone, Copy)]
pub struct BenchSettings {
    /// Prompt length for the prefill measurement.
    pub prompt_len: usize,
    /// Tokens decoded for the decode measurement.
    pub decode_tokens: usize,
    /// Sequences per batch.
    pub batch: usize,
    /// Timed repetitions (the median is reported) after one warm-up.
    pub repeats: usize,
}

/// Throughputs of one configuration, in tokens per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throughput {
    /// Prompt tokens per second.
    pub prefill: f64,
    /// Generated tokens per second (all sequences of the batch).
    pub decode: f64,
}

/// Deterministic pseudo-random prompt ids, away from the special tokens at the start of the
/// vocabulary.
pub fn bench_prompts(vocab_size: usize, args: &BenchSettings) -> Vec<Vec<u32>> {
    let vocab = vocab_size.max(4) as u32;
    (0..args.batch)
        .map(|b| {
            (0..args.prompt_len)
                .map(|i| 3 + (i * 7919 + b * 104_729) as u32 % (vocab - 3))
                .collect()
        })
        .collect()
}

/// Peak memory of this process, sampled every 20 ms on a background thread from the start of
/// the benchmark to its end: anonymous memory (`RssAnon`: what the engine allocates — weights,
/// caches, activations) and the kernel's resident high-water mark (`VmHWM`), which also counts
/// pages of the memory-mapped checkpoint files.
pub struct MemoryPeak {
    anon: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    sampler: Option<std::thread::JoinHandle<()>>,
}

impl MemoryPeak {
    /// Starts sampling.
    pub fn start() -> Self {
        let anon = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (anon, stop) = (Arc::clone(&anon), Arc::clone(&stop));
            std::thread::spawn(move || loop {
                anon.fetch_max(status_bytes("RssAnon:"), Ordering::Relaxed);
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            })
        };
        Self {
            anon,
            stop,
            sampler: Some(sampler),
        }
    }

    /// Stops sampling; returns the peaks (anonymous, resident) in bytes.
    pub fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(s) = self.sampler.take() {
            let _ = s.join();
        }
        (self.anon.load(Ordering::Relaxed), status_bytes("VmHWM:"))
    }
}

/// A `kB` field of `/proc/self/status` in bytes (zero where there is none).
fn status_bytes(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

/// Median prefill and decode throughput, without and with capture, over `repeats` runs after
/// one warm-up; the two variants alternate within each repetition so neither sees a warmer
/// machine.
pub fn measure(
    model: &MoeModel,
    prompts: &[Vec<u32>],
    args: &BenchSettings,
) -> Result<[Throughput; 2]> {
    let mut samples: [(Vec<f64>, Vec<f64>); 2] = Default::default();
    for rep in 0..=args.repeats {
        for (capture, (prefill, decode)) in samples.iter_mut().enumerate() {
            let (p, d) = run_once(model, prompts, args.decode_tokens, capture == 1)?;
            if rep > 0 {
                prefill.push(p);
                decode.push(d);
            }
        }
    }
    Ok(samples.map(|(mut p, mut d)| Throughput {
        prefill: median(&mut p),
        decode: median(&mut d),
    }))
}

/// One prefill and `decode_tokens` decode steps; returns their tokens per second.
fn run_once(
    model: &MoeModel,
    prompts: &[Vec<u32>],
    decode_tokens: usize,
    capture: bool,
) -> Result<(f64, f64)> {
    let policy = RoutingPolicy::new();
    let valid: Vec<Vec<bool>> = prompts.iter().map(|p| vec![true; p.len()]).collect();
    let mut recorder = Recorder::new();
    if capture {
        for hook in [
            MoeHook::RouterLogits,
            MoeHook::TopkIds,
            MoeHook::TopkWeights,
        ] {
            recorder.subscribe_all_layers(hook);
        }
    }
    let mut cache = KvCache::with_capacity(prompts[0].len() + decode_tokens + 1);
    let mut step = |tokens: &[Vec<u32>],
                    valid: &[Vec<bool>],
                    phase: Phase,
                    recorder: Option<&mut Recorder>| {
        let opts = ForwardOptions {
            policy: &policy,
            phase,
            recorder,
            logits_for: LogitsFor::Last,
            gates: None,
        };
        argmax_rows(&model.forward(tokens, valid, &mut cache, opts)?)
    };
    let start = Instant::now();
    let mut next = step(
        prompts,
        &valid,
        Phase::Prompt,
        capture.then_some(&mut recorder),
    )?;
    let prefill_s = start.elapsed().as_secs_f64();
    let one = vec![vec![true]; prompts.len()];
    let start = Instant::now();
    for _ in 0..decode_tokens {
        next = step(
            &next,
            &one,
            Phase::Generated,
            capture.then_some(&mut recorder),
        )?;
        // A consumer hands captures on after each step; keep memory flat like one would.
        drop(recorder.take());
    }
    let decode_s = start.elapsed().as_secs_f64();
    let rows = prompts.len() as f64;
    Ok((
        rows * prompts[0].len() as f64 / prefill_s,
        rows * decode_tokens as f64 / decode_s,
    ))
}

fn argmax_rows(logits: &candle_core::Tensor) -> Result<Vec<Vec<u32>>> {
    let rows: Vec<Vec<f32>> = logits
        .squeeze(1)
        .and_then(|t| t.to_vec2())
        .map_err(EngineError::from)?;
    Ok(rows
        .iter()
        .map(|r| vec![moescope_engine::generate::argmax(r)])
        .collect())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Fails with a message, before any work, when the KV cache and activations of the asked-for
/// batch and lengths would not fit in the memory available beside the loaded weights.
pub fn refuse_runs_that_cannot_fit(config: &ModelConfig, args: &BenchSettings) -> Result<()> {
    let Some(available) = moescope_engine::checkpoint::available_memory() else {
        return Ok(());
    };
    let tokens = (args.batch * (args.prompt_len + args.decode_tokens + 1)) as u64;
    let a = &config.attention;
    // f32 keys and values per token and layer, then a prefill step's widest activations:
    // the logits and a few hidden-sized buffers per prompt token.
    let kv = tokens * (config.layers.len() * 2 * a.num_kv_heads * a.head_dim * 4) as u64;
    let prefill_tokens = (args.batch * args.prompt_len) as u64;
    let activations = prefill_tokens * ((config.vocab_size + 8 * config.hidden_size) * 4) as u64;
    let needed = kv + activations;
    if needed > available {
        bail!(
            "--batch {} with --prompt-len {} and --decode-tokens {} needs about {:.1} GB for the KV cache and activations, \
             but {:.1} GB of memory is available; use a smaller batch or shorter lengths",
            args.batch,
            args.prompt_len,
            args.decode_tokens,
            needed as f64 / 1e9,
            available as f64 / 1e9
        );
    }
    Ok(())
}
