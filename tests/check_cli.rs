//! `faultline check`: verdicts, exit codes, JSON output and errors naming file and line.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use faultline_checkers::linear::synth::{self, SynthOpts};

fn faultline(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(args)
        .output()
        .expect("run faultline")
}

fn data(rel: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/bench/porcupine-test-data")
        .join(rel);
    assert!(
        p.is_file(),
        "benchmark data missing: {} (shared/ beside the repository)",
        p.display()
    );
    p.display().to_string()
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("faultline-check-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write_history(path: &Path, events: &[faultline_checkers::Event]) {
    let text: String = events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap() + "\n")
        .collect();
    std::fs::write(path, text).unwrap();
}

#[test]
fn check_valid_jepsen_log_exits_0() {
    let out = faultline(&["check", &data("jepsen/etcd_002.log")]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("linearizable"));
}

#[test]
fn check_invalid_log_exits_1_with_a_counterexample() {
    let out = faultline(&["analyze", &data("jepsen/etcd_000.log")]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("NOT linearizable"), "{text}");
    assert!(text.contains("cannot linearize"), "{text}");
    assert!(text.contains("longest linearizable prefix"), "{text}");

    let out = faultline(&["check", "--json", &data("jepsen/etcd_000.log")]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["valid"], serde_json::json!(false));
    assert!(v["ops"].as_u64().unwrap() > 50);
    assert_eq!(v["keys"], 1);
    assert!(v["elapsed_ms"].is_number());
    assert!(v["counterexample"]["op"]["f"].is_string(), "{v}");

    // Through a checker named by --checker, the counterexample is printed too, not only
    // the word.
    let out = faultline(&["check", "--checker", "linearizable", &data("jepsen/etcd_000.log")]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("linearizable INVALID"), "{text}");
    assert!(text.contains("\"counterexample\""), "no details: {text}");
}

