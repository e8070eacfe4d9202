//! Maps each supported architecture's `config.json` onto one architecture-neutral
//! [`ModelConfig`], so that the forward pass never branches on a model name.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{EngineError, Result};
use crate::rope::{yarn_mscale, RopeScaling, RopeSpec};
use crate::routing::{GroupLimit, GroupScore, RoutingRule, Scoring};

/// More decoder layers than any released model has; a larger value is a corrupt config.
const MAX_LAYERS: usize = 4096;

/// The architectures the engine can load, by their `model_type` in `config.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// `mixtral`: softmax router over 8 experts, top-2 renormalised.
    Mixtral,
    /// `olmoe`: softmax router, q/k RMSNorm over the whole projection.
    Olmoe,
    /// `qwen2_moe`: shared expert with a sigmoid gate, optional dense layers, q/k/v bias.
    Qwen2Moe,
    /// `qwen3_moe`: per-head q/k RMSNorm, optional dense layers.
    Qwen3Moe,
    /// `deepseek_v2`: multi-head latent attention, softmax router (optionally group-limited),
    /// shared experts, first layers dense.
    DeepseekV2,
    /// `deepseek_v3`: as V2 with a sigmoid router, a selection-only bias and group-limited top-k.
    DeepseekV3,
    /// `gpt_oss`: attention sinks, alternating sliding/full attention, biased router and
    /// experts, clamped SwiGLU, MXFP4 expert weights.
    GptOss,
}

impl Architecture {
    /// Every supported `model_type` string.
    pub const SUPPORTED: [&'static str; 7] = [
        "mixtral",
        "olmoe",
        "qwen2_moe",
        "qwen3_moe",
        "deepseek_v2",
        "deepseek_v3",
        "gpt_oss",
    ];

    /// Parses a `model_type` value.
    pub fn from_model_type(model_type: &str) -> Option<Self> {
        match model_type {
            "mixtral" => Some(Self::Mixtral),
            "olmoe" => Some(Self::Olmoe),
            "qwen2_moe" => Some(Self::Qwen2Moe),
            "qwen3_moe" => Some(Self::Qwen3Moe),
            "deepseek_v2" => Some(Self::DeepseekV2),
            "deepseek_v3" => Some(Self::DeepseekV3),
            "gpt_oss" => Some(Self::GptOss),
            _ => None,
        }
    }

    /// The `model_type` string of this architecture.
    pub fn model_type(self) -> &'static str {
        match self {
            Self::Mixtral => "mixtral",
            Self::Olmoe => "olmoe",
            Self::Qwen2Moe => "qwen2_moe",
            Self::Qwen3Moe => "qwen3_moe",
            Self::DeepseekV2 => "deepseek_v2",
            Self::DeepseekV3 => "deepseek_v3",
            Self::GptOss => "gpt_oss",
        }
    }

    fn is_deepseek(self) -> bool {
        matches!(self, Self::DeepseekV2 | Self::DeepseekV3)
    }
}

/// How queries and keys are normalised before RoPE, if at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QkNorm {
    /// No normalisation (Mixtral, Qwen2-MoE).
    None,
    /// RMSNorm over each head's `head_dim` values (Qwen3-MoE).
    PerHead,
    /// RMSNorm over the whole q (and k) projection output (OLMoE).
    Full,
}

