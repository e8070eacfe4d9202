//! The routing-records format (schema version 1): a folder of Parquet files that pandas,
//! polars, DuckDB and Spark read as they are.
//!
//! - `routing.parquet`: long format, one row per (sequence, position, layer, rank);
//! - `sequences.parquet`: one row per prompt (its id, rendered prompt, label, pair id, output);
//! - `run.parquet`: one row describing the run (model, config hash, interventions, version);
//! - `router_probs.parquet` (optional): one row per (sequence, position, layer) with the full
//!   router distribution in columns `p_0 … p_{E-1}`.
//!
//! Files are written under temporary names and renamed only when the run finishes, so an
//! interrupted run leaves complete files or none. Memory stays bounded: rows are flushed to
//! Parquet in batches as they come.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BooleanArray, Float32Array, Int32DictionaryArray, Int64Array, RecordBatch,
    StringArray, UInt16Array, UInt32Array, UInt8Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::error::{AnalysisError, Result};
use crate::read::{read_batches, read_batches_parallel};

pub use crate::read::SCHEMA_VERSION;
/// The long routing table.
pub const ROUTING_FILE: &str = "routing.parquet";
/// The sequences side table.
pub const SEQUENCES_FILE: &str = "sequences.parquet";
/// The run metadata table.
pub const RUN_FILE: &str = "run.parquet";
/// The optional wide table of full router distributions.
pub const PROBS_FILE: &str = "router_probs.parquet";

/// Rows buffered before a batch goes to Parquet.
const FLUSH_ROWS: usize = 1 << 16;

/// What a recording run was: enough to reproduce it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    /// Identifier of the run, repeated in every routing row.
    pub run_id: String,
    /// The checkpoint folder.
    pub model: String,
    /// `model_type` of the checkpoint.
    pub architecture: String,
    /// SHA-256 of the checkpoint's `config.json`.
    pub config_sha256: String,
    /// Decoder layers.
    pub num_layers: u32,
    /// Layers with routed experts.
    pub moe_layers: Vec<u32>,
    /// Routed experts per MoE layer.
    pub num_experts: u32,
    /// Experts chosen per token.
    pub top_k: u32,
    /// The steering profile in effect, as TOML (empty when none).
    pub interventions: String,
    /// The prompt set that was recorded.
    pub prompts: String,
    /// Tokens generated per prompt (0: prompts only).
    pub generate_tokens: u32,
    /// When the run started, seconds since the Unix epoch.
    pub created_unix: i64,
    /// The moescope version that wrote the files.
    pub moescope_version: String,
    /// False when the run was interrupted and holds only the sequences done by then.
    pub complete: bool,
}

/// One recorded prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceInfo {
    /// Ordinal of the sequence in the run (the join key of `routing.parquet`).
    pub seq_index: u32,
    /// The prompt's `id` in its prompt set.
    pub seq_id: String,
    /// The rendered prompt text.
    pub prompt: String,
    /// Its label, if any.
    pub label: Option<String>,
    /// Its pair id, if any.
    pub pair_id: Option<String>,
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Generated tokens with routing.
    pub generated_tokens: u32,
    /// The generated text, when generating.
    pub generated_text: Option<String>,
}

/// The routing of one token at one layer, as handed to the writer.
#[derive(Debug, Clone, Copy)]
pub struct TokenRouting<'a> {
    /// Ordinal of the sequence.
    pub seq_index: u32,
    /// Position in the sequence.
    pub position: u32,
    /// Token id.
    pub token_id: u32,
    /// Token text.
    pub token_text: &'a str,
    /// Whether the token was generated (not part of the prompt).
    pub is_generated: bool,
    /// Decoder layer.
    pub layer: u16,
    /// Chosen experts, best first.
    pub experts: &'a [u32],
    /// Their mixing weights.
    pub weights: &'a [f32],
    /// Router scores of every expert (before interventions).
    pub scores: &'a [f32],
    /// Max |down_proj output| of each chosen expert.
    pub out_maxabs: &'a [f32],
}

/// The schema of `routing.parquet`.
pub fn routing_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("seq_index", DataType::UInt32, false),
        Field::new("seq_id", DataType::Utf8, false),
        Field::new("position", DataType::UInt32, false),
        Field::new("token_id", DataType::UInt32, false),
        Field::new("token_text", DataType::Utf8, false),
        Field::new("is_generated", DataType::Boolean, false),
        Field::new("layer", DataType::UInt16, false),
        Field::new("rank", DataType::UInt8, false),
        Field::new("expert", DataType::UInt16, false),
        Field::new("weight", DataType::Float32, false),
        Field::new("router_prob", DataType::Float32, false),
        Field::new("out_maxabs", DataType::Float32, false),
    ]))
}

