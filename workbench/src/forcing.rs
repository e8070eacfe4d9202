//! Teacher forcing: the baseline's own generated text run through the steered model, so the
//! effect of steering is measured token by token on the same text — the change in each token's
//! log-probability and the KL divergence of the next-token distributions — instead of only by
//! comparing two texts that part ways after their first difference.

use moescope_engine::logprob::{continuation_logits, log_softmax};
use moescope_engine::{EngineError, MoeModel, RoutingPolicy};

use crate::error::Result;

/// How the two models score one generated token of the baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForcedToken {
    /// `log p(token | text before it)` under the unsteered model.
    pub baseline_logprob: f64,
    /// The same under the steered model.
    pub steered_logprob: f64,
    /// `KL(p_baseline ‖ p_steered)` of the next-token distributions at this position, in nats.
    pub kl: f64,
}

impl ForcedToken {
    /// The steered minus the baseline log-probability (negative: steering made it less likely).
    pub fn delta(&self) -> f64 {
        self.steered_logprob - self.baseline_logprob
    }
}

/// Scores the baseline's `generated` tokens after `prompt` under no intervention and under
/// `steered`, through the one log-probability path (the prompt as prompt tokens, the text as
/// generated tokens, so phase-scoped interventions apply as in generation).
pub fn teacher_force(
    model: &MoeModel,
    steered: &RoutingPolicy,
    prompt: &[u32],
    generated: &[u32],
) -> Result<Vec<ForcedToken>> {
    let rows = |policy: &RoutingPolicy| -> Result<Vec<Vec<f32>>> {
        let logits = continuation_logits(model, policy, None, prompt, generated)?;
        Ok(logits
            .to_dtype(candle_core::DType::F32)
            .and_then(|t| t.to_vec2::<f32>())
            .map_err(EngineError::from)?)
    };
    let base = rows(&RoutingPolicy::new())?;
    let steer = rows(steered)?;
    Ok(generated
        .iter()
        .zip(base.iter().zip(&steer))
        .map(|(&token, (b, s))| {
            let (lb, ls) = (log_softmax(b), log_softmax(s));
            let kl = lb
                .iter()
                .zip(&ls)
                .map(|(&p, &q)| f64::from(p).exp() * f64::from(p - q))
                .sum::<f64>()
                .max(0.0);
            ForcedToken {
                baseline_logprob: f64::from(lb[token as usize]),
                steered_logprob: f64::from(ls[token as usize]),
                kl,
            }
        })
        .collect())
}
