//! `Records`: a records folder opened for reading — its run and sequences checked, its routing
//! table scanned in batches of projected columns.

use std::path::{Path, PathBuf};

use arrow_array::{
    Array, BooleanArray, Float32Array, Int32DictionaryArray, Int64Array, RecordBatch, StringArray,
    UInt16Array, UInt32Array, UInt8Array,
};

use crate::error::{AnalysisError, Result};
use crate::read::{read_batches, read_batches_parallel, SCHEMA_VERSION};

use super::schema::{RunInfo, SequenceInfo, ROUTING_FILE, RUN_FILE, SEQUENCES_FILE};

/// A finished records folder, opened for analysis: its run and sequences tables in memory, its
/// routing table streamed.
#[derive(Debug, Clone)]
pub struct Records {
    /// The folder.
    pub dir: PathBuf,
    /// The run table.
    pub run: RunInfo,
    /// The sequences table, indexed by `seq_index`.
    pub sequences: Vec<SequenceInfo>,
}

/// One streamed batch of `routing.parquet`, with the columns that were asked for.
pub struct RoutingBatch {
    batch: RecordBatch,
    path: PathBuf,
}

impl RoutingBatch {
    /// Wraps a decoded batch of `path`'s routing table.
    pub(crate) fn new(batch: RecordBatch, path: PathBuf) -> Self {
        Self { batch, path }
    }

    /// Rows in the batch.
    pub fn len(&self) -> usize {
        self.batch.num_rows()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.batch.num_rows() == 0
    }

    fn column<T: Array + 'static>(&self, name: &str) -> Result<&T> {
        self.batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<T>())
            .ok_or_else(|| {
                AnalysisError::records(
                    &self.path,
                    format!("column `{name}` missing or of the wrong type (records schema v{SCHEMA_VERSION} expected); re-record with this moescope"),
                )
            })
    }

    /// A `UInt32` column (`seq_index`, `position`, `token_id`).
    pub fn u32s(&self, name: &str) -> Result<&[u32]> {
        Ok(self.column::<UInt32Array>(name)?.values())
    }

    /// A `UInt16` column (`layer`, `expert`).
    pub fn u16s(&self, name: &str) -> Result<&[u16]> {
        Ok(self.column::<UInt16Array>(name)?.values())
    }

    /// The `rank` column.
    pub fn ranks(&self) -> Result<&[u8]> {
        Ok(self.column::<UInt8Array>("rank")?.values())
    }

    /// A `Float32` column (`weight`, `router_prob`, `out_maxabs`).
    pub fn f32s(&self, name: &str) -> Result<&[f32]> {
        Ok(self.column::<Float32Array>(name)?.values())
    }

    /// A string column (`token_text`, `seq_id`), plain or read as a dictionary.
    pub fn texts(&self, name: &str) -> Result<Texts<'_>> {
        if let Ok(plain) = self.column::<StringArray>(name) {
            return Ok(Texts::Plain(plain));
        }
        let dict = self.column::<Int32DictionaryArray>(name)?;
        let values = dict
            .values()
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| {
                AnalysisError::records(
                    &self.path,
                    format!("column `{name}` is a dictionary of non-strings"),
                )
            })?;
        Ok(Texts::Dictionary {
            keys: dict.keys().values(),
            values,
        })
    }

    /// The `is_generated` column.
    pub fn generated(&self) -> Result<&BooleanArray> {
        self.column::<BooleanArray>("is_generated")
    }
}

/// A string column of a batch: plain, or dictionary-encoded (each distinct value decoded once,
/// rows holding keys into them).
#[derive(Debug, Clone, Copy)]
pub enum Texts<'a> {
    /// One string per row.
    Plain(&'a StringArray),
    /// Per row a key into `values`.
    Dictionary {
        /// The rows' keys.
        keys: &'a [i32],
        /// The distinct values.
        values: &'a StringArray,
    },
}

impl<'a> Texts<'a> {
    /// The string of row `i`.
    pub fn value(&self, i: usize) -> &'a str {
        match *self {
            Texts::Plain(a) => a.value(i),
            Texts::Dictionary { keys, values } => values.value(keys[i] as usize),
        }
    }
}

impl Records {
    /// Opens a records folder written by `moescope record` (or any writer of schema v1).
    pub fn open(dir: &Path) -> Result<Self> {
        let routing = dir.join(ROUTING_FILE);
        if !routing.is_file() {
            return Err(AnalysisError::records(
                dir,
                format!("no {ROUTING_FILE}: not a finished records folder (make one with `moescope record`)"),
            ));
        }
        let run = read_run(&dir.join(RUN_FILE))?;
        let sequences = read_sequences(&dir.join(SEQUENCES_FILE))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            run,
            sequences,
        })
    }

    /// Path of the routing table.
    pub fn routing_path(&self) -> PathBuf {
        self.dir.join(ROUTING_FILE)
    }

    /// Streams the routing table, reading only `columns`, in batches of about `batch_rows`.
    pub fn scan(
        &self,
        columns: &[&str],
        batch_rows: usize,
        mut f: impl FnMut(&RoutingBatch) -> Result<()>,
    ) -> Result<()> {
        let path = self.routing_path();
        for batch in read_batches_parallel(&path, columns, batch_rows)? {
            f(&RoutingBatch {
                batch: batch?,
                path: path.clone(),
            })?;
        }
        Ok(())
    }

    /// The label of each sequence, by `seq_index`.
    pub fn labels(&self) -> Vec<Option<&str>> {
        let n = self
            .sequences
            .iter()
            .map(|s| s.seq_index as usize + 1)
            .max()
            .unwrap_or(0);
        let mut out = vec![None; n];
        for s in &self.sequences {
            out[s.seq_index as usize] = s.label.as_deref();
        }
        out
    }
}

