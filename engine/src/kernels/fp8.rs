//! FP8 (e4m3) weights with block scales, as DeepSeek-V3/R1 and Qwen3-*-FP8 store them: one byte
//! a value and one f32 scale per block of the matrix. They stay compressed in memory; a product
//! widens only the weight rows one task is about to use, into a small buffer of f32
//! (`value · scale`, exactly what transformers' dequantisation computes), and runs the dense
//! kernels on it.

use std::ops::Range;

/// An `[m, k]` FP8 e4m3 matrix with its scales given per row: `scales[j · blocks + b]` is the
/// scale of row `j` over columns `b · block .. (b + 1) · block` (`blocks = ⌈k / block⌉`).
/// A checkpoint's `[⌈m / 128⌉, ⌈k / 128⌉]` block scales repeat down the rows of each block row.
#[derive(Debug, Clone, Copy)]
pub struct Fp8Matrix<'a> {
    /// `[m, k]` e4m3 bytes.
    pub values: &'a [u8],
    /// `[m, ⌈k / block⌉]` scales.
    pub scales: &'a [f32],
    /// Columns sharing a scale.
    pub block: usize,
}

/// 2¹²⁰: the difference between the exponent biases of f32 (127) and e4m3 (7).
const BIAS_GAP: f32 = 1.329_228e36;

/// The value of one e4m3 byte (no infinities; `0x7F`/`0xFF` are NaN, which loading refuses).
#[inline(always)]
pub fn e4m3_to_f32(b: u8) -> f32 {
    let b = u32::from(b);
    let magnitude = if b & 0x78 == 0 {
        // Subnormal: mantissa · 2⁻⁹, computed from a small integer so no f32 subnormal (and
        // no slow microcode path) is ever formed.
        (b & 0x07) as f32 * (1.0 / 512.0)
    } else {
        // Normal: exponent and mantissa moved into f32's fields, then the bias corrected.
        f32::from_bits((b & 0x7F) << 20) * BIAS_GAP
    };
    if b & 0x80 != 0 {
        -magnitude
    } else {
        magnitude
    }
}

/// Whether the byte is e4m3's NaN.
pub fn e4m3_is_nan(b: u8) -> bool {
    b & 0x7F == 0x7F
}

impl Fp8Matrix<'_> {
    /// Number of values.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the matrix has no values.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Writes rows `rows` (each of `k` values) into `out` as f32 `value · scale`, resizing it.
    pub fn widen_rows(&self, rows: Range<usize>, k: usize, out: &mut Vec<f32>) {
        out.resize(rows.len() * k, 0.0);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the features the function is compiled for.
            unsafe { widen_avx512(self, rows, k, out) };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            unsafe { widen_avx2(self, rows, k, out) };
            return;
        }
        widen(self, rows, k, out);
    }
}

/// Portable widening, one value at a time.
fn widen(w: &Fp8Matrix<'_>, rows: Range<usize>, k: usize, out: &mut [f32]) {
    widen_with(w, rows, k, out, |src, dst, scale| {
        for (d, &b) in dst.iter_mut().zip(src) {
            *d = e4m3_to_f32(b) * scale;
        }
    });
}

/// Walks rows and their blocks, handing each block's bytes, destination and scale to `block`.
#[inline(always)]
fn widen_with(
    w: &Fp8Matrix<'_>,
    rows: Range<usize>,
    k: usize,
    out: &mut [f32],
    mut block: impl FnMut(&[u8], &mut [f32], f32),
) {
    let blocks = k.div_ceil(w.block);
    for (r, j) in rows.enumerate() {
        let values = &w.values[j * k..(j + 1) * k];
        let scales = &w.scales[j * blocks..(j + 1) * blocks];
        let dst = &mut out[r * k..(r + 1) * k];
        for ((src, dst), &scale) in values
            .chunks(w.block)
            .zip(dst.chunks_mut(w.block))
            .zip(scales)
        {
            block(src, dst, scale);
        }
    }
}

/// AVX-512: sixteen bytes at a time, decoded with integer operations only (the exponent bias
/// is added to the bits, so no f32 subnormal is ever formed), then scaled.
#[cfg(target_arch = "x86_64")]
unsafe fn widen_avx512(w: &Fp8Matrix<'_>, rows: Range<usize>, k: usize, out: &mut [f32]) {
    // SAFETY: the caller checked the CPU features (a closure does not inherit them, hence
    // one call per block into a function compiled for them).
    widen_with(w, rows, k, out, |src, dst, scale| unsafe {
        widen_block_avx512(src, dst, scale)
    });
}

/// One block of [`widen_avx512`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
unsafe fn widen_block_avx512(src: &[u8], dst: &mut [f32], scale: f32) {
    use std::arch::x86_64::*;
    {
        let s = _mm512_set1_ps(scale);
        let mut i = 0;
        while i + 16 <= src.len() {
            let v = _mm512_cvtepu8_epi32(_mm_loadu_si128(src.as_ptr().add(i).cast()));
            let sign = _mm512_slli_epi32::<24>(_mm512_and_si512(v, _mm512_set1_epi32(0x80)));
            let normal = _mm512_add_epi32(
                _mm512_slli_epi32::<20>(_mm512_and_si512(v, _mm512_set1_epi32(0x7F))),
                _mm512_set1_epi32(120 << 23),
            );
            let sub = _mm512_mul_ps(
                _mm512_cvtepi32_ps(_mm512_and_si512(v, _mm512_set1_epi32(0x07))),
                _mm512_set1_ps(1.0 / 512.0),
            );
            let is_sub = _mm512_test_epi32_mask(v, _mm512_set1_epi32(0x78)) ^ 0xFFFF;
            let mag = _mm512_mask_blend_ps(is_sub, _mm512_castsi512_ps(normal), sub);
            let val = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(mag), sign));
            _mm512_storeu_ps(dst.as_mut_ptr().add(i), _mm512_mul_ps(val, s));
            i += 16;
        }
        for (d, &b) in dst[i..].iter_mut().zip(&src[i..]) {
            *d = e4m3_to_f32(b) * scale;
        }
    }
}

