//! The client phase against an in-memory store: the history it records, the checkers'
//! verdicts on a correct and a stale store, and determinism under a seed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use faultline_checkers::{Event, EventType, Process, Validity};
use faultline_workloads::mem::MemKv;
use faultline_workloads::{GenOpts, Kv};
use futures::future::BoxFuture;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::clients::{self, ClientPhase};
use super::history::{Recorder, read_history};
use super::Db;
use crate::db::DbError;

/// The run's own verdict pipeline over a history, stored as a run directory because the
/// pipeline streams the history from its file.
fn check(workload: &str, h: &[Event]) -> (Validity, Vec<faultline_checkers::CheckResult>) {
    let dir = tmp(&format!("check-{workload}"));
    let mut lines = String::new();
    for e in h {
        lines.push_str(&serde_json::to_string(e).unwrap());
        lines.push('\n');
    }
    std::fs::write(dir.join(crate::store::HISTORY_FILE), lines).unwrap();
    std::fs::write(dir.join(crate::store::TEST_FILE), json!({"workload": workload}).to_string()).unwrap();
    let run = crate::report::RunData::load(&dir).unwrap();
    let a = crate::verdict::analyze(&run, None, &crate::verdict::RunFacts::default()).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    (a.valid, a.results)
}

struct MemDb {
    kv: MemKv,
    nodes: usize,
}

impl Db for MemDb {
    fn nodes(&self) -> Vec<String> {
        (1..=self.nodes).map(|i| format!("n{i}")).collect()
    }
    fn client(&self, _node: &str, _id: u64) -> Box<dyn Kv> {
        Box::new(self.kv.clone())
    }
    fn status<'a>(&'a self, node: &'a str) -> BoxFuture<'a, Result<Value, DbError>> {
        Box::pin(
            async move { Ok(json!({"role": if node == "n1" {"leader"} else {"follower"}, "leader": "n1"})) },
        )
    }
}

/// A store that refuses every request, like a node that no longer starts.
struct DeadKv;

impl Kv for DeadKv {
    fn read<'a>(&'a mut self, _: &'a str) -> BoxFuture<'a, Result<Value, faultline_workloads::KvError>> {
        Box::pin(async { Err(faultline_workloads::KvError::Definite("unavailable".into())) })
    }
    fn write<'a>(&'a mut self, _: &'a str, _: Value) -> BoxFuture<'a, Result<(), faultline_workloads::KvError>> {
        Box::pin(async { Err(faultline_workloads::KvError::Definite("unavailable".into())) })
    }
    fn cas<'a>(&'a mut self, _: &'a str, _: Value, _: Value) -> BoxFuture<'a, Result<(), faultline_workloads::KvError>> {
        Box::pin(async { Err(faultline_workloads::KvError::Definite("unavailable".into())) })
    }
    fn append<'a>(&'a mut self, _: &'a str, _: Value) -> BoxFuture<'a, Result<(), faultline_workloads::KvError>> {
        Box::pin(async { Err(faultline_workloads::KvError::Definite("unavailable".into())) })
    }
}

struct DeadNodeDb;

impl Db for DeadNodeDb {
    fn nodes(&self) -> Vec<String> {
        vec!["n1".into(), "n2".into()]
    }
    fn client(&self, node: &str, _id: u64) -> Box<dyn Kv> {
        if node == "n2" { Box::new(DeadKv) } else { Box::new(MemKv::new()) }
    }
    fn status<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Value, DbError>> {
        Box::pin(async { Ok(json!({})) })
    }
}

/// Regression: with three of five nodes refusing to start after disk faults, final reads
/// retried every key on every dead node and held a 30 s run for four minutes.
#[tokio::test]
async fn final_reads_give_up_early_on_a_node_that_answers_nothing() {
    let dir = tmp("dead");
    let (rec, writer) = Recorder::open(&dir.join("history.jsonl"), Instant::now()).await.unwrap();
    let w = faultline_workloads::lookup("register").unwrap();
    let keys: std::collections::BTreeSet<String> = (0..20).map(|k| k.to_string()).collect();
    let ops = w.final_reads(&keys);
    assert_eq!(ops.len(), 20);
    let started = Instant::now();
    let reads = clients::final_reads(
        Arc::new(DeadNodeDb),
        ops,
        rec.clone(),
        100,
        Duration::from_secs(1),
        CancellationToken::new(),
    )
    .await;
    let n2 = &reads.iter().find(|(n, _)| n == "n2").unwrap().1;
    assert_eq!(n2.len(), 20);
    assert!(n2.iter().all(|(_, v)| v.is_none()));
    let n1 = &reads.iter().find(|(n, _)| n == "n1").unwrap().1;
    assert!(n1.iter().all(|(_, v)| v.is_some()), "a live node reads every key");
    rec.close().await;
    writer.finish().await.unwrap();
    let h = read_history(&dir.join("history.jsonl")).unwrap();
    let n2_reads = h.iter().filter(|e| e.kind == EventType::Invoke && e.node == Some(json!("n2"))).count();
    // All attempts for the first key, then one per remaining key.
    assert_eq!(n2_reads, 10 + 19, "attempts on the dead node");
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    std::fs::remove_dir_all(&dir).unwrap();
}

