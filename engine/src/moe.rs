//! The one MoE block every architecture uses: router → routing step (rule + policy, with
//! hooks on both sides) → routed experts → optional shared expert.

use candle_core::{DType, Device, Tensor};

use crate::config::MoeSpec;
use crate::error::Result;
use crate::experts::RoutedExperts;
use crate::gates::ExpertGates;
use crate::hooks::{CaptureData, HookPoint, MoeHook, Recorder};
use crate::layers::{Linear, SwiGlu};
use crate::moe_names::MoeNames;
use crate::policy::{Phase, RoutingPolicy};
use crate::routing::Scoring;
use crate::weights::Weights;

/// A shared expert and its optional sigmoid gate.
#[derive(Debug, Clone)]
struct SharedExpert {
    mlp: SwiGlu,
    gate: Option<Linear>,
}

/// Per-call inputs of the MoE block that are not tensors.
pub struct MoeCall<'a> {
    /// Interventions on routing.
    pub policy: &'a RoutingPolicy,
    /// Whether these are prompt or generated tokens (for scoped interventions).
    pub phase: Phase,
    /// Hook subscriptions and captures, if recording.
    pub recorder: Option<&'a mut Recorder>,
    /// Gates on expert outputs, for gradient attribution.
    pub gates: Option<&'a ExpertGates>,
}

/// One layer's MoE block.
#[derive(Debug, Clone)]
pub struct MoeBlock {
    layer: usize,
    router: Linear,
    selection_bias: Option<Vec<f32>>,
    experts: RoutedExperts,
    shared: Option<SharedExpert>,
    spec: MoeSpec,
    device: Device,
}

impl MoeBlock {
    /// Loads the router, experts and shared expert of layer `layer` under `prefix`
    /// (`model.layers.{layer}`). Accepts per-expert tensors (as on the Hub) or the fused
    /// `experts.gate_up_proj` / `experts.down_proj` layout.
    pub fn load(
        w: &Weights,
        prefix: &str,
        layer: usize,
        spec: &MoeSpec,
        names: MoeNames,
        hidden: usize,
    ) -> Result<Self> {
        let block = format!("{prefix}.{}", names.block);
        let e = spec.num_experts;
        let router_name = format!("{block}.{}", names.router);
        let router = Linear::load(w, &router_name, hidden, e, spec.router_bias)?;
        let selection_bias = if spec.selection_bias {
            let name = format!("{router_name}.e_score_correction_bias");
            Some(w.get(&name, &[e])?.to_dtype(DType::F32)?.to_vec1()?)
        } else {
            None
        };
        let experts = RoutedExperts::load(w, &block, spec, names, hidden)?;
        let shared = match &spec.shared_expert {
            None => None,
            Some(s) => Some(SharedExpert {
                mlp: SwiGlu::load(
                    w,
                    &format!("{block}.{}", names.shared),
                    ["gate_proj", "up_proj", "down_proj"],
                    hidden,
                    s.intermediate_size,
                )?,
                gate: if s.sigmoid_gate {
                    Some(Linear::load(
                        w,
                        &format!("{block}.shared_expert_gate"),
                        hidden,
                        1,
                        false,
                    )?)
                } else {
                    None
                },
            }),
        };
        Ok(Self {
            layer,
            router,
            selection_bias,
            experts,
            shared,
            spec: spec.clone(),
            device: w.device().clone(),
        })
    }

    /// Number of weight values in one routed expert.
    pub fn expert_params(&self) -> usize {
        self.experts.params_per_expert()
    }

