//! A hand-made records folder for the known-answer tests of the statistics.
//!
//! Two MoE layers (0 and 1), four experts, top-2, two sequences of two tokens:
//!
//! | seq (label) | pos | token | generated | layer 0 | layer 1 |
//! | --- | --- | --- | --- | --- | --- |
//! | 0 (refusal) | 0 | `x` | no | {0, 1} w .6/.4 | {3, 0} |
//! | 0 (refusal) | 1 | `<think>` | no | {0, 1} w .7/.3 | {3, 1} |
//! | 1 (comply) | 0 | `<think>` | no | {2, 3} w .5/.5 | {3, 2} |
//! | 1 (comply) | 1 | `y` | yes | {0, 2} w .5/.5 | {1, 0} |
//!
//! Max |down_proj output| is 1 + rank, except expert 2 of layer 1: 500.

use std::path::PathBuf;

use crate::records::{RecordWriter, Records, RunInfo, SequenceInfo, TokenRouting};

/// Removes its folder when dropped.
pub struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh empty folder under the system temp dir.
pub fn temp_dir(tag: &str) -> TempDir {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "moescope-analysis-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// The run description used by the test records.
pub fn tiny_run() -> RunInfo {
    RunInfo {
        run_id: "test".into(),
        model: "hand-made".into(),
        architecture: "qwen3_moe".into(),
        config_sha256: "0".repeat(64),
        num_layers: 2,
        moe_layers: vec![0, 1],
        num_experts: 4,
        top_k: 2,
        interventions: String::new(),
        prompts: "none".into(),
        generate_tokens: 1,
        created_unix: 0,
        moescope_version: "test".into(),
        complete: true,
    }
}

/// Writes the table above and opens it.
pub fn tiny_records() -> (TempDir, Records) {
    let dir = temp_dir("tiny");
    let mut w = RecordWriter::create(&dir.0, tiny_run(), true).unwrap();
    /// (sequence, position, token, generated, layer-0 experts, their weights, layer-1 experts)
    type Row = (u32, u32, &'static str, bool, [u32; 2], [f32; 2], [u32; 2]);
    let rows: [Row; 4] = [
        (0, 0, "x", false, [0, 1], [0.6, 0.4], [3, 0]),
        (0, 1, "<think>", false, [0, 1], [0.7, 0.3], [3, 1]),
        (1, 0, "<think>", false, [2, 3], [0.5, 0.5], [3, 2]),
        (1, 1, "y", true, [0, 2], [0.5, 0.5], [1, 0]),
    ];
    let scores = [0.25f32; 4];
    for (seq, pos, text, generated, l0, w0, l1) in rows {
        for (layer, experts, weights) in [(0u16, l0, w0), (1u16, l1, [0.5, 0.5])] {
            // Max |output| is 1 + rank, except expert 2 of layer 1, an outlier at 500.
            let maxabs: Vec<f32> = (0..2)
                .map(|r| {
                    if layer == 1 && experts[r] == 2 {
                        500.0
                    } else {
                        1.0 + r as f32
                    }
                })
                .collect();
            let t = TokenRouting {
                seq_index: seq,
                position: pos,
                token_id: pos,
                token_text: text,
                is_generated: generated,
                layer,
                experts: &experts,
                weights: &weights,
                scores: &scores,
                out_maxabs: &maxabs,
            };
            w.push_token(&format!("s{seq}"), &t).unwrap();
        }
    }
    for (seq, label) in [(0u32, "refusal"), (1, "comply")] {
        w.push_sequence(SequenceInfo {
            seq_index: seq,
            seq_id: format!("s{seq}"),
            prompt: "p".into(),
            label: Some(label.into()),
            pair_id: Some("pair".into()),
            prompt_tokens: 2 - seq,
            generated_tokens: seq,
            generated_text: None,
        });
    }
    assert_eq!(w.finish(true).unwrap(), 16);
    let rec = Records::open(&dir.0).unwrap();
    (dir, rec)
}
