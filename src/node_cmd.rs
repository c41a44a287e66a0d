//! `faultline node`: runs the bundled replicated KV store (`--config node.yaml`), or
//! benchmarks a local three-node cluster (`faultline node bench`). All logic lives in the
//! `faultline-node` crate; this module only turns arguments into its config.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use faultline_node::config::{Algo, Config, ConfigError};

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct NodeArgs {
    #[command(subcommand)]
    command: Option<NodeCommand>,
    /// The node's YAML config (see node/README.md).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Override any config knob, e.g. `--set batch_max=64` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(clap::Subcommand)]
enum NodeCommand {
    /// Start a 3-node loopback cluster of real processes and measure throughput and latency.
    Bench(BenchArgs),
}

#[derive(clap::Args)]
struct BenchArgs {
    #[arg(long, default_value = "raft")]
    algo: String,
    /// Concurrent clients, each with one request outstanding.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    #[arg(long = "duration-s", default_value_t = 10)]
    duration_s: u64,
    /// Fraction of operations that are reads (the rest are writes).
    #[arg(long, default_value_t = 0.5)]
    read_fraction: f64,
    /// First of six consecutive loopback ports the cluster uses.
    #[arg(long, default_value_t = 17100)]
    base_port: u16,
    /// Turn WAL fsync off (for comparison; the default measures with fsync on).
    #[arg(long)]
    no_fsync: bool,
    /// Extra `KEY=VALUE` knobs for every node (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

pub fn run(args: NodeArgs) -> anyhow::Result<ExitCode> {
    if let Some(NodeCommand::Bench(b)) = args.command {
        return bench(b);
    }
    let Some(path) = args.config else {
        return Err(crate::exit::usage("faultline node: --config <PATH> is required (or use `faultline node bench`)"));
    };
    let cfg = Config::load(&path, &args.set).map_err(|e| match e {
        ConfigError::Read { .. } => anyhow::Error::new(e),
        other => crate::exit::usage(other.to_string()),
    })?;
    faultline_node::node::run_node(cfg).context("node failed")?;
    Ok(ExitCode::SUCCESS)
}

fn bench(b: BenchArgs) -> anyhow::Result<ExitCode> {
    let algo = match b.algo.as_str() {
        "raft" => Algo::Raft,
        "paxos" => Algo::Paxos,
        other => return Err(crate::exit::usage(format!("--algo: expected raft or paxos, got `{other}`"))),
    };
    if b.clients == 0 || b.duration_s == 0 || !(0.0..=1.0).contains(&b.read_fraction) {
        return Err(crate::exit::usage("--clients and --duration-s must be positive, --read-fraction in 0..=1"));
    }
    let exe = std::env::current_exe().context("locating the faultline binary")?;
    let opts = faultline_node::bench::BenchOptions {
        exe,
        algo,
        clients: b.clients,
        duration: std::time::Duration::from_secs(b.duration_s),
        read_fraction: b.read_fraction,
        base_port: b.base_port,
        fsync: !b.no_fsync,
        extra: b.set,
    };
    let report = faultline_node::bench::run(&opts).map_err(|e| anyhow::anyhow!("benchmark failed: {e}"))?;
    outln!("{report}");
    Ok(ExitCode::SUCCESS)
}
