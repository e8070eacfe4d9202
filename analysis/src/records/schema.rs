//! The records format's names and row types: the files of a records folder, the run, sequence
//! and token rows, and the routing table's Arrow schema.

use std::path::Path;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef};

/// The long routing table.
pub const ROUTING_FILE: &str = "routing.parquet";
/// The sequences side table.
pub const SEQUENCES_FILE: &str = "sequences.parquet";
/// The run metadata table.
pub const RUN_FILE: &str = "run.parquet";
/// The optional wide table of full router distributions.
pub const PROBS_FILE: &str = "router_probs.parquet";

/// What a recording run was: enough to reproduce it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    /// Identifier of the run, repeated in every routing row.
    pub run_id: String,
    /// The checkpoint folder.
    pub model: String,
    /// `model_type` of the checkpoint.
    pub architecture: String,
    /// SHA-256 of the checkpoint's `config.json`.
    pub config_sha256: String,
    /// Decoder layers.
    pub num_layers: u32,
    /// Layers with routed experts.
    pub moe_layers: Vec<u32>,
    /// Routed experts per MoE layer.
    pub num_experts: u32,
    /// Experts chosen per token.
    pub top_k: u32,
    /// The steering profile in effect, as TOML (empty when none).
    pub interventions: String,
    /// The prompt set that was recorded.
    pub prompts: String,
    /// Tokens generated per prompt (0: prompts only).
    pub generate_tokens: u32,
    /// When the run started, seconds since the Unix epoch.
    pub created_unix: i64,
    /// The moescope version that wrote the files.
    pub moescope_version: String,
    /// False when the run was interrupted and holds only the sequences done by then.
    pub complete: bool,
}

/// One recorded prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceInfo {
    /// Ordinal of the sequence in the run (the join key of `routing.parquet`).
    pub seq_index: u32,
    /// The prompt's `id` in its prompt set.
    pub seq_id: String,
    /// The rendered prompt text.
    pub prompt: String,
    /// Its label, if any.
    pub label: Option<String>,
    /// Its pair id, if any.
    pub pair_id: Option<String>,
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Generated tokens with routing.
    pub generated_tokens: u32,
    /// The generated text, when generating.
    pub generated_text: Option<String>,
}

/// The routing of one token at one layer, as handed to the writer.
#[derive(Debug, Clone, Copy)]
pub struct TokenRouting<'a> {
    /// Ordinal of the sequence.
    pub seq_index: u32,
    /// Position in the sequence.
    pub position: u32,
    /// Token id.
    pub token_id: u32,
    /// Token text.
    pub token_text: &'a str,
    /// Whether the token was generated (not part of the prompt).
    pub is_generated: bool,
    /// Decoder layer.
    pub layer: u16,
    /// Chosen experts, best first.
    pub experts: &'a [u32],
    /// Their mixing weights.
    pub weights: &'a [f32],
    /// Router scores of every expert (before interventions).
    pub scores: &'a [f32],
    /// Max |down_proj output| of each chosen expert.
    pub out_maxabs: &'a [f32],
}

/// The schema of `routing.parquet`.
pub fn routing_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("run_id", DataType::Utf8, false),
        Field::new("seq_index", DataType::UInt32, false),
        Field::new("seq_id", DataType::Utf8, false),
        Field::new("position", DataType::UInt32, false),
        Field::new("token_id", DataType::UInt32, false),
        Field::new("token_text", DataType::Utf8, false),
        Field::new("is_generated", DataType::Boolean, false),
        Field::new("layer", DataType::UInt16, false),
        Field::new("rank", DataType::UInt8, false),
        Field::new("expert", DataType::UInt16, false),
        Field::new("weight", DataType::Float32, false),
        Field::new("router_prob", DataType::Float32, false),
        Field::new("out_maxabs", DataType::Float32, false),
    ]))
}

/// Every table a records folder may hold.
pub const TABLES: [&str; 4] = [ROUTING_FILE, SEQUENCES_FILE, RUN_FILE, PROBS_FILE];

/// The record tables already in `dir` (empty when none): a folder holding any of them holds a
/// recording that a new one would replace.
pub fn existing_tables(dir: &Path) -> Vec<&'static str> {
    TABLES
        .into_iter()
        .filter(|name| dir.join(name).exists())
        .collect()
}
