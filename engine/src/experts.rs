//! The routed experts of one MoE layer, stored stacked — `gate_up` `[E, 2I, H]` (each expert's
//! gate rows, then its up rows) and `down` `[E, H, I]` — whatever layout the checkpoint uses,
//! and their grouped execution on the cpu: the tokens are sorted by expert once per layer and
//! every expert's product runs in one parallel pass over the threads (the layout a GPU grouped
//! kernel wants too).

use candle_core::{CpuStorage, DType, Storage, Tensor};
use half::f16;
use rayon::prelude::*;

use crate::config::GluActivation;
use crate::config::MoeSpec;
use crate::error::{EngineError, Result};
use crate::kernels::{self, DenseMatrix, Fp8Matrix, Mxfp4Matrix, RowGroup, WeightMatrix};
use crate::layers::SwiGlu;
use crate::matrix::Matrix;
use crate::moe_names::{ExpertLayout, MoeNames};
use crate::routing::Routing;
use crate::weights::Weights;

/// Rows of elementwise work given to one thread at a time: a decode step's few rows stay on
/// the calling thread rather than paying for a hand-off.
const ROWS_PER_TASK: usize = 16;

/// One layer's routed experts.
#[derive(Debug, Clone)]
pub struct RoutedExperts {
    gate_up: Matrix,
    /// `[E, 2I]` biases as f32, read once at load for the grouped path.
    gate_up_bias: Option<Vec<f32>>,
    down: Matrix,
    /// `[E, H]` biases as f32.
    down_bias: Option<Vec<f32>>,
    activation: GluActivation,
    /// Per-expert views of the stacked tensors (no copies), for the general path: other
    /// devices, f32 weights and gradient computations.
    views: Vec<SwiGlu>,
}

/// What the grouped path returns: the experts' weighted sum and, when asked, each
/// (token, slot)'s largest |expert output|.
pub struct GroupedOutput {
    /// `Σ_slot weight · expert(x)` per token, `[tokens, hidden]`, f32.
    pub sum: Tensor,
    /// `[tokens · k]` max |output| of each chosen expert (empty unless asked for).
    pub max_abs: Vec<f32>,
}

