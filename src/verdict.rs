//! The one verdict pipeline. Every command that judges a run — `test` when it ends,
//! `report` on a stored run, `check` on a run directory, `suite` — calls [`analyze`], so a
//! run gets the same checkers and the same verdict whichever way it is judged.
//!
//! A verdict combines the workload's correctness checkers (from the workload registry),
//! the perf, recovery and stats analyses, and the node logs (a panic is a bug whatever the
//! history says). It is then capped at `unknown` when the run cannot vouch for the system:
//! interrupted, aborted by a harness error, never finished (no `results.json`), or a fault
//! that was planned but could not be applied (read from the history's nemesis events).
//! Nothing checked is never valid.

use std::path::Path;

use faultline_checkers::perf::{self, PerfReport};
use faultline_checkers::recovery::{self, RecoveryOptions, RecoveryReport};
use faultline_checkers::{CheckResult, Validity, stats};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::report::RunData;
use crate::report::logs::{self, LogScan};

/// What the harness knows about how a run went, beside its history.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RunFacts {
    /// The run could not complete (SSH, setup).
    pub harness_error: Option<String>,
    /// Ctrl-C or SIGTERM ended the run early.
    pub interrupted: bool,
    /// The controller never wrote its results (it was killed, or interrupted twice).
    pub unfinished: bool,
}

impl RunFacts {
    /// The facts a stored run's `results.json` records; a run without one never finished.
    pub fn of_results(results_json: &Value) -> RunFacts {
        if results_json.is_null() {
            return RunFacts {
                unfinished: true,
                ..RunFacts::default()
            };
        }
        RunFacts {
            harness_error: results_json
                .get("harness_error")
                .and_then(Value::as_str)
                .map(str::to_string),
            interrupted: results_json.get("interrupted") == Some(&Value::Bool(true)),
            unfinished: results_json.get("unfinished") == Some(&Value::Bool(true)),
        }
    }

    /// Why these facts cap a verdict at unknown, one reason each.
    pub fn caps(&self) -> Vec<String> {
        let mut why = Vec::new();
        if self.unfinished {
            why.push("the controller did not finish the run (no results were written)".to_string());
        }
        if self.interrupted {
            why.push("the run was interrupted".to_string());
        }
        if let Some(e) = &self.harness_error {
            why.push(format!("harness error: {e}"));
        }
        why
    }
}

/// Everything the pipeline found: the verdict, each checker's result, and the reports
/// the HTML page and the terminal summary draw from.
#[derive(Debug, Clone)]
pub struct Analysis {
    pub valid: Validity,
    pub results: Vec<CheckResult>,
    /// Why `valid` is capped at unknown (empty when it is not).
    pub caps: Vec<String>,
    pub perf: PerfReport,
    pub recovery: RecoveryReport,
    pub scan: LogScan,
}

/// The names of the checkers that judge `workload`'s histories (correctness first).
pub fn workload_checkers(workload: &str) -> Option<&'static [&'static str]> {
    faultline_workloads::lookup(workload).map(|w| w.checkers())
}

