//! Grouped-query self-attention with RoPE, the q/k-norm variants, optional q/k/v bias and
//! clamp, and a per-layer KV cache.

use candle_core::{Device, Tensor};

use crate::config::{AttentionSpec, QkNorm};
use crate::error::Result;
use crate::layers::{Linear, RmsNorm};
use crate::ops::masked_softmax;
use crate::weights::Weights;

/// Rotary-embedding tables for one forward call: `cos` and `sin` of shape
/// `[batch, seq, head_dim / 2]`, one row per token position.
pub struct Rope {
    cos: Tensor,
    sin: Tensor,
}

impl Rope {
    /// Builds the tables for the given per-row positions (`positions[b][t]`).
    pub fn new(spec: &AttentionSpec, positions: &[Vec<u32>], device: &Device) -> Result<Self> {
        let d = spec.head_dim;
        let half = d / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| (1.0 / spec.rope_theta.powf((2 * i) as f64 / d as f64)) as f32)
            .collect();
        let batch = positions.len();
        let seq = positions.first().map_or(0, Vec::len);
        let mut cos = Vec::with_capacity(batch * seq * half);
        let mut sin = Vec::with_capacity(batch * seq * half);
        let scale = spec.rope_linear_factor as f32;
        for &p in positions.iter().flatten() {
            let p = p as f32 / scale;
            for &f in &inv_freq {
                let angle = p * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        Ok(Self {
            cos: Tensor::from_vec(cos, (batch, seq, half), device)?,
            sin: Tensor::from_vec(sin, (batch, seq, half), device)?,
        })
    }

    /// Rotates `x` of shape `[batch, heads, seq, head_dim]` (rotate-half convention).
    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::rotary_emb::rope(
            &x.contiguous()?,
            &self.cos,
            &self.sin,
        )?)
    }
}

/// Queries attended together in one block of a long prompt.
const QUERY_BLOCK: usize = 128;

/// Cached keys and values of one layer, `[batch, kv_heads, cached, head_dim]`.
#[derive(Debug, Clone, Default)]
pub struct LayerKv {
    k: Option<Tensor>,
    v: Option<Tensor>,
}

/// One attention layer.
#[derive(Debug, Clone)]
pub struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    spec: AttentionSpec,
}

impl Attention {
    /// Loads `{prefix}.{q,k,v,o}_proj` and the q/k norms the spec asks for.
    pub fn load(
        w: &Weights,
        prefix: &str,
        spec: &AttentionSpec,
        hidden: usize,
        eps: f64,
    ) -> Result<Self> {
        let q_dim = spec.num_heads * spec.head_dim;
        let kv_dim = spec.num_kv_heads * spec.head_dim;
        let bias = spec.qkv_bias;
        let (q_norm, k_norm) = match spec.qk_norm {
            QkNorm::None => (None, None),
            QkNorm::PerHead => (
                Some(RmsNorm::load(
                    w,
                    &format!("{prefix}.q_norm"),
                    spec.head_dim,
                    eps,
                )?),
                Some(RmsNorm::load(
                    w,
                    &format!("{prefix}.k_norm"),
                    spec.head_dim,
                    eps,
                )?),
            ),
            QkNorm::Full => (
                Some(RmsNorm::load(w, &format!("{prefix}.q_norm"), q_dim, eps)?),
                Some(RmsNorm::load(w, &format!("{prefix}.k_norm"), kv_dim, eps)?),
            ),
        };
        Ok(Self {
            q: Linear::load(w, &format!("{prefix}.q_proj"), hidden, q_dim, bias)?,
            k: Linear::load(w, &format!("{prefix}.k_proj"), hidden, kv_dim, bias)?,
            v: Linear::load(w, &format!("{prefix}.v_proj"), hidden, kv_dim, bias)?,
            o: Linear::load(w, &format!("{prefix}.o_proj"), q_dim, hidden, false)?,
            q_norm,
            k_norm,
            spec: spec.clone(),
        })
    }

