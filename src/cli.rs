//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Look inside Mixture-of-Experts language models and steer them by their experts.
#[derive(Debug, Parser)]
#[command(name = "moescope", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Describe a checkpoint: architecture, layers, experts, top-k, dtype, parameter counts.
    Info(ModelArgs),
    /// Generate a continuation, optionally with experts masked, showing the routing.
    Generate(GenerateArgs),
    /// Measure prefill and decode throughput, with and without routing capture.
    Bench(BenchArgs),
    /// Measure behaviour on a prompt set, unsteered and steered, with bootstrap intervals.
    Eval(EvalArgs),
    /// Record the routing of every token of a prompt set to Parquet (records folder).
    Record(RecordArgs),
    /// Rank experts by a statistic over a records folder; writes Parquet, CSV, Markdown, SVG.
    Analyze(AnalyzeArgs),
    /// Run a whole steering experiment from one TOML file and write a report folder.
    Experiment(ExperimentArgs),
    /// Open the desktop app: generate, see the routing, steer experts, compare.
    Gui(GuiArgs),
}

/// `moescope experiment`.
#[derive(Debug, Args)]
pub struct ExperimentArgs {
    /// What to do with the experiment file.
    #[command(subcommand)]
    pub command: ExperimentCommand,
}

/// The subcommands of `moescope experiment`.
#[derive(Debug, Subcommand)]
pub enum ExperimentCommand {
    /// Detect, steer top-N and random-N experts, evaluate, and write the report folder.
    Run(ExperimentRunArgs),
    /// Check an experiment file and every file it names, without running anything.
    Check {
        /// The experiment file (see experiments/README.md).
        file: PathBuf,
    },
}

/// `moescope experiment run`.
#[derive(Debug, Args)]
pub struct ExperimentRunArgs {
    /// The experiment file (see experiments/README.md).
    pub file: PathBuf,
    /// The report folder (default: reports/NAME).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Replace the report folder when it already holds files.
    #[arg(long)]
    pub overwrite: bool,
    /// Prompts run together.
    #[arg(long, default_value_t = 8, value_parser = bounded::<1, 1024>)]
    pub batch: usize,
    /// Bootstrap resamples per interval.
    #[arg(long, default_value_t = 1000, value_parser = bounded::<1, 100000>)]
    pub resamples: usize,
    /// Device to run on (`cpu`; `cuda:N` in builds with the cuda feature).
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// `moescope record`.
#[derive(Debug, Args)]
pub struct RecordArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// A JSONL prompt set (see datasets/README.md).
    #[arg(long, value_name = "FILE")]
    pub prompts: PathBuf,
    /// The records folder to write (routing.parquet, sequences.parquet, run.parquet).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Also generate this many tokens per prompt (greedy) and record their routing.
    #[arg(long, default_value_t = 0, value_name = "N", value_parser = bounded::<0, 65536>)]
    pub generate: usize,
    /// Also write router_probs.parquet with every expert's router probability.
    #[arg(long)]
    pub full_probs: bool,
    /// Prompts run together.
    #[arg(long, default_value_t = 8, value_parser = bounded::<1, 1024>)]
    pub batch: usize,
    /// A steering profile in effect while recording.
    #[arg(long, value_name = "FILE")]
    pub steer: Option<PathBuf>,
    /// Experts to mask while recording, LAYER:EXPERT (repeatable).
    #[arg(long = "mask", value_name = "LAYER:EXPERT")]
    pub mask: Vec<String>,
    /// Identifier written in every row (default: run-<unix time>).
    #[arg(long)]
    pub run_id: Option<String>,
    /// Replace the recording already in `--out` (it stays until the new one is complete or
    /// interrupted).
    #[arg(long)]
    pub overwrite: bool,
}

/// `moescope analyze`.
#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// The statistic.
    #[command(subcommand)]
    pub stat: Stat,
}

