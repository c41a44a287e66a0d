//! Reports over stored runs: `results.json` (every checker's verdict and figures),
//! `report.html` (one self-contained page), HdrHistogram interval logs, the terminal
//! summary, comparisons between runs, the run index, and the nightly suite.
//!
//! The runner calls [`write_run_report`] when a run ends; `faultline compare`, `suite`,
//! `runs`, `trend` and `serve` build on the files it leaves.

pub mod compare;
pub mod cycles;
pub mod html;
pub mod index;
pub mod junit;
pub mod logs;
pub mod plots;
pub mod run;
pub mod serve;
pub mod summary;
pub mod templates;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use faultline_checkers::perf::{self, PerfReport};
use faultline_checkers::recovery::{self, RecoveryReport};
use faultline_checkers::{CheckResult, Validity};

pub use run::RunData;
pub use summary::print_summary;

/// Names of the files the report writes in a run directory.
pub const REPORT_HTML: &str = "report.html";
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
    /// unknown for an incomplete run (see [`crate::verdict`]).
    pub valid: Validity,
    /// Why `valid` is capped at unknown, if it is.
    pub caps: Vec<String>,
    /// Every checker's result as `results.json` holds it.
    pub results: Vec<CheckResult>,
    pub perf: PerfReport,
    pub recovery: RecoveryReport,
    pub panics: usize,
    pub report_html: PathBuf,
}

/// Judges a stored run with the one verdict pipeline (see [`crate::verdict`]), writes its
/// `results.json` and its report files. For `faultline report`: the run's facts come from
/// its `results.json`, and a run without one never finished, so it is at best unknown.
pub fn write_run_report(run_dir: &Path) -> anyhow::Result<ReportSummary> {
    let run = RunData::load(run_dir)?;
    let facts = crate::verdict::RunFacts::of_results(&run.results_raw);
    let stats = run.results_raw.get("stats").cloned().unwrap_or(serde_json::Value::Null);
    let analysis = crate::verdict::analyze(&run, None, &facts)?;
    crate::verdict::write_results(run_dir, &analysis, &facts, &stats)?;
    write_report(&run, analysis)
}

/// Writes the report files of a run already judged: `report.html`, `latency.hlog`
/// (HdrHistogram interval log, one-second intervals), and the run's line in the store's run
/// index when the run lives in a store (see [`store_of`]). Judges nothing itself.
pub fn write_report(run: &RunData, analysis: crate::verdict::Analysis) -> anyhow::Result<ReportSummary> {
    let run_dir = run.dir.as_path();
    let base = run
        .start_unix_ns()
        .and_then(|ns| u64::try_from(ns).ok())
        .map(|ns| SystemTime::UNIX_EPOCH + Duration::from_nanos(ns))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut hlog = Vec::new();
    perf::write_interval_log_digest(&run.digest, base, Duration::from_secs(1), &mut hlog)
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
        valid: analysis.valid,
        caps: analysis.caps,
        results: analysis.results,
        perf: analysis.perf,
        recovery: analysis.recovery,
        panics: analysis.scan.panics_total,
        report_html: run_dir.join(REPORT_HTML),
    };
    let page = html::run_page(run, &summary, &analysis.scan);
    write_atomic(&summary.report_html, page.as_bytes())?;
    // The index is a convenience: a run whose index write fails keeps its report.
    if let Some(store) = store_of(run_dir)
        && let Err(e) = index::record(&store, &summary)
    {
        tracing::warn!(error = %format!("{e:#}"), "recording the run in the index");
    }
    Ok(summary)
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


    #[test]
    fn milliseconds_read_naturally() {
        assert_eq!(fmt_ms(0.5), "0.50 ms");
        assert_eq!(fmt_ms(250.0), "250 ms");
        assert_eq!(fmt_ms(2400.0), "2.40 s");
        assert_eq!(fmt_ms(65_000.0), "65.0 s");
    }
}
