//! How each fault hurt availability and how fast the cluster came back, measured from op
//! timestamps rather than by sampling, so a 40 ms outage is not rounded to a poll period.
//!
//! A fault window runs from the completion of the nemesis's `start-<family>` to the
//! completion of the matching `stop-<family>`. Each window is judged over its *span*: from
//! the fault's start to the next window's start (or the end of the history), because a
//! protocol often stalls again after the heal (a rejoining node with a higher term forces
//! an election) and that cost belongs to the fault that caused it. Client figures stop
//! where the write load stops (the last completion of a write): the final reads and the
//! quiet recovery wait after it are not an outage. Elections count over the whole span.
//!
//! Figures (all in milliseconds unless named otherwise):
//! - `unavailability_ms`: the longest stretch between two successful writes (completion
//!   times) that overlaps the fault window. A write is any op whose `f` is not a read.
//!   When no write succeeds after the fault started, the cluster never recovered within
//!   the span: `recovered` is false and the figure is a lower bound (shown as "≥").
//! - `first_error_ms`: fault start to the first failed or indeterminate completion; a
//!   failure that is the data model's refusal (cas mismatch, insufficient funds; see
//!   [`is_refusal`]) is an answer, not an error, and does not count.
//! - `first_write_after_start_ms` / `first_write_after_heal_ms`: to the first successful
//!   write *invoked* after the fault start / the heal (an op already in flight proves
//!   nothing about the state the fault left).
//! - `dip_ratio`: the lowest one-second bucket of successful ops in the span (buckets
//!   aligned to the fault start) over the baseline, the mean rate over up to
//!   [`RecoveryOptions::baseline_s_max`] whole seconds of healthy time before the fault.
//! - `back_to_90pct_ms`: fault start to the moment from which the cluster delivered at
//!   least 90% of the baseline rate, allowing for Poisson noise (see [`back_to_90pct_ns`]
//!   and `docs/results.md`). `0` when the rate never fell measurably below 90%; `None`
//!   without a baseline or when it never came back within the span.
//! - `ops_lost`: baseline rate × whole buckets in the span − successful ops in them.
//! - `elections`: distinct new terms first seen in the monitor's status samples during
//!   the span.
//!
//! Like `perf`, this checker never decides validity.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::history::{Event, EventType};
use faultline_history::digest::{Digest, OpRecord};
use faultline_history::pairing::Outcome;
use crate::registry::{CheckResult, Checker, Validity};

const S_NS: u64 = 1_000_000_000;
const MS_NS: f64 = 1_000_000.0;

/// One fault, from its start's completion to its heal's completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultWindow {
    /// `partition`, `kill`, `pause`, …: the `f` of `start-<family>` without the prefix.
    pub family: String,
    pub start_ns: u64,
    /// `None` when the history ended before the heal completed.
    pub end_ns: Option<u64>,
    /// The nemesis's description of the fault (`value` of the start event).
    pub value: serde_json::Value,
}

/// Pairs nemesis `start-X` / `stop-X` events into windows, in order of start. Several
/// families may be active at once; within one family starts and stops pair first-in,
/// first-out. A start without a completion begins at its invocation; a start whose
/// completion carries an error was not applied and is no window.
pub fn fault_windows(history: &[Event]) -> Vec<FaultWindow> {
    let mut windows: Vec<FaultWindow> = Vec::new();
    let mut pending_start: BTreeMap<String, (u64, serde_json::Value)> = BTreeMap::new();
    let mut pending_stop: BTreeMap<String, u64> = BTreeMap::new();
    let mut open: BTreeMap<String, VecDeque<usize>> = BTreeMap::new();
    let open_window = |windows: &mut Vec<FaultWindow>,
                       open: &mut BTreeMap<String, VecDeque<usize>>,
                       family: &str,
                       t: u64,
                       value: serde_json::Value| {
        windows.push(FaultWindow {
            family: family.to_string(),
            start_ns: t,
            end_ns: None,
            value,
        });
        open.entry(family.to_string())
            .or_default()
            .push_back(windows.len() - 1);
    };
    for e in history.iter().filter(|e| e.process.is_nemesis()) {
        if let Some(family) = e.f.strip_prefix("start-") {
            match e.kind {
                EventType::Invoke => {
                    if let Some((t, v)) = pending_start.remove(family) {
                        open_window(&mut windows, &mut open, family, t, v);
                    }
                    pending_start.insert(family.to_string(), (e.time, e.value.clone()));
                }
                _ => {
                    let pending = pending_start.remove(family);
                    // A start that failed never took effect: no window, no figures.
                    if e.error.is_some() {
                        continue;
                    }
                    let (t, v) = match pending {
                        Some((_, v)) if !v.is_null() => (e.time, v),
                        _ => (e.time, e.value.clone()),
                    };
                    open_window(&mut windows, &mut open, family, t, v);
                }
            }
        } else if let Some(family) = e.f.strip_prefix("stop-") {
            match e.kind {
                EventType::Invoke => {
                    pending_stop.insert(family.to_string(), e.time);
                }
                _ => {
                    pending_stop.remove(family);
                    if let Some(i) = open.get_mut(family).and_then(|q| q.pop_front()) {
                        windows[i].end_ns = Some(e.time.max(windows[i].start_ns));
                    }
                }
            }
        }
    }
    for (family, (t, v)) in pending_start {
        open_window(&mut windows, &mut open, &family, t, v);
    }
    windows.sort_by_key(|w| w.start_ns);
    windows
}

