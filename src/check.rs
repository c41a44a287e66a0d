//! `faultline check` (alias `analyze`): judges a recorded history.
//!
//! On a stored run's directory it runs the same pipeline as the run itself (the workload's
//! checkers from the registry, perf, recovery, stats, node logs; see [`crate::verdict`]),
//! or the one `--checker` names; nothing is written. On a history file (faultline JSON
//! Lines, a Jepsen log, Jepsen EDN or JSON ops) it judges the history as `--model` says —
//! linearizability of a register, kv store, mutex or multi-register (Knossos' models), or
//! Jepsen's counter, set, set-full, bank and long-fork checkers, or Elle's list-append and
//! rw-register analyses under `--consistency-model` — or runs `--checker`. Every model is a
//! registered checker (`registry::for_model`). Exit codes: 0 valid, 1 invalid, 2 unknown
//! (budget exhausted, nothing to check), 3 unreadable input, 64 usage.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use faultline_checkers::formats::{self, Format};
use faultline_checkers::linear::{self, Budget, ModelKind};
use faultline_checkers::registry::{self, Options};

use crate::exit;

#[derive(clap::Args)]
pub struct CheckArgs {
    /// A history file, or a stored run's directory containing `history.jsonl`.
    pub path: PathBuf,
    /// Run only this registered checker (e.g. `linearizable`, `set`, `bank`, `append`).
    #[arg(long)]
    pub checker: Option<String>,
    /// What the history is of: `cas-register` (read/write/cas per key), `kv` (get/put/append
    /// of strings), `mutex`, `multi-register` (linearizability); `counter`, `set`,
    /// `set-full`, `bank`, `long-fork` (Jepsen's checkers); `list-append`, `rw-register`
    /// (Elle; also `elle-list-append`, `elle-rw-register`).
    #[arg(long, default_value = "cas-register")]
    pub model: String,
    /// For `list-append` and `rw-register`: the consistency model the history must satisfy
    /// (read-uncommitted, read-committed, repeatable-read, snapshot-isolation, serializable,
    /// strict-serializable, ...). Default strict-serializable.
    #[arg(long)]
    pub consistency_model: Option<String>,
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
    /// Set when the path is a stored run: judge it with the run's pipeline.
    run_dir: Option<PathBuf>,
    checker: Option<String>,
    file: PathBuf,
    model: How,
    format: Format,
    json: bool,
    budget: Budget,
}

/// How `--model` judges a history file.
enum How {
    /// Linearizability, with the search's budget and its counterexample report.
    Linear(ModelKind),
    /// Another registered checker.
    Checker(&'static str, Options),
}

fn parse_model(model: &str, consistency: Option<&str>) -> anyhow::Result<How> {
    let Some(checker) = registry::for_model(model) else {
        let known: Vec<&str> = registry::MODELS.iter().map(|(m, _)| *m).collect();
        return Err(exit::usage(format!("--model {model:?}: unknown model (known: {})", known.join(", "))));
    };
    let takes = registry::entry(checker).is_some_and(|e| e.takes_consistency_model);
    let consistency_model = match consistency {
        None => None,
        Some(_) if !takes => {
            return Err(exit::usage(format!(
                "--consistency-model applies to the transactional models (list-append, rw-register), not to {model}"
            )));
        }
        Some(c) => Some(c.parse::<faultline_checkers::elle::Model>().map_err(|e| exit::usage(format!("--consistency-model: {e}")))?),
    };
    Ok(match model.parse::<ModelKind>() {
        Ok(kind) => How::Linear(kind),
        Err(_) => How::Checker(checker, Options { consistency_model }),
    })
}

fn validate(args: CheckArgs) -> anyhow::Result<Config> {
    let model = parse_model(&args.model, args.consistency_model.as_deref())?;
    let format: Format = args.format.parse().map_err(exit::usage)?;
    if args.memory_limit_mb == 0 {
        return Err(exit::usage("--memory-limit-mb must be at least 1"));
    }
    if args.threads == Some(0) {
        return Err(exit::usage("--threads must be at least 1"));
    }
    if let Some(c) = &args.checker
        && faultline_checkers::registry::lookup(c).is_none()
    {
        return Err(exit::usage(format!(
            "--checker {c:?}: unknown checker (known: {})",
            faultline_checkers::registry::names().join(", ")
        )));
    }
    // A stored run (it has test.json) is judged by its workload's checkers; a bare
    // directory with only a history is checked like the history file.
    let run_dir = (args.path.is_dir() && args.path.join(crate::store::TEST_FILE).is_file())
        .then(|| args.path.clone());
    let file = if args.path.is_dir() {
        args.path.join(crate::store::HISTORY_FILE)
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
        run_dir,
        checker: args.checker,
        file,
        model,
        format,
        json: args.json,
        budget,
    })
}

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let cfg = validate(args)?;
    if let Some(dir) = &cfg.run_dir {
        return check_run(dir, cfg.checker.as_deref(), cfg.json);
    }
    if let Some(name) = &cfg.checker {
        return check_file_with(&cfg, name, &Options::default());
    }
    let kind = match &cfg.model {
        How::Linear(kind) => *kind,
        How::Checker(name, options) => return check_file_with(&cfg, name, options),
    };
    let events = formats::load(&cfg.file, cfg.format)?;
    let report = linear::check(&events, kind, &cfg.budget)
        .with_context(|| format!("{}: malformed history", cfg.file.display()))?;
    if cfg.json {
        let mut v = serde_json::to_value(&report)?;
        v["path"] = serde_json::Value::String(cfg.file.display().to_string());
        outln!("{v}");
    } else {
        out!("{}: {report}", display(&cfg.file));
    }
    Ok(exit::for_validity(report.valid))
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

/// A stored run, through the run's own verdict pipeline.
fn check_run(dir: &Path, checker: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let run = crate::report::RunData::load(dir)?;
    let facts = crate::verdict::RunFacts::of_results(&run.results_raw);
    let a = crate::verdict::analyze(&run, checker, &facts)?;
    if json {
        let v = serde_json::json!({
            "path": dir.display().to_string(),
            "valid": a.valid,
            "unknown_because": a.caps,
            "results": a.results,
        });
        outln!("{v}");
    } else {
        outln!(
            "{}: {} ({} on {})",
            dir.display(),
            crate::report::validity_word(a.valid),
            run.workload(),
            run.db()
        );
        for r in &a.results {
            outln!("  {:<16} {}", r.checker, crate::report::validity_word(r.valid));
        }
        for why in &a.caps {
            outln!("  unknown because {why}");
        }
    }
    Ok(exit::for_validity(a.valid))
}

/// A history file, through one registered checker (`--checker NAME`, or the one a
/// `--model` names); a verdict other than valid prints the checker's details.
fn check_file_with(cfg: &Config, name: &str, options: &Options) -> anyhow::Result<ExitCode> {
    let events = formats::load(&cfg.file, cfg.format)?;
    let c = registry::lookup_with(name, options).expect("validated: a registered checker");
    let r = c.check(&events);
    if cfg.json {
        let mut v = serde_json::to_value(&r)?;
        v["path"] = serde_json::Value::String(cfg.file.display().to_string());
        outln!("{v}");
    } else {
        outln!("{}: {} {}", display(&cfg.file), r.checker, crate::report::validity_word(r.valid));
        if r.valid != faultline_checkers::Validity::Valid {
            outln!("{}", serde_json::to_string_pretty(&r.details)?);
        }
    }
    Ok(exit::for_validity(r.valid))
}
