//! Did every kind of operation get through at least once, and how much failed?
//!
//! A history in which, say, no `cas` ever succeeded says nothing about whether `cas` is
//! safe: a linearizability checker would pass it vacuously. So an op type that was
//! invoked but never succeeded makes this checker `unknown` (not `invalid`: nothing wrong
//! was observed, only nothing useful).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::history::Event;
use faultline_history::digest::Digest;
use faultline_history::pairing::Outcome;
use crate::registry::{CheckResult, Checker, Validity};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpStats {
    pub f: String,
    pub count: u64,
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
    pub fail_share: f64,
    pub info_share: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsReport {
    pub ops: Vec<OpStats>,
    /// Op types invoked that never succeeded.
    pub never_ok: Vec<String>,
    pub fail_share: f64,
    pub info_share: f64,
}

pub fn analyze(history: &[Event]) -> StatsReport {
    analyze_digest(&Digest::of(history))
}

pub fn analyze_digest(digest: &Digest) -> StatsReport {
    let mut by_id: Vec<[u64; 3]> = vec![[0; 3]; digest.fs.len()];
    for op in &digest.ops {
        if let Some(c) = by_id.get_mut(op.f as usize) {
            c[match op.outcome {
                Outcome::Ok => 0,
                Outcome::Fail => 1,
                Outcome::Info => 2,
            }] += 1;
        }
    }
    // Function ids of invocations that never completed have no counts: skip them, as
    // pairing the events does.
    let mut by_f: BTreeMap<&str, [u64; 3]> = BTreeMap::new();
    for (f, c) in digest.fs.iter().zip(&by_id) {
        if c.iter().any(|n| *n > 0) {
            by_f.insert(f.as_str(), *c);
        }
    }
    let share = |n: u64, d: u64| if d == 0 { 0.0 } else { n as f64 / d as f64 };
    let rows: Vec<OpStats> = by_f
        .iter()
        .map(|(f, [ok, fail, info])| {
            let count = ok + fail + info;
            OpStats {
                f: f.to_string(),
                count,
                ok: *ok,
                fail: *fail,
                info: *info,
                fail_share: share(*fail, count),
                info_share: share(*info, count),
            }
        })
        .collect();
    let total: u64 = rows.iter().map(|r| r.count).sum();
    StatsReport {
        never_ok: rows
            .iter()
            .filter(|r| r.ok == 0)
            .map(|r| r.f.clone())
            .collect(),
        fail_share: share(rows.iter().map(|r| r.fail).sum(), total),
        info_share: share(rows.iter().map(|r| r.info).sum(), total),
        ops: rows,
    }
}

/// Registered as `stats`.
pub struct StatsChecker;

impl Checker for StatsChecker {
    fn name(&self) -> &'static str {
        "stats"
    }

    fn check(&self, history: &[Event]) -> CheckResult {
        crate::registry::unless_nothing_checked(history, result(&analyze(history)))
    }
}

/// The verdict on a report already computed: a run with no operations, or an operation
/// kind that never once succeeded, did not exercise what it claims to test.
pub fn result(report: &StatsReport) -> CheckResult {
    let valid = if report.ops.is_empty() || !report.never_ok.is_empty() {
        Validity::Unknown
    } else {
        Validity::Valid
    };
    CheckResult {
        checker: "stats".to_string(),
        valid,
        details: serde_json::to_value(report).unwrap_or(serde_json::Value::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::EventType;
    use crate::recovery::test_support::*;

    #[test]
    fn every_op_type_succeeding_once_is_valid_with_shares() {
        let h = vec![
            inv(0, 0, "read"),
            done(0, 1, EventType::Ok, "read"),
            inv(0, 2, "write"),
            done(0, 3, EventType::Fail, "write"),
            inv(0, 4, "write"),
            done(0, 5, EventType::Ok, "write"),
            inv(0, 6, "write"),
            done(0, 7, EventType::Info, "write"),
        ];
        let r = StatsChecker.check(&h);
        assert_eq!(r.valid, Validity::Valid);
        let s = analyze(&h);
        let w = s.ops.iter().find(|o| o.f == "write").unwrap();
        assert_eq!((w.count, w.ok, w.fail, w.info), (3, 1, 1, 1));
        assert!((s.fail_share - 0.25).abs() < 1e-9);
        assert!((s.info_share - 0.25).abs() < 1e-9);
    }

    #[test]
    fn an_op_type_that_never_succeeded_is_unknown() {
        let h = vec![
            inv(0, 0, "read"),
            done(0, 1, EventType::Ok, "read"),
            inv(0, 2, "cas"),
            done(0, 3, EventType::Fail, "cas"),
        ];
        let r = StatsChecker.check(&h);
        assert_eq!(r.valid, Validity::Unknown);
        assert_eq!(analyze(&h).never_ok, vec!["cas".to_string()]);
        assert_eq!(StatsChecker.check(&[]).valid, Validity::Unknown);
    }
}
