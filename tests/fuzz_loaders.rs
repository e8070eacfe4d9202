//! Randomised robustness of the parsers moescope owns: mutated `config.json` values, mutated
//! safetensors headers and index files, and arbitrary hook names must give `Ok` or an error,
//! never a panic. Seeded, so a failure reproduces.

mod common;

use common::mutate;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use candle_core::Device;
use common::fixture;
use moescope_engine::{Checkpoint, HookPattern, ModelConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const ROUNDS: usize = 200;

fn random_value(rng: &mut StdRng) -> Value {
    match rng.gen_range(0..8) {
        0 => Value::Null,
        1 => json!(rng.gen_bool(0.5)),
        2 => json!(rng.gen_range(-3i64..3)),
        3 => json!(rng.gen_range(0u64..1 << 40)),
        4 => json!(rng.gen::<f64>() * 1e6),
        5 => json!("yarn"),
        6 => json!([1, 2, "x"]),
        _ => json!({"rope_type": "linear", "factor": 0}),
    }
}

#[test]
fn mutated_configs_never_panic() {
    let path = fixture("qwen2_moe").join("config.json");
    let base: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut keys: Vec<String> = base.as_object().unwrap().keys().cloned().collect();
    // Weight the sizes that drive allocation.
    for k in [
        "num_hidden_layers",
        "num_experts",
        "hidden_size",
        "head_dim",
    ] {
        keys.extend(std::iter::repeat_n(k.to_string(), 5));
    }
    let mut rng = StdRng::seed_from_u64(7);
    let budget = mutate::Budget::new(ROUNDS);
    let mut cases = 0;
    for round in (0..).take_while(|&r| budget.more(r)) {
        cases += 1;
        let mut v = base.clone();
        for _ in 0..rng.gen_range(1..4) {
            let key = &keys[rng.gen_range(0..keys.len())];
            if rng.gen_bool(0.2) {
                v.as_object_mut().unwrap().remove(key);
            } else {
                v[key] = random_value(&mut rng);
            }
        }
        let result = catch_unwind(|| ModelConfig::from_json(&v, &path).map(|_| ()));
        assert!(
            result.is_ok(),
            "round {round}: config parser panicked on {v}"
        );
    }
    eprintln!("{cases} mutated inputs, none panicked");
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

/// Opens the checkpoint in `dir`, failing the test on a panic; returns whether it loaded.
fn open_never_panics(dir: &Path, what: &str) -> bool {
    let result = catch_unwind(AssertUnwindSafe(|| {
        Checkpoint::open(dir, &Device::Cpu).map(|_| ())
    }));
    result
        .unwrap_or_else(|_| panic!("loader panicked on {what}"))
        .is_ok()
}

#[test]
fn mutated_safetensors_headers_never_panic() {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("moescope-fuzz-st-{}", std::process::id()));
    copy_dir(&fixture("mixtral"), &dir);
    let file = dir.join("model.safetensors");
    let original = std::fs::read(&file).unwrap();
    let header_end = 8 + u64::from_le_bytes(original[..8].try_into().unwrap()) as usize;
    let mut rng = StdRng::seed_from_u64(11);
    let budget = mutate::Budget::new(ROUNDS);
    let mut cases = 0;
    for round in (0..).take_while(|&r| budget.more(r)) {
        cases += 1;
        let mut bytes = original.clone();
        match rng.gen_range(0..3) {
            // Flip bytes inside the header (including its length prefix).
            0 => {
                for _ in 0..rng.gen_range(1..6) {
                    let i = rng.gen_range(0..header_end);
                    bytes[i] = rng.gen();
                }
            }
            // Rewrite a digit of the header, which moves offsets or shapes.
            1 => {
                let digits: Vec<usize> = (8..header_end)
                    .filter(|&i| bytes[i].is_ascii_digit())
                    .collect();
                let i = digits[rng.gen_range(0..digits.len())];
                bytes[i] = b'0' + rng.gen_range(0..10);
            }
            // Truncate anywhere.
            _ => bytes.truncate(rng.gen_range(0..bytes.len())),
        }
        std::fs::write(&file, &bytes).unwrap();
        open_never_panics(&dir, &format!("safetensors mutation round {round}"));
    }
    eprintln!("{cases} mutated inputs, none panicked");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn mutated_shard_indexes_never_panic() {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("moescope-fuzz-idx-{}", std::process::id()));
    copy_dir(&fixture("olmoe_f16_sharded"), &dir);
    let file = dir.join("model.safetensors.index.json");
    let base: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let names: Vec<String> = base["weight_map"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let mut rng = StdRng::seed_from_u64(13);
    let budget = mutate::Budget::new(40);
    let mut cases = 0;
    for round in (0..).take_while(|&r| budget.more(r)) {
        cases += 1;
        let mut v = base.clone();
        let name = &names[rng.gen_range(0..names.len())];
        let choice = rng.gen_range(0..4);
        v["weight_map"][name] = match choice {
            0 => json!("../../etc/passwd"),
            1 => json!("model-00009-of-00003.safetensors"),
            2 => random_value(&mut rng),
            _ => json!("model-00001-of-00003.safetensors"),
        };
        std::fs::write(&file, serde_json::to_string(&v).unwrap()).unwrap();
        let loaded = open_never_panics(&dir, &format!("index mutation round {round}"));
        // A path out of the folder and a shard that does not exist are always refused.
        assert!(
            !(loaded && choice < 2),
            "round {round}: loaded with {name} → {}",
            v["weight_map"][name]
        );
    }
    eprintln!("{cases} mutated inputs, none panicked");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn arbitrary_hook_names_never_panic() {
    let mut rng = StdRng::seed_from_u64(17);
    let alphabet: Vec<char> = "blocks.moe*0123456789_topkidsrouter".chars().collect();
    for _ in 0..2000 {
        let len = rng.gen_range(0..30);
        let s: String = (0..len)
            .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
            .collect();
        let _ = s.parse::<HookPattern>();
    }
}

/// Runs `parse` on mutations of `base`; any panic fails with the input that caused it.
/// Returns how many inputs parsed.
fn fuzz_text(name: &str, base: &str, seed: u64, mut parse: impl FnMut(&str) -> bool) -> usize {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut parsed = 0;
    let budget = mutate::Budget::new(ROUNDS);
    let mut round = 0;
    while budget.more(round) {
        let text = mutate::mutate(base, &mut rng);
        match catch_unwind(AssertUnwindSafe(|| parse(&text))) {
            Ok(ok) => parsed += usize::from(ok),
            Err(_) => panic!("{name} round {round} panicked on:\n{text}"),
        }
        round += 1;
    }
    eprintln!("{name}: {round} mutated inputs, {parsed} parsed, none panicked");
    parsed
}

#[test]
fn mutated_prompt_sets_never_panic() {
    let root = common::repo_root();
    let base = [
        "datasets/examples/smoke.jsonl",
        "datasets/refusal/detect.jsonl",
    ]
    .iter()
    .map(|p| std::fs::read_to_string(root.join(p)).unwrap())
    .collect::<Vec<_>>()
    .join("");
    let model = root.join("assets/default-model");
    let config = ModelConfig::from_file(&model.join("config.json")).unwrap();
    let codec = moescope_engine::TextCodec::open(&model, &config.eos_token_ids).unwrap();
    let path = Path::new("fuzz.jsonl");
    let parsed = fuzz_text(
        "prompt sets",
        &base,
        11,
        |text| match moescope_engine::parse_prompt_set(text, path) {
            Ok(records) => {
                for r in &records {
                    let _ = r.token_ids(&codec);
                }
                true
            }
            Err(e) => {
                assert!(
                    e.to_string().contains("fuzz.jsonl"),
                    "error names the file: {e}"
                );
                false
            }
        },
    );
    assert!(parsed > 0, "some mutations stay valid");
}

#[test]
fn mutated_steering_profiles_never_panic() {
    let root = common::repo_root();
    let base = std::fs::read_to_string(root.join("examples/steer-default-model.toml")).unwrap()
        + "\n[[intervention]]\nlayer = 3\nkind = \"top_k\"\nvalue = 1\nscope = \"generated\"\n\n[[intervention]]\nlayer = 4\nexpert = 2\nkind = \"scale\"\nvalue = 0.5\n";
    let config = ModelConfig::from_file(&root.join("assets/default-model/config.json")).unwrap();
    let path = Path::new("fuzz.toml");
    let parsed = fuzz_text("steering profiles", &base, 13, |text| {
        moescope_engine::SteeringProfile::parse(text, path, &config).is_ok()
    });
    assert!(parsed > 0, "some mutations stay valid");
}
