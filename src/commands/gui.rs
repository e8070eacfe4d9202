//! `moescope gui`: the desktop app on the chosen checkpoint.

use anyhow::Result;
use moescope_workbench::open::{device, dtype};

use crate::cli::GuiArgs;
use crate::terminal::model_spec;

/// Opens the desktop app on the chosen checkpoint, device and dtype (loaded on the app's
/// worker thread; `--dtype auto` is the checkpoint's stored dtype, as in every command).
pub fn run(args: &GuiArgs) -> Result<()> {
    // Bad names fail here, before a window opens.
    device(&args.model.device)?;
    dtype(&args.model.dtype)?;
    let mut spec = model_spec(&args.model);
    let dir = spec.model_dir()?;
    spec.dir = Some(dir.clone());
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
        moescope_gui::run(spec, start)?;
        Ok(())
    }
    #[cfg(not(feature = "gui"))]
    anyhow::bail!(
        "this moescope was built without the desktop app (--no-default-features); build it with \
         `cargo build --release --features gui` to open {}",
        dir.display()
    )
}