fn tmp(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("fl-runner-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs `workload` for `secs` against `kv`, then final reads; returns the stored history.
async fn drive(tag: &str, workload: &str, kv: MemKv, seed: u64, secs: f64) -> Vec<Event> {
    let dir = tmp(tag);
    let path = dir.join("history.jsonl");
    let (rec, writer) = Recorder::open(&path, Instant::now()).await.unwrap();
    let db: Arc<dyn Db> = Arc::new(MemDb { kv, nodes: 3 });
    let w = faultline_workloads::lookup(workload).unwrap();
    for op in w.setup() {
        let mut c = db.client("n1", 999);
        let cancel = CancellationToken::new();
        clients::invoke_once(&rec, c.as_mut(), 999, &op, "n1", Duration::from_secs(1), &cancel).await;
    }
    let monitor_stop = CancellationToken::new();
    let monitor = tokio::spawn(super::monitor::run(db.clone(), rec.clone(), monitor_stop.clone()));
    let report = clients::run(ClientPhase {
        db: db.clone(),
        workload: &*w,
        gen_opts: GenOpts {
            seed,
            concurrency: 4,
            rate_per_s: 400.0,
        },
        time_limit: Duration::from_secs_f64(secs),
        op_timeout: Duration::from_secs(1),
        recorder: rec.clone(),
        cancel: CancellationToken::new(),
    })
    .await;
    assert!(
        report.offered > (secs * 400.0 * 0.7) as u64,
        "offered only {}",
        report.offered
    );
    assert_eq!(report.skipped, 0);
    let reads = clients::final_reads(
        db.clone(),
        w.final_reads(&report.keys),
        rec.clone(),
        report.max_process + 1,
        Duration::from_secs(1),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(reads.len(), 3);
    monitor_stop.cancel();
    assert!(monitor.await.unwrap() > 0);
    rec.close().await;
    writer.finish().await.unwrap();
    let h = read_history(&path).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    h
}

fn invocations(h: &[Event]) -> Vec<Vec<(String, Option<String>, Value)>> {
    let mut per: std::collections::BTreeMap<u64, Vec<_>> = Default::default();
    for e in h {
        if let (Process::Client(p), EventType::Invoke) = (&e.process, e.kind)
            && *p < 4
        {
            per.entry(*p)
                .or_default()
                .push((e.f.clone(), e.key.clone(), e.value.clone()));
        }
    }
    per.into_values().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_store_checks_valid_with_complete_pairs_and_monitor_samples() {
    let h = drive("valid", "set", MemKv::new(), 1, 1.5).await;
    let invokes = h
        .iter()
        .filter(|e| e.kind == EventType::Invoke && e.client().is_some())
        .count();
    let oks = h.iter().filter(|e| e.kind == EventType::Ok).count();
    assert_eq!(invokes, oks, "every op completes ok against memory");
    assert!(h.iter().any(|e| e.process == Process::Named("monitor".into())));
    let (valid, results) = check("set", &h);
    assert_eq!(valid, Validity::Valid, "{results:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_serving_stale_reads_checks_invalid() {
    let h = drive("stale", "append", MemKv::stale_reads(7), 2, 1.5).await;
    let (valid, results) = check("append", &h);
    assert_eq!(valid, Validity::Invalid, "{results:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_total_is_conserved_end_to_end() {
    let h = drive("bank", "bank", MemKv::new(), 3, 1.0).await;
    let (valid, results) = check("bank", &h);
    assert_eq!(valid, Validity::Valid, "{results:?}");
    assert!(results[0].details["read-count"].as_u64().unwrap() > 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_gives_the_same_ops_per_worker() {
    let a = invocations(&drive("seed-a", "register", MemKv::new(), 42, 1.0).await);
    let b = invocations(&drive("seed-b", "register", MemKv::new(), 42, 1.0).await);
    let c = invocations(&drive("seed-c", "register", MemKv::new(), 43, 1.0).await);
    assert_eq!(a.len(), 4);
    for (x, y) in a.iter().zip(&b) {
        // Both runs cover the same arrivals up to the time limit; compare the common prefix.
        let n = x.len().min(y.len());
        assert!(n > 50);
        assert_eq!(x[..n], y[..n]);
    }
    assert_ne!(a[0][..20], c[0][..20]);
}
