//! Writes a synthetic records folder for the analysis benchmark: `TOKENS` token positions
//! (sequences of 512) × `LAYERS` layers × top-`K` of `EXPERTS` experts, routed with a skewed,
//! seeded distribution. 800 000 × 16 × 8 gives 102.4 M routing rows.
//!
//! `cargo run --release -p moescope-analysis --example synth_records -- OUT [TOKENS] [LAYERS] [EXPERTS] [K]`

use std::path::PathBuf;

use moescope_analysis::records::{RecordWriter, RunInfo, SequenceInfo, TokenRouting};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let Some(out) = args.get(1).map(PathBuf::from) else {
        return Err("usage: synth_records OUT [TOKENS] [LAYERS] [EXPERTS] [K]".into());
    };
    let arg = |i: usize, d: usize| -> Result<usize, Box<dyn std::error::Error>> {
        Ok(args.get(i).map(|s| s.parse()).transpose()?.unwrap_or(d))
    };
    let (tokens, layers, experts, k) = (arg(2, 800_000)?, arg(3, 16)?, arg(4, 64)?, arg(5, 8)?);
    let seq_len = 512;
    let run = RunInfo {
        run_id: "synthetic".into(),
        model: "synthetic".into(),
        architecture: "synthetic".into(),
        config_sha256: "0".repeat(64),
        num_layers: layers as u32,
        moe_layers: (0..layers as u32).collect(),
        num_experts: experts as u32,
        top_k: k as u32,
        interventions: String::new(),
        prompts: "synthetic".into(),
        generate_tokens: 0,
        created_unix: 0,
        moescope_version: env!("CARGO_PKG_VERSION").into(),
        complete: true,
    };
    let mut w = RecordWriter::create(&out, run, false)?;
    let mut rng = StdRng::seed_from_u64(7);
    let vocab: Vec<String> = (0..2000).map(|i| format!("tok{i}")).collect();
    let mut scores = vec![0f32; experts];
    let mut ids = vec![0u32; k];
    let mut weights = vec![0f32; k];
    let mut maxabs = vec![0f32; k];
    for t in 0..tokens {
        let (seq, pos) = ((t / seq_len) as u32, (t % seq_len) as u32);
        let token = if rng.gen_bool(0.02) {
            0
        } else {
            rng.gen_range(1..vocab.len())
        };
        let text = if token == 0 {
            "<think>"
        } else {
            vocab[token].as_str()
        };
        for layer in 0..layers {
            // Skewed choice: squaring a uniform favours low expert ids.
            let mut n = 0;
            while n < k {
                let e = ((rng.gen::<f64>().powi(2)) * experts as f64) as u32;
                if !ids[..n].contains(&e) {
                    ids[n] = e;
                    n += 1;
                }
            }
            // Varied weights, scores and output peaks, so no column compresses to nothing.
            for s in scores.iter_mut() {
                *s = rng.gen::<f32>();
            }
            for r in 0..k {
                weights[r] = rng.gen::<f32>();
                maxabs[r] = rng.gen::<f32>() * 10.0;
            }
            let total: f32 = weights.iter().sum();
            weights.iter_mut().for_each(|w| *w /= total);
            w.push_token(
                "s",
                &TokenRouting {
                    seq_index: seq,
                    position: pos,
                    token_id: token as u32,
                    token_text: text,
                    is_generated: false,
                    layer: layer as u16,
                    experts: &ids,
                    weights: &weights,
                    scores: &scores,
                    out_maxabs: &maxabs,
                },
            )?;
        }
        if pos == 0 {
            w.push_sequence(SequenceInfo {
                seq_index: seq,
                seq_id: format!("s{seq}"),
                prompt: String::new(),
                label: Some(if seq % 2 == 0 { "a" } else { "b" }.into()),
                pair_id: None,
                prompt_tokens: seq_len as u32,
                generated_tokens: 0,
                generated_text: None,
            });
        }
    }
    let rows = w.finish(true)?;
    println!("{rows} rows → {}", out.display());
    Ok(())
}
