//! `faultline report` over a synthetic stored run: the files it writes and what is in them.

mod report_support;

use report_support::*;
use serde_json::{Value, json};

fn results(dir: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap()
}

#[test]
fn report_writes_html_results_and_interval_log_for_a_run() {
    let store = temp_store("report-run");
    let dir = write_run(
        &store,
        "reg",
        "20261127T050000.000Z",
        "raft",
        &raft_outages(),
        true,
    );

    let out = faultline().arg("report").arg(&dir).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "invalid run exits 1\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("linearizable"), "{stdout}");
    assert!(
        stdout.contains("partition") && stdout.contains("kill"),
        "{stdout}"
    );

    // The report judged the history itself: the stale read is found, not taken on trust.
    let r = results(&dir);
    assert_eq!(r["valid"], Value::Bool(false));
    assert_eq!(r["results"]["linearizable"]["valid"], Value::Bool(false));
    let names: Vec<&str> = r["results"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for n in ["linearizable", "perf", "recovery", "stats", "node-logs"] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    let rec = &r["results"]["recovery"];
    let windows = rec["details"]["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 2);
    // Writes fail from 3000 ms to 3400 ms; the last write before is within 30 ms of the
    // fault and the first after within ~110 ms of the outage's end.
    let u = windows[0]["unavailability_ms"].as_f64().unwrap();
    assert!((400.0..560.0).contains(&u), "unavailability {u}");
    assert_eq!(windows[0]["recovered"], Value::Bool(true));
    assert_eq!(windows[0]["elections"], 1);
    assert_eq!(windows[1]["elections"], 1);
    let et = windows[0]["unavailability_election_timeouts"]
        .as_f64()
        .unwrap();
    assert!((et - u / 150.0).abs() < 1e-9, "{et}");
    // Running it again replaces rather than duplicates.
    let again = faultline().arg("report").arg(&dir).output().unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(
        results(&dir)["results"].as_object().unwrap().len(),
        names.len()
    );

    // The page: self-contained, every SVG well-formed, one recovery row per fault window.
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    for remote in [
        "src=\"http",
        "href=\"http",
        "<link",
        "<script",
        "@import",
        "url(",
    ] {
        assert!(
            !html.contains(remote),
            "the page loads nothing from elsewhere ({remote})"
        );
    }
    let svgs = check_svgs(&html);
    assert!(
        svgs >= 4,
        "3 plots and a counterexample timeline, got {svgs}"
    );
    let table = &html[html.find("<table class=\"recovery\">").unwrap()..];
    let table = &table[..table.find("</table>").unwrap()];
    assert_eq!(
        table.matches("<tr>").count(),
        1 + 2,
        "header plus one row per window"
    );
    assert!(html.contains("Counterexample: linearizable"));
    let timeline = &html[html.find("Counterexample: linearizable").unwrap()..];
    let timeline = &timeline[..timeline.find("</svg>").unwrap()];
    let highlighted = timeline
        .matches(r##"stroke="#cc0000" stroke-width="2""##)
        .count();
    assert_eq!(highlighted, 1, "only the culprit is highlighted");
    assert!(timeline.contains("process 1"), "the culprit's process is drawn");
    assert!(
        html.contains("lost leader"),
        "log excerpt around the partition's start"
    );

    let hlog = std::fs::read_to_string(dir.join("latency.hlog")).unwrap();
    assert!(hlog.contains("#[BaseTime:"), "{hlog}");
    assert!(hlog.contains("Tag=write-ok"), "{hlog}");
    assert!(hlog.contains("Tag=write-info"), "{hlog}");
    let _ = std::fs::remove_dir_all(&store);
}

#[test]
fn a_valid_run_exits_zero_and_a_missing_run_is_an_error() {
    let store = temp_store("report-valid");
    let dir = write_run(
        &store,
        "reg",
        "20261127T050000.000Z",
        "paxos",
        &paxos_outages(),
        false,
    );
    let out = faultline().arg("report").arg(&dir).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("class=\"banner valid\""));
    assert!(!html.contains("Counterexample"));

    let missing = faultline()
        .arg("report")
        .arg(store.join("nope"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not a run directory"));

    // A torn line in the middle of a history names the file and line.
    let h = dir.join("history.jsonl");
    let mut text = std::fs::read_to_string(&h).unwrap();
    text.insert_str(0, "{\"time\": oops}\n");
    std::fs::write(&h, text).unwrap();
    let bad = faultline().arg("report").arg(&dir).output().unwrap();
    assert_eq!(bad.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("history.jsonl:1:"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let _ = std::fs::remove_dir_all(&store);
}

#[test]
fn report_of_an_interrupted_run_is_at_best_unknown() {
    let store = temp_store("report-interrupted");
    let dir = write_run(
        &store,
        "reg",
        "20261127T050000.000Z",
        "paxos",
        &paxos_outages(),
        false,
    );
    let mut r = results(&dir);
    r["interrupted"] = Value::Bool(true);
    std::fs::write(dir.join("results.json"), r.to_string()).unwrap();

    // Written again, as `faultline report` does, the verdict stays what the runner said.
    for _ in 0..2 {
        let out = faultline().arg("report").arg(&dir).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(results(&dir)["valid"], "unknown");
    }
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(!html.contains("class=\"banner valid\""));
    let _ = std::fs::remove_dir_all(&store);
}

#[test]
fn report_of_a_run_without_results_checks_the_history_and_is_never_valid() {
    // The controller was SIGKILLed: no results.json. The report must run the workload's
    // checkers (a stale read is invalid) and must not call a clean history valid.
    let store = temp_store("report-unfinished");
    let bad = write_run(&store, "reg", "20261127T050000.000Z", "raft", &raft_outages(), true);
    std::fs::remove_file(bad.join("results.json")).unwrap();
    let out = faultline().arg("report").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(results(&bad)["results"]["linearizable"]["valid"], Value::Bool(false));

    let clean = write_run(&store, "reg", "20261127T060000.000Z", "raft", &raft_outages(), false);
    std::fs::remove_file(clean.join("results.json")).unwrap();
    let out = faultline().arg("report").arg(&clean).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stdout));
    let r = results(&clean);
    assert_eq!(r["valid"], "unknown");
    assert!(
        r["unknown_because"][0].as_str().unwrap().contains("did not finish"),
        "{r}"
    );
    // The index agrees with the file.
    let runs = faultline().args(["runs", "--store"]).arg(&store).output().unwrap();
    let listing = String::from_utf8_lossy(&runs.stdout);
    assert!(!listing.contains("valid ") || listing.contains("unknown"), "{listing}");
    let _ = std::fs::remove_dir_all(&store);
}

#[test]
fn check_on_a_run_directory_runs_the_workloads_checkers() {
    let store = temp_store("check-run-dir");
    let dir = write_run(&store, "reg", "20261127T050000.000Z", "raft", &raft_outages(), true);
    let out = faultline().arg("check").arg(&dir).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    for checker in ["linearizable", "perf", "recovery", "stats", "node-logs"] {
        assert!(stdout.contains(checker), "{checker} missing:\n{stdout}");
    }
    // One checker by name: stats alone has nothing to object to.
    let out = faultline().args(["check", "--checker", "stats"]).arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let out = faultline().args(["check", "--checker", "nope"]).arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    // `check` only reads: results.json is as the run left it.
    assert_eq!(results(&dir)["valid"], Value::Bool(true));
    let _ = std::fs::remove_dir_all(&store);
}

#[test]
fn a_breached_objective_fails_the_run_naming_figure_and_bound() {
    // Slow is not wrong, unless the run set an objective: failover took ~500 ms here.
    let store = temp_store("report-slo");
    let dir = write_run(&store, "reg", "20261127T050000.000Z", "raft", &raft_outages(), false);
    let mut t: Value = serde_json::from_slice(&std::fs::read(dir.join("test.json")).unwrap()).unwrap();
    t["slos"] = serde_json::json!(["unavailability_ms_p99<=100"]);
    std::fs::write(dir.join("test.json"), t.to_string()).unwrap();
    let out = faultline().arg("report").arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    let r = results(&dir);
    assert_eq!(r["results"]["slo"]["valid"], Value::Bool(false));
    let b = r["results"]["slo"]["details"]["breached"][0].as_str().unwrap();
    assert!(b.contains("unavailability_ms_p99") && b.contains("<=100"), "{b}");
    // A generous objective passes.
    t["slos"] = serde_json::json!(["unavailability_ms_p99<=5000", "throughput_ok_per_s>=1"]);
    std::fs::write(dir.join("test.json"), t.to_string()).unwrap();
    let out = faultline().arg("report").arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let _ = std::fs::remove_dir_all(&store);
}

#[test]
fn a_regression_against_the_baseline_of_earlier_runs_fails_the_run() {
    let store = temp_store("report-baseline");
    let with_baseline = |dir: &std::path::Path| {
        let mut t: Value = serde_json::from_slice(&std::fs::read(dir.join("test.json")).unwrap()).unwrap();
        t["baseline"] = serde_json::json!({"last": 3, "regression_max_pct": 25.0});
        std::fs::write(dir.join("test.json"), t.to_string()).unwrap();
    };
    // Three nights like each other: failover about 400 ms.
    for stamp in ["20261127T050000.000Z", "20261128T050000.000Z", "20261129T050000.000Z"] {
        let dir = write_run(&store, "reg", stamp, "raft", &raft_outages(), false);
        with_baseline(&dir);
        let out = faultline().arg("report").arg(&dir).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    }
    // Then a night where writes stay down for 2.5 s after the partition starts.
    let slow = vec![
        Outage { family: "partition", start_ms: 3000, stop_ms: 6000, down_until_ms: 5500, new_term_at_ms: 5400 },
        Outage { family: "kill", start_ms: 8000, stop_ms: 11000, down_until_ms: 10500, new_term_at_ms: 10400 },
    ];
    let dir = write_run(&store, "reg", "20261130T050000.000Z", "raft", &slow, false);
    with_baseline(&dir);
    let out = faultline().arg("report").arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    let r = results(&dir);
    assert_eq!(r["results"]["baseline"]["valid"], Value::Bool(false), "{}", r["results"]["baseline"]);
    let why = r["results"]["baseline"]["details"]["regressed"].to_string();
    assert!(why.contains("unavailability_ms_p99") && why.contains("median of 3 runs"), "{why}");
    let _ = std::fs::remove_dir_all(&store);
}

#[test]
fn report_draws_each_transactional_anomaly_as_a_cycle_with_its_explanation() {
    // Write skew on list-append: each transaction reads the key the other appends to, and
    // both read it empty. The checker finds the rw–rw cycle; the report must draw it.
    let store = temp_store("report-anomaly");
    let dir = write_run(&store, "la", "20261127T050000.000Z", "raft", &[], false);
    let mut test: Value = serde_json::from_slice(&std::fs::read(dir.join("test.json")).unwrap()).unwrap();
    test["workload"] = json!("list-append");
    std::fs::write(dir.join("test.json"), test.to_string()).unwrap();
    let txn = |t: u64, p: u64, kind: &str, v: Value| json!({"time": t, "process": p, "type": kind, "f": "txn", "value": v});
    let h = [
        txn(1_000_000, 0, "invoke", json!([["r", "x", null], ["append", "y", 1]])),
        txn(1_100_000, 1, "invoke", json!([["r", "y", null], ["append", "x", 1]])),
        txn(2_000_000, 0, "ok", json!([["r", "x", []], ["append", "y", 1]])),
        txn(2_100_000, 1, "ok", json!([["r", "y", []], ["append", "x", 1]])),
        txn(3_000_000, 0, "invoke", json!([["r", "x", null], ["r", "y", null]])),
        txn(3_500_000, 0, "ok", json!([["r", "x", [1]], ["r", "y", [1]]])),
    ];
    let text: String = h.iter().map(|e| format!("{e}\n")).collect();
    std::fs::write(dir.join("history.jsonl"), text).unwrap();
    let out = faultline().arg("report").arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    let at = html.find("Anomalies: elle-list-append").expect("an anomalies section");
    let section = &html[at..];
    assert!(section.contains("G2-item"), "the anomaly's type is named");
    assert!(section.contains("read nothing of key x") || section.contains("of key x"), "explained in words");
    let svg = &section[section.find("<svg").expect("a diagram")..];
    assert!(svg.contains(">rw x<") && svg.contains(">rw y<"), "both anti-dependencies drawn: {svg:.600}");
    assert!(check_svgs(&html) > 0, "every SVG in the page is well-formed XML");
    let _ = std::fs::remove_dir_all(&store);
}
