//! Teacher forcing: the baseline's own generated text run through the steered model, so the
//! effect of steering is measured token by token on the same text — the change in each token's
//! log-probability and the KL divergence of the next-token distributions — instead of only by
//! comparing two texts that part ways after their first difference — and, lined up with each
//! token, how the steering changed the routing that predicted it.

use std::collections::BTreeMap;

use moescope_engine::hooks::{CaptureData, MoeHook, Recorder};
use moescope_engine::logprob::{continuation_logits_recorded, log_softmax};
use moescope_engine::{EngineError, MoeModel, RoutingPolicy};

use crate::error::Result;

/// How the steering changed one MoE layer's choice at one position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rerouting {
    /// Decoder layer index.
    pub layer: usize,
    /// Experts chosen under the steering but not without it, ascending.
    pub added: Vec<u32>,
    /// Experts chosen without the steering but not under it, ascending.
    pub removed: Vec<u32>,
}

/// How the two models score one generated token of the baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct ForcedToken {
    /// `log p(token | text before it)` under the unsteered model.
    pub baseline_logprob: f64,
    /// The same under the steered model.
    pub steered_logprob: f64,
    /// `KL(p_baseline ‖ p_steered)` of the next-token distributions at this position, in nats.
    pub kl: f64,
    /// The MoE layers whose chosen experts differ between the two models at the position that
    /// predicts this token (the one before it), in layer order; empty where none does.
    pub rerouted: Vec<Rerouting>,
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
    let (base, base_routes) = forced_pass(model, &RoutingPolicy::new(), prompt, generated)?;
    let (steer, steer_routes) = forced_pass(model, steered, prompt, generated)?;
    Ok(generated
        .iter()
        .zip(base.iter().zip(&steer))
        .enumerate()
        .map(|(i, (&token, (b, s)))| {
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
                rerouted: reroutings(&base_routes, &steer_routes, prompt.len() - 1 + i),
            }
        })
        .collect())
}

/// The experts each MoE layer chose at each position, sorted: `layer → [position][rank]`.
type Routes = BTreeMap<usize, Vec<Vec<u32>>>;

/// One teacher-forced pass: the logits predicting each generated token, and the routing of
/// every position it ran (the prompt, then the generated tokens but the last).
fn forced_pass(
    model: &MoeModel,
    policy: &RoutingPolicy,
    prompt: &[u32],
    generated: &[u32],
) -> Result<(Vec<Vec<f32>>, Routes)> {
    let mut recorder = Recorder::new();
    recorder.subscribe_all_layers(MoeHook::TopkIds);
    let logits =
        continuation_logits_recorded(model, policy, None, Some(&mut recorder), prompt, generated)?;
    let rows = logits
        .to_dtype(candle_core::DType::F32)
        .and_then(|t| t.to_vec2::<f32>())
        .map_err(EngineError::from)?;
    let mut routes = Routes::new();
    for capture in recorder.take() {
        let CaptureData::U32(ids) = capture.data else {
            continue;
        };
        let positions = routes.entry(capture.point.layer).or_default();
        positions.extend(ids.chunks(capture.shape[1].max(1)).map(|chosen| {
            let mut chosen = chosen.to_vec();
            chosen.sort_unstable();
            chosen
        }));
    }
    Ok((rows, routes))
}

/// Where the two routings differ at `position`, layer by layer.
fn reroutings(base: &Routes, steered: &Routes, position: usize) -> Vec<Rerouting> {
    let not_in = |a: &[u32], b: &[u32]| -> Vec<u32> {
        a.iter().copied().filter(|e| !b.contains(e)).collect()
    };
    base.iter()
        .filter_map(|(&layer, positions)| {
            let b = positions.get(position)?;
            let s = steered.get(&layer)?.get(position)?;
            (b != s).then(|| Rerouting {
                layer,
                added: not_in(s, b),
                removed: not_in(b, s),
            })
        })
        .collect()
}
