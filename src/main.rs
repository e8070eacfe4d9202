//! `moescope`: the command-line front of the workbench. It parses arguments, calls the
//! workbench and engine libraries, and prints; the logic lives in the library crates.

mod cli;
mod commands;
mod signals;
mod terminal;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    restore_default_sigpipe();
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(()) if signals::was_interrupted() => ExitCode::from(signals::EXIT_INTERRUPTED),
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