/// Nemesis faults by outcome, from the history alone: `planned` start invocations, of which
/// `applied` completed without error and `failed` completed with one (a start still in
/// flight when the history ends is neither).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultCounts {
    pub planned: usize,
    pub applied: usize,
    pub failed: usize,
}

pub fn fault_counts(history: &[Event]) -> FaultCounts {
    let mut c = FaultCounts::default();
    for e in history.iter().filter(|e| e.process.is_nemesis() && e.f.starts_with("start-")) {
        match (e.kind, &e.error) {
            (EventType::Invoke, _) => c.planned += 1,
            (_, Some(_)) => c.failed += 1,
            (_, None) => c.applied += 1,
        }
    }
    c
}

/// Planned faults that were not applied. A run with any cannot vouch for the system under
/// the faults it asked for: its verdict is at best unknown.
pub fn faults_failed(history: &[Event]) -> usize {
    fault_counts(history).failed
}

pub use faultline_history::digest::is_refusal;

/// Reads are the only ops that do not count as writes for availability.
pub fn is_write(f: &str) -> bool {
    !(f == "read" || f.starts_with("read-") || f == "get")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryOptions {
    /// The smallest election timeout the nodes were configured with, to express
    /// unavailability as a multiple of it; `None` when unknown.
    pub election_timeout_ms_min: Option<f64>,
    /// Healthy seconds before a fault averaged into its baseline.
    pub baseline_s_max: u64,
}

impl Default for RecoveryOptions {
    fn default() -> Self {
        RecoveryOptions {
            election_timeout_ms_min: None,
            baseline_s_max: 10,
        }
    }
}

/// Recovery figures of one fault window. See the module docs for definitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowRecovery {
    /// 1-based, in order of fault start.
    pub n: usize,
    pub family: String,
    pub start_ms: f64,
    /// `None` when the fault was never healed within the history.
    pub end_ms: Option<f64>,
    /// End of the span this window is judged over.
    pub span_end_ms: f64,
    pub value: serde_json::Value,
    pub recovered: bool,
    pub unavailability_ms: f64,
    pub unavailability_election_timeouts: Option<f64>,
    pub first_error_ms: Option<f64>,
    pub first_write_after_start_ms: Option<f64>,
    pub first_write_after_heal_ms: Option<f64>,
    pub baseline_ok_per_s: Option<f64>,
    pub dip_ok_per_s: Option<f64>,
    pub dip_ratio: Option<f64>,
    pub back_to_90pct_ms: Option<f64>,
    pub ops_lost: Option<f64>,
    pub elections: u64,
}

/// Summary over the windows of one fault family. Windows that never recovered are
/// counted, not averaged in: their figure is only a lower bound.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FamilySummary {
    pub family: String,
    pub windows: usize,
    pub unrecovered: usize,
    pub unavailability_ms_median: Option<f64>,
    pub unavailability_ms_p99: Option<f64>,
    pub unavailability_ms_max: Option<f64>,
    pub elections_total: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryReport {
    pub election_timeout_ms_min: Option<f64>,
    pub windows: Vec<WindowRecovery>,
    pub families: Vec<FamilySummary>,
    /// Over every recovered window of every family.
    pub unavailability_ms_p99: Option<f64>,
    pub unavailability_ms_max: Option<f64>,
    pub elections_total: u64,
}

/// The position of the nearest-rank `q` quantile in a sorted sample of `len` values: the
/// smallest value with at least a share `q` of the sample at or below it. One definition
/// for every quantile faultline reports, so a recovery table and a bench agree.
pub fn nearest_rank(len: usize, q: f64) -> Option<usize> {
    (len > 0).then(|| ((q * len as f64).ceil() as usize).clamp(1, len) - 1)
}

/// Nearest-rank quantile of an unsorted sample.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    Some(v[nearest_rank(v.len(), q)?])
}

fn ms(ns: u64) -> f64 {
    ns as f64 / MS_NS
}

fn count_elections(samples: &[(u64, u64)], from: u64, to: u64) -> u64 {
    let before = samples
        .iter()
        .filter(|(t, _)| *t < from)
        .map(|(_, x)| *x)
        .max();
    let mut new: BTreeSet<u64> = BTreeSet::new();
    for &(t, term) in samples {
        if t >= from && t < to && before.is_none_or(|b| term > b) {
            new.insert(term);
        }
    }
    // With no sample before the window the first term seen is the incumbent's, not new.
    if before.is_none()
        && let Some(&first) = new.iter().next()
    {
        new.remove(&first);
    }
    new.len() as u64
}

