//! What a signal does to a running command: Ctrl-C, SIGTERM or SIGHUP raise one cancel flag
//! that long commands poll (they stop after the current step and leave complete files), or,
//! for commands that compute first and write at the end, end the process at once with status
//! 130, after any output set being written has landed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use moescope_workbench::CancelFlag;

/// The exit status of a command stopped by SIGINT or SIGTERM (128 + SIGINT), as shells report.
pub const EXIT_INTERRUPTED: u8 = 130;

/// The flag a signal raises. The handler is installed once per process; when it cannot be
/// (another handler is in place) the signal simply ends the process.
pub fn interrupt_flag() -> CancelFlag {
    INTERRUPTED
        .get_or_init(|| {
            let flag = CancelFlag::new();
            let setter = flag.clone();
            let _ = ctrlc::set_handler(move || {
                setter.cancel();
                if END_AT_ONCE.load(Ordering::SeqCst) {
                    // Waits for an output set being written to land, then ends the process.
                    let _done = moescope_workbench::outputs::hold();
                    std::process::exit(EXIT_INTERRUPTED.into());
                }
            });
            flag
        })
        .clone()
}

/// For commands that compute and then write their outputs (`analyze`, `eval`): a signal
/// ends the process at once with status 130, leaving every old output as it was, except while
/// an output set is being written, which is completed first.
pub fn end_at_once_on_interrupt() {
    END_AT_ONCE.store(true, Ordering::SeqCst);
    let _ = interrupt_flag();
}

/// Whether a signal ends the process at once (see [`end_at_once_on_interrupt`]).
static END_AT_ONCE: AtomicBool = AtomicBool::new(false);

/// Set once a command installs its interrupt handler ([`interrupt_flag`]).
static INTERRUPTED: OnceLock<CancelFlag> = OnceLock::new();

/// Whether a signal stopped the command early (its output is complete but partial), so the
/// process exits 130 as an interrupted Unix tool does and `record && analyze` stops.
pub fn was_interrupted() -> bool {
    INTERRUPTED.get().is_some_and(CancelFlag::is_cancelled)
}
