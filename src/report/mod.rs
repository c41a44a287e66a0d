//! Reports over stored runs: `results.json` (every checker's verdict and figures),
//! `report.html` (one self-contained page), HdrHistogram interval logs, the terminal
//! summary, comparisons between runs, the run index, and the nightly suite.
//!
//! The runner calls [`write_run_report`] when a run ends; `faultline compare`, `suite`,
//! `runs`, `trend` and `serve` build on the files it leaves.

pub mod compare;
pub mod html;
pub mod index;
pub mod junit;
pub mod logs;
pub mod plots;
pub mod run;
pub mod serve;
pub mod suite;
pub mod summary;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use faultline_checkers::perf::{self, PerfReport};
use faultline_checkers::recovery::{self, RecoveryOptions, RecoveryReport};
use faultline_checkers::stats::{self, StatsReport};
use faultline_checkers::{CheckResult, Validity};

pub use run::RunData;
pub use summary::print_summary;

/// Names of the files the report writes in a run directory.
pub const REPORT_HTML: &str = "report.html";
pub const RESULTS_JSON: &str = "results.json";
pub const LATENCY_HLOG: &str = "latency.hlog";

/// What the report found, for the terminal summary, the run index and comparisons.
#[derive(Debug, Clone)]
pub struct ReportSummary {
    pub run_dir: PathBuf,
    pub name: String,
    pub db: String,
    pub workload: String,
    pub nemesis: String,
    pub seed: Option<String>,
    pub commit: Option<String>,
    /// Every checker's verdict combined: any invalid wins, then any unknown; at best
    /// unknown for an incomplete run (see [`cap_incomplete`]).
    pub valid: Validity,
    /// Every checker's result as `results.json` holds it.
    pub results: Vec<CheckResult>,
    pub perf: PerfReport,
    pub recovery: RecoveryReport,
    pub panics: usize,
    pub report_html: PathBuf,
}

/// Analyses a finished run and writes its report files: `report.html`, `latency.hlog`
/// (HdrHistogram interval log, one-second intervals) and the `perf`, `recovery`, `stats`
/// and `node-logs` results merged into `results.json` (replacing earlier results of the
/// same names, so running it twice gives the same files). Reads `test.json`,
/// `history.jsonl` and `results.json`. When the run lives in a store (see [`store_of`]),
/// it is also recorded in the store's run index.
pub fn write_run_report(run_dir: &Path) -> anyhow::Result<ReportSummary> {
    write_report(RunData::load(run_dir)?)
}

/// [`write_run_report`] over a run already loaded.
pub fn write_report(run: RunData) -> anyhow::Result<ReportSummary> {
    let run_dir = run.dir.as_path();
    let opts = RecoveryOptions {
        election_timeout_ms_min: run.election_timeout_ms_min(),
        ..Default::default()
    };
    let perf_report = perf::analyze(&run.history);
    let recovery_report = recovery::analyze(&run.history, &opts);
    let stats_report = stats::analyze(&run.history);
    let windows = recovery::fault_windows(&run.history);
    let scan = logs::scan(run_dir, &windows, run.start_unix_ns());

    // Our results, replacing any of the same name.
    let ours = vec![
        CheckResult {
            checker: "perf".into(),
            valid: if perf_report.latency.is_empty() {
                Validity::Unknown
            } else {
                Validity::Valid
            },
            details: serde_json::to_value(&perf_report)?,
        },
        CheckResult {
            checker: "recovery".into(),
            valid: Validity::Valid,
            details: serde_json::to_value(&recovery_report)?,
        },
        CheckResult {
            checker: "stats".into(),
            valid: stats_validity(&stats_report),
            details: serde_json::to_value(&stats_report)?,
        },
        CheckResult {
            checker: "node-logs".into(),
            // A node that panicked is a bug in the system under test, whatever the history says.
            valid: if scan.panics_total > 0 {
                Validity::Invalid
            } else {
                Validity::Valid
            },
            details: serde_json::json!({
                "nodes": scan.nodes, "files": scan.files,
                "panics_total": scan.panics_total, "panics": scan.panics,
            }),
        },
    ];
    let mut results: Vec<CheckResult> = run
        .results
        .iter()
        .filter(|r| !ours.iter().any(|o| o.checker == r.checker))
        .cloned()
        .collect();
    results.extend(ours);
    let valid = cap_incomplete(
        results.iter().fold(Validity::Valid, |v, r| v.and(r.valid)),
        &run.results_raw,
    );
    write_results(run_dir, &run.results_raw, &results, valid)?;

    let base = run
        .start_unix_ns()
        .and_then(|ns| u64::try_from(ns).ok())
        .map(|ns| SystemTime::UNIX_EPOCH + Duration::from_nanos(ns))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut hlog = Vec::new();
    perf::write_interval_log(&run.history, base, Duration::from_secs(1), &mut hlog)
        .map_err(|e| anyhow::anyhow!("writing the interval log: {e}"))?;
    write_atomic(&run_dir.join(LATENCY_HLOG), &hlog)?;

    let summary = ReportSummary {
        run_dir: run_dir.to_path_buf(),
        name: run.name(),
        db: run.db(),
        workload: run.workload(),
        nemesis: run.nemesis(),
        seed: run.seed(),
        commit: run.commit(),
        valid,
        results,
        perf: perf_report,
        recovery: recovery_report,
        panics: scan.panics_total,
        report_html: run_dir.join(REPORT_HTML),
    };
    let page = html::run_page(&run, &summary, &scan);
    write_atomic(&summary.report_html, page.as_bytes())?;
    // The index is a convenience: a run whose index write fails keeps its report.
    if let Some(store) = store_of(run_dir)
        && let Err(e) = index::record(&store, &summary)
    {
        tracing::warn!(error = %format!("{e:#}"), "recording the run in the index");
    }
    Ok(summary)
}