fn read_table(path: &Path) -> Result<Vec<RecordBatch>> {
    read_batches(path, None, 8192)?.collect()
}

fn col<'a, T: Array + 'static>(b: &'a RecordBatch, name: &str, path: &Path) -> Result<&'a T> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| {
            AnalysisError::records(
                path,
                format!("column `{name}` missing or of the wrong type"),
            )
        })
}

fn opt_str(a: &StringArray, i: usize) -> Option<String> {
    (!a.is_null(i)).then(|| a.value(i).to_string())
}

fn read_run(path: &Path) -> Result<RunInfo> {
    let batches = read_table(path)?;
    let b = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .ok_or_else(|| AnalysisError::records(path, "the run table is empty"))?;
    let s =
        |n: &str| -> Result<String> { Ok(col::<StringArray>(b, n, path)?.value(0).to_string()) };
    let u = |n: &str| -> Result<u32> { Ok(col::<UInt32Array>(b, n, path)?.value(0)) };
    let version = u("schema_version")?;
    if version != SCHEMA_VERSION {
        return Err(AnalysisError::records(
            path,
            format!("records schema v{version}; this moescope reads v{SCHEMA_VERSION}: re-record with this version"),
        ));
    }
    let moe_layers = s("moe_layers")?
        .split(',')
        .filter(|x| !x.is_empty())
        .map(|x| {
            x.parse().map_err(|_| {
                AnalysisError::records(path, "moe_layers: not a list of layer numbers")
            })
        })
        .collect::<Result<_>>()?;
    let run = RunInfo {
        run_id: s("run_id")?,
        model: s("model")?,
        architecture: s("architecture")?,
        config_sha256: s("config_sha256")?,
        num_layers: u("num_layers")?,
        moe_layers,
        num_experts: u("num_experts")?,
        top_k: u("top_k")?,
        interventions: s("interventions")?,
        prompts: s("prompts")?,
        generate_tokens: u("generate_tokens")?,
        created_unix: col::<Int64Array>(b, "created_unix", path)?.value(0),
        moescope_version: s("moescope_version")?,
        complete: col::<BooleanArray>(b, "complete", path)?.value(0),
    };
    check_run(&run).map_err(|m| AnalysisError::records(path, m))?;
    Ok(run)
}

/// Most layers and experts a run may declare (the engine's own bounds are lower).
const MAX_LAYERS: u32 = 4096;
const MAX_EXPERTS: u32 = 1024;

/// The shape fields of a run table are consistent and within bounds.
fn check_run(r: &RunInfo) -> std::result::Result<(), String> {
    if r.num_layers == 0 || r.num_layers > MAX_LAYERS {
        return Err(format!(
            "num_layers {} is outside 1..={MAX_LAYERS}",
            r.num_layers
        ));
    }
    if r.num_experts == 0 || r.num_experts > MAX_EXPERTS {
        return Err(format!(
            "num_experts {} is outside 1..={MAX_EXPERTS}",
            r.num_experts
        ));
    }
    if r.top_k == 0 || r.top_k > r.num_experts {
        return Err(format!(
            "top_k {} is outside 1..={}",
            r.top_k, r.num_experts
        ));
    }
    if r.moe_layers.is_empty()
        || r.moe_layers.windows(2).any(|w| w[0] >= w[1])
        || r.moe_layers.iter().any(|&l| l >= r.num_layers)
    {
        return Err(format!(
            "moe_layers {:?} must be increasing layer numbers below num_layers {}",
            r.moe_layers, r.num_layers
        ));
    }
    Ok(())
}

fn read_sequences(path: &Path) -> Result<Vec<SequenceInfo>> {
    let mut out = Vec::new();
    for b in read_table(path)? {
        let idx = col::<UInt32Array>(&b, "seq_index", path)?;
        let id = col::<StringArray>(&b, "seq_id", path)?;
        let prompt = col::<StringArray>(&b, "prompt", path)?;
        let label = col::<StringArray>(&b, "label", path)?;
        let pair = col::<StringArray>(&b, "pair_id", path)?;
        let pt = col::<UInt32Array>(&b, "prompt_tokens", path)?;
        let gt = col::<UInt32Array>(&b, "generated_tokens", path)?;
        let text = col::<StringArray>(&b, "generated_text", path)?;
        for i in 0..b.num_rows() {
            out.push(SequenceInfo {
                seq_index: idx.value(i),
                seq_id: id.value(i).to_string(),
                prompt: prompt.value(i).to_string(),
                label: opt_str(label, i),
                pair_id: opt_str(pair, i),
                prompt_tokens: pt.value(i),
                generated_tokens: gt.value(i),
                generated_text: opt_str(text, i),
            });
        }
    }
    if out
        .iter()
        .any(|s| s.seq_index as usize >= out.len() * 4 + 1024)
    {
        return Err(AnalysisError::records(
            path,
            "seq_index values are not ordinals of the sequences",
        ));
    }
    Ok(out)
}
