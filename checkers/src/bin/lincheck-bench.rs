//! Benchmarks the linearizability checker: Porcupine's own histories and large synthetic
//! ones. Each case runs in a child process so its peak memory (VmHWM) is its own.
//!
//! `cargo run --release -p faultline-checkers --bin lincheck-bench [-- CASE...]`
//! Times exclude parsing and generation; the figure is the median of the repetitions.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use faultline_checkers::formats::{self, Format};
use faultline_checkers::linear::synth::{self, SynthOpts};
use faultline_checkers::linear::{self, Budget, ModelKind};
use faultline_checkers::{Event, Validity};

struct Case {
    name: &'static str,
    what: &'static str,
    porcupine: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "etcd-all",
        what: "all 102 etcd histories, one thread",
        porcupine: "446 ms",
    },
    Case {
        name: "kv-c50-ok",
        what: "kv c50-ok, one thread",
        porcupine: "191 ms",
    },
    Case {
        name: "kv-c50-bad",
        what: "kv c50-bad, one thread",
        porcupine: "12 ms",
    },
    Case {
        name: "reg-10k-c5",
        what: "register 10k ops, 5 clients",
        porcupine: "35 ms",
    },
    Case {
        name: "reg-100k-c5",
        what: "register 100k ops, 5 clients",
        porcupine: "0.97 s, 2.3 GB",
    },
    Case {
        name: "reg-10k-c20",
        what: "register 10k ops, 20 clients",
        porcupine: "57 s, 13 GB",
    },
    Case {
        name: "reg-100k-c20",
        what: "register 100k ops, 20 clients",
        porcupine: "out of memory (16 GB)",
    },
    Case {
        name: "reg-10k-crash-bad",
        what: "register 10k ops, 5 clients, 1% crashed writes, one stale read",
        porcupine: "no answer in 60 s",
    },
    Case {
        name: "cas-100k-c5",
        what: "read/write/cas 100k ops, 5 clients, unique values",
        porcupine: "-",
    },
    Case {
        name: "cas-10k-c20",
        what: "read/write/cas 10k ops, 20 clients, unique values",
        porcupine: "-",
    },
    Case {
        name: "small-100k-c5",
        what: "read/write/cas 100k ops, 5 clients, values 0-4",
        porcupine: "-",
    },
    Case {
        name: "small-10k-c20",
        what: "read/write/cas 10k ops, 20 clients, values 0-4",
        porcupine: "-",
    },
    Case {
        name: "small-10k-crash-bad",
        what: "read/write/cas 10k ops, 5 clients, values 0-4, 1% crashed, one stale read",
        porcupine: "-",
    },
];

fn data_dir() -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/bench/porcupine-test-data");
    if !dir.join("expected.txt").is_file() {
        eprintln!("benchmark data missing: {}", dir.display());
        std::process::exit(3);
    }
    dir
}

fn one_thread() -> Budget {
    Budget {
        time_limit: Some(Duration::from_secs(10)),
        memory_limit_bytes: 1 << 30,
        threads: 1,
    }
}

fn synth_case(name: &str) -> (Vec<Event>, &'static str) {
    let base = SynthOpts {
        seed: 42,
        ..SynthOpts::default()
    };
    let rw = |ops, clients| SynthOpts {
        ops,
        clients,
        read_ratio: 0.5,
        ..base.clone()
    };
    let cas = |ops, clients| SynthOpts {
        ops,
        clients,
        read_ratio: 0.4,
        cas_ratio: 0.5,
        ..base.clone()
    };
    let small = |ops, clients| SynthOpts {
        unique_values: false,
        value_range: 5,
        ..cas(ops, clients)
    };
    let (opts, plant) = match name {
        "reg-10k-c5" => (rw(10_000, 5), false),
        "reg-100k-c5" => (rw(100_000, 5), false),
        "reg-10k-c20" => (rw(10_000, 20), false),
        "reg-100k-c20" => (rw(100_000, 20), false),
        "reg-10k-crash-bad" => (
            SynthOpts {
                crash_ratio: 0.02,
                ..rw(10_000, 5)
            },
            true,
        ),
        "cas-100k-c5" => (cas(100_000, 5), false),
        "cas-10k-c20" => (cas(10_000, 20), false),
        "small-100k-c5" => (small(100_000, 5), false),
        "small-10k-c20" => (small(10_000, 20), false),
        "small-10k-crash-bad" => (
            SynthOpts {
                crash_ratio: 0.02,
                ..small(10_000, 5)
            },
            true,
        ),
        other => panic!("unknown case {other}"),
    };
    let mut h = synth::generate(&opts);
    if plant {
        synth::plant_stale_read(&mut h, opts.seed).expect("a spot for a stale read");
    }
    (h, if plant { "invalid" } else { "valid" })
}