/// Successful ops completed in `[from, to)`, from their sorted completion times.
/// Step of the grid [`back_to_90pct_ns`] searches, and the most steps it takes.
const BACK_GRID_NS: u64 = 10_000_000;
const BACK_GRID_STEPS_MAX: u64 = 4000;
/// Standard deviations of Poisson noise a shortfall must exceed to count.
const BACK_NOISE_Z: f64 = 3.0;

/// When the cluster was back to 90% of `baseline_per_s`, from the fault start `ws`, over
/// the span `[ws, span_end]`; `ok_times` are sorted completion times of successful ops.
///
/// A one-second bucket of a healthy cluster at 200 ops/s holds 200 ± 14 ops, so "the first
/// bucket at 90% after the lowest" lands on noise (a late unlucky bucket, or the lowest
/// bucket being noise when nothing was hurt) and jumps by whole seconds. Instead:
///
/// `t1` is the earliest point of a 10 ms grid from `ws` such that every later interval
/// `(t1, u]` of the span delivered at least `0.9·b·(u−t1) − 3·sqrt(0.9·b·(u−t1)) − 1`
/// successful ops (`b` the baseline per ns): from `t1` on, the cluster never fell short of
/// 90% of the baseline by more than three standard deviations of Poisson noise at that
/// rate. The result is `t1 − ws` when `t1 = ws` (no measurable dip: `Some(0)`), otherwise
/// the time to the first successful completion at or after `t1` (the delivery that
/// brought it back); `None` when no completion follows `t1` within the span.
///
/// The tolerance may put `t1` before the true recovery by the time 90% of the baseline
/// takes to deliver about 11 ops (55 ms at 200 ops/s); snapping to the next completion
/// removes that bias when the recovery is a clean restart, as after an election. The tail
/// of a partial dip is within noise for longer (half the rate at 200 ops/s: about 0.3 s).
pub fn back_to_90pct_ns(ok_times: &[u64], ws: u64, span_end: u64, baseline_per_s: f64) -> Option<u64> {
    if baseline_per_s <= 0.0 || span_end <= ws {
        return None;
    }
    let span = span_end - ws;
    let step = BACK_GRID_NS.max(span.div_ceil(BACK_GRID_STEPS_MAX));
    let grid: Vec<u64> = (0..=span / step).map(|k| ws + k * step).collect();
    // Completions at or before each grid point, so (t, u] counts are differences.
    let upto: Vec<u64> = grid.iter().map(|g| ok_times.partition_point(|t| t <= g) as u64).collect();
    let rate_per_ns = 0.9 * baseline_per_s / 1e9;
    let holds_from = |i: usize| {
        (i + 1..grid.len()).all(|j| {
            let expected = rate_per_ns * (grid[j] - grid[i]) as f64;
            (upto[j] - upto[i]) as f64 >= expected - BACK_NOISE_Z * expected.sqrt() - 1.0
        })
    };
    let i1 = (0..grid.len()).find(|&i| holds_from(i))?;
    if i1 == 0 {
        return Some(0);
    }
    let t1 = grid[i1];
    let k = ok_times.partition_point(|t| *t < t1);
    ok_times.get(k).filter(|t| **t <= span_end).map(|t| t - ws)
}

/// The earliest completion among ops invoked at or after a time, for any time, by binary
/// search: ops sorted by invocation with the minimum completion of every suffix.
struct FirstCompletion {
    invoke_ns: Vec<u64>,
    /// `suffix_min[k]`: the earliest completion of the ops from `k` on, in invocation order.
    suffix_min: Vec<u64>,
}

impl FirstCompletion {
    fn of(ops: impl Iterator<Item = (u64, u64)>) -> FirstCompletion {
        let mut v: Vec<(u64, u64)> = ops.collect();
        v.sort_unstable();
        let mut suffix_min = vec![0; v.len()];
        let mut min = u64::MAX;
        for (k, &(_, c)) in v.iter().enumerate().rev() {
            min = min.min(c);
            suffix_min[k] = min;
        }
        FirstCompletion {
            invoke_ns: v.into_iter().map(|(i, _)| i).collect(),
            suffix_min,
        }
    }

    fn after(&self, from: u64) -> Option<u64> {
        self.suffix_min.get(self.invoke_ns.partition_point(|t| *t < from)).copied()
    }
}

fn ok_between(ok_times: &[u64], from: u64, to: u64) -> u64 {
    (ok_times.partition_point(|t| *t < to) - ok_times.partition_point(|t| *t < from)) as u64
}

pub fn analyze(history: &[Event], opts: &RecoveryOptions) -> RecoveryReport {
    analyze_digest(&Digest::of(history), opts)
}

