//! The expert statistics. Each is a fold over [`crate::scan::scan_choices`] returning a
//! [`crate::table::Table`] whose first columns are `layer` and `expert`.

pub mod attribution;
pub mod consistency;
pub mod contrast;
pub mod freq;
pub mod npmi;
pub mod super_experts;

use crate::records::Records;
use crate::table::Column;

/// Which token positions a statistic counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Positions {
    /// Prompt and generated tokens.
    #[default]
    All,
    /// Prompt tokens only.
    Prompt,
    /// Generated tokens only.
    Generated,
}

impl Positions {
    /// Whether a token with this `is_generated` flag counts.
    pub fn admits(self, is_generated: bool) -> bool {
        match self {
            Positions::All => true,
            Positions::Prompt => !is_generated,
            Positions::Generated => is_generated,
        }
    }
}

impl std::str::FromStr for Positions {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(Self::All),
            "prompt" => Ok(Self::Prompt),
            "generated" => Ok(Self::Generated),
            _ => Err(format!(
                "unknown positions `{s}`: expected all, prompt or generated"
            )),
        }
    }
}

/// Adds `b` into `a`, element by element (merging per-worker counts).
pub(crate) fn add_into<T: std::ops::AddAssign + Copy>(a: &mut [T], b: &[T]) {
    for (x, &y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// [`add_into`] for `[layer][expert]` grids.
pub(crate) fn add_grid<T: std::ops::AddAssign + Copy>(a: &mut [Vec<T>], b: &[Vec<T>]) {
    for (ra, rb) in a.iter_mut().zip(b) {
        add_into(ra, rb);
    }
}

/// `[moe layer slot][expert]` counters.
pub(crate) fn grid<T: Clone>(records: &Records, init: T) -> Vec<Vec<T>> {
    vec![vec![init; records.run.num_experts as usize]; records.run.moe_layers.len()]
}

/// The `layer` and `expert` columns of a full layer × expert table, slot-major.
pub(crate) fn layer_expert_columns(records: &Records) -> (Column, Column) {
    let e = u64::from(records.run.num_experts);
    let mut layers = Vec::new();
    let mut experts = Vec::new();
    for &l in &records.run.moe_layers {
        for x in 0..e {
            layers.push(u64::from(l));
            experts.push(x);
        }
    }
    (Column::Int(layers), Column::Int(experts))
}

/// The `layer` column of a per-layer table: the run's MoE layers in order.
pub(crate) fn layer_column(records: &Records) -> Column {
    Column::Int(
        records
            .run
            .moe_layers
            .iter()
            .map(|&l| u64::from(l))
            .collect(),
    )
}

#[cfg(test)]
pub(crate) mod testdata;