fn vm_hwm_kb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Nanoseconds this thread has spent on a CPU (from schedstat): unlike wall time, barely
/// moved by other processes competing for the cores. Every case checks on this thread
/// (one thread, or a single key).
fn thread_cpu_ms() -> f64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    s.split_whitespace()
        .next()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1e6
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Runs one case in this process and prints one JSON line.
fn run_case(name: &str) {
    let verdict = |v: Validity| match v {
        Validity::Valid => "valid",
        Validity::Invalid => "invalid",
        Validity::Unknown => "unknown",
    };
    let mut cpu: Vec<f64> = Vec::new();
    let (times, result, expect, configs): (Vec<f64>, String, String, u64) = match name {
        "etcd-all" => {
            let dir = data_dir();
            let expected = std::fs::read_to_string(dir.join("expected.txt")).unwrap();
            let hs: Vec<(Vec<Event>, bool)> = expected
                .lines()
                .filter(|l| l.starts_with("jepsen/"))
                .map(|l| {
                    let (f, v) = l.split_once(' ').unwrap();
                    (
                        formats::load(&dir.join(f), Format::Auto).unwrap(),
                        v == "true",
                    )
                })
                .collect();
            let mut times = Vec::new();
            let mut wrong = 0;
            let mut configs = 0;
            for _ in 0..21 {
                let c0 = thread_cpu_ms();
                let t = Instant::now();
                wrong = 0;
                configs = 0;
                for (h, want) in &hs {
                    let r = linear::check(h, ModelKind::CasRegister, &one_thread()).unwrap();
                    configs += r.configs;
                    wrong += usize::from((r.valid == Validity::Valid) != *want);
                }
                times.push(t.elapsed().as_secs_f64() * 1e3);
                cpu.push(thread_cpu_ms() - c0);
            }
            (
                times,
                format!("{} histories, {wrong} wrong", hs.len()),
                "all as expected".into(),
                configs,
            )
        }
        "kv-c50-ok" | "kv-c50-bad" => {
            let file = if name == "kv-c50-ok" {
                "kv/c50-ok.txt"
            } else {
                "kv/c50-bad.txt"
            };
            let h = formats::load(&data_dir().join(file), Format::Auto).unwrap();
            let mut times = Vec::new();
            let mut last = None;
            for _ in 0..21 {
                let c0 = thread_cpu_ms();
                let r = linear::check(&h, ModelKind::Kv, &one_thread()).unwrap();
                cpu.push(thread_cpu_ms() - c0);
                times.push(r.elapsed_ms);
                last = Some(r);
            }
            let r = last.unwrap();
            (
                times,
                verdict(r.valid).into(),
                if name == "kv-c50-ok" {
                    "valid"
                } else {
                    "invalid"
                }
                .into(),
                r.configs,
            )
        }
        _ => {
            let (h, expect) = synth_case(name);
            let budget = Budget {
                time_limit: Some(Duration::from_secs(10)),
                memory_limit_bytes: 1 << 30,
                threads: 2,
            };
            let reps = if h.len() > 100_000 { 3 } else { 5 };
            let mut times = Vec::new();
            let mut last = None;
            for _ in 0..reps {
                let c0 = thread_cpu_ms();
                let r = linear::check(&h, ModelKind::CasRegister, &budget).unwrap();
                cpu.push(thread_cpu_ms() - c0);
                times.push(r.elapsed_ms);
                last = Some(r);
            }
            let r = last.unwrap();
            (times, verdict(r.valid).into(), expect.into(), r.configs)
        }
    };
    println!(
        "{}",
        serde_json::json!({
            "case": name,
            "median_ms": median(times),
            "cpu_median_ms": median(cpu),
            "result": result,
            "expected": expect,
            "configs": configs,
            "peak_rss_mb": vm_hwm_kb() as f64 / 1024.0,
        })
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, name] = args.as_slice()
        && flag == "--case"
    {
        run_case(name);
        return;
    }
    let wanted: Vec<&Case> = CASES
        .iter()
        .filter(|c| args.is_empty() || args.iter().any(|a| a == c.name))
        .collect();
    if wanted.is_empty() {
        eprintln!(
            "unknown case; known: {}",
            CASES.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
        );
        std::process::exit(64);
    }
    let exe = std::env::current_exe().expect("own path");
    println!("| case | faultline wall | faultline CPU | result | peak RSS | Porcupine |");
    println!("|---|---|---|---|---|---|");
    for c in wanted {
        let out = Command::new(&exe)
            .args(["--case", c.name])
            .output()
            .expect("run case");
        let line = String::from_utf8_lossy(&out.stdout);
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line.trim()) else {
            println!(
                "| {} | failed: {} | | | {} |",
                c.what,
                String::from_utf8_lossy(&out.stderr).trim(),
                c.porcupine
            );
            continue;
        };
        let ms = v["median_ms"].as_f64().unwrap_or(0.0);
        let fmt = |ms: f64| {
            if ms >= 1000.0 {
                format!("{:.2} s", ms / 1e3)
            } else {
                format!("{ms:.1} ms")
            }
        };
        let t = format!("{} | {}", fmt(ms), fmt(v["cpu_median_ms"].as_f64().unwrap_or(0.0)));
        println!(
            "| {} | {t} | {} (expected {}) | {:.0} MB | {} |",
            c.what,
            v["result"].as_str().unwrap_or("?"),
            v["expected"].as_str().unwrap_or("?"),
            v["peak_rss_mb"].as_f64().unwrap_or(0.0),
            c.porcupine
        );
    }
    let _ = Path::new("");
}
