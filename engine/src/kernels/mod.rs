//! CPU matrix products with weights in their stored 16-bit dtype (bf16 or f16): `y = x Wᵀ` for
//! activations `x` `[n, k]` and a weight `W` `[m, k]` as checkpoints store it, accumulated in f32
//! as a GPU's bf16 GEMM does. Weights are converted a few values at a time inside the
//! micro-kernel, never as a whole, so a product reads each weight byte once per call.
//!
//! One tiled driver ([`tiles`]) serves every instruction set; what differs per CPU is a
//! [`elem::Kernel`] (how to load, convert and multiply one step of `k`). The path is chosen at
//! run time from the CPU's features ([`KernelPath::detect`]) and can be forced with
//! `MOESCOPE_KERNEL=portable|avx2|avx512|avx512bf16` or [`force_path`], so the portable path is
//! tested on every machine.

mod bcast;
mod calibrate;
mod elem;
mod fp8;
mod mxfp4;
mod simd;
mod tiles;

pub use calibrate::{
    broadcast_min_rows, enable as enable_calibration, measured_thresholds, BroadcastThreshold,
};
pub use fp8::{e4m3_is_nan, e4m3_to_f32, Fp8Matrix};
pub use mxfp4::{e8m0_to_f32, Mxfp4Matrix, MXFP4_BLOCK};

use std::ops::Range;
use std::sync::atomic::{AtomicU8, Ordering};

use half::{bf16, f16};
use rayon::prelude::*;

/// The instruction-set path the reduced-precision products run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelPath {
    /// Plain Rust, any CPU (what the compiler vectorises for the baseline target).
    Portable,
    /// AVX2 with FMA and F16C (AMD EPYC and most x86-64 CPUs since 2013).
    Avx2,
    /// AVX-512 (F, BW) with f32 FMA.
    Avx512,
    /// AVX-512 with the BF16 dot-product instruction (`vdpbf16ps`): bf16 pairs multiplied and
    /// accumulated in f32, twice the arithmetic rate of f32 FMA. bf16 weights only; f16 weights
    /// take the [`KernelPath::Avx512`] path.
    Avx512Bf16,
}

impl KernelPath {
    /// Every path, fastest last.
    pub const ALL: [KernelPath; 4] = [
        KernelPath::Portable,
        KernelPath::Avx2,
        KernelPath::Avx512,
        KernelPath::Avx512Bf16,
    ];

    /// The fastest path this CPU supports.
    pub fn detect() -> Self {
        Self::ALL
            .into_iter()
            .rev()
            .find(|p| p.supported())
            .unwrap_or(KernelPath::Portable)
    }

    /// Whether this CPU can run the path.
    pub fn supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("f16c");
            let avx512 = avx2
                && std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw");
            match self {
                KernelPath::Portable => true,
                KernelPath::Avx2 => avx2,
                KernelPath::Avx512 => avx512,
                KernelPath::Avx512Bf16 => {
                    avx512 && std::arch::is_x86_feature_detected!("avx512bf16")
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == KernelPath::Portable
        }
    }

    /// The name `MOESCOPE_KERNEL` takes.
    pub fn name(self) -> &'static str {
        match self {
            KernelPath::Portable => "portable",
            KernelPath::Avx2 => "avx2",
            KernelPath::Avx512 => "avx512",
            KernelPath::Avx512Bf16 => "avx512bf16",
        }
    }

    /// The path named `name` (see [`KernelPath::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    fn code(self) -> u8 {
        self as u8 + 1
    }
}

/// 0: not chosen yet; otherwise `KernelPath::code`.
static CHOSEN: AtomicU8 = AtomicU8::new(0);

