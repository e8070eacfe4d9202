//! The micro-kernels for products with many activation rows (prefill), on AVX-512 and, in
//! [`run_avx2`], on AVX2: the outer-product
//! form, at the f32 FMA rate. A group's activations are transposed once into panels of 16
//! rows, so one vector holds sixteen rows' values at one step of `k`; a chunk of
//! `WR` weight rows is widened to f32 into an L1 buffer once and reused by every vector of
//! rows; each FMA multiplies one broadcast weight by sixteen activations. Every accumulator is
//! an output value, so nothing is reduced across lanes, and the weights are read from memory
//! once per task.
//!
//! Measured on this project's Xeon with AVX512-BF16 and no AMX (BENCHMARKS.md, `cpu_peak.c`):
//! `vdpbf16ps` issues at half the rate of f32 FMA there, so this f32 kernel is about twice as
//! fast as the row-tiled `vdpbf16ps` one wherever a group has enough rows to fill a vector. It
//! multiplies the activations as given (f32), like the other f32-FMA paths.
//!
//! [`run_bf16_pairs`] is the same outer product with `vdpbf16ps`: bf16 weight pairs broadcast
//! against pairs of sixteen rows, no widening. On an AMD EPYC (Zen 5-class) core, where
//! `vdpbf16ps` runs at full width, it is 1.6–1.9 × the f32 kernel for 128–512 rows; it serves
//! bf16 weights on every AVX512-BF16 CPU (`MOESCOPE_BCAST_BF16=0` turns it off for A/B runs).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use super::elem::WeightElem;
#[cfg(target_arch = "x86_64")]
use super::tiles::Block;

/// Activation rows per vector.
const LANES: usize = 16;
/// Values of the shared dimension widened per weight chunk: `WR × KC` f32 stay in L1.
#[cfg(target_arch = "x86_64")]
const KC: usize = 128;
/// Weight rows per micro-tile (accumulators in registers: one per weight row).
#[cfg(target_arch = "x86_64")]
const WR: usize = 24;

/// Fewest rows for [`run_avx2`] without a measurement: on an AMD Zen 3 core the per-shape
/// measurements on a Qwen3-shaped model put the attention projections and 768 → 2048 at 48
/// rows, the LM head at 24 and the experts' 2048 → 1536 at 192 (BENCHMARKS.md).
pub const MIN_ROWS_AVX2: usize = if cfg!(target_arch = "x86_64") {
    48
} else {
    usize::MAX
};

/// Fewest rows of a group for which this kernel beats the row-tiled ones (fewer rows leave
/// most of a vector's lanes idle); it exists on x86-64 only.
pub const MIN_ROWS: usize = if cfg!(target_arch = "x86_64") {
    12
} else {
    usize::MAX
};

/// The rows `x` (`[n, k]`) as panels of 16 rows, each transposed: `[n_pad / 16, k, 16]`
/// (`n_pad` = `n` rounded up to 16, the padding zero), so the kernel reads one panel
/// sequentially. The panels are spread over the threads.
pub fn transpose_rows(x: &[f32], n: usize, k: usize) -> Vec<f32> {
    let n_pad = n.next_multiple_of(LANES);
    let mut out = vec![0f32; k * n_pad];
    if k == 0 {
        return out;
    }
    out.par_chunks_mut(k * LANES)
        .enumerate()
        .for_each(|(v, panel)| {
            for (lane, row) in x.chunks_exact(k).skip(v * LANES).take(LANES).enumerate() {
                for (t, &value) in row.iter().enumerate() {
                    panel[t * LANES + lane] = value;
                }
            }
        });
    out
}

/// Computes `block` from `xt` (the block's rows in panels, as [`transpose_rows`] lays them
/// out).
///
/// # Safety
/// The CPU supports AVX-512 F and BW; `xt` holds the `[n_pad / 16, k, 16]` panels of the block's rows, `w` `[m, k]`,
/// `block.out` `[n, m]`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
pub unsafe fn run<W: WeightElem>(xt: &[f32], w: &[W], block: &Block) {
    let vectors = block.n.div_ceil(LANES);
    let mut acc = vec![0f32; vectors * WR * LANES];
    let mut wf = [0f32; WR * KC];
    let mut j = block.cols.start;
    while j + WR <= block.cols.end {
        tile::<W, WR>(xt, w, block, j, &mut wf, &mut acc);
        j += WR;
    }
    while j + 8 <= block.cols.end {
        tile::<W, 8>(xt, w, block, j, &mut wf, &mut acc);
        j += 8;
    }
    while j < block.cols.end {
        tile::<W, 1>(xt, w, block, j, &mut wf, &mut acc);
        j += 1;
    }
}

