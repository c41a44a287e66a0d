//! Placeholder until this subcommand lands.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct NodeArgs {}

pub fn run(_args: NodeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`node_cmd` is not implemented yet")
}
