//! Fused kernels where a chain of single-threaded elementwise ops would dominate the run time.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::error::Result;
use crate::exp_lanes::{exp, exp_in_place};
use crate::kernels::{self, DenseMatrix, WeightMatrix};

/// Additive attention-mask value for a hidden key: finite, so that a row with no visible key
/// (a padding query) stays finite in the unfused path too.
pub const MASKED: f32 = -1e30;

/// Mask values at or below this hide a key.
const HIDDEN: f32 = MASKED / 10.0;

/// `softmax(scores + mask)` over the last dimension, with `scores` `[batch, heads, seq, keys]`
/// and an additive `mask` `[batch, 1, seq, keys]` shared by every head. With `sinks` (one logit
/// per head) each row's softmax also runs over its head's sink, whose probability is then
/// dropped. One parallel pass on the CPU; other devices, and gradient computations, use the
/// unfused ops. Scores in bf16 or f16 are normalised in f32 (as the reference does) and the
/// probabilities returned in the scores' dtype; `mask` is f32.
pub fn masked_softmax(scores: &Tensor, mask: &Tensor, sinks: Option<&[f32]>) -> Result<Tensor> {
    if scores.dtype() != DType::F32 {
        let probs = masked_softmax(&scores.to_dtype(DType::F32)?, mask, sinks)?;
        return Ok(probs.to_dtype(scores.dtype())?);
    }
    let tracked = scores.track_op();
    if scores.device().is_cpu() && !tracked {
        let op = MaskedSoftmax {
            sinks: sinks.map(<[f32]>::to_vec),
        };
        return Ok(scores
            .contiguous()?
            .apply_op2_no_bwd(&mask.contiguous()?, &op)?);
    }
    let softmax = |t: &Tensor| -> Result<Tensor> {
        Ok(if tracked {
            candle_nn::ops::softmax(t, candle_core::D::Minus1)?
        } else {
            candle_nn::ops::softmax_last_dim(t)?
        })
    };
    let logits = scores.broadcast_add(mask)?;
    let Some(sinks) = sinks else {
        return softmax(&logits);
    };
    let (b, h, t, keys) = logits.dims4()?;
    let sink = Tensor::new(sinks, logits.device())?
        .reshape((1, h, 1, 1))?
        .broadcast_as((b, h, t, 1))?;
    let probs = softmax(&Tensor::cat(&[&logits, &sink], 3)?)?;
    Ok(probs.narrow(3, 0, keys)?)
}

/// `a · b` (batched as `Tensor::matmul`). candle's cpu backend has no bf16 matmul, so on the
/// cpu bf16 operands are multiplied in f32 and the product rounded to bf16: what a GPU's bf16
/// GEMM does (bf16 inputs, f32 accumulation, bf16 output), only slower.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.dtype() == DType::BF16 && a.device().is_cpu() {
        let product = a.to_dtype(DType::F32)?.matmul(&b.to_dtype(DType::F32)?)?;
        return Ok(product.to_dtype(DType::BF16)?);
    }
    Ok(a.matmul(b)?)
}

/// `x Wᵀ` for activations `x` `[…, k]` and a weight `W` `[m, k]` as stored in the checkpoint.
/// On the cpu, bf16 and f16 weights are multiplied in place by [`crate::kernels`] (converted
/// a few values at a time inside the kernel, accumulated in f32, the result rounded to `x`'s
/// dtype); other devices and dtypes, and gradient computations, use [`matmul`].
pub fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let half_weights = matches!(w.dtype(), DType::BF16 | DType::F16);
    if half_weights && x.device().is_cpu() && w.rank() == 2 && !x.track_op() {
        let x = x.contiguous()?;
        let w = w.contiguous()?;
        return Ok(x.apply_op2_no_bwd(&w, &HalfLinear)?);
    }
    matmul(x, &w.t()?)
}

/// The candle op behind [`linear`] on the cpu.
struct HalfLinear;

impl CustomOp2 for HalfLinear {
    fn name(&self) -> &'static str {
        "half-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let Some((w0, w1)) = l2.contiguous_offsets() else {
            candle_core::bail!("half-linear expects contiguous weights");
        };
        let (m, _) = l2.shape().dims2()?;
        let w = match s2 {
            CpuStorage::BF16(v) => DenseMatrix::Bf16(&v[w0..w1]),
            CpuStorage::F16(v) => DenseMatrix::F16(&v[w0..w1]),
            _ => candle_core::bail!("half-linear: weights must be bf16 or f16"),
        };
        linear_into_storage(s1, l1, w.into(), m)
    }
}

