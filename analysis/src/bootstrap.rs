//! Percentile bootstrap confidence intervals, seeded so that a report reproduces.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A point estimate with a confidence interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// The statistic on the full sample.
    pub value: f64,
    /// Lower end of the interval.
    pub low: f64,
    /// Upper end of the interval.
    pub high: f64,
    /// Number of observations.
    pub n: usize,
}

/// Mean of `values` with a percentile bootstrap interval at `level` (e.g. 0.95).
pub fn bootstrap_mean(values: &[f64], resamples: usize, level: f64, seed: u64) -> Estimate {
    let pairs: Vec<(f64, f64)> = values.iter().map(|&v| (v, 1.0)).collect();
    bootstrap_ratio(&pairs, resamples, level, seed)
}

/// `Σ numerator / Σ denominator` over `(numerator, denominator)` observations (e.g. summed
/// negative log-likelihood over token counts), with a percentile bootstrap interval that
/// resamples whole observations.
pub fn bootstrap_ratio(pairs: &[(f64, f64)], resamples: usize, level: f64, seed: u64) -> Estimate {
    let ratio = |it: &mut dyn Iterator<Item = (f64, f64)>| {
        let (num, den) = it.fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
        if den == 0.0 {
            f64::NAN
        } else {
            num / den
        }
    };
    let n = pairs.len();
    let value = ratio(&mut pairs.iter().copied());
    if n == 0 {
        return Estimate {
            value,
            low: f64::NAN,
            high: f64::NAN,
            n,
        };
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let stats: Vec<f64> = (0..resamples.max(1))
        .map(|_| ratio(&mut (0..n).map(|_| pairs[rng.gen_range(0..n)])))
        .collect();
    percentile_interval(value, stats, level, n)
}

/// The estimate `value` with the central `level` interval of its bootstrap replicates
/// (non-finite replicates dropped).
fn percentile_interval(value: f64, mut stats: Vec<f64>, level: f64, n: usize) -> Estimate {
    stats.retain(|v| v.is_finite());
    if stats.is_empty() {
        return Estimate {
            value,
            low: f64::NAN,
            high: f64::NAN,
            n,
        };
    }
    stats.sort_by(f64::total_cmp);
    let at = |q: f64| stats[((q * (stats.len() - 1) as f64).round() as usize).min(stats.len() - 1)];
    let tail = (1.0 - level) / 2.0;
    Estimate {
        value,
        low: at(tail),
        high: at(1.0 - tail),
        n,
    }
}

/// Mean over a grid of outcomes `draws × items` (e.g. random expert sets × prompts, every row
/// over the same prompts), with a two-level percentile bootstrap interval: each resample draws
/// rows with replacement and, shared across them, items with replacement, so the interval
/// carries both the spread between draws and the sampling of prompts. Rows must have equal
/// length.
pub fn bootstrap_grid_mean(grid: &[Vec<f64>], resamples: usize, level: f64, seed: u64) -> Estimate {
    let (d, n) = (grid.len(), grid.first().map_or(0, Vec::len));
    let n_total = d * n;
    if n_total == 0 || grid.iter().any(|r| r.len() != n) {
        return Estimate {
            value: f64::NAN,
            low: f64::NAN,
            high: f64::NAN,
            n: n_total,
        };
    }
    let value = grid.iter().flatten().sum::<f64>() / n_total as f64;
    let mut rng = StdRng::seed_from_u64(seed);
    let stats: Vec<f64> = (0..resamples.max(1))
        .map(|_| {
            let rows: Vec<usize> = (0..d).map(|_| rng.gen_range(0..d)).collect();
            let items: Vec<usize> = (0..n).map(|_| rng.gen_range(0..n)).collect();
            let sum: f64 = rows
                .iter()
                .map(|&r| items.iter().map(|&i| grid[r][i]).sum::<f64>())
                .sum();
            sum / n_total as f64
        })
        .collect();
    percentile_interval(value, stats, level, n_total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_data_has_a_point_interval() {
        let e = bootstrap_mean(&[1.0; 20], 200, 0.95, 1);
        assert_eq!((e.value, e.low, e.high, e.n), (1.0, 1.0, 1.0, 20));
    }

    #[test]
    fn interval_brackets_the_mean_and_shrinks_with_more_data() {
        let small: Vec<f64> = (0..20).map(|i| f64::from(i % 2)).collect();
        let large: Vec<f64> = (0..2000).map(|i| f64::from(i % 2)).collect();
        let s = bootstrap_mean(&small, 1000, 0.95, 3);
        let l = bootstrap_mean(&large, 1000, 0.95, 3);
        assert_eq!(s.value, 0.5);
        assert!(s.low < 0.5 && s.high > 0.5);
        assert!(l.high - l.low < (s.high - s.low) / 3.0);
        // The textbook interval for p = 0.5, n = 2000 is ±1.96·√(0.25/2000) ≈ ±0.022.
        assert!((l.high - l.low - 0.044).abs() < 0.01, "{l:?}");
        assert_eq!(
            s,
            bootstrap_mean(&small, 1000, 0.95, 3),
            "seeded runs must reproduce"
        );
    }

    #[test]
    fn ratio_weights_by_denominator() {
        // 10 nats over 5 tokens and 2 nats over 5 tokens: 12 / 10, not the mean of 2 and 0.4.
        let e = bootstrap_ratio(&[(10.0, 5.0), (2.0, 5.0)], 100, 0.9, 0);
        assert!((e.value - 1.2).abs() < 1e-12);
    }

    #[test]
    fn grid_mean_spreads_with_disagreeing_draws() {
        let same = vec![vec![0.0, 1.0, 0.0, 1.0]; 5];
        let apart: Vec<Vec<f64>> = (0..5)
            .map(|d| vec![f64::from(u8::from(d % 2 == 0)); 4])
            .collect();
        let s = bootstrap_grid_mean(&same, 2000, 0.95, 4);
        let a = bootstrap_grid_mean(&apart, 2000, 0.95, 4);
        assert_eq!(s.value, 0.5);
        assert_eq!(a.value, 0.6);
        assert_eq!((s.n, a.n), (20, 20));
        // Identical rows: only the prompt sampling varies the mean.
        assert!(s.low < 0.5 && s.high > 0.5);
        // Rows that disagree give a wide interval even though each row is constant.
        assert!(a.low <= 0.2 && a.high >= 0.8, "{a:?}");
        let ragged = bootstrap_grid_mean(&[vec![1.0], vec![]], 10, 0.95, 0);
        assert!(ragged.value.is_nan());
    }
}