fn sequences_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("seq_index", DataType::UInt32, false),
        Field::new("seq_id", DataType::Utf8, false),
        Field::new("prompt", DataType::Utf8, false),
        Field::new("label", DataType::Utf8, true),
        Field::new("pair_id", DataType::Utf8, true),
        Field::new("prompt_tokens", DataType::UInt32, false),
        Field::new("generated_tokens", DataType::UInt32, false),
        Field::new("generated_text", DataType::Utf8, true),
    ]))
}

fn run_schema() -> SchemaRef {
    let s = |n: &str| Field::new(n, DataType::Utf8, false);
    let u = |n: &str| Field::new(n, DataType::UInt32, false);
    Arc::new(Schema::new(vec![
        s("run_id"),
        u("schema_version"),
        s("moescope_version"),
        s("model"),
        s("architecture"),
        s("config_sha256"),
        u("num_layers"),
        s("moe_layers"),
        u("num_experts"),
        u("top_k"),
        s("interventions"),
        s("prompts"),
        u("generate_tokens"),
        Field::new("created_unix", DataType::Int64, false),
        Field::new("complete", DataType::Boolean, false),
    ]))
}

fn probs_schema(num_experts: usize) -> SchemaRef {
    let mut fields = vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("seq_index", DataType::UInt32, false),
        Field::new("position", DataType::UInt32, false),
        Field::new("layer", DataType::UInt16, false),
    ];
    fields.extend((0..num_experts).map(|e| Field::new(format!("p_{e}"), DataType::Float32, false)));
    Arc::new(Schema::new(fields))
}

/// A Parquet file being written under a temporary name; renamed by `commit`, removed on drop.
struct PendingParquet {
    final_path: PathBuf,
    temp_path: PathBuf,
    writer: Option<ArrowWriter<File>>,
}

impl PendingParquet {
    fn create(dir: &Path, name: &str, schema: SchemaRef) -> Result<Self> {
        let final_path = dir.join(name);
        let temp_path = dir.join(format!(".{name}.partial"));
        let file = File::create(&temp_path).map_err(|e| AnalysisError::Write {
            path: final_path.clone(),
            error: e,
        })?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_max_row_group_row_count(Some(1 << 20))
            .build();
        let writer = ArrowWriter::try_new(file, schema, Some(props))
            .map_err(|e| write_error(&final_path, e))?;
        Ok(Self {
            final_path,
            temp_path,
            writer: Some(writer),
        })
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if let Some(w) = self.writer.as_mut() {
            w.write(batch)
                .map_err(|e| write_error(&self.final_path, e))?;
        }
        Ok(())
    }

    /// Closes the file; the rename happens in `rename` once every file is closed.
    fn close(&mut self) -> Result<()> {
        if let Some(w) = self.writer.take() {
            w.close().map_err(|e| write_error(&self.final_path, e))?;
        }
        Ok(())
    }

    fn rename(&self) -> Result<()> {
        std::fs::rename(&self.temp_path, &self.final_path).map_err(|e| AnalysisError::Write {
            path: self.final_path.clone(),
            error: e,
        })
    }
}

/// A failure of the Parquet writer as a failed write of `path` (the file the user asked for,
/// not its temporary name), with the OS error when there is one (a full disk, a size limit).
fn write_error(path: &Path, e: parquet::errors::ParquetError) -> AnalysisError {
    let error = match e {
        parquet::errors::ParquetError::External(inner) => {
            match inner.downcast::<std::io::Error>() {
                Ok(io) => *io,
                Err(other) => std::io::Error::other(other),
            }
        }
        other => std::io::Error::other(other),
    };
    AnalysisError::Write {
        path: path.to_path_buf(),
        error,
    }
}

impl Drop for PendingParquet {
    fn drop(&mut self) {
        // Not committed: leave nothing half-written behind.
        let _ = std::fs::remove_file(&self.temp_path);
    }
}

