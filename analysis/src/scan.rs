//! One streaming pass over `routing.parquet` that regroups its long rows into the experts each
//! token chose at each layer. Every statistic is a fold over these choices, so none of them
//! holds more than one token's rows in memory. Statistics whose fold is order-free can also run
//! it on every core, one row group per worker ([`fold_choices`]).

use std::path::PathBuf;

use arrow_array::BooleanArray;

use crate::error::{AnalysisError, Result};
use crate::read::{read_row_group, row_group_count};
use crate::records::{Records, RoutingBatch, Texts};

/// Rows read per Parquet batch.
const BATCH_ROWS: usize = 1 << 16;

/// What one token chose at one layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice<'a> {
    /// Ordinal of the sequence (0 unless asked for).
    pub seq_index: u32,
    /// Position in the sequence (0 unless asked for).
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

/// Optional columns a statistic needs besides layer, rank, expert, weight and is_generated.
/// Each one left out is a column the scan does not decode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// `seq_index` and `position`: which sequence and position each choice belongs to.
    pub sequence: bool,
    /// `token_text`.
    pub token_text: bool,
    /// `out_maxabs`.
    pub out_maxabs: bool,
}

/// The columns of one batch that a scan reads.
struct Columns<'b> {
    rank: &'b [u8],
    layer: &'b [u16],
    expert: &'b [u16],
    weight: &'b [f32],
    generated: &'b BooleanArray,
    sequence: Option<(&'b [u32], &'b [u32])>,
    text: Option<Texts<'b>>,
    maxabs: Option<&'b [f32]>,
}

impl<'b> Columns<'b> {
    fn of(b: &'b RoutingBatch, needs: Needs) -> Result<Self> {
        Ok(Self {
            rank: b.ranks()?,
            layer: b.u16s("layer")?,
            expert: b.u16s("expert")?,
            weight: b.f32s("weight")?,
            generated: b.generated()?,
            sequence: if needs.sequence {
                Some((b.u32s("seq_index")?, b.u32s("position")?))
            } else {
                None
            },
            text: if needs.token_text {
                Some(b.texts("token_text")?)
            } else {
                None
            },
            maxabs: if needs.out_maxabs {
                Some(b.f32s("out_maxabs")?)
            } else {
                None
            },
        })
    }
}

/// The rows of one token at one layer gathered across batches. A token's rows are
/// consecutive with ranks 0, 1, …, so a row of rank 0 starts the next one.
#[derive(Default, Clone)]
struct Pending {
    /// The layer, once a row has been read.
    layer: Option<u16>,
    /// Whether the first row read had a rank above 0: the token began before this scan (in
    /// an earlier row group).
    continues: bool,
    /// Rank of the first row read.
    first_rank: u8,
    seq_index: u32,
    position: u32,
    generated: bool,
    text: String,
    experts: Vec<u16>,
    weights: Vec<f32>,
    maxabs: Vec<f32>,
}

impl Pending {
    /// Starts a token (or the rest of one) at row `i`.
    fn start(&mut self, c: &Columns<'_>, i: usize) {
        self.layer = Some(c.layer[i]);
        self.continues = c.rank[i] != 0;
        self.first_rank = c.rank[i];
        if let Some((seq, pos)) = c.sequence {
            (self.seq_index, self.position) = (seq[i], pos[i]);
        }
        self.generated = c.generated.value(i);
        self.text.clear();
        if let Some(t) = c.text {
            self.text.push_str(t.value(i));
        }
        self.experts.clear();
        self.weights.clear();
        self.maxabs.clear();
    }

    /// Whether a row of `layer` and `rank` is this token's next row.
    fn is_next(&self, layer: Option<u16>, rank: u8) -> bool {
        self.layer == layer
            && usize::from(rank) == usize::from(self.first_rank) + self.experts.len()
    }

    fn push(&mut self, c: &Columns<'_>, i: usize) {
        self.experts.push(c.expert[i]);
        self.weights.push(c.weight[i]);
        if let Some(m) = c.maxabs {
            self.maxabs.push(m[i]);
        }
    }

