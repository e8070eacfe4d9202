//! The decoder-only MoE transformer: embedding, decoder layers (attention + dense MLP or the
//! shared MoE block), final norm and LM head, run over a batch with a KV cache.

use candle_core::{DType, Device, Tensor};

use crate::attention::{Attention, LayerKv};
use crate::config::{FfnKind, ModelConfig};
use crate::error::{EngineError, Result};
use crate::gates::ExpertGates;
use crate::hooks::Recorder;
use crate::layers::{Linear, RmsNorm, SwiGlu};
use crate::mla::MlaAttention;
use crate::moe::{MoeBlock, MoeCall};
use crate::moe_names::MoeNames;
use crate::ops::MASKED;
use crate::policy::{Phase, RoutingPolicy};
use crate::rope::Rope;
use crate::weights::Weights;

enum Ffn {
    Dense(SwiGlu),
    Moe(Box<MoeBlock>),
}

/// The attention variant of a layer.
enum AttentionLayer {
    Gqa(Attention),
    Mla(MlaAttention),
}

struct DecoderLayer {
    input_norm: RmsNorm,
    attention: AttentionLayer,
    post_norm: RmsNorm,
    ffn: Ffn,
    sliding_window: Option<usize>,
}

/// The state a sequence batch carries between forward calls: per-layer keys and values, and
/// which cached positions are real tokens rather than padding.
#[derive(Debug, Default)]
pub struct KvCache {
    layers: Vec<LayerKv>,
    /// `valid[b][j]`: cached position `j` of row `b` is a real token.
    valid: Vec<Vec<bool>>,
    /// Positions the layer buffers are first made for.
    reserved: usize,
}

impl KvCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of cached positions (padding included).
    pub fn len(&self) -> usize {
        self.valid.first().map_or(0, Vec::len)
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sizes the cache for `positions` positions (prompt plus generated tokens) when its
    /// buffers are first made, so a run of known length allocates them once.
    pub fn with_capacity(positions: usize) -> Self {
        Self {
            reserved: positions,
            ..Self::default()
        }
    }
}

/// Which positions the LM head is applied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitsFor {
    /// Every position: `[batch, seq, vocab]`.
    All,
    /// The last position of each row: `[batch, 1, vocab]` (what generation needs).
    Last,
}

/// What a forward call needs besides token ids.
pub struct ForwardOptions<'a> {
    /// Interventions on routing.
    pub policy: &'a RoutingPolicy,
    /// Whether these are prompt or generated tokens (for scoped interventions).
    pub phase: Phase,
    /// Hook subscriptions, if recording.
    pub recorder: Option<&'a mut Recorder>,
    /// Positions to compute logits for.
    pub logits_for: LogitsFor,
    /// Gates on every expert's output, for gradient attribution (`None`: ordinary inference).
    pub gates: Option<&'a ExpertGates>,
}

impl<'a> ForwardOptions<'a> {
    /// Options for scoring: every token a prompt token, logits at every position, no hooks.
    pub fn scoring(policy: &'a RoutingPolicy, gates: Option<&'a ExpertGates>) -> Self {
        Self {
            policy,
            phase: Phase::Prompt,
            recorder: None,
            logits_for: LogitsFor::All,
            gates,
        }
    }
}

/// A loaded MoE language model.
pub struct MoeModel {
    config: ModelConfig,
    embed: Tensor,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: Linear,
    device: Device,
    dtype: DType,
    num_params: usize,
    expert_params: usize,
}

