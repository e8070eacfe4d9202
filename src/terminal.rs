//! The terminal side of the workbench's progress reports: bars and spinners on stderr
//! (indicatif), and the lines that say which files a command wrote.

use std::cell::RefCell;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use moescope_engine::Checkpoint;
use moescope_workbench::{ModelSpec, Progress};

use crate::cli::ModelArgs;

/// [`Progress`] drawn as one bar (or spinner) at a time on stderr.
#[derive(Default)]
pub struct TerminalProgress {
    bar: RefCell<Option<ProgressBar>>,
}

impl Progress for TerminalProgress {
    fn begin(&self, what: &str, total: Option<u64>, unit: &str) {
        self.end();
        let bar = match total {
            None => {
                let bar = ProgressBar::new_spinner().with_message(what.to_string());
                bar.set_style(style("{spinner} {msg} ({elapsed})"));
                bar.enable_steady_tick(Duration::from_millis(120));
                bar
            }
            Some(n) => {
                let escape = |s: &str| s.replace('{', "{{").replace('}', "}}");
                let parts = [
                    escape(what),
                    "{bar:40} {pos}/{len}".into(),
                    escape(unit),
                    "({elapsed}, eta {eta}) {msg}".into(),
                ];
                let template: Vec<String> = parts.into_iter().filter(|p| !p.is_empty()).collect();
                let bar = ProgressBar::new(n);
                bar.set_style(style(&template.join(" ")));
                bar
            }
        };
        *self.bar.borrow_mut() = Some(bar);
    }

    fn advance(&self, steps: u64) {
        if let Some(bar) = &*self.bar.borrow() {
            bar.inc(steps);
        }
    }

    fn note(&self, text: &str) {
        if let Some(bar) = &*self.bar.borrow() {
            bar.set_message(text.to_string());
        }
    }

    fn end(&self) {
        if let Some(bar) = self.bar.borrow_mut().take() {
            bar.finish_and_clear();
        }
    }
}

/// A style from a template this file writes (a bad one falls back to the default bar).
fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// The workbench's model description of `--model`, `--device`, `--dtype`, `--template-arg`.
pub fn model_spec(args: &ModelArgs) -> ModelSpec {
    ModelSpec {
        dir: args.model.clone(),
        device: args.device.clone(),
        dtype: args.dtype.clone(),
        template_args: args.template_args.clone(),
    }
}

/// Loads the checkpoint of the model arguments behind a spinner.
pub fn open_model(args: &ModelArgs) -> Result<Checkpoint> {
    Ok(model_spec(args).open(&TerminalProgress::default())?)
}

/// Says which files a command wrote.
pub fn say_written(paths: &[PathBuf]) {
    for p in paths {
        eprintln!("wrote {}", p.display());
    }
}
