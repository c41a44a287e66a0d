//! Placeholder until this subcommand lands.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct CompareArgs {}

pub fn run_compare(_args: CompareArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`compare` is not implemented yet")
}