/// Options every statistic takes.
#[derive(Debug, Args)]
pub struct StatCommon {
    /// A records folder written by `moescope record`.
    #[arg(long, value_name = "DIR")]
    pub records: PathBuf,
    /// Output path without extension: writes OUT.parquet, OUT.csv, OUT.md and SVG plots.
    #[arg(long, value_name = "OUT")]
    pub out: PathBuf,
    /// Token positions counted: all, prompt or generated.
    #[arg(long, default_value = "all")]
    pub positions: String,
    /// Rows shown on the terminal, in the Markdown table and in the bar chart.
    #[arg(long, default_value_t = 20, value_parser = bounded::<1, 1000000>)]
    pub top: usize,
}

/// The statistics of `moescope analyze`.
#[derive(Debug, Subcommand)]
pub enum Stat {
    /// Activation count, rate and mean weight per expert; per-layer entropy and imbalance;
    /// co-activation of expert pairs.
    Freq(StatCommon),
    /// nPMI between a token event and each expert.
    Npmi {
        #[command(flatten)]
        common: StatCommon,
        /// Event: the token is one of these (comma-separated), e.g. "<think>,</think>".
        #[arg(long, conflicts_with_all = ["label", "span"])]
        tokens: Option<String>,
        /// Event: the token's sequence has this label.
        #[arg(long, conflicts_with = "span")]
        label: Option<String>,
        /// Event: the token lies in a span OPEN,CLOSE (both included), e.g. "<think>,</think>".
        #[arg(long)]
        span: Option<String>,
        /// Drop (layer, expert) pairs seen together fewer times than this.
        #[arg(long, default_value_t = 5)]
        min_count: u64,
    },
    /// Risk difference p1 − p2 between two labelled sets, ranked by |Δ|.
    Rd(SetsArgs),
    /// Behaviour set vs control set, ranked by a two-proportion z-test.
    Contrast(SetsArgs),
    /// Local routing consistency per layer (segment routing best performance, cache hit rate).
    Consistency {
        #[command(flatten)]
        common: StatCommon,
        /// Segment length in tokens.
        #[arg(long, default_value_t = 16, value_parser = bounded::<1, 65536>)]
        segment: usize,
        /// Cache size in experts.
        #[arg(long, default_value_t = 4, value_parser = bounded::<1, 65536>)]
        cache: usize,
    },
    /// Which experts a target continuation owes its log-probability to: the drop when each
    /// expert is masked (ablation) beside gate × gradient (one backward pass), and their
    /// rank correlation. Runs the model.
    Attribute(AttributeArgs),
    /// Experts whose down-projection output peaks far above their layer's median.
    SuperExperts {
        #[command(flatten)]
        common: StatCommon,
        /// Flag an expert whose peak reaches this many times the layer's median peak.
        #[arg(long, value_parser = finite::<f64>, default_value_t = 10.0)]
        factor: f64,
    },
}

/// `moescope analyze attribute`.
#[derive(Debug, Args)]
pub struct AttributeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// A JSONL prompt set (see datasets/README.md).
    #[arg(long, value_name = "FILE")]
    pub prompts: PathBuf,
    /// Only the prompts with this label.
    #[arg(long)]
    pub label: Option<String>,
    /// The continuation scored after every prompt (default: each prompt's `target`).
    #[arg(long)]
    pub target: Option<String>,
    /// Output path without extension: writes OUT.parquet, OUT.csv, OUT.md, SVG plots, the
    /// first-order ranking (OUT-first-order.*) and OUT-summary.* with the rank correlation.
    #[arg(long, value_name = "OUT")]
    pub out: PathBuf,
    /// Rows shown on the terminal, in the Markdown table and in the bar charts.
    #[arg(long, default_value_t = 20, value_parser = bounded::<1, 1000000>)]
    pub top: usize,
    /// Prompts scored together.
    #[arg(long, default_value_t = 8, value_parser = bounded::<1, 1024>)]
    pub batch: usize,
}

/// Two labelled sets to compare.
#[derive(Debug, Args)]
pub struct SetsArgs {
    #[command(flatten)]
    pub common: StatCommon,
    /// Label of the behaviour set (e.g. refusal).
    #[arg(long)]
    pub behaviour: String,
    /// Label of the control set (e.g. comply).
    #[arg(long)]
    pub control: String,
}

