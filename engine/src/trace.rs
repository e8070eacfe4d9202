//! Per-sequence routing traces: runs a batch of prompts (optionally generating) with every
//! routing hook subscribed, and regroups the captures by sequence, position and layer, so a
//! recorder can write one row per (sequence, position, layer, rank) without knowing how the
//! batch was padded or when each row stopped.

use std::collections::BTreeMap;

use crate::error::{EngineError, Result};
use crate::generate::{
    generate, left_pad, GenerateOptions, GenerateRequest, Generated, StopReason,
};
use crate::hooks::{Capture, CaptureData, HookPoint, MoeHook, Recorder};
use crate::model::{ForwardOptions, KvCache, LogitsFor, MoeModel};
use crate::policy::{Phase, RoutingPolicy};
use crate::tokenizer::TextCodec;

/// The routing of one sequence at one MoE layer; rows are the sequence's positions. The number
/// of chosen experts can differ from position to position (a steering profile may change
/// top-k for generated tokens only), so the choices of position `p` are
/// `starts[p]..starts[p + 1]` of `ids`, `weights` and `out_maxabs` ([`LayerTrace::choice`]).
#[derive(Debug, Clone, PartialEq)]
pub struct LayerTrace {
    /// Decoder layer index.
    pub layer: usize,
    /// Where each position's choices begin, plus the end: `positions + 1` offsets.
    pub starts: Vec<usize>,
    /// Chosen experts of every position, after interventions.
    pub ids: Vec<u32>,
    /// Their mixing weights.
    pub weights: Vec<f32>,
    /// Router scores of every expert `[positions, num_experts]` (softmax or sigmoid of the
    /// router logits before interventions, as the architecture scores them).
    pub scores: Vec<f32>,
    /// Max |down_proj output| of each chosen expert.
    pub out_maxabs: Vec<f32>,
}

/// The choices of one position at one layer: experts, best first, with their weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Choice<'a> {
    /// Chosen experts.
    pub ids: &'a [u32],
    /// Their mixing weights.
    pub weights: &'a [f32],
    /// Max |down_proj output| of each.
    pub out_maxabs: &'a [f32],
}

impl LayerTrace {
    /// Positions traced.
    pub fn positions(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }

    /// The choices at `position` (empty past the end).
    pub fn choice(&self, position: usize) -> Choice<'_> {
        let range = match (self.starts.get(position), self.starts.get(position + 1)) {
            (Some(&a), Some(&b)) => a..b,
            _ => 0..0,
        };
        Choice {
            ids: &self.ids[range.clone()],
            weights: &self.weights[range.clone()],
            out_maxabs: &self.out_maxabs[range],
        }
    }
}

/// Everything recorded for one prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceTrace {
    /// The tokens whose routing was computed: the prompt, then each generated token that was fed
    /// back (the last generated token is never fed, so it has no routing).
    pub tokens: Vec<u32>,
    /// How many of `tokens` are the prompt.
    pub prompt_len: usize,
    /// The generation, when one was asked for.
    pub generated: Option<Generated>,
    /// One entry per MoE layer, in layer order.
    pub layers: Vec<LayerTrace>,
    /// Routed experts per layer.
    pub num_experts: usize,
}

/// Runs `prompts` as one batch: a forward pass over the prompts, or greedy/sampled generation
/// when `opts.max_new_tokens > 0`, and returns each prompt's routing trace.
pub fn trace_batch(
    model: &MoeModel,
    codec: Option<&TextCodec>,
    prompts: &[Vec<u32>],
    opts: &GenerateOptions,
    policy: &RoutingPolicy,
) -> Result<Vec<SequenceTrace>> {
    trace_batch_streaming(model, codec, prompts, opts, policy, |_, _| {})
}

