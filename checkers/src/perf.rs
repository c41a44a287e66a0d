//! Latency and throughput of client operations, whole run and per phase.
//!
//! Latency is what a client saw: from its `invoke` to the matching completion. HDR
//! histograms keep every quantile to three significant digits without storing each
//! sample, so hour-long runs cost the same memory as minute-long ones. Phases follow the
//! fault schedule (before faults, each fault window, the healthy stretches between, after
//! the last heal), because an average over a run that mixes healthy and faulty time hides
//! exactly what a chaos test is for.
//!
//! The checker never decides validity on its own: slow is not wrong. It reports `valid:
//! true` with figures, or `unknown` when the history holds no completed client operation.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use serde::{Deserialize, Serialize};

use crate::history::Event;
use crate::recovery::fault_windows;
use faultline_history::digest::{Digest, OpRecord};
use crate::registry::{CheckResult, Checker, Validity};

/// Latencies are recorded in microseconds: one hour at three significant digits.
const LATENCY_US_MAX: u64 = 3_600_000_000;
const SIGFIG: u8 = 3;
const NS_PER_MS: f64 = 1_000_000.0;

// Pairing lives with the history (recovery and the report use it too); these keep the
// paths `faultline_checkers::perf::{CompletedOp, ...}`.
pub use faultline_history::pairing::{CompletedOp, Outcome, completed_ops, history_end_ns};

/// Quantiles of one histogram, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quantiles {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Quantiles {
    pub fn of(h: &Histogram<u64>) -> Quantiles {
        let ms = |us: u64| us as f64 / 1000.0;
        Quantiles {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// Latency of one op type with one outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyRow {
    pub f: String,
    pub outcome: Outcome,
    #[serde(flatten)]
    pub quantiles: Quantiles,
}

/// A stretch of the run with one fault state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    /// `before-faults`, `<family>#<n>` for the n-th fault window (1-based), `between#<n>`
    /// after window n, or `after-heal`. A run without faults has one phase, `no-faults`.
    pub name: String,
    pub start_ms: f64,
    pub end_ms: f64,
    pub ok_per_s: f64,
    pub latency: Vec<LatencyRow>,
}

/// Completions in one second of the run, by outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// Start of the bucket, whole seconds since the run began.
    pub t_s: u64,
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpCounts {
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
    /// Invoked and never completed before the history ended.
    pub pending: u64,
}

/// Everything [`PerfChecker`] reports, also used by the HTML report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerfReport {
    pub ops: OpCounts,
    pub duration_ms: f64,
    pub ok_per_s: f64,
    /// Every successful op of every type together; `None` when none succeeded.
    pub ok_latency: Option<Quantiles>,
    /// Whole run, per op type and outcome, sorted by op type then outcome.
    pub latency: Vec<LatencyRow>,
    pub phases: Vec<Phase>,
    pub throughput: Vec<Bucket>,
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, SIGFIG)
        .expect("static histogram bounds are valid")
}

fn record(h: &mut Histogram<u64>, latency_ns: u64) {
    // Clamped rather than dropped: a latency beyond an hour is still the worst one.
    let us = (latency_ns / 1000).clamp(1, LATENCY_US_MAX);
    h.record(us)
        .expect("value clamped into the histogram's range");
}

type HistMap = BTreeMap<(String, Outcome), Histogram<u64>>;

fn rows(map: &HistMap) -> Vec<LatencyRow> {
    map.iter()
        .map(|((f, o), h)| LatencyRow {
            f: f.clone(),
            outcome: *o,
            quantiles: Quantiles::of(h),
        })
        .collect()
}

/// Splits `[0, end)` at the fault window boundaries.
pub fn phases_of(history: &[Event]) -> Vec<(String, u64, u64)> {
    phases_of_digest(&Digest::of(history))
}

pub fn phases_of_digest(d: &Digest) -> Vec<(String, u64, u64)> {
    let end = d.end_ns;
    let windows = fault_windows(&d.nemesis);
    if windows.is_empty() {
        return vec![("no-faults".to_string(), 0, end)];
    }
    let mut out = Vec::new();
    let mut cursor = 0;
    for (i, w) in windows.iter().enumerate() {
        let w_end = w.end_ns.unwrap_or(end).max(w.start_ns);
        if w.start_ns > cursor {
            let name = if i == 0 {
                "before-faults".to_string()
            } else {
                format!("between#{i}")
            };
            out.push((name, cursor, w.start_ns));
        }
        // Overlapping windows: the later one starts where the earlier ended.
        let s = w.start_ns.max(cursor);
        out.push((format!("{}#{}", w.family, i + 1), s, w_end.max(s)));
        cursor = w_end.max(s);
    }
    if cursor < end {
        out.push(("after-heal".to_string(), cursor, end));
    }
    out
}