impl RoutedExperts {
    /// Loads the experts of the MoE block `block` (`model.layers.{l}.mlp`) in any of the
    /// layouts [`ExpertLayout`] names, stacked.
    pub fn load(
        w: &Weights,
        block: &str,
        spec: &MoeSpec,
        names: MoeNames,
        hidden: usize,
    ) -> Result<Self> {
        let (e, inter) = (spec.num_experts, spec.expert_intermediate_size);
        let fused = format!("{block}.experts.gate_up_proj");
        let (gate_up, down, gate_up_bias, down_bias) =
            if names.layout == ExpertLayout::InterleavedInOut {
                load_interleaved(w, &format!("{block}.experts"), e, inter, hidden)?
            } else if w.contains(&fused) {
                let gate_up = w.get(&fused, &[e, 2 * inter, hidden])?;
                let down = w.get(&format!("{block}.experts.down_proj"), &[e, hidden, inter])?;
                (Matrix::Dense(gate_up), Matrix::Dense(down), None, None)
            } else {
                let [g, u, d] = names.expert_proj;
                let name = |i: usize, p: &str| format!("{block}.experts.{i}.{p}.weight");
                let gate_up_names: Vec<String> =
                    (0..e).flat_map(|i| [name(i, g), name(i, u)]).collect();
                let down_names: Vec<String> = (0..e).map(|i| name(i, d)).collect();
                let gate_up = w
                    .get_stacked_matrix(&gate_up_names, &[inter, hidden])?
                    .merge_pairs()?;
                let down = w.get_stacked_matrix(&down_names, &[hidden, inter])?;
                (gate_up, down, None, None)
            };
        let activation = spec.expert_activation;
        let views = (0..e)
            .map(|i| {
                let bias = |b: &Option<Tensor>| b.as_ref().map(|b| b.get(i)).transpose();
                Ok(
                    SwiGlu::from_fused(gate_up.get(i)?, down.get(i)?)?.with_biases(
                        bias(&gate_up_bias)?,
                        bias(&down_bias)?,
                        activation,
                    ),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            gate_up,
            gate_up_bias: bias_values(&gate_up_bias)?,
            down,
            down_bias: bias_values(&down_bias)?,
            activation,
            views,
        })
    }

    /// Expert `e` as an MLP (views of the stacked weights).
    pub fn expert(&self, e: usize) -> &SwiGlu {
        &self.views[e]
    }

    /// Number of weight values in one expert.
    pub fn params_per_expert(&self) -> usize {
        self.views.first().map_or(0, SwiGlu::num_params)
    }

    /// Whether [`RoutedExperts::forward_grouped`] serves `x`: on the cpu, with bf16 or f16
    /// weights, outside gradient computations.
    pub fn grouped_applies(&self, x: &Tensor) -> bool {
        let kernel_format = match &self.gate_up {
            Matrix::Dense(t) => matches!(t.dtype(), DType::BF16 | DType::F16),
            Matrix::Fp8 { .. } | Matrix::Mxfp4 { .. } => true,
        };
        x.device().is_cpu() && kernel_format && !x.track_op()
    }

    /// Runs every token's chosen experts on `x` `[tokens, hidden]`: tokens sorted by expert,
    /// the gate/up products of all experts in one grouped pass, the activation, the down
    /// products in a second grouped pass, and the weighted sum per token in f32. Intermediate
    /// results are rounded to `x`'s dtype where the general path's bf16/f16 operations round
    /// them, so both paths compute the same thing.
    pub fn forward_grouped(
        &self,
        x: &Tensor,
        routing: &Routing,
        want_max_abs: bool,
    ) -> Result<GroupedOutput> {
        match x.dtype() {
            DType::BF16 => self.grouped_as::<Bf16Rounding>(x, routing, want_max_abs),
            DType::F16 => self.grouped_as::<F16Rounding>(x, routing, want_max_abs),
            _ => self.grouped_as::<NoRounding>(x, routing, want_max_abs),
        }
    }

    /// [`RoutedExperts::forward_grouped`] with intermediate results rounded by `R`.
    fn grouped_as<R: Rounding>(
        &self,
        x: &Tensor,
        routing: &Routing,
        want_max_abs: bool,
    ) -> Result<GroupedOutput> {
        let &[e, two_i, hidden] = self.gate_up.dims().as_slice() else {
            return Err(EngineError::InvalidInput(
                "stacked expert weights must be [experts, 2·intermediate, hidden]".into(),
            ));
        };
        let inter = two_i / 2;
        let tokens = x.dim(0)?;
        let k = routing.top_k;
        let round = R::round;
        let xs: Vec<f32> = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;

        // Slots sorted by expert (a counting sort), and each slot's row in that order.
        let mut starts = vec![0usize; e + 1];
        for &id in &routing.ids {
            starts[id as usize + 1] += 1;
        }
        for i in 0..e {
            starts[i + 1] += starts[i];
        }
        let mut next = starts.clone();
        let mut row_of_slot = vec![0usize; routing.ids.len()];
        let mut slot_of_row = vec![0usize; routing.ids.len()];
        for (slot, &id) in routing.ids.iter().enumerate() {
            let row = next[id as usize];
            next[id as usize] += 1;
            row_of_slot[slot] = row;
            slot_of_row[row] = slot;
        }
        let rows = routing.ids.len();
        let mut xg = Scratch::overwritten(rows * hidden);
        xg.par_chunks_mut(hidden)
            .zip(slot_of_row.par_iter())
            .with_min_len(ROWS_PER_TASK)
            .for_each(|(dst, &slot)| {
                let t = slot / k;
                dst.copy_from_slice(&xs[t * hidden..(t + 1) * hidden]);
            });

        let gate_up = StackedStorage::of(&self.gate_up)?;
        let down = StackedStorage::of(&self.down)?;

        let mut gu = Scratch::overwritten(rows * two_i);
        let gate_up_groups = expert_groups(&gate_up, &starts);
        kernels::matmul_t_grouped(&xg, hidden, two_i, &gate_up_groups, &mut gu);
        let gu_bias = &self.gate_up_bias;
        let mut h = Scratch::overwritten(rows * inter);
        h.par_chunks_mut(inter)
            .zip(gu.par_chunks(two_i))
            .zip(slot_of_row.par_iter())
            .with_min_len(ROWS_PER_TASK)
            .for_each(|((h, gu), &slot)| {
                let bias = gu_bias
                    .as_ref()
                    .map(|b| &b[routing.ids[slot] as usize * two_i..][..two_i]);
                let at = |j: usize| round(round(gu[j]) + bias.map_or(0.0, |b| b[j]));
                for (j, out) in h.iter_mut().enumerate() {
                    *out = glu(self.activation, at(j), at(inter + j), round);
                }
            });
        let mut y = Scratch::overwritten(rows * hidden);
        let down_groups = expert_groups(&down, &starts);
        kernels::matmul_t_grouped(&h, inter, hidden, &down_groups, &mut y);
        let down_bias = &self.down_bias;
        y.par_chunks_mut(hidden)
            .zip(slot_of_row.par_iter())
            .with_min_len(ROWS_PER_TASK)
            .for_each(|(y, &slot)| {
                let bias = down_bias
                    .as_ref()
                    .map(|b| &b[routing.ids[slot] as usize * hidden..][..hidden]);
                for (j, v) in y.iter_mut().enumerate() {
                    *v = round(round(*v) + bias.map_or(0.0, |b| b[j]));
                }
            });
        let max_abs = if want_max_abs {
            row_of_slot
                .iter()
                .map(|&r| {
                    y[r * hidden..(r + 1) * hidden]
                        .iter()
                        .fold(0f32, |m, v| m.max(v.abs()))
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut sum = vec![0f32; tokens * hidden];
        sum.par_chunks_mut(hidden)
            .enumerate()
            .with_min_len(ROWS_PER_TASK)
            .for_each(|(t, out)| {
                let slots = t * k..(t + 1) * k;
                for (&r, &wt) in row_of_slot[slots.clone()]
                    .iter()
                    .zip(&routing.weights[slots])
                {
                    for (o, v) in out.iter_mut().zip(&y[r * hidden..(r + 1) * hidden]) {
                        *o += v * wt;
                    }
                }
            });
        Ok(GroupedOutput {
            sum: Tensor::from_vec(sum, (tokens, hidden), x.device())?,
            max_abs,
        })
    }
}

thread_local! {
    /// Buffers the grouped path reuses from layer to layer (fresh multi-megabyte allocations
    /// would be page-faulted in again at every layer).
    static SCRATCH_POOL: std::cell::RefCell<Vec<Vec<f32>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A buffer from this thread's pool, returned to it when dropped.
struct Scratch(Vec<f32>);

impl Scratch {
    /// `len` values that the caller overwrites entirely: left as the pool had them (always
    /// initialised), so no time is spent zeroing.
    fn overwritten(len: usize) -> Self {
        let mut v = SCRATCH_POOL
            .with(|p| p.borrow_mut().pop())
            .unwrap_or_default();
        v.resize(len, 0.0);
        Self(v)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.0);
        SCRATCH_POOL.with(|p| {
            let mut pool = p.borrow_mut();
            if pool.len() < 4 {
                pool.push(v);
            }
        });
    }
}

impl std::ops::Deref for Scratch {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0
    }
}

impl std::ops::DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.0
    }
}

/// One row group per expert with tokens: expert `i`'s rows `starts[i]..starts[i + 1]` and its
/// weights.
fn expert_groups<'a>(w: &'a StackedStorage<'_>, starts: &[usize]) -> Vec<RowGroup<'a>> {
    starts
        .windows(2)
        .enumerate()
        .filter(|(_, s)| s[1] > s[0])
        .map(|(i, s)| RowGroup {
            rows: s[0]..s[1],
            w: w.matrix(i),
        })
        .collect()
}

/// A bias tensor `[E, width]` as f32 values.
fn bias_values(bias: &Option<Tensor>) -> Result<Option<Vec<f32>>> {
    bias.as_ref()
        .map(|b| Ok(b.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?))
        .transpose()
}

/// `act(gate, up)` for one value pair, rounding where the general path's ops round.
#[inline(always)]
fn glu(activation: GluActivation, gate: f32, up: f32, round: impl Fn(f32) -> f32) -> f32 {
    match activation {
        GluActivation::Silu => round(round(gate / (1.0 + (-gate).exp())) * up),
        GluActivation::ClampedSwiGlu { alpha, limit } => {
            let gate = gate.min(limit);
            let up = up.clamp(-limit, limit);
            let glu = round(gate * round(1.0 / (1.0 + (-round(gate * alpha)).exp())));
            round(round(up + 1.0) * glu)
        }
    }
}

/// Rounding an f32 to what the activations' dtype can hold, chosen once per call so the
/// per-element loops are monomorphic.
trait Rounding {
    fn round(v: f32) -> f32;
}

/// To the nearest bf16 (ties to even), as candle's bf16 ops round.
struct Bf16Rounding;

impl Rounding for Bf16Rounding {
    #[inline(always)]
    fn round(v: f32) -> f32 {
        let bits = v.to_bits();
        if v.is_nan() {
            return v;
        }
        let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) & 0xffff_0000;
        f32::from_bits(rounded)
    }
}

