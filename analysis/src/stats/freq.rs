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

/// Tokens per layer between spills of the u32 pair counts: a token adds at most k(k−1)/2 to
/// a cell, so no cell can overflow for any top-k up to 45.
const SPILL_EVERY: u32 = 1 << 22;

/// Tokens buffered per layer before their pairs are counted.
const BUFFERED: usize = 2048;

/// Co-activation counts per layer: how often each pair of experts is chosen by one token.
///
/// This is the hot loop of `freq`: k(k−1)/2 increments per token into an E×E table per layer,
/// and consecutive choices belong to different layers. So with up to 64 experts each token's
/// choice is buffered as a bit mask and a layer's buffer is counted in one go while its table
/// sits in the core's L1 cache (measured: the counting's share of a 100M-row `freq` fell from
/// 27% to 17%). Counts are u32, spilled into u64 every [`SPILL_EVERY`] tokens.
struct PairCounts {
    experts: usize,
    pairs: Vec<Vec<u32>>,
    masks: Vec<Vec<u64>>,
    /// Tokens counted into `pairs[l]` since its last spill.
    unspilled: Vec<u32>,
    spilled: Vec<Vec<u64>>,
}

impl PairCounts {
    fn new(layers: usize, experts: usize) -> Self {
        Self {
            experts,
            pairs: vec![vec![0; experts * experts]; layers],
            masks: vec![Vec::with_capacity(BUFFERED); layers],
            unspilled: vec![0; layers],
            spilled: vec![vec![0; experts * experts]; layers],
        }
    }

    /// Counts the pairs among one token's `chosen` experts at layer `l`.
    fn add(&mut self, l: usize, chosen: &[u16]) {
        if self.unspilled[l] == SPILL_EVERY {
            self.spill(l);
        }
        self.unspilled[l] += 1;
        if self.experts <= 64 {
            let mask = chosen.iter().fold(0u64, |m, &x| m | 1 << x);
            self.masks[l].push(mask);
            if self.masks[l].len() == BUFFERED {
                self.count_masks(l);
            }
            return;
        }
        let (e, table) = (self.experts, &mut self.pairs[l]);
        for (i, &x) in chosen.iter().enumerate() {
            for &y in &chosen[i + 1..] {
                let (a, b) = (usize::from(x.min(y)), usize::from(x.max(y)));
                table[a * e + b] += 1;
            }
        }
    }

    /// Counts layer `l`'s buffered masks into its table.
    fn count_masks(&mut self, l: usize) {
        let table = &mut self.pairs[l];
        for &mask in &self.masks[l] {
            let mut rest = mask;
            while rest != 0 {
                let row = rest.trailing_zeros() as usize * self.experts;
                rest &= rest - 1;
                let mut others = rest;
                while others != 0 {
                    table[row + others.trailing_zeros() as usize] += 1;
                    others &= others - 1;
                }
            }
        }
        self.masks[l].clear();
    }

    /// Moves layer `l`'s u32 counts into the u64 ones.
    fn spill(&mut self, l: usize) {
        self.count_masks(l);
        for (wide, narrow) in self.spilled[l].iter_mut().zip(&mut self.pairs[l]) {
            *wide += u64::from(std::mem::take(narrow));
        }
        self.unspilled[l] = 0;
    }

    /// Every layer's `[a * E + b]` counts for a < b.
    fn into_counts(mut self) -> Vec<Vec<u64>> {
        for l in 0..self.pairs.len() {
            self.spill(l);
        }
        self.spilled
    }
}

/// The running counts of [`frequency`], one per worker, added together at the end.
struct Counts {
    count: Vec<Vec<u64>>,
    weight: Vec<Vec<f64>>,
    pairs: PairCounts,
    tokens: Vec<u64>,
}

impl Counts {
    fn new(records: &Records) -> Self {
        let layers = records.run.moe_layers.len();
        Self {
            count: grid(records, 0u64),
            weight: grid(records, 0f64),
            pairs: PairCounts::new(layers, records.run.num_experts as usize),
            tokens: vec![0u64; layers],
        }
    }

    fn merge(&mut self, other: Counts) {
        add_grid(&mut self.count, &other.count);
        add_grid(&mut self.weight, &other.weight);
        add_into(&mut self.tokens, &other.tokens);
        add_grid(&mut self.pairs.spilled, &other.pairs.into_counts());
    }
}

/// Computes the frequency tables.
pub fn frequency(records: &Records, positions: Positions) -> Result<Frequency> {
    let e = records.run.num_experts as usize;
    let Counts {
        count,
        weight,
        pairs,
        tokens,
    } = fold_choices(
        records,
        Needs::default(),
        || Counts::new(records),
        |s, c| {
            if !positions.admits(c.is_generated) {
                return;
            }
            let l = c.layer_slot;
            s.tokens[l] += 1;
            let (count, weight) = (&mut s.count[l], &mut s.weight[l]);
            for (&x, &w) in c.experts.iter().zip(c.weights) {
                count[usize::from(x)] += 1;
                weight[usize::from(x)] += f64::from(w);
            }
            s.pairs.add(l, c.experts);
        },
        Counts::merge,
    )?;
    let pairs = pairs.into_counts();
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
    fn pair_counts_match_naive_counting_through_buffers_and_spills() {
        use rand::{rngs::StdRng, seq::index::sample, SeedableRng};
        for experts in [16usize, 64, 80] {
            let mut rng = StdRng::seed_from_u64(experts as u64);
            let mut counts = PairCounts::new(2, experts);
            let mut naive = vec![vec![0u64; experts * experts]; 2];
            for t in 0..5 * BUFFERED + 7 {
                let l = t % 2;
                let chosen: Vec<u16> = sample(&mut rng, experts, 6)
                    .into_iter()
                    .map(|x| x as u16)
                    .collect();
                for (i, &a) in chosen.iter().enumerate() {
                    for &b in &chosen[i + 1..] {
                        naive[l][usize::from(a.min(b)) * experts + usize::from(a.max(b))] += 1;
                    }
                }
                counts.add(l, &chosen);
                if t == 3 * BUFFERED + 1 {
                    counts.spill(1); // a spill in the middle loses nothing
                }
            }
            assert_eq!(counts.into_counts(), naive, "{experts} experts");
        }
    }

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
