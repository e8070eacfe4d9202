//! Recording: runs a prompt set through the model in batches and streams the routing of every
//! token to a Parquet records folder. A raised cancel flag stops it after the current batch and
//! still leaves complete files (marked incomplete in run.parquet).

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use moescope_analysis::records::{RecordWriter, RunInfo, SequenceInfo, TokenRouting};
use moescope_engine::{
    load_prompt_set, trace_batch, Checkpoint, GenerateOptions, RoutingPolicy, SequenceTrace,
    TextCodec,
};
use sha2::{Digest, Sha256};

use crate::error::{bail, Result, ResultExt};
use crate::progress::{CancelFlag, Progress};

/// Fails when `out` already holds a recording and `overwrite` is not given.
pub fn refuse_existing_recording(out: &Path, overwrite: bool) -> Result<()> {
    let existing = moescope_analysis::records::existing_tables(out);
    if !existing.is_empty() && !overwrite {
        bail!(
            "{} already holds a recording ({}); pass --overwrite to replace it, or choose another --out",
            out.display(),
            existing.join(", ")
        );
    }
    Ok(())
}

/// What to record and where: the inputs of [`record`].
pub struct RecordJob<'a> {
    /// The model.
    pub ck: &'a Checkpoint,
    /// The JSONL prompt set.
    pub prompts: &'a Path,
    /// The records folder to write.
    pub out: &'a Path,
    /// Routing in effect while recording.
    pub policy: &'a RoutingPolicy,
    /// The interventions as text, stored in run.parquet.
    pub interventions: String,
    /// Tokens generated per prompt (greedy) and recorded after the prompt's.
    pub generate: usize,
    /// Whether to write router_probs.parquet.
    pub full_probs: bool,
    /// Prompts run together.
    pub batch: usize,
    /// Identifier written in every row (default: run-<unix time>).
    pub run_id: Option<String>,
}

/// How a recording ended.
pub struct Recorded {
    /// Prompts recorded.
    pub done: usize,
    /// Prompts in the set.
    pub total: usize,
    /// Routing rows written.
    pub rows: u64,
}

impl Recorded {
    /// Whether every prompt was recorded (not interrupted).
    pub fn complete(&self) -> bool {
        self.done == self.total
    }
}

