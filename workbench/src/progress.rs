//! How long work reports its progress and learns that it should stop: a small trait that the
//! CLI implements with terminal bars and the desktop app with its own widgets, and the
//! engine's [`CancelFlag`] that both raise (Ctrl-C, a cancel button).

pub use moescope_engine::CancelFlag;

/// Receives the progress of a long operation: stages of counted steps, one at a time.
pub trait Progress {
    /// A new stage begins (ending the previous one): `what` it does, `total` steps of `unit`
    /// (`None`: unknown, shown as a spinner).
    fn begin(&self, what: &str, total: Option<u64>, unit: &str);
    /// `steps` more steps of the current stage are done.
    fn advance(&self, steps: u64);
    /// A short note on the current step (e.g. which condition runs).
    fn note(&self, text: &str);
    /// The current stage ended.
    fn end(&self);
}

/// Progress that nobody watches.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {
    fn begin(&self, _: &str, _: Option<u64>, _: &str) {}
    fn advance(&self, _: u64) {}
    fn note(&self, _: &str) {}
    fn end(&self) {}
}

/// Runs `f` as one stage of unknown length named `what`.
pub fn stage<T>(progress: &dyn Progress, what: &str, f: impl FnOnce() -> T) -> T {
    progress.begin(what, None, "");
    let out = f();
    progress.end();
    out
}
