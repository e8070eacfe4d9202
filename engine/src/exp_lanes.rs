//! `exp` over a slice of f32 in plain arithmetic the compiler turns into vector code (libm's
//! `expf` is one scalar call per value, and softmax over a long context takes one per key).
//! Range reduction `x = n·ln 2 + r` with `|r| ≤ ln 2 / 2`, then a degree-7 Taylor polynomial in
//! `r` (truncation error below 1e-8 relative) and `2ⁿ` built from its exponent bits: within 2 ulp
//! of the exact value over the whole normal range.

/// Below this the result is under f32's smallest normal number; it is returned as 0.
const LOWEST: f32 = -87.0;
/// Above this `2ⁿ` would not fit f32's exponent; the result is returned as +∞ (exp(88.3) is
/// 2.0·10³⁸, f32's largest value 3.4·10³⁸).
const HIGHEST: f32 = 88.3;
/// ln 2 split in two: a head with few mantissa bits, so that `n · head` is exact for every `n`
/// of the range, and the rest.
const LN2_HEAD: f32 = 355.0 / 512.0;
const LN2_TAIL: f32 = -2.121_944_4e-4;
/// Adding then subtracting 1.5 · 2²³ rounds an f32 below 2²² in magnitude to the nearest
/// integer, with the integer left in the low mantissa bits.
const ROUNDER: f32 = 12_582_912.0;

/// `exp(x)` for one value, as [`exp_in_place`] computes it.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    exp_lanes([x])[0]
}

/// `values[i] = exp(values[i])` for every value, eight lanes at a time.
#[inline(always)]
pub fn exp_in_place(values: &mut [f32]) {
    let mut chunks = values.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut lanes = [0f32; 8];
        lanes.copy_from_slice(chunk);
        chunk.copy_from_slice(&exp_lanes(lanes));
    }
    for v in chunks.into_remainder() {
        *v = exp(*v);
    }
}

/// `exp` of `L` values, each step written over all lanes so that the compiler keeps them in
/// one vector register.
#[inline(always)]
fn exp_lanes<const L: usize>(xs: [f32; L]) -> [f32; L] {
    let mut out = [0f32; L];
    for (o, &x) in out.iter_mut().zip(&xs) {
        // NaN stays NaN through `clamp`.
        let clamped = x.clamp(LOWEST, HIGHEST);
        let shifted = clamped * std::f32::consts::LOG2_E + ROUNDER;
        let n = shifted - ROUNDER;
        let r = (clamped - n * LN2_HEAD) - n * LN2_TAIL;
        // 1 + r + r²/2! + … + r⁷/7!, by Horner.
        let mut p = 1.0 / 5040.0;
        p = p * r + 1.0 / 720.0;
        p = p * r + 1.0 / 120.0;
        p = p * r + 1.0 / 24.0;
        p = p * r + 1.0 / 6.0;
        p = p * r + 0.5;
        p = p * r + 1.0;
        p = p * r + 1.0;
        // `n` sits in the low mantissa bits of `shifted`, offset by the bits of ROUNDER;
        // adding the exponent bias and shifting into place gives 2ⁿ.
        let whole = shifted.to_bits().wrapping_sub(ROUNDER.to_bits());
        let scale = f32::from_bits(whole.wrapping_add(127) << 23);
        let value = if x < LOWEST { 0.0 } else { p * scale };
        // NaN fails both comparisons, and `r` carried it into `value`.
        *o = if x > HIGHEST { f32::INFINITY } else { value };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relative distance in units of f32's epsilon.
    fn rel_ulps(got: f32, want: f64) -> f64 {
        ((got as f64 - want) / want).abs() / f32::EPSILON as f64
    }

    #[test]
    fn within_two_ulp_over_the_normal_range() {
        let mut worst = 0f64;
        let mut x = LOWEST;
        while x <= HIGHEST {
            let want = (x as f64).exp();
            worst = worst.max(rel_ulps(exp(x), want));
            x += 0.001_37;
        }
        assert!(worst < 2.0, "worst error {worst} ulp");
    }

    #[test]
    fn edges_and_special_values() {
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-0.0), 1.0);
        assert_eq!(exp(-1e30), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-87.5), 0.0);
        assert_eq!(exp(88.5), f32::INFINITY);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
        assert!(rel_ulps(exp(LOWEST), (LOWEST as f64).exp()) < 2.0);
        assert!(rel_ulps(exp(HIGHEST), (HIGHEST as f64).exp()) < 2.0);
    }

    #[test]
    fn slices_of_every_length_match_the_scalar_form() {
        for len in [0, 1, 7, 8, 9, 17, 100] {
            let xs: Vec<f32> = (0..len).map(|i| (i as f32 * 0.77) - 40.0).collect();
            let mut got = xs.clone();
            exp_in_place(&mut got);
            for (g, &x) in got.iter().zip(&xs) {
                assert_eq!(g.to_bits(), exp(x).to_bits(), "len {len}, x {x}");
            }
        }
    }
}