/// Column buffers of `routing.parquet`.
#[derive(Default)]
struct RoutingColumns {
    seq_index: Vec<u32>,
    seq_id: Vec<String>,
    position: Vec<u32>,
    token_id: Vec<u32>,
    token_text: Vec<String>,
    is_generated: Vec<bool>,
    layer: Vec<u16>,
    rank: Vec<u8>,
    expert: Vec<u16>,
    weight: Vec<f32>,
    router_prob: Vec<f32>,
    out_maxabs: Vec<f32>,
}

/// Column buffers of `router_probs.parquet`.
#[derive(Default)]
struct ProbColumns {
    seq_index: Vec<u32>,
    position: Vec<u32>,
    layer: Vec<u16>,
    probs: Vec<Vec<f32>>,
}

/// Writes a records folder, streaming: rows go to Parquet in batches as they are pushed.
pub struct RecordWriter {
    dir: PathBuf,
    run: RunInfo,
    routing: PendingParquet,
    rows: RoutingColumns,
    probs: Option<(PendingParquet, ProbColumns)>,
    sequences: Vec<SequenceInfo>,
    total_rows: u64,
}

/// Every table a records folder may hold.
pub const TABLES: [&str; 4] = [ROUTING_FILE, SEQUENCES_FILE, RUN_FILE, PROBS_FILE];

/// The record tables already in `dir` (empty when none): a folder holding any of them holds a
/// recording that a new one would replace.
pub fn existing_tables(dir: &Path) -> Vec<&'static str> {
    TABLES
        .into_iter()
        .filter(|name| dir.join(name).exists())
        .collect()
}