/// Runs the pipeline over a loaded run. `only` restricts the correctness checkers to one
/// registered name (`faultline check --checker`); the analyses always run.
pub fn analyze(run: &RunData, only: Option<&str>, facts: &RunFacts) -> anyhow::Result<Analysis> {
    let workload = run.workload();
    let names: Vec<&str> = match only {
        Some(n) => vec![n],
        None => workload_checkers(&workload)
            .ok_or_else(|| {
                crate::exit::usage(format!(
                    "{}: test.json names workload {workload:?}, which has no checkers here \
                     (known: {}); pick one with --checker",
                    run.dir.display(),
                    faultline_workloads::names().join(", ")
                ))
            })?
            .to_vec(),
    };
    let mut results = Vec::new();
    for name in names {
        let r = match faultline_checkers::registry::entry(name) {
            Some(c) => {
                let t = std::time::Instant::now();
                let r = c.check_file(&Default::default(), &run.history, &run.digest)?;
                tracing::info!(checker = name, valid = ?r.valid, seconds = t.elapsed().as_secs_f64(), "checked");
                r
            }
            None => {
                return Err(crate::exit::usage(format!(
                    "unknown checker {name:?} (known: {})",
                    faultline_checkers::registry::names().join(", ")
                )));
            }
        };
        results.push(r);
    }
    let perf_report = perf::analyze_digest(&run.digest);
    let recovery_report = recovery::analyze_digest(
        &run.digest,
        &RecoveryOptions {
            election_timeout_ms_min: run.election_timeout_ms_min(),
            ..Default::default()
        },
    );
    let stats_report = stats::analyze_digest(&run.digest);
    let windows = recovery::fault_windows(&run.digest.nemesis);
    let scan = logs::scan(&run.dir, &windows, run.start_unix_ns());
    results.push(perf::result(&perf_report));
    results.push(recovery::result(&recovery_report));
    results.push(stats::result(&stats_report));
    results.push(node_logs_result(&scan));
    if let Some(r) = crate::slo::check(&crate::slo::of_test(&run.test), &perf_report, &recovery_report) {
        results.push(r);
    }
    if let Some(b) = crate::baseline::Baseline::of_test(&run.test)
        && let Some(store) = crate::report::store_of(&run.dir)
    {
        let started = run
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (name, db, workload, nemesis) = (run.name(), run.db(), run.workload(), run.nemesis());
        let key = crate::baseline::RunKey {
            name: &name,
            db: &db,
            workload: &workload,
            nemesis: &nemesis,
            started: &started,
        };
        match crate::baseline::check(&store, &key, b, &perf_report, &recovery_report) {
            Ok(Some(r)) => results.push(r),
            Ok(None) => {}
            Err(e) => results.push(CheckResult {
                checker: "baseline".into(),
                valid: Validity::Unknown,
                details: json!({"error": format!("{e:#}")}),
            }),
        }
    }
    // A planned fault that could not be applied: the harness did not do what was asked.
    let faults = recovery::faults_check(&run.digest.nemesis);
    let faults_failed = recovery::faults_failed(&run.digest.nemesis);
    if let Some(r) = faults {
        results.push(r);
    }

    let mut valid = results.iter().fold(Validity::Valid, |v, r| v.and(r.valid));
    let mut caps = facts.caps();
    if faults_failed > 0 {
        caps.push(format!("{faults_failed} planned fault(s) could not be applied"));
    }
    if run.digest.client_events == 0 {
        caps.push("the history holds no client operations: nothing was checked".into());
    }
    if valid == Validity::Valid && !caps.is_empty() {
        valid = Validity::Unknown;
    } else if valid != Validity::Unknown {
        // A violation found before the run broke off still stands; only `valid` is capped.
        caps.clear();
    }
    Ok(Analysis {
        valid,
        results,
        caps,
        perf: perf_report,
        recovery: recovery_report,
        scan,
    })
}

/// A node that panicked is a bug in the system under test, whatever the history says.
fn node_logs_result(scan: &LogScan) -> CheckResult {
    CheckResult {
        checker: "node-logs".into(),
        valid: if scan.panics_total > 0 {
            Validity::Invalid
        } else {
            Validity::Valid
        },
        details: json!({
            "nodes": scan.nodes, "files": scan.files,
            "panics_total": scan.panics_total, "panics": scan.panics,
        }),
    }
}

/// Writes `results.json`: the verdict, why it is capped, every checker's result (a map by
/// name), the run's facts and its stats. The one writer of that file.
pub fn write_results(dir: &Path, analysis: &Analysis, facts: &RunFacts, stats: &Value) -> anyhow::Result<()> {
    let mut by_name = serde_json::Map::new();
    for r in &analysis.results {
        by_name.insert(r.checker.clone(), serde_json::to_value(r)?);
    }
    let doc = json!({
        "valid": analysis.valid,
        "unknown_because": analysis.caps,
        "results": by_name,
        "harness_error": facts.harness_error,
        "interrupted": facts.interrupted,
        "unfinished": facts.unfinished,
        "stats": stats,
    });
    let text = serde_json::to_string_pretty(&doc)?;
    crate::store::write_atomic(&dir.join(crate::store::RESULTS_FILE), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incomplete_run_is_at_best_unknown() {
        let done = json!({"harness_error": null, "interrupted": false});
        assert!(RunFacts::of_results(&done).caps().is_empty());
        let interrupted = json!({"harness_error": null, "interrupted": true});
        assert_eq!(RunFacts::of_results(&interrupted).caps().len(), 1);
        let aborted = json!({"harness_error": "cannot connect", "interrupted": false});
        assert!(RunFacts::of_results(&aborted).caps()[0].contains("cannot connect"));
        // No results.json at all: the controller died before writing it.
        assert!(RunFacts::of_results(&Value::Null).unfinished);
    }
}