pub fn analyze_digest(d: &Digest, opts: &RecoveryOptions) -> RecoveryReport {
    let ops = &d.ops;
    let end = d.end_ns;
    let windows = fault_windows(&d.nemesis);
    let terms = &d.terms;
    let write_f: Vec<bool> = d.fs.iter().map(|f| is_write(f)).collect();
    let is_write_op = |o: &OpRecord| write_f.get(o.f as usize).copied().unwrap_or(true);
    // Every per-window figure below is a search in one of these sorted arrays, so judging
    // an hour with hundreds of fault windows costs one sort, not one scan per window.
    let mut write_times: Vec<u64> = ops
        .iter()
        .filter(|o| o.outcome == Outcome::Ok && is_write_op(o))
        .map(|o| o.complete_ns)
        .collect();
    write_times.sort_unstable();
    let mut error_times: Vec<u64> = ops
        .iter()
        .filter(|o| o.outcome != Outcome::Ok && !(o.outcome == Outcome::Fail && o.refusal))
        .map(|o| o.complete_ns)
        .collect();
    error_times.sort_unstable();
    let first_write = FirstCompletion::of(
        ops.iter()
            .filter(|o| o.outcome == Outcome::Ok && is_write_op(o))
            .map(|o| (o.invoke_ns, o.complete_ns)),
    );
    let mut ok_times: Vec<u64> = ops
        .iter()
        .filter(|o| o.outcome == Outcome::Ok)
        .map(|o| o.complete_ns)
        .collect();
    ok_times.sort_unstable();
    let load_end = ops
        .iter()
        .filter(|o| is_write_op(o))
        .map(|o| o.complete_ns)
        .max()
        .unwrap_or(end);

    let mut out = Vec::new();
    for (i, w) in windows.iter().enumerate() {
        let ws = w.start_ns;
        let we = w.end_ns.unwrap_or(end).max(ws);
        let next = windows
            .get(i + 1)
            .map(|n| n.start_ns)
            .unwrap_or(end)
            .max(we);
        // Availability is only observed while clients write: after the load stops (final
        // reads, the recovery wait) silence is not an outage.
        let span_end = next.min(load_end).max(ws);

        // Successful writes as points: the last one at or before the fault start, then
        // every one inside the span. Gaps between them that overlap the fault are the
        // stretches of unavailability; an open tail gap means no recovery was seen.
        let before = write_times.partition_point(|t| *t <= ws);
        let in_span = write_times.partition_point(|t| *t <= span_end).max(before);
        let mut points: Vec<u64> = Vec::with_capacity(in_span - before + 1);
        points.push(before.checked_sub(1).map_or(0, |k| write_times[k]));
        points.extend_from_slice(&write_times[before..in_span]);
        let longest_closed = points
            .windows(2)
            .filter(|p| p[0] < we.max(ws + 1))
            .map(|p| p[1] - p[0])
            .max()
            .unwrap_or(0);
        let p_last = *points.last().expect("points start with one element");
        let recovered = if w.end_ns.is_some() {
            p_last >= we
        } else {
            p_last > ws
        };
        let longest = if recovered {
            longest_closed
        } else {
            longest_closed.max(span_end - p_last)
        };

        let first_error = error_times
            .get(error_times.partition_point(|t| *t < ws))
            .filter(|t| **t < span_end)
            .map(|t| ms(t - ws));
        let first_write_after =
            |from: u64| first_write.after(from).filter(|t| *t <= span_end).map(|t| ms(t - from));
        let first_write_after_start = first_write_after(ws);
        let first_write_after_heal = if w.end_ns.is_some() {
            first_write_after(we)
        } else {
            None
        };

        // Baseline: whole healthy seconds just before this fault, after the previous span.
        let healthy_from = if i == 0 {
            0
        } else {
            windows[i - 1].end_ns.unwrap_or(ws).min(ws)
        };
        let whole_s = (ws - healthy_from) / S_NS;
        let base_s = whole_s.min(opts.baseline_s_max);
        let baseline = (base_s > 0)
            .then(|| ok_between(&ok_times, ws - base_s * S_NS, ws) as f64 / base_s as f64)
            .filter(|b| *b > 0.0);

        let n_buckets = (span_end - ws) / S_NS;
        let buckets: Vec<u64> = (0..n_buckets)
            .map(|k| ok_between(&ok_times, ws + k * S_NS, ws + (k + 1) * S_NS))
            .collect();
        let (mut dip, mut dip_ratio, mut back, mut lost) = (None, None, None, None);
        if let (Some(b), false) = (baseline, buckets.is_empty()) {
            let (_, &min) = buckets
                .iter()
                .enumerate()
                .min_by_key(|(k, v)| (**v, *k))
                .expect("buckets are not empty");
            dip = Some(min as f64);
            dip_ratio = Some(min as f64 / b);
            back = back_to_90pct_ns(&ok_times, ws, span_end, b).map(|t| t as f64 / MS_NS);
            let got: u64 = buckets.iter().sum();
            lost = Some((b * n_buckets as f64 - got as f64).max(0.0));
        }

        let unavail_ms = ms(longest);
        out.push(WindowRecovery {
            n: i + 1,
            family: w.family.clone(),
            start_ms: ms(ws),
            end_ms: w.end_ns.map(ms),
            span_end_ms: ms(span_end),
            value: w.value.clone(),
            recovered,
            unavailability_ms: unavail_ms,
            unavailability_election_timeouts: opts
                .election_timeout_ms_min
                .filter(|t| *t > 0.0)
                .map(|t| unavail_ms / t),
            first_error_ms: first_error,
            first_write_after_start_ms: first_write_after_start,
            first_write_after_heal_ms: first_write_after_heal,
            baseline_ok_per_s: baseline,
            dip_ok_per_s: dip,
            dip_ratio,
            back_to_90pct_ms: back,
            ops_lost: lost,
            elections: count_elections(terms, ws, next),
        });
    }

    let mut fams: BTreeMap<String, Vec<&WindowRecovery>> = BTreeMap::new();
    for w in &out {
        fams.entry(w.family.clone()).or_default().push(w);
    }
    let families = fams
        .into_iter()
        .map(|(family, ws)| {
            let rec: Vec<f64> = ws
                .iter()
                .filter(|w| w.recovered)
                .map(|w| w.unavailability_ms)
                .collect();
            FamilySummary {
                family,
                windows: ws.len(),
                unrecovered: ws.iter().filter(|w| !w.recovered).count(),
                unavailability_ms_median: quantile(&rec, 0.5),
                unavailability_ms_p99: quantile(&rec, 0.99),
                unavailability_ms_max: rec.iter().copied().reduce(f64::max),
                elections_total: ws.iter().map(|w| w.elections).sum(),
            }
        })
        .collect();
    let all: Vec<f64> = out
        .iter()
        .filter(|w| w.recovered)
        .map(|w| w.unavailability_ms)
        .collect();
    RecoveryReport {
        election_timeout_ms_min: opts.election_timeout_ms_min,
        unavailability_ms_p99: quantile(&all, 0.99),
        unavailability_ms_max: all.iter().copied().reduce(f64::max),
        elections_total: out.iter().map(|w| w.elections).sum(),
        windows: out,
        families,
    }
}

