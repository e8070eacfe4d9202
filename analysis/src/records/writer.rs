//! `RecordWriter`: streams routing rows to Parquet under temporary names, in bounded batches,
//! and renames every table into place when the run finishes.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{
    ArrayRef, BooleanArray, Float32Array, Int64Array, RecordBatch, StringArray, UInt16Array,
    UInt32Array, UInt8Array,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::error::{AnalysisError, Result};
use crate::read::SCHEMA_VERSION;

use super::schema::{
    routing_schema, RunInfo, SequenceInfo, TokenRouting, PROBS_FILE, ROUTING_FILE, RUN_FILE,
    SEQUENCES_FILE,
};

/// Rows buffered before a batch goes to Parquet.
const FLUSH_ROWS: usize = 1 << 16;

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
