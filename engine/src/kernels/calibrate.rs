//! From how many activation rows the broadcast kernels ([`super::bcast`]) beat the row-tiled
//! ones, measured on this CPU once per process.
//!
//! The crossover differs from machine to machine by more than any fixed number can cover
//! (measured with `examples/kernel_bench.rs`, bf16 weights, 2 threads): on an Intel Xeon whose
//! `vdpbf16ps` issues at half the f32 FMA rate the broadcast kernel wins from 12 rows; on an AMD
//! Zen 5 core the bf16-pairs broadcast kernel wins from 17 rows; on an AMD Zen 4 core the
//! row-tiled `vdpbf16ps` kernel wins up to 64 rows (1.2–2.3× at 12–32 rows). So loading a
//! model on the cpu times both kernels on an expert-sized product at a ladder of row counts
//! and keeps the broadcast kernels from the smallest count after which they are never clearly
//! slower. Without a measurement (kernel tests, products outside a model) the fixed
//! [`super::bcast::MIN_ROWS`] applies, and `MOESCOPE_BCAST_MIN_ROWS` overrides both.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use half::bf16;

use super::{grouped_with, DenseMatrix, KernelPath, RowGroup, WeightMatrix};

/// Row counts timed, and the shared dimension and weight rows of the product timed (an
/// expert-sized product: 1.5 MB of bf16 weights).
const LADDER: [usize; 10] = [12, 16, 24, 32, 48, 64, 96, 128, 192, 256];
const K: usize = 2048;
const M: usize = 384;
/// The row-tiled kernel must be this much faster before it replaces the broadcast kernel, so
/// noise does not move the choice from run to run.
const MARGIN: f64 = 1.2;

/// 0: not measured; otherwise the measured threshold + 1 (`usize::MAX` stays "never").
static MEASURED: AtomicUsize = AtomicUsize::new(0);

/// What a calibration found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BroadcastThreshold {
    /// Groups of at least this many rows take a broadcast kernel (`usize::MAX`: never).
    pub min_rows: usize,
    /// Whether it was measured here, rather than the built-in default or the variable.
    pub measured: bool,
}

/// Groups of at least this many rows take a broadcast kernel on `path`: the variable, else the
/// measurement, else the built-in default.
pub fn broadcast_min_rows(path: KernelPath) -> BroadcastThreshold {
    if !matches!(path, KernelPath::Avx512 | KernelPath::Avx512Bf16) {
        return BroadcastThreshold {
            min_rows: usize::MAX,
            measured: false,
        };
    }
    if let Some(n) = from_env() {
        return BroadcastThreshold {
            min_rows: n,
            measured: false,
        };
    }
    match MEASURED.load(Ordering::Relaxed) {
        0 => BroadcastThreshold {
            min_rows: super::bcast::MIN_ROWS,
            measured: false,
        },
        n => BroadcastThreshold {
            min_rows: if n == usize::MAX { n } else { n - 1 },
            measured: true,
        },
    }
}

/// Measures the threshold on the active path, once per process (later calls return the first
/// answer); a few tens of milliseconds. Call it outside parallel work, e.g. when a model loads.
pub fn calibrate() -> BroadcastThreshold {
    static ONCE: OnceLock<()> = OnceLock::new();
    let path = super::active_path();
    if matches!(path, KernelPath::Avx512 | KernelPath::Avx512Bf16) && from_env().is_none() {
        ONCE.get_or_init(|| {
            let n = measure(path);
            MEASURED.store(if n == usize::MAX { n } else { n + 1 }, Ordering::Relaxed);
        });
    }
    broadcast_min_rows(path)
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

/// The smallest ladder count from which the broadcast kernel is never `MARGIN` × slower.
fn measure(path: KernelPath) -> usize {
    let max_n = LADDER[LADDER.len() - 1];
    let x: Vec<f32> = (0..max_n * K)
        .map(|i| ((i % 97) as f32 - 48.0) / 64.0)
        .collect();
    let w: Vec<bf16> = (0..M * K)
        .map(|i| bf16::from_f32(((i % 89) as f32 - 44.0) / 256.0))
        .collect();
    let mut out = vec![0f32; max_n * M];
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
                &x[..n * K],
                K,
                M,
                &groups,
                &mut out[..n * M],
            );
            best = best.min(start.elapsed().as_secs_f64());
        }
        best
    };
    let mut threshold = usize::MAX;
    for &n in LADDER.iter().rev() {
        let row_tiled = time(n, usize::MAX);
        let broadcast = time(n, 1);
        if broadcast > MARGIN * row_tiled {
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
    fn measurement_settles_on_a_ladder_count_or_never() {
        // `measure`, not `calibrate`: the other kernel tests of this process keep the default.
        for path in [KernelPath::Avx512, KernelPath::Avx512Bf16] {
            if path.supported() {
                let n = measure(path);
                assert!(n == usize::MAX || LADDER.contains(&n), "{path:?}: {n}");
            }
        }
        assert!(!broadcast_min_rows(KernelPath::Portable).measured);
        assert_eq!(broadcast_min_rows(KernelPath::Avx2).min_rows, usize::MAX);
    }
}
