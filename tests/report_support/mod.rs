//! Synthetic stored runs for the report tests: a three-client register history with two
//! fault windows whose outages are known, monitor samples with term changes, node logs.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

#[path = "../common/mod.rs"]
mod common;
pub use common::*;

pub const MS: u64 = 1_000_000;

pub struct Outage {
    pub family: &'static str,
    /// Fault window, ms since start.
    pub start_ms: u64,
    pub stop_ms: u64,
    /// Writes fail (indeterminately) from the fault start until this time.
    pub down_until_ms: u64,
    pub new_term_at_ms: u64,
}

fn ev(t: u64, process: Value, kind: &str, f: &str, value: Value) -> Value {
    json!({"time": t, "process": process, "type": kind, "f": f, "value": value})
}

fn op(t: u64, process: u64, key: &str, kind: &str, f: &str, value: Value) -> Value {
    json!({"time": t, "process": process, "type": kind, "f": f, "key": key, "value": value})
}

/// The value a planted stale read returns: nobody ever writes it.
pub const NEVER_WRITTEN: u64 = 424_242;

/// Builds the events of a run lasting `end_ms` with `outages`.
pub fn history(end_ms: u64, outages: &[Outage]) -> Vec<Value> {
    let mut evs: Vec<Value> = Vec::new();
    let down = |t_ms: u64| {
        outages
            .iter()
            .any(|o| t_ms >= o.start_ms && t_ms < o.down_until_ms)
    };
    // Three clients, each on its own register so the history is linearizable; each invokes
    // every 30 ms (staggered), 2 ms latency when up; when down, an op times out after 100 ms
    // as `info` and the client continues as a new process. Reads return the client's last
    // acknowledged write.
    for c in 0..3u64 {
        let mut t = c * 10;
        let mut proc_ = c;
        let mut value = 0u64;
        let mut last_ok = Value::Null;
        let key = format!("k{c}");
        while t + 150 < end_ms {
            let f = if (t / 30 + c) % 3 == 0 {
                "read"
            } else {
                "write"
            };
            value += 1;
            let inv_v = if f == "read" {
                Value::Null
            } else {
                json!(value)
            };
            evs.push(op(t * MS, proc_, &key, "invoke", f, inv_v.clone()));
            if down(t) {
                evs.push(op((t + 100) * MS, proc_, &key, "info", f, inv_v));
                proc_ += 3;
                t += 110;
            } else {
                let out_v = if f == "read" { last_ok.clone() } else { inv_v };
                if f == "write" {
                    last_ok = out_v.clone();
                }
                evs.push(op((t + 2) * MS, proc_, &key, "ok", f, out_v));
                t += 30;
            }
        }
    }
    for o in outages {
        let v = json!({"targets": ["n1"], "shape": "leader"});
        evs.push(ev(
            (o.start_ms - 1) * MS,
            json!("nemesis"),
            "invoke",
            &format!("start-{}", o.family),
            v.clone(),
        ));
        evs.push(ev(
            o.start_ms * MS,
            json!("nemesis"),
            "info",
            &format!("start-{}", o.family),
            v,
        ));
        evs.push(ev(
            (o.stop_ms - 1) * MS,
            json!("nemesis"),
            "invoke",
            &format!("stop-{}", o.family),
            Value::Null,
        ));
        evs.push(ev(
            o.stop_ms * MS,
            json!("nemesis"),
            "info",
            &format!("stop-{}", o.family),
            Value::Null,
        ));
    }
    let mut t = 0;
    while t < end_ms {
        let term = 1 + outages.iter().filter(|o| t >= o.new_term_at_ms).count() as u64;
        for n in ["n1", "n2", "n3"] {
            let mut e = ev(
                t * MS + 1,
                json!("monitor"),
                "info",
                "status",
                json!({"role": "follower", "term": term, "leader": "n2"}),
            );
            e["node"] = json!(n);
            evs.push(e);
        }
        t += 250;
    }
    evs.sort_by_key(|e| e["time"].as_u64().unwrap());
    for (i, e) in evs.iter_mut().enumerate() {
        e["index"] = json!(i);
    }
    evs
}

