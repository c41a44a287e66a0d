//! `faultline test` end to end on local namespace clusters: deploy, run, check, store.
//! Each test makes its own cluster under a unique name and always removes it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

use common::{LocalCluster, faultline};

/// A local cluster with a private store, and the commands the tests run against it.
struct Env(LocalCluster);

impl std::ops::Deref for Env {
    type Target = LocalCluster;
    fn deref(&self) -> &LocalCluster {
        &self.0
    }
}

impl Env {
    fn new(tag: &str, nodes: usize) -> Env {
        Env(LocalCluster::up(tag, nodes))
    }

    fn test_cmd(&self, args: &[&str]) -> Command {
        let mut c = faultline();
        c.args(["test", "-i", &self.name, "--store"])
            .arg(&self.store)
            .args(args);
        c
    }

    fn test(&self, args: &[&str]) -> Output {
        let out = self.test_cmd(args).output().unwrap();
        eprintln!("{}", String::from_utf8_lossy(&out.stdout));
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        out
    }

    fn latest(&self) -> PathBuf {
        std::fs::canonicalize(self.store.join("latest")).expect("store/latest exists")
    }

    fn exec(&self, cmd: &str) -> Output {
        faultline()
            .args(["exec", "-i", &self.name, "--", cmd])
            .output()
            .unwrap()
    }
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn history(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("history.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn count(h: &[Value], kind: &str) -> usize {
    h.iter()
        .filter(|e| e["process"].is_u64() && e["type"] == kind)
        .count()
}

#[test]
fn test_cluster_register_without_faults_is_valid_and_final_reads_agree() {
    let env = Env::new("v", 5);
    let out = env.test(&[
        "--workload",
        "register",
        "--nemesis",
        "none",
        "--time-limit",
        "15",
        "--seed",
        "7",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let dir = env.latest();
    let results = json(&dir.join("results.json"));
    assert_eq!(results["valid"], true);
    let h = history(&dir);
    let oks = count(&h, "ok");
    assert!(oks > 1500, "only {oks} ok ops");
    assert_eq!(count(&h, "info"), 0, "an info op without faults");
    assert!(h.iter().any(|e| e["process"] == "monitor"));
    // Final reads: every touched key was read on every node, and all agree.
    let fr = &results["stats"]["final-reads"];
    assert_eq!(fr["nodes"], 5);
    assert!(fr["keys"].as_u64().unwrap() > 10);
    assert_eq!(fr["disagreements"], 0, "{fr}");
    // The store holds what the run needs to be re-checked and reported.
    let test = json(&dir.join("test.json"));
    assert_eq!(test["seed"], 7);
    assert_ne!(test["git-commit"], "");
    assert!(test["inventory-digest"].as_str().unwrap().starts_with("sha256:"));
    for n in 1..=5 {
        assert!(
            dir.join(format!("nodes/n{n}")).read_dir().unwrap().count() > 0,
            "no logs of n{n}"
        );
    }
    assert!(dir.join("faultline.log").metadata().unwrap().len() > 0);
    // Nodes were stopped.
    let o = env.exec("test ! -e /var/lib/faultline/node/node.pid");
    assert!(
        o.status.success(),
        "a node is still running: {}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn test_cluster_register_catches_unsafe_local_reads_under_leader_partition() {
    let env = Env::new("u", 5);
    let out = env.test(&[
        "--workload",
        "register",
        "--nemesis",
        "partition",
        "--nemesis-shapes",
        "leader",
        "--nemesis-interval",
        "3",
        "--node-opt",
        "unsafe_local_reads=true",
        "--time-limit",
        "15",
        "--seed",
        "11",
    ]);
    assert_eq!(out.status.code(), Some(1), "the planted bug went unnoticed");
    let dir = env.latest();
    let results = json(&dir.join("results.json"));
    assert_eq!(results["valid"], false);
    let h = history(&dir);
    assert!(
        h.iter()
            .any(|e| e["process"] == "nemesis" && e["f"] == "start-partition")
    );
    // Healed: no faultline rule is left dropping traffic.
    let o = env.exec("iptables -S | grep -c -- '-j DROP' || true");
    let rules: u32 = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.trim().parse::<u32>().unwrap_or(0))
        .sum();
    assert_eq!(rules, 0, "partition rules left behind");
}

#[test]
fn test_cluster_same_seed_same_ops_and_nemesis_schedule() {
    let env = Env::new("s", 3);
    let args = [
        "--workload",
        "register",
        "--nemesis",
        "partition",
        "--nemesis-interval",
        "1.5",
        "--time-limit",
        "8",
        "--recovery-time",
        "1",
        "--seed",
        "1234",
        "--rate",
        "100",
    ];
    let mut runs = Vec::new();
    for _ in 0..2 {
        let out = env.test(&args);
        assert!(
            matches!(out.status.code(), Some(0) | Some(2)),
            "run failed: {:?}",
            out.status
        );
        runs.push(history(&env.latest()));
    }
    // Each fault's kind, shape and the nodes it cut off (journal ids carry wall time).
    let nemesis = |h: &[Value]| -> Vec<(Value, Value, Value)> {
        h.iter()
            .filter(|e| e["process"] == "nemesis" && e["f"] == "start-partition")
            .map(|e| (e["type"].clone(), e["value"]["shape"].clone(), e["node"].clone()))
            .collect()
    };
    let (a, b) = (nemesis(&runs[0]), nemesis(&runs[1]));
    assert!(a.len() >= 2, "too few faults to compare: {a:?}");
    let n = a.len().min(b.len());
    assert_eq!(a[..n], b[..n]);
    // Worker 0's first ops (before any info could renumber it) are the same.
    let ops = |h: &[Value]| -> Vec<(Value, Value, Value)> {
        h.iter()
            .filter(|e| e["process"] == 0 && e["type"] == "invoke")
            .map(|e| (e["f"].clone(), e["key"].clone(), e["value"].clone()))
            .collect()
    };
    let (x, y) = (ops(&runs[0]), ops(&runs[1]));
    let n = x.len().min(y.len());
    assert!(n > 30, "worker 0 did only {n} ops");
    assert_eq!(x[..n], y[..n]);
}

#[test]
fn test_cluster_sigint_heals_stops_nodes_and_keeps_the_history() {
    interrupt_heals_stops_nodes_and_keeps_the_history("i", libc::SIGINT);
}

/// Schedulers (systemd, CI timeouts, `timeout(1)`) stop jobs with SIGTERM: it must heal
/// and clean up exactly like Ctrl-C, not exit 143 at once leaving faults and nodes behind.
#[test]
fn test_cluster_sigterm_heals_stops_nodes_and_keeps_the_history() {
    interrupt_heals_stops_nodes_and_keeps_the_history("t", libc::SIGTERM);
}

fn interrupt_heals_stops_nodes_and_keeps_the_history(tag: &str, signal: i32) {
    let env = Env::new(tag, 3);
    let child = env
        .test_cmd(&[
            "--workload",
            "set",
            "--nemesis",
            "partition",
            "--nemesis-interval",
            "2",
            "--time-limit",
            "60",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until clients are running, then interrupt.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "the run never started its clients");
        let started = std::fs::canonicalize(env.store.join("latest"))
            .ok()
            .and_then(|d| std::fs::read_to_string(d.join("history.jsonl")).ok())
            .is_some_and(|h| h.lines().filter(|l| l.contains("\"add\"")).count() > 200);
        if started {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
    // SAFETY: signalling the child this test spawned.
    unsafe { libc::kill(child.id() as i32, signal) };
    let t = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "took {:?} to stop",
        t.elapsed()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        matches!(out.status.code(), Some(2) | Some(3)),
        "exit {:?}\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("history and partial results are kept"),
        "{stdout}"
    );
    let dir = env.latest();
    let results = json(&dir.join("results.json"));
    assert_eq!(results["interrupted"], true);
    assert_ne!(results["valid"], true);
    assert!(count(&history(&dir), "ok") > 200);
    let o = env.exec("test ! -e /var/lib/faultline/node/node.pid");
    assert!(o.status.success(), "a node is still running");
    let o = env.exec("iptables -S | grep -c -- '-j DROP' || true");
    let rules: u32 = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.trim().parse::<u32>().unwrap_or(0))
        .sum();
    assert_eq!(rules, 0, "partition rules left behind");
}

#[test]
fn test_bad_flags_are_usage_errors() {
    for args in [
        vec!["test", "-i", "nowhere", "--db", "mysql"],
        vec!["test", "-i", "nowhere", "--workload", "queue"],
        vec!["test", "-i", "nowhere", "--nemesis", "meteor"],
        vec!["test", "-i", "nowhere", "--rate", "0"],
        vec!["test", "-i", "nowhere", "--node-opt", "novalue"],
        vec!["test", "-i", "nowhere", "--node-opt", "unsafe_locl_reads=true"],
        vec!["test", "-i", "nowhere", "--node-opt", "election_timeout_ms_min=abc"],
        vec!["test", "-i", "nowhere", "--db-opt", "data_dir=/tmp/x"],
        vec!["test", "-i", "nowhere", "--db", "etcd-but-not-really"],
        vec!["test", "-i", "/nonexistent/inventory.yaml"],
    ] {
        let out = faultline().args(&args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(64),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stderr.is_empty());
    }
    // A family the database cannot carry is refused before any host is contacted.
    let out = faultline().args(["test", "-i", "nowhere", "--db", "etcd", "--nemesis", "lose-unfsynced"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--db etcd cannot run on faultline's lazyfs"), "{err}");
    let out = faultline().args(["test", "-i", "nowhere", "--db", "etcd", "--nemesis", "member-replace"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--db etcd cannot change its membership"), "{err}");
}

#[test]
fn test_cluster_set_bank_append_under_faults_check_valid() {
    let env = Env::new("w", 3);
    for (db, workload, nemesis) in [
        ("raft", "set", "partition"),
        ("paxos", "bank", "kill"),
        ("raft", "append", "pause"),
    ] {
        let out = env.test(&[
            "--db",
            db,
            "--workload",
            workload,
            "--nemesis",
            nemesis,
            "--nemesis-interval",
            "2",
            "--time-limit",
            "8",
            "--recovery-time",
            "3",
            "--seed",
            "5",
        ]);
        assert_eq!(out.status.code(), Some(0), "{workload} on {db} under {nemesis}");
        let dir = env.latest();
        let results = json(&dir.join("results.json"));
        let own = results["results"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["checker"] == workload))
            .or_else(|| results["results"].get(workload))
            .unwrap_or_else(|| panic!("no {workload} checker result: {results}"));
        assert_eq!(own["valid"], true, "{own}");
        let h = history(&dir);
        assert!(count(&h, "ok") > 300, "{workload}: only {} ok", count(&h, "ok"));
        assert!(
            h.iter().any(|e| e["process"] == "nemesis"),
            "{workload}: no fault happened"
        );
        assert_eq!(json(&dir.join("test.json"))["db"], db);
    }
}

/// Disk faults on one node of five, both cores: the damaged node recovers a torn tail or
/// refuses a corrupt middle, and the other four stay linearizable and available. Every
/// applied fault records exactly what it changed, on the target only.
#[test]
fn test_cluster_disk_faults_on_one_node_leave_the_cluster_valid_and_available() {
    let env = Env::new("dk", 5);
    for db in ["raft", "paxos"] {
        let out = env.test(&[
            "--db",
            db,
            "--workload",
            "register",
            "--nemesis",
            "bitflip,truncate",
            "--nemesis-targets",
            "n1",
            "--nemesis-interval",
            "2",
            "--time-limit",
            "12",
            "--seed",
            "8",
        ]);
        assert_eq!(out.status.code(), Some(0), "{db}: not valid");
        let dir = env.latest();
        let h = history(&dir);
        let mut applied = std::collections::BTreeMap::<String, usize>::new();
        for e in h.iter().filter(|e| e["process"] == "nemesis" && e["type"] == "info") {
            let f = e["f"].as_str().unwrap();
            if !(f == "start-bitflip" || f == "start-truncate") {
                continue;
            }
            assert!(e.get("error").is_none(), "{db}: a fault failed: {e}");
            let changed = e["value"]["changed"].as_object().expect("a change record");
            assert_eq!(changed.keys().collect::<Vec<_>>(), vec!["n1"], "{e}");
            let c = &changed["n1"][0];
            assert_eq!(c["file"], "/var/lib/faultline/node/wal/wal.log", "{e}");
            assert!(c["offset"].as_u64().unwrap() < c["size_bytes"].as_u64().unwrap(), "{e}");
            *applied.entry(f.to_string()).or_default() += 1;
        }
        assert!(applied.len() == 2 && applied.values().all(|&n| n >= 1), "{db}: {applied:?}");
        // Available: writes kept succeeding through the faults, in every 2 s of the run.
        let mut buckets = [0usize; 6];
        for e in h.iter().filter(|e| e["type"] == "ok" && e["f"] == "write") {
            let b = (e["time"].as_u64().unwrap() / 2_000_000_000) as usize;
            if b < buckets.len() {
                buckets[b] += 1;
            }
        }
        assert!(buckets.iter().all(|&n| n >= 10), "{db}: ok writes per 2 s: {buckets:?}");
    }
}

/// Grow, shrink and replace under load, both cores: `member-remove` takes a node out
/// through the leader and wipes it (shrink), its heal starts it fresh and it joins again
/// (grow); `member-replace` does both at once. The register stays linearizable, writes keep
/// succeeding, and every wiped node came back as a voter by its own log's word.
#[test]
fn test_cluster_grow_shrink_and_replace_under_load_are_valid_for_both_cores() {
    let env = Env::new("mb", 5);
    for db in ["raft", "paxos"] {
        let out = env.test(&[
            "--db",
            db,
            "--workload",
            "register",
            "--nemesis",
            "member-remove,member-replace",
            "--nemesis-interval",
            "3",
            "--time-limit",
            "16",
            "--seed",
            "3",
        ]);
        assert_eq!(out.status.code(), Some(0), "{db}: not valid");
        let dir = env.latest();
        let h = history(&dir);
        let mut applied = std::collections::BTreeMap::<String, usize>::new();
        let mut wiped = std::collections::BTreeSet::new();
        for e in h.iter().filter(|e| e["process"] == "nemesis" && e["type"] == "info") {
            let f = e["f"].as_str().unwrap();
            if !f.starts_with("start-member-") {
                continue;
            }
            assert!(e.get("error").is_none(), "{db}: a fault failed: {e}");
            let targets: Vec<String> =
                e["value"]["targets"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
            let changed = e["value"]["changed"].as_object().expect("a change record");
            assert_eq!(changed.keys().cloned().collect::<Vec<_>>(), targets, "{e}");
            for t in &targets {
                assert_eq!(changed[t][0]["action"], "wipe", "{e}");
                wiped.insert(t.clone());
            }
            *applied.entry(f.to_string()).or_default() += 1;
        }
        assert!(applied.len() == 2, "{db}: both shrink and replace happened: {applied:?}");
        for n in &wiped {
            let log = std::fs::read_to_string(dir.join("nodes").join(n).join("node.log")).unwrap();
            assert!(log.contains("join: promoted, a voter"), "{db}: wiped {n} did not join again");
        }
        let mut buckets = [0usize; 4];
        for e in h.iter().filter(|e| e["type"] == "ok" && e["f"] == "write") {
            let b = (e["time"].as_u64().unwrap() / 4_000_000_000) as usize;
            if b < buckets.len() {
                buckets[b] += 1;
            }
        }
        assert!(buckets.iter().all(|&n| n >= 10), "{db}: ok writes per 4 s: {buckets:?}");
    }
}

/// One run of the majority-wipe drill: both followers of three wiped, one after the other,
/// then the leader killed,
/// while `faultline test` drives the register workload. Returns the run's exit code.
fn wipe_followers_then_kill_the_leader(env: &Env, unsafe_rejoin: bool) -> Option<i32> {
    let mut args = vec!["--workload", "register", "--time-limit", "16", "--seed", "5"];
    if unsafe_rejoin {
        args.extend(["--node-opt", "unsafe_rejoin_empty=true"]);
    }
    let _ = std::fs::remove_file(env.store.join("latest"));
    let run = env.test_cmd(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // The drills restart nodes with the run's own start command (and its knobs).
    let deadline = Instant::now() + Duration::from_secs(60);
    // Wait for the workload: a first acknowledged op in the history.
    let test_json = loop {
        if let Ok(dir) = std::fs::canonicalize(env.store.join("latest"))
            && let Ok(s) = std::fs::read_to_string(dir.join("test.json"))
            && std::fs::read_to_string(dir.join("history.jsonl")).is_ok_and(|h| h.contains("\"type\":\"ok\""))
        {
            break serde_json::from_str::<Value>(&s).unwrap();
        }
        assert!(Instant::now() < deadline, "the run never started its workload");
        std::thread::sleep(Duration::from_millis(100));
    };
    let start = test_json["db-config"]["command"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_secs(3));
    let drill = |args: &[&str]| {
        let o = faultline()
            .args(["nemesis", "-i", &env.name, "--start-command", &start])
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "drill {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    // The leader, as the run's monitor last saw it.
    let dir = std::fs::canonicalize(env.store.join("latest")).unwrap();
    let leader = history(&dir)
        .iter()
        .rev()
        .find(|e| e["process"] == "monitor" && e["value"]["role"] == "leader")
        .map(|e| e["node"].as_str().unwrap().to_string())
        .expect("the monitor saw a leader");
    // One follower at a time, briefly, so the leader never loses its quorum and keeps its
    // (now stale) view of their logs.
    for f in ["n1", "n2", "n3"].iter().filter(|n| **n != leader) {
        drill(&["wipe", "--target", f, "--for", "300ms"]);
        std::thread::sleep(Duration::from_secs(1));
    }
    drill(&["kill", "--target", &leader, "--for", "3s"]);
    let out = run.wait_with_output().unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out.status.code()
}

/// The planted bug `unsafe_rejoin_empty` is caught by the register test: two wiped followers
/// taken back under their old names elect one of themselves once the leader dies, and the
/// empty leader answers reads of acknowledged writes with nothing. Without the bug the wiped
/// nodes stop on contact with the leader, and the cluster is unavailable rather than wrong.
#[test]
fn test_cluster_register_catches_unsafe_rejoin_empty_after_a_majority_wipe() {
    let env = Env::new("rj", 3);
    assert_eq!(wipe_followers_then_kill_the_leader(&env, true), Some(1), "the planted bug went unnoticed");
    let results = json(&env.latest().join("results.json"));
    assert_eq!(results["valid"], false);
    let code = wipe_followers_then_kill_the_leader(&env, false);
    assert!(matches!(code, Some(0) | Some(2)), "correct nodes judged {code:?}");
}

/// `lose-unfsynced` and ordinary kills on every node at once: each node's state sits on
/// faultline's lazyfs for the run (mounted before the nodes start, removed after they stop);
/// a kill loses nothing (the page cache survives it), a `lose-unfsynced` kills every node
/// and drops what it had not fsynced. Correct nodes fsync before they
/// acknowledge, so the run is valid; with the planted bug `unsafe_no_fsync` acknowledged
/// writes vanish and the register checker says so. No mount is left on any host.
#[test]
fn test_cluster_lose_unfsynced_is_valid_for_correct_nodes_and_catches_unsafe_no_fsync() {
    let env = Env::new("lu", 3);
    let mut args = vec![
        "--db",
        "raft",
        "--workload",
        "register",
        "--nemesis",
        "kill,lose-unfsynced",
        "--nemesis-targets",
        "all",
        "--nemesis-interval",
        "2",
        "--time-limit",
        "12",
        "--seed",
        "3",
    ];
    let out = env.test(&args);
    assert_eq!(out.status.code(), Some(0), "correct nodes: not valid");
    let h = history(&env.latest());
    let faults: Vec<&Value> = h
        .iter()
        .filter(|e| e["process"] == "nemesis" && e["type"] == "info" && e["f"] == "start-lose-unfsynced")
        .collect();
    assert!(!faults.is_empty(), "no lose-unfsynced applied");
    assert!(h.iter().any(|e| e["f"] == "start-kill" && e["type"] == "info"), "no kill applied");
    for e in &faults {
        assert!(e.get("error").is_none(), "a fault failed: {e}");
        let changed = e["value"]["changed"].as_object().expect("a change record");
        assert_eq!(changed.len(), 3, "{e}");
        for (_, c) in changed {
            assert_eq!(c[0]["action"], "lose-unfsynced", "{e}");
            assert!(c[0]["lost_bytes"].is_u64(), "{e}");
        }
    }
    let mounts = env.exec("grep -c faultline-lazyfs /proc/mounts || true");
    let text = String::from_utf8_lossy(&mounts.stdout);
    assert!(text.lines().filter(|l| l.trim().parse::<u32>().is_ok_and(|n| n > 0)).count() == 0, "a lazyfs mount was left: {text}");

    args.extend(["--node-opt", "unsafe_no_fsync=true"]);
    let out = env.test(&args);
    assert_eq!(out.status.code(), Some(1), "unsafe_no_fsync: the lost acknowledged writes were not caught");
    let h = history(&env.latest());
    let lost: u64 = h
        .iter()
        .filter(|e| e["f"] == "start-lose-unfsynced" && e["type"] == "info")
        .flat_map(|e| e["value"]["changed"].as_object().unwrap().values().map(|c| c[0]["lost_bytes"].as_u64().unwrap()))
        .sum();
    assert!(lost > 0, "nothing un-synced was dropped");
}
