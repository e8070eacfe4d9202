//! A prompt set read from its JSONL file and tokenised once, for the commands that score or
//! generate from every prompt.

use std::path::{Path, PathBuf};

use moescope_engine::{load_prompt_set, PromptRecord, TextCodec};

use crate::error::{bail, Result, ResultExt};

/// The prompts of a JSONL file with their token ids (chat templates applied as each asks).
#[derive(Debug, Clone)]
pub struct PromptSet {
    /// The file they came from (named in messages).
    pub path: PathBuf,
    /// The records, in file order.
    pub records: Vec<PromptRecord>,
    /// The token ids of each record's rendered prompt.
    pub texts: Vec<Vec<u32>>,
}

impl PromptSet {
    /// Reads and tokenises `path`; a set without prompts is an error.
    pub fn load(path: &Path, codec: &TextCodec) -> Result<Self> {
        let records = load_prompt_set(path)?;
        if records.is_empty() {
            bail!("{}: no prompts", path.display());
        }
        let texts = records
            .iter()
            .map(|r| r.token_ids(codec))
            .collect::<std::result::Result<Vec<_>, _>>()
            .with_context(|| format!("rendering {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            records,
            texts,
        })
    }

    /// Number of prompts.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the set holds no prompt (never true for a loaded set).
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// The prompts of a set, only those with `label` when one is given; an error when none is left.
pub fn prompts_with_label(path: &Path, label: Option<&str>) -> Result<Vec<PromptRecord>> {
    let records: Vec<PromptRecord> = load_prompt_set(path)?
        .into_iter()
        .filter(|r| label.is_none() || r.label.as_deref() == label)
        .collect();
    if records.is_empty() {
        bail!(
            "{}: no prompts{}",
            path.display(),
            label.map_or(String::new(), |l| format!(" with label `{l}`"))
        );
    }
    Ok(records)
}
