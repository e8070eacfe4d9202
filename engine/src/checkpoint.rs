//! Opens a local Hugging Face checkpoint folder into a runnable model and its text codec.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};

use crate::config::ModelConfig;
use crate::error::{EngineError, Result};
use crate::model::MoeModel;
use crate::tokenizer::TextCodec;
use crate::weights::{DtypeCounts, Weights};

/// A loaded checkpoint: configuration, model and tokenizer.
pub struct Checkpoint {
    /// The folder it was loaded from.
    pub dir: PathBuf,
    /// The runnable model.
    pub model: MoeModel,
    /// Tokenizer, chat template and stop tokens.
    pub codec: TextCodec,
}

impl Checkpoint {
    /// Loads `config.json`, the safetensors weights and `tokenizer.json` from `dir`, computing
    /// in f32 (what the f32 parity tests compare).
    pub fn open(dir: &Path, device: &Device) -> Result<Self> {
        Self::open_as(dir, device, DType::F32)
    }

    /// [`Checkpoint::open`] with another compute dtype (bf16 or f16 halve the memory and are
    /// what GPUs run fastest; routing and softmaxes still run in f32).
    pub fn open_as(dir: &Path, device: &Device, dtype: DType) -> Result<Self> {
        if !matches!(dtype, DType::F32 | DType::BF16 | DType::F16) {
            return Err(EngineError::InvalidInput(format!(
                "compute dtype {dtype:?} is not supported; use f32, bf16 or f16"
            )));
        }
        let (config, codec, weights) = open_parts(dir, device, dtype)?;
        if device.is_cpu() {
            check_memory(dir, &weights, dtype)?;
        }
        let model = MoeModel::load(config, &weights)?;
        if device.is_cpu() && dtype != DType::F32 {
            // Which product kernel wins at which row count differs by CPU and by shape; each
            // shape is measured at its first product.
            crate::kernels::enable_calibration();
        }
        if codec.vocab_size() > model.config().vocab_size {
            return Err(EngineError::Tokenizer {
                path: dir.join("tokenizer.json"),
                message: format!(
                    "has {} tokens but config.json's vocab_size is {}; the tokenizer belongs to another model",
                    codec.vocab_size(),
                    model.config().vocab_size
                ),
            });
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            model,
            codec,
        })
    }
}

/// The float dtype most of the checkpoint's values are stored in (what `--dtype auto` and
/// transformers' `dtype="auto"` load), read from the safetensors headers alone.
pub fn stored_dtype(dir: &Path) -> Result<Option<DType>> {
    Ok(Weights::open(dir, &Device::Cpu, DType::F32)?.stored_dtype())
}

/// What a checkpoint folder holds, read from `config.json`, the safetensors headers and the
/// tokenizer files without loading a single weight: answers in milliseconds at any size.
pub struct CheckpointSummary {
    /// The folder.
    pub dir: PathBuf,
    /// The parsed configuration.
    pub config: ModelConfig,
    /// Stored values per dtype.
    pub dtypes: DtypeCounts,
    /// The float dtype most values are stored in (`--dtype auto` loads this).
    pub stored_dtype: Option<DType>,
    /// Parameters stored.
    pub num_params: usize,
    /// Parameters of the routed experts.
    pub routed_expert_params: usize,
    /// Bytes of the safetensors files' tensor data.
    pub stored_bytes: u64,
    /// Whether the tokenizer files carry a chat template.
    pub has_chat_template: bool,
    weights: Weights,
}

impl CheckpointSummary {
    /// Reads the summary of the checkpoint in `dir`.
    pub fn read(dir: &Path) -> Result<Self> {
        let (config, codec, weights) = open_parts(dir, &Device::Cpu, DType::F32)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            dtypes: weights.dtype_counts(),
            stored_dtype: weights.stored_dtype(),
            num_params: weights.num_params(),
            routed_expert_params: weights.routed_expert_params(),
            stored_bytes: weights.stored_bytes(),
            has_chat_template: codec.has_chat_template(),
            config,
            weights,
        })
    }

    /// Parameters one token uses: all but the routed experts it does not choose.
    pub fn num_active_params(&self) -> usize {
        let moe = &self.config.moe;
        let unused = self.routed_expert_params as f64
            * (moe.num_experts.saturating_sub(moe.top_k)) as f64
            / moe.num_experts.max(1) as f64;
        self.num_params - unused.round() as usize
    }

    /// Bytes the weights take once loaded in `dtype`.
    pub fn loaded_bytes(&self, dtype: DType) -> u64 {
        self.weights.loaded_bytes(dtype)
    }
}

/// The config, text codec and (mapped, not yet loaded) weights of the folder `dir`.
fn open_parts(
    dir: &Path,
    device: &Device,
    dtype: DType,
) -> Result<(ModelConfig, TextCodec, Weights)> {
    if !dir.is_dir() {
        return Err(EngineError::MissingFile {
            path: dir.to_path_buf(),
            what: "checkpoint folder",
        });
    }
    let config = ModelConfig::from_file(&dir.join("config.json"))?;
    let codec = TextCodec::open(dir, &config.eos_token_ids)?;
    let weights = Weights::open(dir, device, dtype)?.with_fp8_block(config.fp8_block);
    Ok((config, codec, weights))
}

/// Refuses to load weights that would not fit in the memory available now, before the
/// out-of-memory killer would end the process halfway through.
fn check_memory(dir: &Path, weights: &Weights, dtype: DType) -> Result<()> {
    let Some(available) = available_memory() else {
        return Ok(());
    };
    let needed = weights.loaded_bytes(dtype);
    if needed <= available {
        return Ok(());
    }
    let stored = weights.stored_dtype();
    let hint = match stored {
        Some(s) if s.size_in_bytes() < dtype.size_in_bytes() => format!(
            "load it in its stored dtype with `--dtype {}` (or `auto`), or use a machine with more memory",
            format!("{s:?}").to_lowercase()
        ),
        _ => "use a machine with more memory".to_string(),
    };
    Err(EngineError::OutOfMemory {
        path: dir.to_path_buf(),
        dtype: format!("{dtype:?}").to_lowercase(),
        needed_gb: needed as f64 / 1e9,
        available_gb: available as f64 / 1e9,
        hint,
    })
}

/// `MemAvailable` from `/proc/meminfo`, in bytes (`None` where there is no such file).
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