/// Whether f32 code compiled for AVX2 (eight lanes) may run beside the products: the CPU has
/// AVX2 and the products are not forced onto the portable path, so forcing it covers both.
pub fn avx2_lanes() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        active_path() != KernelPath::Portable && std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The path products run on: the forced one, else `MOESCOPE_KERNEL` if this CPU supports it,
/// else the fastest supported.
pub fn active_path() -> KernelPath {
    let code = CHOSEN.load(Ordering::Relaxed);
    if let Some(p) = KernelPath::ALL.into_iter().find(|p| p.code() == code) {
        return p;
    }
    let path = std::env::var("MOESCOPE_KERNEL")
        .ok()
        .and_then(|n| KernelPath::from_name(&n))
        .filter(|p| p.supported())
        .unwrap_or_else(KernelPath::detect);
    CHOSEN.store(path.code(), Ordering::Relaxed);
    path
}

/// Makes every later product run on `path` (for tests and benchmarks that compare paths).
/// Returns false, changing nothing, when this CPU does not support it.
pub fn force_path(path: KernelPath) -> bool {
    if !path.supported() {
        return false;
    }
    CHOSEN.store(path.code(), Ordering::Relaxed);
    true
}

/// A row-major `[m, k]` weight matrix whose values the micro-kernels read in place.
#[derive(Debug, Clone, Copy)]
pub enum DenseMatrix<'a> {
    /// bf16 values.
    Bf16(&'a [bf16]),
    /// IEEE f16 values.
    F16(&'a [f16]),
    /// f32 values (the rows of an FP8 matrix a task has widened).
    F32(&'a [f32]),
}

impl DenseMatrix<'_> {
    /// Whether the matrix has no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            DenseMatrix::Bf16(w) => w.len(),
            DenseMatrix::F16(w) => w.len(),
            DenseMatrix::F32(w) => w.len(),
        }
    }
}

/// A row-major `[m, k]` weight matrix as a product takes it: dense values, or compressed ones
/// widened a few rows at a time inside the product.
#[derive(Debug, Clone, Copy)]
pub enum WeightMatrix<'a> {
    /// Values read in place.
    Dense(DenseMatrix<'a>),
    /// Values kept compressed.
    Compressed(CompressedMatrix<'a>),
}

/// A compressed weight matrix: a byte or half a byte a value, plus scales.
#[derive(Debug, Clone, Copy)]
pub enum CompressedMatrix<'a> {
    /// FP8 e4m3 values and their block scales.
    Fp8(Fp8Matrix<'a>),
    /// MXFP4 values and their power-of-two block scales.
    Mxfp4(Mxfp4Matrix<'a>),
}

impl CompressedMatrix<'_> {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            CompressedMatrix::Fp8(w) => w.len(),
            CompressedMatrix::Mxfp4(w) => w.len(),
        }
    }

    /// Whether the matrix has no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rows `rows` (of `k` values each) as f32 in `out`.
    pub fn widen_rows(&self, rows: Range<usize>, k: usize, out: &mut Vec<f32>) {
        match self {
            CompressedMatrix::Fp8(w) => w.widen_rows(rows, k, out),
            CompressedMatrix::Mxfp4(w) => w.widen_rows(rows, k, out),
        }
    }
}

impl WeightMatrix<'_> {
    /// Whether the matrix has no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            WeightMatrix::Dense(w) => w.len(),
            WeightMatrix::Compressed(w) => w.len(),
        }
    }

    /// The storage format's name (groups of one product share it).
    fn format(&self) -> &'static str {
        match self {
            WeightMatrix::Dense(DenseMatrix::Bf16(_)) => "bf16",
            WeightMatrix::Dense(DenseMatrix::F16(_)) => "f16",
            WeightMatrix::Dense(DenseMatrix::F32(_)) => "f32",
            WeightMatrix::Compressed(CompressedMatrix::Fp8(_)) => "fp8",
            WeightMatrix::Compressed(CompressedMatrix::Mxfp4(_)) => "mxfp4",
        }
    }
}

impl<'a> From<Fp8Matrix<'a>> for WeightMatrix<'a> {
    fn from(w: Fp8Matrix<'a>) -> Self {
        WeightMatrix::Compressed(CompressedMatrix::Fp8(w))
    }
}

