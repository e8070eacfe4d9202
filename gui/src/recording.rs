//! A records folder written by `moescope record`, browsed in the GUI: its sequence list is in
//! memory (small), and each sequence's routing or an expert's top tokens come from one
//! streaming pass over `routing.parquet`, so memory stays flat whatever the recording's size.

use std::collections::HashMap;
use std::path::Path;

use moescope_analysis::scan::{scan_choices, Needs};
use moescope_analysis::Records;

use crate::error::{require_path, GuiError, Result};
use crate::run_view::RunView;

/// The tokens a recording routed most often to one (layer, expert), with their counts.
pub type TopTokens = ((usize, usize), Vec<(String, u64)>);

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

/// The `n` token texts most often routed to `expert` at decoder layer `layer` over the whole
/// recording, with their counts, most frequent first.
pub fn top_tokens(
    records: &Records,
    layer: usize,
    expert: usize,
    n: usize,
) -> Result<Vec<(String, u64)>> {
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
    let mut counts: HashMap<String, u64> = HashMap::new();
    let needs = Needs {
        token_text: true,
        ..Needs::default()
    };
    scan_choices(records, needs, |c| {
        if c.layer_slot == slot && c.experts.iter().any(|&e| usize::from(e) == expert) {
            *counts.entry(c.token_text.to_string()).or_default() += 1;
        }
        Ok(())
    })?;
    let mut top: Vec<(String, u64)> = counts.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(n);
    Ok(top)
}
