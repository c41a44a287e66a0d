//! `faultline test`: raw flags -> validated [`TestConfig`] -> [`runner::run_test`] ->
//! exit code (0 valid, 1 invalid, 2 unknown, 3 harness error, 64 usage).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

use tokio_util::sync::CancellationToken;

use crate::exit::usage;
use crate::runner::{self, TestConfig};

#[derive(clap::Args, Debug)]
pub struct TestArgs {
    /// Inventory file, or the name of a local cluster (`faultline cluster up --name`).
    #[arg(short = 'i', long = "inventory")]
    pub inventory: String,
    /// Algorithm under test: raft, paxos, or both in turn (`raft,paxos`) with the same seed.
    #[arg(long, default_value = "raft")]
    pub db: String,
    /// Workload: register, set, bank, append.
    #[arg(long, default_value = "register")]
    pub workload: String,
    #[command(flatten)]
    pub nemesis: crate::nemesis_flags::NemesisFlags,
    /// Client workers; worker i talks to node i mod n.
    #[arg(long, default_value_t = 10)]
    pub concurrency: usize,
    /// Offered load over all workers, ops per second (open loop, Poisson arrivals).
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Seconds of client load.
    #[arg(long, default_value_t = 30.0)]
    pub time_limit: f64,
    /// Seconds to wait after healing before the final reads.
    #[arg(long, default_value_t = 5.0)]
    pub recovery_time: f64,
    /// Client timeout per operation, ms; a timed-out op is indeterminate (info).
    #[arg(long, default_value_t = 1000)]
    pub op_timeout_ms: u64,
    /// Seed for the generator, arrivals and nemesis schedule (random when absent).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run the test this many times (seeds seed, seed+1, ...).
    #[arg(long, default_value_t = 1)]
    pub test_count: u32,
    /// Leave the nodes running after the run (for inspection).
    #[arg(long)]
    pub leave_db_running: bool,
    /// Node knob, passed as `--set KEY=VALUE` to every node (repeatable).
    #[arg(long = "node-opt", value_name = "KEY=VALUE")]
    pub node_opt: Vec<String>,
    /// Store directory for run results.
    #[arg(long, default_value = "store")]
    pub store: PathBuf,
    /// Test name (directory under the store); default `<workload>-<db>-<nemesis>`.
    #[arg(long)]
    pub name: Option<String>,
}

const DBS: &[&str] = &["raft", "paxos"];

impl TestArgs {
    /// Every check of user input happens here, before anything touches a host.
    pub fn validate(&self) -> anyhow::Result<TestConfig> {
        let dbs: Vec<String> = self
            .db
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if dbs.is_empty() {
            return Err(usage(
                "--db names no algorithm (expected raft, paxos or raft,paxos)",
            ));
        }
        for d in &dbs {
            if !DBS.contains(&d.as_str()) {
                return Err(usage(format!(
                    "--db {d:?}: unknown algorithm (expected one of {})",
                    DBS.join(", ")
                )));
            }
        }
        if faultline_workloads::lookup(&self.workload).is_none() {
            return Err(usage(format!(
                "--workload {:?}: unknown workload (expected one of {})",
                self.workload,
                faultline_workloads::names().join(", ")
            )));
        }
        let nemesis_config = self.nemesis.validate()?;
        let nemesis: Vec<String> = self.nemesis.families();
        if self.concurrency == 0 || self.concurrency > 1024 {
            return Err(usage(format!(
                "--concurrency {} is not between 1 and 1024",
                self.concurrency
            )));
        }
        if !(self.rate.is_finite() && self.rate > 0.0 && self.rate <= 1_000_000.0) {
            return Err(usage(format!(
                "--rate {} is not between 0 and 1000000 ops/s",
                self.rate
            )));
        }
        if !(self.time_limit.is_finite() && self.time_limit > 0.0 && self.time_limit <= 7.0 * 86_400.0) {
            return Err(usage(format!(
                "--time-limit {} is not between 0 and 604800 s",
                self.time_limit
            )));
        }
        if !(self.recovery_time.is_finite() && (0.0..=3600.0).contains(&self.recovery_time)) {
            return Err(usage(format!(
                "--recovery-time {} is not between 0 and 3600 s",
                self.recovery_time
            )));
        }
        if !(10..=600_000).contains(&self.op_timeout_ms) {
            return Err(usage(format!(
                "--op-timeout-ms {} is not between 10 and 600000",
                self.op_timeout_ms
            )));
        }
        if self.test_count == 0 || self.test_count > 10_000 {
            return Err(usage(format!(
                "--test-count {} is not between 1 and 10000",
                self.test_count
            )));
        }
        let mut node_opts = Vec::new();
        for o in &self.node_opt {
            match o.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() && !k.contains(char::is_whitespace) => {
                    node_opts.push((k.trim().to_string(), v.to_string()))
                }
                _ => return Err(usage(format!("--node-opt {o:?}: expected KEY=VALUE"))),
            }
        }
        let name = match &self.name {
            Some(n) => n.clone(),
            None => format!(
                "{}-{}-{}",
                self.workload,
                dbs.join("+"),
                if nemesis.is_empty() {
                    "none".to_string()
                } else {
                    nemesis.join("+")
                }
            ),
        };
        if name.is_empty() || name == "latest" || name.contains('/') || name.starts_with('.') {
            return Err(usage(format!(
                "--name {name:?}: must be a plain directory name, not `latest`"
            )));
        }
        let seed = self.seed.unwrap_or_else(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            (t.as_nanos() as u64) ^ (u64::from(std::process::id()) << 32)
        });
        Ok(TestConfig {
            name,
            inventory: self.inventory.clone(),
            dbs,
            workload: self.workload.clone(),
            nemesis,
            nemesis_interval_s: self.nemesis.nemesis_interval,
            nemesis_targets: self.nemesis.nemesis_targets.clone(),
            nemesis_shapes: self.nemesis.nemesis_shapes.clone(),
            nemesis_config,
            concurrency: self.concurrency,
            rate_per_s: self.rate,
            time_limit_s: self.time_limit,
            recovery_s: self.recovery_time,
            op_timeout_ms: self.op_timeout_ms,
            seed,
            test_count: self.test_count,
            leave_db_running: self.leave_db_running,
            node_opts,
            store: self.store.clone(),
        })
    }
}

