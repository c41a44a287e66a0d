//! Placeholder until this subcommand lands.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct NemesisArgs {}

pub fn run(_args: NemesisArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`nemesis_cmd` is not implemented yet")
}
