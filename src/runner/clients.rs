//! Client workers: open-loop load against the cluster, recorded Jepsen style.
//!
//! Worker `i` talks to node `i mod n`. Its arrivals are a seeded Poisson process
//! ([`Arrivals`]); it has one operation in flight at a time, like a Jepsen process.
//! Arrivals that come while it is busy wait in a bounded FIFO queue
//! ([`QUEUE_OPS_MAX`] per worker) and are executed as soon as it is free, so a stalled
//! cluster shows up as response time (from scheduled arrival to completion, kept in
//! [`ClientReport::response_us`]) rather than as a silently lower offered load. Arrivals
//! that find the queue full are *skipped* — counted, never sent, never in the history.
//! The history's own invoke time is when the request is actually sent.
//!
//! An operation whose outcome is unknown (timeout, connection lost after sending) is
//! recorded `info`, and the worker continues under a new process number
//! (`process + concurrency`): Jepsen's rule, since the old process may still be acting.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use faultline_checkers::EventType;
use faultline_workloads::{Arrivals, GenOpts, Kv, Op, Outcome, Workload, execute};
use hdrhistogram::Histogram;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::Db;
use super::history::Recorder;

/// Arrivals a busy worker holds before skipping new ones.
pub const QUEUE_OPS_MAX: usize = 256;
/// Attempts per node and key for a final read before giving up on it.
const FINAL_READ_ATTEMPTS_MAX: usize = 10;

/// What the client phase did, beyond what the history says.
#[derive(Debug)]
pub struct ClientReport {
    pub offered: u64,
    pub skipped: u64,
    /// Arrivals still queued when the time limit came.
    pub unsent: u64,
    pub keys: BTreeSet<String>,
    /// Scheduled arrival to completion, microseconds: latency including queueing.
    pub response_us: Histogram<u64>,
    /// The highest process number used, so later phases pick fresh ones.
    pub max_process: u64,
}

pub struct ClientPhase<'a> {
    pub db: Arc<dyn Db>,
    pub workload: &'a dyn Workload,
    pub gen_opts: GenOpts,
    pub time_limit: Duration,
    pub op_timeout: Duration,
    pub recorder: Recorder,
    pub cancel: CancellationToken,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// Runs `op` under the client timeout and records invoke and completion.