/// The current run's log file; tracing writes there while a run is active.
static LOG_FILE: Mutex<Option<std::fs::File>> = Mutex::new(None);

/// Points the tracing file output at `path` (or nowhere).
pub fn log_to(path: Option<&Path>) {
    let file = path.and_then(|p| std::fs::OpenOptions::new().create(true).append(true).open(p).ok());
    *LOG_FILE.lock().unwrap_or_else(|e| e.into_inner()) = file;
}

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match LOG_FILE.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            Some(f) => f.write(buf),
            None => Ok(buf.len()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match LOG_FILE.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

pub(crate) fn init_tracing() {
    use tracing_subscriber::prelude::*;
    let file = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(|| LogWriter)
        .with_filter(
            tracing_subscriber::EnvFilter::try_from_env("FAULTLINE_LOG").unwrap_or_else(|_| "info".into()),
        );
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(tracing_subscriber::filter::LevelFilter::WARN);
    let _ = tracing_subscriber::registry().with(file).with(stderr).try_init();
}

pub fn run(args: TestArgs) -> anyhow::Result<ExitCode> {
    let cfg = args.validate()?;
    init_tracing();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run_all(cfg))
}

async fn run_all(cfg: TestConfig) -> anyhow::Result<ExitCode> {
    let interrupt = CancellationToken::new();
    let watcher = {
        let interrupt = interrupt.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!(
                    "\nfaultline: interrupted; healing faults, stopping nodes and saving the history (Ctrl-C again to abort now)"
                );
                interrupt.cancel();
                if tokio::signal::ctrl_c().await.is_ok() {
                    eprintln!(
                        "faultline: aborted; faults expire on their own on the hosts, nodes may still run"
                    );
                    std::process::exit(i32::from(crate::exit::HARNESS));
                }
            }
        })
    };
    let mut worst: Option<u8> = None;
    'outer: for i in 0..cfg.test_count {
        let mut round = Vec::new();
        for db in &cfg.dbs {
            let mut one = cfg.for_db(db);
            one.seed = cfg.seed.wrapping_add(u64::from(i));
            let outcome = runner::run_test(&one, interrupt.clone()).await?;
            print_summary(&one, &outcome);
            round.push(outcome.run_dir.clone());
            let code = outcome.exit_code();
            worst = Some(match worst {
                None => code,
                // Invalid dominates, then harness errors, then unknown.
                Some(w) => [1u8, 3, 2, 0]
                    .into_iter()
                    .find(|c| *c == w || *c == code)
                    .unwrap_or(w),
            });
            if interrupt.is_cancelled() {
                break 'outer;
            }
        }
        crate::report::compare::after_test(&cfg.store, &cfg.name, &round);
    }
    watcher.abort();
    Ok(ExitCode::from(worst.unwrap_or(crate::exit::HARNESS)))
}

