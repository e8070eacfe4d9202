//! One streaming pass over `routing.parquet` that regroups its long rows into the experts each
//! token chose at each layer. Every statistic is a fold over these choices, so none of them
//! holds more than one token's rows in memory. Statistics whose fold is order-free can also run
//! it on every core, one row group per worker ([`fold_choices`]).

use std::path::PathBuf;

use crate::error::{AnalysisError, Result};
use crate::read::{read_row_group, row_group_count};
use crate::records::{Records, RoutingBatch};

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

/// The rows of one (sequence, position, layer) key gathered so far.
#[derive(Default, Clone)]
struct Pending {
    key: Option<(u32, u32, u16)>,
    generated: bool,
    text: String,
    experts: Vec<u16>,
    weights: Vec<f32>,
    maxabs: Vec<f32>,
}

impl Pending {
    /// Adds the rows of the same key read from the next row group.
    fn append(&mut self, more: Pending) {
        self.experts.extend(more.experts);
        self.weights.extend(more.weights);
        self.maxabs.extend(more.maxabs);
    }
}

/// Turns batches of long rows into choices, checking layers and experts against the run.
struct Regrouper<'r> {
    records: &'r Records,
    needs: Needs,
    slot_of: Vec<usize>,
    path: PathBuf,
}

impl<'r> Regrouper<'r> {
    fn new(records: &'r Records, needs: Needs) -> Self {
        let mut slot_of = vec![usize::MAX; records.run.num_layers as usize];
        for (i, &l) in records.run.moe_layers.iter().enumerate() {
            if let Some(s) = slot_of.get_mut(l as usize) {
                *s = i;
            }
        }
        Self {
            records,
            needs,
            slot_of,
            path: records.routing_path(),
        }
    }

