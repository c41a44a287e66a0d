//! Placeholder until this subcommand lands.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ClusterArgs {}

pub fn run(_args: ClusterArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`cluster` is not implemented yet")
}