/// Records the routing of every prompt of `job.prompts` into `job.out`, stopping after the
/// current batch once `stop` is raised (the files are then complete but marked so).
pub fn record(job: &RecordJob<'_>, progress: &dyn Progress, stop: &CancelFlag) -> Result<Recorded> {
    if job.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let ck = job.ck;
    let records = load_prompt_set(job.prompts)?;
    if records.is_empty() {
        bail!("{}: no prompts", job.prompts.display());
    }
    let rendered: Vec<String> = records
        .iter()
        .map(|r| r.render(&ck.codec))
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("rendering {}", job.prompts.display()))?;
    let encoded: Vec<Vec<u32>> = records
        .iter()
        .zip(&rendered)
        .map(|(r, text)| r.token_ids_of(&ck.codec, text))
        .collect::<std::result::Result<_, _>>()?;
    if let Some(i) = encoded.iter().position(Vec::is_empty) {
        bail!(
            "{}: prompt {} is empty after tokenisation",
            job.prompts.display(),
            records[i].id
        );
    }
    let c = ck.model.config();
    // Every prompt must fit before any is run, so no finished batch is thrown away.
    let context = c.max_position_embeddings;
    if let Some((r, t)) = records
        .iter()
        .zip(&encoded)
        .find(|(_, t)| t.len() + job.generate > context)
    {
        bail!(
            "{} line {}: prompt {} has {} tokens{}, more than the model's context of {context} \
             (max_position_embeddings); shorten it or remove it from the set",
            job.prompts.display(),
            r.line,
            r.id,
            t.len(),
            if job.generate > 0 {
                format!(" + {} to generate", job.generate)
            } else {
                String::new()
            }
        );
    }
    let config_path = ck.dir.join("config.json");
    let config_bytes = std::fs::read(&config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let run = RunInfo {
        run_id: job
            .run_id
            .clone()
            .unwrap_or_else(|| format!("run-{created}")),
        model: ck.dir.display().to_string(),
        architecture: c.architecture.model_type().to_string(),
        config_sha256: hex(&Sha256::digest(&config_bytes)),
        num_layers: c.layers.len() as u32,
        moe_layers: c.moe_layers().iter().map(|&l| l as u32).collect(),
        num_experts: c.moe.num_experts as u32,
        top_k: c.moe.top_k as u32,
        interventions: job.interventions.clone(),
        prompts: job.prompts.display().to_string(),
        generate_tokens: job.generate as u32,
        created_unix: created,
        moescope_version: env!("CARGO_PKG_VERSION").to_string(),
        complete: true,
    };
    let mut writer = RecordWriter::create(job.out, run, job.full_probs)
        .with_context(|| format!("creating records in {}", job.out.display()))?;
    let opts = GenerateOptions {
        max_new_tokens: job.generate,
        ..Default::default()
    };
    progress.begin("recording", Some(records.len() as u64), "prompts");
    let mut done = 0usize;
    let mut texts = TokenTexts::default();
    for (chunk_index, chunk) in encoded.chunks(job.batch).enumerate() {
        if stop.is_cancelled() {
            break;
        }
        let traces = trace_batch(&ck.model, Some(&ck.codec), chunk, &opts, job.policy)?;
        for (i, trace) in traces.iter().enumerate() {
            let index = chunk_index * job.batch + i;
            let r = &records[index];
            push_trace(
                &mut writer,
                &mut texts,
                &ck.codec,
                index as u32,
                &r.id,
                trace,
            )?;
            writer.push_sequence(SequenceInfo {
                seq_index: index as u32,
                seq_id: r.id.clone(),
                prompt: rendered[index].clone(),
                label: r.label.clone(),
                pair_id: r.pair_id.clone(),
                prompt_tokens: trace.prompt_len as u32,
                generated_tokens: (trace.tokens.len() - trace.prompt_len) as u32,
                generated_text: trace.generated.as_ref().map(|g| g.text.clone()),
            });
        }
        done += chunk.len();
        progress.advance(chunk.len() as u64);
        progress.note(&format!("{} rows", writer.rows_written()));
    }
    progress.end();
    let total = records.len();
    let rows = writer.finish(done == total)?;
    Ok(Recorded { done, total, rows })
}

/// The text of each token id, decoded once.
#[derive(Default)]
struct TokenTexts(std::collections::HashMap<u32, String>);

impl TokenTexts {
    fn get(&mut self, codec: &TextCodec, id: u32) -> &str {
        self.0.entry(id).or_insert_with(|| codec.token_text(id))
    }
}

fn push_trace(
    writer: &mut RecordWriter,
    texts: &mut TokenTexts,
    codec: &TextCodec,
    seq_index: u32,
    seq_id: &str,
    t: &SequenceTrace,
) -> Result<()> {
    let e = t.num_experts;
    for layer in &t.layers {
        if let Some(v) = layer
            .weights
            .iter()
            .chain(&layer.scores)
            .find(|v| !v.is_finite())
        {
            bail!(
                "prompt {seq_id}: the router of layer {} produced {v}; the checkpoint may hold NaN or infinite weights \
                 (or overflow in this dtype: try --dtype f32). Nothing was written",
                layer.layer
            );
        }
    }
    for (pos, &token) in t.tokens.iter().enumerate() {
        let text = texts.get(codec, token).to_string();
        for layer in &t.layers {
            let choice = layer.choice(pos);
            writer.push_token(
                seq_id,
                &TokenRouting {
                    seq_index,
                    position: pos as u32,
                    token_id: token,
                    token_text: &text,
                    is_generated: pos >= t.prompt_len,
                    layer: layer.layer as u16,
                    experts: choice.ids,
                    weights: choice.weights,
                    scores: layer.scores.get(pos * e..(pos + 1) * e).unwrap_or_default(),
                    out_maxabs: choice.out_maxabs,
                },
            )?;
        }
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
