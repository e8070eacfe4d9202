//! `Matrix`: a projection's weights as the forward pass holds them — a dense tensor, or FP8 or
//! MXFP4 values kept compressed with their block scales — and the product `x Wᵀ` with any.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor};

use crate::error::{EngineError, Result};
use crate::kernels::{CompressedMatrix, Fp8Matrix, Mxfp4Matrix, WeightMatrix, MXFP4_BLOCK};
use crate::ops::{linear, linear_into_storage};

/// Weights of shape `[…, out, in]`.
#[derive(Debug, Clone)]
pub enum Matrix {
    /// Values in the compute dtype, or in the stored 16-bit dtype on the cpu.
    Dense(Tensor),
    /// FP8 e4m3 values as a `U8` tensor `[…, out, in]` and f32 scales per row and block of
    /// `block` input columns, `[…, out, ⌈in / block⌉]` (a checkpoint's block scales repeated
    /// down the rows of each block row; a few percent of the values' bytes).
    Fp8 {
        /// The e4m3 bytes.
        values: Tensor,
        /// Per-row block scales.
        scales: Tensor,
        /// Input columns sharing a scale.
        block: usize,
    },
    /// MXFP4 values as `U8` blocks `[…, out, in / 32, 16]` (two e2m1 values a byte) and `U8`
    /// e8m0 scales `[…, out, in / 32]`, as gpt-oss stores its experts.
    Mxfp4 {
        /// The packed values.
        blocks: Tensor,
        /// One power-of-two scale per 32 values.
        scales: Tensor,
    },
}

/// A [`Matrix`]'s tensors, as [`Matrix::parts`] gives them.
enum Parts<'a> {
    Dense(&'a Tensor),
    Compressed(&'a Tensor, &'a Tensor, Compression),
}

/// How [`CompressedLinear`] reads its two weight tensors.
#[derive(Debug, Clone, Copy)]
enum Compression {
    Fp8 { block: usize },
    Mxfp4,
}

impl Matrix {
    /// The shape of the weights (`[…, out, in]`).
    pub fn dims(&self) -> Vec<usize> {
        match self {
            Matrix::Dense(t) => t.dims().to_vec(),
            Matrix::Fp8 { values, .. } => values.dims().to_vec(),
            Matrix::Mxfp4 { scales, .. } => {
                // Scales are `[…, out, in / 32]`.
                let mut dims = scales.dims().to_vec();
                if let Some(groups) = dims.last_mut() {
                    *groups *= MXFP4_BLOCK;
                }
                dims
            }
        }
    }

    /// Number of weight values.
    pub fn elem_count(&self) -> usize {
        self.dims().iter().product()
    }

