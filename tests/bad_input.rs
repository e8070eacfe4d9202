//! Bad input: each broken checkpoint gives an error that names the file, tensor or field at
//! fault, never a panic. Each case copies a good fixture to a temporary folder and breaks it.

mod common;

use std::path::{Path, PathBuf};

use candle_core::Device;
use common::{add_sparse_tensor, fixture};
use moescope_engine::{Checkpoint, EngineError, GenerateOptions, GenerateRequest, RoutingPolicy};
use serde_json::Value;

/// A temporary copy of a fixture, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn of(name: &str, case: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("moescope-bad-{case}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(fixture(name)).unwrap() {
            let p = entry.unwrap().path();
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
        Self(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }

    fn edit_config(&self, edit: impl FnOnce(&mut Value)) {
        let p = self.path("config.json");
        let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        edit(&mut v);
        std::fs::write(p, serde_json::to_string(&v).unwrap()).unwrap();
    }

    fn open_err(&self) -> (EngineError, String) {
        match Checkpoint::open(&self.0, &Device::Cpu) {
            Ok(_) => panic!("{} loaded although it is broken", self.0.display()),
            Err(e) => {
                let msg = e.to_string();
                (e, msg)
            }
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn names(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(
            msg.contains(p),
            "error message `{msg}` does not mention `{p}`"
        );
    }
}

#[test]
fn missing_config_names_the_file() {
    let s = Scratch::of("mixtral", "noconfig");
    std::fs::remove_file(s.path("config.json")).unwrap();
    let (e, msg) = s.open_err();
    assert!(matches!(e, EngineError::MissingFile { .. }));
    names(&msg, &["config.json", "not found"]);
}

#[test]
fn missing_weights_and_tokenizer_name_the_files() {
    let s = Scratch::of("mixtral", "noweights");
    std::fs::remove_file(s.path("model.safetensors")).unwrap();
    names(&s.open_err().1, &["model.safetensors", "not found"]);
    let s = Scratch::of("mixtral", "notok");
    std::fs::remove_file(s.path("tokenizer.json")).unwrap();
    names(&s.open_err().1, &["tokenizer.json", "not found"]);
}

#[test]
fn missing_shard_names_the_shard() {
    let s = Scratch::of("olmoe_f16_sharded", "noshard");
    std::fs::remove_file(s.path("model-00002-of-00003.safetensors")).unwrap();
    names(
        &s.open_err().1,
        &["model-00002-of-00003.safetensors", "not found"],
    );
}

#[test]
fn unknown_model_type_lists_the_supported_ones() {
    let s = Scratch::of("mixtral", "arch");
    s.edit_config(|v| v["model_type"] = "llama4_moe".into());
    let (e, msg) = s.open_err();
    assert!(matches!(e, EngineError::UnknownArchitecture { .. }));
    names(&msg, &["config.json", "llama4_moe", "qwen3_moe"]);
}

#[test]
fn unsupported_quantization_names_the_method_and_what_loads() {
    for (method, extra) in [("awq", "fp8"), ("gptq", "e4m3"), ("bitsandbytes", "")] {
        let s = Scratch::of("qwen3_moe", &format!("quant-{method}"));
        s.edit_config(|v| {
            v["quantization_config"] = serde_json::json!({"quant_method": method, "bits": 4})
        });
        let (e, msg) = s.open_err();
        assert!(matches!(e, EngineError::BadConfig { .. }), "{msg}");
        names(
            &msg,
            &[
                "config.json",
                "quant_method",
                method,
                "mxfp4",
                "unquantized",
                extra,
            ],
        );
    }
}

#[test]
fn bad_config_fields_are_named() {
    let s = Scratch::of("qwen3_moe", "field");
    s.edit_config(|v| {
        v.as_object_mut().unwrap().remove("hidden_size");
    });
    names(&s.open_err().1, &["config.json", "hidden_size", "missing"]);
    let s = Scratch::of("qwen3_moe", "topk");
    s.edit_config(|v| v["num_experts_per_tok"] = 99.into());
    names(&s.open_err().1, &["num_experts_per_tok", "99"]);
    let s = Scratch::of("qwen3_moe", "rope");
    s.edit_config(|v| {
        v["rope_parameters"] = serde_json::json!({"rope_type": "longrope", "factor": 4.0})
    });
    names(&s.open_err().1, &["rope_parameters", "longrope"]);
    let s = Scratch::of("qwen3_moe", "json");
    std::fs::write(s.path("config.json"), "{ \"model_type\": ").unwrap();
    names(&s.open_err().1, &["config.json", "invalid JSON"]);
}

#[test]
fn unsupported_routing_options_are_named() {
    let s = Scratch::of("deepseek_v2", "topk_method");
    s.edit_config(|v| v["topk_method"] = "noaux_tc".into());
    names(
        &s.open_err().1,
        &[
            "config.json",
            "topk_method",
            "noaux_tc",
            "group_limited_greedy",
        ],
    );
    let s = Scratch::of("deepseek_v3", "scoring");
    s.edit_config(|v| v["scoring_func"] = "softmax".into());
    names(&s.open_err().1, &["scoring_func", "sigmoid"]);
    let s = Scratch::of("deepseek_v3", "groups");
    s.edit_config(|v| v["n_group"] = 3.into());
    names(&s.open_err().1, &["n_group", "16 routed experts"]);
    let s = Scratch::of("deepseek_v3", "topk_group");
    // The best single group holds four experts, too few for five per token.
    s.edit_config(|v| {
        v["topk_group"] = 1.into();
        v["num_experts_per_tok"] = 5.into();
    });
    names(&s.open_err().1, &["topk_group", "num_experts_per_tok (5)"]);
}

#[test]
fn missing_tensor_is_named() {
    let s = Scratch::of("mixtral", "tensor");
    // Claiming more layers than stored makes layer 2's tensors missing.
    s.edit_config(|v| v["num_hidden_layers"] = 3.into());
    let (e, msg) = s.open_err();
    assert!(matches!(e, EngineError::MissingTensor { .. }));
    names(&msg, &["model.layers.2.", "not found"]);
}

#[test]
fn wrong_shape_is_named_with_both_shapes() {
    let s = Scratch::of("mixtral", "shape");
    s.edit_config(|v| v["intermediate_size"] = 40.into());
    let (e, msg) = s.open_err();
    assert!(matches!(e, EngineError::WrongShape { .. }));
    names(&msg, &["model.safetensors", "[32, 64]", "[40, 64]"]);
}

/// Rewrites the safetensors header of `file` through `edit`.
fn edit_header(file: &Path, edit: impl FnOnce(&mut Value)) {
    let bytes = std::fs::read(file).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(&mut header);
    let mut h = serde_json::to_vec(&header).unwrap();
    while h.len() < n {
        h.push(b' ');
    }
    assert!(h.len() == n, "edited header must keep its length");
    let mut out = bytes[..8].to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(file, out).unwrap();
}

#[test]
fn weights_larger_than_memory_are_refused_before_loading() {
    let s = Scratch::of("olmoe", "huge");
    // One extra bf16 tensor of 2⁴⁰ values (2 TiB), in a sparse file: far more than any
    // machine running the tests has, and no disk space used.
    add_sparse_tensor(&s.path("model.safetensors"), "extra.weight", 1 << 40);
    let (e, msg) = s.open_err();
    assert!(matches!(e, EngineError::OutOfMemory { .. }), "{msg}");
    names(
        &msg,
        &["needs 4398", "GB of memory is available", "--dtype bf16"],
    );
}

#[test]
fn unsupported_dtype_is_named() {
    let s = Scratch::of("mixtral", "dtype");
    // Relabel an f32 tensor as i32 (same width, so the header stays valid).
    edit_header(&s.path("model.safetensors"), |h| {
        h["model.norm.weight"]["dtype"] = "I32".into()
    });
    let (e, msg) = s.open_err();
    assert!(matches!(e, EngineError::WrongDtype { .. }));
    names(&msg, &["model.norm.weight", "I32"]);
}

#[test]
fn mxfp4_scales_of_the_wrong_dtype_are_named() {
    let s = Scratch::of("gpt_oss_mxfp4", "mxfp4");
    let name = "model.layers.0.mlp.experts.down_proj_scales";
    // Relabel U8 scales as I8 (same width, so the header stays valid).
    edit_header(&s.path("model.safetensors"), |h| {
        h[name]["dtype"] = "I8".into()
    });
    let (e, msg) = s.open_err();
    assert!(matches!(e, EngineError::WrongDtype { .. }), "{msg}");
    names(&msg, &[name, "MXFP4", "U8"]);
}

#[test]
fn corrupt_and_truncated_safetensors_are_reported() {
    let s = Scratch::of("mixtral", "corrupt");
    let p = s.path("model.safetensors");
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[8] = b'#';
    std::fs::write(&p, &bytes).unwrap();
    let (e, msg) = s.open_err();
    assert!(matches!(e, EngineError::CorruptSafetensors { .. }), "{msg}");
    names(&msg, &["model.safetensors", "not a valid safetensors"]);

    let s = Scratch::of("mixtral", "truncated");
    let p = s.path("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let (e, msg) = s.open_err();
    assert!(matches!(e, EngineError::CorruptSafetensors { .. }), "{msg}");

    let s = Scratch::of("mixtral", "tiny");
    std::fs::write(s.path("model.safetensors"), b"abc").unwrap();
    assert!(matches!(
        s.open_err().0,
        EngineError::CorruptSafetensors { .. }
    ));
}

#[test]
fn bad_tokenizer_is_named() {
    let s = Scratch::of("mixtral", "tok");
    std::fs::write(s.path("tokenizer.json"), "{\"not\": \"a tokenizer\"}").unwrap();
    let (e, msg) = s.open_err();
    assert!(matches!(e, EngineError::Tokenizer { .. }));
    names(&msg, &["tokenizer.json"]);
}

#[test]
fn prompt_longer_than_the_context_is_refused() {
    let ck = Checkpoint::open(&fixture("mixtral"), &Device::Cpu).unwrap();
    let context = ck.model.config().max_position_embeddings;
    let prompt = vec![vec![5u32; context]];
    let opts = GenerateOptions {
        max_new_tokens: 4,
        ..Default::default()
    };
    let err = GenerateRequest {
        model: &ck.model,
        codec: Some(&ck.codec),
        policy: &RoutingPolicy::new(),
        options: &opts,
    }
    .run(&prompt)
    .unwrap_err();
    assert!(matches!(err, EngineError::InvalidInput(_)));
    names(
        &err.to_string(),
        &["exceeds the model's context", "max_position_embeddings"],
    );
    let err = GenerateRequest {
        model: &ck.model,
        codec: None,
        policy: &RoutingPolicy::new(),
        options: &opts,
    }
    .run(&[vec![9999]])
    .unwrap_err();
    names(&err.to_string(), &["9999", "vocabulary"]);
}

/// Overwrites the first bytes of tensor `name`'s data in a safetensors file with `with`.
fn poke_tensor(file: &Path, name: &str, with: &[u8]) {
    let mut bytes = std::fs::read(file).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let at = 8 + n + header[name]["data_offsets"][0].as_u64().unwrap() as usize;
    bytes[at..at + with.len()].copy_from_slice(with);
    std::fs::write(file, bytes).unwrap();
}

#[test]
fn broken_fp8_checkpoints_are_named_errors() {
    let tensor = "model.layers.1.self_attn.q_proj.weight";
    // A block size that does not fit the stored scales.
    let s = Scratch::of("qwen3_moe_fp8", "fp8-block");
    s.edit_config(|v| v["quantization_config"]["weight_block_size"] = serde_json::json!([32, 32]));
    names(
        &s.open_err().1,
        &[
            "model.safetensors",
            "weight_scale_inv",
            "blocks of 32×32",
            "weight_block_size",
        ],
    );
    // A block size that is no size at all.
    let s = Scratch::of("qwen3_moe_fp8", "fp8-zero");
    s.edit_config(|v| v["quantization_config"]["weight_block_size"] = serde_json::json!([0, 16]));
    names(
        &s.open_err().1,
        &["config.json", "weight_block_size", "[128, 128]"],
    );
    // Another FP8 format.
    let s = Scratch::of("qwen3_moe_fp8", "fp8-fmt");
    s.edit_config(|v| v["quantization_config"]["fmt"] = "e5m2".into());
    names(&s.open_err().1, &["config.json", "fmt", "e5m2", "e4m3"]);
    // FP8 tensors without the configuration that says how they are scaled.
    let s = Scratch::of("qwen3_moe_fp8", "fp8-noconfig");
    s.edit_config(|v| {
        v.as_object_mut().unwrap().remove("quantization_config");
    });
    names(
        &s.open_err().1,
        &["config.json", "F8_E4M3", "quantization_config"],
    );
    // A NaN among the values, and a NaN scale.
    let s = Scratch::of("qwen3_moe_fp8", "fp8-nan");
    poke_tensor(&s.path("model.safetensors"), tensor, &[0x7F]);
    names(
        &s.open_err().1,
        &["model.safetensors", tensor, "NaN", "row 0, column 0"],
    );
    let s = Scratch::of("qwen3_moe_fp8", "fp8-nanscale");
    let scale = "model.layers.1.self_attn.q_proj.weight_scale_inv";
    poke_tensor(&s.path("model.safetensors"), scale, &f32::NAN.to_le_bytes());
    names(
        &s.open_err().1,
        &["model.safetensors", scale, "NaN", "finite"],
    );
}