#[test]
fn check_kv_edn_with_the_kv_model() {
    let out = faultline(&["check", "--model", "kv", "--json", &data("kv/c10-ok.txt")]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], serde_json::json!(true));
    assert_eq!(v["keys"], 10);
    let out = faultline(&["check", "--model", "kv", &data("kv/c10-bad.txt")]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn check_run_directory_reads_history_jsonl() {
    let dir = scratch("dir");
    let mut h = synth::generate(&SynthOpts {
        seed: 3,
        ops: 2000,
        clients: 8,
        keys: 4,
        cas_ratio: 0.3,
        crash_ratio: 0.05,
        ..SynthOpts::default()
    });
    write_history(&dir.join("history.jsonl"), &h);
    let out = faultline(&["check", dir.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    synth::plant_stale_read(&mut h, 3).expect("a spot for a stale read");
    write_history(&dir.join("history.jsonl"), &h);
    let out = faultline(&["check", "--json", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn check_exhausted_budget_exits_2_unknown() {
    let dir = scratch("unknown");
    let file = dir.join("h.jsonl");
    // Small values and many clients leave the search real work; no time for it.
    let h = synth::generate(&SynthOpts {
        seed: 5,
        ops: 20_000,
        clients: 20,
        cas_ratio: 0.5,
        read_ratio: 0.3,
        unique_values: false,
        value_range: 5,
        ..SynthOpts::default()
    });
    write_history(&file, &h);
    let out = faultline(&[
        "check",
        "--json",
        "--time-limit-s",
        "0",
        file.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], "unknown");
    assert!(v["unknown_reason"].as_str().unwrap().contains("time limit"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn check_bad_input_names_file_and_line_and_exits_3() {
    let dir = scratch("bad");
    let file = dir.join("h.jsonl");
    std::fs::write(
        &file,
        "{\"process\":0,\"type\":\"invoke\",\"f\":\"read\"}\nnot json\n",
    )
    .unwrap();
    let out = faultline(&["check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:2:", file.display())), "{err}");

    // Well-formed lines, impossible history: a completion without an invocation.
    std::fs::write(
        &file,
        "{\"process\":0,\"type\":\"ok\",\"f\":\"read\",\"value\":1}\n",
    )
    .unwrap();
    let out = faultline(&["check", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("without an invocation"));

    let out = faultline(&["check", dir.join("missing").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn check_usage_errors_exit_64() {
    assert_eq!(
        faultline(&["check", "--model", "queue", "x"]).status.code(),
        Some(64)
    );
    assert_eq!(
        faultline(&["check", "--format", "csv", "x"]).status.code(),
        Some(64)
    );
    assert_eq!(faultline(&["check"]).status.code(), Some(64));
}

/// Runs faultline with its stdout a pipe whose reader is already gone, as in
/// `faultline check h.jsonl | true`.
fn with_closed_stdout(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(args)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn a_closed_stdout_pipe_ends_output_instead_of_panicking() {
    for (args, code) in [
        (vec!["check", &data("jepsen/etcd_002.log") as &str], 0),
        (vec!["check", &data("jepsen/etcd_000.log")], 1),
        (vec!["runs", "--store", "/nonexistent-store-dir"], 0),
    ] {
        let out = with_closed_stdout(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(code), "{args:?}: the command's own code\n{stderr}");
    }
}

/// `shared/bench/third-party`, from `FAULTLINE_SHARED` or `../shared` beside the checkout.
fn third_party() -> PathBuf {
    let shared = std::env::var_os("FAULTLINE_SHARED")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"), PathBuf::from);
    let dir = shared.join("bench/third-party");
    assert!(
        dir.join("expected.tsv").is_file(),
        "third-party histories missing: {} (set FAULTLINE_SHARED)",
        dir.display()
    );
    dir
}

#[test]
fn check_model_gives_each_models_first_third_party_row_its_verdict() {
    let dir = third_party();
    let tsv = std::fs::read_to_string(dir.join("expected.tsv")).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let mut wrong = Vec::new();
    for line in tsv.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (file, model, verdict) = (cols[0], cols[1], cols[2]);
        if !seen.insert(model.to_string()) {
            continue;
        }
        let path = dir.join(file).display().to_string();
        let mut args = vec!["check", "--json"];
        let (m, cm);
        match model.split_once('(') {
            Some((name, c)) => {
                m = name.to_string();
                cm = c.trim_end_matches(')').to_string();
                args.extend(["--model", &m, "--consistency-model", &cm]);
            }
            None => args.extend(["--model", model]),
        }
        args.push(&path);
        let out = faultline(&args);
        let want = if verdict == "true" { 0 } else { 1 };
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if out.status.code() != Some(want) || v["valid"] != serde_json::json!(verdict == "true") {
            wrong.push(format!(
                "{args:?}: want exit {want}, got {:?}\n{}{}",
                out.status.code(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    eprintln!("faultline check agreed on {} of {} models", seen.len() - wrong.len(), seen.len());
    assert!(seen.len() >= 12, "expected.tsv lists only {seen:?}");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn check_consistency_model_only_for_transactional_models_else_exit_64() {
    let file = third_party().join("elle-cli/histories/jepsen/counter.edn");
    let file = file.to_str().unwrap();
    let out = faultline(&["check", "--model", "counter", "--consistency-model", "serializable", file]);
    assert_eq!(out.status.code(), Some(64), "{}", String::from_utf8_lossy(&out.stderr));
    let out = faultline(&["check", "--model", "list-append", "--consistency-model", "eventual", file]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown consistency model"));
    // The same list-append history is invalid under serializability, valid under read
    // committed (its anomaly is G2-item).
    let si = third_party().join("elle/histories/si-without-g-single.edn");
    let si = si.to_str().unwrap();
    assert_eq!(faultline(&["check", "--model", "list-append", "--consistency-model", "serializable", si]).status.code(), Some(1));
    assert_eq!(faultline(&["check", "--model", "list-append", "--consistency-model", "read-committed", si]).status.code(), Some(0));
}

#[test]
fn check_model_bad_edn_names_file_and_line_and_exits_3() {
    let dir = scratch("bad-edn");
    let file = dir.join("h.edn");
    // The second op map has a key without a value.
    std::fs::write(&file, "{:type :invoke, :f :add, :value 1, :process 0}\n{:type :ok, :f :add, :value 1, :process}\n{:type :invoke, :f :read, :process 0}\n").unwrap();
    let out = faultline(&["check", "--model", "counter", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:2:", file.display())), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
