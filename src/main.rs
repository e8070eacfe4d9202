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

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