    fn columns(&self) -> Vec<&'static str> {
        let mut columns = vec![
            "seq_index",
            "position",
            "is_generated",
            "layer",
            "expert",
            "weight",
        ];
        if self.needs.token_text {
            columns.push("token_text");
        }
        if self.needs.out_maxabs {
            columns.push("out_maxabs");
        }
        columns
    }

    /// The choice a complete key makes.
    fn choice<'a>(&self, p: &'a Pending) -> Result<Option<Choice<'a>>> {
        let Some((seq_index, position, layer)) = p.key else {
            return Ok(None);
        };
        let layer_slot = self
            .slot_of
            .get(layer as usize)
            .copied()
            .unwrap_or(usize::MAX);
        if layer_slot == usize::MAX {
            return Err(AnalysisError::records(
                &self.path,
                format!(
                    "layer {layer} is not an MoE layer of this run (run.parquet lists {:?})",
                    self.records.run.moe_layers
                ),
            ));
        }
        Ok(Some(Choice {
            seq_index,
            position,
            layer_slot,
            is_generated: p.generated,
            token_text: &p.text,
            experts: &p.experts,
            weights: &p.weights,
            out_maxabs: &p.maxabs,
        }))
    }

    /// Adds a batch's rows to `p`, handing each key that the batch completes to `done`.
    fn push_batch(
        &self,
        b: &RoutingBatch,
        p: &mut Pending,
        mut done: impl FnMut(&Pending) -> Result<()>,
    ) -> Result<()> {
        let num_experts = self.records.run.num_experts as u16;
        let seq = b.u32s("seq_index")?;
        let pos = b.u32s("position")?;
        let layer = b.u16s("layer")?;
        let expert = b.u16s("expert")?;
        let weight = b.f32s("weight")?;
        let generated = b.generated()?;
        let text = if self.needs.token_text {
            Some(b.strings("token_text")?)
        } else {
            None
        };
        let maxabs = if self.needs.out_maxabs {
            Some(b.f32s("out_maxabs")?)
        } else {
            None
        };
        for i in 0..b.len() {
            let key = (seq[i], pos[i], layer[i]);
            if p.key != Some(key) {
                if p.key.is_some() {
                    done(p)?;
                }
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
                    &self.path,
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
    }
}

/// Streams every (token, layer) choice of the records, in file order (sequence, position,
/// layer), to `f`.
pub fn scan_choices(
    records: &Records,
    needs: Needs,
    mut f: impl FnMut(&Choice<'_>) -> Result<()>,
) -> Result<()> {
    let r = Regrouper::new(records, needs);
    let mut p = Pending::default();
    records.scan(&r.columns(), BATCH_ROWS, |b| {
        r.push_batch(b, &mut p, |q| match r.choice(q)? {
            Some(c) => f(&c),
            None => Ok(()),
        })
    })?;
    match r.choice(&p)? {
        Some(c) => f(&c),
        None => Ok(()),
    }
}

/// Folds every choice into a state, in no particular order: each worker folds whole row
/// groups into its own `init()` state, the keys cut by row-group boundaries are joined and
/// folded at the end, and the states are combined with `merge`. For statistics whose fold
/// does not depend on order (counts, sums); the result equals a [`scan_choices`] fold.
pub fn fold_choices<S: Send>(
    records: &Records,
    needs: Needs,
    init: impl Fn() -> S + Sync,
    fold: impl Fn(&mut S, &Choice<'_>) + Sync,
    merge: impl Fn(&mut S, S),
) -> Result<S> {
    let r = Regrouper::new(records, needs);
    let groups = row_group_count(&r.path)?;
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(groups);
    if workers <= 1 {
        let mut s = init();
        scan_choices(records, needs, |c| {
            fold(&mut s, c);
            Ok(())
        })?;
        return Ok(s);
    }
    let columns = r.columns();
    // Per worker: its state, and per row group its first and last keys, which may continue
    // in the neighbouring groups.
    type Edges = Vec<(usize, Vec<Pending>)>;
    let results: Vec<Result<(S, Edges)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let (r, columns, init, fold) = (&r, &columns, &init, &fold);
                scope.spawn(move || -> Result<(S, Edges)> {
                    let mut s = init();
                    let mut edges = Vec::new();
                    for g in (w..groups).step_by(workers) {
                        let mut p = Pending::default();
                        let mut first: Option<Pending> = None;
                        for batch in read_row_group(&r.path, columns, BATCH_ROWS, g)? {
                            let b = RoutingBatch::new(batch?, r.path.clone());
                            r.push_batch(&b, &mut p, |q| {
                                if first.is_none() {
                                    first = Some(q.clone());
                                } else if let Some(c) = r.choice(q)? {
                                    fold(&mut s, &c);
                                }
                                Ok(())
                            })?;
                        }
                        let mut frags: Vec<Pending> = first.into_iter().collect();
                        if p.key.is_some() {
                            frags.push(p);
                        }
                        edges.push((g, frags));
                    }
                    Ok((s, edges))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(AnalysisError::records(
                        &r.path,
                        "a counting thread panicked",
                    ))
                })
            })
            .collect()
    });
    let mut total = init();
    let mut edges = Vec::new();
    for res in results {
        let (s, e) = res?;
        merge(&mut total, s);
        edges.extend(e);
    }
    edges.sort_by_key(|e| e.0);
    let mut current: Option<Pending> = None;
    for frag in edges.into_iter().flat_map(|e| e.1) {
        match &mut current {
            Some(c) if c.key == frag.key => c.append(frag),
            _ => {
                if let Some(c) = current.replace(frag) {
                    if let Some(choice) = r.choice(&c)? {
                        fold(&mut total, &choice);
                    }
                }
            }
        }
    }
    if let Some(c) = current {
        if let Some(choice) = r.choice(&c)? {
            fold(&mut total, &choice);
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use std::fs::File;

    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;

    use super::*;
    use crate::read::read_batches;
    use crate::stats::testdata::tiny_records;

    type Row = (u32, u32, usize, bool, String, Vec<u16>, Vec<u32>);

    fn row(c: &Choice<'_>) -> Row {
        let w = c.weights.iter().map(|w| w.to_bits()).collect();
        let t = c.token_text.to_string();
        (
            c.seq_index,
            c.position,
            c.layer_slot,
            c.is_generated,
            t,
            c.experts.to_vec(),
            w,
        )
    }

    #[test]
    fn folding_row_groups_in_parallel_sees_every_choice_once_even_across_group_cuts() {
        let (_dir, records) = tiny_records();
        let path = records.routing_path();
        let needs = Needs {
            token_text: true,
            out_maxabs: false,
        };
        let mut sequential = Vec::new();
        scan_choices(&records, needs, |c| {
            sequential.push(row(c));
            Ok(())
        })
        .unwrap();
        // Rewrite the routing table with row groups of 3 rows: with top-2 every other token's
        // two rows fall into two groups.
        let batches: Vec<_> = read_batches(&path, None, 1024)
            .unwrap()
            .map(|b| b.unwrap())
            .collect();
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(3))
            .build();
        let mut w = ArrowWriter::try_new(
            File::create(&path).unwrap(),
            batches[0].schema(),
            Some(props),
        )
        .unwrap();
        for b in &batches {
            w.write(b).unwrap();
        }
        w.close().unwrap();
        assert!(row_group_count(&path).unwrap() > 4);
        let mut parallel = fold_choices(
            &records,
            needs,
            Vec::new,
            |v: &mut Vec<Row>, c| v.push(row(c)),
            |a, b| a.extend(b),
        )
        .unwrap();
        parallel.sort();
        sequential.sort();
        assert_eq!(sequential.len(), 8);
        assert_eq!(parallel, sequential);
    }
}