impl<'a> From<Mxfp4Matrix<'a>> for WeightMatrix<'a> {
    fn from(w: Mxfp4Matrix<'a>) -> Self {
        WeightMatrix::Compressed(CompressedMatrix::Mxfp4(w))
    }
}

impl<'a> From<DenseMatrix<'a>> for WeightMatrix<'a> {
    fn from(w: DenseMatrix<'a>) -> Self {
        WeightMatrix::Dense(w)
    }
}

/// `out[i, j] = Σ_t x[i, t] · w[j, t]` for `x` `[n, k]` (f32), `w` `[m, k]` and `out` `[n, m]`,
/// on [`active_path`], spread over rayon's threads by blocks of weight rows.
///
/// # Panics
/// When the slice lengths do not match `n`, `k` and `m` (a caller bug, not user input).
pub fn matmul_t(x: &[f32], n: usize, k: usize, w: WeightMatrix<'_>, m: usize, out: &mut [f32]) {
    matmul_t_on(active_path(), x, n, k, w, m, out);
}

/// [`matmul_t`] on an explicit path, falling back to the portable one when the CPU lacks it.
pub fn matmul_t_on(
    path: KernelPath,
    x: &[f32],
    n: usize,
    k: usize,
    w: WeightMatrix<'_>,
    m: usize,
    out: &mut [f32],
) {
    assert_eq!(x.len(), n * k, "x must be [n, k]");
    grouped_on(path, x, k, m, &[RowGroup { rows: 0..n, w }], out);
}

/// Rows of the activations that one weight matrix multiplies: the tokens routed to one expert.
#[derive(Debug, Clone)]
pub struct RowGroup<'a> {
    /// The rows of `x` (and of `out`) this group covers.
    pub rows: Range<usize>,
    /// The group's `[m, k]` weight.
    pub w: WeightMatrix<'a>,
}

