//! One [`Kernel`] per instruction set: how one step of the shared dimension is loaded,
//! converted to f32 (or kept as bf16 pairs) and multiplied into an accumulator. The tiled
//! driver is generic over it; the `#[target_feature]` entry points below instantiate it for
//! each path, so the intrinsics are inlined into code compiled for that CPU.

use std::ops::Range;

use half::{bf16, f16};
use rayon::prelude::*;

use super::elem::{Kernel, WeightElem};
use super::tiles::{run_block, Block};
use super::{DenseMatrix, KernelPath, RowGroup, WeightMatrix};

/// Plain Rust on arrays of eight lanes, which the compiler vectorises for whatever the
/// baseline target offers. Multiplies and adds separately (no FMA is assumed).
pub struct Portable<W>(std::marker::PhantomData<W>);

impl<W: WeightElem> Kernel for Portable<W> {
    type X = f32;
    type W = W;
    type XV = [f32; 8];
    type WV = [f32; 8];
    type Acc = [f32; 8];
    const STEP: usize = 8;

    #[inline(always)]
    unsafe fn zero() -> Self::Acc {
        [0.0; 8]
    }
    #[inline(always)]
    unsafe fn load_x(p: *const f32) -> Self::XV {
        std::ptr::read_unaligned(p.cast())
    }
    #[inline(always)]
    unsafe fn load_w(p: *const W) -> Self::WV {
        let raw: [W; 8] = std::ptr::read_unaligned(p.cast());
        raw.map(W::to_f32)
    }
    #[inline(always)]
    unsafe fn mul_add(mut acc: Self::Acc, x: Self::XV, w: Self::WV) -> Self::Acc {
        for l in 0..8 {
            acc[l] += x[l] * w[l];
        }
        acc
    }
    #[inline(always)]
    unsafe fn sum(acc: Self::Acc) -> f32 {
        let a: [f32; 4] = std::array::from_fn(|l| acc[l] + acc[l + 4]);
        (a[0] + a[2]) + (a[1] + a[3])
    }
    #[inline(always)]
    fn x_f32(x: f32) -> f32 {
        x
    }
    #[inline(always)]
    fn w_f32(w: W) -> f32 {
        w.to_f32()
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use half::bf16;

    use super::{Kernel, WeightElem};

    /// AVX2 + FMA: eight f32 lanes, weights converted as they are loaded.
    pub struct Avx2<W>(std::marker::PhantomData<W>);

    impl<W: WeightElem> Kernel for Avx2<W> {
        type X = f32;
        type W = W;
        type XV = __m256;
        type WV = __m256;
        type Acc = __m256;
        const STEP: usize = 8;

        #[inline(always)]
        unsafe fn zero() -> __m256 {
            _mm256_setzero_ps()
        }
        #[inline(always)]
        unsafe fn load_x(p: *const f32) -> __m256 {
            _mm256_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn load_w(p: *const W) -> __m256 {
            W::load8(p)
        }
        #[inline(always)]
        unsafe fn mul_add(acc: __m256, x: __m256, w: __m256) -> __m256 {
            _mm256_fmadd_ps(x, w, acc)
        }
        #[inline(always)]
        unsafe fn sum(acc: __m256) -> f32 {
            let s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps::<1>(acc));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
            _mm_cvtss_f32(s)
        }
        #[inline(always)]
        fn x_f32(x: f32) -> f32 {
            x
        }
        #[inline(always)]
        fn w_f32(w: W) -> f32 {
            w.to_f32()
        }
    }

    /// AVX-512: sixteen f32 lanes, weights converted as they are loaded.
    pub struct Avx512<W>(std::marker::PhantomData<W>);

    impl<W: WeightElem> Kernel for Avx512<W> {
        type X = f32;
        type W = W;
        type XV = __m512;
        type WV = __m512;
        type Acc = __m512;
        const STEP: usize = 16;

        #[inline(always)]
        unsafe fn zero() -> __m512 {
            _mm512_setzero_ps()
        }
        #[inline(always)]
        unsafe fn load_x(p: *const f32) -> __m512 {
            _mm512_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn load_w(p: *const W) -> __m512 {
            W::load16(p)
        }
        #[inline(always)]
        unsafe fn mul_add(acc: __m512, x: __m512, w: __m512) -> __m512 {
            _mm512_fmadd_ps(x, w, acc)
        }
        #[inline(always)]
        unsafe fn sum(acc: __m512) -> f32 {
            _mm512_reduce_add_ps(acc)
        }
        #[inline(always)]
        fn x_f32(x: f32) -> f32 {
            x
        }
        #[inline(always)]
        fn w_f32(w: W) -> f32 {
            w.to_f32()
        }
    }

    /// AVX-512 BF16: 32 bf16 values a step, multiplied in pairs and accumulated into sixteen
    /// f32 lanes by `vdpbf16ps`.
    pub struct Avx512Bf16;

    impl Kernel for Avx512Bf16 {
        type X = bf16;
        type W = bf16;
        type XV = __m512bh;
        type WV = __m512bh;
        type Acc = __m512;
        const STEP: usize = 32;

        #[inline(always)]
        unsafe fn zero() -> __m512 {
            _mm512_setzero_ps()
        }
        #[inline(always)]
        unsafe fn load_x(p: *const bf16) -> __m512bh {
            std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(p.cast()))
        }
        #[inline(always)]
        unsafe fn load_w(p: *const bf16) -> __m512bh {
            std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(p.cast()))
        }
        #[inline(always)]
        unsafe fn mul_add(acc: __m512, x: __m512bh, w: __m512bh) -> __m512 {
            _mm512_dpbf16_ps(acc, x, w)
        }
        #[inline(always)]
        unsafe fn sum(acc: __m512) -> f32 {
            _mm512_reduce_add_ps(acc)
        }
        #[inline(always)]
        fn x_f32(x: bf16) -> f32 {
            x.to_f32()
        }
        #[inline(always)]
        fn w_f32(w: bf16) -> f32 {
            w.to_f32()
        }
    }
}

