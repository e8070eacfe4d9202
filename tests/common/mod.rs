//! Helpers shared by the end-to-end tests: fixture paths and golden-output readers.

#![allow(dead_code)]

pub mod mutate;

use std::path::PathBuf;
use std::process::Command;

use safetensors::tensor::{Dtype, SafeTensors};

/// Every committed parity fixture.
pub const FIXTURES: [&str; 16] = [
    "mixtral",
    "olmoe",
    "qwen2_moe",
    "qwen3_moe",
    "qwen3_moe_bf16",
    "olmoe_f16_sharded",
    "deepseek_v2",
    "deepseek_v3",
    "deepseek_v3_routing",
    "gpt_oss",
    "gpt_oss_mxfp4",
    "deepseek_v2_routing",
    "gpt_oss_routing",
    "default_model",
    "qwen3_moe_fp8",
    "deepseek_v3_fp8",
];

/// The device the model tests run on: `cpu`, or the `MOESCOPE_TEST_DEVICE` variable's
/// `cuda:N` in builds with the cuda feature (so the same parity tests check a GPU).
pub fn test_device() -> candle_core::Device {
    match std::env::var("MOESCOPE_TEST_DEVICE").as_deref() {
        Err(_) | Ok("cpu") => candle_core::Device::Cpu,
        #[cfg(feature = "cuda")]
        Ok(name) if name.starts_with("cuda:") => {
            let n: usize = name[5..].parse().expect("MOESCOPE_TEST_DEVICE=cuda:N");
            candle_core::Device::new_cuda(n).expect("the GPU named by MOESCOPE_TEST_DEVICE")
        }
        Ok(other) => panic!("MOESCOPE_TEST_DEVICE={other}: use cpu, or cuda:N in a cuda build"),
    }
}

