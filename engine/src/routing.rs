//! The routing step of the shared MoE block: router logits → chosen experts and their mixing
//! weights. Every architecture differs here only by its [`RoutingRule`]; interventions come
//! from a [`crate::policy::RoutingPolicy`].

/// How router logits become per-expert scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scoring {
    /// `softmax(logits)` (Mixtral, OLMoE, Qwen, DeepSeek-V2).
    Softmax,
    /// `sigmoid(logits)` per expert (DeepSeek-V3).
    Sigmoid,
}

impl Scoring {
    /// Scores one row of router logits into `out` (same length): the per-expert router
    /// probabilities that choice and mixing weights start from.
    pub fn score_into(self, logits: &[f32], out: &mut [f32]) {
        match self {
            Scoring::Softmax => softmax_into(logits, out),
            Scoring::Sigmoid => {
                for (s, &x) in out.iter_mut().zip(logits) {
                    *s = 1.0 / (1.0 + (-x).exp());
                }
            }
        }
    }
}

/// How a group of experts is scored for group-limited routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupScore {
    /// The best expert score in the group (DeepSeek-V2).
    Max,
    /// The sum of the two best expert scores in the group (DeepSeek-V3).
    SumTop2,
}

/// Group-limited routing: experts are split into `groups` equal groups and only the
/// `top_groups` best groups may supply the chosen experts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupLimit {
    /// Number of expert groups (`n_group`).
    pub groups: usize,
    /// Groups kept per token (`topk_group`).
    pub top_groups: usize,
    /// How a group is scored.
    pub score: GroupScore,
}

/// How an architecture turns router logits into the chosen experts and their weights:
/// score the experts, add the per-expert selection bias (choice only, never weights), keep
/// the best groups, take the top k, renormalise if asked, scale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoutingRule {
    /// Softmax or sigmoid scores.
    pub scoring: Scoring,
    /// Renormalise the chosen weights to sum to one.
    pub norm_topk_prob: bool,
    /// Multiplies the final weights (`routed_scaling_factor`; 1 elsewhere).
    pub scaling: f32,
    /// Group-limited routing, if the architecture uses it.
    pub group_limit: Option<GroupLimit>,
}

/// The experts chosen for a batch of tokens at one layer, `top_k` per token, best first.
#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    /// Number of experts chosen per token.
    pub top_k: usize,
    /// Expert ids, row-major `[tokens, top_k]`.
    pub ids: Vec<u32>,
    /// Mixing weights, row-major `[tokens, top_k]`.
    pub weights: Vec<f32>,
}

impl Routing {
    /// Number of tokens routed.
    pub fn num_tokens(&self) -> usize {
        self.ids.len() / self.top_k.max(1)
    }
}

impl std::fmt::Display for RoutingRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scoring = match self.scoring {
            Scoring::Softmax => "softmax",
            Scoring::Sigmoid => "sigmoid",
        };
        write!(
            f,
            "{scoring} scores, norm_topk_prob={}",
            self.norm_topk_prob
        )?;
        if self.scaling != 1.0 {
            write!(f, ", weights × {}", self.scaling)?;
        }
        if let Some(g) = &self.group_limit {
            let score = match g.score {
                GroupScore::Max => "best expert",
                GroupScore::SumTop2 => "sum of best two",
            };
            write!(
                f,
                ", best {} of {} groups by {score}",
                g.top_groups, g.groups
            )?;
        }
        Ok(())
    }
}

impl RoutingRule {
    /// Softmax scores, top-k, optional renormalisation: the rule of Mixtral, OLMoE and Qwen.
    pub fn softmax(norm_topk_prob: bool) -> Self {
        Self {
            scoring: Scoring::Softmax,
            norm_topk_prob,
            scaling: 1.0,
            group_limit: None,
        }
    }

    /// Chooses `top_k` experts per row of `logits` (row-major `[tokens, num_experts]`).
    /// `selection_bias` is added to the scores for choosing only. An expert whose logit is −∞
    /// (masked) is never chosen and does not count towards its group's score; `forced` experts
    /// are always chosen (first) and their groups kept. Ties go to the lower expert id.
    pub fn route(
        &self,
        logits: &[f32],
        num_experts: usize,
        top_k: usize,
        selection_bias: Option<&[f32]>,
        forced: &[usize],
    ) -> Routing {
        let tokens = logits.len() / num_experts;
        let mut ids = Vec::with_capacity(tokens * top_k);
        let mut weights = Vec::with_capacity(tokens * top_k);
        let mut scores = vec![0f32; num_experts];
        let mut choice = vec![0f32; num_experts];
        let mut order: Vec<usize> = Vec::with_capacity(num_experts);
        for row in logits.chunks_exact(num_experts) {
            self.scoring.score_into(row, &mut scores);
            for (e, c) in choice.iter_mut().enumerate() {
                *c = if row[e] == f32::NEG_INFINITY {
                    f32::NEG_INFINITY
                } else {
                    scores[e] + selection_bias.map_or(0.0, |b| b[e])
                };
            }
            for &e in forced {
                choice[e] = f32::INFINITY;
            }
            if let Some(g) = &self.group_limit {
                keep_best_groups(&mut choice, g, &mut order);
            }
            top_k_indices(&choice, top_k, &mut order);
            let chosen: Vec<f32> = order.iter().map(|&e| scores[e]).collect();
            let denom = if self.norm_topk_prob {
                chosen.iter().sum::<f32>() + 1e-20
            } else {
                1.0
            };
            for (&e, &w) in order.iter().zip(&chosen) {
                ids.push(e as u32);
                weights.push(w / denom * self.scaling);
            }
        }
        Routing {
            top_k,
            ids,
            weights,
        }
    }
}

