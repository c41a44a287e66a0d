//! Regression gates for nightly runs: `--baseline last:7 --regression-max 25%`.
//!
//! Each figure of a run (throughput, latency p99, unavailability p99) is compared with the
//! median of the last N comparable runs in the store's run index — same test name, db,
//! workload and nemesis, started before this run, not invalid — and the run fails when a
//! figure is worse than that median by more than the margin. The spec is recorded in
//! `test.json`, so `faultline report` re-judges a stored run against the same baseline.
//! With no comparable run yet there is no baseline and no gate (said so in the log).

use std::path::Path;

use faultline_checkers::perf::PerfReport;
use faultline_checkers::recovery::RecoveryReport;
use faultline_checkers::{CheckResult, Validity};
use rusqlite::params;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// How many runs make the baseline, and how much worse a figure may be.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub last: usize,
    pub regression_max_pct: f64,
}

/// Runs a baseline may span at most.
const BASELINE_RUNS_MAX: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("--baseline {0:?}: expected last:N (e.g. last:7)")]
    Spec(String),
    #[error("--regression-max {0:?}: expected a percentage above 0 (e.g. 25%)")]
    Margin(String),
}

impl Baseline {
    pub fn parse(spec: &str, margin: &str) -> Result<Baseline, BaselineError> {
        let last: usize = spec
            .strip_prefix("last:")
            .and_then(|n| n.trim().parse().ok())
            .filter(|n| (1..=BASELINE_RUNS_MAX).contains(n))
            .ok_or_else(|| BaselineError::Spec(spec.to_string()))?;
        let pct: f64 = margin
            .trim()
            .trim_end_matches('%')
            .trim()
            .parse()
            .ok()
            .filter(|p: &f64| p.is_finite() && *p > 0.0)
            .ok_or_else(|| BaselineError::Margin(margin.to_string()))?;
        Ok(Baseline {
            last,
            regression_max_pct: pct,
        })
    }

    /// The spec a stored run recorded (`test.json`'s `baseline`).
    pub fn of_test(test: &Value) -> Option<Baseline> {
        serde_json::from_value(test.get("baseline")?.clone()).ok()
    }
}

/// A figure and which way is better.
struct Figure {
    name: &'static str,
    column: &'static str,
    higher_is_better: bool,
    value: Option<f64>,
}

fn figures(perf: &PerfReport, recovery: &RecoveryReport) -> Vec<Figure> {
    vec![
        Figure {
            name: "throughput_ok_per_s",
            column: "ok_per_s",
            higher_is_better: true,
            value: (perf.duration_ms > 0.0).then_some(perf.ok_per_s),
        },
        Figure {
            name: "latency_ms_p99",
            column: "latency_ms_p99",
            higher_is_better: false,
            value: perf.ok_latency.as_ref().map(|q| q.p99_ms),
        },
        Figure {
            name: "unavailability_ms_p99",
            column: "unavailability_ms_p99",
            higher_is_better: false,
            value: recovery.unavailability_ms_p99,
        },
    ]
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

/// Identity of comparable runs and this run's start (its directory name).
pub struct RunKey<'a> {
    pub name: &'a str,
    pub db: &'a str,
    pub workload: &'a str,
    pub nemesis: &'a str,
    pub started: &'a str,
}

/// The `baseline` result, or `None` when there is nothing to compare with.
pub fn check(
    store: &Path,
    key: &RunKey<'_>,
    b: Baseline,
    perf: &PerfReport,
    recovery: &RecoveryReport,
) -> anyhow::Result<Option<CheckResult>> {
    let conn = crate::report::index::open(store)?;
    let mut rows = Vec::new();
    let mut valid = Validity::Valid;
    let mut regressed = Vec::new();
    let mut compared = 0usize;
    for f in figures(perf, recovery) {
        // `column` is one of ours, so splicing it in is safe.
        let sql = format!(
            "SELECT {c} FROM runs WHERE name = ?1 AND db = ?2 AND workload = ?3 AND nemesis = ?4
               AND started < ?5 AND verdict != 'INVALID' AND {c} IS NOT NULL
             ORDER BY started DESC LIMIT ?6",
            c = f.column
        );
        let mut stmt = conn.prepare(&sql)?;
        let past: Vec<f64> = stmt
            .query_map(
                params![key.name, key.db, key.workload, key.nemesis, key.started, b.last as i64],
                |r| r.get::<_, f64>(0),
            )?
            .collect::<Result<_, _>>()?;
        compared = compared.max(past.len());
        let base = median(past.clone());
        let (Some(now), Some(base)) = (f.value, base) else {
            rows.push(json!({"figure": f.name, "value": f.value, "baseline": base, "runs": past.len()}));
            continue;
        };
        let m = b.regression_max_pct / 100.0;
        let worse = if f.higher_is_better {
            now < base * (1.0 - m)
        } else {
            now > base * (1.0 + m)
        };
        if worse {
            valid = Validity::Invalid;
            regressed.push(format!(
                "{} is {now:.1}, baseline {base:.1} (median of {} runs), more than {}% worse",
                f.name,
                past.len(),
                b.regression_max_pct
            ));
        }
        rows.push(json!({
            "figure": f.name, "value": now, "baseline": base, "runs": past.len(),
            "regression_max_pct": b.regression_max_pct, "regressed": worse,
        }));
    }
    if compared == 0 {
        tracing::info!(name = key.name, db = key.db, "no comparable runs yet: no baseline gate");
        return Ok(None);
    }
    Ok(Some(CheckResult {
        checker: "baseline".into(),
        valid,
        details: json!({"last": b.last, "figures": rows, "regressed": regressed}),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_say_what_is_expected() {
        assert_eq!(
            Baseline::parse("last:7", "25%").unwrap(),
            Baseline {
                last: 7,
                regression_max_pct: 25.0
            }
        );
        assert!(Baseline::parse("7", "25%").unwrap_err().to_string().contains("last:N"));
        assert!(Baseline::parse("last:0", "25%").is_err());
        assert!(Baseline::parse("last:7", "-5%").unwrap_err().to_string().contains("percentage"));
    }

    #[test]
    fn median_of_even_and_odd_samples() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }
}
