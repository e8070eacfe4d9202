//! Activation frequency and load: per (layer, expert) how often it is chosen and with what
//! weight; per layer the entropy and imbalance of the load; co-activation of expert pairs.

use crate::error::Result;
use crate::records::Records;
use crate::scan::{fold_choices, Needs};
use crate::stats::{add_grid, add_into, grid, layer_column, layer_expert_columns, Positions};
use crate::table::{Column, Table};

/// The three tables of `freq`.
#[derive(Debug, Clone, PartialEq)]
pub struct Frequency {
    /// Per (layer, expert): `count`, `rate` (share of the layer's tokens that chose it),
    /// `mean_weight` (over the tokens that chose it).
    pub experts: Table,
    /// Per layer: `tokens`, `entropy` of the load distribution (nats), `normalized_entropy`
    /// (÷ ln E; 1 = perfectly even), `max_over_mean` load.
    pub layers: Table,
    /// Per (layer, expert_a < expert_b) chosen together at least once: `count`, `rate`, `lift`
    /// = p(a and b) / (p(a) p(b)).
    pub coactivation: Table,
}

/// The running counts of [`frequency`], one per worker, added together at the end.
struct Counts {
    count: Vec<Vec<u64>>,
    weight: Vec<Vec<f64>>,
    pairs: Vec<Vec<u64>>,
    tokens: Vec<u64>,
}

impl Counts {
    fn merge(&mut self, other: Counts) {
        add_grid(&mut self.count, &other.count);
        add_grid(&mut self.pairs, &other.pairs);
        add_grid(&mut self.weight, &other.weight);
        add_into(&mut self.tokens, &other.tokens);
    }
}

/// Computes the frequency tables.
pub fn frequency(records: &Records, positions: Positions) -> Result<Frequency> {
    let e = records.run.num_experts as usize;
    let layers = records.run.moe_layers.len();
    let init = || Counts {
        count: grid(records, 0u64),
        weight: grid(records, 0f64),
        pairs: vec![vec![0u64; e * e]; layers],
        tokens: vec![0u64; layers],
    };
    let Counts {
        count,
        weight,
        pairs,
        tokens,
    } = fold_choices(
        records,
        Needs::default(),
        init,
        |s, c| {
            if !positions.admits(c.is_generated) {
                return;
            }
            let l = c.layer_slot;
            s.tokens[l] += 1;
            let (count, weight, pairs) = (&mut s.count[l], &mut s.weight[l], &mut s.pairs[l]);
            for (i, (&x, &w)) in c.experts.iter().zip(c.weights).enumerate() {
                let x = usize::from(x);
                count[x] += 1;
                weight[x] += f64::from(w);
                for &y in &c.experts[i + 1..] {
                    let y = usize::from(y);
                    pairs[x.min(y) * e + x.max(y)] += 1;
                }
            }
        },
        Counts::merge,
    )?;
    let (layer_col, expert_col) = layer_expert_columns(records);
    let rate = |l: usize, c: u64| c as f64 / tokens[l].max(1) as f64;
    let mut counts = Vec::new();
    let mut rates = Vec::new();
    let mut means = Vec::new();
    for l in 0..tokens.len() {
        for x in 0..e {
            counts.push(count[l][x]);
            rates.push(rate(l, count[l][x]));
            means.push(if count[l][x] == 0 {
                f64::NAN
            } else {
                weight[l][x] / count[l][x] as f64
            });
        }
    }
    let experts = Table::default()
        .with("layer", layer_col)
        .with("expert", expert_col)
        .with("count", Column::Int(counts))
        .with("rate", Column::Float(rates))
        .with("mean_weight", Column::Float(means));

    let mut entropy = Vec::new();
    let mut norm = Vec::new();
    let mut imbalance = Vec::new();
    for c in &count {
        let total: u64 = c.iter().sum();
        let h: f64 = c
            .iter()
            .filter(|&&n| n > 0)
            .map(|&n| {
                let p = n as f64 / total as f64;
                -p * p.ln()
            })
            .sum();
        entropy.push(h);
        norm.push(if e > 1 { h / (e as f64).ln() } else { f64::NAN });
        let mean = total as f64 / e as f64;
        let max = c.iter().copied().max().unwrap_or(0) as f64;
        imbalance.push(if mean > 0.0 { max / mean } else { f64::NAN });
    }
    let layers = Table::default()
        .with("layer", layer_column(records))
        .with("tokens", Column::Int(tokens.clone()))
        .with("entropy", Column::Float(entropy))
        .with("normalized_entropy", Column::Float(norm))
        .with("max_over_mean", Column::Float(imbalance));

    let (mut pl, mut pa, mut pb, mut pc, mut pr, mut lift) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for (l, m) in pairs.iter().enumerate() {
        for a in 0..e {
            for b in a + 1..e {
                let n = m[a * e + b];
                if n == 0 {
                    continue;
                }
                pl.push(u64::from(records.run.moe_layers[l]));
                pa.push(a as u64);
                pb.push(b as u64);
                pc.push(n);
                pr.push(rate(l, n));
                lift.push(rate(l, n) / (rate(l, count[l][a]) * rate(l, count[l][b])));
            }
        }
    }
    let coactivation = Table::default()
        .with("layer", Column::Int(pl))
        .with("expert_a", Column::Int(pa))
        .with("expert_b", Column::Int(pb))
        .with("count", Column::Int(pc))
        .with("rate", Column::Float(pr))
        .with("lift", Column::Float(lift))
        .sorted_desc("lift", false);
    Ok(Frequency {
        experts,
        layers,
        coactivation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::testdata::tiny_records;

    #[test]
    fn hand_computed_counts_rates_entropy_and_pairs() {
        let (_dir, rec) = tiny_records();
        let f = frequency(&rec, Positions::All).unwrap();
        // Layer 0 slot: tokens choose {0,1},{0,1},{2,3},{0,2} (see testdata).
        let counts = match f.experts.column("count").unwrap() {
            Column::Int(v) => v.clone(),
            _ => unreachable!(),
        };
        assert_eq!(&counts[..4], &[3, 2, 2, 1]);
        let rates = f.experts.floats("rate").unwrap();
        assert!((rates[0] - 0.75).abs() < 1e-12);
        let mean_w = f.experts.floats("mean_weight").unwrap();
        assert!((mean_w[0] - (0.6 + 0.7 + 0.5) / 3.0).abs() < 1e-6);
        // Load 3,2,2,1 of 8: entropy by hand.
        let h: f64 = [3.0f64, 2.0, 2.0, 1.0]
            .iter()
            .map(|n| -(n / 8.0) * (n / 8.0).ln())
            .sum();
        assert!((f.layers.floats("entropy").unwrap()[0] - h).abs() < 1e-12);
        assert!((f.layers.floats("max_over_mean").unwrap()[0] - 1.5).abs() < 1e-12);
        // Pair (0,1) chosen together twice of 4 tokens: lift = 0.5 / (0.75 * 0.5).
        let t = f.coactivation.filtered(|i| {
            f.coactivation.floats("layer").unwrap()[i] == 0.0
                && f.coactivation.floats("expert_a").unwrap()[i] == 0.0
                && f.coactivation.floats("expert_b").unwrap()[i] == 1.0
        });
        assert_eq!(t.floats("count").unwrap(), vec![2.0]);
        assert!((t.floats("lift").unwrap()[0] - 0.5 / 0.375).abs() < 1e-12);
    }
}
