//! Batched text generation: left-padded prefill, then one token per row per step from the KV
//! cache, greedy or sampled (temperature, top-p, seed), stopping on EOS or stop strings.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::contrast::SelfContrast;
use crate::error::{EngineError, Result};
use crate::hooks::Recorder;
use crate::model::{ForwardOptions, KvCache, LogitsFor, MoeModel};
use crate::policy::{Phase, RoutingPolicy};
use crate::tokenizer::TextCodec;

/// How to pick and when to stop.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// Most tokens generated per row.
    pub max_new_tokens: usize,
    /// 0 means greedy (reproducible); above 0 samples from `softmax(logits / temperature)`.
    pub temperature: f64,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches this.
    pub top_p: f64,
    /// Seed of the sampler.
    pub seed: u64,
    /// Generation of a row ends once its text contains one of these (the string is cut off).
    pub stop_strings: Vec<String>,
    /// Keep going past EOS tokens (for benchmarks and reference comparisons).
    pub ignore_eos: bool,
    /// Self-contrast decoding against a weaker routing of the same model, if wanted.
    pub contrast: Option<SelfContrast>,
    /// Lets another thread stop the generation between two tokens (the GUI's cancel button).
    pub cancel: Option<CancelFlag>,
}

/// A flag shared between a generation and whoever may cancel it; clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    /// A flag that is not raised.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the generation to stop before its next token.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`CancelFlag::cancel`] was called on this flag or a clone of it.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Two flags are equal when they are the same shared flag.
impl PartialEq for CancelFlag {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_new_tokens: 32,
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
            stop_strings: Vec::new(),
            ignore_eos: false,
            contrast: None,
            cancel: None,
        }
    }
}

/// Why a row stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Reached `max_new_tokens`.
    MaxTokens,
    /// Produced an EOS token (not included in `tokens`).
    Eos,
    /// Its text reached a stop string (cut from `text`).
    StopString,
    /// The caller raised the options' [`CancelFlag`].
    Cancelled,
}

/// The result for one prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// Generated token ids.
    pub tokens: Vec<u32>,
    /// Their text (empty when no codec was given).
    pub text: String,
    /// Why generation ended.
    pub stop: StopReason,
}

/// What a generation runs: the model, its tokenizer (for text and stop strings), the routing
/// policy and the sampling options; one request serves any prompts.
#[derive(Clone, Copy)]
pub struct GenerateRequest<'a> {
    /// The model.
    pub model: &'a MoeModel,
    /// The tokenizer, for the generated text and stop strings; `None` leaves `text` empty.
    pub codec: Option<&'a TextCodec>,
    /// The interventions on routing (empty: the model as trained).
    pub policy: &'a RoutingPolicy,
    /// Length, sampling, stop strings, self-contrast and cancellation.
    pub options: &'a GenerateOptions,
}

impl GenerateRequest<'_> {
    /// Generates a continuation of every prompt, recording nothing and streaming nothing.
    pub fn run(&self, prompts: &[Vec<u32>]) -> Result<Vec<Generated>> {
        generate(self, prompts, None, |_, _| {})
    }
}

