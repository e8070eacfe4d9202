//! The tiled driver shared by every instruction set: a block of weight rows (output columns) is
//! walked in micro-tiles of `C` weight rows × `R` activation rows; each micro-tile keeps its
//! `R × C` dot products in registers over the whole of `k`, so the `C` weight rows are read
//! from memory once and then reused from L1 for every group of activation rows.
//!
//! Tried and dropped (measured with `examples/kernel_bench.rs`): converting a tile column's
//! weights into an f32 buffer once before the row groups reuse it, in row order or with the
//! steps interleaved: no faster on the f32-FMA paths and slower on the others, for 16 to 512
//! activation rows.

use std::ops::Range;

use super::elem::Kernel;

/// Task blocks are a multiple of this many weight rows (the widest micro-tile).
pub const COL_ALIGN: usize = 8;

/// One task's share of a product: every activation row against the weight rows `cols`.
pub struct Block {
    /// Activation rows.
    pub n: usize,
    /// Shared dimension.
    pub k: usize,
    /// Weight rows in the whole product (the row stride of `out`).
    pub m: usize,
    /// The weight rows (output columns) this task computes.
    pub cols: Range<usize>,
    /// `[n, m]` output, written at `cols` only.
    pub out: *mut f32,
}

/// Computes `block` with kernel `K` in micro-tiles of `R` activation rows × `C` weight rows,
/// narrower tiles at the edges.
///
/// # Safety
/// `x` holds `[n, k]` values, `w` `[m, k]`, `block.out` `[n, m]`; the CPU supports `K`'s
/// instructions.
#[inline(always)]
pub unsafe fn run_block<K: Kernel, const R: usize, const C: usize>(
    x: &[K::X],
    w: &[K::W],
    block: &Block,
) {
    let Block {
        n, k, m, ref cols, ..
    } = *block;
    let mut j = cols.start;
    while j + C <= cols.end {
        let mut i = 0;
        while i + R <= n {
            tile::<K, R, C>(x, w, k, i, j, block.out, m);
            i += R;
        }
        while i < n {
            tile::<K, 1, C>(x, w, k, i, j, block.out, m);
            i += 1;
        }
        j += C;
    }
    while j < cols.end {
        for i in 0..n {
            tile::<K, 1, 1>(x, w, k, i, j, block.out, m);
        }
        j += 1;
    }
}

/// `out[i + r, j + c]` for `r < R`, `c < C`: full vector steps in registers, then the
/// remainder of `k` in scalar f32.
// Indexing the register tile by (r, c) says what it is; iterators would hide it.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
unsafe fn tile<K: Kernel, const R: usize, const C: usize>(
    x: &[K::X],
    w: &[K::W],
    k: usize,
    i: usize,
    j: usize,
    out: *mut f32,
    m: usize,
) {
    let xp = x.as_ptr().add(i * k);
    let wp = w.as_ptr().add(j * k);
    let mut acc = [[K::zero(); C]; R];
    let steps = k / K::STEP;
    for s in 0..steps {
        let off = s * K::STEP;
        let mut xv = [K::load_x(xp.add(off)); R];
        for (r, v) in xv.iter_mut().enumerate().skip(1) {
            *v = K::load_x(xp.add(r * k + off));
        }
        for c in 0..C {
            let wv = K::load_w(wp.add(c * k + off));
            for r in 0..R {
                acc[r][c] = K::mul_add(acc[r][c], xv[r], wv);
            }
        }
    }
    for r in 0..R {
        for c in 0..C {
            let mut sum = K::sum(acc[r][c]);
            for t in steps * K::STEP..k {
                sum += K::x_f32(*xp.add(r * k + t)) * K::w_f32(*wp.add(c * k + t));
            }
            *out.add((i + r) * m + j + c) = sum;
        }
    }
}