/// To the nearest f16.
struct F16Rounding;

impl Rounding for F16Rounding {
    #[inline(always)]
    fn round(v: f32) -> f32 {
        f16::from_f32(v).to_f32()
    }
}

/// f32 activations: nothing to round.
struct NoRounding;

impl Rounding for NoRounding {
    #[inline(always)]
    fn round(v: f32) -> f32 {
        v
    }
}

/// Read locks on a stacked cpu weight `[E, rows, k]` (16-bit values, or compressed values and
/// their scales), handing out one expert's matrix at a time.
struct StackedStorage<'a> {
    values: LockedSlice<'a>,
    /// The scales of compressed values.
    scales: Option<LockedSlice<'a>>,
    /// FP8's block (`None`: MXFP4 or dense).
    fp8_block: Option<usize>,
    /// Stored values (or bytes) of one expert.
    per_expert: usize,
    /// Scales of one expert.
    scales_per_expert: usize,
}

/// A read lock on a contiguous cpu tensor and where its values lie in the storage.
struct LockedSlice<'a> {
    guard: std::sync::RwLockReadGuard<'a, Storage>,
    range: std::ops::Range<usize>,
}

impl<'a> LockedSlice<'a> {
    fn of(t: &'a Tensor) -> Result<Self> {
        let (guard, layout) = t.storage_and_layout();
        let range = layout
            .contiguous_offsets()
            .map(|(a, b)| a..b)
            .ok_or_else(|| {
                EngineError::InvalidInput("stacked expert weights must be contiguous".into())
            })?;
        Ok(Self { guard, range })
    }

