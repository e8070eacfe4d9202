//! Where each architecture's checkpoints keep an MoE block's tensors: the names and the
//! storage layout of the router, the routed experts and the shared expert.

use crate::config::Architecture;

/// Checkpoint names of one MoE block's tensors, which differ between architectures.
#[derive(Debug, Clone, Copy)]
pub struct MoeNames {
    /// Sub-module holding the block (`block_sparse_moe` for Mixtral, `mlp` otherwise).
    pub block: &'static str,
    /// Per-expert projection names: gate, up, down.
    pub expert_proj: [&'static str; 3],
    /// Sub-module holding the shared expert(s) (`shared_expert` or `shared_experts`).
    pub shared: &'static str,
    /// The router's name inside the block (`gate`, or `router` for GPT-OSS).
    pub router: &'static str,
    /// How the experts' weights are stored.
    pub layout: ExpertLayout,
}

impl MoeNames {
    /// The names most architectures use (`mlp.gate`, `mlp.experts.{i}.gate_proj`, …).
    const STANDARD: Self = Self {
        block: "mlp",
        expert_proj: ["gate_proj", "up_proj", "down_proj"],
        shared: "shared_expert",
        router: "gate",
        layout: ExpertLayout::Standard,
    };

    /// Where an architecture's checkpoints keep the MoE block's tensors.
    pub fn of(arch: Architecture) -> Self {
        match arch {
            Architecture::Mixtral => Self {
                block: "block_sparse_moe",
                expert_proj: ["w1", "w3", "w2"],
                ..Self::STANDARD
            },
            Architecture::DeepseekV2 | Architecture::DeepseekV3 => Self {
                shared: "shared_experts",
                ..Self::STANDARD
            },
            Architecture::GptOss => Self {
                router: "router",
                layout: ExpertLayout::InterleavedInOut,
                ..Self::STANDARD
            },
            Architecture::Olmoe | Architecture::Qwen2Moe | Architecture::Qwen3Moe => Self::STANDARD,
        }
    }
}

/// How a checkpoint stores the routed experts' weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpertLayout {
    /// `experts.{i}.{gate,up,down}` `[out, in]` matrices as on the Hub, or the fused
    /// `experts.gate_up_proj` `[E, 2I, H]` (gate rows, then up rows) and `experts.down_proj`.
    Standard,
    /// GPT-OSS: `experts.gate_up_proj` `[E, H, 2I]` with gate and up columns interleaved,
    /// `experts.down_proj` `[E, I, H]`, biases, in f32/bf16 or MXFP4 (`*_blocks`, `*_scales`).
    InterleavedInOut,
}
