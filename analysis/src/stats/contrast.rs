//! Risk difference (SteerMoE) and contrast imaging (MoTE): how much more often each expert is
//! chosen on a behaviour set than on a control set, with a two-proportion z-test so signal can
//! be told from noise.

use crate::error::{AnalysisError, Result};
use crate::records::Records;
use crate::scan::{scan_choices, Needs};
use crate::stats::npmi::present_labels;
use crate::stats::{grid, layer_expert_columns, Positions};
use crate::table::{Column, Table};

/// Per (layer, expert): `a1`/`n1` (positions of the behaviour set that chose the expert / all
/// its positions at that layer), `a2`/`n2` (the same for the control set), `p1`, `p2`,
/// `delta` = p1 − p2, `z`, two-sided `p_value`, and `p_bonferroni` (× the number of tests).
/// Unsorted; [`risk_difference`] and [`contrast`] order it.
pub fn set_comparison(
    records: &Records,
    behaviour: &str,
    control: &str,
    positions: Positions,
) -> Result<Table> {
    let labels = records.labels();
    for l in [behaviour, control] {
        if !labels.contains(&Some(l)) {
            return Err(AnalysisError::Invalid(format!(
                "no sequence has label `{l}`; labels present: {}",
                present_labels(records)
            )));
        }
    }
    let layers = records.run.moe_layers.len();
    let mut n = [vec![0u64; layers], vec![0u64; layers]];
    let mut a = [grid(records, 0u64), grid(records, 0u64)];
    let needs = Needs {
        sequence: true,
        ..Needs::default()
    };
    scan_choices(records, needs, |c| {
        if !positions.admits(c.is_generated) {
            return Ok(());
        }
        let set = match labels.get(c.seq_index as usize).copied().flatten() {
            Some(l) if l == behaviour => 0,
            Some(l) if l == control => 1,
            _ => return Ok(()),
        };
        n[set][c.layer_slot] += 1;
        for &e in c.experts {
            a[set][c.layer_slot][e as usize] += 1;
        }
        Ok(())
    })?;
    let (layer_col, expert_col) = layer_expert_columns(records);
    let tests = (layers * records.run.num_experts as usize) as f64;
    let mut cols: [Vec<u64>; 4] = Default::default();
    let mut fl: [Vec<f64>; 6] = Default::default();
    for l in 0..layers {
        for (&a1, &a2) in a[0][l].iter().zip(&a[1][l]) {
            let (n1, n2) = (n[0][l], n[1][l]);
            let (p1, p2) = (ratio(a1, n1), ratio(a2, n2));
            let z = two_proportion_z(a1, n1, a2, n2);
            let p = two_sided_p(z);
            for (c, v) in cols.iter_mut().zip([a1, n1, a2, n2]) {
                c.push(v);
            }
            for (c, v) in fl
                .iter_mut()
                .zip([p1, p2, p1 - p2, z, p, (p * tests).min(1.0)])
            {
                c.push(v);
            }
        }
    }
    let [a1, n1, a2, n2] = cols;
    let [p1, p2, delta, z, p, pb] = fl;
    Ok(Table::default()
        .with("layer", layer_col)
        .with("expert", expert_col)
        .with("delta", Column::Float(delta))
        .with("p1", Column::Float(p1))
        .with("p2", Column::Float(p2))
        .with("z", Column::Float(z))
        .with("p_value", Column::Float(p))
        .with("p_bonferroni", Column::Float(pb))
        .with("a1", Column::Int(a1))
        .with("n1", Column::Int(n1))
        .with("a2", Column::Int(a2))
        .with("n2", Column::Int(n2)))
}

/// Risk difference ranking: by |Δ|, largest first.
pub fn risk_difference(
    records: &Records,
    behaviour: &str,
    control: &str,
    positions: Positions,
) -> Result<Table> {
    Ok(set_comparison(records, behaviour, control, positions)?.sorted_desc("delta", true))
}

/// Contrast ranking: experts that fire more on the behaviour set first (by z).
pub fn contrast(
    records: &Records,
    behaviour: &str,
    control: &str,
    positions: Positions,
) -> Result<Table> {
    Ok(set_comparison(records, behaviour, control, positions)?.sorted_desc("z", false))
}

fn ratio(a: u64, n: u64) -> f64 {
    if n == 0 {
        f64::NAN
    } else {
        a as f64 / n as f64
    }
}

/// z of the pooled two-proportion test; 0 when both proportions are 0 or 1 alike.
pub fn two_proportion_z(a1: u64, n1: u64, a2: u64, n2: u64) -> f64 {
    if n1 == 0 || n2 == 0 {
        return f64::NAN;
    }
    let (p1, p2) = (a1 as f64 / n1 as f64, a2 as f64 / n2 as f64);
    let p = (a1 + a2) as f64 / (n1 + n2) as f64;
    let se = (p * (1.0 - p) * (1.0 / n1 as f64 + 1.0 / n2 as f64)).sqrt();
    if se == 0.0 {
        0.0
    } else {
        (p1 - p2) / se
    }
}

/// Two-sided normal p-value of `z`.
pub fn two_sided_p(z: f64) -> f64 {
    if z.is_nan() {
        f64::NAN
    } else {
        erfc(z.abs() / std::f64::consts::SQRT_2)
    }
}

/// Complementary error function (Chebyshev fit, fractional error below 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::testdata::tiny_records;

    #[test]
    fn risk_difference_matches_hand_computation() {
        let (_d, rec) = tiny_records();
        let t = set_comparison(&rec, "refusal", "comply", Positions::All).unwrap();
        // Layer 0: refusal tokens chose {0,1},{0,1}; comply tokens {2,3},{0,2}.
        let delta = t.floats("delta").unwrap();
        assert_eq!(&delta[..4], &[0.5, 1.0, -1.0, -0.5]);
        assert_eq!(t.floats("n1").unwrap()[0], 2.0);
        let rd = risk_difference(&rec, "refusal", "comply", Positions::All).unwrap();
        assert_eq!(rd.floats("delta").unwrap()[0].abs(), 1.0);
        let c = contrast(&rec, "refusal", "comply", Positions::All).unwrap();
        assert!(c.floats("z").unwrap()[0] > 0.0);
        // Prompt positions only: comply loses its generated token.
        let p = set_comparison(&rec, "refusal", "comply", Positions::Prompt).unwrap();
        assert_eq!(p.floats("n2").unwrap()[0], 1.0);
        assert!(set_comparison(&rec, "refusal", "other", Positions::All).is_err());
    }

    #[test]
    fn z_test_against_known_values() {
        // 60/100 vs 40/100: pooled p = .5, se = sqrt(.25 * .02) = .0707…, z = 2.828…
        let z = two_proportion_z(60, 100, 40, 100);
        assert!((z - 2.828_427).abs() < 1e-5);
        // P(|Z| > 1.96) = 0.05.
        assert!((two_sided_p(1.959_964) - 0.05).abs() < 1e-6);
        assert!((two_sided_p(0.0) - 1.0).abs() < 1e-6);
        assert_eq!(two_proportion_z(5, 5, 3, 3), 0.0);
    }
}
