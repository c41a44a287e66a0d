//! etcd, a database faultline did not write, on a real local cluster: the same driver,
//! nemesis and checkers as for the bundled node. Skipped with a note when this machine has
//! no etcd (CI installs Debian's `etcd-server`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use serde_json::Value;

fn have_etcd() -> bool {
    let found = std::process::Command::new("sh")
        .args(["-c", "command -v etcd"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("SKIPPED: etcd is not installed (apt-get install etcd-server)");
    }
    found
}

fn test(c: &LocalCluster, args: &[&str]) -> Output {
    let out = faultline()
        .args(["test", "-i", &c.name, "--store"])
        .arg(&c.store)
        .args(args)
        .output()
        .unwrap();
    eprintln!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn latest(store: &Path) -> PathBuf {
    std::fs::canonicalize(store.join("latest")).unwrap()
}

fn results(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap()
}

#[test]
fn etcd_cluster_register_under_leader_kills_is_valid_and_the_report_states_the_command() {
    if !have_etcd() {
        return;
    }
    let c = LocalCluster::up("ek", 3);
    let out = test(
        &c,
        &[
            "--db", "etcd", "--workload", "register", "--nemesis", "kill", "--nemesis-targets",
            "leader", "--nemesis-interval", "3", "--time-limit", "15", "--seed", "7",
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    let dir = latest(&c.store);
    let t: Value = serde_json::from_slice(&std::fs::read(dir.join("test.json")).unwrap()).unwrap();
    let cmd = t["db-config"]["commands"]["n1"].to_string();
    assert!(cmd.contains("--initial-cluster") && cmd.contains("--data-dir"), "{cmd}");
    let r = results(&dir);
    assert!(r["results"]["recovery"]["details"]["windows"].as_array().is_some_and(|w| !w.is_empty()));
}

#[test]
fn etcd_cluster_serializable_reads_under_leader_partitions_are_caught() {
    // etcd documents serializable reads as possibly stale: an isolated old leader keeps
    // answering from its own state while the majority moves on.
    if !have_etcd() {
        return;
    }
    let c = LocalCluster::up("es", 3);
    let out = test(
        &c,
        &[
            "--db", "etcd", "--workload", "register", "--nemesis", "partition",
            "--nemesis-shapes", "leader", "--nemesis-interval", "3", "--time-limit", "25",
            "--db-opt", "serializable_reads=true", "--seed", "3",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "a stale read must be found");
    let r = results(&latest(&c.store));
    assert_eq!(r["results"]["linearizable"]["valid"], Value::Bool(false));
    assert!(r["results"]["linearizable"]["details"]["counterexample"].is_object(), "{r}");
}

#[test]
fn etcd_cluster_bank_under_partitions_is_valid() {
    if !have_etcd() {
        return;
    }
    let c = LocalCluster::up("eb", 3);
    let out = test(
        &c,
        &[
            "--db", "etcd", "--workload", "bank", "--nemesis", "partition", "--nemesis-interval",
            "3", "--time-limit", "15", "--seed", "4",
        ],
    );
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn etcd_cluster_three_databases_end_with_one_three_column_comparison() {
    if !have_etcd() {
        return;
    }
    let c = LocalCluster::up("e3", 3);
    let out = test(
        &c,
        &[
            "--db", "raft,paxos,etcd", "--workload", "register", "--nemesis", "kill",
            "--nemesis-targets", "leader", "--nemesis-interval", "3", "--time-limit", "8",
            "--db-opt", "heartbeat_ms=50", "--db-opt", "election_timeout_ms_min=300",
            "--seed", "11",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(matches!(out.status.code(), Some(0) | Some(2)), "{stdout}");
    let header = stdout.lines().find(|l| l.contains("raft 2") && l.contains("paxos 2")).unwrap_or("");
    assert!(header.contains("etcd 2"), "one comparison with three columns:\n{stdout}");
}