    /// Runs the block on `x` of shape `[tokens, hidden]`.
    pub fn forward(&self, x: &Tensor, call: &mut MoeCall<'_>) -> Result<Tensor> {
        let (e, model_k) = (self.spec.num_experts, self.spec.top_k);
        let tokens = x.dim(0)?;
        let logits_t = self.router.forward(x)?;
        let mut logits: Vec<f32> = logits_t.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
        let plan = call
            .policy
            .layer(self.layer)
            .and_then(|p| p.plan(call.phase, model_k));
        if let Some(rec) = call.recorder.as_deref_mut() {
            self.capture(rec, MoeHook::RouterLogits, [tokens, e], || {
                CaptureData::F32(logits.clone())
            });
            if plan.is_some() {
                self.capture(rec, MoeHook::UnsteeredTopkIds, [tokens, model_k], || {
                    CaptureData::U32(self.route(&logits, model_k, &[]).ids)
                });
            }
        }
        let routing = match &plan {
            None => self.route(&logits, model_k, &[]),
            Some(p) => {
                p.apply_to_logits(&mut logits, e);
                let mut r = self.route(&logits, p.top_k, &p.forced);
                p.scale_weights(&r.ids, &mut r.weights);
                r
            }
        };
        let k = routing.top_k;
        // Computing gradients with the model's own routing: the chosen experts' weights are
        // rebuilt from the router logits so that they carry gradient too.
        let tracked_weights = match (&plan, call.gates) {
            (None, Some(_)) if logits_t.track_op() => {
                Some(self.differentiable_weights(&logits_t, &routing)?)
            }
            _ => None,
        };
        let want_maxabs = call
            .recorder
            .as_deref()
            .is_some_and(|r| r.wants(self.layer, MoeHook::ExpertOutMaxAbs));
        if let Some(rec) = call.recorder.as_deref_mut() {
            if plan.is_none() {
                self.capture(rec, MoeHook::UnsteeredTopkIds, [tokens, k], || {
                    CaptureData::U32(routing.ids.clone())
                });
            }
            self.capture(rec, MoeHook::TopkIds, [tokens, k], || {
                CaptureData::U32(routing.ids.clone())
            });
            self.capture(rec, MoeHook::TopkWeights, [tokens, k], || {
                CaptureData::F32(routing.weights.clone())
            });
        }

        let grouped =
            tracked_weights.is_none() && call.gates.is_none() && self.experts.grouped_applies(x);
        let (mut out, max_abs) = if grouped {
            let g = self.experts.forward_grouped(x, &routing, want_maxabs)?;
            (g.sum.to_dtype(x.dtype())?, g.max_abs)
        } else {
            self.forward_each_expert(x, &routing, &tracked_weights, call, want_maxabs)?
        };
        if let Some(rec) = call.recorder.as_deref_mut() {
            if want_maxabs {
                rec.record(
                    HookPoint {
                        layer: self.layer,
                        hook: MoeHook::ExpertOutMaxAbs,
                    },
                    [tokens, k],
                    CaptureData::F32(max_abs),
                );
            }
        }
        if let Some(shared) = &self.shared {
            let mut s = shared.mlp.forward(x)?;
            if let Some(g) = &shared.gate {
                s = s.broadcast_mul(&candle_nn::ops::sigmoid(&g.forward(x)?)?)?;
            }
            out = (out + s)?;
        }
        Ok(out)
    }

