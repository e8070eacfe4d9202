//! `moescope record`: runs a prompt set through the model in batches and streams the routing
//! of every token to a Parquet records folder. Ctrl-C stops after the current batch and still
//! leaves complete files (marked incomplete in run.parquet).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use moescope_analysis::records::{RecordWriter, RunInfo, SequenceInfo, TokenRouting};
use moescope_engine::{load_prompt_set, trace_batch, GenerateOptions, SequenceTrace, TextCodec};
use sha2::{Digest, Sha256};

use crate::cli::RecordArgs;
use crate::commands::{load, steering_policy};

/// Runs the recording.
pub fn run(args: &RecordArgs) -> Result<()> {
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let ck = load(&args.model)?;
    let records = load_prompt_set(&args.prompts)?;
    if records.is_empty() {
        bail!("{}: no prompts", args.prompts.display());
    }
    let policy = steering_policy(&ck, args.steer.as_deref(), &args.mask)?;
    let rendered: Vec<String> = records
        .iter()
        .map(|r| r.render(&ck.codec))
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("rendering {}", args.prompts.display()))?;
    let encoded: Vec<Vec<u32>> = rendered
        .iter()
        .map(|t| ck.codec.encode(t))
        .collect::<std::result::Result<_, _>>()?;
    if let Some(i) = encoded.iter().position(Vec::is_empty) {
        bail!(
            "{}: prompt {} is empty after tokenisation",
            args.prompts.display(),
            records[i].id
        );
    }
    let c = ck.model.config();
    let config_path = ck.dir.join("config.json");
    let config_bytes = std::fs::read(&config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let run = RunInfo {
        run_id: args
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
        interventions: interventions_text(args)?,
        prompts: args.prompts.display().to_string(),
        generate_tokens: args.generate as u32,
        created_unix: created,
        moescope_version: env!("CARGO_PKG_VERSION").to_string(),
        complete: true,
    };
    let mut writer = RecordWriter::create(&args.out, run, args.full_probs)
        .with_context(|| format!("creating records in {}", args.out.display()))?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        // Without a handler (e.g. one is already installed) Ctrl-C simply ends the process and
        // the temporary files are left without being renamed.
        let _ = ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst));
    }
    let opts = GenerateOptions {
        max_new_tokens: args.generate,
        ..Default::default()
    };
    let bar = ProgressBar::new(records.len() as u64);
    bar.set_style(ProgressStyle::with_template(
        "recording {bar:40} {pos}/{len} prompts ({elapsed}, eta {eta}) {msg}",
    )?);
    let mut done = 0usize;
    let mut texts = TokenTexts::default();
    for (chunk_index, chunk) in encoded.chunks(args.batch).enumerate() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let traces = trace_batch(&ck.model, Some(&ck.codec), chunk, &opts, &policy)?;
        for (i, trace) in traces.iter().enumerate() {
            let index = chunk_index * args.batch + i;
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
        bar.set_position(done as u64);
        bar.set_message(format!("{} rows", writer.rows_written()));
    }
    bar.finish_and_clear();
    let complete = done == records.len();
    let rows = writer.finish(complete)?;
    if complete {
        println!(
            "recorded {done} prompts, {rows} routing rows → {}",
            args.out.display()
        );
    } else {
        println!(
            "interrupted: recorded {done} of {} prompts, {rows} routing rows → {} (run.parquet says complete=false)",
            records.len(),
            args.out.display()
        );
    }
    Ok(())
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
    let (k, e) = (t.top_k, t.num_experts);
    for (pos, &token) in t.tokens.iter().enumerate() {
        let text = texts.get(codec, token).to_string();
        for layer in &t.layers {
            writer.push_token(
                seq_id,
                &TokenRouting {
                    seq_index,
                    position: pos as u32,
                    token_id: token,
                    token_text: &text,
                    is_generated: pos >= t.prompt_len,
                    layer: layer.layer as u16,
                    experts: &layer.ids[pos * k..(pos + 1) * k],
                    weights: &layer.weights[pos * k..(pos + 1) * k],
                    scores: &layer.scores[pos * e..(pos + 1) * e],
                    out_maxabs: &layer.out_maxabs[pos * k..(pos + 1) * k],
                },
            )?;
        }
    }
    Ok(())
}

/// The interventions in effect, as the profile text plus any `--mask` flags.
fn interventions_text(args: &RecordArgs) -> Result<String> {
    let mut text = match &args.steer {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
        }
        None => String::new(),
    };
    for m in &args.mask {
        text.push_str(&format!("# --mask {m}\n"));
    }
    Ok(text)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
