//! The subcommands: each parses nothing and computes little; it calls the workbench and the
//! engine and prints the result.

mod analyze;
mod bench;
mod eval;
mod experiment;
mod generate;
mod gui;
mod info;
mod record;

use anyhow::Result;

use crate::cli::{Cli, Command};

/// Runs one parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Info(args) => info::run(&args),
        Command::Generate(args) => generate::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Eval(args) => eval::run(&args),
        Command::Record(args) => record::run(&args),
        Command::Analyze(args) => analyze::run(&args),
        Command::Experiment(args) => experiment::run(&args),
        Command::Gui(args) => gui::run(&args),
    }
}
