//! Attention for a few queries (a decode step) on the cpu, fused: one task per kv head scores
//! that head's query heads against the cached keys, takes the masked softmax and sums the
//! values, reading the cache in place (views of the cache's buffers, nothing copied), the tasks
//! spread over the threads. candle's path for the same thing — two batched products of a few
//! rows with a softmax between — runs single-threaded at these shapes; this one computes the
//! same f32 values up to the order of summation.

use candle_core::{CpuStorage, DType, Layout, Storage, Tensor};
use rayon::prelude::*;

use crate::error::Result;
use crate::ops::softmax_row;

/// Queries per sequence up to which the fused path runs (decode steps, short chunks); longer
/// blocks are matrix–matrix products, which the batched-product path does better.
pub const FEW_QUERIES: usize = 8;

/// `softmax(q kᵀ + mask) v` as `attention::attend` computes it — `q` `[batch, heads, seq, d]`
/// (already scaled), `k` `[batch, kv_heads, keys, d]`, `v` `[batch, kv_heads, keys, dv]`,
/// `mask` `[batch, 1, seq, keys]`, optionally one sink logit per head; `[batch, heads, seq,
/// dv]` — or `None` where this path does not apply: another device, a dtype other than f32, a
/// gradient computation, more than [`FEW_QUERIES`] queries, or a view whose last axis is not
/// contiguous.
pub fn attend_few(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    nkv: usize,
    sinks: Option<&[f32]>,
) -> Result<Option<Tensor>> {
    let tensors = [q, k, v, mask];
    if !q.device().is_cpu()
        || tensors
            .iter()
            .any(|t| t.dtype() != DType::F32 || t.track_op())
    {
        return Ok(None);
    }
    let (batch, nh, seq, d) = q.dims4()?;
    let (keys, dv) = (k.dim(2)?, v.dim(3)?);
    // Shapes that do not fit each other go to the general path, which reports them.
    let fits = k.dims4()? == (batch, nkv, keys, d)
        && v.dims4()? == (batch, nkv, keys, dv)
        && mask.dims4()? == (batch, 1, seq, keys);
    if !fits
        || seq > FEW_QUERIES
        || nkv == 0
        || nh % nkv != 0
        || sinks.is_some_and(|s| s.len() != nh)
    {
        return Ok(None);
    }
    let groups = nh / nkv;
    let guards: Vec<_> = tensors.iter().map(|t| t.storage_and_layout()).collect();
    let views: Vec<Option<View>> = guards.iter().map(|(s, l)| View::of(s, l)).collect();
    let [Some(qv), Some(kv), Some(vv), Some(mv)] = &views[..] else {
        return Ok(None);
    };
    let mut out = vec![0f32; batch * nh * seq * dv];
    let shape = Shape {
        groups,
        seq,
        keys,
        d,
        dv,
    };
    let wide = crate::kernels::avx2_lanes();
    out.par_chunks_mut(groups * seq * dv)
        .enumerate()
        .for_each(|(task, out)| {
            let (b, g) = (task / nkv, task % nkv);
            let views = [qv, kv, vv, mv];
            if wide {
                // SAFETY: `avx2_lanes` checked that the CPU has AVX2.
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    kv_head_avx2(&views, &shape, b, g, sinks, out)
                };
            } else {
                kv_head(&views, &shape, b, g, sinks, out);
            }
        });
    Ok(Some(Tensor::from_vec(
        out,
        (batch, nh, seq, dv),
        q.device(),
    )?))
}

/// The sizes one kv head's task works with.
struct Shape {
    groups: usize,
    seq: usize,
    keys: usize,
    d: usize,
    dv: usize,
}

/// [`kv_head`] compiled for AVX2.
///
/// # Safety
/// The CPU supports AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn kv_head_avx2(
    views: &[&View; 4],
    shape: &Shape,
    b: usize,
    g: usize,
    sinks: Option<&[f32]>,
    out: &mut [f32],
) {
    kv_head(views, shape, b, g, sinks, out);
}