/// An interrupted run, or one the harness could not finish (as the runner's fields in
/// `results.json` say), cannot vouch for the system: its verdict is at best unknown.
pub fn cap_incomplete(valid: Validity, results_json: &serde_json::Value) -> Validity {
    let interrupted = results_json.get("interrupted") == Some(&serde_json::Value::Bool(true));
    let harness_error = results_json
        .get("harness_error")
        .is_some_and(|e| !e.is_null());
    if valid == Validity::Valid && (interrupted || harness_error) {
        Validity::Unknown
    } else {
        valid
    }
}

fn stats_validity(s: &StatsReport) -> Validity {
    if s.ops.is_empty() || !s.never_ok.is_empty() {
        Validity::Unknown
    } else {
        Validity::Valid
    }
}

/// Keeps the fields of an existing `results.json` the report does not own, and the shape
/// of its `results` (a map by name, or a list).
fn write_results(
    dir: &Path,
    raw: &serde_json::Value,
    results: &[CheckResult],
    valid: Validity,
) -> anyhow::Result<()> {
    use serde_json::{Map, Value};
    let as_list = matches!(raw.get("results"), Some(Value::Array(_))) || raw.is_array();
    let results_v = if as_list {
        serde_json::to_value(results)?
    } else {
        let mut m = Map::new();
        for r in results {
            m.insert(r.checker.clone(), serde_json::to_value(r)?);
        }
        Value::Object(m)
    };
    let mut top = match raw {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    top.insert("valid".into(), serde_json::to_value(valid)?);
    top.insert("results".into(), results_v);
    let text = serde_json::to_string_pretty(&Value::Object(top))?;
    write_atomic(&dir.join(RESULTS_JSON), text.as_bytes())
}

/// The store a run directory belongs to (`<store>/<test>/<timestamp>`), recognised by
/// the `latest` link the runner keeps at the store's top; `None` for a directory elsewhere.
pub fn store_of(run_dir: &Path) -> Option<PathBuf> {
    let abs = run_dir.canonicalize().ok()?;
    let store = abs.parent()?.parent()?;
    (store.join("latest").symlink_metadata().is_ok() || store.join(index::INDEX_FILE).is_file())
        .then(|| store.to_path_buf())
}

pub use crate::store::write_atomic;

/// Formats milliseconds for people: `850 ms`, `2.40 s`.
pub fn fmt_ms(ms: f64) -> String {
    if ms >= 10_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if ms >= 10.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

pub fn fmt_opt_ms(ms: Option<f64>) -> String {
    ms.map(fmt_ms).unwrap_or_else(|| "—".into())
}

/// Unavailability of a window, as a lower bound when it never recovered.
pub fn fmt_unavailability(w: &recovery::WindowRecovery) -> String {
    if w.recovered {
        fmt_ms(w.unavailability_ms)
    } else {
        format!("≥ {}", fmt_ms(w.unavailability_ms))
    }
}

pub fn validity_word(v: Validity) -> &'static str {
    match v {
        Validity::Valid => "valid",
        Validity::Invalid => "INVALID",
        Validity::Unknown => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(name: &str, valid: Validity) -> CheckResult {
        CheckResult {
            checker: name.into(),
            valid,
            details: serde_json::json!({}),
        }
    }

    #[test]
    fn results_keep_their_shape_and_other_fields() {
        let dir = std::env::temp_dir().join(format!("faultline-results-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let rs = [
            result("set", Validity::Valid),
            result("stats", Validity::Unknown),
        ];

        let as_map = serde_json::json!({"valid": true, "harness_error": null, "results": {}});
        write_results(&dir, &as_map, &rs, Validity::Unknown).unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(RESULTS_JSON)).unwrap()).unwrap();
        assert_eq!(v["valid"], "unknown");
        assert!(v.as_object().unwrap().contains_key("harness_error"));
        assert_eq!(v["results"]["stats"]["valid"], "unknown");

        let as_list = serde_json::json!({"results": []});
        write_results(&dir, &as_list, &rs, Validity::Invalid).unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(RESULTS_JSON)).unwrap()).unwrap();
        assert_eq!(v["valid"], false);
        assert_eq!(v["results"][0]["checker"], "set");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_incomplete_run_is_at_best_unknown() {
        use serde_json::json;
        let done = json!({"harness_error": null, "interrupted": false});
        assert_eq!(cap_incomplete(Validity::Valid, &done), Validity::Valid);
        let interrupted = json!({"harness_error": null, "interrupted": true});
        assert_eq!(
            cap_incomplete(Validity::Valid, &interrupted),
            Validity::Unknown
        );
        let aborted = json!({"harness_error": "cannot connect", "interrupted": false});
        assert_eq!(cap_incomplete(Validity::Valid, &aborted), Validity::Unknown);
        // A violation found before the run broke off still stands.
        assert_eq!(
            cap_incomplete(Validity::Invalid, &aborted),
            Validity::Invalid
        );
    }

    #[test]
    fn milliseconds_read_naturally() {
        assert_eq!(fmt_ms(0.5), "0.50 ms");
        assert_eq!(fmt_ms(250.0), "250 ms");
        assert_eq!(fmt_ms(2400.0), "2.40 s");
        assert_eq!(fmt_ms(65_000.0), "65.0 s");
    }
}