/// `x Wᵀ` on the cpu for activations `x` (storage `s1`, layout `l1`, f32, bf16 or f16) and the
/// `[m, k]` weight `w`: accumulated in f32 by [`kernels::matmul_t`], rounded to `x`'s dtype.
pub(crate) fn linear_into_storage(
    s1: &CpuStorage,
    l1: &Layout,
    w: WeightMatrix<'_>,
    m: usize,
) -> candle_core::Result<(CpuStorage, Shape)> {
    let Some((x0, x1)) = l1.contiguous_offsets() else {
        candle_core::bail!("linear expects contiguous activations");
    };
    let dims = l1.shape().dims();
    let k = *dims.last().unwrap_or(&0);
    let n = l1.shape().elem_count() / k.max(1);
    if n * m * k > 0 && w.len() != m * k {
        candle_core::bail!("linear: x {:?} does not fit a {m}-row weight", l1.shape());
    }
    let x: std::borrow::Cow<[f32]> = match s1 {
        CpuStorage::F32(v) => std::borrow::Cow::Borrowed(&v[x0..x1]),
        CpuStorage::BF16(v) => v[x0..x1].iter().map(|h| h.to_f32()).collect(),
        CpuStorage::F16(v) => v[x0..x1].iter().map(|h| h.to_f32()).collect(),
        _ => candle_core::bail!("linear: activations must be f32, bf16 or f16"),
    };
    let mut out = vec![0f32; n * m];
    kernels::matmul_t(&x, n, k, w, m, &mut out);
    let mut shape = dims.to_vec();
    if let Some(last) = shape.last_mut() {
        *last = m;
    }
    let storage = match s1 {
        CpuStorage::BF16(_) => CpuStorage::BF16(
            out.par_iter()
                .with_min_len(1 << 16)
                .map(|&v| half::bf16::from_f32(v))
                .collect(),
        ),
        CpuStorage::F16(_) => CpuStorage::F16(
            out.par_iter()
                .with_min_len(1 << 16)
                .map(|&v| half::f16::from_f32(v))
                .collect(),
        ),
        _ => CpuStorage::F32(out),
    };
    Ok((storage, Shape::from(shape)))
}

/// `dst = softmax(src + mask)` for one row of scores, over the row's keys and, with a sink
/// logit, the sink too (whose probability is then dropped). Keys whose mask value hides them
/// get probability 0; a row with no visible key and no sink (a padding query) is uniform, as
/// the unfused softmax gives.
pub(crate) fn softmax_row(dst: &mut [f32], src: &[f32], mask: &[f32], sink: Option<f32>) {
    #[cfg(target_arch = "x86_64")]
    if kernels::avx2_lanes() {
        // SAFETY: `avx2_lanes` checked that the CPU has AVX2.
        unsafe { softmax_row_avx2(dst, src, mask, sink) };
        return;
    }
    softmax_row_lanes(dst, src, mask, sink);
}

/// [`softmax_row_lanes`] compiled for AVX2.
///
/// # Safety
/// The CPU supports AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn softmax_row_avx2(dst: &mut [f32], src: &[f32], mask: &[f32], sink: Option<f32>) {
    softmax_row_lanes(dst, src, mask, sink);
}

/// [`softmax_row`], every pass over the row in eight lanes.
#[inline(always)]
fn softmax_row_lanes(dst: &mut [f32], src: &[f32], mask: &[f32], sink: Option<f32>) {
    // Hidden keys become −∞, whose exp is 0.
    for ((d, &s), &mv) in dst.iter_mut().zip(src).zip(mask) {
        *d = if mv > HIDDEN {
            s + mv
        } else {
            f32::NEG_INFINITY
        };
    }
    let max = lane_max(dst).max(sink.unwrap_or(f32::NEG_INFINITY));
    if max == f32::NEG_INFINITY {
        dst.fill(1.0 / dst.len() as f32);
        return;
    }
    for d in dst.iter_mut() {
        *d -= max;
    }
    exp_in_place(dst);
    let sum = lane_sum(dst) + sink.map_or(0.0, |s| exp(s - max));
    let inv = 1.0 / sum;
    for d in dst.iter_mut() {
        *d *= inv;
    }
}

