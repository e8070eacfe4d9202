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
    /// Stored values per dtype (what `info` reports as the checkpoint's dtype).
    pub dtypes: DtypeCounts,
}

impl Checkpoint {
    /// Loads `config.json`, the safetensors weights and `tokenizer.json` from `dir`, computing
    /// in f32.
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
        if !dir.is_dir() {
            return Err(EngineError::MissingFile {
                path: dir.to_path_buf(),
                what: "checkpoint folder",
            });
        }
        let config = ModelConfig::from_file(&dir.join("config.json"))?;
        let codec = TextCodec::open(dir, &config.eos_token_ids)?;
        let weights = Weights::open(dir, device, dtype)?;
        let dtypes = weights.dtype_counts();
        let model = MoeModel::load(config, &weights)?;
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
            dtypes,
        })
    }
}
