//! Attribution tables: per (layer, expert), the drop in a metric when the expert is masked
//! (ablation) beside its first-order estimate from gate gradients, and how well the two
//! rankings agree (Spearman's ρ).

use crate::table::{Column, Table};

/// One expert's two attributions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExpertAttribution {
    /// Decoder layer.
    pub layer: usize,
    /// Expert id.
    pub expert: usize,
    /// Metric without intervention minus metric with the expert masked: positive when the
    /// expert supports the metric.
    pub ablation_drop: f64,
    /// ∂metric/∂gate at gate 1: the first-order drop when the expert's output is removed.
    pub first_order_drop: f64,
}

/// The ranking table, largest ablation drop first, with the rank of each expert under both
/// methods.
pub fn attribution_table(rows: &[ExpertAttribution]) -> Table {
    let ablation: Vec<f64> = rows.iter().map(|r| r.ablation_drop).collect();
    let first: Vec<f64> = rows.iter().map(|r| r.first_order_drop).collect();
    let rank_desc = |v: &[f64]| -> Vec<u64> {
        ranks(&v.iter().map(|x| -x).collect::<Vec<_>>())
            .into_iter()
            .map(|r| r.round() as u64)
            .collect()
    };
    Table::default()
        .with(
            "layer",
            Column::Int(rows.iter().map(|r| r.layer as u64).collect()),
        )
        .with(
            "expert",
            Column::Int(rows.iter().map(|r| r.expert as u64).collect()),
        )
        .with("ablation_drop", Column::Float(ablation.clone()))
        .with("first_order_drop", Column::Float(first.clone()))
        .with("ablation_rank", Column::Int(rank_desc(&ablation)))
        .with("first_order_rank", Column::Int(rank_desc(&first)))
        .sorted_desc("ablation_drop", false)
}

/// 1-based ranks of `v` in ascending order, ties sharing their average rank; NaN ranks last.
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (v[a], v[b]);
        x.is_nan().cmp(&y.is_nan()).then(x.total_cmp(&y))
    });
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rank correlation of `a` and `b` (Pearson correlation of their ranks); NaN when
/// either is constant or they differ in length.
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    if a.len() != b.len() || a.len() < 2 {
        return f64::NAN;
    }
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    if saa == 0.0 || sbb == 0.0 {
        f64::NAN
    } else {
        sab / (saa * sbb).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_known_answers() {
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 30.0, 40.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[4.0, 3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        // Monotone but not linear still gives 1.
        assert!((spearman(&[1.0, 2.0, 3.0], &[1.0, 8.0, 27.0]) - 1.0).abs() < 1e-12);
        // Hand-computed with a tie: ranks a = [1, 2.5, 2.5, 4], b = [1, 3, 2, 4] → ρ = 4.5/√(4.5·5).
        let rho = spearman(&[1.0, 5.0, 5.0, 9.0], &[0.1, 0.3, 0.2, 0.4]);
        assert!((rho - 4.5 / (4.5f64 * 5.0).sqrt()).abs() < 1e-12, "{rho}");
        assert!(spearman(&[1.0, 1.0], &[1.0, 2.0]).is_nan());
        assert!(spearman(&[1.0], &[1.0]).is_nan());
    }

    #[test]
    fn table_sorts_by_ablation_and_ranks_both() {
        let rows = [
            ExpertAttribution {
                layer: 0,
                expert: 0,
                ablation_drop: 0.5,
                first_order_drop: 0.1,
            },
            ExpertAttribution {
                layer: 0,
                expert: 1,
                ablation_drop: 2.0,
                first_order_drop: 0.3,
            },
            ExpertAttribution {
                layer: 1,
                expert: 0,
                ablation_drop: -1.0,
                first_order_drop: 0.2,
            },
        ];
        let t = attribution_table(&rows);
        assert_eq!(t.floats("ablation_drop").unwrap(), vec![2.0, 0.5, -1.0]);
        assert_eq!(t.floats("ablation_rank").unwrap(), vec![1.0, 2.0, 3.0]);
        assert_eq!(t.floats("first_order_rank").unwrap(), vec![1.0, 3.0, 2.0]);
    }
}
