//! Placeholder until this subcommand lands.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct TestArgs {}

pub fn run(_args: TestArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`test_cmd` is not implemented yet")
}