/// Completed ops (with at least one success) per one-second bucket of completion time.
pub fn throughput(ops: &[CompletedOp], end_ns: u64) -> Vec<Bucket> {
    buckets(ops.iter().map(|o| (o.complete_ns, o.outcome)), end_ns)
}

fn buckets(ops: impl Iterator<Item = (u64, Outcome)>, end_ns: u64) -> Vec<Bucket> {
    let n = (end_ns / 1_000_000_000 + 1) as usize;
    let mut b: Vec<Bucket> = (0..n)
        .map(|i| Bucket {
            t_s: i as u64,
            ok: 0,
            fail: 0,
            info: 0,
        })
        .collect();
    for (complete_ns, outcome) in ops {
        let i = ((complete_ns / 1_000_000_000) as usize).min(n - 1);
        match outcome {
            Outcome::Ok => b[i].ok += 1,
            Outcome::Fail => b[i].fail += 1,
            Outcome::Info => b[i].info += 1,
        }
    }
    b
}

/// Histograms by function id, as [`HistMap`]s by function name.
fn by_name(d: &Digest, m: HashMap<(u16, Outcome), Histogram<u64>>) -> HistMap {
    let mut out: HistMap = BTreeMap::new();
    for ((f, o), h) in m {
        let name = d.fs.get(f as usize).cloned().unwrap_or_default();
        match out.entry((name, o)) {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(h);
            }
            std::collections::btree_map::Entry::Occupied(mut e) => {
                e.get_mut().add(&h).expect("histograms of one shape");
            }
        }
    }
    out
}

/// The phase an op invoked at `t` belongs to: the first whose `[start, end)` holds `t`,
/// else the last. Phases are contiguous and in order, so a binary search finds it.
fn phase_of(phases: &[(String, u64, u64)], t: u64) -> usize {
    let i = phases.partition_point(|(_, _, e)| *e <= t);
    match phases.get(i) {
        Some((_, s, e)) if *s <= t && t < *e => i,
        _ => phases.len() - 1,
    }
}

pub fn analyze(history: &[Event]) -> PerfReport {
    analyze_digest(&Digest::of(history))
}

pub fn analyze_digest(d: &Digest) -> PerfReport {
    let ops = &d.ops;
    let end = d.end_ns;
    let phases_spec = phases_of_digest(d);

    // By function id while counting; by name for the report.
    let mut whole: HashMap<(u16, Outcome), Histogram<u64>> = HashMap::new();
    let mut all_ok = new_histogram();
    let mut counts = OpCounts {
        ok: 0,
        fail: 0,
        info: 0,
        pending: d.pending as u64,
    };
    for op in ops {
        record(
            whole.entry((op.f, op.outcome)).or_insert_with(new_histogram),
            op.latency_ns(),
        );
        match op.outcome {
            Outcome::Ok => {
                record(&mut all_ok, op.latency_ns());
                counts.ok += 1;
            }
            Outcome::Fail => counts.fail += 1,
            Outcome::Info => counts.info += 1,
        }
    }
    // An op belongs to the phase it was invoked in: that is the state it met. A histogram
    // is a few hundred kilobytes and an hour has hundreds of phases, so the phases are
    // filled one at a time, from the ops grouped by phase.
    let phase: Vec<u32> = ops
        .iter()
        .map(|o| phase_of(&phases_spec, o.invoke_ns) as u32)
        .collect();
    let mut order: Vec<u32> = (0..ops.len() as u32).collect();
    order.sort_by_key(|&i| phase[i as usize]);
    let mut per_phase: Vec<Vec<LatencyRow>> = vec![Vec::new(); phases_spec.len()];
    let mut phase_ok = vec![0u64; phases_spec.len()];
    for group in order.chunk_by(|a, b| phase[*a as usize] == phase[*b as usize]) {
        let pi = phase[group[0] as usize] as usize;
        let mut map: HashMap<(u16, Outcome), Histogram<u64>> = HashMap::new();
        for &i in group {
            let op = &ops[i as usize];
            record(
                map.entry((op.f, op.outcome)).or_insert_with(new_histogram),
                op.latency_ns(),
            );
            phase_ok[pi] += u64::from(op.outcome == Outcome::Ok);
        }
        per_phase[pi] = rows(&by_name(d, map));
    }
    let per_s = |n: u64, span_ns: u64| {
        if span_ns == 0 {
            0.0
        } else {
            n as f64 / (span_ns as f64 / 1e9)
        }
    };
    let phases = phases_spec
        .iter()
        .zip(per_phase)
        .zip(phase_ok.iter())
        .map(|(((name, s, e), map), ok)| Phase {
            name: name.clone(),
            start_ms: *s as f64 / NS_PER_MS,
            end_ms: *e as f64 / NS_PER_MS,
            ok_per_s: per_s(*ok, e - s),
            latency: map,
        })
        .collect();
    PerfReport {
        ops: counts.clone(),
        duration_ms: end as f64 / NS_PER_MS,
        ok_per_s: per_s(counts.ok, end),
        ok_latency: (!all_ok.is_empty()).then(|| Quantiles::of(&all_ok)),
        latency: rows(&by_name(d, whole)),
        phases,
        throughput: buckets(ops.iter().map(|o| (o.complete_ns, o.outcome)), end),
    }
}

