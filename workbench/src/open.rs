//! Opening a model for a run: the checkpoint folder (or the embedded default model), the
//! device and compute dtype by name, the chat template's extra arguments, and the steering
//! policy of a profile file plus `LAYER:EXPERT` masks, checked against the model.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use moescope_engine::{Checkpoint, RoutingPolicy, SteeringProfile};

use crate::error::{bail, input_error, Result, ResultExt};
use crate::progress::{stage, Progress};

/// The model used when no folder is given: the one shipped in the repository's `assets/`.
fn default_model() -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    crate_dir
        .parent()
        .unwrap_or(crate_dir)
        .join("assets")
        .join("default-model")
}

/// What a run loads: a checkpoint on a device in a compute dtype, as the CLI's `--model`,
/// `--device`, `--dtype` and `--template-arg` give it.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// Checkpoint folder; `None`: `$MOESCOPE_MODEL`, else the embedded default model.
    pub dir: Option<PathBuf>,
    /// `cpu` or `cuda:N`.
    pub device: String,
    /// `auto` (the checkpoint's stored dtype), `f32`, `bf16` or `f16`.
    pub dtype: String,
    /// Extra variables for the chat template.
    pub template_args: Vec<(String, serde_json::Value)>,
}

impl Default for ModelSpec {
    fn default() -> Self {
        Self {
            dir: None,
            device: "cpu".into(),
            dtype: "auto".into(),
            template_args: Vec::new(),
        }
    }
}

impl ModelSpec {
    /// The checkpoint folder to use.
    pub fn model_dir(&self) -> Result<PathBuf> {
        if let Some(dir) = &self.dir {
            return Ok(dir.clone());
        }
        let dir = std::env::var_os("MOESCOPE_MODEL")
            .map(PathBuf::from)
            .unwrap_or_else(default_model);
        if !dir.is_dir() {
            bail!(
                "no --model given and the default model folder {} is missing; pass --model DIR with a Hugging Face checkpoint folder",
                dir.display()
            );
        }
        Ok(dir)
    }

    /// Loads the checkpoint, reporting a stage of unknown length while it loads.
    pub fn open(&self, progress: &dyn Progress) -> Result<Checkpoint> {
        let dir = self.model_dir()?;
        let device = device(&self.device)?;
        let dtype = resolve_dtype(&self.dtype, &dir)?;
        let ck = stage(progress, &format!("loading {}", dir.display()), || {
            Checkpoint::open_as(&dir, &device, dtype)
        });
        let mut ck =
            ck.with_context(|| format!("cannot load the checkpoint in {}", dir.display()))?;
        ck.codec
            .set_template_args(self.template_args.iter().cloned().collect());
        Ok(ck)
    }
}

/// Parses a device name: `cpu`, or `cuda:N` (`cuda` = `cuda:0`) in builds with the cuda feature.
pub fn device(name: &str) -> Result<Device> {
    let Some(ordinal) = name.strip_prefix("cuda") else {
        return match name {
            "cpu" => Ok(Device::Cpu),
            other => bail!("--device {other}: unknown device; use cpu or cuda:N"),
        };
    };
    let ordinal = match ordinal.strip_prefix(':') {
        None if ordinal.is_empty() => 0,
        Some(n) => n.parse::<usize>().map_err(|_| {
            input_error!("--device {name}: the GPU number after `cuda:` must be 0, 1, …")
        })?,
        None => bail!("--device {name}: unknown device; use cpu or cuda:N"),
    };
    cuda_device(name, ordinal)
}

#[cfg(feature = "cuda")]
fn cuda_device(name: &str, ordinal: usize) -> Result<Device> {
    // candle's error carries a backtrace in its text; its first line says what failed.
    Device::new_cuda(ordinal).map_err(|e| {
        let cause = e.to_string();
        input_error!(
            "--device {name}: cannot open GPU {ordinal}: {}; check that the NVIDIA driver is loaded and `nvidia-smi` lists the GPU",
            cause.lines().next().unwrap_or_default()
        )
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(name: &str, _ordinal: usize) -> Result<Device> {
    bail!(
        "--device {name}: this build has no CUDA support (it runs on cpu); build with `--features cuda` (tests/gpu/build-cuda.sh)"
    )
}

/// Parses a dtype name: `None` for `auto`, the dtype the checkpoint stores its weights in.
pub fn dtype(name: &str) -> Result<Option<DType>> {
    Ok(match name {
        "auto" => None,
        "bf16" => Some(DType::BF16),
        "f32" => Some(DType::F32),
        "f16" => Some(DType::F16),
        other => bail!("--dtype {other}: unknown dtype; use auto, f32, bf16 or f16"),
    })
}

/// `bf16`, `f32`, … as `--dtype` spells a dtype (the inverse of [`dtype`] for the dtypes it
/// names).
pub fn dtype_name(d: DType) -> String {
    format!("{d:?}").to_lowercase()
}

/// The compute dtype `name` asks for on the checkpoint in `dir` (`auto`: its stored dtype,
/// as transformers loads it; f32 where nothing is stored as a float).
pub fn resolve_dtype(name: &str, dir: &Path) -> Result<DType> {
    match dtype(name)? {
        Some(d) => Ok(d),
        None => Ok(moescope_engine::checkpoint::stored_dtype(dir)
            .with_context(|| format!("cannot read the checkpoint in {}", dir.display()))?
            .unwrap_or(DType::F32)),
    }
}

/// The policy of a steering profile file plus `LAYER:EXPERT` masks, checked against the model.
pub fn steering_policy(
    ck: &Checkpoint,
    steer: Option<&Path>,
    masks: &[String],
) -> Result<RoutingPolicy> {
    let c = ck.model.config();
    let mut policy = match steer {
        Some(path) => SteeringProfile::load(path, c)?.1,
        None => RoutingPolicy::new(),
    };
    add_masks(&mut policy, masks)?;
    policy
        .validate(&c.moe_layers(), c.moe.num_experts, c.moe.top_k)
        .context("--mask")?;
    Ok(policy)
}

/// The interventions in effect as text (stored with a recording): the profile's text plus a
/// comment line per mask.
pub fn interventions_text(steer: Option<&Path>, masks: &[String]) -> Result<String> {
    let mut text = match steer {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
        }
        None => String::new(),
    };
    for m in masks {
        text.push_str(&format!("# --mask {m}\n"));
    }
    Ok(text)
}

/// Adds `LAYER:EXPERT` masks to a policy.
fn add_masks(policy: &mut RoutingPolicy, masks: &[String]) -> Result<()> {
    for m in masks {
        let parsed = m
            .split_once(':')
            .and_then(|(l, e)| Some((l.trim().parse().ok()?, e.trim().parse().ok()?)));
        let Some((layer, expert)) = parsed else {
            bail!("--mask {m}: expected LAYER:EXPERT with two non-negative integers, e.g. --mask 3:17");
        };
        policy.mask(layer, expert);
    }
    Ok(())
}
