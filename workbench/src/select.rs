//! Choosing expert sets: the top N of a ranking (capped per layer), and random sets of the same
//! size drawn from the same layers, the baseline every steering claim is measured against —
//! also as a whole policy ([`random_counterpart`]).

use std::collections::BTreeMap;

use moescope_engine::RoutingPolicy;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// A (layer, expert) pair; layers are decoder-layer indices.
pub type ExpertId = (usize, usize);

/// Experts in ranking order with positive scores, at most `max_per_layer` from any layer.
/// `rows` are `(layer, expert, score)` already sorted best first.
pub fn candidates(rows: &[(usize, usize, f64)], max_per_layer: usize) -> Vec<(ExpertId, f64)> {
    let mut per_layer: BTreeMap<usize, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for &(layer, expert, score) in rows {
        if !(score.is_finite() && score > 0.0) {
            continue;
        }
        let taken = per_layer.entry(layer).or_default();
        if *taken < max_per_layer {
            *taken += 1;
            out.push(((layer, expert), score));
        }
    }
    out
}

/// For each draw, a random set with as many experts in each layer as `top` has there, never
/// one of `top`'s experts. Seeded by `(seed, top.len(), draw)` so every arm of an experiment
/// compares against the same random sets.
pub fn random_like(top: &[ExpertId], num_experts: usize, seed: u64, draw: usize) -> Vec<ExpertId> {
    let mut counts: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &(l, e) in top {
        counts.entry(l).or_default().push(e);
    }
    let mix = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((top.len() as u64) << 32)
        .wrapping_add(draw as u64);
    let mut rng = StdRng::seed_from_u64(mix);
    let mut out = Vec::with_capacity(top.len());
    for (layer, taken) in counts {
        let mut pool: Vec<usize> = (0..num_experts).filter(|e| !taken.contains(e)).collect();
        pool.shuffle(&mut rng);
        out.extend(pool.into_iter().take(taken.len()).map(|e| (layer, e)));
    }
    out
}

/// The random-experts control of `policy`: the same edits on as many random experts of the
/// same layers (never the edited ones), drawn as [`random_like`] draws them; top-k changes stay.
pub fn random_counterpart(
    policy: &RoutingPolicy,
    num_experts: usize,
    seed: u64,
    draw: usize,
) -> RoutingPolicy {
    let edited = policy.edited_experts();
    let random = random_like(&edited, num_experts, seed, draw);
    // Both lists run layer by layer with the same count in each layer.
    let replacement: BTreeMap<(usize, usize), usize> = edited
        .iter()
        .zip(&random)
        .map(|(&(layer, expert), &(_, other))| ((layer, expert), other))
        .collect();
    policy.with_experts_replaced(&replacement)
}

/// `L3:E7 L5:E2` for tables and reports.
pub fn describe(set: &[ExpertId]) -> String {
    set.iter()
        .map(|(l, e)| format!("L{l}:E{e}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_keep_order_drop_non_positive_and_cap_layers() {
        let rows = [
            (1, 4, 9.0),
            (1, 2, 8.0),
            (1, 7, 7.0),
            (0, 3, 6.0),
            (2, 1, f64::NAN),
            (2, 5, 0.0),
            (3, 0, -1.0),
        ];
        let c = candidates(&rows, 2);
        let ids: Vec<ExpertId> = c.iter().map(|x| x.0).collect();
        assert_eq!(ids, vec![(1, 4), (1, 2), (0, 3)]);
        assert_eq!(candidates(&rows, 5).len(), 4);
    }

    #[test]
    fn random_sets_match_layers_avoid_the_top_set_and_reproduce() {
        let top = vec![(1, 4), (1, 2), (0, 3)];
        for draw in 0..20 {
            let r = random_like(&top, 8, 7, draw);
            assert_eq!(r.len(), 3);
            assert_eq!(r.iter().filter(|x| x.0 == 1).count(), 2);
            assert_eq!(r.iter().filter(|x| x.0 == 0).count(), 1);
            assert!(r.iter().all(|x| !top.contains(x)));
            let layer1: Vec<usize> = r.iter().filter(|x| x.0 == 1).map(|x| x.1).collect();
            assert_ne!(layer1[0], layer1[1], "no expert twice in one layer");
            assert_eq!(r, random_like(&top, 8, 7, draw));
        }
        let draws: std::collections::HashSet<_> =
            (0..20).map(|d| random_like(&top, 8, 7, d)).collect();
        assert!(draws.len() > 5, "draws should differ");
        assert_eq!(describe(&top), "L1:E4 L1:E2 L0:E3");
    }

    #[test]
    fn the_random_counterpart_edits_other_experts_of_the_same_layers_alike() {
        use moescope_engine::{ExpertEdit, Scope};
        let mut p = RoutingPolicy::new();
        p.mask(3, 7).mask(3, 9);
        p.edit(5, 2, ExpertEdit::Scale(2.0), Scope::Generated);
        p.top_k(5, 3, Scope::Both);
        for draw in 0..20 {
            let r = random_counterpart(&p, 16, 1, draw);
            let moved = r.edited_experts();
            assert_eq!(moved.len(), 3);
            assert_eq!(moved.iter().filter(|(l, _)| *l == 3).count(), 2);
            assert!(moved.iter().all(|e| !p.edited_experts().contains(e)));
            let l5 = r.layer(5).unwrap();
            assert_eq!(l5.edits[0].edit, ExpertEdit::Scale(2.0));
            assert_eq!(l5.edits[0].scope, Scope::Generated);
            assert_eq!(l5.top_k, Some((3, Scope::Both)));
            assert_eq!(r, random_counterpart(&p, 16, 1, draw), "seeded");
        }
        assert_ne!(
            random_counterpart(&p, 16, 1, 0),
            random_counterpart(&p, 16, 1, 1)
        );
    }
}
