//! The `moescope` binary as a user runs it: exit codes and what it prints.

mod common;

use std::process::Command;

use common::fixture;

fn moescope(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_moescope"))
        .args(args)
        .output()
        .expect("moescope runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn info_reports_architecture_experts_and_parameters() {
    let dir = fixture("qwen2_moe");
    let (ok, out, err) = moescope(&["info", "--model", dir.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("qwen2_moe"), "{out}");
    assert!(out.contains("8 routed per MoE layer, top-2"), "{out}");
    assert!(out.contains("MoE: 1, 2; dense: 0"), "{out}");
    assert!(
        out.contains("1 per MoE layer, width 48, sigmoid gate"),
        "{out}"
    );
    assert!(out.contains("active per token"), "{out}");
}

#[test]
fn info_reports_mla_sinks_windows_and_mxfp4_parameters() {
    let dir = fixture("gpt_oss_mxfp4");
    let (ok, out, err) = moescope(&["info", "--model", dir.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        out.contains("attention sinks, sliding window 4 on layers 0"),
        "{out}"
    );
    // Each MXFP4 block byte is two weights; scales are not parameters. By hand: per layer
    // attention 4·16·64 + 64 (q) + 2·(2·16·64 + 32) (k, v) + 64·64 + 64 (o) + 4 (sinks),
    // router 8·64 + 8, experts 8·(64·64 + 64 + 32·64 + 64), norms 2·64; embed and head
    // 2·320·64; final norm 64.
    let per_layer = (4 * 16 * 64 + 64)
        + 2 * (2 * 16 * 64 + 32)
        + (64 * 64 + 64)
        + 4
        + (8 * 64 + 8)
        + 8 * (64 * 64 + 64 + 32 * 64 + 64)
        + 2 * 64;
    let total = 2 * per_layer + 2 * 320 * 64 + 64;
    assert!(
        out.contains(&format!("{:.1}K total", total as f64 / 1e3)),
        "{out}\nexpected {total}"
    );
    let dir = fixture("deepseek_v3");
    let (_, out, _) = moescope(&["info", "--model", dir.to_str().unwrap()]);
    assert!(out.contains("multi-head latent attention"), "{out}");
    assert!(
        out.contains("best 2 of 4 groups by sum of best two, selection bias"),
        "{out}"
    );
}

#[test]
fn generate_runs_on_the_default_model_and_is_reproducible() {
    let args = [
        "generate",
        "--prompt",
        "The quick brown fox",
        "--max-tokens",
        "6",
        "--show-routing",
    ];
    let (ok, first, err) = moescope(&args);
    assert!(ok, "{err}");
    assert!(first.starts_with("The quick brown fox"), "{first}");
    assert!(first.contains("routing (experts chosen"), "{first}");
    let (_, second, _) = moescope(&args);
    assert_eq!(first, second, "greedy generation must be reproducible");
}

#[test]
fn chat_goes_through_the_template() {
    let (ok, out, err) = moescope(&["generate", "--chat", "hi", "--max-tokens", "2"]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"),
        "{out}"
    );
}

#[test]
fn bad_arguments_fail_with_a_message() {
    let (ok, _, err) = moescope(&["info", "--model", "/no/such/folder"]);
    assert!(!ok);
    assert!(err.contains("/no/such/folder"), "{err}");
    let (ok, _, err) = moescope(&["generate", "--prompt", "x", "--mask", "1:99"]);
    assert!(!ok);
    assert!(err.contains("expert 99 does not exist"), "{err}");
    let (ok, _, err) = moescope(&["generate", "--prompt", "x", "--mask", "one:2"]);
    assert!(!ok);
    assert!(err.contains("LAYER:EXPERT"), "{err}");
    let (ok, _, err) = moescope(&["generate", "--prompt", "x", "--device", "cuda:0"]);
    assert!(!ok);
    assert!(err.contains("no CUDA support"), "{err}");
}