/// Many products in one parallel pass: for each group, `out[rows] = x[rows] · wᵀ`, with `x`
/// `[n, k]` and `out` `[n, m]` shared by the groups (the tokens of each routed expert, sorted
/// by expert). The work of every group is spread over the threads together, so small groups
/// (an expert with one token) do not each pay for a fork and join. Rows in no group are left
/// as they are.
///
/// # Panics
/// When the lengths do not fit, or groups overlap (caller bugs, not user input).
pub fn matmul_t_grouped(x: &[f32], k: usize, m: usize, groups: &[RowGroup<'_>], out: &mut [f32]) {
    grouped_on(active_path(), x, k, m, groups, out);
}

fn grouped_on(
    path: KernelPath,
    x: &[f32],
    k: usize,
    m: usize,
    groups: &[RowGroup<'_>],
    out: &mut [f32],
) {
    // Measured per shape for bf16 weights (see `calibrate`); other formats keep the default.
    let min_rows = match groups.first().map(|g| g.w) {
        Some(WeightMatrix::Dense(DenseMatrix::Bf16(_))) if path.supported() => {
            broadcast_min_rows(path, k, m).min_rows
        }
        _ => calibrate::unmeasured_min_rows(path),
    };
    grouped_with(path, min_rows, x, k, m, groups, out);
}

/// [`grouped_on`] with groups of `min_rows` or more rows on the broadcast kernels.
fn grouped_with(
    path: KernelPath,
    min_rows: usize,
    x: &[f32],
    k: usize,
    m: usize,
    groups: &[RowGroup<'_>],
    out: &mut [f32],
) {
    let n = x.len().checked_div(k).unwrap_or(0);
    assert_eq!(x.len(), n * k, "x must be [n, k]");
    assert_eq!(out.len(), n * m, "out must be [n, m]");
    let mut spans: Vec<&Range<usize>> = groups.iter().map(|g| &g.rows).collect();
    spans.sort_by_key(|r| r.start);
    assert!(
        spans.windows(2).all(|p| p[0].end <= p[1].start) && spans.iter().all(|r| r.end <= n),
        "row groups must be disjoint and within x"
    );
    for g in groups {
        assert_eq!(g.w.len(), m * k, "each group's w must be [m, k]");
        assert_eq!(
            g.w.format(),
            groups[0].w.format(),
            "every group's w must have the same format"
        );
    }
    let path = if path.supported() {
        path
    } else {
        KernelPath::Portable
    };
    let x_prep = simd::Activations::prepare(path, groups, x, k, min_rows);
    let threads = rayon::current_num_threads();
    let tasks: Vec<(usize, Range<usize>)> = groups
        .iter()
        .enumerate()
        .filter(|(_, g)| !g.rows.is_empty())
        .flat_map(|(gi, g)| {
            let block = rows_per_task(g.rows.len(), m, threads);
            (0..m.div_ceil(block)).map(move |t| (gi, t * block..((t + 1) * block).min(m)))
        })
        .collect();
    let out_ptr = SharedOut(out.as_mut_ptr());
    tasks.into_par_iter().for_each(|(gi, cols)| {
        let g = &groups[gi];
        let rows = g.rows.clone();
        // SAFETY: `rows` lies within `out` (checked above).
        let group_out = unsafe { out_ptr.get().add(rows.start * m) };
        match g.w {
            WeightMatrix::Dense(w) => {
                let args = tiles::Block {
                    n: rows.len(),
                    k,
                    m,
                    cols,
                    out: group_out,
                };
                // SAFETY: the slices have the lengths checked above; each task writes only
                // its own group's rows at its own columns, which no other task writes (groups
                // are disjoint); the path is supported.
                unsafe { simd::run(path, &x_prep, gi, rows, w, &args) }
            }
            WeightMatrix::Compressed(w) => WIDENED.with_borrow_mut(|widened| {
                // A few weight rows at a time as f32 (kept in L2 while every activation row
                // uses them), each chunk's product written as columns 0.. of an output that
                // starts at the chunk's first column.
                for start in cols.clone().step_by(WIDEN_ROWS) {
                    let chunk = start..(start + WIDEN_ROWS).min(cols.end);
                    w.widen_rows(chunk.clone(), k, widened);
                    let args = tiles::Block {
                        n: rows.len(),
                        k,
                        m,
                        cols: 0..chunk.len(),
                        // SAFETY: `chunk` lies within the `m` columns of every row.
                        out: unsafe { group_out.add(chunk.start) },
                    };
                    let w = DenseMatrix::F32(widened);
                    // SAFETY: as above; `widened` holds `chunk.len()` rows of `k` values.
                    unsafe { simd::run(path, &x_prep, gi, rows.clone(), w, &args) }
                }
            }),
        }
    });
}

/// Compressed weight rows widened at a time: the broadcast kernel's tile of weight rows, and a
/// multiple of every micro-tile's width.
const WIDEN_ROWS: usize = 24;

thread_local! {
    /// Compressed weight rows widened to f32 (at most [`WIDEN_ROWS`] × k values).
    static WIDENED: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Weight rows per parallel task: enough tasks to balance the threads, each a whole number of
/// micro-tile columns, and not so few rows that scheduling costs more than the work.
fn rows_per_task(n: usize, m: usize, threads: usize) -> usize {
    let target_tasks = threads.max(1) * 8;
    let by_balance = m.div_ceil(target_tasks);
    // Small products (decode) want at least ~64 KiB of weights per task; large ones
    // (prefill) keep a task's weights within a core's L2 cache.
    let floor = if n <= 4 { 16 } else { 8 };
    by_balance
        .clamp(floor, 256)
        .next_multiple_of(tiles::COL_ALIGN)
}

/// The output pointer shared by the tasks, each of which writes its own columns.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);

impl SharedOut {
    fn get(self) -> *mut f32 {
        self.0
    }
}

// SAFETY: tasks write disjoint columns through it (see `matmul_t_on`).
unsafe impl Send for SharedOut {}
// SAFETY: as above.
unsafe impl Sync for SharedOut {}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The plain reference: every weight converted to f32, products summed in f64.
    fn reference(x: &[f32], n: usize, k: usize, w: &[f32], m: usize) -> Vec<f32> {
        let mut out = vec![0f32; n * m];
        for i in 0..n {
            for j in 0..m {
                let s: f64 = (0..k)
                    .map(|t| f64::from(x[i * k + t]) * f64::from(w[j * k + t]))
                    .sum();
                out[i * m + j] = s as f32;
            }
        }
        out
    }

    fn random(len: usize, rng: &mut rand::rngs::StdRng) -> Vec<f32> {
        (0..len).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
    }

    /// Compares every supported path with the reference on one shape, for bf16, f16 and FP8
    /// weights. Inputs are rounded to the weight format first, so the only difference left is
    /// the order of f32 accumulation (and bf16 rounding of x on the bf16 dot path, which is
    /// exact here because x is rounded to bf16 too).
    fn check_shape(n: usize, k: usize, m: usize, seed: u64) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let x: Vec<f32> = random(n * k, &mut rng)
            .into_iter()
            .map(|v| bf16::from_f32(v).to_f32())
            .collect();
        let w = random(m * k, &mut rng);
        let wb: Vec<bf16> = w.iter().map(|&v| bf16::from_f32(v)).collect();
        let wh: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
        // FP8: every byte but NaN, blocks of 16 columns (partial at the end), varied scales.
        let block = 16;
        let w8: Vec<u8> = (0..m * k)
            .map(|_| rng.gen_range(0..=0x7Eu8) | rng.gen_range(0..2u8) << 7)
            .collect();
        let s8: Vec<f32> = (0..m * k.div_ceil(block))
            .map(|_| rng.gen_range(1e-3f32..4e-3))
            .collect();
        let fp8 = Fp8Matrix {
            values: &w8,
            scales: &s8,
            block,
        };
        // MXFP4 (rows of whole 32-value blocks only): every nibble, scales 2⁻⁴ to 2⁰.
        let b4: Vec<u8> = (0..m * k / 2).map(|_| rng.gen()).collect();
        let s4: Vec<u8> = (0..m * k / MXFP4_BLOCK)
            .map(|_| rng.gen_range(123..128))
            .collect();
        let mut cases: Vec<(WeightMatrix, Vec<f32>)> = vec![
            (
                DenseMatrix::Bf16(&wb).into(),
                wb.iter().map(|v| v.to_f32()).collect(),
            ),
            (
                DenseMatrix::F16(&wh).into(),
                wh.iter().map(|v| v.to_f32()).collect(),
            ),
            (
                fp8.into(),
                (0..m * k)
                    .map(|i| e4m3_to_f32(w8[i]) * s8[i / k * k.div_ceil(block) + i % k / block])
                    .collect(),
            ),
        ];
        if k.is_multiple_of(MXFP4_BLOCK) {
            let value = |i: usize| {
                let nibble = if i.is_multiple_of(2) {
                    b4[i / 2] & 0x0F
                } else {
                    b4[i / 2] >> 4
                };
                let e2m1 = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0];
                let v = e2m1[usize::from(nibble & 7)] * if nibble & 8 != 0 { -1.0 } else { 1.0 };
                v * e8m0_to_f32(s4[i / MXFP4_BLOCK])
            };
            let mx = Mxfp4Matrix {
                blocks: &b4,
                scales: &s4,
            };
            cases.push((mx.into(), (0..m * k).map(value).collect()));
        }
        for (matrix, exact_w) in &cases {
            let want = reference(&x, n, k, exact_w, m);
            for path in KernelPath::ALL.into_iter().filter(|p| p.supported()) {
                let mut got = vec![f32::NAN; n * m];
                matmul_t_on(path, &x, n, k, *matrix, m, &mut got);
                for (idx, (&g, &r)) in got.iter().zip(&want).enumerate() {
                    // f32 accumulation over k terms of size ≤ 1: error ≤ k·2⁻²⁴ per term.
                    let tol = 1e-6 * (k as f32) + 1e-6;
                    assert!(
                        (g - r).abs() <= tol,
                        "{path:?} {n}×{k}·{m}ᵀ at {idx}: got {g}, want {r}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_path_matches_the_reference_on_awkward_shapes() {
        // One row, one column, sizes that are not multiples of any vector width or tile,
        // a k shorter than one vector, and decode/prefill-like shapes.
        let shapes = [
            (1, 1, 1),
            (1, 7, 1),
            (1, 33, 5),
            (3, 17, 3),
            (5, 31, 9),
            (1, 64, 37),
            (2, 100, 130),
            (7, 65, 67),
            (9, 256, 300),
            (1, 2048, 64),
            (33, 96, 515),
            // Broadcast-kernel shapes: rows from its minimum up, k across chunk boundaries,
            // weight rows past whole 24- and 8-row tiles.
            (12, 130, 31),
            (16, 300, 49),
            (17, 257, 25),
            (40, 16, 80),
        ];
        for (i, &(n, k, m)) in shapes.iter().enumerate() {
            check_shape(n, k, m, i as u64);
        }
    }

    #[test]
    fn grouped_products_match_one_product_per_group() {
        let (k, m) = (37, 19);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let x = random(40 * k, &mut rng);
        let ws: Vec<Vec<bf16>> = (0..4)
            .map(|_| {
                random(m * k, &mut rng)
                    .into_iter()
                    .map(bf16::from_f32)
                    .collect()
            })
            .collect();
        // Rows 0..1, 1..6, 7..10 and 10..40 (row 6 in no group; the last group large enough
        // for the broadcast kernel), listed out of order.
        let spans = [1..6, 7..10, 0..1, 10..40];
        let groups: Vec<RowGroup> = spans
            .iter()
            .zip(&ws)
            .map(|(r, w)| RowGroup {
                rows: r.clone(),
                w: DenseMatrix::Bf16(w).into(),
            })
            .collect();
        for path in KernelPath::ALL.into_iter().filter(|p| p.supported()) {
            let mut got = vec![-7f32; 40 * m];
            grouped_on(path, &x, k, m, &groups, &mut got);
            for (r, w) in spans.iter().zip(&ws) {
                let mut want = vec![0f32; r.len() * m];
                let xs = &x[r.start * k..r.end * k];
                matmul_t_on(
                    path,
                    xs,
                    r.len(),
                    k,
                    DenseMatrix::Bf16(w).into(),
                    m,
                    &mut want,
                );
                assert_eq!(
                    &got[r.start * m..r.end * m],
                    &want[..],
                    "{path:?} rows {r:?}"
                );
            }
            assert!(
                got[6 * m..7 * m].iter().all(|&v| v == -7.0),
                "row 6 untouched"
            );
        }
    }

    #[test]
    #[should_panic(expected = "disjoint")]
    fn overlapping_groups_are_refused() {
        let w = vec![bf16::ONE; 4];
        let groups = [
            RowGroup {
                rows: 0..2,
                w: DenseMatrix::Bf16(&w).into(),
            },
            RowGroup {
                rows: 1..3,
                w: DenseMatrix::Bf16(&w).into(),
            },
        ];
        matmul_t_grouped(&[0.0; 6], 2, 2, &groups, &mut [0.0; 6]);
    }

    #[test]
    fn path_names_round_trip_and_detection_is_supported() {
        for p in KernelPath::ALL {
            assert_eq!(KernelPath::from_name(p.name()), Some(p));
        }
        assert!(KernelPath::detect().supported());
        assert!(KernelPath::Portable.supported());
        assert_eq!(KernelPath::from_name("sse9"), None);
    }

    #[test]
    fn task_blocks_cover_whole_micro_tiles() {
        for (n, m, threads) in [(1, 2048, 2), (128, 50304, 2), (1, 3, 1), (512, 1024, 16)] {
            let b = rows_per_task(n, m, threads);
            assert!(b >= 8 && b.is_multiple_of(tiles::COL_ALIGN), "{b}");
        }
    }
}