fn print_summary(cfg: &TestConfig, o: &runner::RunOutcome) {
    runner::progress::clear();
    match &o.report {
        Some(r) => crate::report::print_summary(r),
        None => {
            let v = serde_json::to_string(&o.valid).unwrap_or_default();
            println!(
                "{} ({} on {}, seed {}): valid {v}",
                cfg.name,
                cfg.workload,
                cfg.db(),
                cfg.seed
            );
            for r in &o.results {
                println!(
                    "  {:<14} {}",
                    r.checker,
                    serde_json::to_string(&r.valid).unwrap_or_default()
                );
            }
        }
    }
    let s = &o.stats;
    if let Some(offered) = s.get("offered") {
        println!(
            "offered {offered} ops (skipped {}), history {} events",
            s["skipped"], s["history-events"]
        );
    }
    if let Some(d) = s.get("final-reads").and_then(|f| f.get("disagreements")) {
        println!("final reads: {d} key(s) disagree across nodes");
    }
    if let Some(e) = &o.harness_error {
        println!("harness error: {e}");
    }
    let heal_errors = s["nemesis"]["heal-errors"].as_array().map_or(0, Vec::len);
    if heal_errors > 0 {
        println!(
            "warning: {heal_errors} heal error(s); the faults expire on the hosts by themselves (see results.json)"
        );
    }
    if o.interrupted {
        let faults = if heal_errors > 0 {
            "heal attempted"
        } else {
            "faults healed"
        };
        let nodes = if cfg.leave_db_running {
            "nodes left running"
        } else {
            "nodes stopped"
        };
        println!("interrupted: {faults}, {nodes}; the history and partial results are kept");
    }
    println!("run directory: {}", o.run_dir.display());
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(clap::Parser)]
    struct Wrap {
        #[command(flatten)]
        args: TestArgs,
    }

    fn parse(args: &[&str]) -> anyhow::Result<TestConfig> {
        let mut v = vec!["faultline", "-i", "inv.yaml"];
        v.extend_from_slice(args);
        Wrap::try_parse_from(v).unwrap().args.validate()
    }

    fn usage_message(r: anyhow::Result<TestConfig>) -> String {
        let e = r.expect_err("expected a usage error");
        assert_eq!(crate::exit::for_error(&e), ExitCode::from(crate::exit::USAGE));
        e.to_string()
    }

    #[test]
    fn defaults_name_the_test_after_workload_db_and_nemesis() {
        let c = parse(&["--seed", "3"]).unwrap();
        assert_eq!(c.name, "register-raft-none");
        assert_eq!(c.seed, 3);
        assert!(c.nemesis.is_empty());
        let c = parse(&[
            "--db",
            "raft,paxos",
            "--workload",
            "bank",
            "--nemesis",
            "kill,partition",
        ])
        .unwrap();
        assert_eq!(c.dbs, vec!["raft", "paxos"]);
        assert_eq!(c.name, "bank-raft+paxos-kill+partition");
        assert_eq!(c.for_db("paxos").db(), "paxos");
    }

    #[test]
    fn node_opts_split_at_the_first_equals_sign() {
        let c = parse(&[
            "--node-opt",
            "unsafe_local_reads=true",
            "--node-opt",
            "log_level=a=b",
        ])
        .unwrap();
        assert_eq!(
            c.node_opts,
            vec![
                ("unsafe_local_reads".into(), "true".into()),
                ("log_level".into(), "a=b".into())
            ]
        );
        assert!(usage_message(parse(&["--node-opt", "=x"])).contains("KEY=VALUE"));
    }

    #[test]
    fn bad_values_name_the_flag() {
        assert!(usage_message(parse(&["--db", "etcd"])).contains("--db"));
        assert!(usage_message(parse(&["--workload", "queue"])).contains("register, set, bank, append"));
        assert!(usage_message(parse(&["--concurrency", "0"])).contains("--concurrency"));
        assert!(usage_message(parse(&["--time-limit", "0"])).contains("--time-limit"));
        assert!(usage_message(parse(&["--nemesis", "meteor"])).contains("--nemesis"));
        assert!(usage_message(parse(&["--name", "latest"])).contains("--name"));
        assert!(usage_message(parse(&["--test-count", "0"])).contains("--test-count"));
    }

    #[test]
    fn without_a_seed_runs_still_get_a_recorded_one() {
        let a = parse(&[]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = parse(&[]).unwrap();
        assert_ne!(a.seed, b.seed);
    }
}
