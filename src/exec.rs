//! Placeholder until this subcommand lands.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ExecArgs {}

pub fn run(_args: ExecArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`exec` is not implemented yet")
}
