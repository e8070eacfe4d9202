#![warn(missing_docs)]
//! moescope's inference engine: loads Hugging Face MoE checkpoints (Mixtral, OLMoE, Qwen2-MoE,
//! Qwen3-MoE, DeepSeek-V2/V3, GPT-OSS), runs them with named routing hook points, and routes
//! every token through one [`RoutingPolicy`] step where interventions (masks, forcing,
//! re-weighting, …) apply.

mod attend_few;
pub mod attention;
pub mod attribution;
pub mod chat;
pub mod checkpoint;
pub mod config;
pub mod contrast;
pub mod error;
mod exp_lanes;
pub mod experts;
pub mod gates;
pub mod generate;
pub mod hooks;
mod host_buffer;
pub mod kernels;
pub mod layers;
pub mod logprob;
pub mod matrix;
pub mod mla;
pub mod model;
pub mod moe;
pub mod moe_names;
pub mod ops;
pub mod policy;
pub mod profile;
pub mod prompts;
pub mod rope;
pub mod routing;
pub mod scoring;
pub mod tokenizer;
pub mod trace;
pub mod weights;

pub use attribution::{gate_gradients, target_logprobs, ScoredPair};
pub use chat::{ChatMessage, ChatOptions, TemplateArgs};
pub use checkpoint::{Checkpoint, CheckpointSummary};
pub use config::{Architecture, ModelConfig};
pub use contrast::SelfContrast;
pub use error::{EngineError, Result};
pub use gates::ExpertGates;
pub use generate::{generate, CancelFlag, GenerateOptions, GenerateRequest, Generated, StopReason};
pub use hooks::{Capture, CaptureData, HookPattern, HookPoint, MoeHook, Recorder};
pub use model::{ForwardOptions, KvCache, LogitsFor, MoeModel};
pub use policy::{ExpertEdit, Phase, RoutingPolicy, Scope};
pub use profile::{Intervention, InterventionKind, ScopeName, SteeringProfile, PROFILE_VERSION};
pub use prompts::{load_prompt_set, parse_prompt_set, PromptInput, PromptRecord};
pub use routing::RoutingRule;
pub use tokenizer::TextCodec;
pub use trace::{trace_batch, trace_batch_streaming, Choice, LayerTrace, SequenceTrace};