/// [`trace_batch`] that also calls `on_token(row, token)` as each token is generated, so a
/// caller can show the text while it grows.
pub fn trace_batch_streaming(
    model: &MoeModel,
    codec: Option<&TextCodec>,
    prompts: &[Vec<u32>],
    opts: &GenerateOptions,
    policy: &RoutingPolicy,
    on_token: impl FnMut(usize, u32),
) -> Result<Vec<SequenceTrace>> {
    let mut recorder = Recorder::new();
    for hook in [
        MoeHook::RouterLogits,
        MoeHook::TopkIds,
        MoeHook::TopkWeights,
        MoeHook::ExpertOutMaxAbs,
    ] {
        recorder.subscribe_all_layers(hook);
    }
    let generated = if opts.max_new_tokens == 0 {
        forward_prompts(model, prompts, policy, &mut recorder)?;
        None
    } else {
        let request = GenerateRequest {
            model,
            codec,
            policy,
            options: opts,
        };
        Some(generate(&request, prompts, Some(&mut recorder), on_token)?)
    };
    let calls = captures_by_call(recorder.take());
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let batch = prompts.len();
    let scoring = model.config().moe.routing.scoring;
    let mut out = Vec::with_capacity(batch);
    for (b, prompt) in prompts.iter().enumerate() {
        let gen = generated.as_ref().map(|g| g[b].clone());
        let fed = gen.as_ref().map_or(0, fed_generated_tokens);
        let mut tokens = prompt.clone();
        if let Some(g) = &gen {
            tokens.extend_from_slice(&g.tokens[..fed]);
        }
        // (call index, row inside that call's capture) for each position of this sequence.
        let pad = longest - prompt.len();
        let rows: Vec<(usize, usize)> = (0..prompt.len())
            .map(|p| (0, b * longest + pad + p))
            .chain((1..=fed).map(|s| (s, b)))
            .collect();
        let mut layers = Vec::new();
        let mut num_experts = 0;
        for (&layer, hooks) in calls.first().map(|c| &c.layers).into_iter().flatten() {
            let get = |hook: MoeHook, call: usize| -> Result<&Capture> {
                calls
                    .get(call)
                    .and_then(|c| c.layers.get(&layer))
                    .and_then(|h| h.get(&hook))
                    .ok_or_else(|| {
                        EngineError::InvalidInput(format!(
                            "trace: no {} capture for call {call}",
                            HookPoint { layer, hook }
                        ))
                    })
            };
            let e = hooks.get(&MoeHook::RouterLogits).map_or(0, |c| c.shape[1]);
            let k = hooks.get(&MoeHook::TopkIds).map_or(0, |c| c.shape[1]);
            let mut t = LayerTrace {
                layer,
                starts: vec![0],
                ids: Vec::with_capacity(rows.len() * k),
                weights: Vec::with_capacity(rows.len() * k),
                scores: Vec::with_capacity(rows.len() * e),
                out_maxabs: Vec::with_capacity(rows.len() * k),
            };
            for &(call, row) in &rows {
                t.ids
                    .extend_from_slice(u32_row(get(MoeHook::TopkIds, call)?, row)?);
                t.weights
                    .extend_from_slice(f32_row(get(MoeHook::TopkWeights, call)?, row)?);
                t.out_maxabs
                    .extend_from_slice(f32_row(get(MoeHook::ExpertOutMaxAbs, call)?, row)?);
                let logits = f32_row(get(MoeHook::RouterLogits, call)?, row)?;
                let start = t.scores.len();
                t.scores.resize(start + logits.len(), 0.0);
                scoring.score_into(logits, &mut t.scores[start..]);
                t.starts.push(t.ids.len());
            }
            num_experts = e;
            layers.push(t);
        }
        out.push(SequenceTrace {
            tokens,
            prompt_len: prompt.len(),
            generated: gen,
            layers,
            num_experts,
        });
    }
    Ok(out)
}

/// How many generated tokens were fed back into the model (and so have routing).
fn fed_generated_tokens(g: &Generated) -> usize {
    match g.stop {
        // The EOS token is not kept, but every kept token was fed before it was picked.
        StopReason::Eos => g.tokens.len(),
        // The last kept token ended the row (or the run) before it could be fed.
        StopReason::MaxTokens | StopReason::StopString | StopReason::Cancelled => {
            g.tokens.len().saturating_sub(1)
        }
    }
}

fn forward_prompts(
    model: &MoeModel,
    prompts: &[Vec<u32>],
    policy: &RoutingPolicy,
    recorder: &mut Recorder,
) -> Result<()> {
    if prompts.is_empty() || prompts.iter().any(Vec::is_empty) {
        return Err(EngineError::InvalidInput(
            "every prompt needs at least one token".into(),
        ));
    }
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let context = model.config().max_position_embeddings;
    if longest > context {
        return Err(EngineError::InvalidInput(format!(
            "prompt of {longest} tokens exceeds the model's context of {context} (max_position_embeddings); shorten the prompt"
        )));
    }
    let (tokens, valid) = left_pad(prompts);
    model.forward(
        &tokens,
        &valid,
        &mut KvCache::new(),
        ForwardOptions {
            policy,
            phase: Phase::Prompt,
            recorder: Some(recorder),
            logits_for: LogitsFor::Last,
            gates: None,
        },
    )?;
    Ok(())
}

/// The captures of one forward call, by layer and hook.
struct CallCaptures {
    layers: BTreeMap<usize, BTreeMap<MoeHook, Capture>>,
}

/// Splits captures into forward calls: the i-th capture at a hook point belongs to call i.
fn captures_by_call(captures: Vec<Capture>) -> Vec<CallCaptures> {
    let mut seen: BTreeMap<HookPoint, usize> = BTreeMap::new();
    let mut calls: Vec<CallCaptures> = Vec::new();
    for c in captures {
        let n = seen.entry(c.point).or_insert(0);
        if calls.len() <= *n {
            calls.push(CallCaptures {
                layers: BTreeMap::new(),
            });
        }
        calls[*n]
            .layers
            .entry(c.point.layer)
            .or_default()
            .insert(c.point.hook, c);
        *n += 1;
    }
    calls
}

fn row_range(c: &Capture, row: usize) -> Result<std::ops::Range<usize>> {
    if row >= c.shape[0] {
        return Err(EngineError::InvalidInput(format!(
            "trace: row {row} outside the {} capture of {} rows",
            c.point, c.shape[0]
        )));
    }
    Ok(row * c.shape[1]..(row + 1) * c.shape[1])
}

fn f32_row(c: &Capture, row: usize) -> Result<&[f32]> {
    let r = row_range(c, row)?;
    match &c.data {
        CaptureData::F32(v) => Ok(&v[r]),
        CaptureData::U32(_) => Err(EngineError::InvalidInput(format!(
            "trace: {} holds ids, not values",
            c.point
        ))),
    }
}

fn u32_row(c: &Capture, row: usize) -> Result<&[u32]> {
    let r = row_range(c, row)?;
    match &c.data {
        CaptureData::U32(v) => Ok(&v[r]),
        CaptureData::F32(_) => Err(EngineError::InvalidInput(format!(
            "trace: {} holds values, not ids",
            c.point
        ))),
    }
}
