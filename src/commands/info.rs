//! `moescope info`: what a checkpoint is, from its config and safetensors headers alone.

use anyhow::{Context, Result};
use candle_core::DType;
use moescope_engine::config::QkNorm;
use moescope_engine::CheckpointSummary;
use moescope_workbench::open::{device, dtype, dtype_name};

use crate::cli::ModelArgs;
use crate::terminal::model_spec;

/// Describes the checkpoint from its config and safetensors headers, loading no weight.
pub fn run(args: &ModelArgs) -> Result<()> {
    let dir = model_spec(args).model_dir()?;
    let device = device(&args.device)?;
    let ck = CheckpointSummary::read(&dir)
        .with_context(|| format!("cannot read the checkpoint in {}", dir.display()))?;
    let compute = dtype(&args.dtype)?
        .or(ck.stored_dtype)
        .unwrap_or(DType::F32);
    let c = &ck.config;
    let moe_layers = c.moe_layers();
    let dense: Vec<usize> = (0..c.num_layers())
        .filter(|l| !moe_layers.contains(l))
        .collect();
    let a = &c.attention;
    let rows: Vec<(&str, String)> = vec![
        ("model", ck.dir.display().to_string()),
        ("architecture", c.architecture.model_type().to_string()),
        (
            "layers",
            format!(
                "{} (MoE: {}; dense: {})",
                c.num_layers(),
                list(&moe_layers),
                list(&dense)
            ),
        ),
        (
            "experts",
            format!(
                "{} routed per MoE layer, top-{}, {}{}, expert width {}",
                c.moe.num_experts,
                c.moe.top_k,
                c.moe.routing,
                if c.moe.selection_bias {
                    ", selection bias"
                } else {
                    ""
                },
                c.moe.expert_intermediate_size
            ),
        ),
        (
            "shared experts",
            match &c.moe.shared_expert {
                Some(s) => format!(
                    "1 per MoE layer, width {}{}",
                    s.intermediate_size,
                    if s.sigmoid_gate { ", sigmoid gate" } else { "" }
                ),
                None => "none".into(),
            },
        ),
        (
            "attention",
            format!(
                "{}{} heads, {} kv heads, head_dim {}, q/k norm {}, qkv bias {}{}{}",
                if a.mla.is_some() {
                    "multi-head latent attention, "
                } else {
                    ""
                },
                a.num_heads,
                a.num_kv_heads,
                a.head_dim,
                match a.qk_norm {
                    QkNorm::None => "none",
                    QkNorm::PerHead => "per head",
                    QkNorm::Full => "full projection",
                },
                a.qkv_bias,
                if a.sinks { ", attention sinks" } else { "" },
                sliding_summary(c),
            ),
        ),
        ("hidden size", c.hidden_size.to_string()),
        ("vocabulary", c.vocab_size.to_string()),
        ("context", c.max_position_embeddings.to_string()),
        (
            "dtype",
            format!(
                "stored {} (config says {}); computed in {} on {}",
                ck.dtypes
                    .0
                    .iter()
                    .map(|(d, n)| format!("{d}: {}", human(*n)))
                    .collect::<Vec<_>>()
                    .join(", "),
                c.declared_dtype.as_deref().unwrap_or("nothing"),
                dtype_name(compute),
                if device.is_cpu() { "cpu" } else { "cuda" },
            ),
        ),
        (
            "weights",
            match c.fp8_block {
                Some((r, k)) => format!(
                    "FP8 e4m3 projections with one scale per {r}×{k} block, kept compressed \
                     (a byte a value); the rest as stored"
                ),
                None => "as stored (MXFP4 experts, where present, kept compressed)".into(),
            },
        ),
        (
            "bytes",
            format!(
                "{:.2} GB on disk, {:.2} GB loaded in {}",
                ck.stored_bytes as f64 / 1e9,
                ck.loaded_bytes(compute) as f64 / 1e9,
                dtype_name(compute)
            ),
        ),
        (
            "parameters",
            format!(
                "{} total, {} active per token",
                human(ck.num_params),
                human(ck.num_active_params())
            ),
        ),
        (
            "chat template",
            if ck.has_chat_template { "yes" } else { "no" }.into(),
        ),
    ];
    for (k, v) in rows {
        println!("{k:<15} {v}");
    }
    Ok(())
}

/// `, sliding window W on layers …` when any layer uses one.
fn sliding_summary(c: &moescope_engine::ModelConfig) -> String {
    let windowed: Vec<(usize, usize)> = c
        .layers
        .iter()
        .enumerate()
        .filter_map(|(l, spec)| spec.sliding_window.map(|w| (l, w)))
        .collect();
    match windowed.first() {
        None => String::new(),
        Some(&(_, w)) => {
            let layers: Vec<usize> = windowed.iter().map(|&(l, _)| l).collect();
            format!(", sliding window {w} on layers {}", list(&layers))
        }
    }
}

fn list(v: &[usize]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn human(n: usize) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1}K", n as f64 / 1e3),
        n => n.to_string(),
    }
}
