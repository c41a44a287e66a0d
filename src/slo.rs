//! Service-level objectives for nightly runs: `--slo unavailability_ms_p99<=2000`.
//!
//! The perf and recovery analyses never fail a run on their own ("slow is not wrong"), so
//! a night in which leader failover went from 200 ms to 5 s would pass. An objective turns
//! one figure into a verdict: breached is `invalid`, naming the figure and the bound; a
//! figure the run could not measure (no fault window for an unavailability objective) is
//! `unknown`, because nothing checked is never valid. Objectives are recorded in
//! `test.json`, so `faultline report` and `check` judge a stored run by the same bounds.

use std::fmt;

use faultline_checkers::perf::PerfReport;
use faultline_checkers::recovery::RecoveryReport;
use faultline_checkers::{CheckResult, Validity};
use serde_json::{Value, json};

/// A figure an objective can bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Over every fault window, unrecovered ones counted at their lower bound.
    UnavailabilityMsP99,
    UnavailabilityMsMax,
    /// Latency of successful operations, whole run.
    LatencyMsP50,
    LatencyMsP99,
    LatencyMsMax,
    ThroughputOkPerS,
    /// Term changes the monitor saw over the run.
    ElectionsMax,
    /// Fault windows the cluster never recovered from.
    UnrecoveredWindowsMax,
}

const METRICS: &[(&str, Metric)] = &[
    ("unavailability_ms_p99", Metric::UnavailabilityMsP99),
    ("unavailability_ms_max", Metric::UnavailabilityMsMax),
    ("latency_ms_p50", Metric::LatencyMsP50),
    ("latency_ms_p99", Metric::LatencyMsP99),
    ("latency_ms_max", Metric::LatencyMsMax),
    ("throughput_ok_per_s", Metric::ThroughputOkPerS),
    ("elections_max", Metric::ElectionsMax),
    ("unrecovered_windows_max", Metric::UnrecoveredWindowsMax),
];

impl Metric {
    pub fn name(self) -> &'static str {
        METRICS.iter().find(|(_, m)| *m == self).map(|(n, _)| *n).expect("every metric is listed")
    }

    /// The run's figure, or `None` when the run has nothing to measure it by.
    fn figure(self, perf: &PerfReport, recovery: &RecoveryReport) -> Option<f64> {
        let unavailability: Vec<f64> = recovery.windows.iter().map(|w| w.unavailability_ms).collect();
        match self {
            Metric::UnavailabilityMsP99 => faultline_checkers::recovery::quantile(&unavailability, 0.99),
            Metric::UnavailabilityMsMax => unavailability.iter().copied().reduce(f64::max),
            Metric::LatencyMsP50 => perf.ok_latency.as_ref().map(|q| q.p50_ms),
            Metric::LatencyMsP99 => perf.ok_latency.as_ref().map(|q| q.p99_ms),
            Metric::LatencyMsMax => perf.ok_latency.as_ref().map(|q| q.max_ms),
            Metric::ThroughputOkPerS => (perf.duration_ms > 0.0).then_some(perf.ok_per_s),
            Metric::ElectionsMax => Some(recovery.elections_total as f64),
            Metric::UnrecoveredWindowsMax => {
                Some(recovery.windows.iter().filter(|w| !w.recovered).count() as f64)
            }
        }
    }
}

/// `KEY<=VALUE` or `KEY>=VALUE`.
#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    pub metric: Metric,
    pub at_most: bool,
    pub bound: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum SloError {
    #[error("{0:?}: expected KEY<=VALUE or KEY>=VALUE (e.g. unavailability_ms_p99<=2000)")]
    Shape(String),
    #[error("{given:?}: unknown figure; known: {known}")]
    Metric { given: String, known: String },
    #[error("{0:?}: the bound is not a number")]
    Bound(String),
}

impl std::str::FromStr for Slo {
    type Err = SloError;

    fn from_str(s: &str) -> Result<Slo, SloError> {
        let (key, bound, at_most) = if let Some((k, v)) = s.split_once("<=") {
            (k, v, true)
        } else if let Some((k, v)) = s.split_once(">=") {
            (k, v, false)
        } else {
            return Err(SloError::Shape(s.to_string()));
        };
        let key = key.trim().replace('-', "_");
        let metric = METRICS
            .iter()
            .find(|(n, _)| *n == key)
            .map(|(_, m)| *m)
            .ok_or_else(|| SloError::Metric {
                given: key.clone(),
                known: METRICS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
            })?;
        let bound: f64 = bound.trim().parse().map_err(|_| SloError::Bound(s.to_string()))?;
        if !bound.is_finite() {
            return Err(SloError::Bound(s.to_string()));
        }
        Ok(Slo { metric, at_most, bound })
    }
}

impl fmt::Display for Slo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = if self.at_most { "<=" } else { ">=" };
        write!(f, "{}{op}{}", self.metric.name(), self.bound)
    }
}