impl RecordWriter {
    /// Starts writing into `dir` (created if needed). Existing record files there are only
    /// replaced when the run finishes.
    pub fn create(dir: &Path, run: RunInfo, full_probs: bool) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| AnalysisError::Write {
            path: dir.to_path_buf(),
            error: e,
        })?;
        let routing = PendingParquet::create(dir, ROUTING_FILE, routing_schema())?;
        let probs = if full_probs {
            let schema = probs_schema(run.num_experts as usize);
            let pending = PendingParquet::create(dir, PROBS_FILE, schema)?;
            let cols = ProbColumns {
                probs: vec![Vec::new(); run.num_experts as usize],
                ..ProbColumns::default()
            };
            Some((pending, cols))
        } else {
            None
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            run,
            routing,
            rows: RoutingColumns::default(),
            probs,
            sequences: Vec::new(),
            total_rows: 0,
        })
    }

    /// Adds one prompt's side-table row.
    pub fn push_sequence(&mut self, s: SequenceInfo) {
        self.sequences.push(s);
    }

    /// Adds the routing of one token at one layer: one row per rank.
    pub fn push_token(&mut self, seq_id: &str, t: &TokenRouting<'_>) -> Result<()> {
        let n = self.run.num_experts as usize;
        if t.scores.len() != n || t.weights.len() != t.experts.len() {
            return Err(AnalysisError::Invalid(format!(
                "routing of sequence {seq_id} position {}: {} scores for {n} experts, {} weights for {} experts",
                t.position,
                t.scores.len(),
                t.weights.len(),
                t.experts.len()
            )));
        }
        let r = &mut self.rows;
        for (rank, (&e, &w)) in t.experts.iter().zip(t.weights).enumerate() {
            r.seq_index.push(t.seq_index);
            r.seq_id.push(seq_id.to_string());
            r.position.push(t.position);
            r.token_id.push(t.token_id);
            r.token_text.push(t.token_text.to_string());
            r.is_generated.push(t.is_generated);
            r.layer.push(t.layer);
            r.rank.push(rank as u8);
            r.expert.push(e as u16);
            r.weight.push(w);
            r.router_prob
                .push(t.scores.get(e as usize).copied().unwrap_or(0.0));
            r.out_maxabs
                .push(t.out_maxabs.get(rank).copied().unwrap_or(0.0));
        }
        if let Some((_, p)) = self.probs.as_mut() {
            p.seq_index.push(t.seq_index);
            p.position.push(t.position);
            p.layer.push(t.layer);
            for (col, &v) in p.probs.iter_mut().zip(t.scores) {
                col.push(v);
            }
        }
        if self.rows.seq_index.len() >= FLUSH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    /// Routing rows written so far.
    pub fn rows_written(&self) -> u64 {
        self.total_rows + self.rows.seq_index.len() as u64
    }

    fn flush(&mut self) -> Result<()> {
        let r = std::mem::take(&mut self.rows);
        if !r.seq_index.is_empty() {
            let n = r.seq_index.len();
            self.total_rows += n as u64;
            let cols: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from(vec![self.run.run_id.as_str(); n])),
                Arc::new(UInt32Array::from(r.seq_index)),
                Arc::new(StringArray::from(r.seq_id)),
                Arc::new(UInt32Array::from(r.position)),
                Arc::new(UInt32Array::from(r.token_id)),
                Arc::new(StringArray::from(r.token_text)),
                Arc::new(BooleanArray::from(r.is_generated)),
                Arc::new(UInt16Array::from(r.layer)),
                Arc::new(UInt8Array::from(r.rank)),
                Arc::new(UInt16Array::from(r.expert)),
                Arc::new(Float32Array::from(r.weight)),
                Arc::new(Float32Array::from(r.router_prob)),
                Arc::new(Float32Array::from(r.out_maxabs)),
            ];
            let batch = batch(routing_schema(), cols, &self.routing.temp_path)?;
            self.routing.write(&batch)?;
        }
        if let Some((pending, p)) = self.probs.as_mut() {
            let n = p.seq_index.len();
            if n > 0 {
                let experts = p.probs.len();
                let mut cols: Vec<ArrayRef> = vec![
                    Arc::new(StringArray::from(vec![self.run.run_id.as_str(); n])),
                    Arc::new(UInt32Array::from(std::mem::take(&mut p.seq_index))),
                    Arc::new(UInt32Array::from(std::mem::take(&mut p.position))),
                    Arc::new(UInt16Array::from(std::mem::take(&mut p.layer))),
                ];
                for col in p.probs.iter_mut() {
                    cols.push(Arc::new(Float32Array::from(std::mem::take(col))));
                }
                let batch = batch(probs_schema(experts), cols, &pending.temp_path)?;
                pending.write(&batch)?;
            }
        }
        Ok(())
    }

    /// Flushes, writes the side tables and renames every file into place. `complete` is false
    /// for a run stopped early (its files hold the sequences finished by then).
    pub fn finish(mut self, complete: bool) -> Result<u64> {
        self.flush()?;
        self.run.complete = complete;
        let mut sequences = PendingParquet::create(&self.dir, SEQUENCES_FILE, sequences_schema())?;
        sequences.write(&sequences_batch(&self.sequences, &sequences.temp_path)?)?;
        let mut run = PendingParquet::create(&self.dir, RUN_FILE, run_schema())?;
        run.write(&run_batch(&self.run, &run.temp_path)?)?;
        let mut pending = vec![&mut self.routing, &mut sequences, &mut run];
        if let Some((p, _)) = self.probs.as_mut() {
            pending.push(p);
        }
        for p in pending.iter_mut() {
            p.close()?;
        }
        // The routing table goes last: a folder with routing.parquet is a finished one.
        for p in pending.iter().rev() {
            p.rename()?;
        }
        if self.probs.is_none() {
            // A router_probs.parquet of an earlier run would pair another run with this one.
            let stale = self.dir.join(PROBS_FILE);
            if stale.exists() {
                std::fs::remove_file(&stale).map_err(|e| AnalysisError::Write {
                    path: stale,
                    error: e,
                })?;
            }
        }
        Ok(self.total_rows)
    }
}

fn batch(schema: SchemaRef, cols: Vec<ArrayRef>, path: &Path) -> Result<RecordBatch> {
    RecordBatch::try_new(schema, cols).map_err(|e| AnalysisError::records(path, e))
}

fn sequences_batch(s: &[SequenceInfo], path: &Path) -> Result<RecordBatch> {
    let cols: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from_iter_values(s.iter().map(|x| x.seq_index))),
        Arc::new(StringArray::from_iter_values(s.iter().map(|x| &x.seq_id))),
        Arc::new(StringArray::from_iter_values(s.iter().map(|x| &x.prompt))),
        Arc::new(StringArray::from_iter(s.iter().map(|x| x.label.as_deref()))),
        Arc::new(StringArray::from_iter(
            s.iter().map(|x| x.pair_id.as_deref()),
        )),
        Arc::new(UInt32Array::from_iter_values(
            s.iter().map(|x| x.prompt_tokens),
        )),
        Arc::new(UInt32Array::from_iter_values(
            s.iter().map(|x| x.generated_tokens),
        )),
        Arc::new(StringArray::from_iter(
            s.iter().map(|x| x.generated_text.as_deref()),
        )),
    ];
    batch(sequences_schema(), cols, path)
}