    /// Attends `x` (`[batch·seq, hidden]`, rows in batch-major order) over the cache plus
    /// itself; `mask` is additive, `[batch, 1, seq, cached + seq]`.
    pub fn forward(
        &self,
        x: &Tensor,
        batch: usize,
        rope: &Rope,
        mask: &Tensor,
        cache: &mut LayerKv,
    ) -> Result<Tensor> {
        let s = &self.spec;
        let seq = x.dim(0)? / batch;
        let (nh, nkv, d) = (s.num_heads, s.num_kv_heads, s.head_dim);
        let mut q = self.q.forward(x)?;
        let mut k = self.k.forward(x)?;
        let mut v = self.v.forward(x)?;
        if s.qk_norm == QkNorm::Full {
            q = self.norm(&self.q_norm, &q)?;
            k = self.norm(&self.k_norm, &k)?;
        }
        if let Some(c) = s.clip_qkv {
            q = q.clamp(-c, c)?;
            k = k.clamp(-c, c)?;
            v = v.clamp(-c, c)?;
        }
        let mut q = q.reshape((batch, seq, nh, d))?;
        let mut k = k.reshape((batch, seq, nkv, d))?;
        let v = v.reshape((batch, seq, nkv, d))?;
        if s.qk_norm == QkNorm::PerHead {
            q = self.norm(&self.q_norm, &q)?;
            k = self.norm(&self.k_norm, &k)?;
        }
        let scale = 1.0 / (d as f64).sqrt();
        let q = (rope.apply(&q.transpose(1, 2)?)? * scale)?;
        let k = rope.apply(&k.transpose(1, 2)?)?;
        let v = v.transpose(1, 2)?.contiguous()?;
        let (k, v) = match (&cache.k, &cache.v) {
            (Some(pk), Some(pv)) => (Tensor::cat(&[pk, &k], 2)?, Tensor::cat(&[pv, &v], 2)?),
            _ => (k, v),
        };
        cache.k = Some(k.clone());
        cache.v = Some(v.clone());
        let total = k.dim(2)?;
        let past = total - seq;
        // Causal attention: a block of queries only needs the keys up to its last position, so
        // long prompts run in blocks and skip the scores every query in the block would mask.
        let mut blocks = Vec::with_capacity(seq.div_ceil(QUERY_BLOCK));
        for start in (0..seq).step_by(QUERY_BLOCK) {
            let len = QUERY_BLOCK.min(seq - start);
            let keys = past + start + len;
            blocks.push(self.attend(
                &q.narrow(2, start, len)?,
                &k.narrow(2, 0, keys)?,
                &v.narrow(2, 0, keys)?,
                &mask.narrow(2, start, len)?.narrow(3, 0, keys)?,
            )?);
        }
        let out = if blocks.len() == 1 {
            blocks.remove(0)
        } else {
            Tensor::cat(&blocks, 2)?
        };
        let out = out.transpose(1, 2)?.reshape((batch * seq, nh * d))?;
        self.o.forward(&out)
    }

    /// Scaled-dot-product attention of `q` `[batch, heads, seq, d]` (already scaled) over
    /// `k`, `v` `[batch, kv_heads, keys, d]` with an additive `mask` `[batch, 1, seq, keys]`;
    /// returns `[batch, heads, seq, d]`.
    fn attend(&self, q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (batch, nh, seq, d) = q.dims4()?;
        let (nkv, keys) = (self.spec.num_kv_heads, k.dim(2)?);
        let groups = nh / nkv;
        // Query heads sharing a kv head are stacked along the sequence axis so one batched
        // matmul serves the whole group without copying k or v.
        let qg = q.contiguous()?.reshape((batch, nkv, groups * seq, d))?;
        let scores = qg.matmul(&k.t()?)?.reshape((batch, nh, seq, keys))?;
        let probs = masked_softmax(&scores, mask)?;
        Ok(probs
            .reshape((batch, nkv, groups * seq, keys))?
            .matmul(&v.contiguous()?)?
            .reshape((batch, nh, seq, d))?)
    }

    fn norm(&self, norm: &Option<RmsNorm>, x: &Tensor) -> Result<Tensor> {
        match norm {
            Some(n) => n.forward(x),
            None => Ok(x.clone()),
        }
    }
}