impl MoeModel {
    /// Builds the model from its config and weights, checking every tensor's shape.
    pub fn load(config: ModelConfig, w: &Weights) -> Result<Self> {
        let h = config.hidden_size;
        let eps = config.rms_norm_eps;
        let moe_names = MoeNames::of(config.architecture);
        let embed = w.get("model.embed_tokens.weight", &[config.vocab_size, h])?;
        let mut layers = Vec::with_capacity(config.num_layers());
        let mut expert_params = 0;
        for (l, spec) in config.layers.iter().enumerate() {
            let prefix = format!("model.layers.{l}");
            let ffn = match spec.ffn {
                FfnKind::Dense { intermediate_size } => Ffn::Dense(SwiGlu::load(
                    w,
                    &format!("{prefix}.mlp"),
                    ["gate_proj", "up_proj", "down_proj"],
                    h,
                    intermediate_size,
                )?),
                FfnKind::Moe => {
                    let block = MoeBlock::load(w, &prefix, l, &config.moe, moe_names, h)?;
                    expert_params = block.expert_params();
                    Ffn::Moe(Box::new(block))
                }
            };
            layers.push(DecoderLayer {
                input_norm: RmsNorm::load(w, &format!("{prefix}.input_layernorm"), h, eps)?,
                attention: {
                    let name = format!("{prefix}.self_attn");
                    let a = &config.attention;
                    match &a.mla {
                        Some(m) => AttentionLayer::Mla(MlaAttention::load(w, &name, a, m, h, eps)?),
                        None => AttentionLayer::Gqa(Attention::load(w, &name, a, h, eps)?),
                    }
                },
                post_norm: RmsNorm::load(w, &format!("{prefix}.post_attention_layernorm"), h, eps)?,
                ffn,
                sliding_window: spec.sliding_window,
            });
        }
        let norm = RmsNorm::load(w, "model.norm", h, eps)?;
        let lm_head = if config.tie_word_embeddings && !w.contains("lm_head.weight") {
            Linear::from_weight(embed.clone())
        } else {
            Linear::load(w, "lm_head", h, config.vocab_size, false)?
        };
        let num_params = w.num_params();
        Ok(Self {
            config,
            embed,
            layers,
            norm,
            lm_head,
            device: w.device().clone(),
            dtype: w.dtype(),
            num_params,
            expert_params,
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The dtype weights and activations are held in (logits are always returned as f32).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Parameters stored in the checkpoint.
    pub fn num_params(&self) -> usize {
        self.num_params
    }

    /// Parameters one token uses: all but the routed experts it does not choose.
    pub fn num_active_params(&self) -> usize {
        let moe_layers = self.config.moe_layers().len();
        let unused = self.config.moe.num_experts - self.config.moe.top_k;
        self.num_params - moe_layers * unused * self.expert_params
    }

    /// Runs `tokens` (`[batch][seq]`, equal lengths; `valid[b][t]` false marks padding) after
    /// what `cache` holds, appends them to the cache, and returns f32 logits.
    pub fn forward(
        &self,
        tokens: &[Vec<u32>],
        valid: &[Vec<bool>],
        cache: &mut KvCache,
        opts: ForwardOptions<'_>,
    ) -> Result<Tensor> {
        // On the cpu the whole pass runs on one of rayon's threads: each parallel product then
        // forks from a thread that works on it too, rather than handing every product to the
        // pool and waiting (two thread wake-ups per product, dozens per layer at decode).
        if self.device.is_cpu() && rayon::current_thread_index().is_none() {
            return rayon::scope(|_| self.forward(tokens, valid, cache, opts));
        }
        let batch = tokens.len();
        let seq = tokens.first().map_or(0, Vec::len);
        self.check_input(tokens, valid, cache)?;
        let c = &self.config;
        opts.policy
            .validate(&c.moe_layers(), c.moe.num_experts, c.moe.top_k)?;
        if cache.layers.is_empty() {
            cache.layers = (0..self.layers.len())
                .map(|_| {
                    let mut kv = LayerKv::default();
                    kv.reserve(cache.reserved);
                    kv
                })
                .collect();
            cache.valid = vec![Vec::new(); batch];
        }
        let past = cache.len();
        let positions: Vec<Vec<u32>> = (0..batch)
            .map(|b| {
                let mut next = cache.valid[b].iter().filter(|&&v| v).count() as u32;
                valid[b]
                    .iter()
                    .map(|&v| {
                        let p = next;
                        next += u32::from(v);
                        if v {
                            p
                        } else {
                            0
                        }
                    })
                    .collect()
            })
            .collect();
        if let Some(&max) = positions.iter().flatten().max() {
            if max as usize >= self.config.max_position_embeddings {
                return Err(EngineError::InvalidInput(format!(
                    "sequence of {} tokens exceeds the model's context of {} (max_position_embeddings)",
                    max + 1,
                    self.config.max_position_embeddings
                )));
            }
        }
        for (b, v) in valid.iter().enumerate() {
            cache.valid[b].extend_from_slice(v);
        }
        let rope = Rope::new(
            &self.config.attention.rope,
            &positions,
            &self.device,
            self.dtype,
        )?;
        let mut masks: Vec<(Option<usize>, Tensor)> = Vec::new();
        let flat: Vec<u32> = tokens.iter().flatten().copied().collect();
        let ids = Tensor::new(flat.as_slice(), &self.device)?;
        let mut x = self.embed.index_select(&ids, 0)?;
        let mut call = MoeCall {
            policy: opts.policy,
            phase: opts.phase,
            recorder: opts.recorder,
            gates: opts.gates,
        };
        for (layer, kv) in self.layers.iter().zip(cache.layers.iter_mut()) {
            let mask = match masks.iter().find(|(w, _)| *w == layer.sliding_window) {
                Some((_, m)) => m.clone(),
                None => {
                    let m = attention_mask(
                        &cache.valid,
                        past,
                        seq,
                        layer.sliding_window,
                        &self.device,
                    )?;
                    masks.push((layer.sliding_window, m.clone()));
                    m
                }
            };
            let h = layer.input_norm.forward(&x)?;
            let a = match &layer.attention {
                AttentionLayer::Gqa(att) => att.forward(&h, batch, &rope, &mask, kv)?,
                AttentionLayer::Mla(att) => att.forward(&h, batch, &rope, &mask, kv)?,
            };
            x = (x + a)?;
            let h = layer.post_norm.forward(&x)?;
            let f = match &layer.ffn {
                Ffn::Dense(mlp) => mlp.forward(&h)?,
                Ffn::Moe(moe) => moe.forward(&h, &mut call)?,
            };
            x = (x + f)?;
        }
        let x = x.reshape((batch, seq, self.config.hidden_size))?;
        let x = match opts.logits_for {
            LogitsFor::All => x,
            LogitsFor::Last => x.narrow(1, seq - 1, 1)?,
        };
        let rows = x.dim(1)?;
        let x = self
            .norm
            .forward(&x.reshape((batch * rows, self.config.hidden_size))?)?;
        Ok(self.lm_head.forward(&x)?.to_dtype(DType::F32)?.reshape((
            batch,
            rows,
            self.config.vocab_size,
        ))?)
    }

    fn check_input(&self, tokens: &[Vec<u32>], valid: &[Vec<bool>], cache: &KvCache) -> Result<()> {
        let seq = tokens.first().map_or(0, Vec::len);
        if tokens.is_empty() || seq == 0 {
            return Err(EngineError::InvalidInput("no tokens to run".into()));
        }
        if tokens.iter().any(|r| r.len() != seq)
            || valid.len() != tokens.len()
            || valid.iter().any(|r| r.len() != seq)
        {
            return Err(EngineError::InvalidInput(
                "every row of a batch must have the same length, with a validity flag per token"
                    .into(),
            ));
        }
        if !cache.valid.is_empty() && cache.valid.len() != tokens.len() {
            return Err(EngineError::InvalidInput(format!(
                "batch of {} rows does not match the cache's {} rows",
                tokens.len(),
                cache.valid.len()
            )));
        }
        if let Some(&bad) = tokens
            .iter()
            .flatten()
            .find(|&&t| t as usize >= self.config.vocab_size)
        {
            return Err(EngineError::InvalidInput(format!(
                "token id {bad} is outside the vocabulary (size {})",
                self.config.vocab_size
            )));
        }
        Ok(())
    }
}

/// The additive mask `[batch, 1, seq, past + seq]`: causal, hides padding keys, and keys more
/// than `window` positions back when the layer uses sliding attention.
fn attention_mask(
    valid: &[Vec<bool>],
    past: usize,
    seq: usize,
    window: Option<usize>,
    device: &Device,
) -> Result<Tensor> {
    let total = past + seq;
    let mut m = Vec::with_capacity(valid.len() * seq * total);
    for row in valid {
        for t in 0..seq {
            let q = past + t;
            for (j, &v) in row.iter().enumerate() {
                let visible = v && j <= q && window.is_none_or(|w| q - j < w);
                m.push(if visible { 0.0 } else { MASKED });
            }
        }
    }
    Ok(Tensor::from_vec(m, (valid.len(), 1, seq, total), device)?)
}
