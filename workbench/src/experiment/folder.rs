//! The report folder of a run: refused when it holds someone else's files, marked as a report,
//! and, when an old report is replaced, written beside it and swapped in only when done.

use std::path::{Path, PathBuf};

use moescope_analysis::output::write_text;

use crate::error::{bail, Result, ResultExt};

/// Where a run that replaces the report in `out` writes until it is done: a hidden folder beside
/// it.
pub fn staging_dir(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "report".into());
    out.with_file_name(format!(".{name}.partial-report"))
}

/// Puts the finished report in `staged` in the place of the old one in `out`.
pub fn replace_report(staged: &Path, out: &Path) -> Result<()> {
    let old = staged.with_extension("old-report");
    if old.join(REPORT_MARKER).is_file() {
        std::fs::remove_dir_all(&old)
            .with_context(|| format!("cannot remove {}", old.display()))?;
    }
    std::fs::rename(out, &old).with_context(|| format!("cannot move {} aside", out.display()))?;
    std::fs::rename(staged, out).with_context(|| {
        format!(
            "cannot move the new report {} to {}; the old one is in {}",
            staged.display(),
            out.display(),
            old.display()
        )
    })?;
    std::fs::remove_dir_all(&old)
        .with_context(|| format!("cannot remove the old report {}", old.display()))
}

/// The file that marks a folder as a report of `experiment run`; `--overwrite` replaces only
/// folders that hold it.
pub const REPORT_MARKER: &str = ".moescope-report";

/// Fails, touching nothing, when `out` holds files and may not be replaced: without
/// `--overwrite`, or when it is not a report folder this command wrote.
pub fn check_out(out: &Path, overwrite: bool) -> Result<()> {
    if !out.exists() {
        return Ok(());
    }
    if !out.is_dir() {
        bail!(
            "--out {}: a file is in the way; choose another --out",
            out.display()
        );
    }
    let non_empty = std::fs::read_dir(out)
        .with_context(|| format!("cannot read {}", out.display()))?
        .next()
        .is_some();
    if !non_empty {
        return Ok(());
    }
    if !overwrite {
        bail!(
            "{} already holds files; pass --overwrite to replace that report, or choose another --out",
            out.display()
        );
    }
    if !out.join(REPORT_MARKER).is_file() {
        bail!(
            "{} holds files but is not a report written by `moescope experiment run` (no {REPORT_MARKER} in it), \
             so --overwrite will not delete it; choose another --out or empty it yourself",
            out.display()
        );
    }
    Ok(())
}

/// Makes the empty folder a report is written into and marks it as a report: `out` itself
/// when [`check_out`] found it absent or empty, or the staging folder beside an old report
/// (a stale one from a killed run is replaced; a folder of someone else's is refused).
pub fn prepare_out(out: &Path) -> Result<()> {
    if out.join(REPORT_MARKER).is_file() {
        std::fs::remove_dir_all(out)
            .with_context(|| format!("cannot remove the stale report {}", out.display()))?;
    }
    check_out(out, false)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    write_text(
        &out.join(REPORT_MARKER),
        "A report of `moescope experiment run`; `--overwrite` may replace this folder.\n",
    )
    .with_context(|| format!("cannot write in {}", out.display()))
}