/// The objectives a stored run recorded (`test.json`'s `slos`).
pub fn of_test(test: &Value) -> Vec<Slo> {
    test.get("slos")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

/// The `slo` result: invalid when any objective is breached, unknown when one could not be
/// measured, `None` when the run has no objectives.
pub fn check(slos: &[Slo], perf: &PerfReport, recovery: &RecoveryReport) -> Option<CheckResult> {
    if slos.is_empty() {
        return None;
    }
    let mut valid = Validity::Valid;
    let mut rows = Vec::new();
    let mut breached = Vec::new();
    for s in slos {
        let figure = s.metric.figure(perf, recovery);
        let ok = figure.map(|x| if s.at_most { x <= s.bound } else { x >= s.bound });
        valid = valid.and(match ok {
            Some(true) => Validity::Valid,
            Some(false) => Validity::Invalid,
            None => Validity::Unknown,
        });
        if ok == Some(false) {
            breached.push(format!("{} is {} (objective {s})", s.metric.name(), fmt_figure(figure)));
        }
        rows.push(json!({"objective": s.to_string(), "figure": figure, "met": ok}));
    }
    Some(CheckResult {
        checker: "slo".into(),
        valid,
        details: json!({"objectives": rows, "breached": breached}),
    })
}

fn fmt_figure(x: Option<f64>) -> String {
    x.map(|x| format!("{x:.1}")).unwrap_or_else(|| "unmeasured".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objectives_parse_and_print_back() {
        let s: Slo = "unavailability_ms_p99<=2000".parse().unwrap();
        assert_eq!(s.metric, Metric::UnavailabilityMsP99);
        assert!(s.at_most);
        assert_eq!(s.to_string(), "unavailability_ms_p99<=2000");
        let s: Slo = "throughput-ok-per-s >= 100".parse().unwrap();
        assert!(!s.at_most && s.bound == 100.0);
        assert!("latency_ms_p99<50".parse::<Slo>().unwrap_err().to_string().contains("KEY<=VALUE"));
        assert!("latency_p99<=50".parse::<Slo>().unwrap_err().to_string().contains("latency_ms_p99"));
        assert!("latency_ms_p99<=fast".parse::<Slo>().is_err());
    }

    fn reports(unavailability: &[(f64, bool)], ok_per_s: f64) -> (PerfReport, RecoveryReport) {
        let mut perf = faultline_checkers::perf::analyze(&[]);
        perf.ok_per_s = ok_per_s;
        perf.duration_ms = 10_000.0;
        let windows = unavailability
            .iter()
            .enumerate()
            .map(|(i, (u, rec))| {
                serde_json::from_value(json!({
                    "n": i + 1, "family": "kill", "start_ms": 0.0, "end_ms": null,
                    "span_end_ms": 0.0, "value": null, "recovered": rec, "unavailability_ms": u,
                    "unavailability_election_timeouts": null, "first_error_ms": null,
                    "first_write_after_start_ms": null, "first_write_after_heal_ms": null,
                    "baseline_ok_per_s": null, "dip_ok_per_s": null, "dip_ratio": null,
                    "back_to_90pct_ms": null, "ops_lost": null, "elections": 1
                }))
                .unwrap()
            })
            .collect();
        let recovery = RecoveryReport {
            election_timeout_ms_min: None,
            windows,
            families: vec![],
            unavailability_ms_p99: None,
            unavailability_ms_max: None,
            elections_total: 3,
        };
        (perf, recovery)
    }

    #[test]
    fn a_breached_objective_is_invalid_and_names_figure_and_bound() {
        let slos: Vec<Slo> = vec!["unavailability_ms_p99<=1000".parse().unwrap()];
        let (p, r) = reports(&[(200.0, true), (5000.0, true)], 150.0);
        let c = check(&slos, &p, &r).unwrap();
        assert_eq!(c.valid, Validity::Invalid);
        let b = c.details["breached"][0].as_str().unwrap();
        assert!(b.contains("5000.0") && b.contains("<=1000"), "{b}");
        let (p, r) = reports(&[(200.0, true), (300.0, true)], 150.0);
        assert_eq!(check(&slos, &p, &r).unwrap().valid, Validity::Valid);
    }

    #[test]
    fn an_unrecovered_window_counts_at_its_lower_bound() {
        let slos: Vec<Slo> = vec!["unavailability_ms_max<=1000".parse().unwrap()];
        let (p, r) = reports(&[(200.0, true), (1500.0, false)], 150.0);
        assert_eq!(check(&slos, &p, &r).unwrap().valid, Validity::Invalid);
    }

    #[test]
    fn an_objective_the_run_cannot_measure_is_unknown_not_met() {
        // No fault window: there is no unavailability to bound.
        let slos: Vec<Slo> = vec!["unavailability_ms_p99<=1000".parse().unwrap()];
        let (p, r) = reports(&[], 150.0);
        assert_eq!(check(&slos, &p, &r).unwrap().valid, Validity::Unknown);
        assert!(check(&[], &p, &r).is_none());
        let slos: Vec<Slo> = vec!["throughput_ok_per_s>=100".parse().unwrap()];
        assert_eq!(check(&slos, &p, &r).unwrap().valid, Validity::Valid);
        let (p, r) = reports(&[], 50.0);
        assert_eq!(check(&slos, &p, &r).unwrap().valid, Validity::Invalid);
    }
}
