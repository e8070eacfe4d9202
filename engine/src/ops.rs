//! Fused kernels where a chain of single-threaded elementwise ops would dominate the run time.

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::error::Result;

/// `softmax(scores + mask)` over the last dimension, with `scores` `[batch, heads, seq, keys]`
/// and an additive `mask` `[batch, 1, seq, keys]` shared by every head. One parallel pass on
/// the CPU; other devices use the unfused ops.
pub fn masked_softmax(scores: &Tensor, mask: &Tensor) -> Result<Tensor> {
    if scores.device().is_cpu() {
        let scores = scores.contiguous()?;
        let mask = mask.contiguous()?;
        return Ok(scores.apply_op2_no_bwd(&mask, &MaskedSoftmax)?);
    }
    Ok(candle_nn::ops::softmax_last_dim(
        &scores.broadcast_add(mask)?,
    )?)
}

/// Additive attention-mask value for a hidden key: finite, so that a row with no visible key
/// (a padding query) stays finite in the unfused path too.
pub const MASKED: f32 = -1e30;

/// Mask values at or below this hide a key.
const HIDDEN: f32 = MASKED / 10.0;

struct MaskedSoftmax;

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
        let (mb, mh, ms, mk) = l2.shape().dims4()?;
        if (mb, mh, ms, mk) != (batch, 1, seq, keys) {
            candle_core::bail!(
                "masked-softmax: mask {:?} does not fit scores {:?}",
                l2.shape(),
                l1.shape()
            );
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
                // Hidden keys are skipped rather than exponentiated: exp of a huge negative
                // number takes libm's slow underflow path.
                let mut max = f32::NEG_INFINITY;
                for (&s, &mv) in src.iter().zip(m) {
                    if mv > HIDDEN {
                        max = max.max(s + mv);
                    }
                }
                if max == f32::NEG_INFINITY {
                    // No visible key (a padding query): uniform, as the unfused softmax gives.
                    dst.fill(1.0 / keys as f32);
                    return;
                }
                let mut sum = 0f32;
                for ((d, &s), &mv) in dst.iter_mut().zip(src).zip(m) {
                    *d = if mv > HIDDEN {
                        (s + mv - max).exp()
                    } else {
                        0.0
                    };
                    sum += *d;
                }
                let inv = 1.0 / sum;
                for d in dst.iter_mut() {
                    *d *= inv;
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

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
            .map(|i| if i % 3 == 0 || i % 20 < 5 { -1e30 } else { 0.0 })
            .collect();
        let mask = Tensor::from_vec(mask_vals, (2, 1, 4, 5), &dev).unwrap();
        let fused = masked_softmax(&scores, &mask).unwrap();
        let plain =
            candle_nn::ops::softmax_last_dim(&scores.broadcast_add(&mask).unwrap()).unwrap();
        let diff: f32 = (fused - plain)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(diff < 1e-6, "{diff}");
    }
}
