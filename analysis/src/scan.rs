//! One streaming pass over `routing.parquet` that regroups its long rows into the experts each
//! token chose at each layer. Every statistic is a fold over these choices, so none of them
//! holds more than one token's rows in memory.

use crate::error::{AnalysisError, Result};
use crate::records::Records;

/// Rows read per Parquet batch.
const BATCH_ROWS: usize = 1 << 16;

/// What one token chose at one layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice<'a> {
    /// Ordinal of the sequence.
    pub seq_index: u32,
    /// Position in the sequence.
    pub position: u32,
    /// Index of the layer among the run's MoE layers (0-based, dense).
    pub layer_slot: usize,
    /// Whether the token was generated.
    pub is_generated: bool,
    /// The token's text (empty unless asked for).
    pub token_text: &'a str,
    /// Chosen experts, best first.
    pub experts: &'a [u16],
    /// Their mixing weights.
    pub weights: &'a [f32],
    /// Their max |down_proj output| (empty unless asked for).
    pub out_maxabs: &'a [f32],
}

/// Optional columns a statistic needs besides ids, layer, expert and weight.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// `token_text`.
    pub token_text: bool,
    /// `out_maxabs`.
    pub out_maxabs: bool,
}

#[derive(Default)]
struct Pending {
    key: Option<(u32, u32, u16)>,
    generated: bool,
    text: String,
    experts: Vec<u16>,
    weights: Vec<f32>,
    maxabs: Vec<f32>,
}

/// Streams every (token, layer) choice of the records, in file order (sequence, position,
/// layer), to `f`.
pub fn scan_choices(
    records: &Records,
    needs: Needs,
    mut f: impl FnMut(&Choice<'_>) -> Result<()>,
) -> Result<()> {
    let mut slot_of = vec![usize::MAX; records.run.num_layers as usize];
    for (i, &l) in records.run.moe_layers.iter().enumerate() {
        if let Some(s) = slot_of.get_mut(l as usize) {
            *s = i;
        }
    }
    let num_experts = records.run.num_experts as u16;
    let mut columns = vec![
        "seq_index",
        "position",
        "is_generated",
        "layer",
        "expert",
        "weight",
    ];
    if needs.token_text {
        columns.push("token_text");
    }
    if needs.out_maxabs {
        columns.push("out_maxabs");
    }
    let path = records.routing_path();
    let mut p = Pending::default();
    let emit = |p: &Pending, f: &mut dyn FnMut(&Choice<'_>) -> Result<()>| -> Result<()> {
        if let Some((seq_index, position, layer)) = p.key {
            let layer_slot = slot_of.get(layer as usize).copied().unwrap_or(usize::MAX);
            if layer_slot == usize::MAX {
                return Err(AnalysisError::records(
                    &path,
                    format!(
                        "layer {layer} is not an MoE layer of this run (run.parquet lists {:?})",
                        records.run.moe_layers
                    ),
                ));
            }
            f(&Choice {
                seq_index,
                position,
                layer_slot,
                is_generated: p.generated,
                token_text: &p.text,
                experts: &p.experts,
                weights: &p.weights,
                out_maxabs: &p.maxabs,
            })?;
        }
        Ok(())
    };
    records.scan(&columns, BATCH_ROWS, |b| {
        let seq = b.u32s("seq_index")?;
        let pos = b.u32s("position")?;
        let layer = b.u16s("layer")?;
        let expert = b.u16s("expert")?;
        let weight = b.f32s("weight")?;
        let generated = b.generated()?;
        let text = if needs.token_text {
            Some(b.strings("token_text")?)
        } else {
            None
        };
        let maxabs = if needs.out_maxabs {
            Some(b.f32s("out_maxabs")?)
        } else {
            None
        };
        for i in 0..b.len() {
            let key = (seq[i], pos[i], layer[i]);
            if p.key != Some(key) {
                emit(&p, &mut f)?;
                p.key = Some(key);
                p.generated = generated.value(i);
                p.experts.clear();
                p.weights.clear();
                p.maxabs.clear();
                p.text.clear();
                if let Some(t) = text {
                    p.text.push_str(t.value(i));
                }
            }
            if expert[i] >= num_experts {
                return Err(AnalysisError::records(
                    &path,
                    format!(
                        "expert {} at layer {} is out of range: the run has {num_experts} experts",
                        expert[i], layer[i]
                    ),
                ));
            }
            p.experts.push(expert[i]);
            p.weights.push(weight[i]);
            if let Some(m) = maxabs {
                p.maxabs.push(m[i]);
            }
        }
        Ok(())
    })?;
    emit(&p, &mut f)
}
