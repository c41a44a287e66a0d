//! `faultline compare`, `runs` and `trend` over synthetic Raft and Paxos runs.

mod report_support;

use report_support::*;

#[test]
fn compare_lists_both_algorithms_and_the_index_tracks_runs() {
    let store = temp_store("report-compare");
    let raft = write_run(
        &store,
        "reg",
        "20261127T050000.000Z",
        "raft",
        &raft_outages(),
        false,
    );
    let paxos = write_run(
        &store,
        "reg",
        "20261127T051000.000Z",
        "paxos",
        &paxos_outages(),
        false,
    );
    let html = store.join("compare.html");

    let out = faultline()
        .arg("compare")
        .arg(&raft)
        .arg(&paxos)
        .arg("--html")
        .arg(&html)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("raft") && stdout.contains("paxos"),
        "{stdout}"
    );
    assert!(stdout.contains("partition: unavailable median"), "{stdout}");
    assert!(stdout.contains("kill: elections"), "{stdout}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("raft") && page.contains("paxos"));
    assert_eq!(check_svgs(&page), 2);

    // One run only is a usage error.
    let one = faultline().arg("compare").arg(&raft).output().unwrap();
    assert_eq!(one.status.code(), Some(64));

    // Reports record the runs in the store's index.
    for d in [&raft, &paxos] {
        let o = faultline().arg("report").arg(d).output().unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let runs = faultline()
        .args(["runs", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&runs.stdout);
    assert!(
        runs.status.success(),
        "{}",
        String::from_utf8_lossy(&runs.stderr)
    );
    assert!(text.contains("2 runs"), "{text}");
    let only = faultline()
        .args(["runs", "--db", "paxos", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&only.stdout).contains("1 runs"));

    let trend = faultline()
        .args([
            "trend",
            "--metric",
            "unavailability_ms_p99",
            "--db",
            "raft",
            "--store",
        ])
        .arg(&store)
        .output()
        .unwrap();
    let t = String::from_utf8_lossy(&trend.stdout);
    assert!(
        trend.status.success(),
        "{}",
        String::from_utf8_lossy(&trend.stderr)
    );
    assert!(
        t.contains("raft") && !t.contains("paxos") && t.contains('█'),
        "{t}"
    );
    let bad = faultline()
        .args(["trend", "--metric", "x; DROP TABLE runs", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(64));
    let _ = std::fs::remove_dir_all(&store);
}