/// Registered as `recovery`, with default options (no election timeout known). The run
/// report calls [`analyze`] itself with the timeout from the test's node options.
pub struct RecoveryChecker(pub RecoveryOptions);

impl Checker for RecoveryChecker {
    fn name(&self) -> &'static str {
        "recovery"
    }

    fn check(&self, history: &[Event]) -> CheckResult {
        crate::registry::unless_nothing_checked(history, result(&analyze(history, &self.0)))
    }
}

/// Recovery figures are measurements, not a verdict: slow recovery is not wrong.
pub fn result(report: &RecoveryReport) -> CheckResult {
    CheckResult {
        checker: "recovery".to_string(),
        valid: Validity::Valid,
        details: serde_json::to_value(report).unwrap_or(serde_json::Value::Null),
    }
}

/// Builders for hand-made histories in unit tests.
/// The run's faults as a check: `unknown` when any planned fault failed to apply (the run
/// cannot vouch for the system under a fault it never got), `valid` otherwise; `None` for a
/// history without nemesis faults. The details hold `faults` (planned, applied, failed) and
/// the first errors.
pub fn faults_check(history: &[Event]) -> Option<CheckResult> {
    let counts = fault_counts(history);
    if counts.planned == 0 {
        return None;
    }
    let errors: Vec<&str> = history
        .iter()
        .filter(|e| e.process.is_nemesis() && e.f.starts_with("start-"))
        .filter_map(|e| e.error.as_deref())
        .take(10)
        .collect();
    Some(CheckResult {
        checker: "nemesis".into(),
        valid: if counts.failed > 0 {
            Validity::Unknown
        } else {
            Validity::Valid
        },
        details: serde_json::json!({"faults": counts, "errors": errors}),
    })
}

#[cfg(test)]
pub(crate) mod test_support {
    use crate::history::{Event, EventType, Process};