    /// Values `start..start + len` (relative to the tensor).
    fn at(&self, start: usize, len: usize) -> std::ops::Range<usize> {
        self.range.start + start..self.range.start + start + len
    }
}

impl<'a> StackedStorage<'a> {
    fn of(m: &'a Matrix) -> Result<Self> {
        let per = |t: &Tensor| t.dims().iter().skip(1).product::<usize>();
        Ok(match m {
            Matrix::Dense(t) => Self {
                values: LockedSlice::of(t)?,
                scales: None,
                fp8_block: None,
                per_expert: per(t),
                scales_per_expert: 0,
            },
            Matrix::Fp8 {
                values: v,
                scales: s,
                block,
            } => Self::compressed(v, s, Some(*block))?,
            Matrix::Mxfp4 {
                blocks: v,
                scales: s,
            } => Self::compressed(v, s, None)?,
        })
    }

    fn compressed(
        values: &'a Tensor,
        scales: &'a Tensor,
        fp8_block: Option<usize>,
    ) -> Result<Self> {
        let per = |t: &Tensor| t.dims().iter().skip(1).product::<usize>();
        Ok(Self {
            values: LockedSlice::of(values)?,
            scales: Some(LockedSlice::of(scales)?),
            fp8_block,
            per_expert: per(values),
            scales_per_expert: per(scales),
        })
    }

