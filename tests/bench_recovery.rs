//! `faultline bench recovery` end to end on a local cluster: trials measured and checked,
//! and an interrupted experiment that heals, stops the nodes and keeps its figures.

mod common;

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::{LocalCluster, faultline, temp_store};
use serde_json::Value;

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn exec(c: &LocalCluster, cmd: &str) -> Output {
    faultline().args(["exec", "-i", &c.name, "--", cmd]).output().unwrap()
}

#[test]
fn bench_recovery_measures_kill_and_partition_trials_for_both_cores() {
    let c = LocalCluster::up("br", 3);
    let out_dir = temp_store("br-out");
    let out = faultline()
        .args(["bench", "recovery", "-i", &c.name, "--db", "raft,paxos"])
        .args(["--scenario", "kill-leader,partition-leader", "--trials", "3"])
        .args(["--sweep", "election_timeout_ms=150-300", "--heartbeat-ms", "50", "--out"])
        .arg(&out_dir)
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let doc = json(&out_dir.join("recovery.json"));
    let cells = doc["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 4, "{doc}");
    for cell in cells {
        let what = format!("{} {}", cell["db"], cell["scenario"]);
        assert_eq!(cell["unavailability"]["trials"], 3, "{what}");
        assert_eq!(cell["unavailability"]["censored"], 0, "{what}");
        for t in cell["trials"].as_array().unwrap() {
            let u = t["unavailability_ms"].as_f64().unwrap();
            // A leader crash or isolation cannot be noticed before the smallest timeout.
            assert!(u >= 100.0 && u < 5000.0, "{what}: {t}");
            assert!(t["leader_ms"].as_f64().is_some(), "{what}: {t}");
            assert_ne!(t["leader_after"], t["leader_before"], "{what}: {t}");
        }
    }
    for h in doc["experiment"]["histories"].as_array().unwrap() {
        assert_eq!(h["valid"], "valid", "{h}");
    }
    for f in ["report.html", "kill-leader.svg", "partition-leader.svg"] {
        assert!(out_dir.join(f).exists(), "{f} missing");
    }
    let _ = std::fs::remove_dir_all(&out_dir);
}

/// A follower replaced by a fresh node, under load, with state to catch up on: every trial
/// sees the fresh node caught up (a voter holding what the leader had applied) and measures
/// the throughput against the second before; the history stays valid.
#[test]
fn bench_recovery_replace_node_measures_the_catch_up_for_both_cores() {
    let refused = faultline()
        .args(["bench", "recovery", "-i", "nowhere", "--db", "etcd", "--scenario", "replace-node"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(64), "{}", String::from_utf8_lossy(&refused.stderr));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("cannot change its membership"));
    let c = LocalCluster::up("brr", 3);
    let out_dir = temp_store("brr-out");
    let out = faultline()
        .args(["bench", "recovery", "-i", &c.name, "--db", "raft,paxos"])
        .args(["--scenario", "replace-node", "--trials", "2", "--preload-mib", "1", "--window-ms", "20000"])
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("caught up median"), "{stdout}");
    let doc = json(&out_dir.join("recovery.json"));
    let cells = doc["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2, "{doc}");
    for cell in cells {
        let what = format!("{} {}", cell["db"], cell["scenario"]);
        assert_eq!(cell["catch_up"]["caught_up"]["trials"], 2, "{what}");
        assert_eq!(cell["catch_up"]["caught_up"]["censored"], 0, "{what}");
        for t in cell["trials"].as_array().unwrap() {
            assert_ne!(t["victims"][0], t["leader_before"], "{what}: a follower is replaced: {t}");
            let k = &t["catch_up"];
            // 1 MiB of 4000-byte values is 263 writes before the load's.
            assert!(k["target_index"].as_u64().unwrap() > 263, "{what}: {t}");
            assert!(k["caught_up_ms"].as_f64().unwrap() > 0.0, "{what}: {t}");
            assert!(k["dip"]["baseline_writes_per_s"].as_f64().unwrap() > 50.0, "{what}: {t}");
            let depth = k["dip"]["depth_pct"].as_f64().unwrap();
            assert!((0.0..=100.0).contains(&depth), "{what}: {t}");
        }
    }
    for h in doc["experiment"]["histories"].as_array().unwrap() {
        assert_eq!(h["valid"], "valid", "{h}");
    }
    let _ = std::fs::remove_dir_all(&out_dir);
}

/// SIGINT in the middle of a partition experiment: the pending fault is healed, the nodes
/// are stopped, the trials measured so far are written, and the exit says harness error.
#[test]
fn bench_recovery_sigint_heals_stops_the_nodes_and_keeps_the_figures() {
    let c = LocalCluster::up("bi", 3);
    let out_dir = temp_store("bi-out");
    let mut child = faultline()
        .args(["bench", "recovery", "-i", &c.name, "--db", "raft"])
        .args(["--scenario", "partition-leader", "--trials", "100"])
        .args(["--sweep", "election_timeout_ms=150-300", "--heartbeat-ms", "50", "--out"])
        .arg(&out_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let history = out_dir.join("raft-et_150-300_hb_50").join("history.jsonl");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("no partition trial started within 120 s");
        }
        let faults = std::fs::read_to_string(&history)
            .map(|h| h.lines().filter(|l| l.contains("\"nemesis\"") && l.contains("start-")).count())
            .unwrap_or(0);
        // Two trials' invocations and completions: one trial done, the next under way.
        if faults >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: signalling the child this test spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let t = Instant::now();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(t.elapsed() < Duration::from_secs(60), "took {:?} to stop\n{stderr}", t.elapsed());
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let doc = json(&out_dir.join("recovery.json"));
    let trials = doc["cells"][0]["unavailability"]["trials"].as_u64().unwrap();
    assert!((1..100).contains(&trials), "{trials} trials kept");
    let o = exec(&c, "iptables -S | grep -c -- '-j DROP' || true");
    let rules: u32 = String::from_utf8_lossy(&o.stdout).lines().map(|l| l.trim().parse::<u32>().unwrap_or(0)).sum();
    assert_eq!(rules, 0, "partition rules left behind");
    let o = exec(&c, "test ! -e /var/lib/faultline/node/node.pid");
    assert!(o.status.success(), "a node is still running");
    let _ = std::fs::remove_dir_all(&out_dir);
}