/// Attention settings shared by every layer.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionSpec {
    /// Number of query heads.
    pub num_heads: usize,
    /// Number of key/value heads (grouped-query attention when fewer than `num_heads`).
    pub num_kv_heads: usize,
    /// Width of one query/key head (for MLA: the non-rotated plus the rotated part).
    pub head_dim: usize,
    /// Whether q, k and v projections carry a bias.
    pub qkv_bias: bool,
    /// Whether the output projection carries a bias.
    pub o_bias: bool,
    /// Whether each head has a learned attention sink (a logit that takes probability mass
    /// but contributes no value).
    pub sinks: bool,
    /// Query/key normalisation variant.
    pub qk_norm: QkNorm,
    /// OLMoE's optional clamp of q, k and v to `[-clip, clip]`.
    pub clip_qkv: Option<f64>,
    /// Rotary embedding of the query/key (rotated part).
    pub rope: RopeSpec,
    /// Multiplies `q·k` before the softmax (`1/√head_dim`, times YaRN's correction for MLA).
    pub softmax_scale: f64,
    /// Multi-head latent attention (DeepSeek); `None` for grouped-query attention.
    pub mla: Option<MlaSpec>,
}

/// The shapes of multi-head latent attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MlaSpec {
    /// Rank of the query bottleneck, or `None` for a direct query projection.
    pub q_lora_rank: Option<usize>,
    /// Width of the compressed key/value latent.
    pub kv_lora_rank: usize,
    /// Per-head query/key width without position information.
    pub qk_nope_head_dim: usize,
    /// Per-head query/key width that is rotated (shared across heads for keys).
    pub qk_rope_head_dim: usize,
    /// Per-head value width.
    pub v_head_dim: usize,
}

/// The shared expert that every token passes through (Qwen2-MoE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedExpertSpec {
    /// Hidden width of the shared expert's MLP.
    pub intermediate_size: usize,
    /// Whether its output is multiplied by `sigmoid(shared_expert_gate(h))`.
    pub sigmoid_gate: bool,
}

/// The routed-experts block of one MoE layer.
#[derive(Debug, Clone, PartialEq)]
pub struct MoeSpec {
    /// Number of routed experts.
    pub num_experts: usize,
    /// Experts chosen per token.
    pub top_k: usize,
    /// Hidden width of each routed expert's MLP.
    pub expert_intermediate_size: usize,
    /// How router logits become chosen experts and weights.
    pub routing: RoutingRule,
    /// Whether each layer's router has a selection-only bias (`gate.e_score_correction_bias`).
    pub selection_bias: bool,
    /// Whether the router's linear map has a bias (part of the logits).
    pub router_bias: bool,
    /// Whether the routed experts' projections carry biases.
    pub expert_bias: bool,
    /// The experts' gated activation.
    pub expert_activation: GluActivation,
    /// Optional shared expert.
    pub shared_expert: Option<SharedExpertSpec>,
}

/// What the feed-forward part of one decoder layer is.
#[derive(Debug, Clone, PartialEq)]
pub enum FfnKind {
    /// A plain SwiGLU MLP of this hidden width.
    Dense {
        /// Hidden width.
        intermediate_size: usize,
    },
    /// The shared MoE block.
    Moe,
}

/// One decoder layer's layout.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerSpec {
    /// Dense MLP or MoE.
    pub ffn: FfnKind,
    /// Sliding attention window for this layer, if any.
    pub sliding_window: Option<usize>,
}

/// An architecture-neutral description of a checkpoint, built from its `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Which architecture (selects weight names only; compute is driven by the fields below).
    pub architecture: Architecture,
    /// Vocabulary size of the embedding and LM head.
    pub vocab_size: usize,
    /// Residual stream width.
    pub hidden_size: usize,
    /// Epsilon of every RMSNorm.
    pub rms_norm_eps: f64,
    /// Rows × columns sharing one scale in an FP8 block-quantized checkpoint
    /// (`quantization_config.weight_block_size`); `None` when the weights are not FP8.
    pub fp8_block: Option<(usize, usize)>,
    /// Longest sequence the model accepts.
    pub max_position_embeddings: usize,
    /// Whether the LM head reuses the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Attention settings.
    pub attention: AttentionSpec,
    /// The routed experts (the same for every MoE layer).
    pub moe: MoeSpec,
    /// Per-layer layout, one entry per decoder layer.
    pub layers: Vec<LayerSpec>,
    /// The dtype the checkpoint declares (`torch_dtype` / `dtype`), for display.
    pub declared_dtype: Option<String>,
    /// End-of-sequence token ids declared in `config.json`.
    pub eos_token_ids: Vec<u32>,
}