    /// Expert `i`'s weight matrix.
    fn matrix(&self, i: usize) -> WeightMatrix<'_> {
        let at = self.values.at(i * self.per_expert, self.per_expert);
        let scales = self.scales.as_ref().map(|s| {
            let sat = s.at(i * self.scales_per_expert, self.scales_per_expert);
            (&*s.guard, sat)
        });
        match (&*self.values.guard, scales, self.fp8_block) {
            (Storage::Cpu(CpuStorage::BF16(v)), None, _) => DenseMatrix::Bf16(&v[at]).into(),
            (Storage::Cpu(CpuStorage::F16(v)), None, _) => DenseMatrix::F16(&v[at]).into(),
            (
                Storage::Cpu(CpuStorage::U8(v)),
                Some((Storage::Cpu(CpuStorage::F32(s)), sat)),
                Some(block),
            ) => Fp8Matrix {
                values: &v[at],
                scales: &s[sat],
                block,
            }
            .into(),
            (
                Storage::Cpu(CpuStorage::U8(v)),
                Some((Storage::Cpu(CpuStorage::U8(s)), sat)),
                None,
            ) => Mxfp4Matrix {
                blocks: &v[at],
                scales: &s[sat],
            }
            .into(),
            _ => unreachable!("grouped_applies checked for 16-bit or compressed cpu weights"),
        }
    }
}

