//! Likelihood-based metrics: the log-probability a model assigns to a continuation, and the
//! negative log-likelihood of a text (for perplexity), both under a routing policy.

use candle_core::Tensor;

use crate::error::{EngineError, Result};
use crate::logprob::{continuation_logits, log_softmax};
use crate::model::{ForwardOptions, KvCache, MoeModel};
use crate::policy::RoutingPolicy;

/// Sum of `log p(continuation | context)` over the continuation's tokens, and their count,
/// scored as [`continuation_logits`] runs them (the context as prompt tokens, the continuation
/// as generated tokens).
pub fn continuation_logprob(
    model: &MoeModel,
    policy: &RoutingPolicy,
    context: &[u32],
    continuation: &[u32],
) -> Result<(f64, usize)> {
    let logits = continuation_logits(model, policy, None, context, continuation)?;
    Ok((token_logprobs(&logits, continuation)?, continuation.len()))
}

/// Negative log-likelihood of `tokens[1..]` given what precedes each, summed, and the number of
/// predicted tokens; the text runs as prompt tokens. Perplexity is `exp(nll / count)`.
pub fn sequence_nll(
    model: &MoeModel,
    policy: &RoutingPolicy,
    tokens: &[u32],
) -> Result<(f64, usize)> {
    if tokens.len() < 2 {
        return Err(EngineError::InvalidInput(
            "perplexity needs a text of at least two tokens".into(),
        ));
    }
    let opts = ForwardOptions::scoring(policy, None);
    let input = &tokens[..tokens.len() - 1];
    let logits = model.forward(
        &[input.to_vec()],
        &[vec![true; input.len()]],
        &mut KvCache::new(),
        opts,
    )?;
    Ok((
        -token_logprobs(&logits.squeeze(0)?, &tokens[1..])?,
        tokens.len() - 1,
    ))
}

/// Sum over positions of `log softmax(logits[t])[targets[t]]` for `logits` `[positions, vocab]`.
fn token_logprobs(logits: &Tensor, targets: &[u32]) -> Result<f64> {
    let rows: Vec<Vec<f32>> = logits.to_vec2()?;
    let total: f64 = rows
        .iter()
        .zip(targets)
        .map(|(row, &t)| f64::from(log_softmax(row)[t as usize]))
        .sum();
    if !total.is_finite() {
        let at = rows.iter().position(|r| r.iter().any(|v| !v.is_finite()));
        return Err(EngineError::NonFinite {
            what: match at {
                Some(p) => format!("logits at position {p} of a scored text"),
                None => "log-probability of a scored text".into(),
            },
        });
    }
    Ok(total)
}
