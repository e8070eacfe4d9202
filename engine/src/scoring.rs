//! Likelihood-based metrics: the log-probability a model assigns to a continuation, and the
//! negative log-likelihood of a text (for perplexity), both under a routing policy.

use candle_core::Tensor;

use crate::contrast::log_softmax;
use crate::error::{EngineError, Result};
use crate::model::{ForwardOptions, KvCache, LogitsFor, MoeModel};
use crate::policy::{Phase, RoutingPolicy};

/// Sum of `log p(continuation | context)` over the continuation's tokens, and their count. The
/// context runs as prompt tokens and the continuation as generated tokens, as in generation, so
/// scoped interventions apply as they would there.
pub fn continuation_logprob(
    model: &MoeModel,
    policy: &RoutingPolicy,
    context: &[u32],
    continuation: &[u32],
) -> Result<(f64, usize)> {
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
            recorder: None,
            logits_for,
            gates: None,
        };
        model.forward(
            &[tokens.to_vec()],
            &[vec![true; tokens.len()]],
            &mut cache,
            opts,
        )
    };
    let first = run(context, Phase::Prompt, LogitsFor::Last)?;
    let mut total = token_logprobs(&first, &continuation[..1])?;
    if continuation.len() > 1 {
        let rest = run(
            &continuation[..continuation.len() - 1],
            Phase::Generated,
            LogitsFor::All,
        )?;
        total += token_logprobs(&rest, &continuation[1..])?;
    }
    Ok((total, continuation.len()))
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
    Ok((-token_logprobs(&logits, &tokens[1..])?, tokens.len() - 1))
}

/// Sum over positions of `log softmax(logits[0, t])[targets[t]]`.
fn token_logprobs(logits: &Tensor, targets: &[u32]) -> Result<f64> {
    let rows: Vec<Vec<f32>> = logits.squeeze(0)?.to_vec2()?;
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
