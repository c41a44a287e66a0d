//! `faultline check` (alias `analyze`): re-checks a recorded history for linearizability.
//!
//! The path is a history file (faultline JSON Lines, a Jepsen log or Jepsen EDN ops) or a
//! stored run's directory holding `history.jsonl`. Exit codes: 0 linearizable, 1 not,
//! 2 unknown (budget exhausted, or no client operation to check), 3 unreadable input, 64 usage.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use faultline_checkers::formats::{self, Format};
use faultline_checkers::linear::{self, Budget, ModelKind};

use crate::exit;

#[derive(clap::Args)]
pub struct CheckArgs {
    /// A history file, or a stored run's directory containing `history.jsonl`.
    pub path: PathBuf,
    /// The object each key holds: `cas-register` (read/write/cas) or `kv` (get/put/append
    /// of strings).
    #[arg(long, default_value = "cas-register")]
    pub model: String,
    /// `auto`, `jsonl`, `jepsen-log`, `jepsen-edn` or `jepsen-json`.
    #[arg(long, default_value = "auto")]
    pub format: String,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    pub json: bool,
    /// Answer `unknown` after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub time_limit_s: u64,
    /// Answer `unknown` when the search tables would exceed this (it bounds the search, not loading the history).
    #[arg(long, default_value_t = 4096)]
    pub memory_limit_mb: u64,
    /// Keys checked in parallel (default: up to 2, as cores allow).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Validated arguments.
struct Config {
    file: PathBuf,
    model: ModelKind,
    format: Format,
    json: bool,
    budget: Budget,
}

fn validate(args: CheckArgs) -> anyhow::Result<Config> {
    let model: ModelKind = args.model.parse().map_err(exit::usage)?;
    let format: Format = args.format.parse().map_err(exit::usage)?;
    if args.memory_limit_mb == 0 {
        return Err(exit::usage("--memory-limit-mb must be at least 1"));
    }
    if args.threads == Some(0) {
        return Err(exit::usage("--threads must be at least 1"));
    }
    let file = if args.path.is_dir() {
        args.path.join("history.jsonl")
    } else {
        args.path
    };
    let mut budget = Budget {
        time_limit: Some(Duration::from_secs(args.time_limit_s)),
        memory_limit_bytes: usize::try_from(args.memory_limit_mb.saturating_mul(1 << 20))
            .unwrap_or(usize::MAX),
        ..Budget::default()
    };
    if let Some(t) = args.threads {
        budget.threads = t;
    }
    Ok(Config {
        file,
        model,
        format,
        json: args.json,
        budget,
    })
}

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let cfg = validate(args)?;
    let events = formats::load(&cfg.file, cfg.format)?;
    let report = linear::check(&events, cfg.model, &cfg.budget)
        .with_context(|| format!("{}: malformed history", cfg.file.display()))?;
    if cfg.json {
        let mut v = serde_json::to_value(&report)?;
        v["path"] = serde_json::Value::String(cfg.file.display().to_string());
        println!("{v}");
    } else {
        print!("{}: {report}", display(&cfg.file));
    }
    Ok(exit::for_validity(report.valid))
}

fn display(p: &Path) -> String {
    p.display().to_string()
}
