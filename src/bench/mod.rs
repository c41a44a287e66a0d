//! `faultline bench`: measurements that are not tests.
//!
//! `bench throughput` measures closed-loop throughput and latency; `bench recovery` repeats
//! one fault many times on a deployed cluster and reports distributions of how long the
//! database took to recover. Both deploy through the same [`bring_up`], so a figure from
//! one is taken on the same deployment steps as a test's.

pub mod recovery;
pub mod report;
pub mod recovery_report;
pub mod throughput;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::control::Control;
use crate::db::{Database, DbArgs, DbSettings};
use crate::deploy;
use crate::exit::usage;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Closed-loop throughput and latency per database and client count.
    Throughput(throughput::ThroughputArgs),
    /// Recovery time distributions over many trials of one fault scenario.
    Recovery(recovery::RecoveryArgs),
    /// What checking and reporting a long run costs: a synthetic run of any length, judged
    /// by `faultline report` in a child whose time, peak RSS and report size are printed.
    Report(report::ReportArgs),
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        BenchCommand::Throughput(a) => throughput::run(a),
        BenchCommand::Recovery(a) => recovery::run(a),
        BenchCommand::Report(a) => report::run(a),
    }
}

/// Parses `--db-opt KEY=VALUE` pairs and validates every database of the comma list `db`
/// with them plus `extra` (knobs the bench itself sets, e.g. a sweep point), before any
/// host is contacted.
pub fn db_settings(
    db: &str,
    db_opt: &[String],
    binary: Option<&PathBuf>,
    extra: &[(String, String)],
) -> anyhow::Result<Vec<DbSettings>> {
    let mut opts = Vec::new();
    for o in db_opt {
        let (k, v) = o
            .split_once('=')
            .filter(|(k, _)| !k.trim().is_empty())
            .ok_or_else(|| usage(format!("--db-opt {o:?}: expected KEY=VALUE")))?;
        opts.push((k.trim().to_string(), v.to_string()));
    }
    opts.extend(extra.iter().cloned());
    let db_args = DbArgs {
        opts,
        binary: binary.cloned(),
    };
    let mut dbs = Vec::new();
    for d in db.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let e = crate::db::lookup(d).ok_or_else(|| {
            usage(format!("--db {d:?}: unknown database (known: {})", crate::db::names().join(", ")))
        })?;
        dbs.push((e.validate)(&db_args).map_err(|e| usage(format!("--db-opt: {e}")))?);
    }
    if dbs.is_empty() {
        return Err(usage("--db names no database"));
    }
    Ok(dbs)
}

/// The runner's host steps, without a nemesis: pre-flight, stop what an earlier run left,
/// install, configure, start, wait for a leader.
pub async fn bring_up(control: &Control, db: &Arc<dyn Database>) -> anyhow::Result<()> {
    deploy::preflight(control, &db.tools(), db.upload_image()?.as_ref()).await?;
    deploy::stop(control, db.layout()).await?;
    deploy::ports_free(control, db.layout()).await?;
    db.install(control).await?;
    db.configure(control).await?;
    deploy::start(control, &**db).await?;
    crate::runner::nodedb::wait_ready(&**db, Duration::from_secs(30)).await
}