/// AVX2: eight bytes at a time, as [`widen_avx512`].
#[cfg(target_arch = "x86_64")]
unsafe fn widen_avx2(w: &Fp8Matrix<'_>, rows: Range<usize>, k: usize, out: &mut [f32]) {
    // SAFETY: as in `widen_avx512`.
    widen_with(w, rows, k, out, |src, dst, scale| unsafe {
        widen_block_avx2(src, dst, scale)
    });
}

/// One block of [`widen_avx2`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn widen_block_avx2(src: &[u8], dst: &mut [f32], scale: f32) {
    use std::arch::x86_64::*;
    {
        let s = _mm256_set1_ps(scale);
        let mut i = 0;
        while i + 8 <= src.len() {
            let v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(src.as_ptr().add(i).cast()));
            let sign = _mm256_slli_epi32::<24>(_mm256_and_si256(v, _mm256_set1_epi32(0x80)));
            let normal = _mm256_add_epi32(
                _mm256_slli_epi32::<20>(_mm256_and_si256(v, _mm256_set1_epi32(0x7F))),
                _mm256_set1_epi32(120 << 23),
            );
            let sub = _mm256_mul_ps(
                _mm256_cvtepi32_ps(_mm256_and_si256(v, _mm256_set1_epi32(0x07))),
                _mm256_set1_ps(1.0 / 512.0),
            );
            let exp_zero = _mm256_cmpeq_epi32(
                _mm256_and_si256(v, _mm256_set1_epi32(0x78)),
                _mm256_setzero_si256(),
            );
            let mag = _mm256_blendv_ps(
                _mm256_castsi256_ps(normal),
                sub,
                _mm256_castsi256_ps(exp_zero),
            );
            let val = _mm256_castsi256_ps(_mm256_or_si256(_mm256_castps_si256(mag), sign));
            _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_mul_ps(val, s));
            i += 8;
        }
        for (d, &b) in dst[i..].iter_mut().zip(&src[i..]) {
            *d = e4m3_to_f32(b) * scale;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// e4m3 decoded from its definition: sign, 4-bit exponent (bias 7), 3-bit mantissa.
    fn by_definition(b: u8) -> f32 {
        let sign = if b & 0x80 != 0 { -1.0 } else { 1.0 };
        let e = i32::from((b >> 3) & 0x0F);
        let m = f64::from(b & 0x07);
        let v = if e == 0 {
            m / 8.0 * 2f64.powi(-6)
        } else {
            (1.0 + m / 8.0) * 2f64.powi(e - 7)
        };
        (sign * v) as f32
    }

    #[test]
    fn every_byte_decodes_as_e4m3_defines_it() {
        for b in 0..=255u8 {
            if e4m3_is_nan(b) {
                continue;
            }
            assert_eq!(
                e4m3_to_f32(b).to_bits(),
                by_definition(b).to_bits(),
                "byte {b:#04x}"
            );
        }
        assert_eq!(e4m3_to_f32(0x7E), 448.0);
        assert_eq!(e4m3_to_f32(0x01), 2f32.powi(-9));
        assert!(e4m3_is_nan(0xFF) && e4m3_is_nan(0x7F) && !e4m3_is_nan(0x7E));
    }

    #[test]
    fn rows_widen_with_their_own_scales_on_partial_blocks() {
        let (m, k, block): (usize, usize, usize) = (5, 37, 16);
        let blocks = k.div_ceil(block);
        let values: Vec<u8> = (0..m * k).map(|i| (i * 37 % 254) as u8).collect();
        let scales: Vec<f32> = (0..m * blocks).map(|i| 0.5 + i as f32 * 0.25).collect();
        let w = Fp8Matrix {
            values: &values,
            scales: &scales,
            block,
        };
        let mut out = Vec::new();
        w.widen_rows(1..4, k, &mut out);
        let mut portable = vec![f32::NAN; 3 * k];
        widen(&w, 1..4, k, &mut portable);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            let mut avx2 = vec![f32::NAN; 3 * k];
            // SAFETY: the CPU has AVX2 and FMA (checked).
            unsafe { widen_avx2(&w, 1..4, k, &mut avx2) };
            assert_eq!(avx2, portable, "AVX2 widening");
        }
        assert_eq!(out.len(), 3 * k);
        for (r, j) in (1..4).enumerate() {
            for t in 0..k {
                let want = e4m3_to_f32(values[j * k + t]) * scales[j * blocks + t / block];
                assert_eq!(out[r * k + t], want, "row {j} col {t}");
                assert_eq!(portable[r * k + t], want, "portable: row {j} col {t}");
            }
        }
    }
}