/// Loads GPT-OSS experts (see [`ExpertLayout::InterleavedInOut`]) into the stacked
/// gate-then-up layout, with their biases.
#[allow(clippy::type_complexity)]
fn load_interleaved(
    w: &Weights,
    prefix: &str,
    e: usize,
    inter: usize,
    hidden: usize,
) -> Result<(Matrix, Matrix, Option<Tensor>, Option<Tensor>)> {
    let gate_up_name = format!("{prefix}.gate_up_proj");
    let down_name = format!("{prefix}.down_proj");
    // Both end up [E, out, in]: MXFP4 is stored that way (and stays compressed), dense
    // weights are stored [E, in, out].
    let (gate_up, down) = if w.contains(&format!("{gate_up_name}_blocks")) {
        (
            w.get_mxfp4(&gate_up_name, [e, 2 * inter, hidden])?,
            w.get_mxfp4(&down_name, [e, hidden, inter])?,
        )
    } else {
        (
            Matrix::Dense(
                w.get(&gate_up_name, &[e, hidden, 2 * inter])?
                    .transpose(1, 2)?
                    .contiguous()?,
            ),
            Matrix::Dense(
                w.get(&down_name, &[e, inter, hidden])?
                    .transpose(1, 2)?
                    .contiguous()?,
            ),
        )
    };
    let gate_up_bias = w.get(&format!("{gate_up_name}_bias"), &[e, 2 * inter])?;
    let down_bias = w.get(&format!("{down_name}_bias"), &[e, hidden])?;
    let even: Vec<u32> = (0..inter as u32).map(|i| 2 * i).collect();
    let odd: Vec<u32> = (0..inter as u32).map(|i| 2 * i + 1).collect();
    // Gate rows first, then up rows: the order the stacked layout uses.
    let order = Tensor::new([even, odd].concat().as_slice(), w.device())?;
    Ok((
        gate_up.select_rows(&order)?,
        down,
        Some(gate_up_bias.index_select(&order, 1)?),
        Some(down_bias),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelConfig;
    use candle_core::Device;

    /// The grouped path against the plain one it replaces: each chosen expert run on its
    /// token through candle ops (the per-expert views), weighted and summed in f32. Both
    /// round the products to bf16; they differ only in how the activation rounds inside
    /// (candle's bf16 op chain vs one f32 evaluation), hence the bf16-level tolerance.
    fn grouped_matches_each_expert(fixture: &str) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures")
            .join(fixture);
        let config = ModelConfig::from_file(&dir.join("config.json")).unwrap();
        let w = Weights::open(&dir, &Device::Cpu, DType::BF16)
            .unwrap()
            .with_fp8_block(config.fp8_block);
        let names = MoeNames::of(config.architecture);
        let layer = config.moe_layers()[0];
        let block = format!("model.layers.{layer}.{}", names.block);
        let experts =
            RoutedExperts::load(&w, &block, &config.moe, names, config.hidden_size).unwrap();
        assert_eq!(
            matches!(experts.gate_up, Matrix::Fp8 { .. }),
            config.fp8_block.is_some(),
            "FP8 experts stay FP8"
        );
        assert_eq!(
            matches!(experts.gate_up, Matrix::Mxfp4 { .. }),
            fixture.ends_with("mxfp4"),
            "MXFP4 experts stay MXFP4"
        );
        let (tokens, k, e, h) = (
            7,
            config.moe.top_k,
            config.moe.num_experts,
            config.hidden_size,
        );
        let xs: Vec<f32> = (0..tokens * h)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect();
        let x = Tensor::from_vec(xs, (tokens, h), &Device::Cpu)
            .unwrap()
            .to_dtype(DType::BF16)
            .unwrap();
        // Token t takes experts t, t+1, … (mod E): every expert gets several tokens.
        let ids: Vec<u32> = (0..tokens)
            .flat_map(|t| (0..k).map(move |j| ((t + j) % e) as u32))
            .collect();
        let weights: Vec<f32> = (0..tokens * k)
            .map(|s| 0.2 + 0.1 * (s % 3) as f32)
            .collect();
        let routing = Routing {
            top_k: k,
            ids: ids.clone(),
            weights: weights.clone(),
        };
        let got = experts.forward_grouped(&x, &routing, true).unwrap();
        let got_sum: Vec<f32> = got.sum.flatten_all().unwrap().to_vec1().unwrap();
        let mut want = vec![0f32; tokens * h];
        let mut want_max = vec![0f32; tokens * k];
        for s in 0..tokens * k {
            let t = s / k;
            let y: Vec<f32> = experts
                .expert(ids[s] as usize)
                .forward(&x.narrow(0, t, 1).unwrap())
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            want_max[s] = y.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (o, v) in want[t * h..(t + 1) * h].iter_mut().zip(&y) {
                *o += v * weights[s];
            }
        }
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = got_sum
            .iter()
            .zip(&want)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            scale > 0.0 && worst <= 2e-2 * scale,
            "{fixture}: {worst} of {scale}"
        );
        for (a, b) in got.max_abs.iter().zip(&want_max) {
            assert!(
                (a - b).abs() <= 2e-2 * b.abs().max(1e-3),
                "{fixture}: peak {a} vs {b}"
            );
        }
    }

    #[test]
    fn grouped_experts_match_per_expert_candle_ops() {
        // Per-expert tensors (Qwen3-MoE), and GPT-OSS's interleaved layout with biases and
        // its clamped SwiGLU.
        grouped_matches_each_expert("qwen3_moe_bf16");
        grouped_matches_each_expert("gpt_oss");
        // FP8 experts, kept compressed: the grouped kernel widens rows per task, the
        // per-expert views go through the FP8 linear op.
        grouped_matches_each_expert("qwen3_moe_fp8");
        // MXFP4 experts, kept compressed too.
        grouped_matches_each_expert("gpt_oss_mxfp4");
    }

    #[test]
    fn bf16_rounding_matches_the_half_crate() {
        let mut v = 1.0e-30f32;
        let specials = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            f32::MAX,
            f32::MIN_POSITIVE,
            3.3895314e38,
        ];
        for x in specials.into_iter().chain(std::iter::from_fn(|| {
            v *= -1.37;
            (v.abs() < 1e30).then_some(v)
        })) {
            let want = half::bf16::from_f32(x).to_f32();
            assert_eq!(Bf16Rounding::round(x).to_bits(), want.to_bits(), "{x}");
        }
        assert!(Bf16Rounding::round(f32::NAN).is_nan());
    }
}