/// Output columns `j..j + R` for every row of the block.
// The register tile is indexed by weight row; iterators would hide that.
#[allow(clippy::needless_range_loop)]
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn tile<W: WeightElem, const R: usize>(
    xt: &[f32],
    w: &[W],
    block: &Block,
    j: usize,
    wf: &mut [f32; WR * KC],
    acc: &mut [f32],
) {
    let Block { n, k, .. } = *block;
    let n_pad = n.next_multiple_of(LANES);
    let vectors = n_pad / LANES;
    let mut t0 = 0;
    while t0 < k {
        let kc = KC.min(k - t0);
        // Widen this chunk of the R weight rows once; every vector of rows reuses it.
        for r in 0..R {
            let src = w.as_ptr().add((j + r) * k + t0);
            let dst = wf.as_mut_ptr().add(r * KC);
            let mut t = 0;
            while t + LANES <= kc {
                _mm512_storeu_ps(dst.add(t), W::load16(src.add(t)));
                t += LANES;
            }
            while t < kc {
                *dst.add(t) = (*src.add(t)).to_f32();
                t += 1;
            }
        }
        for v in 0..vectors {
            let saved = acc.as_mut_ptr().add(v * WR * LANES);
            let mut a = [_mm512_setzero_ps(); R];
            if t0 > 0 {
                for r in 0..R {
                    a[r] = _mm512_loadu_ps(saved.add(r * LANES));
                }
            }
            let xp = xt.as_ptr().add((v * k + t0) * LANES);
            let wp = wf.as_ptr();
            for t in 0..kc {
                let xv = _mm512_loadu_ps(xp.add(t * LANES));
                for r in 0..R {
                    a[r] = _mm512_fmadd_ps(_mm512_set1_ps(*wp.add(r * KC + t)), xv, a[r]);
                }
            }
            for r in 0..R {
                _mm512_storeu_ps(saved.add(r * LANES), a[r]);
            }
        }
        t0 += kc;
    }
    store::<R>(acc, block, j);
}

/// Writes a tile's accumulators to the output: `acc[v][r][lane]` is `out[v·16 + lane, j + r]`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn store<const R: usize>(acc: &[f32], block: &Block, j: usize) {
    let Block { n, m, .. } = *block;
    for v in 0..n.div_ceil(LANES) {
        let saved = acc.as_ptr().add(v * WR * LANES);
        for lane in 0..LANES.min(n - v * LANES) {
            let row = block.out.add((v * LANES + lane) * m + j);
            for r in 0..R {
                *row.add(r) = *saved.add(r * LANES + lane);
            }
        }
    }
}

/// Weight rows per AVX2 micro-tile: 6 weight rows × 2 vectors of 8 rows = 12 accumulators,
/// with two activation vectors and one broadcast, 15 of the 16 `ymm` registers.
#[cfg(target_arch = "x86_64")]
const WR_AVX2: usize = 6;
/// Steps of `k` per AVX2 chunk.
#[cfg(target_arch = "x86_64")]
const KC_AVX2: usize = 64;

