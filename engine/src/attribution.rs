//! Expert attribution: how much a metric — the log-probability of target continuations — owes
//! to each expert. Ablation masks one expert and re-scores (exact, a pass per expert); the
//! first-order estimate puts a gate g = 1 on every expert's output and reads ∂metric/∂g for all
//! experts from one backward pass (gate × ∂metric/∂gate, routing held as chosen).

use std::collections::BTreeMap;

use candle_core::{DType, Tensor, D};

use crate::error::{EngineError, Result};
use crate::gates::ExpertGates;
use crate::generate::left_pad;
use crate::logprob::continuation_logits;
use crate::model::{ForwardOptions, KvCache, MoeModel};
use crate::policy::RoutingPolicy;

/// A context and the continuation whose log-probability is the metric.
pub type ScoredPair = (Vec<u32>, Vec<u32>);

fn check(pairs: &[ScoredPair]) -> Result<()> {
    if pairs.iter().any(|(c, t)| c.is_empty() || t.is_empty()) {
        return Err(EngineError::InvalidInput(
            "attribution needs a non-empty context and target for every prompt".into(),
        ));
    }
    Ok(())
}

/// `Σ_j log p(target_j | context, target_<j)` of each pair under `policy`, as
/// [`continuation_logits`] scores it (the target as generated tokens). Where no intervention
/// is scoped to one phase, both phases route alike and `batch` pairs share one padded forward
/// pass; otherwise each pair runs as context then continuation.
pub fn target_logprobs(
    model: &MoeModel,
    policy: &RoutingPolicy,
    pairs: &[ScoredPair],
    batch: usize,
) -> Result<Vec<f64>> {
    check(pairs)?;
    if policy.is_phase_scoped() {
        return pairs
            .iter()
            .map(|(c, t)| Ok(crate::scoring::continuation_logprob(model, policy, c, t)?.0))
            .collect();
    }
    let mut out = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(batch.max(1)) {
        let seqs: Vec<Vec<u32>> = chunk
            .iter()
            .map(|(c, t)| [c.as_slice(), &t[..t.len() - 1]].concat())
            .collect();
        let (tokens, valid) = left_pad(&seqs);
        let logits = model.forward(
            &tokens,
            &valid,
            &mut KvCache::new(),
            ForwardOptions::scoring(policy, None),
        )?;
        let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let longest = tokens[0].len();
        for (b, (c, t)) in chunk.iter().enumerate() {
            let start = longest - seqs[b].len() + c.len() - 1;
            let rows: Vec<Vec<f32>> = logp.get(b)?.narrow(0, start, t.len())?.to_vec2()?;
            out.push(
                rows.iter()
                    .zip(t)
                    .map(|(r, &id)| f64::from(r[id as usize]))
                    .sum(),
            );
        }
    }
    Ok(out)
}

/// The metric (summed target log-probability over `pairs`) and, per MoE layer, its gradient
/// with respect to each expert's output gate at g = 1: the first-order change of the metric
/// per unit of gate, so removing the expert's contribution changes the metric by about
/// −gradient. One forward and one backward pass per pair.
pub fn gate_gradients(
    model: &MoeModel,
    policy: &RoutingPolicy,
    pairs: &[ScoredPair],
) -> Result<(f64, BTreeMap<usize, Vec<f64>>)> {
    check(pairs)?;
    let gates = ExpertGates::new(model.config(), model.dtype(), model.device())?;
    let mut total = 0.0;
    let mut grads: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for (c, t) in pairs {
        let target_logits = if policy.is_phase_scoped() {
            continuation_logits(model, policy, Some(&gates), c, t)?
        } else {
            // Both phases route alike: one pass over context and target together.
            let seq = [c.as_slice(), &t[..t.len() - 1]].concat();
            let logits = model.forward(
                std::slice::from_ref(&seq),
                &[vec![true; seq.len()]],
                &mut KvCache::new(),
                ForwardOptions::scoring(policy, Some(&gates)),
            )?;
            logits.get(0)?.narrow(0, c.len() - 1, t.len())?
        };
        let logp = candle_nn::ops::log_softmax(&target_logits, D::Minus1)?;
        let ids = Tensor::new(t.as_slice(), model.device())?.unsqueeze(1)?;
        let metric = logp.gather(&ids, 1)?.sum_all()?;
        total += f64::from(metric.to_scalar::<f32>()?);
        let store = metric.backward()?;
        for (layer, var) in gates.vars() {
            let g: Vec<f32> = match store.get(var.as_tensor()) {
                Some(g) => g.to_dtype(DType::F32)?.to_vec1()?,
                None => vec![0.0; model.config().moe.num_experts],
            };
            let acc = grads.entry(layer).or_insert_with(|| vec![0.0; g.len()]);
            for (a, v) in acc.iter_mut().zip(g) {
                *a += f64::from(v);
            }
        }
    }
    Ok((total, grads))
}