impl ModelConfig {
    /// Reads and maps `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(EngineError::MissingFile {
                path: path.to_path_buf(),
                what: "model configuration",
            });
        }
        Self::from_json(&read_json(path)?, path)
    }

    /// Maps an already-parsed `config.json`; `path` is used in error messages.
    pub fn from_json(value: &Value, path: &Path) -> Result<Self> {
        let f = Fields { value, path };
        let model_type = f.req_str("model_type")?;
        let architecture = Architecture::from_model_type(&model_type).ok_or_else(|| {
            EngineError::UnknownArchitecture {
                path: path.to_path_buf(),
                model_type: model_type.clone(),
                supported: Architecture::SUPPORTED.join(", "),
            }
        })?;
        let fp8_block = fp8_block(&f)?;
        let hidden_size = f.req_usize("hidden_size")?;
        let num_layers = f.req_usize("num_hidden_layers")?;
        if num_layers == 0 || num_layers > MAX_LAYERS {
            return Err(f.bad(
                "num_hidden_layers",
                format!("must be between 1 and {MAX_LAYERS}, found {num_layers}"),
            ));
        }
        let num_heads = f.req_usize("num_attention_heads")?;
        let num_kv_heads = f.opt_usize("num_key_value_heads")?.unwrap_or(num_heads);
        let mla = if architecture.is_deepseek() {
            Some(MlaSpec {
                q_lora_rank: f.opt_usize("q_lora_rank")?,
                kv_lora_rank: f.req_usize("kv_lora_rank")?,
                qk_nope_head_dim: f.req_usize("qk_nope_head_dim")?,
                qk_rope_head_dim: f.req_usize("qk_rope_head_dim")?,
                v_head_dim: f.req_usize("v_head_dim")?,
            })
        } else {
            None
        };
        let head_dim = match &mla {
            Some(m) => m.qk_nope_head_dim + m.qk_rope_head_dim,
            None => f
                .opt_usize("head_dim")?
                .unwrap_or(hidden_size / num_heads.max(1)),
        };
        if num_heads == 0 || num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
            return Err(f.bad(
                "num_key_value_heads",
                format!("must divide num_attention_heads ({num_heads}) and be positive"),
            ));
        }
        let rope_dim = mla.map_or(head_dim, |m| m.qk_rope_head_dim);
        if rope_dim == 0 || rope_dim % 2 != 0 {
            let field = if mla.is_some() {
                "qk_rope_head_dim"
            } else {
                "head_dim"
            };
            return Err(f.bad(field, "must be a positive even number for RoPE".into()));
        }
        let rope = f.rope(architecture, rope_dim)?;
        let mut softmax_scale = 1.0 / (head_dim as f64).sqrt();
        if mla.is_some() {
            // DeepSeek folds YaRN's magnitude correction into the attention scale.
            if let (RopeScaling::Yarn { factor, .. }, Some(m)) =
                (rope.scaling, f.rope_param("mscale_all_dim"))
            {
                if m != 0.0 {
                    softmax_scale *= yarn_mscale(factor, m).powi(2);
                }
            }
        }
        let qk_norm = match architecture {
            Architecture::Olmoe => QkNorm::Full,
            Architecture::Qwen3Moe => QkNorm::PerHead,
            _ => QkNorm::None,
        };
        let qkv_bias = match architecture {
            Architecture::Qwen2Moe => f.opt_bool("qkv_bias")?.unwrap_or(true),
            Architecture::Mixtral => false,
            Architecture::GptOss => f.opt_bool("attention_bias")?.unwrap_or(true),
            _ => f.opt_bool("attention_bias")?.unwrap_or(false),
        };
        let o_bias = match architecture {
            Architecture::Qwen2Moe | Architecture::Mixtral => false,
            _ => qkv_bias,
        };
        let clip_qkv = match architecture {
            Architecture::Olmoe => f.opt_f64("clip_qkv")?,
            _ => None,
        };
        let attention = AttentionSpec {
            num_heads,
            num_kv_heads,
            head_dim,
            qkv_bias,
            o_bias,
            sinks: architecture == Architecture::GptOss,
            qk_norm,
            clip_qkv,
            rope,
            softmax_scale,
            mla,
        };

        let (experts_key, intermediate_key) = match architecture {
            Architecture::Mixtral | Architecture::GptOss => {
                ("num_local_experts", "intermediate_size")
            }
            Architecture::Olmoe => ("num_experts", "intermediate_size"),
            Architecture::Qwen2Moe | Architecture::Qwen3Moe => {
                ("num_experts", "moe_intermediate_size")
            }
            Architecture::DeepseekV2 | Architecture::DeepseekV3 => {
                ("n_routed_experts", "moe_intermediate_size")
            }
        };
        // transformers 5 writes Qwen3-MoE's expert count as `num_local_experts`.
        let num_experts = match f.opt_usize(experts_key)? {
            Some(n) => n,
            None => f
                .opt_usize("num_local_experts")?
                .ok_or_else(|| f.bad(experts_key, "missing; it is required".into()))?,
        };
        let top_k = f.req_usize("num_experts_per_tok")?;
        if num_experts == 0 || top_k == 0 || top_k > num_experts {
            return Err(f.bad(
                "num_experts_per_tok",
                format!("must be between 1 and {experts_key} ({num_experts}), found {top_k}"),
            ));
        }
        // GPT-OSS takes the softmax of the top-k logits: the same as renormalised top-k.
        let norm_topk_prob = match architecture {
            Architecture::Mixtral | Architecture::GptOss => true,
            _ => f.opt_bool("norm_topk_prob")?.unwrap_or(false),
        };
        let expert_intermediate_size = f.req_usize(intermediate_key)?;
        let shared_expert = match architecture {
            Architecture::Qwen2Moe => match f.opt_usize("shared_expert_intermediate_size")? {
                Some(n) if n > 0 => Some(SharedExpertSpec {
                    intermediate_size: n,
                    sigmoid_gate: true,
                }),
                _ => None,
            },
            Architecture::DeepseekV2 | Architecture::DeepseekV3 => {
                match f.opt_usize("n_shared_experts")? {
                    Some(n) if n > 0 => Some(SharedExpertSpec {
                        intermediate_size: n * expert_intermediate_size,
                        sigmoid_gate: false,
                    }),
                    _ => None,
                }
            }
            _ => None,
        };
        let routing = match architecture {
            Architecture::DeepseekV2 | Architecture::DeepseekV3 => {
                f.deepseek_routing(architecture, num_experts, top_k, norm_topk_prob)?
            }
            _ => RoutingRule::softmax(norm_topk_prob),
        };
        let moe = MoeSpec {
            num_experts,
            top_k,
            expert_intermediate_size,
            routing,
            selection_bias: architecture == Architecture::DeepseekV3,
            router_bias: architecture == Architecture::GptOss,
            expert_bias: architecture == Architecture::GptOss,
            expert_activation: match architecture {
                Architecture::GptOss => GluActivation::ClampedSwiGlu {
                    alpha: f.opt_f64("swiglu_alpha")?.unwrap_or(1.702) as f32,
                    limit: f.opt_f64("swiglu_limit")?.unwrap_or(7.0) as f32,
                },
                _ => GluActivation::Silu,
            },
            shared_expert,
        };
        let layers = f.layer_specs(architecture, num_layers)?;
        let eos_token_ids = match value.get("eos_token_id") {
            Some(v) => token_ids(v).ok_or_else(|| {
                f.bad(
                    "eos_token_id",
                    "expected a token id or a list of ids".into(),
                )
            })?,
            None => Vec::new(),
        };
        let declared_dtype = ["dtype", "torch_dtype"]
            .iter()
            .find_map(|k| value.get(*k).and_then(Value::as_str).map(str::to_string));
        Ok(Self {
            architecture,
            vocab_size: f.req_usize("vocab_size")?,
            hidden_size,
            rms_norm_eps: f.opt_f64("rms_norm_eps")?.map_or(Ok(1e-6), |eps| {
                if eps > 0.0 && eps.is_finite() {
                    Ok(eps)
                } else {
                    Err(f.bad(
                        "rms_norm_eps",
                        format!("{eps} must be a small positive number (typically 1e-5 or 1e-6)"),
                    ))
                }
            })?,
            max_position_embeddings: f.opt_usize("max_position_embeddings")?.unwrap_or(4096),
            fp8_block,
            tie_word_embeddings: f.opt_bool("tie_word_embeddings")?.unwrap_or(false),
            attention,
            moe,
            layers,
            declared_dtype,
            eos_token_ids,
        })
    }

    /// Number of decoder layers.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Indices of the layers that hold the MoE block.
    pub fn moe_layers(&self) -> Vec<usize> {
        (0..self.layers.len())
            .filter(|&l| self.layers[l].ffn == FfnKind::Moe)
            .collect()
    }
}

