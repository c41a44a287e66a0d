//! `faultline report`, `compare`, `suite`, `runs`, `trend` and `serve`: everything that
//! reads stored runs.

use std::path::PathBuf;
use std::process::ExitCode;

use comfy_table::Table;
use comfy_table::presets::UTF8_FULL_CONDENSED;

use crate::report::{self, compare, index};

fn default_store() -> PathBuf {
    PathBuf::from("store")
}

#[derive(clap::Args)]
pub struct ReportArgs {
    /// Run directories (`store/<test>/<timestamp>`, or `store/latest`).
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
}

/// Writes (again) each run's `report.html`, `latency.hlog` and report results, records it
/// in the store's index, prints the summary, and exits with the combined verdict.
pub fn run_report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    // A path that is no run is a usage error, as for `compare`, before any report is written.
    for dir in &args.runs {
        if !dir.join(crate::store::HISTORY_FILE).is_file() {
            return Err(crate::exit::usage(format!(
                "{}: no history.jsonl, not a run directory",
                dir.display()
            )));
        }
    }
    let mut valid = faultline_checkers::Validity::Valid;
    for dir in &args.runs {
        let s = report::write_run_report(dir)?;
        report::print_summary(&s);
        valid = valid.and(s.valid);
    }
    Ok(crate::exit::for_validity(valid))
}

#[derive(clap::Args)]
pub struct CompareArgs {
    /// Two or more run directories.
    #[arg(required = true, num_args = 2..)]
    pub runs: Vec<PathBuf>,
    /// Where to write the HTML comparison.
    #[arg(long, default_value = "compare.html")]
    pub html: PathBuf,
}

pub fn run_compare(args: CompareArgs) -> anyhow::Result<ExitCode> {
    for r in &args.runs {
        if !r.join(crate::store::HISTORY_FILE).is_file() {
            return Err(crate::exit::usage(format!(
                "{}: no history.jsonl, not a run directory",
                r.display()
            )));
        }
    }
    compare::compare(&args.runs, &args.html)?;
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct RunsArgs {
    #[arg(long, default_value_os_t = default_store())]
    pub store: PathBuf,
    /// Show the newest N runs.
    #[arg(long, default_value_t = 20)]
    pub last: usize,
    /// Only runs of this algorithm.
    #[arg(long)]
    pub db: Option<String>,
}

fn opt(x: Option<f64>, unit: &str) -> String {
    x.map(|v| format!("{v:.1}{unit}"))
        .unwrap_or_else(|| "—".into())
}

pub fn run_runs(args: RunsArgs) -> anyhow::Result<ExitCode> {
    let rows = index::list(&args.store, args.last, args.db.as_deref())?;
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "started",
        "test",
        "db",
        "workload",
        "nemesis",
        "seed",
        "verdict",
        "ok/s",
        "p99",
        "unavail p99",
        "elections",
        "dir",
    ]);
    for r in &rows {
        t.add_row(vec![
            r.started.clone(),
            r.name.clone(),
            r.db.clone(),
            r.workload.clone(),
            r.nemesis.clone(),
            r.seed.clone().unwrap_or_default(),
            r.verdict.clone(),
            opt(r.ok_per_s, ""),
            opt(r.latency_ms_p99, " ms"),
            opt(r.unavailability_ms_p99, " ms"),
            r.elections.map(|e| e.to_string()).unwrap_or_default(),
            r.run_dir.clone(),
        ]);
    }
    outln!("{t}");
    outln!("{} runs", rows.len());
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct TrendArgs {
    /// A figure recorded per run, e.g. unavailability_ms_p99, latency_ms_p99, ok_per_s.
    #[arg(long)]
    pub metric: String,
    #[arg(long)]
    pub db: Option<String>,
    #[arg(long, default_value_os_t = default_store())]
    pub store: PathBuf,
    #[arg(long, default_value_t = 50)]
    pub last: usize,
}

pub fn run_trend(args: TrendArgs) -> anyhow::Result<ExitCode> {
    let rows = index::trend(&args.store, &args.metric, args.db.as_deref(), args.last)?;
    let max = rows.iter().filter_map(|r| r.3).fold(0.0f64, f64::max);
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "started",
        "db",
        "verdict",
        &args.metric,
        "",
    ]);
    for (started, db, verdict, v) in &rows {
        let bar = match v {
            Some(v) if max > 0.0 => "█".repeat(((v / max) * 30.0).round() as usize),
            _ => String::new(),
        };
        t.add_row(vec![
            started.clone(),
            db.clone(),
            verdict.clone(),
            opt(*v, ""),
            bar,
        ]);
    }
    outln!("{t}");
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct ServeArgs {
    #[arg(long, default_value_os_t = default_store())]
    pub store: PathBuf,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Address to listen on. Anything but loopback exposes the store to the network
    /// without authentication.
    #[arg(long, value_name = "ADDR", default_value = report::serve::DEFAULT_BIND)]
    pub bind: std::net::IpAddr,
}

pub fn run_serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    if !args.store.is_dir() {
        return Err(crate::exit::usage(format!(
            "{}: no such store directory",
            args.store.display()
        )));
    }
    if !args.bind.is_loopback() {
        eprintln!(
            "faultline: warning: serving on {} without authentication: anyone who can reach it can read every run in {}",
            args.bind,
            args.store.display()
        );
    }
    let addr = std::net::SocketAddr::new(args.bind, args.port);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        tokio::select! {
            r = report::serve::serve(args.store.clone(), addr, None) => r,
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })?;
    Ok(ExitCode::SUCCESS)
}
