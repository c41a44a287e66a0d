//! `bench throughput` drives closed-loop clients against any registered database on any
//! inventory (a local cluster or VMs) with one measurement loop, so figures for the bundled
//! Raft and Multi-Paxos and for etcd come from the same code under the same load: each
//! client keeps one request outstanding, reads are linearizable, keys are uniform over a
//! fixed pool. Only successful operations enter the latency histograms; failed and
//! indeterminate ones are counted.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use comfy_table::Table;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use hdrhistogram::Histogram;
use rand::Rng;
use serde_json::{Value, json};

use crate::control::{Control, ControlOptions};
use crate::db::{Database, DbSettings};
use crate::deploy;
use crate::exit::usage;

/// Client counts per run at most, and per cell: a typo must not open a million sockets.
const CLIENTS_MAX: usize = 4096;
/// Unmeasured time before each cell, so connections and leader caches are warm.
const WARMUP: Duration = Duration::from_secs(1);

#[derive(clap::Args, Debug)]
pub struct ThroughputArgs {
    /// Inventory file, or the name of a local cluster.
    #[arg(short = 'i', long = "inventory")]
    pub inventory: String,
    /// Databases, measured in turn on the same hosts (comma list).
    #[arg(long, default_value = "raft,paxos")]
    pub db: String,
    /// Database knob for every database (repeatable); see `faultline test --db-opt`.
    #[arg(long = "db-opt", value_name = "KEY=VALUE")]
    pub db_opt: Vec<String>,
    /// A local executable to upload for databases that take one (etcd).
    #[arg(long = "db-binary", value_name = "PATH")]
    pub db_binary: Option<PathBuf>,
    /// Concurrent clients per cell (comma list), each with one request outstanding.
    #[arg(long, default_value = "1,16,64")]
    pub clients: String,
    /// Measured seconds per cell.
    #[arg(long = "duration-s", default_value_t = 10)]
    pub duration_s: u64,
    /// Fraction of operations that are (linearizable) reads; the rest are writes.
    #[arg(long, default_value_t = 0.5)]
    pub read_fraction: f64,
    /// Keys, chosen uniformly.
    #[arg(long, default_value_t = 1000)]
    pub keys: u64,
    /// Client timeout per operation, ms.
    #[arg(long, default_value_t = 1000)]
    pub op_timeout_ms: u64,
    /// Print one JSON object per cell instead of the table.
    #[arg(long)]
    pub json: bool,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

struct Config {
    inventory: crate::inventory::Inventory,
    dbs: Vec<DbSettings>,
    clients: Vec<usize>,
    duration: Duration,
    read_fraction: f64,
    keys: u64,
    op_timeout: Duration,
    json: bool,
    seed: u64,
}

fn validate(a: ThroughputArgs) -> anyhow::Result<Config> {
    let dbs = super::db_settings(&a.db, &a.db_opt, a.db_binary.as_ref(), &[])?;
    let mut clients = Vec::new();
    for c in a.clients.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let n: usize = c
            .parse()
            .map_err(|_| usage(format!("--clients {c:?}: expected a number")))?;
        if n == 0 || n > CLIENTS_MAX {
            return Err(usage(format!("--clients {n} must be between 1 and {CLIENTS_MAX}")));
        }
        clients.push(n);
    }
    if clients.is_empty() {
        return Err(usage("--clients names no client count"));
    }
    if a.duration_s == 0 || a.duration_s > 3600 {
        return Err(usage(format!("--duration-s {} must be between 1 and 3600", a.duration_s)));
    }
    if !(0.0..=1.0).contains(&a.read_fraction) {
        return Err(usage(format!("--read-fraction {} must be between 0 and 1", a.read_fraction)));
    }
    if a.keys == 0 {
        return Err(usage("--keys must be at least 1"));
    }
    if !(10..=600_000).contains(&a.op_timeout_ms) {
        return Err(usage(format!("--op-timeout-ms {} must be between 10 and 600000", a.op_timeout_ms)));
    }
    let inventory = crate::inventory::resolve_cli(&a.inventory)?;
    Ok(Config {
        inventory,
        dbs,
        clients,
        duration: Duration::from_secs(a.duration_s),
        read_fraction: a.read_fraction,
        keys: a.keys,
        op_timeout: Duration::from_millis(a.op_timeout_ms),
        json: a.json,
        seed: a.seed,
    })
}

pub fn run(a: ThroughputArgs) -> anyhow::Result<ExitCode> {
    let cfg = validate(a)?;
    crate::logging::init();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(throughput(cfg))
}

/// One cell's figures.
struct Cell {
    db: &'static str,
    clients: usize,
    seconds: f64,
    reads: Histogram<u64>,
    writes: Histogram<u64>,
    failed: u64,
    indeterminate: u64,
}

impl Cell {
    fn ops_per_s(&self) -> f64 {
        (self.reads.len() + self.writes.len()) as f64 / self.seconds
    }

