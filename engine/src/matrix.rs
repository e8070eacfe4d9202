//! `Matrix`: a projection's weights as the forward pass holds them — a dense tensor, or FP8
//! values kept compressed with their block scales — and the product `x Wᵀ` with either.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor};

use crate::error::Result;
use crate::kernels::{Fp8Matrix, WeightMatrix};
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
}

impl Matrix {
    /// The shape of the weights (`[…, out, in]`).
    pub fn dims(&self) -> &[usize] {
        match self {
            Matrix::Dense(t) => t.dims(),
            Matrix::Fp8 { values, .. } => values.dims(),
        }
    }

    /// Number of weight values.
    pub fn elem_count(&self) -> usize {
        self.dims().iter().product()
    }

    /// Entry `i` of the first axis (one expert of a stacked tensor), without copying.
    pub fn get(&self, i: usize) -> Result<Self> {
        Ok(match self {
            Matrix::Dense(t) => Matrix::Dense(t.get(i)?),
            Matrix::Fp8 {
                values,
                scales,
                block,
            } => Matrix::Fp8 {
                values: values.get(i)?,
                scales: scales.get(i)?,
                block: *block,
            },
        })
    }

    /// The rows of `parts` one after another (gate then up, fused into one product); the parts
    /// must share a format.
    pub fn cat_rows(parts: &[&Matrix]) -> Result<Self> {
        let axis = parts
            .first()
            .map_or(0, |p| p.dims().len().saturating_sub(2));
        match parts {
            [Matrix::Fp8 { block, .. }, ..] => {
                let mut values = Vec::with_capacity(parts.len());
                let mut scales = Vec::with_capacity(parts.len());
                for p in parts {
                    let Matrix::Fp8 {
                        values: v,
                        scales: s,
                        block: b,
                    } = p
                    else {
                        return Err(mixed_formats());
                    };
                    if b != block {
                        return Err(mixed_formats());
                    }
                    values.push(v);
                    scales.push(s);
                }
                Ok(Matrix::Fp8 {
                    values: Tensor::cat(&values, axis)?,
                    scales: Tensor::cat(&scales, axis)?,
                    block: *block,
                })
            }
            _ => {
                let dense = parts
                    .iter()
                    .map(|p| match p {
                        Matrix::Dense(t) => Ok(t),
                        Matrix::Fp8 { .. } => Err(mixed_formats()),
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(Matrix::Dense(Tensor::cat(&dense, axis)?))
            }
        }
    }

    /// `[2E, rows, in]` pairs (expert `i`'s gate, then its up) merged into `[E, 2·rows, in]`.
    pub fn merge_pairs(&self) -> Result<Self> {
        let merge = |t: &Tensor| -> Result<Tensor> {
            let (pairs, rows, cols) = t.dims3()?;
            Ok(t.reshape((pairs / 2, 2 * rows, cols))?)
        };
        Ok(match self {
            Matrix::Dense(t) => Matrix::Dense(merge(t)?),
            Matrix::Fp8 {
                values,
                scales,
                block,
            } => Matrix::Fp8 {
                values: merge(values)?,
                scales: merge(scales)?,
                block: *block,
            },
        })
    }

    /// The weights as a dense tensor of `dtype`: for devices and computations the FP8 kernel
    /// does not serve (other devices, gradients). Converts FP8 per call.
    pub fn dense(&self, dtype: DType) -> Result<Tensor> {
        match self {
            Matrix::Dense(t) => Ok(t.clone()),
            Matrix::Fp8 {
                values,
                scales,
                block,
            } => {
                let bytes = values.flatten_all()?.to_vec1::<u8>()?;
                let scale_values = scales.flatten_all()?.to_vec1::<f32>()?;
                let k = *values.dims().last().unwrap_or(&0);
                let rows = bytes.len().checked_div(k).unwrap_or(0);
                let w = Fp8Matrix {
                    values: &bytes,
                    scales: &scale_values,
                    block: *block,
                };
                let mut out = Vec::new();
                w.widen_rows(0..rows, k, &mut out);
                Ok(Tensor::from_vec(out, values.dims(), values.device())?.to_dtype(dtype)?)
            }
        }
    }

    /// `x Wᵀ` for `x` `[…, in]`: FP8 weights on the cpu go to the kernel that widens a few
    /// rows at a time; anything else to [`linear`].
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Matrix::Dense(w) => linear(x, w),
            Matrix::Fp8 {
                values,
                scales,
                block,
            } if x.device().is_cpu() && !x.track_op() && values.rank() == 2 => {
                let x = x.contiguous()?;
                Ok(x.apply_op3_no_bwd(
                    &values.contiguous()?,
                    &scales.contiguous()?,
                    &Fp8Linear { block: *block },
                )?)
            }
            Matrix::Fp8 { .. } => linear(x, &self.dense(x.dtype())?),
        }
    }
}

fn mixed_formats() -> crate::error::EngineError {
    crate::error::EngineError::InvalidInput(
        "the gate, up and down projections of one MLP must share a format (all FP8 or none)".into(),
    )
}

/// The candle op behind [`Matrix::apply`] for FP8 weights on the cpu.
struct Fp8Linear {
    block: usize,
}

impl CustomOp3 for Fp8Linear {
    fn name(&self) -> &'static str {
        "fp8-linear"
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
            candle_core::bail!("fp8-linear expects contiguous weights");
        };
        let (CpuStorage::U8(values), CpuStorage::F32(scales)) = (s2, s3) else {
            candle_core::bail!("fp8-linear: weights must be u8 values with f32 scales");
        };
        let (m, k) = l2.shape().dims2()?;
        if scales[c0..c1].len() != m * k.div_ceil(self.block) {
            candle_core::bail!("fp8-linear: scales do not fit the {m}×{k} weights");
        }
        let w = WeightMatrix::Fp8(Fp8Matrix {
            values: &values[w0..w1],
            scales: &scales[c0..c1],
            block: self.block,
        });
        linear_into_storage(s1, l1, w, m)
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