/// `moescope eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// A JSONL prompt set (see datasets/README.md).
    #[arg(long, value_name = "FILE")]
    pub prompts: PathBuf,
    /// A steering profile to compare against the unsteered model.
    #[arg(long, value_name = "FILE")]
    pub steer: Option<PathBuf>,
    /// Experts to mask, LAYER:EXPERT (repeatable), added to the profile.
    #[arg(long = "mask", value_name = "LAYER:EXPERT")]
    pub mask: Vec<String>,
    /// `rules:FILE` (share of generations matching each rule of a TOML rules file),
    /// `target-logprob` (log-probability of each prompt's `target`), `perplexity` (of the
    /// prompts' own text), `answer` (share of generations containing each prompt's `target` as a
    /// whole word). Repeatable.
    #[arg(long = "metric", value_name = "METRIC", required = true)]
    pub metrics: Vec<String>,
    /// Tokens generated per prompt for rule metrics (greedy).
    #[arg(long, default_value_t = 48, value_parser = bounded::<0, 65536>)]
    pub max_tokens: usize,
    /// Prompts generated together.
    #[arg(long, default_value_t = 8, value_parser = bounded::<1, 1024>)]
    pub batch: usize,
    /// Bootstrap resamples.
    #[arg(long, default_value_t = 1000, value_parser = bounded::<1, 100000>)]
    pub resamples: usize,
    /// Confidence level of the intervals.
    #[arg(long, value_parser = finite::<f64>, default_value_t = 0.95)]
    pub level: f64,
    /// Seed of the bootstrap and of the random expert sets.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also measure this many random-experts controls (the steering's edits applied to as many
    /// random experts of the same layers), pooled into one `random` row per metric.
    #[arg(long, default_value_t = 0, value_parser = bounded::<0, 100>)]
    pub random_draws: usize,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Which checkpoint to load and where to run it.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// A Hugging Face checkpoint folder (config.json, *.safetensors, tokenizer.json).
    /// Defaults to the embedded model in assets/.
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Device to run on (`cpu`; `cuda:N` in builds with the cuda feature).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Compute dtype: `f32`, `bf16`, `f16`, or `auto` (the dtype the checkpoint stores its
    /// weights in, as transformers loads it).
    #[arg(long, default_value = "auto")]
    pub dtype: String,
    /// A keyword argument for the chat template, written NAME=VALUE (repeatable), e.g.
    /// `enable_thinking=false` or `reasoning_effort=high`; VALUE is read as JSON when it is
    /// JSON and as text otherwise. A prompt set's `template_args` override it.
    #[arg(long = "template-arg", value_name = "NAME=VALUE", value_parser = template_arg)]
    pub template_args: Vec<(String, serde_json::Value)>,
}

fn template_arg(text: &str) -> Result<(String, serde_json::Value), String> {
    moescope_engine::chat::parse_template_arg(text)
}

/// `moescope gui`.
#[derive(Debug, Args)]
pub struct GuiArgs {
    /// The model to open.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Text for the prompt box.
    #[arg(long)]
    pub prompt: Option<String>,
    /// A ranking to load (Parquet from `moescope analyze` or an experiment's ranking.parquet).
    #[arg(long, value_name = "FILE")]
    pub ranking: Option<PathBuf>,
    /// A steering profile to load.
    #[arg(long, value_name = "FILE")]
    pub steer: Option<PathBuf>,
    /// A JSONL prompt set to load (to pick prompts from, record, evaluate or attribute).
    #[arg(long, value_name = "FILE")]
    pub prompts: Option<PathBuf>,
    /// A records folder to open (from `moescope record`).
    #[arg(long, value_name = "DIR")]
    pub records: Option<PathBuf>,
    /// Generate as soon as the model is loaded.
    #[arg(long)]
    pub run: bool,
}