/// Sets the choice scores of every expert outside the best `top_groups` groups to −∞.
fn keep_best_groups(choice: &mut [f32], g: &GroupLimit, order: &mut Vec<usize>) {
    let size = choice.len() / g.groups;
    let group_scores: Vec<f32> = choice
        .chunks_exact(size)
        .map(|group| match g.score {
            GroupScore::Max => group.iter().copied().fold(f32::NEG_INFINITY, f32::max),
            GroupScore::SumTop2 => {
                let mut best = [f32::NEG_INFINITY; 2];
                for &c in group {
                    if c > best[0] {
                        best = [c, best[0]];
                    } else if c > best[1] {
                        best[1] = c;
                    }
                }
                best[0] + best[1]
            }
        })
        .collect();
    top_k_indices(&group_scores, g.top_groups, order);
    for (gi, group) in choice.chunks_exact_mut(size).enumerate() {
        if !order.contains(&gi) {
            group.fill(f32::NEG_INFINITY);
        }
    }
}

/// Numerically stable softmax of `row` into `out`.
fn softmax_into(row: &[f32], out: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for (o, &x) in out.iter_mut().zip(row) {
        *o = (x - max).exp();
        sum += *o;
    }
    for o in out.iter_mut() {
        *o /= sum;
    }
}

/// Indices of the `k` largest values, largest first, ties to the lower index.
fn top_k_indices(values: &[f32], k: usize, order: &mut Vec<usize>) {
    order.clear();
    order.extend(0..values.len());
    let key = |i: usize| {
        if values[i].is_nan() {
            f32::NEG_INFINITY
        } else {
            values[i]
        }
    };
    order.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
    order.truncate(k);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_top2_renormalised_by_hand() {
        // logits ln(1), ln(2), ln(3), ln(4): probabilities 0.1, 0.2, 0.3, 0.4.
        let logits: Vec<f32> = [1f32, 2., 3., 4.].iter().map(|x| x.ln()).collect();
        let r = RoutingRule::softmax(true).route(&logits, 4, 2, None, &[]);
        assert_eq!(r.ids, vec![3, 2]);
        assert!((r.weights[0] - 4. / 7.).abs() < 1e-6);
        assert!((r.weights[1] - 3. / 7.).abs() < 1e-6);
        let r = RoutingRule::softmax(false).route(&logits, 4, 2, None, &[]);
        assert!((r.weights[0] - 0.4).abs() < 1e-6);
        assert!((r.weights[1] - 0.3).abs() < 1e-6);
    }

    #[test]
    fn sigmoid_bias_chooses_but_never_weights() {
        // Logits 0 for all four experts: every sigmoid score is 0.5. The bias makes expert 2
        // and 0 the choice; weights stay the unbiased scores, renormalised and scaled.
        let rule = RoutingRule {
            scoring: Scoring::Sigmoid,
            norm_topk_prob: true,
            scaling: 2.5,
            group_limit: None,
        };
        let r = rule.route(&[0.0; 4], 4, 2, Some(&[0.2, 0.0, 0.3, -0.1]), &[]);
        assert_eq!(r.ids, vec![2, 0]);
        assert!((r.weights[0] - 1.25).abs() < 1e-6 && (r.weights[1] - 1.25).abs() < 1e-6);
    }

    /// Logits whose sigmoid scores are, for eight experts in four groups of two,
    /// 0.9, 0.1 | 0.5, 0.5 | 0.8, 0.05 | 0.3, 0.2.
    fn grouped_logits() -> Vec<f32> {
        let scores = [0.9f32, 0.1, 0.5, 0.5, 0.8, 0.05, 0.3, 0.2];
        scores.iter().map(|s| (s / (1.0 - s)).ln()).collect()
    }

    /// Sigmoid routing keeping the best two of four groups, unnormalised.
    fn grouped_sigmoid(score: GroupScore) -> RoutingRule {
        RoutingRule {
            scoring: Scoring::Sigmoid,
            norm_topk_prob: false,
            scaling: 1.0,
            group_limit: Some(GroupLimit {
                groups: 4,
                top_groups: 2,
                score,
            }),
        }
    }

    #[test]
    fn group_limit_keeps_the_best_groups_by_hand() {
        let (logits, rule) = (grouped_logits(), grouped_sigmoid);
        // Sum of top two: groups score 1.0, 1.0, 0.85, 0.5 → groups 0 and 1 → experts 0, 2.
        let r = rule(GroupScore::SumTop2).route(&logits, 8, 2, None, &[]);
        assert_eq!(r.ids, vec![0, 2]);
        // Max: groups score 0.9, 0.5, 0.8, 0.3 → groups 0 and 2 → experts 0, 4.
        let r = rule(GroupScore::Max).route(&logits, 8, 2, None, &[]);
        assert_eq!(r.ids, vec![0, 4]);
        // Masking expert 0 rescores its group without it: 0.1 + (−∞) for sum-top-2, so groups
        // 1 and 2 win → experts 4 then 2 (0.8 > 0.5).
        let mut masked = logits.clone();
        masked[0] = f32::NEG_INFINITY;
        let r = rule(GroupScore::SumTop2).route(&masked, 8, 2, None, &[]);
        assert_eq!(r.ids, vec![4, 2]);
    }

    #[test]
    fn forced_expert_keeps_its_group_under_group_limits() {
        // Forcing expert 7 (group 3, the worst) keeps group 3 and the best
        // other group (0), so the choice is 7 first, then 0.
        let (logits, rule) = (grouped_logits(), grouped_sigmoid(GroupScore::SumTop2));
        let r = rule.route(&logits, 8, 2, None, &[7]);
        assert_eq!(r.ids, vec![7, 0]);
        assert!((r.weights[0] - 0.2).abs() < 1e-6 && (r.weights[1] - 0.9).abs() < 1e-6);
    }
}
