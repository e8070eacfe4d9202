//! Log-probabilities of text under a routing policy, computed one way for every caller
//! (`eval`'s target log-probability, ablation and gradient attribution): a context runs as
//! prompt tokens and its continuation as generated tokens, as in generation, so an
//! intervention scoped to generated tokens changes the scored continuation everywhere alike.

use candle_core::Tensor;

use crate::error::{EngineError, Result};
use crate::gates::ExpertGates;
use crate::hooks::Recorder;
use crate::model::{ForwardOptions, KvCache, LogitsFor, MoeModel};
use crate::policy::{Phase, RoutingPolicy};

/// `x − logsumexp(x)`, computed stably.
pub fn log_softmax(x: &[f32]) -> Vec<f32> {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = max + x.iter().map(|v| (v - max).exp()).sum::<f32>().ln();
    x.iter().map(|v| v - lse).collect()
}

/// The logits `[continuation.len(), vocab]` that predict each token of `continuation` after
/// `context`: the context runs as prompt tokens, the continuation (but its last token) as
/// generated tokens through the same cache. With `gates`, the graph reaches them for a
/// backward pass.
pub fn continuation_logits(
    model: &MoeModel,
    policy: &RoutingPolicy,
    gates: Option<&ExpertGates>,
    context: &[u32],
    continuation: &[u32],
) -> Result<Tensor> {
    continuation_logits_recorded(model, policy, gates, None, context, continuation)
}

/// [`continuation_logits`], with `recorder` capturing its hook points: one forward call over
/// the context, then (for a continuation of two or more tokens) one over the continuation but
/// its last token, so the captured rows are the positions `0 .. context + continuation − 1`
/// in order.
pub fn continuation_logits_recorded(
    model: &MoeModel,
    policy: &RoutingPolicy,
    gates: Option<&ExpertGates>,
    mut recorder: Option<&mut Recorder>,
    context: &[u32],
    continuation: &[u32],
) -> Result<Tensor> {
    if context.is_empty() || continuation.is_empty() {
        return Err(EngineError::InvalidInput(
            "scoring a continuation needs a non-empty context and continuation".into(),
        ));
    }
    let mut cache = KvCache::new();
    let mut run = |tokens: &[u32], phase, logits_for| {
        let opts = ForwardOptions {
            policy,
            phase,
            recorder: recorder.as_deref_mut(),
            logits_for,
            gates,
        };
        model.forward(
            &[tokens.to_vec()],
            &[vec![true; tokens.len()]],
            &mut cache,
            opts,
        )
    };
    // [1, 1, vocab]: the prediction of the continuation's first token.
    let first = run(context, Phase::Prompt, LogitsFor::Last)?.squeeze(0)?;
    if continuation.len() == 1 {
        return Ok(first);
    }
    let rest = run(
        &continuation[..continuation.len() - 1],
        Phase::Generated,
        LogitsFor::All,
    )?
    .squeeze(0)?;
    Ok(Tensor::cat(&[&first, &rest], 0)?)
}
