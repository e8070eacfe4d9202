//! Super experts: the few experts whose down-projection output has rare, extreme outliers
//! (they create massive activations and attention sinks). Detected from the recorded per-token
//! max |down_proj output| of each chosen expert over a calibration set.

use crate::error::{AnalysisError, Result};
use crate::records::Records;
use crate::scan::{scan_choices, Needs};
use crate::stats::{grid, layer_expert_columns};
use crate::table::{Column, Table};

/// Per (layer, expert): `max_abs` (largest output magnitude seen), `count` (tokens routed to
/// it), `ratio` = max_abs ÷ the median max_abs of the layer's experts, and `flagged` (1 when
/// ratio ≥ `factor`). Sorted by ratio, largest first.
pub fn super_experts(records: &Records, factor: f64) -> Result<Table> {
    if factor.is_nan() || factor <= 1.0 {
        return Err(AnalysisError::Invalid(format!(
            "--factor must be above 1 (how many times the layer's median an expert's peak must reach); got {factor}"
        )));
    }
    let mut max = grid(records, 0f64);
    let mut count = grid(records, 0u64);
    let needs = Needs {
        out_maxabs: true,
        ..Needs::default()
    };
    scan_choices(records, needs, |c| {
        for (&e, &m) in c.experts.iter().zip(c.out_maxabs) {
            let cell = &mut max[c.layer_slot][e as usize];
            *cell = cell.max(f64::from(m));
            count[c.layer_slot][e as usize] += 1;
        }
        Ok(())
    })?;
    let (layer_col, expert_col) = layer_expert_columns(records);
    let (mut peak, mut n, mut ratio, mut flagged) = (vec![], vec![], vec![], vec![]);
    for (l, row) in max.iter().enumerate() {
        let mut seen: Vec<f64> = (0..row.len())
            .filter(|&e| count[l][e] > 0)
            .map(|e| row[e])
            .collect();
        seen.sort_by(f64::total_cmp);
        let median = match seen.len() {
            0 => f64::NAN,
            m if m % 2 == 1 => seen[m / 2],
            m => (seen[m / 2 - 1] + seen[m / 2]) / 2.0,
        };
        for (e, &v) in row.iter().enumerate() {
            let r = if count[l][e] == 0 || median <= 0.0 {
                f64::NAN
            } else {
                v / median
            };
            peak.push(if count[l][e] == 0 { f64::NAN } else { v });
            n.push(count[l][e]);
            ratio.push(r);
            flagged.push(u64::from(r >= factor));
        }
    }
    Ok(Table::default()
        .with("layer", layer_col)
        .with("expert", expert_col)
        .with("ratio", Column::Float(ratio))
        .with("max_abs", Column::Float(peak))
        .with("count", Column::Int(n))
        .with("flagged", Column::Int(flagged))
        .sorted_desc("ratio", false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::testdata::tiny_records;

    #[test]
    fn outlier_expert_is_flagged() {
        let (_d, rec) = tiny_records();
        let t = super_experts(&rec, 5.0).unwrap();
        // Layer 1 peaks [2, 2, 500, 1], median 2: expert 2 at 250×, alone flagged; layer 0
        // peaks [1, 2, 2, 2]: nothing.
        let flagged = t.filtered(|i| t.floats("flagged").unwrap()[i] == 1.0);
        assert_eq!(flagged.floats("layer").unwrap(), vec![1.0]);
        assert_eq!(flagged.floats("expert").unwrap(), vec![2.0]);
        assert_eq!(flagged.floats("ratio").unwrap(), vec![250.0]);
        assert_eq!(t.floats("ratio").unwrap()[0], 250.0);
        assert!(super_experts(&rec, 0.5).is_err());
    }
}
