//! `moescope gui`: the desktop app on the chosen checkpoint.

use anyhow::{bail, Result};
use candle_core::DType;
use moescope_workbench::open::{device, dtype};

use crate::cli::GuiArgs;
use crate::terminal::model_spec;

/// Opens the desktop app on the chosen checkpoint (loaded on the app's worker thread).
pub fn run(args: &GuiArgs) -> Result<()> {
    if !device(&args.model.device)?.is_cpu()
        || !matches!(dtype(&args.model.dtype)?, None | Some(DType::F32))
    {
        bail!("the desktop app runs its model on the cpu in f32; leave out --device and --dtype");
    }
    let dir = model_spec(&args.model).model_dir()?;
    #[cfg(feature = "gui")]
    {
        let start = moescope_gui::StartOptions {
            prompt: args.prompt.clone(),
            ranking: args.ranking.clone(),
            steer: args.steer.clone(),
            prompts: args.prompts.clone(),
            records: args.records.clone(),
            run: args.run,
        };
        moescope_gui::run(dir, start)?;
        Ok(())
    }
    #[cfg(not(feature = "gui"))]
    bail!(
        "this moescope was built without the desktop app (--no-default-features); build it with \
         `cargo build --release --features gui` to open {}",
        dir.display()
    )
}
