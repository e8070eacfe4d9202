//! The AVX-512 micro-kernel for products with many activation rows (prefill): the outer-product
//! form, at the f32 FMA rate. A group's activations are transposed once into panels of 16
//! rows, so one vector holds sixteen rows' values at one step of `k`; a chunk of
//! `WR` weight rows is widened to f32 into an L1 buffer once and reused by every vector of
//! rows; each FMA multiplies one broadcast weight by sixteen activations. Every accumulator is
//! an output value, so nothing is reduced across lanes, and the weights are read from memory
//! once per task.
//!
//! Measured on this project's Xeon with AVX512-BF16 and no AMX (BENCHMARKS.md, `cpu_peak.c`):
//! `vdpbf16ps` issues at half the rate of f32 FMA there, so this f32 kernel is about twice as
//! fast as the `vdpbf16ps` one wherever a group has enough rows to fill a vector. It multiplies
//! the activations as given (f32), like the other f32-FMA paths.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use super::simd::WeightElem;
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
    let Block { n, k, m, .. } = *block;
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
    // acc[v][r][lane] is out[v·16 + lane, j + r].
    for v in 0..vectors {
        let saved = acc.as_ptr().add(v * WR * LANES);
        for lane in 0..LANES.min(n - v * LANES) {
            let row = block.out.add((v * LANES + lane) * m + j);
            for r in 0..R {
                *row.add(r) = *saved.add(r * LANES + lane);
            }
        }
    }
}
