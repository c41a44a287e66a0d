//! A long run's report stays small: a synthetic half-million-op register run (written by
//! `faultline bench report`, linearizable by construction, with partitions and failed and
//! indeterminate ops) is judged valid and its `report.html` stays under 10 MB. Before the
//! scatter had a budget for failed ops, the page of a 200,000-op run of this kind was
//! already 6.3 MB, and it grew with the run's length.
//!
//! The run ends with a final read of every key, as the runner's runs do, so every key's
//! last event is at the end and the streamed check holds every key's ops until then.
//! Judging it must not hold the history: the peak RSS of `faultline report` that the bench
//! prints stays under [`REPORT_RSS_MB_MAX`]. While the checkers and the report read the
//! whole history into memory, this run took about 1 GB.

mod common;

const REPORT_BYTES_MAX: u64 = 10_000_000;
const REPORT_RSS_MB_MAX: f64 = 300.0;

/// The `peak RSS N MB` figure of the bench's `faultline report:` line.
fn peak_rss_mb(stdout: &str) -> Option<f64> {
    let line = stdout.lines().find(|l| l.starts_with("faultline report:"))?;
    let rest = &line[line.find("peak RSS ")? + "peak RSS ".len()..];
    rest.split_whitespace().next()?.parse().ok()
}

#[test]
fn a_half_million_op_runs_report_is_valid_and_under_ten_megabytes() {
    let dir = common::temp_store("long-report");
    let run = dir.join("run");
    let out = common::faultline()
        .args(["bench", "report", "--ops", "500000", "--out"])
        .arg(&run)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("faultline report: exit 0"), "{stdout}");
    let rss = peak_rss_mb(&stdout).unwrap_or_else(|| panic!("no peak RSS in {stdout}"));
    assert!(rss > 0.0 && rss <= REPORT_RSS_MB_MAX, "faultline report peaked at {rss} MB\n{stdout}");
    let history = std::fs::metadata(run.join("history.jsonl")).unwrap().len();
    assert!(history > 100_000_000, "history of {history} bytes: not a long run");
    let report = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(
        (report.len() as u64) <= REPORT_BYTES_MAX,
        "report.html is {} bytes",
        report.len()
    );
    // Thinned, and saying so; the failures near the faults are still there. The run's ops
    // are the load's and the final reads' (one per key).
    let ops: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("synthetic run: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no op count in {stdout}"));
    assert!(ops > 500_000, "no final reads: {stdout}");
    assert!(report.contains(&format!("of {ops} ops drawn")), "the scatter does not say it is thinned");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["valid"], true, "{}", results["unknown_because"]);
    assert_eq!(results["results"]["linearizable"]["valid"], true);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_synthetic_run_is_refused_over_an_existing_history() {
    let dir = common::temp_store("long-report-refused");
    std::fs::write(dir.join("history.jsonl"), "").unwrap();
    let out = common::faultline()
        .args(["bench", "report", "--ops", "10", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds a history"));
    std::fs::remove_dir_all(&dir).unwrap();
}