/// Activations in the layouts the kernels of a path read: by rows (as given, or rounded to
/// bf16 for `vdpbf16ps`), and, for groups with enough rows on AVX-512, transposed for the
/// broadcast kernel ([`super::bcast`]).
pub struct Activations<'a> {
    rows: RowLayout<'a>,
    /// Per group: its rows transposed, or `None` where the row-tiled kernel serves it.
    columns: Vec<Option<Panels>>,
}

/// A group's rows transposed into panels of 16 for a broadcast kernel.
enum Panels {
    /// f32 values, for [`super::bcast::run`].
    F32(Vec<f32>),
    /// bf16 pairs, for [`super::bcast::run_bf16_pairs`] (bf16 weights on AVX512-BF16).
    Bf16Pairs(Vec<u32>),
}

/// Activations by rows.
enum RowLayout<'a> {
    /// The caller's f32 values.
    F32(&'a [f32]),
    /// Rounded to bf16 (the `vdpbf16ps` kernel multiplies bf16 inputs, as a GPU does).
    Bf16(Vec<bf16>),
}

impl<'a> Activations<'a> {
    /// `x` (`[n, k]`) prepared for `path` and each of `groups`, groups of `min_rows` or more
    /// rows for a broadcast kernel.
    pub fn prepare(
        path: KernelPath,
        groups: &[RowGroup<'_>],
        x: &'a [f32],
        k: usize,
        min_rows: usize,
    ) -> Self {
        let broadcast = matches!(
            path,
            KernelPath::Avx2 | KernelPath::Avx512 | KernelPath::Avx512Bf16
        );
        let columns: Vec<Option<Panels>> = groups
            .par_iter()
            .map(|g| {
                (broadcast && g.rows.len() >= min_rows).then(|| {
                    let rows = &x[g.rows.start * k..g.rows.end * k];
                    let bf16_weights = matches!(g.w, WeightMatrix::Dense(DenseMatrix::Bf16(_)));
                    let pairs_pay = g.rows.len() >= super::bcast::PAIRS_MIN_ROWS;
                    if path == KernelPath::Avx512Bf16 && bf16_weights && pairs_pay && bf16_pairs() {
                        Panels::Bf16Pairs(super::bcast::transpose_rows_bf16_pairs(
                            rows,
                            g.rows.len(),
                            k,
                        ))
                    } else {
                        Panels::F32(super::bcast::transpose_rows(rows, g.rows.len(), k))
                    }
                })
            })
            .collect();
        let bf16_dot = path == KernelPath::Avx512Bf16
            && groups.iter().zip(&columns).any(|(g, c)| {
                c.is_none() && matches!(g.w, WeightMatrix::Dense(DenseMatrix::Bf16(_)))
            });
        let rows = if bf16_dot {
            RowLayout::Bf16(
                x.par_iter()
                    .with_min_len(1 << 16)
                    .map(|&v| bf16::from_f32(v))
                    .collect(),
            )
        } else {
            RowLayout::F32(x)
        };
        Self { rows, columns }
    }
}

/// Whether bf16 weights take the `vdpbf16ps` broadcast kernel on AVX512-BF16 CPUs (the
/// default); `MOESCOPE_BCAST_BF16=0` keeps them on the f32 one, for benchmarks comparing both.
fn bf16_pairs() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("MOESCOPE_BCAST_BF16").as_deref() != Ok("0"))
}