    pub fn ev(p: Process, t: u64, kind: EventType, f: &str, value: serde_json::Value) -> Event {
        Event {
            index: None,
            time: t,
            process: p,
            kind,
            f: f.into(),
            key: None,
            value,
            error: None,
            node: None,
        }
    }
    pub fn inv(p: u64, t: u64, f: &str) -> Event {
        ev(
            Process::Client(p),
            t,
            EventType::Invoke,
            f,
            serde_json::Value::Null,
        )
    }
    pub fn done(p: u64, t: u64, kind: EventType, f: &str) -> Event {
        ev(Process::Client(p), t, kind, f, serde_json::Value::Null)
    }
    /// Start and stop of one fault, each an invoke completed 1 ms later... except that the
    /// window bounds given are the completions.
    pub fn fault(family: &str, start: u64, stop: u64) -> Vec<Event> {
        let n = || Process::nemesis();
        let v = serde_json::json!({"targets": ["n1"]});
        vec![
            ev(
                n(),
                start.saturating_sub(1_000_000),
                EventType::Invoke,
                &format!("start-{family}"),
                v.clone(),
            ),
            ev(n(), start, EventType::Info, &format!("start-{family}"), v),
            ev(
                n(),
                stop.saturating_sub(1_000_000),
                EventType::Invoke,
                &format!("stop-{family}"),
                serde_json::Value::Null,
            ),
            ev(
                n(),
                stop,
                EventType::Info,
                &format!("stop-{family}"),
                serde_json::Value::Null,
            ),
        ]
    }
    pub fn status(t: u64, node: &str, term: u64) -> Event {
        let mut e = ev(
            Process::Named("monitor".into()),
            t,
            EventType::Info,
            "status",
            serde_json::json!({"role": "follower", "term": term, "leader": "n1"}),
        );
        e.node = Some(serde_json::json!(node));
        e
    }
    /// Sorts by time, as a real history is.
    pub fn sorted(mut h: Vec<Event>) -> Vec<Event> {
        h.sort_by_key(|e| e.time);
        h
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;
    use crate::history::Process;

    const MS: u64 = 1_000_000;

    /// A write every 10 ms from `from` to `to` (exclusive), each taking 1 ms, on `proc`.
    fn steady_writes(proc: u64, from: u64, to: u64) -> Vec<Event> {
        let mut h = Vec::new();
        let mut t = from;
        while t < to {
            h.push(inv(proc, t, "write"));
            h.push(done(proc, t + MS, EventType::Ok, "write"));
            t += 10 * MS;
        }
        h
    }

    #[test]
    fn writes_stopping_for_two_seconds_after_a_fault_is_two_seconds_unavailable() {
        // Writes complete every 10 ms at 1, 11, …, 5001 ms; the fault starts at 5001 ms,
        // and the next successful write completes at 7001 ms.
        let mut h = steady_writes(0, 0, 5001 * MS);
        h.extend(fault("partition", 5001 * MS, 6000 * MS));
        h.extend(steady_writes(0, 7000 * MS, 12000 * MS));
        let r = analyze(
            &sorted(h),
            &RecoveryOptions {
                election_timeout_ms_min: Some(500.0),
                ..Default::default()
            },
        );
        assert_eq!(r.windows.len(), 1);
        let w = &r.windows[0];
        assert!(w.recovered);
        assert!((w.unavailability_ms - 2000.0).abs() < 1e-6, "{w:?}");
        assert!((w.unavailability_election_timeouts.unwrap() - 4.0).abs() < 1e-9);
        // The heal completes at 6000 ms; the first write invoked after it completes at 7001.
        assert!(
            (w.first_write_after_heal_ms.unwrap() - 1001.0).abs() < 1e-6,
            "{w:?}"
        );
        assert!(
            (w.first_write_after_start_ms.unwrap() - 2000.0).abs() < 1e-6,
            "{w:?}"
        );
        assert_eq!(w.first_error_ms, None);
    }

    #[test]
    fn a_fault_that_does_not_hurt_leaves_only_the_op_spacing() {
        let mut h = steady_writes(0, 0, 10_000 * MS);
        h.extend(fault("kill", 3000 * MS, 6000 * MS));
        let r = analyze(&sorted(h), &RecoveryOptions::default());
        let w = &r.windows[0];
        assert!(w.recovered);
        assert!((w.unavailability_ms - 10.0).abs() < 1e-6, "{w:?}");
        assert_eq!(w.dip_ratio, Some(1.0));
        assert_eq!(w.back_to_90pct_ms, Some(0.0));
        assert_eq!(w.ops_lost, Some(0.0));
    }

    #[test]
    fn never_recovering_is_a_lower_bound_not_a_figure() {
        let mut h = steady_writes(0, 0, 4000 * MS);
        h.extend(fault("partition", 4001 * MS, 6000 * MS));
        // Writes keep failing to the end of the history at 9 s.
        for k in 0..10 {
            h.push(inv(0, 4100 * MS + k * 500 * MS, "write"));
            h.push(done(
                0,
                4100 * MS + k * 500 * MS + 400 * MS,
                EventType::Fail,
                "write",
            ));
        }
        let r = analyze(&sorted(h), &RecoveryOptions::default());
        let w = &r.windows[0];
        assert!(!w.recovered);
        // From the last successful write (3991 ms) to the end (9000 ms).
        assert!(
            (w.unavailability_ms - (9000.0 - 3991.0)).abs() < 1e-6,
            "{w:?}"
        );
        assert!((w.first_error_ms.unwrap() - 499.0).abs() < 1e-6, "{w:?}");
        assert_eq!(r.families[0].unrecovered, 1);
        assert_eq!(
            r.families[0].unavailability_ms_max, None,
            "lower bounds are not averaged in"
        );
        assert_eq!(w.dip_ok_per_s, Some(0.0));
        assert_eq!(w.back_to_90pct_ms, None);
    }

    #[test]
    fn a_fault_outlasting_the_load_is_a_lower_bound_up_to_the_last_write() {
        let mut h = steady_writes(0, 0, 4000 * MS);
        h.extend(fault("kill", 3000 * MS, 7000 * MS));
        for k in 0..5 {
            h.push(inv(1, 3000 * MS + k * 200 * MS, "write"));
            h.push(done(
                1,
                3000 * MS + k * 200 * MS + 100 * MS,
                EventType::Info,
                "write",
            ));
        }
        // Final reads long after the load stopped.
        h.push(inv(2, 9000 * MS, "read"));
        h.push(done(2, 9001 * MS, EventType::Ok, "read"));
        let r = analyze(&sorted(h), &RecoveryOptions::default());
        let w = &r.windows[0];
        assert!(!w.recovered);
        // The last write of any outcome completes at 3991 ms; the last success too.
        assert!((w.span_end_ms - 3991.0).abs() < 1e-6, "{w:?}");
        assert!(w.unavailability_ms < 1000.0, "{w:?}");
    }

    /// Poisson completions at `per_s` over `[from, to)` (ms), except in `outage` (ms),
    /// each op taking 1 ms; seeded, so each history is the same on every run.
    fn poisson_writes(seed: u64, per_s: f64, from: u64, to: u64, outage: Option<(u64, u64)>) -> Vec<Event> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut h = Vec::new();
        let mut t = (from * MS) as f64;
        let mut p = 0;
        loop {
            t += -(1.0 - rng.random::<f64>()).ln() / per_s * 1e9;
            let ti = t as u64;
            if ti >= to * MS {
                return h;
            }
            if outage.is_some_and(|(a, b)| ti >= a * MS && ti < b * MS) {
                continue;
            }
            p += 1;
            h.push(inv(p, ti, "write"));
            h.push(done(p, ti + MS, EventType::Ok, "write"));
        }
    }

