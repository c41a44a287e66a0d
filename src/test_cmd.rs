//! `faultline test`: raw flags -> validated [`TestConfig`] -> [`runner::run_test`] ->
//! exit code (0 valid, 1 invalid, 2 unknown, 3 harness error, 64 usage).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use faultline_workloads::txn::TxnOpts;

use crate::exit::usage;
use crate::runner::{self, TestConfig};

#[derive(clap::Args, Debug, Clone)]
pub struct TestArgs {
    /// Inventory file, or the name of a local cluster (`faultline cluster up --name`).
    #[arg(short = 'i', long = "inventory")]
    pub inventory: String,
    /// Database under test (raft, paxos, ...), or several in turn (`raft,paxos`) with the
    /// same seed, schedule and knobs, ending with a comparison.
    #[arg(long, default_value = "raft")]
    pub db: String,
    /// Database knob, checked against what the database declares (repeatable); `-` and `_`
    /// are the same in names.
    #[arg(long = "db-opt", value_name = "KEY=VALUE")]
    pub db_opt: Vec<String>,
    /// A local executable to upload and run instead of installing the database's package.
    /// For the bundled node (`--node-binary`): the node image to upload, e.g. an aarch64 build.
    #[arg(long = "db-binary", visible_alias = "node-binary", value_name = "PATH")]
    pub db_binary: Option<PathBuf>,
    /// First install the tools faultline needs on every host (`faultline hosts prepare`).
    #[arg(long)]
    pub prepare_hosts: bool,
    /// Workload: register, set, bank, append.
    #[arg(long, default_value = "register")]
    pub workload: String,
    /// list-append, rw-register: micro-ops per transaction at most (default 4; Jepsen's
    /// max-txn-length).
    #[arg(long, value_name = "N")]
    pub txn_length_max: Option<usize>,
    /// list-append, rw-register: keys in use at any time (default 8; Jepsen's key-count).
    #[arg(long, value_name = "N")]
    pub key_count: Option<usize>,
    /// list-append, rw-register: writes to one key before it is retired (default 32;
    /// Jepsen's max-writes-per-key); at least --concurrency, as every worker writes a share.
    #[arg(long, value_name = "N")]
    pub writes_per_key_max: Option<u64>,
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
    /// The bundled node's spelling of `--db-opt` (repeatable).
    #[arg(long = "node-opt", value_name = "KEY=VALUE")]
    pub node_opt: Vec<String>,
    /// A service-level objective that fails the run when breached, e.g.
    /// `unavailability_ms_p99<=2000`, `latency_ms_p99<=50`, `throughput_ok_per_s>=100`,
    /// `elections_max<=10` (repeatable).
    #[arg(long = "slo", value_name = "KEY<=VALUE")]
    pub slo: Vec<String>,
    /// Compare throughput, latency p99 and unavailability p99 with the median of the last N
    /// comparable runs in the store's index (`last:7`); worse by more than
    /// `--regression-max` fails the run.
    #[arg(long, value_name = "last:N")]
    pub baseline: Option<String>,
    /// How much worse than the baseline a figure may be.
    #[arg(long, default_value = "25%", requires = "baseline")]
    pub regression_max: String,
    /// Store directory for run results.
    #[arg(long, default_value = "store")]
    pub store: PathBuf,
    /// Test name (directory under the store); default `<workload>-<db>-<nemesis>`.
    #[arg(long)]
    pub name: Option<String>,
}

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
            return Err(usage(format!(
                "--db names no database (expected one or more of {})",
                crate::db::names().join(", ")
            )));
        }
        let mut db_opts = Vec::new();
        for (flag, o) in self
            .db_opt
            .iter()
            .map(|o| ("--db-opt", o))
            .chain(self.node_opt.iter().map(|o| ("--node-opt", o)))
        {
            match o.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() && !k.contains(char::is_whitespace) => {
                    db_opts.push((k.trim().to_string(), v.to_string()))
                }
                _ => return Err(usage(format!("{flag} {o:?}: expected KEY=VALUE"))),
            }
        }
        let db_args = crate::db::DbArgs {
            opts: db_opts,
            binary: self.db_binary.clone(),
        };
        let mut db_settings = Vec::new();
        for d in &dbs {
            let entry = crate::db::lookup(d).ok_or_else(|| {
                usage(format!(
                    "--db {d:?}: unknown database; known: {}",
                    crate::db::REGISTRY
                        .iter()
                        .map(|e| format!("{} ({})", e.name, e.about))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            let settings = (entry.validate)(&db_args).map_err(|e| usage(format!("--db-opt: {e}")))?;
            db_settings.push(settings);
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
        for family in &nemesis {
            let needs_lazyfs = faultline_nemesis::lookup(family).is_ok_and(|p| p.fixture.is_some());
            if let Some(d) = dbs.iter().find(|d| needs_lazyfs && crate::db::lookup(d).is_some_and(|e| !e.lazyfs)) {
                return Err(usage(format!(
                    "--nemesis {family}: --db {d} cannot run on faultline's lazyfs (only raft and paxos, the bundled node, can)"
                )));
            }
            let needs_membership = faultline_nemesis::lookup(family).is_ok_and(|p| p.membership);
            if let Some(d) = dbs.iter().find(|d| needs_membership && crate::db::lookup(d).is_some_and(|e| !e.membership)) {
                return Err(usage(format!(
                    "--nemesis {family}: --db {d} cannot change its membership (only raft and paxos, the bundled node, can)"
                )));
            }
        }
        if self.concurrency == 0 || self.concurrency > 1024 {
            return Err(usage(format!(
                "--concurrency {} is not between 1 and 1024",
                self.concurrency
            )));
        }
        let txn = self.txn_opts()?;
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return Err(usage(format!("--rate {} must be greater than 0 ops/s", self.rate)));
        }
        if self.rate > 1_000_000.0 {
            return Err(usage(format!("--rate {} must be at most 1000000 ops/s", self.rate)));
        }
        let time_limit = seconds("--time-limit", self.time_limit, false, 7.0 * 86_400.0)?;
        let recovery = seconds("--recovery-time", self.recovery_time, true, 3600.0)?;
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
        let slos = self
            .slo
            .iter()
            .map(|s| s.parse::<crate::slo::Slo>().map_err(|e| usage(format!("--slo {e}"))))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let baseline = self
            .baseline
            .as_deref()
            .map(|b| crate::baseline::Baseline::parse(b, &self.regression_max))
            .transpose()
            .map_err(|e| usage(e.to_string()))?;
        let seed = self.seed.unwrap_or_else(crate::run_loop::clock_seed);
        // Last, so every flag is checked even when the inventory is also wrong.
        let hosts = crate::inventory::resolve_cli(&self.inventory)?;
        if let Some(n) = &nemesis_config {
            n.check_targets(&hosts.node_names())
                .map_err(crate::nemesis_flags::usage_for)?;
        }
        Ok(TestConfig {
            name,
            inventory: self.inventory.clone(),
            hosts,
            dbs: db_settings,
            workload: self.workload.clone(),
            txn,
            nemesis,
            nemesis_interval_s: self.nemesis.nemesis_interval,
            nemesis_targets: self.nemesis.nemesis_targets.clone(),
            nemesis_shapes: self.nemesis.nemesis_shapes.clone(),
            nemesis_config,
            concurrency: self.concurrency,
            rate_per_s: self.rate,
            time_limit,
            recovery,
            op_timeout: Duration::from_millis(self.op_timeout_ms),
            seed,
            test_count: self.test_count,
            leave_db_running: self.leave_db_running,
            slos,
            baseline,
            store: self.store.clone(),
        })
    }
}

impl TestArgs {
    /// The transactions' shape for a transactional workload (defaults filled in), `None`
    /// for the others, which refuse the transaction flags rather than ignore them. Checked
    /// after `--workload` and `--concurrency`.
    fn txn_opts(&self) -> anyhow::Result<Option<TxnOpts>> {
        let given: Vec<&str> = [
            ("--txn-length-max", self.txn_length_max.is_some()),
            ("--key-count", self.key_count.is_some()),
            ("--writes-per-key-max", self.writes_per_key_max.is_some()),
        ]
        .into_iter()
        .filter_map(|(flag, set)| set.then_some(flag))
        .collect();
        if faultline_workloads::txn::kind(&self.workload).is_none() {
            if let Some(flag) = given.first() {
                return Err(usage(format!(
                    "{flag} applies to the transactional workloads (list-append, rw-register) \
                     only, not to --workload {}",
                    self.workload
                )));
            }
            return Ok(None);
        }
        let d = TxnOpts::default();
        let o = TxnOpts {
            txn_length_max: self.txn_length_max.unwrap_or(d.txn_length_max),
            key_count: self.key_count.unwrap_or(d.key_count),
            writes_per_key_max: self.writes_per_key_max.unwrap_or(d.writes_per_key_max),
        };
        let between = |flag: &str, v: u64, max: u64| {
            if v == 0 || v > max {
                Err(usage(format!("{flag} {v} is not between 1 and {max}")))
            } else {
                Ok(())
            }
        };
        between("--txn-length-max", o.txn_length_max as u64, TxnOpts::TXN_LENGTH_MAX as u64)?;
        between("--key-count", o.key_count as u64, TxnOpts::KEY_COUNT_MAX as u64)?;
        between("--writes-per-key-max", o.writes_per_key_max, TxnOpts::WRITES_PER_KEY_MAX)?;
        // Workers rotate keys independently, each after its share of the writes; with
        // fewer writes than workers every share is one and the bound would not hold.
        if o.writes_per_key_max < self.concurrency as u64 {
            return Err(usage(format!(
                "--writes-per-key-max {} is less than --concurrency {}: every worker writes \
                 at least once to each key, so a key would get up to {} writes; raise \
                 --writes-per-key-max to at least {}",
                o.writes_per_key_max, self.concurrency, self.concurrency, self.concurrency
            )));
        }
        Ok(Some(o))
    }
}

/// A duration flag in seconds: finite, positive (or zero where `zero_ok`), at most `max_s`.
fn seconds(flag: &str, s: f64, zero_ok: bool, max_s: f64) -> anyhow::Result<Duration> {
    if !s.is_finite() || s < 0.0 || (s == 0.0 && !zero_ok) {
        return Err(usage(if zero_ok {
            format!("{flag} {s} must be 0 or more seconds")
        } else {
            format!("{flag} {s} must be greater than 0 seconds")
        }));
    }
    if s > max_s {
        return Err(usage(format!("{flag} {s} must be at most {max_s} seconds")));
    }
    Ok(Duration::from_secs_f64(s))
}

pub fn run(args: TestArgs) -> anyhow::Result<ExitCode> {
    if args.prepare_hosts {
        let code = crate::hosts::prepare_cli(&args.inventory, &[])?;
        if code != ExitCode::SUCCESS {
            return Ok(code);
        }
    }
    let cfg = args.validate()?;
    // Rounds: every database in turn with the same seed, `--test-count` times.
    let rounds: Vec<Vec<TestConfig>> = (0..cfg.test_count)
        .map(|i| {
            cfg.dbs
                .iter()
                .map(|db| {
                    let mut one = cfg.for_db(db);
                    one.seed = cfg.seed.wrapping_add(u64::from(i));
                    one
                })
                .collect()
        })
        .collect();
    let store = cfg.store.clone();
    let name = cfg.name.clone();
    let finished = crate::run_loop::run(
        rounds,
        |_, _, _| {},
        |f| print_summary(&f.cfg, f),
        |round| {
            let dirs: Vec<PathBuf> = round
                .iter()
                .filter_map(|f| f.outcome.as_ref().ok().map(|o| o.run_dir.clone()))
                .collect();
            crate::report::compare::after_test(&store, &name, &dirs);
        },
    )?;
    Ok(ExitCode::from(crate::run_loop::exit_code(&finished)))
}

fn print_summary(cfg: &TestConfig, f: &crate::run_loop::Finished) {
    runner::progress::clear();
    let o = match &f.outcome {
        Ok(o) => o,
        Err(e) => {
            eprintln!("faultline: error: {} ({} on {}): {e:#}", cfg.name, cfg.workload, cfg.db());
            return;
        }
    };
    match &o.report {
        Some(r) => crate::report::print_summary(r),
        None => {
            let v = serde_json::to_string(&o.valid).unwrap_or_default();
            outln!(
                "{} ({} on {}, seed {}): valid {v}",
                cfg.name,
                cfg.workload,
                cfg.db(),
                cfg.seed
            );
            for r in &o.results {
                outln!(
                    "  {:<14} {}",
                    r.checker,
                    serde_json::to_string(&r.valid).unwrap_or_default()
                );
            }
        }
    }
    let s = &o.stats;
    if let Some(offered) = s.get("offered") {
        outln!(
            "offered {offered} ops (skipped {}), history {} events",
            s["skipped"], s["history-events"]
        );
    }
    if let Some(d) = s.get("final-reads").and_then(|f| f.get("disagreements")) {
        outln!("final reads: {d} key(s) disagree across nodes");
    }
    if let Some(e) = &o.harness_error {
        outln!("harness error: {e}");
    }
    let heal_errors = s["nemesis"]["heal-errors"].as_array().map_or(0, Vec::len);
    if heal_errors > 0 {
        outln!(
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
        outln!("interrupted: {faults}, {nodes}; the history and partial results are kept");
    }
    outln!("run directory: {}", o.run_dir.display());
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

    /// A real inventory file: validation reads it. One file per call, so that tests
    /// running in parallel never read one another's half-written file.
    fn inventory() -> String {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("fl-test-cmd-inv-{}-{n}.yaml", std::process::id()));
        std::fs::write(&p, "nodes:\n  - {name: n1, host: 10.0.0.1}\n  - {name: n2, host: 10.0.0.2}\n  - {name: n3, host: 10.0.0.3}\n").unwrap();
        p.display().to_string()
    }

    fn parse(args: &[&str]) -> anyhow::Result<TestConfig> {
        let inv = inventory();
        let mut v = vec!["faultline", "-i", inv.as_str()];
        v.extend_from_slice(args);
        let r = Wrap::try_parse_from(v).unwrap().args.validate();
        let _ = std::fs::remove_file(&inv);
        r
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
        assert_eq!(c.dbs.iter().map(|d| d.db).collect::<Vec<_>>(), vec!["raft", "paxos"]);
        assert_eq!(c.name, "bank-raft+paxos-kill+partition");
        assert_eq!(c.for_db(&c.dbs[1]).db(), "paxos");
    }

    #[test]
    fn node_opts_split_at_the_first_equals_sign() {
        let c = parse(&["--node-opt", "unsafe_local_reads=true", "--db-opt", "log_level=faultline_node=debug"]).unwrap();
        assert_eq!(
            c.dbs[0].opts,
            vec![
                ("log_level".into(), "faultline_node=debug".into()),
                ("unsafe_local_reads".into(), "true".into()),
            ]
        );
        assert!(usage_message(parse(&["--node-opt", "=x"])).contains("KEY=VALUE"));
    }

    #[test]
    fn a_bad_node_knob_is_a_usage_error_before_any_host_is_contacted() {
        // Validation alone refuses the knob: nothing is deployed, nothing waits for a pidfile.
        let m = usage_message(parse(&["--node-opt", "unsafe_locl_reads=true"]));
        assert!(m.contains("did you mean \"unsafe_local_reads\""), "{m}");
        let m = usage_message(parse(&["--node-opt", "election_timeout_ms_min=abc"]));
        assert!(m.contains("election_timeout_ms_min=abc"), "{m}");
        let m = usage_message(parse(&[
            "--node-opt",
            "election_timeout_ms_min=900",
            "--node-opt",
            "election_timeout_ms_max=600",
        ]));
        assert!(m.contains("election"), "{m}");
        let m = usage_message(parse(&["--node-opt", "data_dir=/tmp/x"]));
        assert!(m.contains("cannot be changed per run"), "{m}");
        // Hyphens are underscores.
        assert!(parse(&["--node-opt", "unsafe-local-reads=true"]).is_ok());
    }

    #[test]
    fn zero_time_limit_and_rate_say_greater_than_zero() {
        assert!(usage_message(parse(&["--time-limit", "0"])).contains("--time-limit 0 must be greater than 0"));
        assert!(usage_message(parse(&["--rate", "0"])).contains("--rate 0 must be greater than 0"));
        assert!(usage_message(parse(&["--recovery-time=-1"])).contains("--recovery-time"));
    }

    #[test]
    fn bad_values_name_the_flag() {
        assert!(usage_message(parse(&["--db", "mongodb"])).contains("--db"));
        assert!(usage_message(parse(&["--workload", "queue"])).contains("register, set, bank, append"));
        assert!(usage_message(parse(&["--concurrency", "0"])).contains("--concurrency"));
        assert!(usage_message(parse(&["--time-limit", "0"])).contains("--time-limit"));
        assert!(usage_message(parse(&["--nemesis", "meteor"])).contains("--nemesis"));
        assert!(usage_message(parse(&["--name", "latest"])).contains("--name"));
        assert!(usage_message(parse(&["--test-count", "0"])).contains("--test-count"));
    }

    #[test]
    fn txn_flags_default_to_jepsens_shape_and_reach_the_config() {
        let c = parse(&["--workload", "list-append"]).unwrap();
        assert_eq!(c.txn, Some(TxnOpts { txn_length_max: 4, key_count: 8, writes_per_key_max: 32 }));
        let c = parse(&[
            "--workload",
            "rw-register",
            "--txn-length-max",
            "6",
            "--key-count",
            "3",
            "--writes-per-key-max",
            "100",
        ])
        .unwrap();
        let o = TxnOpts { txn_length_max: 6, key_count: 3, writes_per_key_max: 100 };
        assert_eq!(c.txn, Some(o));
        assert_eq!(c.to_json()["txn"], serde_json::json!({"txn_length_max": 6, "key_count": 3, "writes_per_key_max": 100}));
        let w = faultline_workloads::lookup_with(&c.workload, c.txn.as_ref()).unwrap();
        assert_eq!(w.name(), "rw-register");
        assert_eq!(parse(&[]).unwrap().txn, None);
        assert_eq!(parse(&[]).unwrap().to_json()["txn"], serde_json::Value::Null);
    }

    #[test]
    fn zero_or_absurd_txn_shapes_are_usage_errors_naming_the_flag() {
        for (flag, bad) in [
            ("--txn-length-max", "0"),
            ("--txn-length-max", "257"),
            ("--key-count", "0"),
            ("--key-count", "1000000"),
            ("--writes-per-key-max", "0"),
            ("--writes-per-key-max", "10000000"),
        ] {
            let m = usage_message(parse(&["--workload", "list-append", flag, bad]));
            assert!(m.contains(&format!("{flag} {bad} is not between 1 and")), "{m}");
        }
        // A flag clap cannot parse as a number is refused by clap itself.
        assert!(Wrap::try_parse_from(["faultline", "-i", "inv.yaml", "--key-count", "-1"]).is_err());
        assert!(parse(&["--workload", "list-append", "--txn-length-max", "256"]).is_ok());
    }

    #[test]
    fn txn_flags_with_a_non_txn_workload_are_a_usage_error_not_ignored() {
        for flag in ["--txn-length-max", "--key-count", "--writes-per-key-max"] {
            let m = usage_message(parse(&["--workload", "register", flag, "20"]));
            assert!(m.contains(flag) && m.contains("--workload register"), "{m}");
        }
        let m = usage_message(parse(&["--key-count", "4"]));
        assert!(m.contains("--key-count"), "{m}");
    }

    #[test]
    fn fewer_writes_per_key_than_workers_is_a_usage_error() {
        let m = usage_message(parse(&["--workload", "list-append", "--concurrency", "40"]));
        assert!(m.contains("--writes-per-key-max 32 is less than --concurrency 40"), "{m}");
        assert!(parse(&["--workload", "list-append", "--concurrency", "40", "--writes-per-key-max", "40"]).is_ok());
    }

    #[test]
    fn without_a_seed_runs_still_get_a_recorded_one() {
        let a = parse(&[]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = parse(&[]).unwrap();
        assert_ne!(a.seed, b.seed);
    }
}