/// [`run`] on AVX2 + FMA (no AVX-512): the same panels of 16 rows, each step two 8-lane
/// vectors against six broadcast weights, twelve FMAs per eight loads. Chunks of 64 steps keep
/// the chunk of every panel in L1 for up to 128 rows (`kernel_bench` on an AMD Zen 3 core, one
/// thread, 2048 → 768: 62–68 GFLOP/s of its 100 against 50–54 for the row-tiled AVX2 kernel;
/// chunks of 128 steps gave 53, of 32 steps 53–62).
///
/// # Safety
/// The CPU supports AVX2, FMA and F16C; the slices are as for [`run`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn run_avx2<W: WeightElem>(xt: &[f32], w: &[W], block: &Block) {
    let vectors = block.n.div_ceil(LANES);
    let mut acc = vec![0f32; vectors * WR * LANES];
    let mut wf = [0f32; WR * KC];
    let mut j = block.cols.start;
    while j + WR_AVX2 <= block.cols.end {
        tile_avx2::<W, WR_AVX2>(xt, w, block, j, &mut wf, &mut acc);
        j += WR_AVX2;
    }
    while j + 2 <= block.cols.end {
        tile_avx2::<W, 2>(xt, w, block, j, &mut wf, &mut acc);
        j += 2;
    }
    while j < block.cols.end {
        tile_avx2::<W, 1>(xt, w, block, j, &mut wf, &mut acc);
        j += 1;
    }
}

/// Output columns `j..j + R` for every row of the block, on AVX2.
#[allow(clippy::needless_range_loop)]
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn tile_avx2<W: WeightElem, const R: usize>(
    xt: &[f32],
    w: &[W],
    block: &Block,
    j: usize,
    wf: &mut [f32; WR * KC],
    acc: &mut [f32],
) {
    const HALF: usize = LANES / 2;
    let Block { n, k, .. } = *block;
    let vectors = n.div_ceil(LANES);
    let mut t0 = 0;
    while t0 < k {
        let kc = KC_AVX2.min(k - t0);
        for r in 0..R {
            let src = w.as_ptr().add((j + r) * k + t0);
            let dst = wf.as_mut_ptr().add(r * KC);
            let mut t = 0;
            while t + HALF <= kc {
                _mm256_storeu_ps(dst.add(t), W::load8(src.add(t)));
                t += HALF;
            }
            while t < kc {
                *dst.add(t) = (*src.add(t)).to_f32();
                t += 1;
            }
        }
        for v in 0..vectors {
            let saved = acc.as_mut_ptr().add(v * WR * LANES);
            let mut lo = [_mm256_setzero_ps(); R];
            let mut hi = [_mm256_setzero_ps(); R];
            if t0 > 0 {
                for r in 0..R {
                    lo[r] = _mm256_loadu_ps(saved.add(r * LANES));
                    hi[r] = _mm256_loadu_ps(saved.add(r * LANES + HALF));
                }
            }
            let xp = xt.as_ptr().add((v * k + t0) * LANES);
            let wp = wf.as_ptr();
            for t in 0..kc {
                let x_lo = _mm256_loadu_ps(xp.add(t * LANES));
                let x_hi = _mm256_loadu_ps(xp.add(t * LANES + HALF));
                for r in 0..R {
                    let b = _mm256_broadcast_ss(&*wp.add(r * KC + t));
                    lo[r] = _mm256_fmadd_ps(b, x_lo, lo[r]);
                    hi[r] = _mm256_fmadd_ps(b, x_hi, hi[r]);
                }
            }
            for r in 0..R {
                _mm256_storeu_ps(saved.add(r * LANES), lo[r]);
                _mm256_storeu_ps(saved.add(r * LANES + HALF), hi[r]);
            }
        }
        t0 += kc;
    }
    store::<R>(acc, block, j);
}

/// Fewest rows for [`run_bf16_pairs`]: with one vector of rows (16) the f32 kernel was faster
/// (`kernel_bench` on an AMD EPYC with AVX512-BF16: 0.49 vs 0.56–0.63 ms at 16 rows; from 24
/// rows on the pairs win, 1.1–1.9 ×).
pub const PAIRS_MIN_ROWS: usize = 17;

/// The rows `x` (`[n, k]`) rounded to bf16 and laid out for [`run_bf16_pairs`]: panels of 16
/// rows, `[n_pad / 16, k_pad / 2, 16]` 32-bit words, each word two consecutive bf16 values of
/// one row (`k_pad` = `k` rounded up to even, the padding zero).
pub fn transpose_rows_bf16_pairs(x: &[f32], n: usize, k: usize) -> Vec<u32> {
    let (n_pad, pairs) = (n.next_multiple_of(LANES), k.div_ceil(2));
    let mut out = vec![0u32; pairs * n_pad];
    if k == 0 {
        return out;
    }
    let bits = |v: f32| u32::from(half::bf16::from_f32(v).to_bits());
    out.par_chunks_mut(pairs * LANES)
        .enumerate()
        .for_each(|(v, panel)| {
            for (lane, row) in x.chunks_exact(k).skip(v * LANES).take(LANES).enumerate() {
                for (p, pair) in row.chunks(2).enumerate() {
                    let hi = pair.get(1).map_or(0, |&b| bits(b));
                    panel[p * LANES + lane] = bits(pair[0]) | (hi << 16);
                }
            }
        });
    out
}