    #[test]
    fn back_to_90pct_is_stable_under_poisson_noise() {
        // Before: one-second buckets gave 0 ms, 5 s or 7 s for windows like these,
        // depending on which bucket noise made the lowest.
        for seed in 0..20 {
            let mut h = poisson_writes(seed, 200.0, 0, 20_000, Some((10_000, 10_300)));
            h.extend(fault("kill", 10_000 * MS, 10_100 * MS));
            let r = analyze(&sorted(h), &RecoveryOptions::default());
            let back = r.windows[0].back_to_90pct_ms.unwrap();
            assert!((300.0..=330.0).contains(&back), "seed {seed}: {back} ms");
        }
    }

    #[test]
    fn back_to_90pct_is_zero_when_noise_is_all_there_is() {
        for seed in 0..20 {
            let mut h = poisson_writes(100 + seed, 200.0, 0, 20_000, None);
            h.extend(fault("kill", 10_000 * MS, 10_100 * MS));
            let r = analyze(&sorted(h), &RecoveryOptions::default());
            assert_eq!(r.windows[0].back_to_90pct_ms, Some(0.0), "seed {seed}");
        }
    }

    #[test]
    fn back_to_90pct_waits_out_a_half_rate_stretch() {
        // Nothing for 200 ms, then half the rate until 3 s after the fault, then full rate:
        // back at 90% at 3 s, less the tail of the half-rate stretch too short to tell from
        // noise (its shortfall grows 80 ops/s against 3σ: about 0.3 s, more with bad luck).
        for seed in 0..10 {
            let mut h = poisson_writes(200 + seed, 200.0, 0, 10_000, None);
            h.extend(poisson_writes(300 + seed, 100.0, 10_200, 13_000, None));
            h.extend(poisson_writes(400 + seed, 200.0, 13_000, 20_000, None));
            h.extend(fault("pause", 10_000 * MS, 10_100 * MS));
            let r = analyze(&sorted(h), &RecoveryOptions::default());
            let back = r.windows[0].back_to_90pct_ms.unwrap();
            assert!((2300.0..=3100.0).contains(&back), "seed {seed}: {back} ms");
        }
    }

    #[test]
    fn back_to_90pct_is_unknown_when_the_rate_never_returns() {
        let mut h = poisson_writes(7, 200.0, 0, 10_000, None);
        h.extend(fault("partition", 10_000 * MS, 15_000 * MS));
        // A trickle far below 90% to the end, so the span runs on.
        h.extend(poisson_writes(8, 20.0, 10_000, 20_000, None));
        let r = analyze(&sorted(h), &RecoveryOptions::default());
        let back = r.windows[0].back_to_90pct_ms;
        assert!(back.is_none_or(|b| b > 9000.0), "{back:?}");
    }