/// Reads and parses a JSON file, with errors that name it.
pub(crate) fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| EngineError::Json {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Reads a token id or a list of token ids (the two forms `eos_token_id` takes).
pub(crate) fn token_ids(v: &Value) -> Option<Vec<u32>> {
    match v {
        Value::Null => Some(Vec::new()),
        Value::Number(n) => n
            .as_u64()
            .and_then(|x| u32::try_from(x).ok())
            .map(|x| vec![x]),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_u64().and_then(|x| u32::try_from(x).ok()))
            .collect(),
        _ => None,
    }
}

/// Typed access to `config.json` fields with errors that name the field.
/// Reads `quantization_config`: `None` for unquantized weights and gpt-oss's MXFP4 experts
/// (recognised by their tensor names), the block shape for FP8 block-quantized checkpoints;
/// any other method (AWQ, GPTQ, bitsandbytes, …) is refused, naming the method and what loads,
/// before any tensor is read.
fn fp8_block(f: &Fields) -> Result<Option<(usize, usize)>> {
    let Some(q) = f.get("quantization_config") else {
        return Ok(None);
    };
    let method = q.get("quant_method").and_then(Value::as_str).unwrap_or("");
    match method {
        "mxfp4" => return Ok(None),
        "fp8" => {}
        _ => {
            let shown = if method.is_empty() {
                "a quantization without quant_method".to_string()
            } else {
                format!("{method:?}")
            };
            return Err(f.bad(
                "quantization_config.quant_method",
                format!(
                    "{shown} checkpoints cannot be loaded; moescope loads unquantized bf16, f16 \
                     and f32 weights, FP8 block-quantized weights (\"fp8\", e4m3) and gpt-oss's \
                     MXFP4 experts (\"mxfp4\"): use the unquantized release of this model, or \
                     dequantize it and remove quantization_config"
                ),
            ));
        }
    }
    if let Some(fmt) = q.get("fmt").and_then(Value::as_str) {
        if fmt != "e4m3" {
            return Err(f.bad(
                "quantization_config.fmt",
                format!("FP8 format {fmt:?} is not supported; only e4m3 is"),
            ));
        }
    }
    let block = match q.get("weight_block_size") {
        None => (128, 128),
        Some(v) => {
            let dims: Option<Vec<usize>> = v.as_array().and_then(|a| {
                a.iter()
                    .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                    .collect()
            });
            match dims.as_deref() {
                Some(&[r, c])
                    if (1..=MAX_FP8_BLOCK).contains(&r) && (1..=MAX_FP8_BLOCK).contains(&c) =>
                {
                    (r, c)
                }
                _ => {
                    return Err(f.bad(
                        "quantization_config.weight_block_size",
                        format!(
                        "{v} must be two block sides from 1 to {MAX_FP8_BLOCK}, e.g. [128, 128]"
                    ),
                    ))
                }
            }
        }
    };
    Ok(Some(block))
}

