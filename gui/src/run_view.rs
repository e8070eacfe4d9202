//! What the GUI shows of one generation: the token texts, and per MoE layer the experts each
//! token was routed to with their weights. Built from an engine trace, so the view never
//! holds the model.

use moescope_engine::{SequenceTrace, TextCodec};

/// One generation (prompt and output) with its routing.
#[derive(Debug, Clone, PartialEq)]
pub struct RunView {
    /// Text of every token whose routing is known (prompt, then fed generated tokens).
    pub tokens: Vec<String>,
    /// How many of `tokens` are the prompt.
    pub prompt_len: usize,
    /// The generated text.
    pub output: String,
    /// Text of each generated token (including the last one, which has no routing).
    pub output_tokens: Vec<String>,
    /// Decoder index of each MoE layer, in order.
    pub layers: Vec<usize>,
    /// Routed experts per layer.
    pub num_experts: usize,
    /// `[moe layer][position]`: the chosen experts with their mixing weights, best first (as
    /// many as that layer chose for that token; top-k can differ by layer and position).
    pub choices: Vec<Vec<Vec<(u32, f32)>>>,
}

impl RunView {
    /// The view of a trace, with token texts from `codec`.
    pub fn from_trace(trace: &SequenceTrace, codec: &TextCodec) -> Self {
        let generated = trace.generated.as_ref();
        Self {
            tokens: trace.tokens.iter().map(|&t| codec.token_text(t)).collect(),
            prompt_len: trace.prompt_len,
            output: generated.map(|g| g.text.clone()).unwrap_or_default(),
            output_tokens: generated
                .map(|g| g.tokens.iter().map(|&t| codec.token_text(t)).collect())
                .unwrap_or_default(),
            layers: trace.layers.iter().map(|l| l.layer).collect(),
            num_experts: trace.num_experts,
            choices: trace
                .layers
                .iter()
                .map(|l| {
                    (0..l.positions())
                        .map(|p| {
                            let c = l.choice(p);
                            c.ids
                                .iter()
                                .copied()
                                .zip(c.weights.iter().copied())
                                .collect()
                        })
                        .collect()
                })
                .collect(),
        }
    }

    /// Positions with routing.
    pub fn positions(&self) -> usize {
        self.tokens.len()
    }

    /// The experts and weights of `position` at MoE layer `slot` (index into `layers`).
    /// Empty where nothing was routed (or out of range).
    pub fn choice(&self, slot: usize, position: usize) -> &[(u32, f32)] {
        self.choices
            .get(slot)
            .and_then(|positions| positions.get(position))
            .map_or(&[], Vec::as_slice)
    }

    /// Share of positions routed to each expert, per MoE layer: `[slot][expert]`.
    pub fn load(&self) -> Vec<Vec<f64>> {
        let n = self.positions().max(1) as f64;
        self.choices
            .iter()
            .map(|positions| {
                let mut counts = vec![0f64; self.num_experts];
                for &(e, _) in positions.iter().flatten() {
                    if let Some(c) = counts.get_mut(e as usize) {
                        *c += 1.0;
                    }
                }
                counts.into_iter().map(|c| c / n).collect()
            })
            .collect()
    }

    /// Positions routed to `expert` at MoE layer `slot`, with the expert's weight there.
    pub fn positions_of(&self, slot: usize, expert: u32) -> Vec<(usize, f32)> {
        (0..self.positions())
            .filter_map(|p| {
                self.choice(slot, p)
                    .iter()
                    .find(|&&(e, _)| e == expert)
                    .map(|&(_, w)| (p, w))
            })
            .collect()
    }

    /// The MoE-layer slot of decoder layer `layer`.
    pub fn slot_of(&self, layer: usize) -> Option<usize> {
        self.layers.iter().position(|&l| l == layer)
    }
}

/// Where the steered generation first departs from the baseline (see the workbench's
/// [`moescope_workbench::generation::first_divergence`]), by token text.
pub fn first_divergence(baseline: &[String], steered: &[String]) -> Option<usize> {
    moescope_workbench::generation::first_divergence(baseline, steered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> RunView {
        RunView {
            tokens: vec!["a".into(), "b".into(), "c".into()],
            prompt_len: 2,
            output: "c".into(),
            output_tokens: vec!["c".into()],
            layers: vec![1, 3],
            num_experts: 4,
            choices: vec![
                vec![
                    vec![(0, 0.6), (1, 0.4)],
                    vec![(0, 0.7), (2, 0.3)],
                    vec![(3, 0.5), (0, 0.5)],
                ],
                // Top-1 for the generated token at this layer.
                vec![
                    vec![(1, 0.9), (2, 0.1)],
                    vec![(1, 0.8), (2, 0.2)],
                    vec![(1, 1.0)],
                ],
            ],
        }
    }

    #[test]
    fn choices_loads_and_positions_follow_the_layout() {
        let v = view();
        assert_eq!(v.choice(0, 1), [(0, 0.7), (2, 0.3)]);
        assert!(v.choice(5, 0).is_empty());
        assert!(v.choice(0, 9).is_empty());
        let load = v.load();
        assert_eq!(load[0], vec![1.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0]);
        assert_eq!(load[1], vec![0.0, 1.0, 2.0 / 3.0, 0.0]);
        assert_eq!(v.choice(1, 2), [(1, 1.0)]);
        assert_eq!(v.positions_of(1, 2), vec![(0, 0.1), (1, 0.2)]);
        assert_eq!(v.slot_of(3), Some(1));
        assert_eq!(v.slot_of(2), None);
    }

    #[test]
    fn the_first_divergence_is_the_first_differing_token_or_where_one_output_stops() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let base = s(&["I", " can", "'t"]);
        // " will" differs; "'t" after it coincides by position only.
        assert_eq!(
            first_divergence(&base, &s(&["I", " will", "'t", "!"])),
            Some(1)
        );
        assert_eq!(
            first_divergence(&base, &s(&["I", " can", "'t", "!"])),
            Some(3)
        );
        assert_eq!(first_divergence(&base, &s(&["I"])), Some(1));
        assert_eq!(first_divergence(&base, &base), None);
        assert_eq!(first_divergence(&[], &[]), None);
    }
}