/// The repository root: where the tests were built, or `MOESCOPE_REPO` when a test binary
/// runs from another checkout (a built test carried to the GPU machine).
pub fn repo_root() -> PathBuf {
    std::env::var_os("MOESCOPE_REPO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// Folder of a committed fixture.
pub fn fixture(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(name)
}

/// The checkpoint folder of a fixture: its own, or the one its meta.json names (the default
/// model's golden outputs sit beside the other fixtures, its weights in assets/).
pub fn fixture_model(name: &str) -> PathBuf {
    match meta(name)["model_dir"].as_str() {
        Some(rel) => repo_root().join(rel),
        None => fixture(name),
    }
}

/// The golden outputs HF transformers wrote for a fixture.
pub struct Golden {
    bytes: Vec<u8>,
}

impl Golden {
    /// Reads `golden.safetensors` of the fixture.
    pub fn load(name: &str) -> Self {
        Self::load_file(name, "golden.safetensors")
    }

    /// Reads another file of reference outputs in the fixture's folder.
    pub fn load_file(name: &str, file: &str) -> Self {
        let path = fixture(name).join(file);
        Self {
            bytes: std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        }
    }

    fn view(&self, key: &str) -> (Dtype, Vec<usize>, Vec<u8>) {
        let st = SafeTensors::deserialize(&self.bytes).expect("golden.safetensors parses");
        let t = st
            .tensor(key)
            .unwrap_or_else(|_| panic!("golden tensor {key} missing"));
        (t.dtype(), t.shape().to_vec(), t.data().to_vec())
    }

    /// Whether a tensor exists.
    pub fn has(&self, key: &str) -> bool {
        SafeTensors::deserialize(&self.bytes)
            .map(|st| st.tensor(key).is_ok())
            .unwrap_or(false)
    }

    /// An f32 tensor with its shape.
    pub fn f32(&self, key: &str) -> (Vec<usize>, Vec<f32>) {
        let (dtype, shape, data) = self.view(key);
        assert_eq!(dtype, Dtype::F32, "{key}");
        let v = data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        (shape, v)
    }

    /// An i64 tensor with its shape.
    pub fn i64(&self, key: &str) -> (Vec<usize>, Vec<i64>) {
        let (dtype, shape, data) = self.view(key);
        assert_eq!(dtype, Dtype::I64, "{key}");
        let v = data
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        (shape, v)
    }

    /// Rows of an i64 `[rows, cols]` tensor as token ids.
    pub fn rows_u32(&self, key: &str) -> Vec<Vec<u32>> {
        let (shape, v) = self.i64(key);
        v.chunks_exact(shape[1])
            .map(|r| r.iter().map(|&x| x as u32).collect())
            .collect()
    }
}

/// What the engine computed for one golden case.
pub struct CaseRun {
    /// Logits `[rows × seq × vocab]`, flattened.
    pub logits: Vec<f32>,
    /// The captures of the hooks asked for, at every MoE layer.
    pub captures: Vec<moescope_engine::Capture>,
    /// Flat indices of the real (not padding) tokens.
    pub keep: Vec<usize>,
}

impl CaseRun {
    /// The rows of `data` (`width` values per token) at the real tokens.
    pub fn rows(&self, data: &[f32], width: usize) -> Vec<f32> {
        self.keep
            .iter()
            .flat_map(|&i| data[i * width..(i + 1) * width].iter().copied())
            .collect()
    }
}

/// Runs a golden case's `input_ids` (with its `attention_mask`) through the engine under
/// `policy`, capturing `hooks` at every MoE layer.
pub fn run_case(
    ck: &moescope_engine::Checkpoint,
    golden: &Golden,
    case: &str,
    policy: &moescope_engine::RoutingPolicy,
    hooks: &[moescope_engine::MoeHook],
) -> CaseRun {
    use moescope_engine::{ForwardOptions, KvCache, LogitsFor, Phase, Recorder};
    let tokens = golden.rows_u32(&format!("{case}.input_ids"));
    let valid: Vec<Vec<bool>> = golden
        .rows_u32(&format!("{case}.attention_mask"))
        .iter()
        .map(|r| r.iter().map(|&m| m == 1).collect())
        .collect();
    let mut rec = Recorder::new();
    for &hook in hooks {
        rec.subscribe_all_layers(hook);
    }
    let opts = ForwardOptions {
        policy,
        phase: Phase::Prompt,
        recorder: Some(&mut rec),
        logits_for: LogitsFor::All,
        gates: None,
    };
    let logits = ck
        .model
        .forward(&tokens, &valid, &mut KvCache::new(), opts)
        .unwrap();
    let keep = valid
        .iter()
        .flatten()
        .enumerate()
        .filter(|(_, &v)| v)
        .map(|(i, _)| i)
        .collect();
    CaseRun {
        logits: logits.flatten_all().unwrap().to_vec1().unwrap(),
        captures: rec.take(),
        keep,
    }
}

/// The fixture's `meta.json`.
pub fn meta(name: &str) -> serde_json::Value {
    let path = fixture(name).join("meta.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("meta.json"))
        .expect("meta.json parses")
}

/// Runs the `moescope` binary: (success, stdout, stderr).
pub fn moescope(args: &[&str]) -> (bool, String, String) {
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

/// Appends a bf16 tensor `name` of `values` values to the safetensors `file` without writing
/// its data: the file is extended sparsely, so a checkpoint larger than any machine's memory
/// takes no disk space.
pub fn add_sparse_tensor(file: &std::path::Path, name: &str, values: u64) {
    let bytes = std::fs::read(file).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data_len = (bytes.len() - 8 - n) as u64;
    header[name] = serde_json::json!({
        "dtype": "BF16", "shape": [values], "data_offsets": [data_len, data_len + 2 * values]
    });
    let mut h = serde_json::to_vec(&header).unwrap();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(file, &out).unwrap();
    std::fs::File::options()
        .write(true)
        .open(file)
        .unwrap()
        .set_len(out.len() as u64 + 2 * values)
        .unwrap();
}