/// Largest FP8 block side accepted.
const MAX_FP8_BLOCK: usize = 1 << 16;

struct Fields<'a> {
    value: &'a Value,
    path: &'a Path,
}

impl Fields<'_> {
    fn bad(&self, field: &str, message: String) -> EngineError {
        EngineError::BadConfig {
            path: PathBuf::from(self.path),
            field: field.to_string(),
            message,
        }
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.value.get(key).filter(|v| !v.is_null())
    }

    fn req_str(&self, key: &str) -> Result<String> {
        match self.get(key) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(self.bad(key, "expected a string".into())),
            None => Err(self.bad(key, "missing; it is required".into())),
        }
    }

    fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|x| usize::try_from(x).ok())
                .map(Some)
                .ok_or_else(|| {
                    self.bad(key, format!("expected a non-negative integer, found {v}"))
                }),
        }
    }

    fn req_usize(&self, key: &str) -> Result<usize> {
        self.opt_usize(key)?
            .ok_or_else(|| self.bad(key, "missing; it is required".into()))
    }

    fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.bad(key, format!("expected a number, found {v}"))),
        }
    }

    fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.bad(key, format!("expected true or false, found {v}"))),
        }
    }

    /// The RoPE parameters object: `rope_parameters` (transformers 5) or `rope_scaling`.
    fn rope_params(&self) -> Option<(&'static str, &Value)> {
        match self.get("rope_parameters") {
            Some(p) => Some(("rope_parameters", p)),
            None => self.get("rope_scaling").map(|p| ("rope_scaling", p)),
        }
    }

    /// A numeric field of the RoPE parameters object, if present.
    fn rope_param(&self, key: &str) -> Option<f64> {
        self.rope_params()?.1.get(key).and_then(Value::as_f64)
    }

    /// RoPE settings for `dim` rotated dimensions, from the top-level fields (transformers 4)
    /// or `rope_parameters` (transformers 5).
    fn rope(&self, arch: Architecture, dim: usize) -> Result<RopeSpec> {
        let default_theta = match arch {
            Architecture::Mixtral => 1e6,
            _ => 10000.0,
        };
        let theta = match self.rope_param("rope_theta") {
            Some(t) => t,
            None => self.opt_f64("rope_theta")?.unwrap_or(default_theta),
        };
        let interleaved = match arch {
            Architecture::DeepseekV2 => true,
            Architecture::DeepseekV3 => self.opt_bool("rope_interleave")?.unwrap_or(true),
            _ => false,
        };
        let spec = |scaling| RopeSpec {
            dim,
            theta,
            scaling,
            interleaved,
        };
        let Some((field, params)) = self.rope_params() else {
            return Ok(spec(RopeScaling::None));
        };
        let rope_type = params
            .get("rope_type")
            .or_else(|| params.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        let num = |key: &str| params.get(key).and_then(Value::as_f64);
        let factor = || {
            num("factor").filter(|f| *f > 0.0).ok_or_else(|| {
                self.bad(
                    field,
                    format!("{rope_type} RoPE scaling needs a positive numeric `factor`"),
                )
            })
        };
        match rope_type {
            "default" => Ok(spec(RopeScaling::None)),
            "linear" => Ok(spec(RopeScaling::Linear { factor: factor()? })),
            "yarn" => {
                let factor = factor()?;
                let original = match num("original_max_position_embeddings") {
                    Some(o) => o,
                    None => self.req_usize("max_position_embeddings")? as f64,
                };
                let attention_factor = match (
                    num("attention_factor"),
                    num("mscale"),
                    num("mscale_all_dim"),
                ) {
                    (Some(a), _, _) => a,
                    (None, Some(m), Some(all)) if m != 0.0 && all != 0.0 => {
                        yarn_mscale(factor, m) / yarn_mscale(factor, all)
                    }
                    _ => yarn_mscale(factor, 1.0),
                };
                Ok(spec(RopeScaling::Yarn {
                    factor,
                    original_max_position_embeddings: original,
                    beta_fast: num("beta_fast").filter(|b| *b != 0.0).unwrap_or(32.0),
                    beta_slow: num("beta_slow").filter(|b| *b != 0.0).unwrap_or(1.0),
                    attention_factor,
                    truncate: params
                        .get("truncate")
                        .and_then(Value::as_bool)
                        .unwrap_or(true),
                }))
            }
            other => Err(self.bad(
                field,
                format!(
                    "rope_type \"{other}\" is not supported yet (supported: default, linear, yarn)"
                ),
            )),
        }
    }

    /// DeepSeek's routing: softmax (V2) or sigmoid (V3) scores, group-limited choice,
    /// `routed_scaling_factor`.
    fn deepseek_routing(
        &self,
        arch: Architecture,
        experts: usize,
        top_k: usize,
        norm_topk_prob: bool,
    ) -> Result<RoutingRule> {
        let scaling = self.opt_f64("routed_scaling_factor")?.unwrap_or(1.0) as f32;
        let (scoring, expected) = match arch {
            Architecture::DeepseekV3 => (Scoring::Sigmoid, "sigmoid"),
            _ => (Scoring::Softmax, "softmax"),
        };
        if let Some(v) = self.get("scoring_func") {
            if v.as_str() != Some(expected) {
                return Err(self.bad(
                    "scoring_func",
                    format!(
                        "{v} is not supported for {}; it uses {expected}",
                        arch.model_type()
                    ),
                ));
            }
        }
        let grouped = match arch {
            Architecture::DeepseekV2 => match self.get("topk_method").and_then(Value::as_str) {
                None | Some("greedy") => None,
                Some("group_limited_greedy") => Some(GroupScore::Max),
                Some(other) => {
                    return Err(self.bad(
                        "topk_method",
                        format!("\"{other}\" is not supported; use greedy or group_limited_greedy"),
                    ))
                }
            },
            _ => Some(GroupScore::SumTop2),
        };
        let group_limit = match grouped {
            None => None,
            Some(score) => {
                let groups = self.opt_usize("n_group")?.unwrap_or(1);
                let top_groups = self.opt_usize("topk_group")?.unwrap_or(groups);
                if groups == 0 || !experts.is_multiple_of(groups) {
                    return Err(self.bad(
                        "n_group",
                        format!("must divide the {experts} routed experts"),
                    ));
                }
                if top_groups == 0 || top_groups > groups || top_groups * (experts / groups) < top_k
                {
                    return Err(self.bad(
                        "topk_group",
                        format!(
                            "must be between 1 and n_group ({groups}) and keep at least num_experts_per_tok ({top_k}) experts"
                        ),
                    ));
                }
                if score == GroupScore::SumTop2 && experts / groups < 2 {
                    return Err(self.bad("n_group", "groups need at least two experts each".into()));
                }
                Some(GroupLimit {
                    groups,
                    top_groups,
                    score,
                })
            }
        };
        Ok(RoutingRule {
            scoring,
            norm_topk_prob,
            scaling,
            group_limit,
        })
    }

    /// Which layers are dense and which use sliding-window attention.
    fn layer_specs(&self, arch: Architecture, num_layers: usize) -> Result<Vec<LayerSpec>> {
        let (sparse_step, mlp_only, dense_intermediate) = match arch {
            Architecture::Qwen2Moe | Architecture::Qwen3Moe => {
                let step = self.opt_usize("decoder_sparse_step")?.unwrap_or(1);
                if step == 0 {
                    return Err(self.bad("decoder_sparse_step", "must be at least 1".into()));
                }
                let only: Vec<usize> = match self.get("mlp_only_layers") {
                    None => Vec::new(),
                    Some(v) => v
                        .as_array()
                        .and_then(|a| a.iter().map(|x| x.as_u64().map(|x| x as usize)).collect())
                        .ok_or_else(|| {
                            self.bad("mlp_only_layers", "expected a list of layer indices".into())
                        })?,
                };
                (step, only, self.opt_usize("intermediate_size")?)
            }
            Architecture::DeepseekV2 | Architecture::DeepseekV3 => {
                let first_dense = self.opt_usize("first_k_dense_replace")?.unwrap_or(0);
                let freq = self.opt_usize("moe_layer_freq")?.unwrap_or(1);
                if freq == 0 {
                    return Err(self.bad("moe_layer_freq", "must be at least 1".into()));
                }
                let dense: Vec<usize> = (0..num_layers)
                    .filter(|l| *l < first_dense || l % freq != 0)
                    .collect();
                (1, dense, self.opt_usize("intermediate_size")?)
            }
            _ => (1, Vec::new(), None),
        };
        let windows = self.sliding_windows(arch, num_layers)?;
        (0..num_layers)
            .map(|l| {
                let moe = !mlp_only.contains(&l) && (l + 1) % sparse_step == 0;
                let ffn = if moe {
                    FfnKind::Moe
                } else {
                    let intermediate_size = dense_intermediate.ok_or_else(|| {
                        self.bad(
                            "intermediate_size",
                            format!("layer {l} is dense and needs it"),
                        )
                    })?;
                    FfnKind::Dense { intermediate_size }
                };
                Ok(LayerSpec {
                    ffn,
                    sliding_window: windows[l],
                })
            })
            .collect()
    }

    fn sliding_windows(&self, arch: Architecture, num_layers: usize) -> Result<Vec<Option<usize>>> {
        let window = self.opt_usize("sliding_window")?;
        if let Some(types) = self.get("layer_types").and_then(Value::as_array) {
            if types.len() != num_layers {
                return Err(self.bad(
                    "layer_types",
                    format!(
                        "has {} entries, expected num_hidden_layers = {num_layers}",
                        types.len()
                    ),
                ));
            }
            return types
                .iter()
                .map(|t| match t.as_str() {
                    Some("full_attention") => Ok(None),
                    Some("sliding_attention") => window.map(Some).ok_or_else(|| {
                        self.bad("sliding_window", "sliding_attention layers need it".into())
                    }),
                    _ => Err(self.bad(
                        "layer_types",
                        format!("unknown entry {t}; expected full_attention or sliding_attention"),
                    )),
                })
                .collect();
        }
        Ok(match arch {
            Architecture::Mixtral => vec![window; num_layers],
            Architecture::Qwen2Moe | Architecture::Qwen3Moe
                if self.opt_bool("use_sliding_window")?.unwrap_or(false) =>
            {
                let first = self.opt_usize("max_window_layers")?.unwrap_or(num_layers);
                (0..num_layers)
                    .map(|l| if l >= first { window } else { None })
                    .collect()
            }
            _ => vec![None; num_layers],
        })
    }
}

/// The gated activation of an MLP: how `gate(x)` and `up(x)` combine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GluActivation {
    /// `silu(gate) · up`.
    Silu,
    /// GPT-OSS: gate clamped above at `limit`, up clamped to ±`limit`,
    /// `(up + 1) · gate · sigmoid(alpha · gate)`.
    ClampedSwiGlu {
        /// Slope inside the sigmoid.
        alpha: f32,
        /// Clamp bound.
        limit: f32,
    },
}