/// The outputs of kv head `g` of sequence `b` (its query heads × queries × `dv`, in `out`):
/// scores against every key, the masked softmax, the weighted sum of values.
#[inline(always)]
fn kv_head(
    [q, k, v, mask]: &[&View; 4],
    shape: &Shape,
    b: usize,
    g: usize,
    sinks: Option<&[f32]>,
    out: &mut [f32],
) {
    let Shape {
        groups,
        seq,
        keys,
        d,
        dv,
    } = *shape;
    let mut scores = vec![0f32; keys];
    let mut probs = vec![0f32; keys];
    for j in 0..groups {
        let h = g * groups + j;
        for s in 0..seq {
            let query = q.row(b, h, s, d);
            for (t, score) in scores.iter_mut().enumerate() {
                *score = dot(query, k.row(b, g, t, d));
            }
            softmax_row(
                &mut probs,
                &scores,
                mask.row(b, 0, s, keys),
                sinks.map(|x| x[h]),
            );
            let row = &mut out[(j * seq + s) * dv..][..dv];
            for (t, &p) in probs.iter().enumerate() {
                if p != 0.0 {
                    add_scaled(row, p, v.row(b, g, t, dv));
                }
            }
        }
    }
}

/// A rank-4 f32 cpu tensor read in place: its values, where it starts, and the strides of its
/// first three axes (the last is contiguous).
struct View<'a> {
    values: &'a [f32],
    start: usize,
    strides: [usize; 3],
}

impl<'a> View<'a> {
    /// The view of `storage` under `layout`, if it is f32 on the cpu, rank 4, with a contiguous
    /// last axis.
    fn of(storage: &'a Storage, layout: &Layout) -> Option<Self> {
        let Storage::Cpu(CpuStorage::F32(values)) = storage else {
            return None;
        };
        let (dims, stride) = (layout.dims(), layout.stride());
        if dims.len() != 4 || (stride[3] != 1 && dims[3] > 1) {
            return None;
        }
        // The furthest value the view reaches must lie in the storage.
        let last = layout.start_offset()
            + (0..4)
                .map(|i| dims[i].saturating_sub(1) * stride[i])
                .sum::<usize>();
        if dims.contains(&0) || last >= values.len() {
            return None;
        }
        Some(Self {
            values,
            start: layout.start_offset(),
            strides: [stride[0], stride[1], stride[2]],
        })
    }

    /// The `len` values at `[a, b, c, 0..len]`.
    fn row(&self, a: usize, b: usize, c: usize, len: usize) -> &'a [f32] {
        let [s0, s1, s2] = self.strides;
        &self.values[self.start + a * s0 + b * s1 + c * s2..][..len]
    }
}

