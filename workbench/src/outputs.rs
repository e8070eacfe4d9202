//! The process-wide lock held while an output set is staged and renamed into place, so a
//! front end that ends the process on a signal can wait for the files to land first and never
//! leaves a set half renamed.

use std::sync::{Mutex, MutexGuard};

/// Held while [`writing`] runs.
static WRITE_LOCK: Mutex<()> = Mutex::new(());

/// Runs `write` holding the output lock.
pub fn writing<T>(write: impl FnOnce() -> T) -> T {
    let _held = hold();
    write()
}

/// Waits until no output set is being written and keeps others from starting while the guard
/// lives (a signal handler takes it before it ends the process).
pub fn hold() -> MutexGuard<'static, ()> {
    WRITE_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
