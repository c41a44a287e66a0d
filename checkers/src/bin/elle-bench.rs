//! Benchmarks the Elle-style checkers: the third-party Elle histories, and generated
//! list-append histories (valid ones, and ones with planted stale reads that form cycles).
//!
//! `cargo run --release -p faultline-checkers --bin elle-bench [-- TXNS...]`
//! (default sizes 10000 100000 1000000). Times exclude generation and parsing.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use faultline_checkers::elle::{DataModel, ElleChecker, Model};
use faultline_checkers::formats::{self, Format};
use faultline_checkers::{Checker, Event, EventType};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// A list-append history from `clients` concurrent clients against a store that applies
/// each transaction atomically at its completion (so it is strict-serializable), except
/// that with probability `stale` a read returns the key as of the previous transaction.
fn generate(txns: usize, clients: u64, stale: f64, seed: u64) -> Vec<Event> {
    let mut rng = StdRng::seed_from_u64(seed);
    let keys_active = 10u64;
    let appends_per_key = 32u64;
    let mut gen_of_slot = vec![0u64; keys_active as usize];
    let mut appends_of_slot = vec![0u64; keys_active as usize];
    let mut store: HashMap<u64, Vec<u64>> = HashMap::new();
    let mut before: HashMap<u64, Vec<u64>> = HashMap::new();
    let mut open: HashMap<u64, Vec<(u8, u64, u64)>> = HashMap::new();
    let mut next_value = 1u64;
    let mut out = Vec::with_capacity(txns * 2);
    let mut started = 0;
    while started < txns || !open.is_empty() {
        let p = rng.random_range(0..clients);
        if let Some(mops) = open.remove(&p) {
            // Complete: apply atomically now.
            let mut done = Vec::with_capacity(mops.len());
            for (f, k, v) in mops {
                if f == 0 {
                    let l = if rng.random::<f64>() < stale {
                        before.get(&k).cloned().unwrap_or_default()
                    } else {
                        store.get(&k).cloned().unwrap_or_default()
                    };
                    done.push(json!(["r", k, l]));
                } else {
                    let l = store.entry(k).or_default();
                    before.insert(k, l.clone());
                    l.push(v);
                    done.push(json!(["append", k, v]));
                }
            }
            let mut e = Event::op(p, EventType::Ok, "txn", None, Value::Array(done));
            e.index = Some(out.len() as u64);
            out.push(e);
        } else if started < txns {
            let n = rng.random_range(1..=4);
            let mut mops = Vec::with_capacity(n);
            let mut inv = Vec::with_capacity(n);
            for _ in 0..n {
                let slot = rng.random_range(0..keys_active) as usize;
                let k = gen_of_slot[slot] * keys_active + slot as u64;
                if rng.random::<bool>() {
                    mops.push((0u8, k, 0));
                    inv.push(json!(["r", k, null]));
                } else {
                    let v = next_value;
                    next_value += 1;
                    mops.push((1u8, k, v));
                    inv.push(json!(["append", k, v]));
                    appends_of_slot[slot] += 1;
                    if appends_of_slot[slot] >= appends_per_key {
                        appends_of_slot[slot] = 0;
                        gen_of_slot[slot] += 1;
                    }
                }
            }
            let mut e = Event::op(p, EventType::Invoke, "txn", None, Value::Array(inv));
            e.index = Some(out.len() as u64);
            out.push(e);
            open.insert(p, mops);
            started += 1;
        }
    }
    out
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

fn peak_rss_mib() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_string()))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or("?".into(), |kb| format!("{} MiB", kb / 1024))
}

/// This process's user + system CPU time in ms (clock ticks of 10 ms): on a shared machine
/// wall time also counts other processes' turns.
fn cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    // After the command name come state, ppid, ..., cmajflt; then utime and stime.
    let tick = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok());
    tick(11).zip(tick(12)).map_or(f64::NAN, |(u, s)| (u + s) as f64 * 10.0)
}

fn time(label: &str, checker: &ElleChecker, h: &[Event]) {
    // The high-water mark once the history is built: what the check adds is above it.
    let before = peak_rss_kib();
    let t = Instant::now();
    let c = cpu_ms();
    let r = checker.check(h);
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    let cpu = cpu_ms() - c;
    let types = r.details["anomaly-types"].clone();
    println!("{label:<48} {ms:>10.1} ms wall {cpu:>8.0} ms cpu  valid={:?} edges={} anomalies={types} peak-rss={} (check: +{} MiB)", r.valid, r.details["edges"], peak_rss_mib(), peak_rss_kib().saturating_sub(before) / 1024);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--case") {
        let n = args.get(2).and_then(|a| a.parse().ok()).expect("--case N valid|stale");
        run_case(n, args.get(3).map_or("valid", String::as_str));
        return;
    }
    let sizes: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() { vec![10_000, 100_000, 1_000_000] } else { sizes };
    let shared = std::env::var_os("FAULTLINE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    let dir = shared.join("bench/third-party");
    if let Ok(tsv) = std::fs::read_to_string(dir.join("expected.tsv")) {
        for line in tsv.lines().filter(|l| !l.starts_with('#')) {
            let cols: Vec<&str> = line.split('\t').collect();
            let data = if cols[1].starts_with("elle-list-append") {
                DataModel::ListAppend
            } else if cols[1].starts_with("elle-rw-register") {
                DataModel::RwRegister
            } else {
                continue;
            };
            let model = if cols[1].contains("(serializable)") { Model::Serializable } else { Model::StrictSerializable };
            let Ok(h) = formats::load(&dir.join(cols[0]), Format::Auto) else { continue };
            time(cols[0], &ElleChecker::new(data, model), &h);
        }
    } else {
        println!("note: {} not found; third-party histories skipped", dir.display());
    }
    // Each generated case in a child process of its own, so its peak RSS is its own.
    let exe = std::env::current_exe().expect("the bench's own path");
    for n in sizes {
        for kind in ["valid", "stale"] {
            let status = std::process::Command::new(&exe)
                .args(["--case", &n.to_string(), kind])
                .status()
                .expect("starting a bench case");
            if !status.success() {
                println!("list-append {n} txns, {kind}: the case failed ({status})");
            }
        }
    }
}

/// One generated case: `--case N valid|stale`.
fn run_case(n: usize, kind: &str) {
    let la = ElleChecker::new(DataModel::ListAppend, Model::StrictSerializable);
    if kind == "valid" {
        let h = generate(n, 10, 0.0, 1);
        time(&format!("generated list-append {n} txns, 10 clients, valid"), &la, &h);
    } else {
        let h = generate(n, 10, 0.001, 2);
        time(&format!("generated list-append {n} txns, 0.1% stale reads"), &la, &h);
    }
}
