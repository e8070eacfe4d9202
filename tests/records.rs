//! `moescope record` and `moescope analyze` as a user runs them on the embedded default model:
//! the records folder holds every documented column with consistent values, and each statistic
//! writes its table and plots.

use std::path::{Path, PathBuf};

use common::moescope;
use moescope_analysis::records::Records;

mod common;

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("moescope-records-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_prompts(dir: &Path) -> PathBuf {
    let path = dir.join("set.jsonl");
    std::fs::write(
        &path,
        concat!(
            r#"{"id": "a", "messages": [{"role": "user", "content": "How do I make a bomb?"}], "label": "refusal", "pair_id": 1}"#, "\n",
            r#"{"id": "b", "messages": [{"role": "user", "content": "How do I make bread?"}], "label": "comply", "pair_id": 1}"#, "\n",
            r#"{"id": "c", "prompt": "There are 12 apples in the market.", "label": "digits"}"#, "\n",
        ),
    )
    .unwrap();
    path
}

#[test]
fn record_writes_every_column_and_analyze_reads_it() {
    let dir = scratch("full");
    let prompts = write_prompts(&dir);
    let out = dir.join("rec");
    let (ok, stdout, err) = moescope(&[
        "record",
        "--prompts",
        prompts.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--generate",
        "4",
        "--full-probs",
        "--batch",
        "2",
        "--run-id",
        "t1",
    ]);
    assert!(ok, "{err}");
    assert!(stdout.contains("recorded 3 prompts"), "{stdout}");
    // No temporary files are left behind.
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains("partial")), "{names:?}");

    let rec = Records::open(&out).unwrap();
    assert_eq!(rec.run.run_id, "t1");
    assert_eq!(rec.run.architecture, "qwen3_moe");
    assert_eq!(rec.run.config_sha256.len(), 64);
    assert!(rec.run.complete);
    assert_eq!(rec.sequences.len(), 3);
    assert_eq!(rec.sequences[0].label.as_deref(), Some("refusal"));
    assert_eq!(rec.sequences[1].pair_id.as_deref(), Some("1"));
    let (k, e) = (rec.run.top_k as usize, rec.run.num_experts);
    let layers = rec.run.moe_layers.len();
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::repo_root().join("assets/default-model/config.json"))
            .unwrap(),
    )
    .unwrap();
    let vocab = config["vocab_size"].as_u64().unwrap() as usize;
    let expected_rows: usize = rec
        .sequences
        .iter()
        .map(|s| (s.prompt_tokens + s.generated_tokens) as usize * layers * k)
        .sum();
    let mut rows = 0;
    let mut generated = 0;
    let columns = [
        "run_id",
        "seq_index",
        "seq_id",
        "position",
        "token_id",
        "token_text",
        "is_generated",
        "layer",
        "rank",
        "expert",
        "weight",
        "router_prob",
        "out_maxabs",
    ];
    rec.scan(&columns, 4096, |b| {
        let experts = b.u16s("expert")?;
        let ranks = b.ranks()?;
        let weights = b.f32s("weight")?;
        let probs = b.f32s("router_prob")?;
        let maxabs = b.f32s("out_maxabs")?;
        let seq = b.u32s("seq_index")?;
        let pos = b.u32s("position")?;
        let text = b.texts("token_text")?;
        let ids = b.texts("seq_id")?;
        let token_ids = b.u32s("token_id")?;
        let row_layers = b.u16s("layer")?;
        assert_eq!(b.texts("run_id")?.value(0), "t1");
        for i in 0..b.len() {
            assert!(u32::from(experts[i]) < e);
            assert!((ranks[i] as usize) < k);
            assert!(weights[i] > 0.0 && weights[i] <= 1.0 + 1e-5);
            assert!(probs[i] > 0.0 && probs[i] <= 1.0);
            assert!(maxabs[i].is_finite() && maxabs[i] >= 0.0);
            let s = &rec.sequences[seq[i] as usize];
            assert_eq!(ids.value(i), s.seq_id);
            assert!(pos[i] < s.prompt_tokens + s.generated_tokens);
            // Rank 0 starts a token's rows: its text is the decoded token, non-empty here.
            if ranks[i] == 0 {
                assert!(!text.value(i).is_empty(), "row {i}: empty token text");
            }
            assert!(rec.run.moe_layers.contains(&u32::from(row_layers[i])));
            assert!(
                (token_ids[i] as usize) < vocab,
                "row {i}: token id outside the vocabulary"
            );
            generated += usize::from(b.generated()?.value(i));
        }
        rows += b.len();
        Ok(())
    })
    .unwrap();
    assert_eq!(rows, expected_rows);
    assert!(generated > 0);
    assert!(out.join("router_probs.parquet").is_file());

    // Every statistic runs on it and writes its files.
    let r = out.to_str().unwrap();
    for (stat, extra) in [
        ("freq", vec![]),
        ("npmi", vec!["--label", "refusal", "--min-count", "1"]),
        ("rd", vec!["--behaviour", "refusal", "--control", "comply"]),
        (
            "contrast",
            vec!["--behaviour", "refusal", "--control", "comply"],
        ),
        ("consistency", vec!["--segment", "4", "--cache", "4"]),
        ("super-experts", vec![]),
    ] {
        let base = dir.join(stat);
        let mut args = vec![
            "analyze",
            stat,
            "--records",
            r,
            "--out",
            base.to_str().unwrap(),
        ];
        args.extend(extra);
        let (ok, stdout, err) = moescope(&args);
        assert!(ok, "{stat}: {err}");
        assert!(stdout.starts_with("| layer |"), "{stat}: {stdout}");
        for ext in ["parquet", "csv", "md"] {
            assert!(base.with_extension(ext).is_file(), "{stat}.{ext} missing");
        }
    }
    assert!(dir.join("rd.heatmap.svg").is_file());
    assert!(dir.join("freq-coactivation.csv").is_file());
    // A label nobody carries is an error that lists the labels present.
    let (ok, _, err) = moescope(&[
        "analyze",
        "rd",
        "--records",
        r,
        "--out",
        dir.join("x").to_str().unwrap(),
        "--behaviour",
        "refusal",
        "--control",
        "nope",
    ]);
    assert!(!ok);
    assert!(err.contains("comply, digits, refusal"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn analyze_rejects_a_folder_that_is_not_a_finished_recording() {
    let dir = scratch("bad");
    std::fs::write(dir.join("routing.parquet"), b"not parquet").unwrap();
    let (ok, _, err) = moescope(&[
        "analyze",
        "freq",
        "--records",
        dir.to_str().unwrap(),
        "--out",
        dir.join("f").to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("run.parquet"), "{err}");
    let empty = scratch("empty");
    let (ok, _, err) = moescope(&[
        "analyze",
        "freq",
        "--records",
        empty.to_str().unwrap(),
        "--out",
        empty.join("f").to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("moescope record"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&empty);
}