/// `max(values)` (−∞ for none), in eight partial maxima so the compiler vectorises it.
#[inline(always)]
fn lane_max(values: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = values.chunks_exact(8);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    for chunk in chunks {
        for (l, &v) in lanes.iter_mut().zip(chunk) {
            *l = if v > *l { v } else { *l };
        }
    }
    lanes.iter().fold(tail, |m, &v| m.max(v))
}

/// `Σ values`, in eight partial sums (so the compiler vectorises it), then the remainder.
#[inline(always)]
fn lane_sum(values: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = values.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (l, &v) in lanes.iter_mut().zip(chunk) {
            *l += v;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

struct MaskedSoftmax {
    sinks: Option<Vec<f32>>,
}

impl CustomOp2 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "masked-softmax"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(scores), CpuStorage::F32(mask)) = (s1, s2) else {
            candle_core::bail!("masked-softmax expects f32 scores and mask");
        };
        let (batch, heads, seq, keys) = l1.shape().dims4()?;
        if l2.shape().dims4()? != (batch, 1, seq, keys) {
            candle_core::bail!(
                "masked-softmax: mask {:?} does not fit scores {:?}",
                l2.shape(),
                l1.shape()
            );
        }
        if self.sinks.as_ref().is_some_and(|s| s.len() != heads) {
            candle_core::bail!("masked-softmax: one sink per head expected ({heads} heads)");
        }
        let scores = &scores[l1.start_offset()..l1.start_offset() + l1.shape().elem_count()];
        let mask = &mask[l2.start_offset()..l2.start_offset() + l2.shape().elem_count()];
        let mut out = vec![0f32; scores.len()];
        out.par_chunks_mut(keys)
            .zip(scores.par_chunks(keys))
            .enumerate()
            .for_each(|(row, (dst, src))| {
                let b = row / (heads * seq);
                let t = row % seq;
                let m = &mask[(b * seq + t) * keys..(b * seq + t + 1) * keys];
                let sink = self.sinks.as_ref().map(|s| s[(row / seq) % heads]);
                softmax_row(dst, src, m, sink);
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use candle_core::{DType, Device};

    /// The largest |a − b| over two f32 tensors of one shape.
    pub(crate) fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    #[test]
    fn matches_unfused_softmax() {
        let dev = Device::Cpu;
        let scores = Tensor::arange(0f32, 2. * 3. * 4. * 5., &dev)
            .unwrap()
            .reshape((2, 3, 4, 5))
            .unwrap()
            .sin()
            .unwrap();
        // Every third key hidden, and the first query row of each batch entirely hidden.
        let mask_vals: Vec<f32> = (0..2 * 4 * 5)
            .map(|i| {
                if i % 3 == 0 || i % 20 < 5 {
                    MASKED
                } else {
                    0.0
                }
            })
            .collect();
        let mask = Tensor::from_vec(mask_vals, (2, 1, 4, 5), &dev).unwrap();
        let plain =
            candle_nn::ops::softmax_last_dim(&scores.broadcast_add(&mask).unwrap()).unwrap();
        let fused = masked_softmax(&scores, &mask, None).unwrap();
        assert!(max_diff(&fused, &plain) < 1e-6);
    }

    #[test]
    fn sinks_take_probability_mass_by_hand() {
        // One head, one query, two visible keys with scores 0 and ln 2, a sink of ln 3:
        // exp values 1, 2 and 3, so the keys get 1/6 and 2/6.
        let dev = Device::Cpu;
        let scores = Tensor::new(&[[[[0f32, 2f32.ln()]]]], &dev).unwrap();
        let mask = Tensor::zeros((1, 1, 1, 2), DType::F32, &dev).unwrap();
        let p: Vec<f32> = masked_softmax(&scores, &mask, Some(&[3f32.ln()]))
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(
            (p[0] - 1. / 6.).abs() < 1e-6 && (p[1] - 2. / 6.).abs() < 1e-6,
            "{p:?}"
        );
    }
}
