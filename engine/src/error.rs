//! The engine's error type: every variant names the file, tensor or field at fault and, where
//! there is one, the fix.

use std::path::PathBuf;

/// Errors from loading checkpoints, running the model and steering it.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A file the checkpoint needs is not in the folder.
    #[error("{path}: file not found ({what}); a Hugging Face checkpoint folder needs config.json, tokenizer.json and model.safetensors (or model.safetensors.index.json with its shards)")]
    MissingFile {
        /// The path that was looked for.
        path: PathBuf,
        /// What the file is for.
        what: &'static str,
    },
    /// A file exists but could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A JSON file is malformed or a field has the wrong type.
    #[error("{path}: invalid JSON: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// What serde reported (includes line and column).
        message: String,
    },
    /// `config.json` names an architecture the engine does not implement.
    #[error("{path}: model_type \"{model_type}\" is not supported; supported: {supported}")]
    UnknownArchitecture {
        /// The config file.
        path: PathBuf,
        /// The value found.
        model_type: String,
        /// The values the engine accepts.
        supported: String,
    },
    /// A config field is missing, out of range or set to an option the engine lacks.
    #[error("{path}: field `{field}`: {message}")]
    BadConfig {
        /// The config file.
        path: PathBuf,
        /// The offending field.
        field: String,
        /// What is wrong and what was expected.
        message: String,
    },
    /// A safetensors file has a corrupt or truncated header or data section.
    #[error("{path}: not a valid safetensors file: {message}")]
    CorruptSafetensors {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// A tensor the architecture needs is absent from every shard.
    #[error("tensor `{name}` not found in {path}; the checkpoint does not match its config.json (wrong model_type or a truncated export)")]
    MissingTensor {
        /// The tensor name.
        name: String,
        /// The file (or index) searched.
        path: PathBuf,
    },
    /// A tensor has the wrong shape for the config.
    #[error("{path}: tensor `{name}` has shape {found:?}, expected {expected:?} from config.json")]
    WrongShape {
        /// The file holding the tensor.
        path: PathBuf,
        /// The tensor name.
        name: String,
        /// The shape in the file.
        found: Vec<usize>,
        /// The shape the config implies.
        expected: Vec<usize>,
    },
    /// A tensor has a dtype the engine cannot load.
    #[error(
        "{path}: tensor `{name}` has dtype {dtype}; supported weight dtypes are F32, BF16 and F16"
    )]
    WrongDtype {
        /// The file holding the tensor.
        path: PathBuf,
        /// The tensor name.
        name: String,
        /// The dtype found.
        dtype: String,
    },
    /// The tokenizer could not be loaded or failed on an input.
    #[error("{path}: tokenizer error: {message}")]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The chat template failed to parse or render.
    #[error("{path}: chat template error: {message}")]
    ChatTemplate {
        /// The file that holds the template.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// A request does not fit the model (too long, empty, bad ids).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The model computed NaN or infinite values: broken weights or config, or overflow in
    /// the compute dtype. Reported instead of output built on them.
    #[error("the model produced non-finite values ({what}); the checkpoint may hold NaN or infinite weights, or its values overflow in this dtype (try --dtype f32)")]
    NonFinite {
        /// Where they appeared.
        what: String,
    },
    /// A routing intervention names a layer or expert the model lacks, or cannot be honoured.
    #[error("invalid routing policy: {0}")]
    InvalidPolicy(String),
    /// A steering profile is malformed or asks for something the model can't do.
    #[error("{path}{}: {message}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Profile {
        /// The profile file.
        path: PathBuf,
        /// The 1-based line of the offending entry, where known.
        line: Option<usize>,
        /// What is wrong and what was expected.
        message: String,
    },
    /// A line of a prompt set is malformed.
    #[error("{path} line {line}: {message}")]
    Dataset {
        /// The prompt-set file.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// What is wrong and what was expected.
        message: String,
    },
    /// A hook point name does not parse.
    #[error("invalid hook point `{name}`: {message}")]
    InvalidHook {
        /// The name given.
        name: String,
        /// What was expected.
        message: String,
    },
    /// Loading the weights would need more memory than the machine has available.
    #[error("{path}: loading the weights as {dtype} needs {needed_gb:.1} GB but {available_gb:.1} GB of memory is available; {hint}")]
    OutOfMemory {
        /// The checkpoint folder.
        path: PathBuf,
        /// The dtype they would be held in.
        dtype: String,
        /// Bytes the loaded weights would take, in GB.
        needed_gb: f64,
        /// Memory available now (`MemAvailable`), in GB.
        available_gb: f64,
        /// What to do instead.
        hint: String,
    },
    /// A tensor operation failed inside the compute backend.
    #[error("tensor backend: {0}")]
    Backend(#[from] candle_core::Error),
}

/// Result alias for the engine.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
