//! MXFP4 weights, as gpt-oss stores its experts: blocks of 32 values along a row, each value a
//! 4-bit e2m1 number (two a byte, low nibble first) and each block one power-of-two scale (an
//! e8m0 byte, bias 127). They stay compressed in memory — half a byte a value — and a product
//! widens only the rows one task is about to use into f32, as for FP8.

use std::ops::Range;

/// Values sharing one scale.
pub const MXFP4_BLOCK: usize = 32;

/// The sixteen e2m1 values.
const E2M1: [f32; 16] = [
    0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0,
];

/// An `[m, k]` MXFP4 matrix (`k` a multiple of 32).
#[derive(Debug, Clone, Copy)]
pub struct Mxfp4Matrix<'a> {
    /// `[m, k / 32, 16]` bytes of packed e2m1 pairs.
    pub blocks: &'a [u8],
    /// `[m, k / 32]` e8m0 scales.
    pub scales: &'a [u8],
}

/// The factor an e8m0 byte stands for, `2^(e − 127)` (255, e8m0's NaN, is refused at load).
#[inline(always)]
pub fn e8m0_to_f32(e: u8) -> f32 {
    if e == 0 {
        f32::from_bits(0x0040_0000) // 2⁻¹²⁷, the one subnormal
    } else {
        f32::from_bits(u32::from(e) << 23)
    }
}

impl Mxfp4Matrix<'_> {
    /// Number of values.
    pub fn len(&self) -> usize {
        self.blocks.len() * 2
    }

    /// Whether the matrix has no values.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Writes rows `rows` (each of `k` values) into `out` as f32, resizing it.
    pub fn widen_rows(&self, rows: Range<usize>, k: usize, out: &mut Vec<f32>) {
        out.resize(rows.len() * k, 0.0);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            for (r, j) in rows.enumerate() {
                // SAFETY: the CPU has the features the function is compiled for.
                unsafe { widen_row_avx512(self, j, k, &mut out[r * k..(r + 1) * k]) };
            }
            return;
        }
        for (r, j) in rows.enumerate() {
            widen_row(self, j, k, &mut out[r * k..(r + 1) * k]);
        }
    }
}

/// Row `j`, one value at a time.
fn widen_row(w: &Mxfp4Matrix<'_>, j: usize, k: usize, out: &mut [f32]) {
    let groups = k / MXFP4_BLOCK;
    let blocks = &w.blocks[j * groups * 16..(j + 1) * groups * 16];
    let scales = &w.scales[j * groups..(j + 1) * groups];
    for ((packed, &e), dst) in blocks
        .chunks_exact(16)
        .zip(scales)
        .zip(out.chunks_exact_mut(MXFP4_BLOCK))
    {
        let s = e8m0_to_f32(e);
        for (pair, &b) in dst.chunks_exact_mut(2).zip(packed) {
            pair[0] = E2M1[usize::from(b & 0x0F)] * s;
            pair[1] = E2M1[usize::from(b >> 4)] * s;
        }
    }
}

/// Row `j` with AVX-512: each block's 32 nibbles put in value order, then looked up in a
/// register holding the sixteen e2m1 values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx2")]
unsafe fn widen_row_avx512(w: &Mxfp4Matrix<'_>, j: usize, k: usize, out: &mut [f32]) {
    use std::arch::x86_64::*;
    let groups = k / MXFP4_BLOCK;
    let blocks = &w.blocks[j * groups * 16..(j + 1) * groups * 16];
    let scales = &w.scales[j * groups..(j + 1) * groups];
    let table = _mm512_loadu_ps(E2M1.as_ptr());
    let low = _mm_set1_epi8(0x0F);
    for (g, &scale) in scales.iter().enumerate() {
        let packed = _mm_loadu_si128(blocks.as_ptr().add(g * 16).cast());
        let lo = _mm_and_si128(packed, low);
        let hi = _mm_and_si128(_mm_srli_epi16::<4>(packed), low);
        let first = _mm_unpacklo_epi8(lo, hi); // values 0..16
        let second = _mm_unpackhi_epi8(lo, hi); // values 16..32
        let s = _mm512_set1_ps(e8m0_to_f32(scale));
        let dst = out.as_mut_ptr().add(g * MXFP4_BLOCK);
        let a = _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(first), table);
        let b = _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(second), table);
        _mm512_storeu_ps(dst, _mm512_mul_ps(a, s));
        _mm512_storeu_ps(dst.add(16), _mm512_mul_ps(b, s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_widen_as_the_format_defines_them() {
        let (m, k) = (3, 96);
        let blocks: Vec<u8> = (0..m * k / 2).map(|i| (i * 73 % 256) as u8).collect();
        let scales: Vec<u8> = (0..m * k / 32).map(|i| 120 + i as u8).collect();
        let w = Mxfp4Matrix {
            blocks: &blocks,
            scales: &scales,
        };
        let mut out = Vec::new();
        w.widen_rows(1..3, k, &mut out);
        let mut portable = vec![f32::NAN; k];
        for (r, j) in (1..3).enumerate() {
            widen_row(&w, j, k, &mut portable);
            for t in 0..k {
                let byte = blocks[j * k / 2 + t / 2];
                let nibble = if t % 2 == 0 { byte & 0x0F } else { byte >> 4 };
                let scale = 2f32.powi(i32::from(scales[j * k / 32 + t / 32]) - 127);
                let want = E2M1[usize::from(nibble)] * scale;
                assert_eq!(out[r * k + t].to_bits(), want.to_bits(), "row {j} col {t}");
                assert_eq!(
                    portable[t].to_bits(),
                    want.to_bits(),
                    "portable row {j} col {t}"
                );
            }
        }
        assert_eq!(e8m0_to_f32(0), 2f32.powi(-127));
        assert_eq!(e8m0_to_f32(127), 1.0);
    }
}