    /// Adds the rows of the same token read from the next row group; false when `more` does
    /// not continue this token.
    fn append(&mut self, more: Pending) -> bool {
        if !self.is_next(more.layer, more.first_rank) {
            return false;
        }
        self.experts.extend(more.experts);
        self.weights.extend(more.weights);
        self.maxabs.extend(more.maxabs);
        true
    }
}

/// Turns batches of long rows into choices, checking layers, ranks and experts against the run.
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
        let mut columns = vec!["is_generated", "layer", "rank", "expert", "weight"];
        if self.needs.sequence {
            columns.extend(["seq_index", "position"]);
        }
        if self.needs.token_text {
            columns.push("token_text");
        }
        if self.needs.out_maxabs {
            columns.push("out_maxabs");
        }
        columns
    }

    /// The dense index of an MoE layer.
    fn slot(&self, layer: u16) -> Result<usize> {
        match self.slot_of.get(usize::from(layer)).copied() {
            Some(s) if s != usize::MAX => Ok(s),
            _ => Err(AnalysisError::records(
                &self.path,
                format!(
                    "layer {layer} is not an MoE layer of this run (run.parquet lists {:?})",
                    self.records.run.moe_layers
                ),
            )),
        }
    }

    /// Checks every expert id of a batch against the run and every weight for NaN or
    /// infinity (vectorisable passes).
    fn check_experts(&self, c: &Columns<'_>) -> Result<()> {
        if !c.weight.iter().all(|w| w.is_finite()) {
            let i = c.weight.iter().position(|w| !w.is_finite()).unwrap_or(0);
            return Err(AnalysisError::records(
                &self.path,
                format!(
                    "column `weight` holds {} at layer {}: the recorded model produced non-finite routing weights (NaN or infinite weights in the checkpoint?)",
                    c.weight[i], c.layer[i]
                ),
            ));
        }
        let num_experts = self.records.run.num_experts;
        let max = c.expert.iter().copied().max().unwrap_or(0);
        if u32::from(max) < num_experts {
            return Ok(());
        }
        let i = c.expert.iter().position(|&x| x == max).unwrap_or(0);
        Err(AnalysisError::records(
            &self.path,
            format!(
                "expert {max} at layer {} is out of range: the run has {num_experts} experts",
                c.layer[i]
            ),
        ))
    }

    /// The choice a complete pending token makes.
    fn choice<'a>(&self, p: &'a Pending) -> Result<Choice<'a>> {
        let layer = p.layer.unwrap_or_default();
        if p.continues {
            return Err(self.out_of_order(format!(
                "a token's rows at layer {layer} begin at rank {} instead of 0",
                p.first_rank
            )));
        }
        Ok(Choice {
            seq_index: p.seq_index,
            position: p.position,
            layer_slot: self.slot(layer)?,
            is_generated: p.generated,
            token_text: &p.text,
            experts: &p.experts,
            weights: &p.weights,
            out_maxabs: &p.maxabs,
        })
    }

    /// The end of the token whose rank-0 row is `i`: the next rank-0 row, or the batch's end.
    /// Checks that the rows between have ranks 1, 2, … and the same layer.
    fn token_end(&self, c: &Columns<'_>, i: usize) -> Result<usize> {
        let layer = c.layer[i];
        let mut j = i + 1;
        while j < c.rank.len() && c.rank[j] != 0 {
            if usize::from(c.rank[j]) != j - i || c.layer[j] != layer {
                return Err(self.out_of_order(format!(
                    "row of rank {} at layer {} inside a token of layer {layer}",
                    c.rank[j], c.layer[j]
                )));
            }
            j += 1;
        }
        Ok(j)
    }

    /// The choice of the whole token in rows `i..j` of a batch (checked by
    /// [`Regrouper::token_end`]), read in place.
    fn choice_in<'b>(&self, c: &Columns<'b>, i: usize, j: usize) -> Result<Choice<'b>> {
        let (seq_index, position) = c.sequence.map_or((0, 0), |(s, p)| (s[i], p[i]));
        Ok(Choice {
            seq_index,
            position,
            layer_slot: self.slot(c.layer[i])?,
            is_generated: c.generated.value(i),
            token_text: c.text.map_or("", |t| t.value(i)),
            experts: &c.expert[i..j],
            weights: &c.weight[i..j],
            out_maxabs: c.maxabs.map_or(&[], |m| &m[i..j]),
        })
    }

    /// Checks that the scan saw one choice per (token, MoE layer) that sequences.parquet
    /// accounts for: tables cut short, concatenated or from different runs disagree here.
    fn check_count(&self, choices: u64) -> Result<()> {
        let tokens: u64 = self
            .records
            .sequences
            .iter()
            .map(|s| u64::from(s.prompt_tokens) + u64::from(s.generated_tokens))
            .sum();
        let expected = tokens * self.records.run.moe_layers.len() as u64;
        if choices == expected {
            return Ok(());
        }
        Err(AnalysisError::records(
            &self.path,
            format!(
                "holds {choices} token routings, but sequences.parquet accounts for {expected} ({tokens} tokens × {} MoE layers): \
                 the tables of this folder do not belong together (one cut short, concatenated or from another run); re-record it",
                self.records.run.moe_layers.len()
            ),
        ))
    }

    /// The error for rows that do not form whole tokens in rank order.
    fn out_of_order(&self, what: String) -> AnalysisError {
        AnalysisError::records(
            &self.path,
            format!("{what}: the rows of each token and layer must be consecutive, ranks 0, 1, …"),
        )
    }

    /// Hands `p`, if it holds rows, on: to `done` when it is a whole token, to `lead` when it
    /// continues a token begun before the scan. Leaves `p` empty.
    fn finish(
        &self,
        p: &mut Pending,
        lead: &mut Option<Pending>,
        done: &mut impl FnMut(&Choice<'_>) -> Result<()>,
    ) -> Result<()> {
        if p.layer.is_none() {
            return Ok(());
        }
        if p.continues && lead.is_none() {
            *lead = Some(std::mem::take(p));
            return Ok(());
        }
        done(&self.choice(p)?)?;
        p.layer = None;
        Ok(())
    }

    /// Reads a batch: each token it completes goes to `done` (read in place when the whole
    /// token lies in the batch); a token still open at its end stays in `p`; rows before the
    /// scan's first rank-0 row go to `lead`.
    fn push_batch(
        &self,
        b: &RoutingBatch,
        p: &mut Pending,
        lead: &mut Option<Pending>,
        mut done: impl FnMut(&Choice<'_>) -> Result<()>,
    ) -> Result<()> {
        let c = Columns::of(b, self.needs)?;
        self.check_experts(&c)?;
        let n = b.len();
        let mut i = 0;
        while i < n {
            if c.rank[i] != 0 {
                if p.layer.is_none() {
                    p.start(&c, i);
                } else if !p.is_next(Some(c.layer[i]), c.rank[i]) {
                    return Err(self.out_of_order(format!(
                        "row of rank {} at layer {} follows {} rows of layer {:?}",
                        c.rank[i],
                        c.layer[i],
                        p.experts.len(),
                        p.layer
                    )));
                }
                p.push(&c, i);
                i += 1;
                continue;
            }
            self.finish(p, lead, &mut done)?;
            let j = self.token_end(&c, i)?;
            if j < n {
                done(&self.choice_in(&c, i, j)?)?;
            } else {
                // The token may go on in the next batch.
                p.start(&c, i);
                (i..j).for_each(|m| p.push(&c, m));
            }
            i = j;
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
    let mut lead = None;
    let mut choices = 0u64;
    let mut counted = |c: &Choice<'_>| {
        choices += 1;
        f(c)
    };
    records.scan(&r.columns(), BATCH_ROWS, |b| {
        r.push_batch(b, &mut p, &mut lead, &mut counted)
    })?;
    if let Some(l) = lead {
        return Err(r.out_of_order(format!(
            "the file begins with a row of rank {} at layer {:?}",
            l.first_rank, l.layer
        )));
    }
    if p.layer.is_some() {
        counted(&r.choice(&p)?)?;
    }
    r.check_count(choices)
}

/// Folds every choice into a state, in no particular order: each worker folds whole row
/// groups into its own `init()` state, the tokens cut by row-group boundaries are joined and
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
    // Per worker: its state, and per row group the rows that may belong to tokens of the
    // neighbouring groups: the rows before its first rank-0 row, and its last token.
    type Edges = Vec<(usize, Vec<Pending>)>;
    let results: Vec<Result<(S, u64, Edges)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let (r, columns, init, fold) = (&r, &columns, &init, &fold);
                scope.spawn(move || -> Result<(S, u64, Edges)> {
                    let mut s = init();
                    let mut choices = 0u64;
                    let mut edges = Vec::new();
                    for g in (w..groups).step_by(workers) {
                        let mut p = Pending::default();
                        let mut lead = None;
                        for batch in read_row_group(&r.path, columns, BATCH_ROWS, g)? {
                            let b = RoutingBatch::new(batch?, r.path.clone());
                            r.push_batch(&b, &mut p, &mut lead, |c| {
                                choices += 1;
                                fold(&mut s, c);
                                Ok(())
                            })?;
                        }
                        let mut frags: Vec<Pending> = lead.into_iter().collect();
                        if p.layer.is_some() {
                            frags.push(p);
                        }
                        edges.push((g, frags));
                    }
                    Ok((s, choices, edges))
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
    let mut choices = 0u64;
    let mut edges = Vec::new();
    for res in results {
        let (s, n, e) = res?;
        merge(&mut total, s);
        choices += n;
        edges.extend(e);
    }
    edges.sort_by_key(|e| e.0);
    let mut current: Option<Pending> = None;
    for frag in edges.into_iter().flat_map(|e| e.1) {
        if frag.continues {
            let joined = match current.as_mut() {
                Some(c) => c.append(frag),
                None => false,
            };
            if !joined {
                return Err(r.out_of_order(
                    "a row group begins inside a token that the previous group does not end with"
                        .into(),
                ));
            }
            continue;
        }
        if let Some(c) = current.replace(frag) {
            fold(&mut total, &r.choice(&c)?);
            choices += 1;
        }
    }
    if let Some(c) = current {
        fold(&mut total, &r.choice(&c)?);
        choices += 1;
    }
    r.check_count(choices)?;
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
            sequence: true,
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
        let folded = |needs: Needs| -> Vec<Row> {
            let mut rows = fold_choices(
                &records,
                needs,
                Vec::new,
                |v: &mut Vec<Row>, c| v.push(row(c)),
                |a, b| a.extend(b),
            )
            .unwrap();
            rows.sort();
            rows
        };
        let parallel = folded(needs);
        sequential.sort();
        assert_eq!(sequential.len(), 8);
        assert_eq!(parallel, sequential);

        // Without the sequence columns the same choices come out, their places zeroed.
        let no_sequence = Needs {
            sequence: false,
            ..needs
        };
        let unplaced = folded(no_sequence);
        let mut expected: Vec<Row> = sequential
            .iter()
            .map(|r| (0, 0, r.2, r.3, r.4.clone(), r.5.clone(), r.6.clone()))
            .collect();
        expected.sort();
        assert_eq!(unplaced, expected);
    }

    #[test]
    fn rows_that_do_not_start_at_rank_zero_are_an_error_naming_the_file() {
        let (_dir, records) = tiny_records();
        let path = records.routing_path();
        let batch = read_batches(&path, None, 1024)
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        // Drop the first row: the file now begins with a token's rank-1 row.
        let cut = batch.slice(1, batch.num_rows() - 1);
        let mut w = ArrowWriter::try_new(File::create(&path).unwrap(), cut.schema(), None).unwrap();
        w.write(&cut).unwrap();
        w.close().unwrap();
        let err = scan_choices(&records, Needs::default(), |_| Ok(()))
            .expect_err("a scan of a file cut inside a token fails");
        let msg = err.to_string();
        assert!(
            msg.contains("routing.parquet") && msg.contains("rank"),
            "{msg}"
        );
    }
}
