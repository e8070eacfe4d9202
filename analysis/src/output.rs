//! Output files written as one set: every file goes to a hidden temporary name beside its
//! final place, and only when all of them are complete are they renamed into place. A write
//! that fails part way (a full disk, a missing permission) removes the temporary files and
//! leaves every old output as it was, so a reader never sees new tables beside old plots.

use std::path::{Path, PathBuf};

use crate::error::{AnalysisError, Result};

/// Files staged under temporary names until [`OutputSet::commit`] renames them all into place;
/// dropping an uncommitted set removes what it staged.
#[derive(Debug, Default)]
pub struct OutputSet {
    /// `(temporary, final)` paths of the files written so far.
    staged: Vec<(PathBuf, PathBuf)>,
}

impl OutputSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes one file of the set through `write(temporary_path)`; `path` is where it lands
    /// on commit. A failed write removes its temporary file (and the set's, when dropped).
    pub fn write(&mut self, path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "out".into());
        let temp = path.with_file_name(format!(".{name}.partial"));
        // Created fresh: a stale temporary file from an earlier killed run is replaced.
        match write(&temp) {
            Ok(()) => {
                self.staged.push((temp, path.to_path_buf()));
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(&temp);
                Err(e)
            }
        }
    }

    /// Writes one text file of the set.
    pub fn text(&mut self, path: &Path, text: &str) -> Result<()> {
        self.write(path, |temp| {
            std::fs::write(temp, text).map_err(|e| AnalysisError::Write {
                path: path.to_path_buf(),
                error: e,
            })
        })
    }

    /// Renames every staged file into place (renames take no space, so a full disk cannot
    /// stop them half way); returns the final paths in the order they were written.
    pub fn commit(mut self) -> Result<Vec<PathBuf>> {
        let staged = std::mem::take(&mut self.staged);
        let mut done = Vec::with_capacity(staged.len());
        for (i, (temp, path)) in staged.iter().enumerate() {
            if let Err(e) = std::fs::rename(temp, path) {
                for (t, _) in &staged[i..] {
                    let _ = std::fs::remove_file(t);
                }
                return Err(AnalysisError::Write {
                    path: path.clone(),
                    error: e,
                });
            }
            done.push(path.clone());
        }
        Ok(done)
    }
}

impl Drop for OutputSet {
    fn drop(&mut self) {
        for (temp, _) in &self.staged {
            let _ = std::fs::remove_file(temp);
        }
    }
}

/// Writes one text file through a temporary name.
pub fn write_text(path: &Path, text: &str) -> Result<()> {
    let mut set = OutputSet::new();
    set.text(path, text)?;
    set.commit().map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("moescope-output-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_failed_file_leaves_every_old_file_and_no_temporary_one() {
        let dir = scratch("failed");
        std::fs::write(dir.join("a.csv"), "old a").unwrap();
        std::fs::write(dir.join("b.md"), "old b").unwrap();
        let mut set = OutputSet::new();
        set.text(&dir.join("a.csv"), "new a").unwrap();
        let err = set.write(&dir.join("b.md"), |temp| {
            std::fs::write(temp, "half").unwrap();
            Err(AnalysisError::Write {
                path: temp.to_path_buf(),
                error: std::io::Error::other("No space left on device"),
            })
        });
        assert!(err.is_err());
        drop(set);
        assert_eq!(std::fs::read_to_string(dir.join("a.csv")).unwrap(), "old a");
        assert_eq!(std::fs::read_to_string(dir.join("b.md")).unwrap(), "old b");
        assert_eq!(listing(&dir), ["a.csv", "b.md"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn commit_replaces_every_file_and_replaces_stale_temporaries() {
        let dir = scratch("commit");
        std::fs::write(dir.join("a.csv"), "old a").unwrap();
        std::fs::write(dir.join(".a.csv.partial"), "stale from a killed run").unwrap();
        let mut set = OutputSet::new();
        set.text(&dir.join("a.csv"), "new a").unwrap();
        set.text(&dir.join("b.md"), "new b").unwrap();
        assert_eq!(listing(&dir).len(), 3, "nothing renamed before commit");
        let done = set.commit().unwrap();
        assert_eq!(done, [dir.join("a.csv"), dir.join("b.md")]);
        assert_eq!(std::fs::read_to_string(dir.join("a.csv")).unwrap(), "new a");
        assert_eq!(listing(&dir), ["a.csv", "b.md"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