pub(crate) async fn invoke_once(
    rec: &Recorder,
    kv: &mut dyn Kv,
    process: u64,
    op: &Op,
    node: &str,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Outcome {
    let f = op.f.name();
    let inv_value = if op.f == faultline_workloads::F::Read {
        Value::Null
    } else {
        op.value.clone()
    };
    rec.client(
        process,
        EventType::Invoke,
        f,
        &op.key,
        inv_value.clone(),
        None,
        node,
    )
    .await;
    // The client times out each request itself (and says whether the op may have taken
    // effect); this outer bound covers multi-request ops and leader redirects.
    let limit = timeout * 3;
    let outcome = tokio::select! {
        r = tokio::time::timeout(limit, execute(op, kv)) => match r {
            Ok(o) => o,
            Err(_) => Outcome::Info(format!("timeout after {} ms", limit.as_millis())),
        },
        _ = cancel.cancelled() => Outcome::Info("interrupted".into()),
    };
    let (kind, value, error) = match &outcome {
        Outcome::Ok(v) => (EventType::Ok, v.clone(), None),
        Outcome::Fail(e) => (EventType::Fail, inv_value, Some(e.clone())),
        Outcome::Info(e) => (EventType::Info, inv_value, Some(e.clone())),
    };
    rec.client(process, kind, f, &op.key, value, error, node).await;
    outcome
}

/// Drives every worker until the time limit or cancellation.
pub async fn run(phase: ClientPhase<'_>) -> ClientReport {
    let nodes = phase.db.nodes();
    let concurrency = phase.gen_opts.concurrency.max(1);
    let start_ns = phase.recorder.now_ns();
    let limit_ns = phase.time_limit.as_nanos() as u64;
    let mut workers = Vec::with_capacity(concurrency);
    // One set for all workers: every worker touches every key (keys rotate for all at
    // once), so a set per worker held each key `concurrency` times, and an hour at 1,000
    // ops/s with 50 workers grew the controller by ~55 bytes per op.
    let keys: Arc<std::sync::Mutex<BTreeSet<String>>> = Default::default();
    for i in 0..concurrency {
        let keys = keys.clone();
        let node = nodes[i % nodes.len()].clone();
        let kv = phase.db.client(&node, i as u64);
        let db = phase.db.clone();
        let generator = phase.workload.generator(&phase.gen_opts, i);
        let arrivals = Arrivals::new(&phase.gen_opts, i);
        let rec = phase.recorder.clone();
        let cancel = phase.cancel.clone();
        let timeout = phase.op_timeout;
        workers.push(tokio::spawn(async move {
            worker(
                i,
                concurrency,
                db,
                node,
                kv,
                generator,
                arrivals,
                rec,
                cancel,
                timeout,
                start_ns,
                limit_ns,
                &keys,
            )
            .await
        }));
    }
    let mut report = ClientReport {
        offered: 0,
        skipped: 0,
        unsent: 0,
        keys: BTreeSet::new(),
        response_us: histogram(),
        max_process: 0,
    };
    for w in workers {
        match w.await {
            Ok(r) => {
                report.offered += r.offered;
                report.skipped += r.skipped;
                report.unsent += r.unsent;

                let _ = report.response_us.add(&r.response_us);
                report.max_process = report.max_process.max(r.max_process);
            }
            Err(e) => tracing::error!(error = %e, "client worker panicked"),
        }
    }
    report.keys = std::mem::take(&mut *keys.lock().unwrap_or_else(|p| p.into_inner()));
    report
}

#[allow(clippy::too_many_arguments)]
async fn worker(
    i: usize,
    concurrency: usize,
    db: Arc<dyn Db>,
    node: String,
    mut kv: Box<dyn Kv>,
    mut generator: Box<dyn faultline_workloads::Generator>,
    mut arrivals: Arrivals,
    rec: Recorder,
    cancel: CancellationToken,
    timeout: Duration,
    start_ns: u64,
    limit_ns: u64,
    keys: &std::sync::Mutex<BTreeSet<String>>,
) -> ClientReport {
    let mut r = ClientReport {
        offered: 0,
        skipped: 0,
        unsent: 0,
        keys: BTreeSet::new(),
        response_us: histogram(),
        max_process: i as u64,
    };
    let mut process = i as u64;
    // Keys change rarely (every `ops_per_key` arrivals): the shared set is locked only then.
    let mut last_key: Option<String> = None;
    let mut queue: VecDeque<(u64, Op)> = VecDeque::with_capacity(QUEUE_OPS_MAX);
    let mut next = arrivals.next_ns();
    loop {
        let elapsed = rec.now_ns().saturating_sub(start_ns);
        // Every arrival that is due gets generated, queued or skipped, so the op sequence
        // does not depend on how fast the cluster answered.
        while next <= elapsed && next < limit_ns {
            let op = generator.next(next);
            r.offered += 1;
            if queue.len() < QUEUE_OPS_MAX {
                queue.push_back((next, op));
            } else {
                r.skipped += 1;
            }
            next = arrivals.next_ns();
        }
        if cancel.is_cancelled() || elapsed >= limit_ns {
            r.unsent += queue.len() as u64;
            break;
        }
        if let Some((arrival, op)) = queue.pop_front() {
            if last_key.as_deref() != Some(op.key.as_str()) {
                keys.lock().unwrap_or_else(|p| p.into_inner()).insert(op.key.clone());
                last_key = Some(op.key.clone());
            }
            let outcome = invoke_once(&rec, kv.as_mut(), process, &op, &node, timeout, &cancel).await;
            let done = rec.now_ns().saturating_sub(start_ns);
            let _ = r.response_us.record((done.saturating_sub(arrival) / 1000).max(1));
            if matches!(outcome, Outcome::Info(_)) {
                // A new process gets a new connection to the worker's own node: the old
                // one may still be in flight, or redirected to a leader that is gone.
                process += concurrency as u64;
                r.max_process = process;
                kv = db.client(&node, process);
            }
            continue;
        }
        let wake = next.min(limit_ns);
        let sleep = Duration::from_nanos(wake.saturating_sub(elapsed));
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = cancel.cancelled() => {}
        }
    }
    r
}