/// Writes `<store>/<name>/<stamp>/` with test.json, history.jsonl, results.json and a
/// node log; `store/latest` points at it. Returns the run directory.
pub fn write_run(
    store: &Path,
    name: &str,
    stamp: &str,
    db: &str,
    outages: &[Outage],
    invalid: bool,
) -> PathBuf {
    let dir = store.join(name).join(stamp);
    std::fs::create_dir_all(dir.join("nodes/n1")).unwrap();
    std::fs::create_dir_all(dir.join("nodes/n2")).unwrap();
    let test = json!({
        "name": name, "started": "2026-11-27T05:00:00.000Z", "faultline-version": "0.1.0",
        "git-commit": "abc1234", "seed": 42, "db": db, "workload": "register",
        "options": {"nemesis": ["partition", "kill"]},
        "db-config": {"db": db, "knobs": {"election_timeout_ms_min": 150}},
    });
    std::fs::write(
        dir.join("test.json"),
        serde_json::to_string_pretty(&test).unwrap(),
    )
    .unwrap();
    let mut h = history(12_000, outages);
    if invalid {
        // A stale read in the middle of client 1's ops: a value nobody wrote.
        let i = h
            .iter()
            .enumerate()
            .filter(|(_, e)| e["process"] == json!(1) && e["type"] == "ok" && e["f"] == "read")
            .map(|(i, _)| i)
            .nth(20)
            .expect("client 1 reads");
        h[i]["value"] = json!(NEVER_WRITTEN);
    }
    let text: String = h.iter().map(|e| format!("{e}\n")).collect();
    std::fs::write(dir.join("history.jsonl"), text).unwrap();
    // What the runner writes when a run ends normally; `faultline report` judges again.
    let results = json!({"valid": true, "harness_error": null, "interrupted": false, "stats": {}});
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(&results).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("nodes/n1/node.log"),
        "2026-11-27T05:00:03.100Z INFO lost leader, starting election term=2\n2026-11-27T05:00:30.000Z INFO idle\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("nodes/n2/node.log"),
        "2026-11-27T05:00:01.000Z INFO started\n",
    )
    .unwrap();
    let latest = store.join("latest");
    let _ = std::fs::remove_file(&latest);
    std::os::unix::fs::symlink(dir.strip_prefix(store).unwrap(), &latest).unwrap();
    dir
}

/// Parses every `<svg>…</svg>` in `html` as XML; returns how many there were.
pub fn check_svgs(html: &str) -> usize {
    let mut n = 0;
    let mut rest = html;
    while let Some(s) = rest.find("<svg") {
        let e = rest[s..].find("</svg>").expect("unterminated <svg>") + s + "</svg>".len();
        let svg = &rest[s..e];
        let mut reader = quick_xml::Reader::from_str(svg);
        let mut depth = 0i64;
        loop {
            match reader.read_event() {
                Ok(quick_xml::events::Event::Start(_)) => depth += 1,
                Ok(quick_xml::events::Event::End(_)) => depth -= 1,
                Ok(quick_xml::events::Event::Eof) => break,
                Ok(_) => {}
                Err(err) => panic!(
                    "SVG {n} is not well-formed XML at {}: {err}\n{}",
                    reader.buffer_position(),
                    &svg[..svg.len().min(400)]
                ),
            }
        }
        assert_eq!(depth, 0, "SVG {n} has unbalanced elements");
        n += 1;
        rest = &rest[e..];
    }
    n
}

pub fn raft_outages() -> Vec<Outage> {
    vec![
        Outage {
            family: "partition",
            start_ms: 3000,
            stop_ms: 5000,
            down_until_ms: 3400,
            new_term_at_ms: 3300,
        },
        Outage {
            family: "kill",
            start_ms: 8000,
            stop_ms: 9000,
            down_until_ms: 8300,
            new_term_at_ms: 8250,
        },
    ]
}

pub fn paxos_outages() -> Vec<Outage> {
    vec![
        Outage {
            family: "partition",
            start_ms: 3000,
            stop_ms: 5000,
            down_until_ms: 3900,
            new_term_at_ms: 3800,
        },
        Outage {
            family: "kill",
            start_ms: 8000,
            stop_ms: 9000,
            down_until_ms: 8700,
            new_term_at_ms: 8600,
        },
    ]
}

/// Starts `faultline serve` on a port the kernel picks, read from the line it prints first;
/// returns the child (the caller ends it) and the port.
pub fn serve(store: &Path) -> (std::process::Child, u16) {
    use std::io::BufRead;
    let mut child = faultline()
        .args(["serve", "--port", "0", "--store"])
        .arg(store)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line
        .trim()
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .parse()
        .unwrap_or_else(|_| panic!("{line}"));
    (child, port)
}
