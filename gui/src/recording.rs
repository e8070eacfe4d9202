//! A records folder written by `moescope record`, browsed in the GUI: its sequence list is in
//! memory (small), and each sequence's routing or an expert's page (its tokens, labels and
//! heaviest contexts) come from streaming passes over `routing.parquet`, so memory stays flat
//! whatever the recording's size.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use moescope_analysis::scan::{scan_choices, Needs};
use moescope_analysis::Records;

use crate::error::{require_path, GuiError, Result};
use crate::run_view::RunView;

/// Opens a records folder.
pub fn open(dir: &Path) -> Result<Records> {
    require_path(dir, "a records folder (from `moescope record`)")?;
    Ok(Records::open(dir)?)
}

/// The routing of sequence `seq_index` as a view the heatmap and grid can show.
pub fn sequence_view(records: &Records, seq_index: u32) -> Result<RunView> {
    let info = records
        .sequences
        .iter()
        .find(|s| s.seq_index == seq_index)
        .ok_or_else(|| GuiError::Input(format!("the recording has no sequence {seq_index}")))?;
    let layers: Vec<usize> = records.run.moe_layers.iter().map(|&l| l as usize).collect();
    let mut view = RunView {
        tokens: Vec::new(),
        prompt_len: info.prompt_tokens as usize,
        output: info.generated_text.clone().unwrap_or_default(),
        output_tokens: Vec::new(),
        layers: layers.clone(),
        num_experts: records.run.num_experts as usize,
        choices: vec![Vec::new(); layers.len()],
    };
    let needs = Needs {
        token_text: true,
        sequence: true,
        out_maxabs: false,
    };
    scan_choices(records, needs, |c| {
        if c.seq_index != seq_index {
            return Ok(());
        }
        let p = c.position as usize;
        if c.layer_slot == 0 {
            if view.tokens.len() <= p {
                view.tokens.resize(p + 1, String::new());
            }
            view.tokens[p] = c.token_text.to_string();
        }
        let positions = &mut view.choices[c.layer_slot];
        if positions.len() <= p {
            positions.resize(p + 1, Vec::new());
        }
        positions[p] = c
            .experts
            .iter()
            .map(|&e| u32::from(e))
            .zip(c.weights.iter().copied())
            .collect();
        Ok(())
    })?;
    let n = view.tokens.len();
    for positions in &mut view.choices {
        positions.resize(n, Vec::new());
    }
    view.output_tokens = view
        .tokens
        .get(view.prompt_len..)
        .unwrap_or_default()
        .to_vec();
    Ok(view)
}

/// How often a token text was routed to an expert, against how often it occurs.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenCount {
    /// The token's text.
    pub text: String,
    /// Times it was routed to the expert.
    pub routed: u64,
    /// Times it occurs in the recording (at that layer, i.e. once per position).
    pub seen: u64,
}

impl TokenCount {
    /// Share of its occurrences routed to the expert.
    pub fn rate(&self) -> f64 {
        self.routed as f64 / self.seen.max(1) as f64
    }
}

/// Tokens of one label routed to an expert, against all tokens with that label.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelShare {
    /// The sequences' label (`(none)` for unlabelled ones).
    pub label: String,
    /// Its tokens routed to the expert.
    pub routed: u64,
    /// All its tokens.
    pub tokens: u64,
}

impl LabelShare {
    /// Share of the label's tokens routed to the expert.
    pub fn rate(&self) -> f64 {
        self.routed as f64 / self.tokens.max(1) as f64
    }
}

/// One position where the expert weighs heavily, with the tokens around it.
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    /// The sequence.
    pub seq_index: u32,
    /// The position in it.
    pub position: u32,
    /// The expert's mixing weight there.
    pub weight: f32,
    /// Up to [`CONTEXT_TOKENS`] tokens before it.
    pub before: Vec<String>,
    /// The token.
    pub token: String,
    /// Up to [`CONTEXT_TOKENS`] tokens after it.
    pub after: Vec<String>,
}

/// Token text on one line, as a context snippet shows it: a line break is written `\n`.
pub fn one_line(text: &str) -> String {
    text.replace('\n', "\\n")
}

/// Tokens shown on each side of a context's token.
pub const CONTEXT_TOKENS: u32 = 6;