fn run_batch(r: &RunInfo, path: &Path) -> Result<RecordBatch> {
    let s = |v: &str| -> ArrayRef { Arc::new(StringArray::from(vec![v])) };
    let u = |v: u32| -> ArrayRef { Arc::new(UInt32Array::from(vec![v])) };
    let layers: Vec<String> = r.moe_layers.iter().map(u32::to_string).collect();
    let cols = vec![
        s(&r.run_id),
        u(SCHEMA_VERSION),
        s(&r.moescope_version),
        s(&r.model),
        s(&r.architecture),
        s(&r.config_sha256),
        u(r.num_layers),
        s(&layers.join(",")),
        u(r.num_experts),
        u(r.top_k),
        s(&r.interventions),
        s(&r.prompts),
        u(r.generate_tokens),
        Arc::new(Int64Array::from(vec![r.created_unix])),
        Arc::new(BooleanArray::from(vec![r.complete])),
    ];
    batch(run_schema(), cols, path)
}

// ------------------------------------------------------------------------------------ reading

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

/// The fuzz tests' text mutator and budget, shared with the workspace's integration tests.
#[cfg(test)]
#[path = "../../tests/common/mutate.rs"]
#[allow(dead_code)] // Only its budget is used here; the records fuzz mutates bytes.
mod mutate;

#[cfg(test)]
mod tests {
    use super::mutate;
    use crate::stats::testdata::{temp_dir, tiny_records};
    use crate::stats::Positions;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use std::path::Path;

    use arrow_array::{Array, ArrayRef, Float32Array, RecordBatch};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::ArrowWriter;
    use parquet::basic::{BrotliLevel, Compression, GzipLevel, ZstdLevel};
    use parquet::file::properties::WriterProperties;

    use crate::scan::{scan_choices, Needs};
    use crate::stats::freq::frequency;

