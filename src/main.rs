//! `moescope`: the command-line front of the workbench. It parses arguments and calls the
//! engine; every piece of logic lives in the library crates.

mod analyze;
mod attribute;
mod bench;
mod cli;
mod commands;
mod eval;
mod experiment;
mod record;
mod session;

use std::process::ExitCode;

use clap::Parser;

/// The exit status of a command stopped by SIGINT or SIGTERM (128 + SIGINT), as shells report.
const EXIT_INTERRUPTED: u8 = 130;

fn main() -> ExitCode {
    restore_default_sigpipe();
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(()) if session::was_interrupted() => ExitCode::from(EXIT_INTERRUPTED),
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Rust ignores SIGPIPE, which turns a closed pipe (`moescope info | head -3`) into a panic on
/// the next print. Unix tools end quietly instead; so does this one. Files are never written
/// through a pipe, so a recording that finished stays complete.
fn restore_default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in `main`, before any other thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
