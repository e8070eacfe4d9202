//! `moescope bench`: prints the workbench's throughput measurement (prefill and decode, with
//! and without routing capture, peak memory) as a table or one JSON object.

use anyhow::Result;
use moescope_workbench::open::dtype_name;
use moescope_workbench::throughput::{
    bench_prompts, measure, refuse_runs_that_cannot_fit, BenchSettings, MemoryPeak,
};

use crate::cli::BenchArgs;
use crate::terminal::open_model;

/// Runs the benchmark and prints the table (or JSON).
pub fn run(args: &BenchArgs) -> Result<()> {
    let memory = MemoryPeak::start();
    let ck = open_model(&args.model)?;
    let model = &ck.model;
    let settings = BenchSettings {
        prompt_len: args.prompt_len,
        decode_tokens: args.decode_tokens,
        batch: args.batch,
        repeats: args.repeats,
    };
    refuse_runs_that_cannot_fit(model.config(), &settings)?;
    let prompts = bench_prompts(model.config().vocab_size, &settings);
    let [plain, captured] = measure(model, &prompts, &settings)?;
    let (peak_anon, peak_rss) = memory.finish();
    let path = moescope_engine::kernels::active_path();
    let kernel = path.name();
    let thresholds = moescope_engine::kernels::measured_thresholds();
    let broadcast = if thresholds.is_empty() {
        "no measured broadcast threshold".to_string()
    } else {
        let shapes: Vec<String> = thresholds
            .iter()
            .map(|(k, m, n)| format!("{k}→{m}: {n}"))
            .collect();
        format!("broadcast kernel from rows {}", shapes.join(", "))
    };
    let overhead = |a: f64, b: f64| (a / b - 1.0) * 100.0;
    let threads = candle_core::utils::get_num_threads();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "engine": "moescope",
                "model": ck.dir.display().to_string(),
                "threads": threads,
                "batch": args.batch,
                "prompt_len": args.prompt_len,
                "decode_tokens": args.decode_tokens,
                "prefill_tok_s": plain.prefill,
                "decode_tok_s": plain.decode,
                "prefill_tok_s_capture": captured.prefill,
                "decode_tok_s_capture": captured.decode,
                "dtype": dtype_name(model.dtype()),
                "kernel": kernel,
                "broadcast_min_rows": thresholds
                    .iter()
                    .map(|(k, m, n)| serde_json::json!({"k": k, "m": m, "min_rows": n}))
                    .collect::<Vec<_>>(),
                "peak_anon_bytes": peak_anon,
                "peak_rss_bytes": peak_rss,
            })
        );
    } else {
        println!(
            "model {} · {:?} · batch {} · prompt {} · decode {} · {threads} threads · {kernel} kernels, {broadcast} · median of {}",
            ck.dir.display(),
            model.dtype(),
            args.batch,
            args.prompt_len,
            args.decode_tokens,
            args.repeats
        );
        println!("{:<22} {:>14} {:>14}", "", "prefill tok/s", "decode tok/s");
        println!(
            "{:<22} {:>14.1} {:>14.1}",
            "plain", plain.prefill, plain.decode
        );
        println!(
            "{:<22} {:>14.1} {:>14.1}",
            "with routing capture", captured.prefill, captured.decode
        );
        println!(
            "{:<22} {:>13.1}% {:>13.1}%",
            "capture overhead",
            overhead(plain.prefill, captured.prefill),
            overhead(plain.decode, captured.decode)
        );
        println!(
            "peak memory: {:.2} GB anonymous (weights, caches, activations), {:.2} GB resident with mapped files",
            peak_anon as f64 / 1e9,
            peak_rss as f64 / 1e9
        );
    }
    Ok(())
}