/// `Σ x·y` in eight f32 lanes (so the compiler vectorises it), then the remainder.
#[inline(always)]
fn dot(x: &[f32], y: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (xc, yc) = (x.chunks_exact(8), y.chunks_exact(8));
    let tail: f32 = xc
        .remainder()
        .iter()
        .zip(yc.remainder())
        .map(|(a, b)| a * b)
        .sum();
    for (a, b) in xc.zip(yc) {
        for l in 0..8 {
            lanes[l] += a[l] * b[l];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `out += p · v`.
#[inline(always)]
fn add_scaled(out: &mut [f32], p: f32, v: &[f32]) {
    for (o, &x) in out.iter_mut().zip(v) {
        *o += p * x;
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;
    use crate::ops::tests::max_diff;
    use crate::ops::{masked_softmax, MASKED};

    /// The unfused reference: scores, masked softmax and the weighted sum, one head at a time.
    fn unfused(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: &Tensor,
        nkv: usize,
        sinks: Option<&[f32]>,
    ) -> Tensor {
        let (_, nh, _, _) = q.dims4().unwrap();
        let groups = nh / nkv;
        let heads: Vec<Tensor> = (0..nh)
            .map(|h| {
                let qh = q.narrow(1, h, 1).unwrap().contiguous().unwrap();
                let kh = k.narrow(1, h / groups, 1).unwrap().contiguous().unwrap();
                let vh = v.narrow(1, h / groups, 1).unwrap().contiguous().unwrap();
                let scores = qh.matmul(&kh.t().unwrap()).unwrap();
                let sink = sinks.map(|s| vec![s[h]]);
                let p = masked_softmax(&scores, mask, sink.as_deref()).unwrap();
                p.matmul(&vh).unwrap()
            })
            .collect();
        Tensor::cat(&heads, 1).unwrap()
    }

    fn random(shape: (usize, usize, usize, usize), seed: u64) -> Tensor {
        let n = shape.0 * shape.1 * shape.2 * shape.3;
        let values: Vec<f32> = (0..n)
            .map(|i| ((i as u64 * 2654435761 + seed * 97) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn matches_the_unfused_path_on_awkward_shapes() {
        // (batch, heads, kv heads, queries, keys, d, dv): grouped and not, one key, widths
        // that are not multiples of the 8 lanes, several queries.
        let shapes = [
            (1, 1, 1, 1, 1, 1, 1),
            (1, 4, 4, 1, 17, 5, 7),
            (2, 6, 2, 1, 33, 9, 9),
            (2, 6, 2, 3, 40, 16, 3),
            (1, 8, 1, 8, 64, 128, 128),
            (1, 5, 1, 1, 3, 8, 8),
            (1, 7, 1, 2, 6, 24, 4),
        ];
        for (i, &(batch, nh, nkv, seq, keys, d, dv)) in shapes.iter().enumerate() {
            let q = random((batch, nh, seq, d), i as u64);
            // Keys and values as views of larger buffers (the cache's spare capacity).
            let k = random((batch, nkv, keys + 5, d), 10 + i as u64)
                .narrow(2, 0, keys)
                .unwrap();
            let v = random((batch, nkv, keys + 3, dv), 20 + i as u64)
                .narrow(2, 0, keys)
                .unwrap();
            // Every third key hidden, and in the second sequence the first query sees none.
            let mask: Vec<f32> = (0..batch * seq * keys)
                .map(|at| {
                    let (b, s, t) = (at / (seq * keys), at / keys % seq, at % keys);
                    if t % 3 == 2 || (b == 1 && s == 0) {
                        MASKED
                    } else {
                        0.0
                    }
                })
                .collect();
            let mask = Tensor::from_vec(mask, (batch, 1, seq, keys), &Device::Cpu).unwrap();
            let sink_values: Vec<f32> = (0..nh).map(|h| h as f32 * 0.3 - 0.5).collect();
            for sinks in [None, Some(sink_values.as_slice())] {
                let want = unfused(&q, &k, &v, &mask, nkv, sinks);
                let got = attend_few(&q, &k, &v, &mask, nkv, sinks)
                    .unwrap()
                    .expect("applies");
                assert_eq!(got.dims(), want.dims());
                let diff = max_diff(&got, &want);
                assert!(
                    diff < 1e-5,
                    "shape {i} sinks {}: differs by {diff}",
                    sinks.is_some()
                );
            }
        }
    }

    #[test]
    fn declines_what_it_does_not_serve() {
        let q = random((1, 2, FEW_QUERIES + 1, 4), 1);
        let k = random((1, 2, 9, 4), 2);
        let mask = Tensor::zeros((1, 1, FEW_QUERIES + 1, 9), DType::F32, &Device::Cpu).unwrap();
        assert!(
            attend_few(&q, &k, &k, &mask, 2, None).unwrap().is_none(),
            "too many queries"
        );
        let q1 = random((1, 2, 1, 4), 3).to_dtype(DType::BF16).unwrap();
        let mask1 = mask.narrow(2, 0, 1).unwrap();
        assert!(
            attend_few(&q1, &k, &k, &mask1, 2, None).unwrap().is_none(),
            "bf16"
        );
        let q2 = random((1, 2, 1, 5), 4);
        assert!(
            attend_few(&q2, &k, &k, &mask1, 2, None).unwrap().is_none(),
            "query width 5 against keys of width 4"
        );
    }
}