    /// The matrix's tensors: the dense one, or the two of a compressed matrix and how to
    /// read them.
    fn parts(&self) -> Parts<'_> {
        match self {
            Matrix::Dense(t) => Parts::Dense(t),
            Matrix::Fp8 {
                values,
                scales,
                block,
            } => Parts::Compressed(values, scales, Compression::Fp8 { block: *block }),
            Matrix::Mxfp4 { blocks, scales } => {
                Parts::Compressed(blocks, scales, Compression::Mxfp4)
            }
        }
    }

    /// The same kind of matrix from new tensors.
    fn rebuilt(&self, f: impl Fn(&Tensor) -> Result<Tensor>) -> Result<Self> {
        Ok(match self {
            Matrix::Dense(t) => Matrix::Dense(f(t)?),
            Matrix::Fp8 {
                values,
                scales,
                block,
            } => Matrix::Fp8 {
                values: f(values)?,
                scales: f(scales)?,
                block: *block,
            },
            Matrix::Mxfp4 { blocks, scales } => Matrix::Mxfp4 {
                blocks: f(blocks)?,
                scales: f(scales)?,
            },
        })
    }

    /// Entry `i` of the first axis (one expert of a stacked tensor), without copying.
    pub fn get(&self, i: usize) -> Result<Self> {
        self.rebuilt(|t| Ok(t.get(i)?))
    }

    /// The rows `order` of a stacked `[E, out, in]` matrix, in that order (GPT-OSS's
    /// interleaved gate/up rows put gate first).
    pub fn select_rows(&self, order: &Tensor) -> Result<Self> {
        self.rebuilt(|t| Ok(t.contiguous()?.index_select(order, 1)?))
    }

    /// The rows of `parts` one after another (gate then up, fused into one product); the parts
    /// must share a format.
    pub fn cat_rows(parts: &[&Matrix]) -> Result<Self> {
        let Some(first) = parts.first() else {
            return Err(EngineError::InvalidInput("no matrices to join".into()));
        };
        let axis = first.dims().len().saturating_sub(2);
        let same = |p: &&Matrix| std::mem::discriminant(*p) == std::mem::discriminant(*first);
        if !parts.iter().all(same) {
            return Err(mixed_formats());
        }
        if let (Matrix::Fp8 { block, .. }, true) = (first, parts.len() > 1) {
            let blocks_agree = parts
                .iter()
                .all(|p| matches!(p, Matrix::Fp8 { block: b, .. } if b == block));
            if !blocks_agree {
                return Err(mixed_formats());
            }
        }
        // The parts' dense values, or their values and their scales.
        let (mut values, mut scales) = (Vec::new(), Vec::new());
        for p in parts {
            match p.parts() {
                Parts::Compressed(v, s, _) => {
                    values.push(v.clone());
                    scales.push(s.clone());
                }
                Parts::Dense(t) => values.push(t.clone()),
            }
        }
        let cat = |parts: &[Tensor]| -> Result<Tensor> { Ok(Tensor::cat(parts, axis)?) };
        Ok(match first {
            Matrix::Dense(_) => Matrix::Dense(cat(&values)?),
            Matrix::Fp8 { block, .. } => Matrix::Fp8 {
                values: cat(&values)?,
                scales: cat(&scales)?,
                block: *block,
            },
            Matrix::Mxfp4 { .. } => Matrix::Mxfp4 {
                blocks: cat(&values)?,
                scales: cat(&scales)?,
            },
        })
    }

    /// `[2E, rows, in]` pairs (expert `i`'s gate, then its up) merged into `[E, 2·rows, in]`.
    pub fn merge_pairs(&self) -> Result<Self> {
        self.rebuilt(|t| {
            let d = t.dims();
            let mut merged = vec![d[0] / 2, 2 * d[1]];
            merged.extend_from_slice(&d[2..]);
            Ok(t.reshape(merged)?)
        })
    }

    /// The weights as a dense tensor: compressed values widened (per call) to `dtype`, for
    /// devices and computations the compressed kernels do not serve (other devices,
    /// gradients); dense weights as they are.
    pub fn dense(&self, dtype: DType) -> Result<Tensor> {
        let (values, scales, how) = match self.parts() {
            Parts::Dense(t) => return Ok(t.clone()),
            Parts::Compressed(values, scales, how) => (values, scales, how),
        };
        let bytes = values.flatten_all()?.to_dtype(DType::U8)?.to_vec1::<u8>()?;
        let dims = self.dims();
        let k = *dims.last().unwrap_or(&0);
        let rows = dims.iter().product::<usize>().checked_div(k).unwrap_or(0);
        let mut out = Vec::new();
        match how {
            Compression::Fp8 { block } => {
                let s = scales.flatten_all()?.to_vec1::<f32>()?;
                let w = Fp8Matrix {
                    values: &bytes,
                    scales: &s,
                    block,
                };
                w.widen_rows(0..rows, k, &mut out);
            }
            Compression::Mxfp4 => {
                let s = scales.flatten_all()?.to_vec1::<u8>()?;
                let w = Mxfp4Matrix {
                    blocks: &bytes,
                    scales: &s,
                };
                w.widen_rows(0..rows, k, &mut out);
            }
        }
        Ok(Tensor::from_vec(out, dims, values.device())?.to_dtype(dtype)?)
    }

    /// `x Wᵀ` for `x` `[…, in]`: compressed weights on the cpu go to the kernels that widen a
    /// few rows at a time; anything else to [`linear`].
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        match self.parts() {
            Parts::Dense(w) => linear(x, w),
            Parts::Compressed(values, scales, how)
                if x.device().is_cpu() && !x.track_op() && self.dims().len() == 2 =>
            {
                let x = x.contiguous()?;
                let op = CompressedLinear {
                    how,
                    m: self.dims()[0],
                };
                Ok(x.apply_op3_no_bwd(&values.contiguous()?, &scales.contiguous()?, &op)?)
            }
            _ => linear(x, &self.dense(x.dtype())?),
        }
    }
}

