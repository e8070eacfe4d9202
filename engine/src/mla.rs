//! Multi-head latent attention (DeepSeek-V2/V3): queries through an optional low-rank
//! projection, keys and values expanded from a compressed latent shared by all heads, with a
//! separate rotated key part. The cache stores the latent and the rotated part, not full keys.

use candle_core::{Tensor, D};

use crate::attention::{attend_causal, LayerKv};
use crate::config::{AttentionSpec, MlaSpec};
use crate::error::Result;
use crate::layers::{Linear, RmsNorm};
use crate::rope::Rope;
use crate::weights::Weights;

/// How queries are produced.
#[derive(Debug, Clone)]
enum QueryProj {
    /// One projection to every head's query.
    Direct(Linear),
    /// `q_b(norm(q_a(x)))` through a rank-`q_lora_rank` bottleneck.
    LowRank { a: Linear, norm: RmsNorm, b: Linear },
}

/// One MLA layer.
#[derive(Debug, Clone)]
pub struct MlaAttention {
    q: QueryProj,
    kv_a: Linear,
    kv_norm: RmsNorm,
    kv_b: Linear,
    o: Linear,
    heads: usize,
    mla: MlaSpec,
    softmax_scale: f64,
}

impl MlaAttention {
    /// Loads `{prefix}.{q_proj | q_a_proj, q_a_layernorm, q_b_proj}`, `kv_a_proj_with_mqa`,
    /// `kv_a_layernorm`, `kv_b_proj` and `o_proj`.
    pub fn load(
        w: &Weights,
        prefix: &str,
        spec: &AttentionSpec,
        mla: &MlaSpec,
        hidden: usize,
        eps: f64,
    ) -> Result<Self> {
        let nh = spec.num_heads;
        let qk_head = mla.qk_nope_head_dim + mla.qk_rope_head_dim;
        let bias = spec.qkv_bias;
        let q = match mla.q_lora_rank {
            None => QueryProj::Direct(Linear::load(
                w,
                &format!("{prefix}.q_proj"),
                hidden,
                nh * qk_head,
                false,
            )?),
            Some(r) => QueryProj::LowRank {
                a: Linear::load(w, &format!("{prefix}.q_a_proj"), hidden, r, bias)?,
                norm: RmsNorm::load(w, &format!("{prefix}.q_a_layernorm"), r, eps)?,
                b: Linear::load(w, &format!("{prefix}.q_b_proj"), r, nh * qk_head, false)?,
            },
        };
        let latent = mla.kv_lora_rank;
        Ok(Self {
            q,
            kv_a: Linear::load(
                w,
                &format!("{prefix}.kv_a_proj_with_mqa"),
                hidden,
                latent + mla.qk_rope_head_dim,
                bias,
            )?,
            kv_norm: RmsNorm::load(w, &format!("{prefix}.kv_a_layernorm"), latent, eps)?,
            kv_b: Linear::load(
                w,
                &format!("{prefix}.kv_b_proj"),
                latent,
                nh * (mla.qk_nope_head_dim + mla.v_head_dim),
                false,
            )?,
            o: Linear::load(
                w,
                &format!("{prefix}.o_proj"),
                nh * mla.v_head_dim,
                hidden,
                bias,
            )?,
            heads: nh,
            mla: *mla,
            softmax_scale: spec.softmax_scale,
        })
    }

    /// Attends `x` (`[batch·seq, hidden]`) over the cache plus itself.
    pub fn forward(
        &self,
        x: &Tensor,
        batch: usize,
        rope: &Rope,
        mask: &Tensor,
        cache: &mut LayerKv,
    ) -> Result<Tensor> {
        let m = &self.mla;
        let (nh, nope, rot, dv) = (
            self.heads,
            m.qk_nope_head_dim,
            m.qk_rope_head_dim,
            m.v_head_dim,
        );
        let seq = x.dim(0)? / batch;
        let q = match &self.q {
            QueryProj::Direct(p) => p.forward(x)?,
            QueryProj::LowRank { a, norm, b } => b.forward(&norm.forward(&a.forward(x)?)?)?,
        };
        let q = q.reshape((batch, seq, nh, nope + rot))?.transpose(1, 2)?;
        let q_nope = q.narrow(D::Minus1, 0, nope)?;
        let q_rot = rope.apply(&q.narrow(D::Minus1, nope, rot)?)?;

        let ckv = self.kv_a.forward(x)?;
        let latent = self
            .kv_norm
            .forward(&ckv.narrow(D::Minus1, 0, m.kv_lora_rank)?)?;
        let latent = latent.reshape((batch, 1, seq, m.kv_lora_rank))?;
        let k_rot = ckv
            .narrow(D::Minus1, m.kv_lora_rank, rot)?
            .reshape((batch, seq, 1, rot))?
            .transpose(1, 2)?;
        let k_rot = rope.apply(&k_rot)?;
        let (latent, k_rot) = cache.append(latent, k_rot)?;

        let total = latent.dim(2)?;
        let kv = self
            .kv_b
            .forward(&latent.reshape((batch * total, m.kv_lora_rank))?)?
            .reshape((batch, total, nh, nope + dv))?
            .transpose(1, 2)?;
        let k_nope = kv.narrow(D::Minus1, 0, nope)?;
        let v = kv.narrow(D::Minus1, nope, dv)?;
        let k = Tensor::cat(
            &[&k_nope, &k_rot.broadcast_as((batch, nh, total, rot))?],
            D::Minus1,
        )?
        .contiguous()?;
        let v = v.contiguous()?;
        let q = (Tensor::cat(&[&q_nope, &q_rot], D::Minus1)? * self.softmax_scale)?;
        let out = attend_causal(&q, &k, &v, mask, nh, None)?
            .transpose(1, 2)?
            .reshape((batch * seq, nh * dv))?;
        self.o.forward(&out)
    }
}
