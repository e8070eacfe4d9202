//! Rotary position embeddings: the frequency schedule (default, linear, YaRN) and the tables
//! for one forward call, applied in the rotate-half or the interleaved-pairs layout.

use candle_core::{DType, Device, Tensor};

use crate::error::Result;

/// How RoPE frequencies are scaled for long contexts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    None,
    /// Positions divided by `factor`.
    Linear {
        /// The divisor.
        factor: f64,
    },
    /// YaRN: interpolate low frequencies, keep high ones, scale cos/sin by `attention_factor`.
    Yarn {
        /// Context extension factor.
        factor: f64,
        /// Context length the model was trained with.
        original_max_position_embeddings: f64,
        /// Rotations above which frequencies are kept.
        beta_fast: f64,
        /// Rotations below which frequencies are interpolated.
        beta_slow: f64,
        /// Multiplies cos and sin.
        attention_factor: f64,
        /// Round the correction range outwards to whole dimensions.
        truncate: bool,
    },
}

/// RoPE settings of one attention variant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RopeSpec {
    /// Number of rotated dimensions per head.
    pub dim: usize,
    /// Base frequency.
    pub theta: f64,
    /// Long-context scaling.
    pub scaling: RopeScaling,
    /// Rotate interleaved pairs `(x0, x1), (x2, x3), …` (DeepSeek) rather than the two halves.
    pub interleaved: bool,
}

impl RopeSpec {
    /// Inverse frequencies, one per rotated pair, and the factor applied to cos and sin.
    pub fn inv_freq(&self) -> (Vec<f32>, f32) {
        let d = self.dim as f64;
        let base: Vec<f64> = (0..self.dim / 2)
            .map(|i| self.theta.powf((2 * i) as f64 / d))
            .collect();
        match self.scaling {
            RopeScaling::None => (base.iter().map(|p| (1.0 / p) as f32).collect(), 1.0),
            RopeScaling::Linear { factor } => (
                base.iter().map(|p| (1.0 / (p * factor)) as f32).collect(),
                1.0,
            ),
            RopeScaling::Yarn {
                factor,
                original_max_position_embeddings: orig,
                beta_fast,
                beta_slow,
                attention_factor,
                truncate,
            } => {
                let correction = |rotations: f64| {
                    d * (orig / (rotations * 2.0 * std::f64::consts::PI)).ln()
                        / (2.0 * self.theta.ln())
                };
                let (mut low, mut high) = (correction(beta_fast), correction(beta_slow));
                if truncate {
                    low = low.floor();
                    high = high.ceil();
                }
                let low = low.max(0.0);
                let mut high = high.min(d - 1.0);
                if low == high {
                    high += 0.001;
                }
                let inv = base
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        let ramp = ((i as f64 - low) / (high - low)).clamp(0.0, 1.0);
                        let keep = 1.0 - ramp;
                        (1.0 / (factor * p) * (1.0 - keep) + 1.0 / p * keep) as f32
                    })
                    .collect();
                (inv, attention_factor as f32)
            }
        }
    }
}

/// YaRN's magnitude correction `0.1 · m · ln(scale) + 1` (1 when not extending).
pub fn yarn_mscale(scale: f64, m: f64) -> f64 {
    if scale <= 1.0 {
        1.0
    } else {
        0.1 * m * scale.ln() + 1.0
    }
}

/// Rotary tables for one forward call: `cos` and `sin` of shape `[batch, seq, dim / 2]`, one row
/// per token position.
pub struct Rope {
    cos: Tensor,
    sin: Tensor,
    interleaved: bool,
}

impl Rope {
    /// Builds the tables for the given per-row positions (`positions[b][t]`), computed in f32
    /// and stored as `dtype`, the dtype of the queries and keys they rotate.
    pub fn new(
        spec: &RopeSpec,
        positions: &[Vec<u32>],
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        let (inv_freq, attention_factor) = spec.inv_freq();
        let half = spec.dim / 2;
        let batch = positions.len();
        let seq = positions.first().map_or(0, Vec::len);
        let mut cos = Vec::with_capacity(batch * seq * half);
        let mut sin = Vec::with_capacity(batch * seq * half);
        for &p in positions.iter().flatten() {
            for &f in &inv_freq {
                let angle = p as f32 * f;
                cos.push(angle.cos() * attention_factor);
                sin.push(angle.sin() * attention_factor);
            }
        }
        Ok(Self {
            cos: Tensor::from_vec(cos, (batch, seq, half), device)?.to_dtype(dtype)?,
            sin: Tensor::from_vec(sin, (batch, seq, half), device)?.to_dtype(dtype)?,
            interleaved: spec.interleaved,
        })
    }

    /// The same rotation from differentiable elementwise ops.
    fn apply_composed(&self, x: &Tensor) -> Result<Tensor> {
        let (b, h, t, d) = x.dims4()?;
        let half = d / 2;
        let cos = self.cos.unsqueeze(1)?;
        let sin = self.sin.unsqueeze(1)?;
        if self.interleaved {
            let pairs = x.reshape((b, h, t, half, 2))?;
            let (even, odd) = (
                pairs.narrow(4, 0, 1)?.squeeze(4)?,
                pairs.narrow(4, 1, 1)?.squeeze(4)?,
            );
            let re = (even.broadcast_mul(&cos)? - odd.broadcast_mul(&sin)?)?;
            let ro = (even.broadcast_mul(&sin)? + odd.broadcast_mul(&cos)?)?;
            Ok(Tensor::stack(&[re, ro], 4)?.reshape((b, h, t, d))?)
        } else {
            let (x1, x2) = (x.narrow(3, 0, half)?, x.narrow(3, half, half)?);
            let r1 = (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?;
            let r2 = (x2.broadcast_mul(&cos)? + x1.broadcast_mul(&sin)?)?;
            Ok(Tensor::cat(&[r1, r2], 3)?)
        }
    }

    /// Rotates `x` of shape `[batch, heads, seq, dim]`.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.contiguous()?;
        // The fused kernels have no backward pass; gradients take the composed ops.
        Ok(if x.track_op() {
            self.apply_composed(&x)?
        } else if self.interleaved {
            candle_nn::rotary_emb::rope_i(&x, &self.cos, &self.sin)?
        } else {
            candle_nn::rotary_emb::rope(&x, &self.cos, &self.sin)?
        })
    }
}
