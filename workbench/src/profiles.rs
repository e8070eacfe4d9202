//! Saving steering profiles: the engine turns a profile into TOML text, the workbench writes
//! it (under a temporary name renamed into place, so a failed write never leaves half a
//! profile or replaces a good one).

use std::path::Path;

use moescope_analysis::output::write_text;
use moescope_engine::SteeringProfile;

use crate::error::{Result, ResultExt};

/// Writes `profile` to `path` as a profile file.
pub fn save_profile(profile: &SteeringProfile, path: &Path) -> Result<()> {
    write_text(path, &profile.to_toml()?).with_context(|| format!("saving {}", path.display()))
}
