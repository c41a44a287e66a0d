//! On a real local cluster: `faultline test --db raft,paxos` makes a report per run and
//! ends with the comparison; `faultline suite` runs a small matrix and writes JUnit XML.
//! Each test makes its own cluster under a unique name and always removes it.

mod report_support;

use std::path::{Path, PathBuf};

use report_support::*;
use serde_json::Value;

fn run_dirs(store: &Path, test: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(store.join(test))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| !p.is_symlink() && p.join("history.jsonl").is_file())
        .collect();
    v.sort();
    v
}

fn fault_starts(dir: &Path, family: &str) -> usize {
    std::fs::read_to_string(dir.join("history.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| {
            e["process"] == "nemesis"
                && e["f"] == format!("start-{family}")
                && e["type"] != "invoke"
        })
        .count()
}

#[test]
fn report_cluster_raft_and_paxos_same_seed_end_with_a_comparison() {
    let c = LocalCluster::up("rc", 3);
    let out = faultline()
        .args(["test", "-i", &c.name, "--store"])
        .arg(&c.store)
        .args([
            "--name",
            "cmp",
            "--db",
            "raft,paxos",
            "--workload",
            "register",
            "--nemesis",
            "kill",
        ])
        .args([
            "--nemesis-targets",
            "leader",
            "--nemesis-interval",
            "3",
            "--time-limit",
            "12",
            "--seed",
            "5",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let code = out.status.code().unwrap();
    assert!(
        code == 0 || code == 1 || code == 2,
        "a verdict, not a harness error: {code}"
    );

    let dirs = run_dirs(&c.store, "cmp");
    assert_eq!(dirs.len(), 2, "{dirs:?}");
    let mut dbs = Vec::new();
    for d in &dirs {
        let test: Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("test.json")).unwrap()).unwrap();
        assert_eq!(test["seed"], 5);
        dbs.push(test["db"].as_str().unwrap().to_string());
        let html = std::fs::read_to_string(d.join("report.html")).unwrap();
        assert!(check_svgs(&html) >= 3);
        let windows = fault_starts(d, "kill");
        assert!(windows >= 1, "the nemesis killed something in 12 s");
        let table = &html[html.find("<table class=\"recovery\">").unwrap()..];
        let table = &table[..table.find("</table>").unwrap()];
        assert_eq!(table.matches("<tr>").count(), 1 + windows);
        assert!(d.join("latency.hlog").is_file());
    }
    assert_eq!(dbs, vec!["raft", "paxos"]);
    // The comparison: printed, and written next to the runs.
    assert!(stdout.contains("kill: unavailable median"), "{stdout}");
    let cmp: Vec<PathBuf> = std::fs::read_dir(c.store.join("cmp"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("compare-")
        })
        .collect();
    assert_eq!(cmp.len(), 1);
    let page = std::fs::read_to_string(&cmp[0]).unwrap();
    assert!(page.contains("raft") && page.contains("paxos"));
    // Both runs are in the index.
    let runs = faultline()
        .args(["runs", "--store"])
        .arg(&c.store)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&runs.stdout).contains("2 runs"));
}

#[test]
fn report_cluster_suite_runs_the_matrix_and_writes_junit() {
    let c = LocalCluster::up("rs", 3);
    let junit = c.store.join("junit.xml");
    let out = faultline()
        .args(["suite", "-i", &c.name, "--store"])
        .arg(&c.store)
        .args([
            "--db",
            "raft,paxos",
            "--workload",
            "register",
            "--nemesis",
            "none,kill",
            "--time-limit",
            "4",
        ])
        .args(["--test-count", "1", "--seed", "9", "--junit"])
        .arg(&junit)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(xml.matches("<testcase ").count(), 4, "{xml}");
    assert!(
        xml.contains(r#"classname="raft.register""#)
            && xml.contains(r#"classname="paxos.register""#)
    );
    let mut reader = quick_xml::Reader::from_str(&xml);
    while reader.read_event().expect("JUnit XML is well-formed") != quick_xml::events::Event::Eof {}
    // The same mapping as `test`: only a matrix of valid runs exits 0.
    let not_all_valid = xml.contains("<failure") || xml.contains("<error") || xml.contains("<skipped");
    assert_eq!(
        out.status.code() != Some(0),
        not_all_valid,
        "exit code follows the runs"
    );
    assert!(
        stdout.contains("valid,") && stdout.contains("crashed"),
        "{stdout}"
    );
    // A matrix with a bad name is rejected before any run.
    let bad = faultline()
        .args(["suite", "-i", &c.name, "--store"])
        .arg(&c.store)
        .args(["--db", "raft,zab"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(64));
}

#[test]
fn report_cluster_suite_fails_a_run_whose_objective_is_breached() {
    // A paused leader makes writes wait at least an election timeout (300 ms and more):
    // an objective of 100 ms unavailability must fail the run, and JUnit must say which.
    let c = LocalCluster::up("rslo", 3);
    let junit = c.store.join("junit.xml");
    let out = faultline()
        .args(["suite", "-i", &c.name, "--store"])
        .arg(&c.store)
        .args(["--db", "raft", "--workload", "register", "--nemesis", "pause"])
        .args(["--nemesis-targets", "leader", "--nemesis-interval", "2", "--time-limit", "10"])
        .args(["--slo", "unavailability_ms_p99<=100", "--seed", "5", "--junit"])
        .arg(&junit)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("<failure"), "{xml}");
    assert!(xml.contains("objective breached: unavailability_ms_p99"), "{xml}");
}