    fn json(&self) -> Value {
        let q = |h: &Histogram<u64>, p: f64| (!h.is_empty()).then(|| h.value_at_quantile(p) as f64 / 1000.0);
        json!({
            "db": self.db, "clients": self.clients, "seconds": self.seconds,
            "ok_ops_per_s": self.ops_per_s(),
            "reads": self.reads.len(), "writes": self.writes.len(),
            "read_ms_p50": q(&self.reads, 0.5), "read_ms_p99": q(&self.reads, 0.99),
            "write_ms_p50": q(&self.writes, 0.5), "write_ms_p99": q(&self.writes, 0.99),
            "failed": self.failed, "indeterminate": self.indeterminate,
        })
    }
}

async fn throughput(cfg: Config) -> anyhow::Result<ExitCode> {
    let control = Control::connect(&cfg.inventory, &ControlOptions::default())
        .await
        .context("cannot connect to the cluster")?;
    let mut cells = Vec::new();
    let mut failure = None;
    for settings in &cfg.dbs {
        let entry = crate::db::lookup(settings.db).expect("validated");
        let db = (entry.open)(
            settings,
            &cfg.inventory,
            &crate::db::OpenOptions {
                op_timeout: cfg.op_timeout,
            },
        );
        let r = async {
            super::bring_up(&control, &db).await?;
            for &clients in &cfg.clients {
                let cell = measure(&db, clients, &cfg).await;
                if cfg.json {
                    outln!("{}", cell.json());
                } else {
                    eprintln!(
                        "{} x{}: {:.0} ok ops/s",
                        cell.db,
                        cell.clients,
                        cell.ops_per_s()
                    );
                }
                cells.push(cell);
            }
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = deploy::stop(&control, db.layout()).await {
            tracing::warn!(error = %format!("{e:#}"), "stopping {}", settings.db);
        }
        if let Err(e) = r {
            failure = Some(e.context(format!("benchmarking {}", settings.db)));
            break;
        }
    }
    control.close().await;
    if !cfg.json {
        print_table(&cells);
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(ExitCode::SUCCESS),
    }
}

async fn measure(db: &Arc<dyn Database>, clients: usize, cfg: &Config) -> Cell {
    let nodes = db.nodes();
    let warm_until = Instant::now() + WARMUP;
    let end = warm_until + cfg.duration;
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let db = db.clone();
            let node = nodes[i % nodes.len()].clone();
            let (read_fraction, keys) = (cfg.read_fraction, cfg.keys);
            let mut rng = faultline_workloads::rng(cfg.seed, "bench-throughput", i as u64);
            tokio::spawn(async move {
                let mut reads = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("bounds");
                let mut writes = reads.clone();
                let (mut failed, mut indeterminate) = (0u64, 0u64);
                let mut kv = db.client(&node, i as u64);
                let mut n = 0u64;
                while Instant::now() < end {
                    let key = format!("k{}", rng.random_range(0..keys));
                    let read = rng.random_bool(read_fraction);
                    n += 1;
                    let t = Instant::now();
                    let r = if read {
                        kv.read(&key).await.map(|_| ())
                    } else {
                        kv.write(&key, json!(n)).await
                    };
                    let measured = t >= warm_until;
                    match r {
                        Ok(()) if measured => {
                            let us = t.elapsed().as_micros().max(1) as u64;
                            let h = if read { &mut reads } else { &mut writes };
                            let _ = h.record(us.min(600_000_000));
                        }
                        Ok(()) => {}
                        Err(faultline_workloads::KvError::Definite(_)) => failed += u64::from(measured),
                        Err(faultline_workloads::KvError::Indefinite(_)) => {
                            indeterminate += u64::from(measured);
                            // A connection in an unknown state is not reused.
                            kv = db.client(&node, i as u64);
                        }
                    }
                }
                (reads, writes, failed, indeterminate)
            })
        })
        .collect();
    let mut cell = Cell {
        db: db.name(),
        clients,
        seconds: cfg.duration.as_secs_f64(),
        reads: Histogram::new_with_bounds(1, 600_000_000, 3).expect("bounds"),
        writes: Histogram::new_with_bounds(1, 600_000_000, 3).expect("bounds"),
        failed: 0,
        indeterminate: 0,
    };
    for t in tasks {
        if let Ok((r, w, f, i)) = t.await {
            let _ = cell.reads.add(r);
            let _ = cell.writes.add(w);
            cell.failed += f;
            cell.indeterminate += i;
        }
    }
    cell
}

fn print_table(cells: &[Cell]) {
    let ms = |h: &Histogram<u64>, p: f64| {
        if h.is_empty() {
            "—".to_string()
        } else {
            format!("{:.2}", h.value_at_quantile(p) as f64 / 1000.0)
        }
    };
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "db", "clients", "ok ops/s", "read p50 ms", "read p99 ms", "write p50 ms", "write p99 ms", "fail", "info",
    ]);
    for c in cells {
        t.add_row(vec![
            c.db.to_string(),
            c.clients.to_string(),
            format!("{:.0}", c.ops_per_s()),
            ms(&c.reads, 0.5),
            ms(&c.reads, 0.99),
            ms(&c.writes, 0.5),
            ms(&c.writes, 0.99),
            c.failed.to_string(),
            c.indeterminate.to_string(),
        ]);
    }
    outln!("{t}");
}
