//! From how many activation rows the broadcast kernels ([`super::bcast`]) beat the row-tiled
//! ones, measured on this CPU for each product shape a model runs.
//!
//! The crossover differs from machine to machine and from shape to shape by more than any fixed
//! number can cover (measured with `examples/kernel_bench.rs`, bf16 weights, 2 threads): on an
//! Intel Xeon whose `vdpbf16ps` issues at half the f32 FMA rate the broadcast kernel wins from
//! 12 rows; on an AMD Zen 5 core the bf16-pairs broadcast kernel wins from 17 rows; on an AMD
//! Zen 4 core the row-tiled `vdpbf16ps` kernel wins an expert's 2048 → 768 product up to 128
//! rows and more, while the broadcast kernel wins a 2048 → 4096 attention projection at 128;
//! on an AMD Zen 3 core (AVX2 only) the AVX2 broadcast kernel wins most shapes from 16 rows
//! and ties the 768 → 2048 one at 128.
//! So with `MOESCOPE_CALIBRATE=1`, once a model has loaded on the cpu ([`enable`]), the first
//! product of each shape
//! `(k, m)` times both kernels on that shape at a ladder of row counts (synthetic values, a
//! fraction of a second in all) and keeps the broadcast kernels from the smallest count after
//! which they are never slower. Otherwise (the default, kernel tests, products outside a
//! model) the fixed [`super::bcast::MIN_ROWS`] (AVX-512) or [`super::bcast::MIN_ROWS_AVX2`]
//! applies, so results do not depend on a timing; `MOESCOPE_BCAST_MIN_ROWS` overrides both.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use half::bf16;

use super::{grouped_with, DenseMatrix, KernelPath, RowGroup, WeightMatrix};

/// Row counts timed.
const LADDER: [usize; 5] = [12, 24, 48, 96, 192];
/// Most arithmetic one timed product may take (2·n·k·m); larger counts of a shape are not timed.
const MAX_FLOP: usize = 1 << 30;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Measured thresholds by (path, k, m).
type Thresholds = HashMap<(KernelPath, usize, usize), usize>;

fn table() -> &'static Mutex<Thresholds> {
    static TABLE: OnceLock<Mutex<Thresholds>> = OnceLock::new();
    TABLE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// From how many rows a product takes a broadcast kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BroadcastThreshold {
    /// Groups of at least this many rows take a broadcast kernel (`usize::MAX`: never).
    pub min_rows: usize,
    /// Whether it was measured on this CPU, rather than the built-in default or the variable.
    pub measured: bool,
}

/// Lets later products measure their thresholds (a model has loaded on the cpu).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// The threshold of a `k → m` product on `path`: the variable, else the measurement (taken now
/// if calibration is enabled and this shape has none), else the built-in default.
pub fn broadcast_min_rows(path: KernelPath, k: usize, m: usize) -> BroadcastThreshold {
    let unmeasured = || BroadcastThreshold {
        min_rows: unmeasured_min_rows(path),
        measured: false,
    };
    if !broadcast_exists(path)
        || from_env().is_some()
        || !ENABLED.load(Ordering::Relaxed)
        || !requested()
    {
        return unmeasured();
    }
    let mut table = table().lock().unwrap_or_else(|e| e.into_inner());
    let min_rows = *table
        .entry((path, k, m))
        .or_insert_with(|| measure(path, k, m));
    BroadcastThreshold {
        min_rows,
        measured: true,
    }
}

/// The threshold without a measurement: none on the portable path, else the variable, else
/// the built-in default.
pub(super) fn unmeasured_min_rows(path: KernelPath) -> usize {
    if !broadcast_exists(path) {
        return usize::MAX;
    }
    from_env().unwrap_or(if path == KernelPath::Avx2 {
        super::bcast::MIN_ROWS_AVX2
    } else {
        super::bcast::MIN_ROWS
    })
}

/// Whether `MOESCOPE_CALIBRATE=1` asks for measured thresholds. Off by default: a measurement
/// is a timing, so two runs could pick different kernels for one product and, with their
/// different order of accumulation, print results that differ in the last bits; by default
/// the same input gives the same output on a machine, run after run.
fn requested() -> bool {
    static VALUE: OnceLock<bool> = OnceLock::new();
    *VALUE.get_or_init(|| std::env::var("MOESCOPE_CALIBRATE").as_deref() == Ok("1"))
}

/// Whether `path` has a broadcast kernel (every x86-64 path but the portable one).
fn broadcast_exists(path: KernelPath) -> bool {
    cfg!(target_arch = "x86_64") && path != KernelPath::Portable
}

/// Every measured threshold so far, as `(k, m, min_rows)`, smallest shapes first.
pub fn measured_thresholds() -> Vec<(usize, usize, usize)> {
    let table = table().lock().unwrap_or_else(|e| e.into_inner());
    let mut all: Vec<_> = table.iter().map(|(&(_, k, m), &n)| (k, m, n)).collect();
    all.sort_unstable();
    all
}

/// `MOESCOPE_BCAST_MIN_ROWS` (`0` turns the broadcast kernels off).
fn from_env() -> Option<usize> {
    static VALUE: OnceLock<Option<usize>> = OnceLock::new();
    *VALUE.get_or_init(|| {
        std::env::var("MOESCOPE_BCAST_MIN_ROWS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(|n: usize| if n == 0 { usize::MAX } else { n })
    })
}

/// Times both kernels on a `k → m` product at each ladder count within [`MAX_FLOP`] (best of
/// three) and returns the smallest count from which the broadcast kernel is never slower;
/// twice the largest count timed when it is slower even there.
fn measure(path: KernelPath, k: usize, m: usize) -> usize {
    let counts: Vec<usize> = LADDER
        .iter()
        .copied()
        .filter(|&n| n == LADDER[0] || 2 * n * k * m <= MAX_FLOP)
        .collect();
    let max_n = counts[counts.len() - 1];
    let x: Vec<f32> = (0..max_n * k)
        .map(|i| ((i % 97) as f32 - 48.0) / 64.0)
        .collect();
    let w: Vec<bf16> = (0..m * k)
        .map(|i| bf16::from_f32(((i % 89) as f32 - 44.0) / 256.0))
        .collect();
    let mut out = vec![0f32; max_n * m];
    let mut time = |n: usize, min_rows: usize| -> f64 {
        let groups = [RowGroup {
            rows: 0..n,
            w: WeightMatrix::Dense(DenseMatrix::Bf16(&w)),
        }];
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let start = Instant::now();
            grouped_with(
                path,
                min_rows,
                &x[..n * k],
                k,
                m,
                &groups,
                &mut out[..n * m],
            );
            best = best.min(start.elapsed().as_secs_f64());
        }
        best
    };
    let mut threshold = 2 * max_n;
    for &n in counts.iter().rev() {
        if time(n, 1) > time(n, usize::MAX) {
            break;
        }
        threshold = n;
    }
    threshold
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measurement_settles_on_a_ladder_count_or_beyond() {
        // `measure`, not `broadcast_min_rows` after `enable`: the other kernel tests of this
        // process keep the default.
        for path in [KernelPath::Avx2, KernelPath::Avx512, KernelPath::Avx512Bf16] {
            if path.supported() {
                for (k, m) in [(64, 48), (512, 256)] {
                    let n = measure(path, k, m);
                    assert!(LADDER.contains(&n) || n == 2 * LADDER[4], "{path:?}: {n}");
                }
            }
        }
        let portable = broadcast_min_rows(KernelPath::Portable, 64, 64);
        assert!(!portable.measured);
        assert_eq!(portable.min_rows, usize::MAX);
    }
}