    /// Rewrites a Parquet file with `compression`, passing its batches through `edit`, as
    /// pyarrow, polars or DuckDB would when a user saves a table again.
    fn rewrite(
        path: &Path,
        compression: Compression,
        edit: impl Fn(Vec<RecordBatch>) -> Vec<RecordBatch>,
    ) {
        let file = std::fs::File::open(path).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        let schema = batches[0].schema();
        let batches = edit(batches);
        let props = WriterProperties::builder()
            .set_compression(compression)
            .build();
        let mut w = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, Some(props))
            .unwrap();
        for b in &batches {
            w.write(b).unwrap();
        }
        w.close().unwrap();
    }

    fn copy_records(from: &Path, tag: &str) -> crate::stats::testdata::TempDir {
        let dir = temp_dir(tag);
        for f in super::TABLES {
            std::fs::copy(from.join(f), dir.0.join(f)).unwrap();
        }
        dir
    }

    /// The codecs pyarrow, polars, DuckDB and Spark write by default or on request.
    #[test]
    fn records_written_by_other_tools_with_any_codec_are_read() {
        let (dir, rec) = tiny_records();
        let want = frequency(&rec, Positions::All).unwrap();
        for codec in [
            Compression::UNCOMPRESSED,
            Compression::SNAPPY,
            Compression::GZIP(GzipLevel::default()),
            Compression::LZ4,
            Compression::LZ4_RAW,
            Compression::ZSTD(ZstdLevel::default()),
            Compression::BROTLI(BrotliLevel::default()),
        ] {
            let copy = copy_records(&dir.0, "codec");
            for f in super::TABLES {
                rewrite(&copy.0.join(f), codec, |b| b);
            }
            let rec = super::Records::open(&copy.0).unwrap_or_else(|e| panic!("{codec:?}: {e}"));
            let got = frequency(&rec, Positions::All).unwrap_or_else(|e| panic!("{codec:?}: {e}"));
            assert_eq!(got.experts.to_csv(), want.experts.to_csv(), "{codec:?}");
        }
    }

    /// Tables that do not belong together, or NaN weights, fail every scan with a message
    /// naming the file and what is wrong, instead of giving statistics.
    #[test]
    fn inconsistent_or_non_finite_records_are_refused() {
        let (dir, _) = tiny_records();
        let scan = |d: &Path| -> String {
            let rec = super::Records::open(d).unwrap();
            let err = scan_choices(&rec, Needs::default(), |_| Ok(()))
                .unwrap_err()
                .to_string();
            let freq = frequency(&rec, Positions::All).unwrap_err().to_string();
            assert_eq!(err, freq);
            err
        };
        // sequences.parquet cut short: one sequence of two.
        let cut = copy_records(&dir.0, "cut");
        rewrite(
            &cut.0.join(super::SEQUENCES_FILE),
            Compression::SNAPPY,
            |b| vec![b[0].slice(0, 1)],
        );
        let msg = scan(&cut.0);
        assert!(
            msg.contains("routing.parquet") && msg.contains("do not belong together"),
            "{msg}"
        );
        // routing.parquet concatenated with itself.
        let twice = copy_records(&dir.0, "twice");
        rewrite(
            &twice.0.join(super::ROUTING_FILE),
            Compression::SNAPPY,
            |b| [b.clone(), b].concat(),
        );
        let msg = scan(&twice.0);
        assert!(
            msg.contains("holds 16 token routings") && msg.contains("accounts for 8"),
            "{msg}"
        );
        // A NaN weight.
        let nan = copy_records(&dir.0, "nan");
        rewrite(&nan.0.join(super::ROUTING_FILE), Compression::SNAPPY, |b| {
            b.into_iter()
                .map(|batch| {
                    let i = batch.schema().index_of("weight").unwrap();
                    let mut w: Vec<f32> = batch
                        .column(i)
                        .as_any()
                        .downcast_ref::<Float32Array>()
                        .unwrap()
                        .values()
                        .to_vec();
                    w[3] = f32::NAN;
                    let mut cols: Vec<ArrayRef> = batch.columns().to_vec();
                    cols[i] = std::sync::Arc::new(Float32Array::from(w));
                    RecordBatch::try_new(batch.schema(), cols).unwrap()
                })
                .collect()
        });
        let msg = scan(&nan.0);
        assert!(
            msg.contains("routing.parquet") && msg.contains("`weight`") && msg.contains("NaN"),
            "{msg}"
        );
    }

    /// A routing table whose footer gives a column chunk a negative offset (found by the long
    /// fuzz run, case 2542 of seed 5) is an error naming the damage; the Parquet reader alone
    /// panics on it.
    #[test]
    fn a_column_chunk_outside_the_file_is_an_error() {
        let (dir, _) = tiny_records();
        let copy = copy_records(&dir.0, "damaged");
        let damaged = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/routing-negative-column-offset.parquet");
        std::fs::copy(damaged, copy.0.join(super::ROUTING_FILE)).unwrap();
        let rec = super::Records::open(&copy.0).unwrap();
        let msg = frequency(&rec, Positions::All).unwrap_err().to_string();
        assert!(
            msg.contains("routing.parquet") && msg.contains("lies outside the file"),
            "{msg}"
        );
    }

    /// Randomly corrupted record files give errors, never panics.
    #[test]
    fn corrupted_files_are_errors_not_panics() {
        let (dir, _) = tiny_records();
        let mut rng = StdRng::seed_from_u64(5);
        for name in [super::ROUTING_FILE, super::RUN_FILE, super::SEQUENCES_FILE] {
            let good = std::fs::read(dir.0.join(name)).unwrap();
            let budget = mutate::Budget::part(150, 3);
            let mut cases = 0;
            for _ in (0..).take_while(|&r| budget.more(r)) {
                cases += 1;
                let bad = temp_dir("fuzz");
                for f in [super::ROUTING_FILE, super::RUN_FILE, super::SEQUENCES_FILE] {
                    std::fs::copy(dir.0.join(f), bad.0.join(f)).unwrap();
                }
                let mut bytes = good.clone();
                if rng.gen_bool(0.3) {
                    bytes.truncate(rng.gen_range(0..bytes.len()));
                } else {
                    for _ in 0..rng.gen_range(1..8) {
                        let i = rng.gen_range(0..bytes.len());
                        bytes[i] = rng.gen();
                    }
                }
                std::fs::write(bad.0.join(name), &bytes).unwrap();
                let read = std::panic::catch_unwind(|| {
                    if let Ok(rec) = super::Records::open(&bad.0) {
                        let _ = crate::stats::freq::frequency(&rec, Positions::All);
                    }
                });
                if read.is_err() {
                    let keep = std::env::temp_dir().join(format!("moescope-crash-{name}"));
                    std::fs::write(&keep, &bytes).unwrap();
                    panic!(
                        "{name} case {cases} panicked; the file is kept in {}",
                        keep.display()
                    );
                }
            }
            eprintln!("{name}: {cases} corrupted copies, none panicked");
        }
    }
}
