//! Grouped-query self-attention with RoPE, the q/k-norm variants, optional q/k/v bias and
//! clamp, and a per-layer KV cache.

use candle_core::{DType, Tensor};

use crate::attend_few::attend_few;
use crate::config::{AttentionSpec, QkNorm};
use crate::error::Result;
use crate::layers::{Linear, RmsNorm};
use crate::ops::{masked_softmax, matmul};
use crate::rope::Rope;
use crate::weights::Weights;

/// Queries attended together in one block of a long prompt.
const QUERY_BLOCK: usize = 128;

/// The cache of one attention layer: two tensors `[batch, heads, cached, width]` along the
/// sequence axis — keys and values for grouped-query attention, the compressed latent and the
/// rotated key part for multi-head latent attention. Held in buffers with room to spare
/// ([`LayerKv::reserve`], else grown by doubling), written in place: a decode step copies only
/// its own new entries, not the whole cache. Not `Clone`: two caches must never share a
/// buffer that is written in place.
#[derive(Debug, Default)]
pub struct LayerKv {
    /// The buffers, `[batch, heads, capacity, width]` each.
    parts: Option<(Tensor, Tensor)>,
    /// Positions filled.
    len: usize,
    /// Positions the buffers should hold when first made.
    reserved: usize,
}

impl LayerKv {
    /// Makes the buffers, when they are first allocated, hold at least `positions` positions.
    pub fn reserve(&mut self, positions: usize) {
        self.reserved = self.reserved.max(positions);
    }

    /// Appends this call's two tensors and returns views of everything cached so far.
    pub fn append(&mut self, a: Tensor, b: Tensor) -> Result<(Tensor, Tensor)> {
        let new = a.dim(2)?;
        let needed = self.len + new;
        if a.track_op() || b.track_op() {
            // Computing gradients: writes in place are not differentiable, so concatenate.
            let all = match self.parts.take() {
                Some((pa, pb)) => (
                    Tensor::cat(&[&pa.narrow(2, 0, self.len)?, &a], 2)?,
                    Tensor::cat(&[&pb.narrow(2, 0, self.len)?, &b], 2)?,
                ),
                None => (a, b),
            };
            self.len = needed;
            self.parts = Some(all.clone());
            return Ok(all);
        }
        let capacity = self.parts.as_ref().map_or(Ok(0), |(pa, _)| pa.dim(2))?;
        if needed > capacity {
            let capacity = needed.max(2 * capacity).max(self.reserved);
            let grown = |old: Option<&Tensor>, like: &Tensor| -> Result<Tensor> {
                let (bt, h, _, w) = like.dims4()?;
                let buf = Tensor::zeros((bt, h, capacity, w), like.dtype(), like.device())?;
                if let Some(old) = old.filter(|_| self.len > 0) {
                    buf.slice_set(&old.narrow(2, 0, self.len)?.contiguous()?, 2, 0)?;
                }
                Ok(buf)
            };
            let old = self.parts.take();
            self.parts = Some((
                grown(old.as_ref().map(|p| &p.0), &a)?,
                grown(old.as_ref().map(|p| &p.1), &b)?,
            ));
        }
        let (pa, pb) = self.parts.as_ref().expect("allocated above");
        pa.slice_set(&a.contiguous()?, 2, self.len)?;
        pb.slice_set(&b.contiguous()?, 2, self.len)?;
        self.len = needed;
        Ok((pa.narrow(2, 0, needed)?, pb.narrow(2, 0, needed)?))
    }
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
    sinks: Option<Vec<f32>>,
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
            o: Linear::load(w, &format!("{prefix}.o_proj"), q_dim, hidden, spec.o_bias)?,
            sinks: if spec.sinks {
                Some(
                    w.get(&format!("{prefix}.sinks"), &[spec.num_heads])?
                        .to_dtype(candle_core::DType::F32)?
                        .to_vec1()?,
                )
            } else {
                None
            },
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
        let q = (rope.apply(&q.transpose(1, 2)?)? * s.softmax_scale)?;
        let k = rope.apply(&k.transpose(1, 2)?)?;
        let v = v.transpose(1, 2)?;
        // On the cpu, bf16/f16 queries, keys and values are widened to f32 once, as they enter
        // the cache (exactly: every 16-bit value is an f32), so a decode step never converts
        // the whole cache; candle's cpu matmul has no bf16 kernel to use instead.
        let wide = x.device().is_cpu() && x.dtype() != DType::F32;
        let f32_if_wide =
            |t: Tensor| -> Result<Tensor> { Ok(if wide { t.to_dtype(DType::F32)? } else { t }) };
        let (k, v) = cache.append(f32_if_wide(k)?, f32_if_wide(v)?)?;
        let out = attend_causal(&f32_if_wide(q)?, &k, &v, mask, nkv, self.sinks.as_deref())?
            .transpose(1, 2)?
            .reshape((batch * seq, nh * d))?
            .to_dtype(x.dtype())?;
        self.o.forward(&out)
    }

    fn norm(&self, norm: &Option<RmsNorm>, x: &Tensor) -> Result<Tensor> {
        match norm {
            Some(n) => n.forward(x),
            None => Ok(x.clone()),
        }
    }
}

