//! What the tiled driver and the broadcast kernels are generic over: [`Kernel`], one
//! instruction set's micro-kernel operations, and [`WeightElem`], a weight format and its
//! conversion to f32 lanes. The kernels themselves live in `simd.rs` and `bcast.rs`.

use half::{bf16, f16};

/// The per-instruction-set operations of the micro-kernel.
pub trait Kernel {
    /// Activation element as the kernel reads it.
    type X: Copy;
    /// Weight element.
    type W: Copy;
    /// One step of activations in registers.
    type XV: Copy;
    /// One step of weights in registers.
    type WV: Copy;
    /// An accumulator of partial dot products.
    type Acc: Copy;
    /// Values of the shared dimension consumed per step.
    const STEP: usize;
    /// A zero accumulator.
    unsafe fn zero() -> Self::Acc;
    /// Loads `STEP` activations.
    unsafe fn load_x(p: *const Self::X) -> Self::XV;
    /// Loads `STEP` weights.
    unsafe fn load_w(p: *const Self::W) -> Self::WV;
    /// `acc + x · w`, lane by lane.
    unsafe fn mul_add(acc: Self::Acc, x: Self::XV, w: Self::WV) -> Self::Acc;
    /// The sum of an accumulator's lanes.
    unsafe fn sum(acc: Self::Acc) -> f32;
    /// One activation as f32 (for the remainder of `k`).
    fn x_f32(x: Self::X) -> f32;
    /// One weight as f32 (for the remainder of `k`).
    fn w_f32(w: Self::W) -> f32;
}

/// A weight format the micro-kernels read (bf16, f16, or f32 for widened FP8 rows) and its
/// conversion to f32 on each instruction set.
pub trait WeightElem: Copy {
    /// One value as f32.
    fn to_f32(self) -> f32;
    /// Eight values as f32 lanes (AVX2 + F16C).
    #[cfg(target_arch = "x86_64")]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256;
    /// Sixteen values as f32 lanes (AVX-512).
    #[cfg(target_arch = "x86_64")]
    unsafe fn load16(p: *const Self) -> std::arch::x86_64::__m512;
}

impl WeightElem for bf16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f32::from_bits(u32::from(self.to_bits()) << 16)
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        let v = _mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast()));
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(v))
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load16(p: *const Self) -> std::arch::x86_64::__m512 {
        use std::arch::x86_64::*;
        let v = _mm512_cvtepu16_epi32(_mm256_loadu_si256(p.cast()));
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(v))
    }
}

impl WeightElem for f32 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256 {
        std::arch::x86_64::_mm256_loadu_ps(p)
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load16(p: *const Self) -> std::arch::x86_64::__m512 {
        std::arch::x86_64::_mm512_loadu_ps(p)
    }
}

impl WeightElem for f16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        _mm256_cvtph_ps(_mm_loadu_si128(p.cast()))
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load16(p: *const Self) -> std::arch::x86_64::__m512 {
        use std::arch::x86_64::*;
        _mm512_cvtph_ps(_mm256_loadu_si256(p.cast()))
    }
}