/// `moescope generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Raw text to continue (no chat template).
    #[arg(long, conflicts_with = "chat", required_unless_present = "chat")]
    pub prompt: Option<String>,
    /// A user message, rendered through the checkpoint's chat template. Repeat it with
    /// --reply for a conversation: `--chat A --reply B --chat C` answers C after A and B.
    #[arg(long, value_name = "MESSAGE")]
    pub chat: Vec<String>,
    /// The assistant's reply to an earlier --chat message (repeatable; one fewer than --chat).
    #[arg(long, value_name = "TEXT", requires = "chat")]
    pub reply: Vec<String>,
    /// An optional system message for --chat.
    #[arg(long, requires = "chat")]
    pub system: Option<String>,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 32, value_parser = bounded::<0, 65536>)]
    pub max_tokens: usize,
    /// Sampling temperature; 0 is greedy and reproducible.
    #[arg(long, value_parser = finite::<f64>, default_value_t = 0.0)]
    pub temperature: f64,
    /// Nucleus sampling threshold.
    #[arg(long, value_parser = finite::<f64>, default_value_t = 1.0)]
    pub top_p: f64,
    /// Sampler seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stop once the output contains this text (repeatable).
    #[arg(long = "stop", value_name = "TEXT")]
    pub stop: Vec<String>,
    /// Never let the router choose EXPERT at LAYER (repeatable), written LAYER:EXPERT.
    #[arg(long = "mask", value_name = "LAYER:EXPERT")]
    pub mask: Vec<String>,
    /// A steering profile (TOML); with it or --mask, baseline and steered outputs are printed
    /// together.
    #[arg(long, value_name = "FILE")]
    pub steer: Option<PathBuf>,
    /// Self-contrast decoding against the same model routed to K experts per token at every
    /// MoE layer (e.g. 1).
    #[arg(long, value_name = "K", value_parser = bounded::<1, 1024>)]
    pub contrast_top_k: Option<usize>,
    /// Self-contrast β: how strongly the weak routing's log-probabilities are subtracted.
    #[arg(long, value_parser = finite::<f32>, default_value_t = 0.5, requires = "contrast_top_k")]
    pub contrast_beta: f32,
    /// Self-contrast α: tokens below α × the best strong probability are never chosen.
    #[arg(long, value_parser = finite::<f32>, default_value_t = 0.1, requires = "contrast_top_k")]
    pub contrast_alpha: f32,
    /// After the text, print the experts each generated token was routed to at every MoE layer.
    #[arg(long)]
    pub show_routing: bool,
}

/// `moescope bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt length for the prefill measurement.
    #[arg(long, default_value_t = 128, value_parser = bounded::<1, 1048576>)]
    pub prompt_len: usize,
    /// Tokens decoded for the decode measurement.
    #[arg(long, default_value_t = 32, value_parser = bounded::<1, 65536>)]
    pub decode_tokens: usize,
    /// Sequences per batch.
    #[arg(long, default_value_t = 1, value_parser = bounded::<1, 1024>)]
    pub batch: usize,
    /// Timed repetitions (the median is reported) after one warm-up.
    #[arg(long, default_value_t = 5, value_parser = bounded::<1, 1000>)]
    pub repeats: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Parses a whole number in `MIN..=MAX`: size options are bounded so that no value can ask
/// for more memory than a machine holds or overflow a size computation.
fn bounded<const MIN: usize, const MAX: usize>(text: &str) -> Result<usize, String> {
    let v: usize = text
        .trim()
        .parse()
        .map_err(|_| format!("expected a whole number from {MIN} to {MAX}"))?;
    if (MIN..=MAX).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is out of range: use {MIN} to {MAX}"))
    }
}

/// Parses a finite number (not NaN or infinite), which every real-valued option needs.
fn finite<T: std::str::FromStr + Into<f64> + Copy>(text: &str) -> Result<T, String> {
    let v: T = text
        .trim()
        .parse()
        .map_err(|_| "expected a number, e.g. 0.5".to_string())?;
    if v.into().is_finite() {
        Ok(v)
    } else {
        Err(format!("{text} is not a finite number"))
    }
}
