//! `faultline suite -i a,b`: the matrix sharded over two local clusters, in parallel, one
//! run at a time per cluster, into one store and one index.

mod common;

use common::{LocalCluster, faultline};
use serde_json::Value;

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// Every run directory under `store`, with the inventory its test.json names.
fn runs(store: &std::path::Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for test in std::fs::read_dir(store).unwrap().flatten() {
        if !test.file_type().unwrap().is_dir() {
            continue;
        }
        for run in std::fs::read_dir(test.path()).unwrap().flatten() {
            let p = run.path().join("test.json");
            if run.file_type().unwrap().is_dir() && p.exists() {
                let t: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
                let inv = t["inventory"].as_str().map(str::to_string).unwrap_or_else(|| t.to_string());
                out.push((run.path().display().to_string(), inv));
            }
        }
    }
    out
}

#[test]
fn suite_shards_the_matrix_over_two_clusters_into_one_store() {
    if !is_root() {
        eprintln!("skipped: local clusters need root");
        return;
    }
    let a = LocalCluster::up("sha", 3);
    let b = LocalCluster::up("shb", 3);
    let store = &a.store;
    let junit = store.join("junit.xml");
    let t = std::time::Instant::now();
    let out = faultline()
        .args(["suite", "-i", &format!("{},{}", a.name, b.name), "--store"])
        .arg(store)
        .args(["--db", "raft,paxos", "--workload", "register", "--nemesis", "kill"])
        .args(["--time-limit", "4", "--test-count", "2", "--seed", "5", "--junit"])
        .arg(&junit)
        .output()
        .unwrap();
    let wall_s = t.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(xml.matches("<testcase ").count(), 4, "{xml}");
    assert_eq!(out.status.code(), Some(0), "all four runs valid: {xml}");
    // Seeds as an unsharded suite: 5 and 6 for each database.
    for (db, seed) in [("raft", 5), ("raft", 6), ("paxos", 5), ("paxos", 6)] {
        assert!(
            xml.contains(&format!(r#"classname="{db}.register" name="kill seed {seed} on "#)),
            "{db} seed {seed} in {xml}"
        );
    }
    // Both clusters ran tests, and output says which.
    assert!(xml.contains(&format!("on {}", a.name)) && xml.contains(&format!("on {}", b.name)), "{xml}");
    assert!(stdout.contains(&format!("[{}] ", a.name)) && stdout.contains(&format!("[{}] ", b.name)));
    // One store, one index: four run directories, all in the index.
    let dirs = runs(store);
    assert_eq!(dirs.len(), 4, "{dirs:?}");
    let clusters: std::collections::BTreeSet<&str> = dirs.iter().map(|(_, i)| i.as_str()).collect();
    assert_eq!(clusters.len(), 2, "each run's test.json names its shard's inventory: {dirs:?}");
    let list = faultline().args(["runs", "--store"]).arg(store).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.contains("4 runs"), "{list}");
    for (dir, _) in &dirs {
        let leaf = std::path::Path::new(dir).file_name().unwrap().to_string_lossy().to_string();
        assert!(list.contains(&leaf), "{leaf} missing from the index:\n{list}");
    }
    // In parallel: the wall time is clearly less than the runs' total.
    let run_s: f64 = stdout
        .lines()
        .filter(|l| l.contains("│") && (l.contains(&a.name) || l.contains(&b.name)))
        .filter_map(|l| l.split(['│', '┆']).nth(7).and_then(|c| c.trim().parse::<f64>().ok()))
        .sum();
    assert!(run_s > 0.0, "seconds column parsed: {stdout}");
    assert!(wall_s < run_s * 0.85, "wall {wall_s:.0} s vs {run_s:.0} s of runs: not parallel");
}

#[test]
fn a_shard_inventory_that_does_not_resolve_is_a_usage_error_before_any_run() {
    let inv = std::env::temp_dir().join(format!("fl-shard-inv-{}.yaml", std::process::id()));
    std::fs::write(&inv, "nodes:\n  - name: n1\n    host: 10.0.0.1\n").unwrap();
    let out = faultline()
        .args(["suite", "-i", &format!("{},no-such-cluster-xyz", inv.display())])
        .args(["--workload", "register", "--nemesis", "none", "--time-limit", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("no-such-cluster-xyz"), "{err}");
    let twice = faultline()
        .args(["suite", "-i", &format!("{0},{0}", inv.display())])
        .args(["--workload", "register", "--nemesis", "none", "--time-limit", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&twice.stderr);
    assert_eq!(twice.status.code(), Some(64), "{err}");
    assert!(err.contains("given twice"), "{err}");
    let _ = std::fs::remove_file(&inv);
}