/// Per node, what each key's final read returned (`None`: no read succeeded).
pub type FinalReads = Vec<(String, Vec<(String, Option<Value>)>)>;

/// Reads every final-read op on every node, each node under its own process numbers
/// (starting above `first_process`), retrying definite failures a bounded number of times.
pub async fn final_reads(
    db: Arc<dyn Db>,
    ops: Vec<Op>,
    rec: Recorder,
    first_process: u64,
    timeout: Duration,
    cancel: CancellationToken,
) -> FinalReads {
    let nodes = db.nodes();
    let n = nodes.len() as u64;
    let tasks = nodes.into_iter().enumerate().map(|(j, node)| {
        let (db, ops, rec, cancel) = (db.clone(), ops.clone(), rec.clone(), cancel.clone());
        tokio::spawn(async move {
            let mut process = first_process + j as u64;
            let mut kv = db.client(&node, process);
            let mut out = Vec::with_capacity(ops.len());
            // A node that answered none of one key's attempts (down, refusing to start,
            // without a quorum) gets one attempt per remaining key: retrying every key would
            // keep a run with lost quorum in this phase for keys × attempts × timeout.
            let mut attempts = FINAL_READ_ATTEMPTS_MAX;
            for op in &ops {
                let mut got = None;
                for attempt in 0..attempts {
                    if cancel.is_cancelled() {
                        break;
                    }
                    match invoke_once(&rec, kv.as_mut(), process, op, &node, timeout, &cancel).await {
                        Outcome::Ok(v) => {
                            got = Some(v);
                            break;
                        }
                        Outcome::Info(_) => {
                            process += n;
                            kv = db.client(&node, process);
                        }
                        Outcome::Fail(_) => {}
                    }
                    if attempt + 1 < attempts {
                        let backoff = Duration::from_millis(100 * (attempt as u64 + 1));
                        tokio::time::sleep(backoff).await;
                    }
                }
                if got.is_none() {
                    attempts = 1;
                }
                out.push((op.key.clone(), got));
            }
            (node, out)
        })
    });
    let mut all = Vec::new();
    for t in futures::future::join_all(tasks).await {
        match t {
            Ok(x) => all.push(x),
            Err(e) => tracing::error!(error = %e, "final read task panicked"),
        }
    }
    all
}

/// Keys whose final reads disagree between nodes, or that some node could not read.
pub fn final_read_disagreements(reads: &FinalReads) -> Vec<Value> {
    let mut by_key: std::collections::BTreeMap<&str, Vec<(&str, &Option<Value>)>> = Default::default();
    for (node, rs) in reads {
        for (key, v) in rs {
            by_key.entry(key).or_default().push((node, v));
        }
    }
    let mut bad = Vec::new();
    for (key, vs) in by_key {
        let first = vs.first().map(|x| x.1);
        if vs.iter().any(|(_, v)| v.is_none() || Some(*v) != first) {
            let per_node: serde_json::Map<String, Value> = vs
                .iter()
                .map(|(n, v)| {
                    (
                        n.to_string(),
                        (*v).clone().unwrap_or(Value::String("unread".into())),
                    )
                })
                .collect();
            bad.push(serde_json::json!({"key": key, "values": per_node}));
        }
    }
    bad
}