/// Runs one block of group `gi` (rows `rows`) on `path`, with `x` prepared for it by
/// [`Activations::prepare`].
///
/// # Safety
/// As [`run_block`]; `path` is supported by this CPU.
pub unsafe fn run(
    path: KernelPath,
    x: &Activations<'_>,
    gi: usize,
    rows: Range<usize>,
    w: DenseMatrix<'_>,
    b: &Block,
) {
    #[cfg(target_arch = "x86_64")]
    if let Some(Some(panels)) = x.columns.get(gi) {
        match (panels, w) {
            (Panels::F32(xt), DenseMatrix::Bf16(w)) if path == KernelPath::Avx2 => {
                super::bcast::run_avx2(xt, w, b)
            }
            (Panels::F32(xt), DenseMatrix::F16(w)) if path == KernelPath::Avx2 => {
                super::bcast::run_avx2(xt, w, b)
            }
            (Panels::F32(xt), DenseMatrix::F32(w)) if path == KernelPath::Avx2 => {
                super::bcast::run_avx2(xt, w, b)
            }
            (Panels::Bf16Pairs(xp), DenseMatrix::Bf16(w)) => super::bcast::run_bf16_pairs(xp, w, b),
            (Panels::F32(xt), DenseMatrix::Bf16(w)) => super::bcast::run(xt, w, b),
            (Panels::F32(xt), DenseMatrix::F16(w)) => super::bcast::run(xt, w, b),
            (Panels::F32(xt), DenseMatrix::F32(w)) => super::bcast::run(xt, w, b),
            (Panels::Bf16Pairs(_), _) => {
                unreachable!("bf16 pairs are prepared only for bf16 weights")
            }
        }
        return;
    }
    let span = rows.start * b.k..rows.end * b.k;
    match (path, w, &x.rows) {
        #[cfg(target_arch = "x86_64")]
        (KernelPath::Avx512Bf16, DenseMatrix::Bf16(w), RowLayout::Bf16(x)) => {
            avx512bf16(&x[span], w, b)
        }
        #[cfg(target_arch = "x86_64")]
        (KernelPath::Avx512 | KernelPath::Avx512Bf16, DenseMatrix::Bf16(w), RowLayout::F32(x)) => {
            avx512(&x[span], w, b)
        }
        #[cfg(target_arch = "x86_64")]
        (KernelPath::Avx512 | KernelPath::Avx512Bf16, DenseMatrix::F16(w), RowLayout::F32(x)) => {
            avx512(&x[span], w, b)
        }
        #[cfg(target_arch = "x86_64")]
        (KernelPath::Avx512 | KernelPath::Avx512Bf16, DenseMatrix::F32(w), RowLayout::F32(x)) => {
            avx512(&x[span], w, b)
        }
        #[cfg(target_arch = "x86_64")]
        (KernelPath::Avx2, DenseMatrix::Bf16(w), RowLayout::F32(x)) => avx2(&x[span], w, b),
        #[cfg(target_arch = "x86_64")]
        (KernelPath::Avx2, DenseMatrix::F32(w), RowLayout::F32(x)) => avx2(&x[span], w, b),
        #[cfg(target_arch = "x86_64")]
        (KernelPath::Avx2, DenseMatrix::F16(w), RowLayout::F32(x)) => avx2(&x[span], w, b),
        (_, DenseMatrix::Bf16(w), RowLayout::F32(x)) => {
            run_block::<Portable<bf16>, 2, 4>(&x[span], w, b)
        }
        (_, DenseMatrix::F16(w), RowLayout::F32(x)) => {
            run_block::<Portable<f16>, 2, 4>(&x[span], w, b)
        }
        (_, DenseMatrix::F32(w), RowLayout::F32(x)) => {
            run_block::<Portable<f32>, 2, 4>(&x[span], w, b)
        }
        (_, _, RowLayout::Bf16(_)) => {
            unreachable!("bf16 activations are prepared only for the vdpbf16ps kernel")
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn avx2<W: WeightElem>(x: &[f32], w: &[W], b: &Block) {
    if b.n == 1 {
        // One activation row (decode): eight weight rows a tile keep eight streams in flight;
        // measured 5–10% closer to the read bandwidth than four (`examples/stream_probe.rs`).
        run_block::<x86::Avx2<W>, 1, 8>(x, w, b);
    } else {
        run_block::<x86::Avx2<W>, 2, 4>(x, w, b);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
unsafe fn avx512<W: WeightElem>(x: &[f32], w: &[W], b: &Block) {
    run_block::<x86::Avx512<W>, 4, 4>(x, w, b);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16,avx2,fma,f16c")]
unsafe fn avx512bf16(x: &[bf16], w: &[bf16], b: &Block) {
    run_block::<x86::Avx512Bf16, 3, 8>(x, w, b);
}