/// [`run`] for bf16 weights on CPUs with AVX512-BF16: each `vdpbf16ps` multiplies one broadcast
/// pair of a weight row by the pairs of sixteen activation rows, so the weights are used as
/// stored (no widening) at the bf16 dot-product rate — twice the f32 FMA rate on cores that
/// run it at full width (AMD Zen 4/5), the same rate on the Xeons seen so far. Activations
/// are rounded to bf16, as in the row-tiled `vdpbf16ps` kernel.
///
/// # Safety
/// The CPU supports AVX-512 F, BW and BF16; `xp` holds the panels of the block's rows as
/// [`transpose_rows_bf16_pairs`] lays them out, `w` `[m, k]`, `block.out` `[n, m]`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16,avx2,fma")]
pub unsafe fn run_bf16_pairs(xp: &[u32], w: &[half::bf16], block: &Block) {
    let vectors = block.n.div_ceil(LANES);
    let mut acc = vec![0f32; vectors * WR * LANES];
    let mut j = block.cols.start;
    while j + WR <= block.cols.end {
        tile_bf16_pairs::<WR>(xp, w, block, j, &mut acc);
        j += WR;
    }
    while j + 8 <= block.cols.end {
        tile_bf16_pairs::<8>(xp, w, block, j, &mut acc);
        j += 8;
    }
    while j < block.cols.end {
        tile_bf16_pairs::<1>(xp, w, block, j, &mut acc);
        j += 1;
    }
}

/// Output columns `j..j + R` for every row of the block, from bf16 pairs.
#[allow(clippy::needless_range_loop)]
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn tile_bf16_pairs<const R: usize>(
    xp: &[u32],
    w: &[half::bf16],
    block: &Block,
    j: usize,
    acc: &mut [f32],
) {
    let Block { n, k, .. } = *block;
    let pairs = k.div_ceil(2);
    let whole = k / 2;
    let vectors = n.div_ceil(LANES);
    // A chunk of the R weight rows as 32-bit pairs, pair-major (`wb[p · R + r]`), so the
    // inner loop broadcasts each from one pointer at fixed offsets; an odd `k` ends with a
    // half pair, padded with zero.
    let mut wb = [0i32; WR * KC / 2];
    let mut p0 = 0;
    while p0 < pairs {
        let pc = (KC / 2).min(pairs - p0);
        for r in 0..R {
            let row = w.as_ptr().add((j + r) * k);
            for p in 0..pc {
                let q = p0 + p;
                wb[p * R + r] = if q < whole {
                    std::ptr::read_unaligned(row.add(2 * q).cast::<i32>())
                } else {
                    i32::from((*row.add(2 * q)).to_bits())
                };
            }
        }
        for v in 0..vectors {
            let saved = acc.as_mut_ptr().add(v * WR * LANES);
            let mut a = [_mm512_setzero_ps(); R];
            if p0 > 0 {
                for r in 0..R {
                    a[r] = _mm512_loadu_ps(saved.add(r * LANES));
                }
            }
            let xv_at = xp.as_ptr().add((v * pairs + p0) * LANES);
            let wp = wb.as_ptr();
            for p in 0..pc {
                let xv: __m512bh =
                    std::mem::transmute(_mm512_loadu_si512(xv_at.add(p * LANES).cast()));
                for r in 0..R {
                    let wv: __m512bh = std::mem::transmute(_mm512_set1_epi32(*wp.add(p * R + r)));
                    a[r] = _mm512_dpbf16_ps(a[r], xv, wv);
                }
            }
            for r in 0..R {
                _mm512_storeu_ps(saved.add(r * LANES), a[r]);
            }
        }
        p0 += pc;
    }
    store::<R>(acc, block, j);
}