/// Writes the latencies in the HdrHistogram interval-log format (the Java
/// `HistogramLogWriter` format), one tagged interval histogram per op type and outcome per
/// `interval`, so HdrHistogram's own tools (HistogramLogAnalyzer, `hdr-plot`) can read
/// them. Values are microseconds; `Interval_Max` columns are in milliseconds.
/// `base_time` is the wall-clock time the run began, which interval timestamps are
/// relative to.
pub fn write_interval_log<W: std::io::Write>(
    history: &[Event],
    base_time: SystemTime,
    interval: Duration,
    out: &mut W,
) -> Result<(), String> {
    write_interval_log_digest(&Digest::of(history), base_time, interval, out)
}

pub fn write_interval_log_digest<W: std::io::Write>(
    d: &Digest,
    base_time: SystemTime,
    interval: Duration,
    out: &mut W,
) -> Result<(), String> {
    let interval_ns = (interval.as_nanos() as u64).max(1_000_000);
    // One interval's histograms at a time: an hour holds thousands of them.
    let interval_of = |o: &OpRecord| o.complete_ns / interval_ns;
    let mut order: Vec<u32> = (0..d.ops.len() as u32).collect();
    order.sort_by_key(|&i| interval_of(&d.ops[i as usize]));
    let mut serializer = V2DeflateSerializer::new();
    let mut builder = IntervalLogWriterBuilder::new();
    builder
        .add_comment("faultline client latencies; values in microseconds, tag = <f>-<outcome>")
        .with_start_time(base_time)
        .with_base_time(base_time)
        .with_max_value_divisor(1000.0);
    let mut log = builder
        .begin_log_with(out, &mut serializer)
        .map_err(|e| e.to_string())?;
    for group in order.chunk_by(|a, b| interval_of(&d.ops[*a as usize]) == interval_of(&d.ops[*b as usize])) {
        let i = interval_of(&d.ops[group[0] as usize]);
        let mut tags: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
        for &k in group {
            let op = &d.ops[k as usize];
            let f = d.fs.get(op.f as usize).map_or("", String::as_str);
            let tag = format!("{}-{}", sanitize_tag(f), op.outcome.as_str());
            record(tags.entry(tag).or_insert_with(new_histogram), op.latency_ns());
        }
        let start = Duration::from_nanos(i * interval_ns);
        for (tag, h) in &tags {
            log.write_histogram(h, start, Duration::from_nanos(interval_ns), Tag::new(tag))
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Tags may not hold commas, spaces or newlines.
fn sanitize_tag(f: &str) -> String {
    f.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Registered as `perf`.
pub struct PerfChecker;

impl Checker for PerfChecker {
    fn name(&self) -> &'static str {
        "perf"
    }

    fn check(&self, history: &[Event]) -> CheckResult {
        crate::registry::unless_nothing_checked(history, result(&analyze(history)))
    }
}

/// The verdict on a report already computed: slow is not wrong, but no latencies at all
/// means nothing was measured.
pub fn result(report: &PerfReport) -> CheckResult {
    let valid = if report.latency.is_empty() {
        Validity::Unknown
    } else {
        Validity::Valid
    };
    CheckResult {
        checker: "perf".to_string(),
        valid,
        details: serde_json::to_value(report).unwrap_or(serde_json::Value::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recovery::test_support::*;
    use crate::history::EventType;

    #[test]
    fn latency_is_from_invoke_to_completion_per_process() {
        let h = vec![
            inv(0, 0, "write"),
            inv(1, 1_000_000, "read"),
            done(1, 3_000_000, EventType::Ok, "read"),
            done(0, 10_000_000, EventType::Ok, "write"),
        ];
        let r = analyze(&h);
        let w = r.latency.iter().find(|l| l.f == "write").unwrap();
        let rd = r.latency.iter().find(|l| l.f == "read").unwrap();
        assert!((w.quantiles.max_ms - 10.0).abs() < 0.02, "{w:?}");
        assert!((rd.quantiles.max_ms - 2.0).abs() < 0.01, "{rd:?}");
        assert_eq!(r.ops.ok, 2);
        let all = r.ok_latency.unwrap();
        assert_eq!(all.count, 2);
        assert!((all.max_ms - 10.0).abs() < 0.02);
    }

    #[test]
    fn quantiles_follow_the_distribution() {
        // 1000 writes with latencies 1..=1000 ms.
        let mut h = Vec::new();
        for i in 0..1000u64 {
            let t = i * 2_000_000_000;
            h.push(inv(0, t, "write"));
            h.push(done(0, t + (i + 1) * 1_000_000, EventType::Ok, "write"));
        }
        let q = &analyze(&h).latency[0].quantiles;
        assert_eq!(q.count, 1000);
        assert!((q.p50_ms - 500.0).abs() < 1.0, "{q:?}");
        assert!((q.p99_ms - 990.0).abs() < 2.0, "{q:?}");
        assert!((q.max_ms - 1000.0).abs() < 1.0, "{q:?}");
    }

    #[test]
    fn outcomes_are_kept_apart_and_pending_counted() {
        let h = vec![
            inv(0, 0, "write"),
            done(0, 5_000_000, EventType::Fail, "write"),
            inv(0, 6_000_000, "write"),
            done(0, 7_000_000, EventType::Info, "write"),
            inv(2, 8_000_000, "write"),
        ];
        let r = analyze(&h);
        assert_eq!(
            r.ops,
            OpCounts {
                ok: 0,
                fail: 1,
                info: 1,
                pending: 1
            }
        );
        let outcomes: Vec<_> = r.latency.iter().map(|l| l.outcome).collect();
        assert_eq!(outcomes, vec![Outcome::Fail, Outcome::Info]);
        assert_eq!(PerfChecker.check(&h).valid, Validity::Valid);
        assert_eq!(PerfChecker.check(&[]).valid, Validity::Unknown);
    }

    #[test]
    fn phases_split_at_fault_windows_and_ops_go_by_invoke_time() {
        let mut h = vec![
            inv(0, 0, "write"),
            done(0, 1_000_000, EventType::Ok, "write"),
        ];
        h.extend(fault("partition", 2_000_000_000, 5_000_000_000));
        h.push(inv(0, 3_000_000_000, "write"));
        h.push(done(0, 6_000_000_000, EventType::Info, "write"));
        h.push(inv(1, 7_000_000_000, "write"));
        h.push(done(1, 7_001_000_000, EventType::Ok, "write"));
        let r = analyze(&h);
        let names: Vec<_> = r.phases.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, vec!["before-faults", "partition#1", "after-heal"]);
        assert_eq!(r.phases[1].latency.len(), 1);
        assert_eq!(r.phases[1].latency[0].outcome, Outcome::Info);
        assert!((r.phases[1].latency[0].quantiles.max_ms - 3000.0).abs() < 5.0);
        assert_eq!(r.phases[2].latency[0].outcome, Outcome::Ok);
    }

    #[test]
    fn throughput_buckets_are_one_second_of_completions() {
        let mut h = Vec::new();
        for i in 0..30u64 {
            let t = i * 100_000_000; // ten per second for three seconds
            h.push(inv(0, t, "write"));
            h.push(done(0, t + 1, EventType::Ok, "write"));
        }
        let b = throughput(&completed_ops(&h).0, history_end_ns(&h));
        assert_eq!(b.iter().map(|b| b.ok).collect::<Vec<_>>(), vec![10, 10, 10]);
    }

    #[test]
    fn interval_log_round_trips_through_the_hdrhistogram_reader() {
        use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
        let mut h = Vec::new();
        for i in 0..20u64 {
            let t = i * 250_000_000;
            h.push(inv(0, t, "read"));
            h.push(done(0, t + 4_000_000, EventType::Ok, "read"));
        }
        let mut buf = Vec::new();
        write_interval_log(&h, SystemTime::UNIX_EPOCH, Duration::from_secs(1), &mut buf).unwrap();
        let text = String::from_utf8(buf.clone()).unwrap();
        assert!(text.contains("#[BaseTime:"), "{text}");
        let intervals: Vec<_> = IntervalLogIterator::new(&buf)
            .filter_map(|e| match e.unwrap() {
                LogEntry::Interval(i) => Some((i.tag().unwrap().as_str().to_string(), i.max())),
                _ => None,
            })
            .collect();
        assert_eq!(intervals.len(), 5);
        assert!(
            intervals
                .iter()
                .all(|(t, max)| t == "read-ok" && (*max - 4.0).abs() < 0.01)
        );
    }
}