fn mixed_formats() -> EngineError {
    EngineError::InvalidInput(
        "the gate, up and down projections of one MLP must share a format (all FP8 or none)".into(),
    )
}

/// The candle op behind [`Matrix::apply`] for compressed weights on the cpu.
struct CompressedLinear {
    how: Compression,
    /// Weight rows.
    m: usize,
}

impl CustomOp3 for CompressedLinear {
    fn name(&self) -> &'static str {
        "compressed-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (Some((w0, w1)), Some((c0, c1))) = (l2.contiguous_offsets(), l3.contiguous_offsets())
        else {
            candle_core::bail!("compressed-linear expects contiguous weights");
        };
        let k = *l1.shape().dims().last().unwrap_or(&0);
        let w: CompressedMatrix = match (self.how, s2, s3) {
            (Compression::Fp8 { block }, CpuStorage::U8(v), CpuStorage::F32(s)) => {
                if s[c0..c1].len() != self.m * k.div_ceil(block) {
                    candle_core::bail!("fp8 scales do not fit the {}×{k} weights", self.m);
                }
                CompressedMatrix::Fp8(Fp8Matrix {
                    values: &v[w0..w1],
                    scales: &s[c0..c1],
                    block,
                })
            }
            (Compression::Mxfp4, CpuStorage::U8(v), CpuStorage::U8(s)) => {
                if !k.is_multiple_of(MXFP4_BLOCK) || s[c0..c1].len() != self.m * k / MXFP4_BLOCK {
                    candle_core::bail!("mxfp4 scales do not fit the {}×{k} weights", self.m);
                }
                CompressedMatrix::Mxfp4(Mxfp4Matrix {
                    blocks: &v[w0..w1],
                    scales: &s[c0..c1],
                })
            }
            _ => candle_core::bail!("compressed-linear: unexpected weight storage"),
        };
        linear_into_storage(s1, l1, WeightMatrix::Compressed(w), self.m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels;
    use candle_core::Device;

    /// A 3 × 40 FP8 matrix with blocks of 16 columns (3 blocks, the last partial).
    fn fp8_matrix() -> (Matrix, Vec<f32>) {
        let (m, k, block) = (3, 40, 16);
        let bytes: Vec<u8> = (0..m * k)
            .map(|i| (i * 11 % 126) as u8 | (0x80 * (i % 2) as u8))
            .collect();
        let scales: Vec<f32> = (0..m * 3).map(|i| 0.01 * (i + 1) as f32).collect();
        let dense: Vec<f32> = (0..m * k)
            .map(|i| kernels::e4m3_to_f32(bytes[i]) * scales[(i / k) * 3 + (i % k) / block])
            .collect();
        let values = Tensor::from_vec(bytes, (m, k), &Device::Cpu).unwrap();
        let scales = Tensor::from_vec(scales, (m, 3), &Device::Cpu).unwrap();
        (
            Matrix::Fp8 {
                values,
                scales,
                block,
            },
            dense,
        )
    }

    #[test]
    fn fp8_products_match_the_dense_weights_they_stand_for() {
        let (w, dense) = fp8_matrix();
        let x = Tensor::from_vec(
            (0..2 * 40)
                .map(|i| ((i % 7) as f32 - 3.0) * 0.25)
                .collect::<Vec<f32>>(),
            (2, 40),
            &Device::Cpu,
        )
        .unwrap();
        let want = x
            .matmul(
                &Tensor::from_vec(dense.clone(), (3, 40), &Device::Cpu)
                    .unwrap()
                    .t()
                    .unwrap(),
            )
            .unwrap();
        let got = w.apply(&x).unwrap();
        let diff = (got - &want).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
        assert_eq!(
            w.dense(DType::F32)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
            dense
        );
        // Gate and up fused: the rows of both, scales with them.
        let fused = Matrix::cat_rows(&[&w, &w]).unwrap();
        assert_eq!(fused.dims(), [6, 40]);
        let y = fused.apply(&x).unwrap();
        let (a, b) = (y.narrow(1, 0, 3).unwrap(), y.narrow(1, 3, 3).unwrap());
        let same = (a - b).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(same.to_scalar::<f32>().unwrap(), 0.0);
        assert!(Matrix::cat_rows(&[&w, &Matrix::Dense(want)]).is_err());
    }
}
