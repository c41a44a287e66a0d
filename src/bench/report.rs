//! `faultline bench report`: what checking and reporting a long run costs, without the hour.
//!
//! Writes a synthetic run of the `register` workload (`test.json` and `history.jsonl`, with
//! partition windows, failed and indeterminate ops during them, and cas mismatches), then
//! judges it with `faultline report` in a child process and prints the child's wall time
//! and peak RSS and the size of the `report.html` it wrote. The history is linearizable by
//! construction (every op takes effect at its invocation, in invocation order), so the
//! verdict must be valid: a bench that prints anything else has found a bug.
//!
//! The generator streams: it holds one pending completion per worker, so it can write a
//! history of any length in constant memory and does not inflate the figure it measures.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use faultline_checkers::{Event, EventType, Process};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::exit::usage;

/// A synthetic run of more than this is a typo, not a measurement (10 hours at 1,000 ops/s).
pub const OPS_MAX: u64 = 36_000_000;

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// Client operations in the synthetic run.
    #[arg(long, default_value_t = 1_000_000)]
    pub ops: u64,
    /// Offered operations per second (sets the run's length: ops / rate seconds).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Client workers.
    #[arg(long, default_value_t = 10)]
    pub concurrency: u64,
    /// Operations per register key (keys rotate, as in the `register` workload).
    #[arg(long, default_value_t = 40)]
    pub ops_per_key: u64,
    /// A partition starts every this many seconds and lasts half of it.
    #[arg(long, default_value_t = 10)]
    pub fault_interval_s: u64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Skip the final reads (one read of every key after the load, as the runner does):
    /// they make every key's last event fall at the end of the history.
    #[arg(long)]
    pub no_final_reads: bool,
    /// The run directory to write (created; must not hold a history already).
    #[arg(long)]
    pub out: PathBuf,
    /// Only write the run; do not judge it.
    #[arg(long)]
    pub no_report: bool,
}

/// What the generator wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub ops: u64,
    pub events: u64,
    pub fail: u64,
    pub info: u64,
    pub faults: u64,
}

pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    if args.ops == 0 || args.ops > OPS_MAX {
        return Err(usage(format!("--ops {}: expected 1..={OPS_MAX}", args.ops)));
    }
    if !(args.rate.is_finite() && args.rate > 0.0 && args.rate <= 1e6) {
        return Err(usage(format!("--rate {}: expected 0 < rate <= 1000000", args.rate)));
    }
    if args.concurrency == 0 || args.concurrency > 10_000 {
        return Err(usage(format!("--concurrency {}: expected 1..=10000", args.concurrency)));
    }
    if args.ops_per_key == 0 {
        return Err(usage("--ops-per-key 0: expected at least 1"));
    }
    if args.fault_interval_s == 0 {
        return Err(usage("--fault-interval-s 0: expected at least 1"));
    }
    if args.out.join(crate::store::HISTORY_FILE).exists() {
        return Err(usage(format!(
            "--out {}: already holds a history; pick a fresh directory",
            args.out.display()
        )));
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let t = Instant::now();
    let w = write_run(&args.out, &args)?;
    let history_bytes = file_len(&args.out.join(crate::store::HISTORY_FILE));
    println!(
        "synthetic run: {} ops ({} fail, {} info), {} events, {} partitions, history {:.1} MB, written in {:.1} s",
        w.ops,
        w.fail,
        w.info,
        w.events,
        w.faults,
        history_bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    println!("run directory: {}", args.out.display());
    if args.no_report {
        return Ok(ExitCode::SUCCESS);
    }
    let exe = std::env::current_exe().context("cannot find the faultline binary")?;
    let m = measure_child(
        std::process::Command::new(exe)
            .arg("report")
            .arg(&args.out)
            .stdout(std::process::Stdio::null()),
    )?;
    let report_bytes = file_len(&args.out.join(crate::report::REPORT_HTML));
    println!(
        "faultline report: exit {}, {:.1} s, peak RSS {:.0} MB, report.html {:.2} MB",
        m.code,
        m.wall_s,
        m.max_rss_bytes as f64 / 1e6,
        report_bytes as f64 / 1e6
    );
    Ok(if m.code == 0 { ExitCode::SUCCESS } else { ExitCode::from(m.code.clamp(1, 255) as u8) })
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// A child's exit code, wall time and peak resident set.
#[derive(Debug, Clone, Copy)]
pub struct ChildCost {
    pub code: i32,
    pub wall_s: f64,
    pub max_rss_bytes: u64,
}

/// Runs `cmd` and reads its peak RSS from `wait4`, which reports the child alone (the
/// `RUSAGE_CHILDREN` figure would be the largest of every child this process has reaped).
pub fn measure_child(cmd: &mut std::process::Command) -> anyhow::Result<ChildCost> {
    let t = Instant::now();
    let child = cmd.spawn().context("cannot start the child process")?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `status` and `usage` are valid for writes; the pid is our own unreaped child.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if r < 0 {
        return Err(std::io::Error::last_os_error()).context("wait4");
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    Ok(ChildCost {
        code,
        wall_s: t.elapsed().as_secs_f64(),
        // Linux reports ru_maxrss in KiB.
        max_rss_bytes: usage.ru_maxrss as u64 * 1024,
    })
}

/// Writes `test.json` and `history.jsonl` into `dir`.
pub fn write_run(dir: &Path, args: &ReportArgs) -> anyhow::Result<Written> {
    let test = json!({
        "name": "synthetic-register",
        "started": crate::store::rfc3339(std::time::SystemTime::now()),
        "nemesis": "partition",
        "faultline-version": crate::store::VERSION,
        "git-commit": crate::store::GIT_COMMIT,
        "seed": args.seed,
        "db": "synthetic",
        "workload": "register",
        "checkers": ["linearizable"],
        "synthetic": {
            "ops": args.ops, "rate": args.rate, "concurrency": args.concurrency,
            "ops_per_key": args.ops_per_key, "fault_interval_s": args.fault_interval_s,
            "final_reads": !args.no_final_reads,
        },
    });
    std::fs::write(
        dir.join(crate::store::TEST_FILE),
        serde_json::to_vec_pretty(&test)?,
    )
    .with_context(|| format!("cannot write {}", dir.join(crate::store::TEST_FILE).display()))?;
    // A finished run that has not been judged yet: what the runner leaves before its check.
    let results = json!({"harness_error": null, "interrupted": false, "unfinished": false, "results": {}});
    std::fs::write(dir.join(crate::store::RESULTS_FILE), serde_json::to_vec_pretty(&results)?)
        .with_context(|| format!("cannot write {}", dir.join(crate::store::RESULTS_FILE).display()))?;
    let path = dir.join(crate::store::HISTORY_FILE);
    let file = std::fs::File::create(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let w = generate(args, |e| {
        serde_json::to_writer(&mut out, e)?;
        out.write_all(b"\n")?;
        Ok(())
    })
    .with_context(|| format!("cannot write {}", path.display()))?;
    out.flush()?;
    Ok(w)
}

/// One worker's next free instant, ordered for the heap.
type Free = Reverse<(u64, u64)>;

/// Generates the history in time order, handing each event to `emit`.
pub fn generate(
    args: &ReportArgs,
    mut emit: impl FnMut(&Event) -> anyhow::Result<()>,
) -> anyhow::Result<Written> {
    let mut rng = StdRng::seed_from_u64(args.seed);
    let gap_ns = (1e9 / args.rate) as u64;
    let key_period_ns = (args.ops_per_key as f64 * 1e9 / args.rate) as u64;
    let fault_ns = args.fault_interval_s * 1_000_000_000;
    let mut written = Written {
        ops: 0,
        events: 0,
        fail: 0,
        info: 0,
        faults: 0,
    };
    let mut index = 0u64;
    let last_ns = std::cell::Cell::new(0u64);
    let mut push = |mut e: Event, w: &mut Written| -> anyhow::Result<()> {
        debug_assert!(e.time >= last_ns.get(), "events in time order");
        e.index = Some(index);
        index += 1;
        last_ns.set(e.time);
        w.events += 1;
        emit(&e)
    };
    // Completions not yet emitted, by time: at most one per worker.
    // Keyed by (time, sequence number): equal times keep their order.
    let mut pending: BTreeMap<(u64, u64), Event> = BTreeMap::new();
    let mut free: BinaryHeap<Free> = (0..args.concurrency).map(|w| Reverse((0, w))).collect();
    // The register of the current key only: keys rotate by arrival time and invocations are
    // processed in arrival order, so once key k+1 appears key k is never touched again.
    let mut state: (u64, Option<i64>) = (0, None);
    // Each finished key's last value, for the final reads: a few bytes per key.
    let mut finals: Vec<Option<i64>> = Vec::new();
    // A process that saw an indeterminate op never invokes again (Jepsen's rule): its
    // worker carries on under a fresh process number.
    let mut process: Vec<u64> = (0..args.concurrency).collect();
    let mut next_process = args.concurrency;
    let mut next_fault_ns = fault_ns;
    let mut fault_open_until: Option<u64> = None;
    let mut arrival_ns = 0u64;
    let mut seq = 0u64;
    while written.ops < args.ops {
        arrival_ns += gap_ns;
        let Reverse((free_ns, worker)) = free.pop().expect("one entry per worker");
        let start = arrival_ns.max(free_ns);
        // Everything that happened before this invocation goes first.
        loop {
            let next_event = pending.first_key_value().map(|(&(t, _), _)| t);
            let next_nemesis = fault_open_until.unwrap_or(next_fault_ns);
            let t = match next_event {
                Some(t) if t <= start && t <= next_nemesis => t,
                _ if next_nemesis <= start => {
                    let (f, value) = match fault_open_until.take() {
                        Some(_) => {
                            next_fault_ns += fault_ns;
                            ("stop-partition", json!({"healed": ["n1", "n2", "n3", "n4", "n5"]}))
                        }
                        None => {
                            fault_open_until = Some(next_nemesis + fault_ns / 2);
                            written.faults += 1;
                            ("start-partition", json!({"shape": "majority", "grudge": {"n1": ["n4", "n5"]}}))
                        }
                    };
                    // Applied in an instant, so no op completes between invoke and ok.
                    for kind in [EventType::Invoke, EventType::Ok] {
                        push(nemesis_event(next_nemesis, kind, f, value.clone()), &mut written)?;
                    }
                    continue;
                }
                _ => break,
            };
            let (_, e) = pending.pop_first().expect("peeked");
            debug_assert_eq!(e.time, t);
            push(e, &mut written)?;
        }
        let in_fault = fault_open_until.is_some();
        let key_index = arrival_ns / key_period_ns.max(1);
        if state.0 != key_index {
            finals.resize(state.0 as usize, None);
            finals.push(state.1);
            state = (key_index, None);
        }
        let key = format!("r{key_index}");
        let roll: f64 = rng.random();
        let v = rng.random_range(0..5i64);
        let (f, invoke_value) = if roll < 0.5 {
            ("read", Value::Null)
        } else if roll < 0.75 {
            ("write", json!(v))
        } else {
            ("cas", json!([rng.random_range(0..5i64), v]))
        };
        // A lost leader fails a few ops outright and leaves a few indeterminate.
        let fate: f64 = rng.random();
        let outcome = if in_fault && fate < 0.02 {
            EventType::Fail
        } else if in_fault && fate < 0.05 {
            EventType::Info
        } else {
            EventType::Ok
        };
        let latency_ns = match outcome {
            EventType::Info => 1_000_000_000,
            _ => 500_000 + (rng.random::<f64>().powi(4) * 20e6) as u64,
        };
        // Each op takes effect at its invocation, in invocation order: linearizable.
        let applies = match outcome {
            EventType::Ok => true,
            EventType::Info => rng.random::<bool>(),
            _ => false,
        };
        let current = state.1;
        let mut error = None;
        let mut kind = outcome;
        let done_value = match f {
            "read" if outcome == EventType::Info => Value::Null,
            "read" => current.map_or(Value::Null, |c| json!(c)),
            "write" => {
                if applies {
                    state.1 = Some(v);
                }
                invoke_value.clone()
            }
            _ => {
                let from = invoke_value[0].as_i64().expect("cas from");
                if outcome == EventType::Ok && current != Some(from) {
                    kind = EventType::Fail;
                    error = Some(faultline_checkers::history::CAS_MISMATCH.to_string());
                } else if applies && current == Some(from) {
                    state.1 = Some(v);
                }
                invoke_value.clone()
            }
        };
        if outcome == EventType::Fail {
            error = Some("unavailable: no leader".into());
        } else if outcome == EventType::Info {
            error = Some("timeout".into());
        }
        let node = format!("n{}", worker % 5 + 1);
        let p = process[worker as usize];
        if outcome == EventType::Info {
            process[worker as usize] = next_process;
            next_process += 1;
        }
        let mut inv = Event::op(p, EventType::Invoke, f, Some(&key), invoke_value);
        inv.time = start;
        inv.node = Some(json!(node));
        push(inv, &mut written)?;
        let mut done = Event::op(p, kind, f, Some(&key), done_value);
        done.time = start + latency_ns;
        done.error = error;
        done.node = Some(json!(node));
        match done.kind {
            EventType::Fail => written.fail += 1,
            EventType::Info => written.info += 1,
            _ => {}
        }
        pending.insert((done.time, seq), done);
        seq += 1;
        written.ops += 1;
        free.push(Reverse((start + latency_ns + 1, worker)));
    }
    while let Some((_, e)) = pending.pop_first() {
        push(e, &mut written)?;
    }
    if fault_open_until.is_some() {
        let end = last_ns.get();
        for kind in [EventType::Invoke, EventType::Ok] {
            push(nemesis_event(end, kind, "stop-partition", json!({})), &mut written)?;
        }
    }
    if !args.no_final_reads {
        // The runner's final reads: after the load and the heal, one read of every key
        // in order (a key no arrival reached reads null).
        finals.resize(state.0 as usize, None);
        finals.push(state.1);
        let mut t = last_ns.get();
        for (k, value) in finals.iter().enumerate() {
            let p = process[k % process.len()];
            let key = format!("r{k}");
            let mut inv = Event::op(p, EventType::Invoke, "read", Some(&key), Value::Null);
            inv.time = t;
            push(inv, &mut written)?;
            t += 500_000;
            let mut done = Event::op(p, EventType::Ok, "read", Some(&key), value.map_or(Value::Null, |v| json!(v)));
            done.time = t;
            push(done, &mut written)?;
            written.ops += 1;
        }
    }
    Ok(written)
}

fn nemesis_event(time: u64, kind: EventType, f: &str, value: Value) -> Event {
    Event {
        index: None,
        time,
        process: Process::nemesis(),
        kind,
        f: f.to_string(),
        key: None,
        value,
        error: None,
        node: None,
    }
}