    #[test]
    fn throughput_dip_recovery_time_and_lost_ops() {
        // 100 ok/s for 10 s, fault at 10 s for 2 s with nothing done, then 100 ok/s again.
        let mut h = steady_writes(0, 0, 10_000 * MS);
        h.extend(fault("pause", 10_000 * MS, 12_000 * MS));
        h.extend(steady_writes(0, 12_000 * MS, 20_000 * MS));
        let r = analyze(&sorted(h), &RecoveryOptions::default());
        let w = &r.windows[0];
        assert_eq!(w.baseline_ok_per_s, Some(100.0));
        assert_eq!(w.dip_ok_per_s, Some(0.0));
        // Nothing completes from 10 001 ms to 12 001 ms; from then on 100 ops/s.
        assert_eq!(w.back_to_90pct_ms, Some(2001.0));
        // Nine whole buckets in the span (to 19 991 ms): 0, 0, then 100 × 7.
        assert!((w.ops_lost.unwrap() - 200.0).abs() < 1e-6, "{w:?}");
    }

    #[test]
    fn elections_count_new_terms_seen_during_the_span() {
        let mut h = steady_writes(0, 0, 10_000 * MS);
        h.extend(fault("partition", 2000 * MS, 4000 * MS));
        h.extend(fault("partition", 6000 * MS, 8000 * MS));
        for (t, term) in [
            (1000, 1),
            (2500, 1),
            (3000, 2),
            (3100, 3),
            (3200, 3),
            (5000, 3),
            (7000, 3),
        ] {
            h.push(status(t * MS, "n1", term));
        }
        let r = analyze(&sorted(h), &RecoveryOptions::default());
        assert_eq!(
            r.windows.iter().map(|w| w.elections).collect::<Vec<_>>(),
            vec![2, 0]
        );
        assert_eq!(r.elections_total, 2);
        assert_eq!(r.families.len(), 1);
        assert_eq!(r.families[0].windows, 2);
    }

    #[test]
    fn windows_pair_per_family_and_an_unhealed_fault_stays_open() {
        let mut h = fault("kill", 1000 * MS, 3000 * MS);
        h.extend(fault("partition", 2000 * MS, 5000 * MS));
        h.push(ev(
            Process::nemesis(),
            6000 * MS,
            EventType::Invoke,
            "start-pause",
            serde_json::Value::Null,
        ));
        h.push(ev(
            Process::nemesis(),
            6001 * MS,
            EventType::Info,
            "start-pause",
            serde_json::Value::Null,
        ));
        let w = fault_windows(&sorted(h));
        let got: Vec<_> = w
            .iter()
            .map(|w| (w.family.as_str(), w.start_ns / MS, w.end_ns.map(|e| e / MS)))
            .collect();
        assert_eq!(
            got,
            vec![
                ("kill", 1000, Some(3000)),
                ("partition", 2000, Some(5000)),
                ("pause", 6001, None)
            ]
        );
    }

    #[test]
    fn failed_fault_is_not_a_fault_window() {
        let mut h = fault("kill", 1000 * MS, 3000 * MS);
        h.push(ev(
            Process::nemesis(),
            4000 * MS,
            EventType::Invoke,
            "start-kill",
            serde_json::json!({"target": "n9"}),
        ));
        let mut failed = ev(
            Process::nemesis(),
            4001 * MS,
            EventType::Info,
            "start-kill",
            serde_json::json!({"target": "n9"}),
        );
        failed.error = Some("unknown node \"n9\" in target".into());
        h.push(failed);
        h.extend(steady_writes(1, 0, 8000 * MS));
        let h = sorted(h);
        let w = fault_windows(&h);
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].start_ns, 1000 * MS);
        let r = analyze(&h, &RecoveryOptions::default());
        assert_eq!(r.windows.len(), 1, "no unavailability figures for a fault not applied");
        assert_eq!(
            fault_counts(&h),
            FaultCounts {
                planned: 2,
                applied: 1,
                failed: 1
            }
        );
        assert_eq!(faults_failed(&h), 1);
    }

    #[test]
    fn a_cas_mismatch_is_an_answer_not_an_error() {
        let mut h = steady_writes(0, 0, 6000 * MS);
        h.extend(fault("kill", 2000 * MS, 4000 * MS));
        let mut mismatch = done(1, 2100 * MS, EventType::Fail, "cas");
        mismatch.error = Some("cas-mismatch".into());
        let mut refused = done(1, 2600 * MS, EventType::Fail, "cas");
        refused.error = Some("not-leader: not the leader".into());
        h.extend([
            inv(1, 2050 * MS, "cas"),
            mismatch,
            inv(1, 2500 * MS, "cas"),
            refused,
        ]);
        let r = analyze(&sorted(h), &RecoveryOptions::default());
        assert_eq!(r.windows[0].first_error_ms, Some(600.0));
        assert!(is_refusal(Some("insufficient funds")) && !is_refusal(None));
    }

    #[test]
    fn quantile_is_nearest_rank() {
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), Some(2.0));
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.99), Some(3.0));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
