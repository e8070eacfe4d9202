//! Grouped-query self-attention with RoPE, the q/k-norm variants, optional q/k/v bias and
//! clamp, and a per-layer KV cache.

use candle_core::{Device, Tensor, D};

use crate::config::{AttentionSpec, QkNorm};
use crate::error::Result;
use crate::layers::{Linear, RmsNorm};
use crate::weights::Weights;

/// Rotary-embedding tables for one forward call: `cos` and `sin` of shape `[batch, 1, seq, head_dim]`.
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
        let mut cos = Vec::with_capacity(batch * seq * d);
        let mut sin = Vec::with_capacity(batch * seq * d);
        let scale = spec.rope_linear_factor as f32;
        for row in positions {
            for &p in row {
                let p = p as f32 / scale;
                for _ in 0..2 {
                    for &f in &inv_freq {
                        let angle = p * f;
                        cos.push(angle.cos());
                        sin.push(angle.sin());
                    }
                }
            }
        }
        Ok(Self {
            cos: Tensor::from_vec(cos, (batch, 1, seq, d), device)?,
            sin: Tensor::from_vec(sin, (batch, 1, seq, d), device)?,
        })
    }

    /// Rotates `x` of shape `[batch, heads, seq, head_dim]` (rotate-half convention).
    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let d = x.dim(D::Minus1)?;
        let x1 = x.narrow(D::Minus1, 0, d / 2)?;
        let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
        let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
        Ok((x.broadcast_mul(&self.cos)? + rotated.broadcast_mul(&self.sin)?)?)
    }
}

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
        let q = rope.apply(&q.transpose(1, 2)?.contiguous()?)?;
        let k = rope.apply(&k.transpose(1, 2)?.contiguous()?)?;
        let v = v.transpose(1, 2)?.contiguous()?;
        let (k, v) = match (&cache.k, &cache.v) {
            (Some(pk), Some(pv)) => (Tensor::cat(&[pk, &k], 2)?, Tensor::cat(&[pv, &v], 2)?),
            _ => (k, v),
        };
        cache.k = Some(k.clone());
        cache.v = Some(v.clone());
        let total = k.dim(2)?;
        let groups = nh / nkv;
        // Query heads sharing a kv head are stacked along the sequence axis so one batched
        // matmul serves the whole group without copying k or v.
        let qg = q.reshape((batch, nkv, groups * seq, d))?;
        let scale = 1.0 / (d as f64).sqrt();
        let scores = (qg.matmul(&k.t()?)? * scale)?.reshape((batch, nh, seq, total))?;
        let probs = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(mask)?)?;
        let out = probs
            .reshape((batch, nkv, groups * seq, total))?
            .matmul(&v)?
            .reshape((batch, nh, seq, d))?
            .transpose(1, 2)?
            .reshape((batch * seq, nh * d))?;
        self.o.forward(&out)
    }

    fn norm(&self, norm: &Option<RmsNorm>, x: &Tensor) -> Result<Tensor> {
        match norm {
            Some(n) => n.forward(x),
            None => Ok(x.clone()),
        }
    }
}
