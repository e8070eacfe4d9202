//! The `moescope` binary as a user runs it: exit codes and what it prints.

mod common;

use common::{add_sparse_tensor, fixture, moescope};

#[test]
fn info_reads_headers_only_on_any_size() {
    // A 2 TiB checkpoint (sparse file): loading it is refused (not enough memory), so `info`
    // succeeds only if it reads no weight.
    let dir = std::env::temp_dir().join(format!("moescope-cli-huge-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(fixture("olmoe")).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
    add_sparse_tensor(&dir.join("model.safetensors"), "extra.weight", 1 << 40);
    let (ok, out, err) = moescope(&["info", "--model", dir.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ok, "{err}");
    assert!(out.contains("2199.02 GB on disk"), "{out}");
    assert!(
        out.contains("computed in bf16 on cpu"),
        "auto is the stored dtype: {out}"
    );
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
fn a_conversation_of_several_turns_goes_through_the_template_in_order() {
    let (ok, out, err) = moescope(&[
        "generate",
        "--chat",
        "hi",
        "--reply",
        "Hello there.",
        "--chat",
        "and now?",
        "--max-tokens",
        "2",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with(
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nHello there.<|im_end|>\n\
             <|im_start|>user\nand now?<|im_end|>\n<|im_start|>assistant\n"
        ),
        "{out}"
    );
    let (ok, _, err) = moescope(&["generate", "--chat", "a", "--chat", "b"]);
    assert!(!ok);
    assert!(
        err.contains("2 --chat messages need 1 --reply texts") && err.contains("got 0"),
        "{err}"
    );
}

#[test]
fn steer_prints_baseline_and_steered_and_masks_take_effect() {
    let profile = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/steer-default-model.toml"
    );
    let args = [
        "generate",
        "--prompt",
        "The quick brown fox",
        "--max-tokens",
        "8",
    ];
    let (ok, out, err) = moescope(&[&args[..], &["--steer", profile, "--show-routing"]].concat());
    assert!(ok, "{err}");
    assert!(
        out.contains("── baseline") && out.contains("── steered"),
        "{out}"
    );
    assert!(out.contains("differ from generated token"), "{out}");
    // The routing table (steered run): layer 2 never uses the masked experts 0, 5, 11, and
    // layer 1 uses the forced expert 0 on every generated token.
    for row in out.lines().filter(|l| l.contains(" | ")).skip(1) {
        // Columns: position, token and layer 0's experts, then one column per later layer.
        let cols: Vec<&str> = row.split(" | ").map(str::trim).collect();
        let l2: Vec<&str> = cols[2].split(',').collect();
        assert!(!l2.iter().any(|e| ["0", "5", "11"].contains(e)), "{row}");
        if row.contains("\"*") {
            assert!(cols[1].split(',').any(|e| e == "0"), "{row}");
        }
    }
    let bad = std::env::temp_dir().join(format!("moescope-bad-steer-{}.toml", std::process::id()));
    std::fs::write(
        &bad,
        "version = 1\n\n[[intervention]]\nlayer = 1\nexpert = 99\nkind = \"force\"\n",
    )
    .unwrap();
    let (ok, _, err) = moescope(&[&args[..], &["--steer", bad.to_str().unwrap()]].concat());
    std::fs::remove_file(&bad).unwrap();
    assert!(!ok);
    assert!(
        err.contains("line 3") && err.contains("expert 99 does not exist"),
        "{err}"
    );
}

#[test]
fn eval_reports_baseline_and_steered_with_intervals() {
    let root = env!("CARGO_MANIFEST_DIR");
    let prompts = format!("{root}/datasets/examples/smoke.jsonl");
    let rules = format!("rules:{root}/datasets/examples/rules.toml");
    let profile = format!("{root}/examples/steer-default-model.toml");
    let args = [
        "eval",
        "--prompts",
        &prompts,
        "--steer",
        &profile,
        "--metric",
        &rules,
        "--metric",
        "perplexity",
        "--metric",
        "target-logprob",
        "--max-tokens",
        "6",
        "--json",
    ];
    let (ok, out, err) = moescope(&args);
    assert!(ok, "{err}");
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let get = |metric: &str, variant: &str| -> &serde_json::Value {
        rows.iter()
            .find(|r| r["metric"] == metric && r["variant"] == variant)
            .unwrap_or_else(|| panic!("no {metric}/{variant} in {out}"))
    };
    for variant in ["baseline", "steered"] {
        let p = get("perplexity", variant);
        let (v, lo, hi) = (
            p["value"].as_f64().unwrap(),
            p["low"].as_f64().unwrap(),
            p["high"].as_f64().unwrap(),
        );
        assert!(lo <= v && v <= hi && v > 1.0, "{p}");
        assert_eq!(get("rate: refusal", variant)["n"], 6);
        assert_eq!(get("target log-prob", variant)["n"], 4);
    }
    // Masking experts the prompts use changes the likelihood of the text.
    assert_ne!(
        get("perplexity", "baseline")["value"],
        get("perplexity", "steered")["value"]
    );
    let (ok, _, err) = moescope(&["eval", "--prompts", &prompts, "--metric", "bleu"]);
    assert!(!ok && err.contains("expected rules:FILE"), "{err}");
}

#[test]
fn eval_measures_random_experts_of_the_same_layers_beside_the_steered_model() {
    let root = env!("CARGO_MANIFEST_DIR");
    let prompts = format!("{root}/datasets/examples/smoke.jsonl");
    let rules = format!("rules:{root}/datasets/examples/rules.toml");
    let base = [
        "eval",
        "--prompts",
        &prompts,
        "--mask",
        "5:15",
        "--metric",
        "perplexity",
        "--metric",
        &rules,
        "--max-tokens",
        "4",
        "--json",
    ];
    let run = |extra: &[&str]| {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let (ok, out, err) = moescope(&args);
        assert!(ok, "{err}");
        out.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    let without = run(&[]);
    assert!(without.iter().all(|r| r["variant"] != "random"));
    let with = run(&["--random-draws", "3", "--seed", "0"]);
    // The baseline and steered rows do not change when random controls are added.
    assert_eq!(&with[..without.len()], &without[..]);
    let random: Vec<_> = with.iter().filter(|r| r["variant"] == "random").collect();
    assert_eq!(random.len(), without.len() / 2, "one pooled row per metric");
    let refusal = random
        .iter()
        .find(|r| r["metric"] == "rate: refusal")
        .unwrap();
    assert_eq!(refusal["n"], 3 * 6, "3 draws × 6 prompts");
    let ppl = random.iter().find(|r| r["metric"] == "perplexity").unwrap();
    let steered = with
        .iter()
        .find(|r| r["metric"] == "perplexity" && r["variant"] == "steered")
        .unwrap();
    assert_ne!(ppl["value"], steered["value"], "other experts masked");
    // Seeded: the same draws again.
    assert_eq!(run(&["--random-draws", "3", "--seed", "0"]), with);
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
    for (flag, value, says) in [
        ("--device", "gpu", "use cpu or cuda:N"),
        ("--device", "cuda:x", "GPU number"),
        ("--dtype", "fp8", "use auto, f32, bf16 or f16"),
    ] {
        let (ok, _, err) = moescope(&["info", flag, value]);
        assert!(!ok, "{flag} {value}");
        assert!(err.contains(says), "{flag} {value}: {err}");
    }
}

#[test]
fn bf16_compute_is_chosen_with_dtype_and_reported() {
    let (ok, out, err) = moescope(&["info", "--dtype", "bf16"]);
    assert!(ok, "{err}");
    assert!(out.contains("computed in bf16 on cpu"), "{out}");
    let (ok, out, err) = moescope(&[
        "generate",
        "--prompt",
        "1 + 1 =",
        "--max-tokens",
        "3",
        "--dtype",
        "bf16",
    ]);
    assert!(ok, "{err}");
    // The prompt is echoed; what counts is the continuation after it.
    let continuation = out
        .strip_prefix("1 + 1 =")
        .expect("the prompt echoed first");
    assert!(
        !continuation.trim().is_empty(),
        "nothing generated: {out:?}"
    );
}