/// Causal attention of scaled queries `q` `[batch, heads, seq, d]` over keys `k`
/// `[batch, kv_heads, past + seq, d]` and values `v` `[batch, kv_heads, past + seq, dv]` with the
/// additive `mask` `[batch, 1, seq, past + seq]`, and optionally one attention-sink logit per
/// head; returns `[batch, heads, seq, dv]`.
///
/// A block of queries only needs the keys up to its last position, so long prompts run in
/// blocks and skip the scores every query in the block would mask.
pub fn attend_causal(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    nkv: usize,
    sinks: Option<&[f32]>,
) -> Result<Tensor> {
    let seq = q.dim(2)?;
    let past = k.dim(2)? - seq;
    let mut blocks = Vec::with_capacity(seq.div_ceil(QUERY_BLOCK));
    for start in (0..seq).step_by(QUERY_BLOCK) {
        let len = QUERY_BLOCK.min(seq - start);
        let keys = past + start + len;
        blocks.push(attend(
            &q.narrow(2, start, len)?,
            &k.narrow(2, 0, keys)?,
            &v.narrow(2, 0, keys)?,
            &mask.narrow(2, start, len)?.narrow(3, 0, keys)?,
            nkv,
            sinks,
        )?);
    }
    Ok(if blocks.len() == 1 {
        blocks.remove(0)
    } else {
        Tensor::cat(&blocks, 2)?
    })
}

/// Scaled-dot-product attention of `q` `[batch, heads, seq, d]` (already scaled) over
/// `k` `[batch, kv_heads, keys, d]` and `v` `[batch, kv_heads, keys, dv]` with an additive
/// `mask` `[batch, 1, seq, keys]`; returns `[batch, heads, seq, dv]`.
fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    nkv: usize,
    sinks: Option<&[f32]>,
) -> Result<Tensor> {
    if let Some(out) = attend_few(q, k, v, mask, nkv, sinks)? {
        return Ok(out);
    }
    let (batch, nh, seq, d) = q.dims4()?;
    let (keys, dv) = (k.dim(2)?, v.dim(3)?);
    let groups = nh / nkv;
    // Query heads sharing a kv head are stacked along the sequence axis so one batched matmul
    // serves the whole group without copying k or v.
    let qg = q.contiguous()?.reshape((batch, nkv, groups * seq, d))?;
    let scores = matmul(&qg, &k.t()?)?.reshape((batch, nh, seq, keys))?;
    let probs = masked_softmax(&scores, mask, sinks)?;
    let probs = probs.reshape((batch, nkv, groups * seq, keys))?;
    Ok(matmul(&probs, v)?.reshape((batch, nh, seq, dv))?)
}
