//! What the commands share: opening a checkpoint (`--model`, `--device`, `--dtype`,
//! `--template-arg`), the steering policy of `--steer` and `--mask`, and what a signal does to a
//! running command. Nothing here knows any one command.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use indicatif::{ProgressBar, ProgressStyle};
use moescope_engine::{Checkpoint, RoutingPolicy, SteeringProfile};

use crate::cli::ModelArgs;

/// The model used when `--model` is not given: the one shipped in `assets/`.
const DEFAULT_MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/default-model");

/// The checkpoint folder a command should use.
pub fn model_dir(args: &ModelArgs) -> Result<PathBuf> {
    if let Some(dir) = &args.model {
        return Ok(dir.clone());
    }
    let dir = std::env::var_os("MOESCOPE_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_MODEL));
    if !dir.is_dir() {
        bail!(
            "no --model given and the default model folder {} is missing; pass --model DIR with a Hugging Face checkpoint folder",
            dir.display()
        );
    }
    Ok(dir)
}

/// Parses `--device`: `cpu`, or `cuda:N` (`cuda` = `cuda:0`) in builds with the cuda feature.
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
            anyhow::anyhow!("--device {name}: the GPU number after `cuda:` must be 0, 1, …")
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
        anyhow::anyhow!(
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

/// Parses `--dtype`: `None` for `auto`, the dtype the checkpoint stores its weights in.
pub fn dtype(name: &str) -> Result<Option<DType>> {
    Ok(match name {
        "auto" => None,
        "bf16" => Some(DType::BF16),
        "f32" => Some(DType::F32),
        "f16" => Some(DType::F16),
        other => bail!("--dtype {other}: unknown dtype; use auto, f32, bf16 or f16"),
    })
}

/// The compute dtype `--dtype` asks for on the checkpoint in `dir` (`auto`: its stored dtype,
/// as transformers loads it; f32 where nothing is stored as a float).
pub fn resolve_dtype(name: &str, dir: &Path) -> Result<DType> {
    match dtype(name)? {
        Some(d) => Ok(d),
        None => Ok(moescope_engine::checkpoint::stored_dtype(dir)
            .with_context(|| format!("cannot read the checkpoint in {}", dir.display()))?
            .unwrap_or(DType::F32)),
    }
}

/// A flag that Ctrl-C, SIGTERM or SIGHUP sets, so long commands can stop after the current
/// step and leave complete files. The handler is installed once per process; when it cannot
/// be (another handler is in place) the signal simply ends the process.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    Arc::clone(INTERRUPTED.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let setter = Arc::clone(&flag);
        let _ = ctrlc::set_handler(move || {
            setter.store(true, Ordering::SeqCst);
            if END_AT_ONCE.load(Ordering::SeqCst) {
                // Waits for an output set being written to land, then ends the process.
                let _done = WRITE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
                std::process::exit(crate::EXIT_INTERRUPTED.into());
            }
        });
        flag
    }))
}

/// For commands that compute and then write their outputs (`analyze`, `eval`): a signal
/// ends the process at once with status 130, leaving every old output as it was, except while
/// [`writing`] runs, when the files are completed first.
pub fn end_at_once_on_interrupt() {
    END_AT_ONCE.store(true, Ordering::SeqCst);
    let _ = interrupt_flag();
}

/// Runs `write` with the immediate end of [`end_at_once_on_interrupt`] held off, so an output
/// set is never left half renamed.
pub fn writing<T>(write: impl FnOnce() -> T) -> T {
    let _held = WRITE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    write()
}

/// Whether a signal ends the process at once (see [`end_at_once_on_interrupt`]).
static END_AT_ONCE: AtomicBool = AtomicBool::new(false);

/// Held while [`writing`] runs; the signal handler takes it before ending the process.
static WRITE_LOCK: Mutex<()> = Mutex::new(());

/// Set once a command installs its interrupt handler ([`interrupt_flag`]).
static INTERRUPTED: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Whether a signal stopped the command early (its output is complete but partial), so the
/// process exits 130 as an interrupted Unix tool does and `record && analyze` stops.
pub fn was_interrupted() -> bool {
    INTERRUPTED
        .get()
        .is_some_and(|flag| flag.load(Ordering::SeqCst))
}

/// Loads a checkpoint with a spinner.
pub fn load(args: &ModelArgs) -> Result<Checkpoint> {
    let dir = model_dir(args)?;
    let device = device(&args.device)?;
    let dtype = resolve_dtype(&args.dtype, &dir)?;
    let spinner = ProgressBar::new_spinner().with_message(format!("loading {}", dir.display()));
    spinner.set_style(ProgressStyle::with_template("{spinner} {msg} ({elapsed})")?);
    spinner.enable_steady_tick(Duration::from_millis(120));
    let ck = Checkpoint::open_as(&dir, &device, dtype);
    spinner.finish_and_clear();
    let mut ck = ck.with_context(|| format!("cannot load the checkpoint in {}", dir.display()))?;
    ck.codec
        .set_template_args(args.template_args.iter().cloned().collect());
    Ok(ck)
}

/// The policy from `--steer` and `--mask`, checked against the model.
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

/// Adds `--mask LAYER:EXPERT` values to a policy.
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