/// What a recording says about one expert: the tokens it takes (normalised by how often each
/// occurs), its share of each label's tokens, and the contexts where it weighs most.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpertPage {
    /// `(layer, expert)`.
    pub key: (usize, usize),
    /// Tokens routed to it, most often first.
    pub tokens: Vec<TokenCount>,
    /// Its share of each label's tokens, in label order.
    pub labels: Vec<LabelShare>,
    /// The positions with its highest weights, heaviest first.
    pub contexts: Vec<Context>,
}

/// Reads the page of `expert` at decoder layer `layer` in two streaming passes over the
/// recording: counts and the heaviest positions, then the tokens around those.
pub fn expert_page(
    records: &Records,
    layer: usize,
    expert: usize,
    top: usize,
) -> Result<ExpertPage> {
    let slot = records
        .run
        .moe_layers
        .iter()
        .position(|&l| l as usize == layer)
        .ok_or_else(|| {
            GuiError::Input(format!(
                "layer {layer} is not an MoE layer of the recording"
            ))
        })?;
    let label_of: HashMap<u32, String> = records
        .sequences
        .iter()
        .map(|s| {
            let label = s.label.clone().unwrap_or_else(|| "(none)".into());
            (s.seq_index, label)
        })
        .collect();
    let none = String::from("(none)");
    let needs = Needs {
        token_text: true,
        sequence: true,
        out_maxabs: false,
    };
    let mut tokens: HashMap<String, (u64, u64)> = HashMap::new();
    let mut labels: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    // (weight, seq, position), heaviest first, at most `top`.
    let mut heaviest: Vec<(f32, u32, u32)> = Vec::new();
    scan_choices(records, needs, |c| {
        if c.layer_slot != slot {
            return Ok(());
        }
        let label = label_of.get(&c.seq_index).unwrap_or(&none);
        let weight = c
            .experts
            .iter()
            .position(|&e| usize::from(e) == expert)
            .map(|i| c.weights[i]);
        let entry = tokens.entry(c.token_text.to_string()).or_default();
        entry.1 += 1;
        let by_label = labels.entry(label.clone()).or_default();
        by_label.1 += 1;
        if let Some(w) = weight {
            entry.0 += 1;
            by_label.0 += 1;
            let at = heaviest.partition_point(|h| h.0 >= w);
            if at < top {
                heaviest.insert(at, (w, c.seq_index, c.position));
                heaviest.truncate(top);
            }
        }
        Ok(())
    })?;
    // The tokens around each heavy position, read from the first MoE layer's rows.
    let mut around: HashMap<(u32, u32), String> = HashMap::new();
    let wanted = |seq: u32, pos: u32| {
        heaviest
            .iter()
            .any(|&(_, s, p)| s == seq && pos + CONTEXT_TOKENS >= p && pos <= p + CONTEXT_TOKENS)
    };
    scan_choices(records, needs, |c| {
        if c.layer_slot == 0 && wanted(c.seq_index, c.position) {
            around.insert((c.seq_index, c.position), c.token_text.to_string());
        }
        Ok(())
    })?;
    let text = |seq: u32, pos: u32| around.get(&(seq, pos)).cloned();
    let contexts = heaviest
        .iter()
        .map(|&(weight, seq, pos)| Context {
            seq_index: seq,
            position: pos,
            weight,
            before: (pos.saturating_sub(CONTEXT_TOKENS)..pos)
                .filter_map(|p| text(seq, p))
                .collect(),
            token: text(seq, pos).unwrap_or_default(),
            after: (pos + 1..=pos + CONTEXT_TOKENS)
                .filter_map(|p| text(seq, p))
                .collect(),
        })
        .collect();
    let mut tokens: Vec<TokenCount> = tokens
        .into_iter()
        .filter(|(_, (routed, _))| *routed > 0)
        .map(|(text, (routed, seen))| TokenCount { text, routed, seen })
        .collect();
    tokens.sort_by(|a, b| b.routed.cmp(&a.routed).then_with(|| a.text.cmp(&b.text)));
    tokens.truncate(top.max(20));
    Ok(ExpertPage {
        key: (layer, expert),
        tokens,
        labels: labels
            .into_iter()
            .map(|(label, (routed, tokens))| LabelShare {
                label,
                routed,
                tokens,
            })
            .collect(),
        contexts,
    })
}
