//! `faultline`: a Jepsen-style cluster test harness and chaos CLI.
//!
//! Raw arguments are parsed by clap into each subcommand's args, which its module validates
//! into a config before doing anything (ripgrep's shape). Errors carry their exit code:
//! see [`exit`].

#[macro_use]
mod out;
mod exit;

mod baseline;
mod bench;
mod check;
mod cluster;
mod control;
mod db;
mod deploy;
mod exec;
mod hosts;
mod inventory;
mod logging;
mod nemesis_cmd;
mod nemesis_remote;
mod nemesis_flags;
mod node_cmd;
mod report;
mod report_cmd;
mod run_loop;
mod runner;
mod slo;
mod store;
mod suite;
mod test_cmd;
mod verdict;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "faultline", version, about = "Jepsen-style cluster test harness and chaos CLI")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a chaos test: deploy the node, drive a workload under a nemesis, check the history.
    Test(test_cmd::TestArgs),
    /// Check a history file or a stored run's directory.
    #[command(visible_alias = "analyze")]
    Check(check::CheckArgs),
    /// Ad-hoc fault drills: every nemesis family (kill, pause, partition, packet, disk faults), heal, status.
    Nemesis(nemesis_cmd::NemesisArgs),
    /// Run a command on cluster nodes over SSH.
    Exec(exec::ExecArgs),
    /// Prepare hosts: install the tools faultline runs there (`hosts prepare`).
    Hosts(hosts::HostsArgs),
    /// A local cluster of network namespaces with real sshd: up, down, status.
    Cluster(cluster::ClusterArgs),
    /// The bundled replicated key-value store (Raft or Multi-Paxos) that tests deploy.
    Node(node_cmd::NodeArgs),
    /// Serve a directory over itself, holding un-fsynced data in memory (the
    /// `lose-unfsynced` nemesis mounts it on hosts; see docs/nemesis.md).
    #[command(hide = true)]
    Lazyfs(LazyfsArgs),
    /// Compare stored runs side by side.
    Compare(report_cmd::CompareArgs),
    /// Write a stored run's report (report.html, latency.hlog, results) again.
    Report(report_cmd::ReportArgs),
    /// List the runs recorded in the store's run index.
    Runs(report_cmd::RunsArgs),
    /// One figure across recorded runs.
    Trend(report_cmd::TrendArgs),
    /// Serve the store's runs, reports, comparisons and trends as a web application.
    Serve(report_cmd::ServeArgs),
    /// Measurements: closed-loop throughput and latency of any database.
    Bench(bench::BenchArgs),
    /// The nightly matrix: every db x workload x nemesis, JUnit XML, non-zero on failure.
    Suite(suite::SuiteArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let _ = e.print();
            return match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => ExitCode::SUCCESS,
                _ => ExitCode::from(exit::USAGE),
            };
        }
    };
    let result = match cli.command {
        Command::Test(a) => test_cmd::run(a),
        Command::Check(a) => check::run(a),
        Command::Nemesis(a) => nemesis_cmd::run(a),
        Command::Exec(a) => exec::run(a),
        Command::Hosts(a) => hosts::run(a),
        Command::Cluster(a) => cluster::run(a),
        Command::Node(a) => node_cmd::run(a),
        Command::Lazyfs(a) => Ok(faultline_node::lazyfs::main(&faultline_node::lazyfs::Args {
            dir: a.dir,
            bytes_max: a.bytes_max,
        })),
        Command::Compare(a) => report_cmd::run_compare(a),
        Command::Report(a) => report_cmd::run_report(a),
        Command::Runs(a) => report_cmd::run_runs(a),
        Command::Trend(a) => report_cmd::run_trend(a),
        Command::Serve(a) => report_cmd::run_serve(a),
        Command::Suite(a) => suite::run(a),
        Command::Bench(a) => bench::run(a),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("faultline: error: {err:#}");
            exit::for_error(&err)
        }
    }
}

#[derive(clap::Args)]
struct LazyfsArgs {
    /// The directory to serve (and mount over).
    #[arg(long, value_name = "DIR")]
    dir: std::path::PathBuf,
    /// Bytes of file data held in memory at most; writes past it fail with ENOSPC.
    #[arg(long, default_value_t = faultline_node::lazyfs::BYTES_MAX_DEFAULT, value_parser = clap::value_parser!(u64).range(1..))]
    bytes_max: u64,
}