    /// The routed experts one at a time on their tokens with candle ops: the path for other
    /// devices, f32 weights and gradient computations. Returns the weighted sum in `x`'s dtype
    /// and, when asked, each (token, slot)'s max |expert output| (else empty).
    fn forward_each_expert(
        &self,
        x: &Tensor,
        routing: &crate::routing::Routing,
        tracked_weights: &Option<Tensor>,
        call: &mut MoeCall<'_>,
        want_maxabs: bool,
    ) -> Result<(Tensor, Vec<f32>)> {
        let (e, k) = (self.spec.num_experts, routing.top_k);
        let tokens = x.dim(0)?;
        // Group (token, slot) pairs by expert so each expert runs once on all its tokens.
        let mut by_expert: Vec<Vec<usize>> = vec![Vec::new(); e];
        for (slot, &id) in routing.ids.iter().enumerate() {
            by_expert[id as usize].push(slot);
        }
        let mut maxabs = if want_maxabs {
            vec![0f32; tokens * k]
        } else {
            Vec::new()
        };
        let mut outputs = Vec::new();
        let mut rows: Vec<u32> = Vec::with_capacity(tokens * k);
        for (expert, slots) in by_expert.iter().enumerate() {
            if slots.is_empty() {
                continue;
            }
            let token_ids: Vec<u32> = slots.iter().map(|&s| (s / k) as u32).collect();
            let weights: Vec<f32> = slots.iter().map(|&s| routing.weights[s]).collect();
            let idx = Tensor::new(token_ids.as_slice(), &self.device)?;
            let y = self
                .experts
                .expert(expert)
                .forward(&x.index_select(&idx, 0)?)?;
            if want_maxabs {
                let m: Vec<f32> = y.abs()?.max(1)?.to_dtype(DType::F32)?.to_vec1()?;
                for (&s, v) in slots.iter().zip(m) {
                    maxabs[s] = v;
                }
            }
            let mut w = match &tracked_weights {
                Some(tw) => {
                    let at: Vec<u32> = slots.iter().map(|&s| s as u32).collect();
                    tw.index_select(&Tensor::new(at.as_slice(), &self.device)?, 0)?
                        .reshape((slots.len(), 1))?
                        .to_dtype(DType::F32)?
                }
                None => Tensor::from_vec(weights, (slots.len(), 1), &self.device)?,
            };
            if let Some(g) = call.gates.and_then(|g| g.layer(self.layer)) {
                let g = g
                    .narrow(0, expert, 1)?
                    .reshape((1, 1))?
                    .to_dtype(DType::F32)?;
                w = w.broadcast_mul(&g)?;
            }
            // Weighted and summed in f32, as the reference does: in bf16 the routing weights
            // (scaled by up to 16 in DeepSeek) would lose most of their digits.
            outputs.push(y.to_dtype(DType::F32)?.broadcast_mul(&w)?);
            rows.extend(token_ids);
        }
        let idx = Tensor::new(rows.as_slice(), &self.device)?;
        let sum = Tensor::zeros(x.shape(), DType::F32, &self.device)?
            .index_add(&idx, &Tensor::cat(&outputs, 0)?, 0)?
            .to_dtype(x.dtype())?;
        Ok((sum, maxabs))
    }

    /// The chosen experts' mixing weights `[tokens × k]` as a function of the router logits
    /// tensor (same values as `routing.weights`), for gradients.
    fn differentiable_weights(
        &self,
        logits: &Tensor,
        routing: &crate::routing::Routing,
    ) -> Result<Tensor> {
        let rule = &self.spec.routing;
        let scores = match rule.scoring {
            Scoring::Softmax => candle_nn::ops::softmax(logits, candle_core::D::Minus1)?,
            Scoring::Sigmoid => candle_nn::ops::sigmoid(logits)?,
        };
        let tokens = logits.dim(0)?;
        let ids = Tensor::from_vec(routing.ids.clone(), (tokens, routing.top_k), &self.device)?;
        let mut w = scores.gather(&ids, 1)?;
        if rule.norm_topk_prob {
            w = w.broadcast_div(&(w.sum_keepdim(1)? + 1e-20)?)?;
        }
        Ok((w * f64::from(rule.scaling))?.flatten_all()?)
    }

    fn route(&self, logits: &[f32], k: usize, forced: &[usize]) -> crate::routing::Routing {
        let bias = self.selection_bias.as_deref();
        self.spec
            .routing
            .route(logits, self.spec.num_experts, k, bias, forced)
    }

    fn capture(
        &self,
        rec: &mut Recorder,
        hook: MoeHook,
        shape: [usize; 2],
        data: impl FnOnce() -> CaptureData,
    ) {
        if rec.wants(self.layer, hook) {
            rec.record(
                HookPoint {
                    layer: self.layer,
                    hook,
                },
                shape,
                data(),
            );
        }
    }
}
