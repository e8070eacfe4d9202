//! Local routing consistency: how well a small fixed set of experts covers a segment of
//! consecutive tokens. For each segment of `m` tokens at a layer, SRP ("segment routing best
//! performance") is the share of the segment's expert choices covered by the best k experts (k: the
//! most any of its tokens chose) for that segment, and SCH ("segment cache best hit rate") the share covered by the best
//! `cache` experts. Segments do not cross sequences; a sequence's incomplete last segment is
//! left out.

use crate::error::{AnalysisError, Result};
use crate::records::Records;
use crate::scan::{scan_choices, Needs};
use crate::stats::layer_column;
use crate::table::{Column, Table};

/// Per layer: `segments`, mean `srp` and mean `sch`.
pub fn consistency(records: &Records, segment: usize, cache: usize) -> Result<Table> {
    let e = records.run.num_experts as usize;
    if segment == 0 || cache == 0 || cache > e {
        return Err(AnalysisError::Invalid(format!(
            "segment length must be ≥ 1 and cache size between 1 and {e} (the number of experts); got {segment} and {cache}"
        )));
    }
    let layers = records.run.moe_layers.len();
    let mut counts = vec![vec![0u32; e]; layers];
    let mut filled = vec![0usize; layers];
    // Choices in the current segment, and the most any of its tokens made (top-k can differ
    // by layer and between prompt and generated tokens under a steering profile).
    let mut chosen = vec![0usize; layers];
    let mut widest = vec![0usize; layers];
    let mut seq_of = vec![u32::MAX; layers];
    let mut segments = vec![0u64; layers];
    let mut srp = vec![0f64; layers];
    let mut sch = vec![0f64; layers];
    let mut sorted = vec![0u32; e];
    let needs = Needs {
        sequence: true,
        ..Needs::default()
    };
    scan_choices(records, needs, |c| {
        let l = c.layer_slot;
        if seq_of[l] != c.seq_index {
            seq_of[l] = c.seq_index;
            counts[l].iter_mut().for_each(|x| *x = 0);
            filled[l] = 0;
            chosen[l] = 0;
            widest[l] = 0;
        }
        chosen[l] += c.experts.len();
        widest[l] = widest[l].max(c.experts.len());
        for &x in c.experts {
            counts[l][x as usize] += 1;
        }
        filled[l] += 1;
        if filled[l] == segment {
            sorted.copy_from_slice(&counts[l]);
            sorted.sort_unstable_by(|a, b| b.cmp(a));
            let (k, total) = (widest[l], chosen[l].max(1) as f64);
            let top = |n: usize| {
                sorted[..n.min(e)]
                    .iter()
                    .map(|&x| f64::from(x))
                    .sum::<f64>()
            };
            srp[l] += top(k) / total;
            sch[l] += top(cache) / total;
            segments[l] += 1;
            counts[l].iter_mut().for_each(|x| *x = 0);
            filled[l] = 0;
            chosen[l] = 0;
            widest[l] = 0;
        }
        Ok(())
    })?;
    let mean = |s: &[f64]| -> Vec<f64> {
        s.iter()
            .zip(&segments)
            .map(|(&v, &n)| if n == 0 { f64::NAN } else { v / n as f64 })
            .collect()
    };
    Ok(Table::default()
        .with("layer", layer_column(records))
        .with("segments", Column::Int(segments.clone()))
        .with("srp", Column::Float(mean(&srp)))
        .with("sch", Column::Float(mean(&sch))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::testdata::tiny_records;

    #[test]
    fn segment_coverage_matches_hand_computation() {
        let (_d, rec) = tiny_records();
        let t = consistency(&rec, 2, 1).unwrap();
        assert_eq!(t.floats("segments").unwrap(), vec![2.0, 2.0]);
        let srp = t.floats("srp").unwrap();
        // Layer 0: seq 0 {0,1},{0,1} → 4/4; seq 1 {2,3},{0,2} → 3/4.
        assert!((srp[0] - 0.875).abs() < 1e-12);
        // Layer 1: seq 0 {3,0},{3,1} → 3/4; seq 1 {3,2},{1,0} → 2/4.
        assert!((srp[1] - 0.625).abs() < 1e-12);
        let sch = t.floats("sch").unwrap();
        assert!((sch[1] - 0.375).abs() < 1e-12);
        // Segments longer than every sequence: none complete.
        assert!(consistency(&rec, 3, 1).unwrap().floats("srp").unwrap()[0].is_nan());
        assert!(consistency(&rec, 2, 5).is_err());
    }
}