/// Generates a continuation of every prompt in one batch, with `recorder` subscribed to the
/// hooks if given. `on_token(row, token)` is called as each token is accepted, for streaming
/// output.
pub fn generate(
    request: &GenerateRequest<'_>,
    prompts: &[Vec<u32>],
    mut recorder: Option<&mut Recorder>,
    mut on_token: impl FnMut(usize, u32),
) -> Result<Vec<Generated>> {
    let GenerateRequest {
        model,
        codec,
        policy,
        options: opts,
    } = *request;
    if prompts.is_empty() || prompts.iter().any(Vec::is_empty) {
        return Err(EngineError::InvalidInput(
            "every prompt needs at least one token".into(),
        ));
    }
    if !opts.stop_strings.is_empty() && codec.is_none() {
        return Err(EngineError::InvalidInput(
            "stop strings need the tokenizer".into(),
        ));
    }
    if !(opts.top_p > 0.0 && opts.top_p <= 1.0)
        || opts.temperature.is_nan()
        || opts.temperature < 0.0
    {
        return Err(EngineError::InvalidInput(format!(
            "temperature must be ≥ 0 and top_p in (0, 1]; got {} and {}",
            opts.temperature, opts.top_p
        )));
    }
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let context = model.config().max_position_embeddings;
    if longest + opts.max_new_tokens > context {
        return Err(EngineError::InvalidInput(format!(
            "prompt of {longest} tokens plus {} new tokens exceeds the model's context of {context} (max_position_embeddings); shorten the prompt or lower --max-tokens",
            opts.max_new_tokens
        )));
    }
    let batch = prompts.len();
    let (mut tokens, mut valid) = left_pad(prompts);
    if let Some(c) = &opts.contrast {
        c.validate().map_err(EngineError::InvalidInput)?;
    }
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let mut cache = KvCache::with_capacity(longest + opts.max_new_tokens);
    let mut weak_cache = KvCache::with_capacity(longest + opts.max_new_tokens);
    let mut out: Vec<Generated> = (0..batch)
        .map(|_| Generated {
            tokens: Vec::new(),
            text: String::new(),
            stop: StopReason::MaxTokens,
        })
        .collect();
    let mut done = vec![false; batch];
    for step in 0..opts.max_new_tokens {
        if opts.cancel.as_ref().is_some_and(CancelFlag::is_cancelled) {
            for (row, _) in out.iter_mut().zip(&done).filter(|(_, &d)| !d) {
                row.stop = StopReason::Cancelled;
            }
            break;
        }
        let phase = if step == 0 {
            Phase::Prompt
        } else {
            Phase::Generated
        };
        let logits = model.forward(
            &tokens,
            &valid,
            &mut cache,
            ForwardOptions {
                policy,
                phase,
                recorder: recorder.as_deref_mut(),
                logits_for: LogitsFor::Last,
                gates: None,
            },
        )?;
        let mut rows: Vec<Vec<f32>> = logits.squeeze(1)?.to_vec2()?;
        check_finite(&rows, &done, step)?;
        if let Some(c) = &opts.contrast {
            let weak = model.forward(
                &tokens,
                &valid,
                &mut weak_cache,
                ForwardOptions {
                    policy: &c.weak,
                    phase,
                    recorder: None,
                    logits_for: LogitsFor::Last,
                    gates: None,
                },
            )?;
            let weak: Vec<Vec<f32>> = weak.squeeze(1)?.to_vec2()?;
            rows = rows
                .iter()
                .zip(&weak)
                .map(|(s, w)| c.combine(s, w))
                .collect();
        }
        let mut next = Vec::with_capacity(batch);
        for (b, row) in rows.iter().enumerate() {
            let t = pick(row, opts, &mut rng);
            next.push(t);
            if done[b] {
                continue;
            }
            if !opts.ignore_eos && codec.is_some_and(|c| c.eos_ids().contains(&t)) {
                done[b] = true;
                out[b].stop = StopReason::Eos;
                continue;
            }
            out[b].tokens.push(t);
            on_token(b, t);
            if let Some(c) = codec {
                out[b].text = c.decode(&out[b].tokens)?;
                if let Some(cut) = opts
                    .stop_strings
                    .iter()
                    .filter_map(|s| out[b].text.find(s.as_str()))
                    .min()
                {
                    out[b].text.truncate(cut);
                    done[b] = true;
                    out[b].stop = StopReason::StopString;
                }
            }
        }
        if done.iter().all(|&d| d) {
            break;
        }
        tokens = next.into_iter().map(|t| vec![t]).collect();
        valid = done.iter().map(|&d| vec![!d]).collect();
    }
    Ok(out)
}

/// Left-pads prompts to the longest one: token rows (padding id 0) and their validity masks.
pub(crate) fn left_pad(prompts: &[Vec<u32>]) -> (Vec<Vec<u32>>, Vec<Vec<bool>>) {
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    prompts
        .iter()
        .map(|p| {
            let pad = longest - p.len();
            (
                [vec![0u32; pad], p.clone()].concat(),
                [vec![false; pad], vec![true; p.len()]].concat(),
            )
        })
        .unzip()
}

/// Fails on a NaN or infinite logit in a row still generating: text sampled from it would be
/// meaningless (NaN compares false, so every pick would be token 0).
fn check_finite(rows: &[Vec<f32>], done: &[bool], step: usize) -> Result<()> {
    for (b, row) in rows.iter().enumerate() {
        if done.get(b).copied().unwrap_or(false) {
            continue;
        }
        if let Some(v) = row.iter().find(|v| !v.is_finite()) {
            return Err(EngineError::NonFinite {
                what: format!("logit {v} for prompt {b} at generation step {step}"),
            });
        }
    }
    Ok(())
}

/// Picks the next token from one row of logits.
fn pick(logits: &[f32], opts: &GenerateOptions, rng: &mut StdRng) -> u32 {
    if opts.temperature <= 0.0 {
        return argmax(logits);
    }
    let t = opts.temperature as f32;
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut probs: Vec<(u32, f32)> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| (i as u32, ((l - max) / t).exp()))
        .collect();
    let total: f32 = probs.iter().map(|p| p.1).sum();
    probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut kept = 0;
    let mut mass = 0f32;
    for (_, p) in &probs {
        kept += 1;
        mass += p / total;
        if f64::from(mass) >= opts.top_p {
            break;
        }
    }
    probs.truncate(kept);
    let kept_mass: f32 = probs.iter().map(|p| p.1).sum();
    let mut u = rng.gen::<f32>() * kept_mass;
    for &(id, p) in &probs {
        if u < p {
            return id;
        }
        u -= p;
    }
    probs[kept - 1].0
}

/// Index of the largest logit, the first one on ties (as `torch.argmax`).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_first_maximum() {
        assert_eq!(argmax(&[0.0, 3.0, 3.0, 1.0]), 1);
    }

    #[test]
    fn tiny_top_p_is_greedy_and_sampling_is_seeded() {
        let logits = [0.0, 2.0, 1.0, 1.5];
        let opts = GenerateOptions {
            temperature: 1.0,
            top_p: 1e-6,
            ..Default::default()
        };
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..20 {
            assert_eq!(pick(&logits, &opts, &mut rng), 1);
        }
        let opts = GenerateOptions {
            temperature: 1.0,
            top_p: 1.0,
            seed: 7,
            ..Default::default()
        };
        let draw = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..50)
                .map(|_| pick(&logits, &opts, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert!(
            draw(7).iter().any(|&t| t != 1),
            "sampling never left the argmax"
        );
    }
}
