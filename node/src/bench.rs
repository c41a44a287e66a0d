//! `faultline node bench`: a three-node loopback cluster of real processes (real TCP, real
//! fsync), N closed-loop clients, and the throughput and latency they saw.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::client::Client;
use crate::config::Algo;
use crate::kv::Value;
use crate::local::{LocalCluster, NoLeader, free_ports};
use crate::replica::SplitMix64;

pub struct BenchOptions {
    pub exe: PathBuf,
    pub algo: Algo,
    pub clients: usize,
    pub duration: Duration,
    pub read_fraction: f64,
    /// 0: pick free ports.
    pub base_port: u16,
    pub fsync: bool,
    pub extra: Vec<String>,
}

pub struct BenchReport {
    pub algo: Algo,
    pub clients: usize,
    pub fsync: bool,
    pub seconds: f64,
    pub writes: Histogram<u64>,
    pub reads: Histogram<u64>,
    pub errors: u64,
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "algo={} nodes=3 clients={} fsync={} duration={:.1}s errors={}",
            self.algo.as_str(),
            self.clients,
            if self.fsync { "on" } else { "off" },
            self.seconds,
            self.errors
        )?;
        writeln!(f, "{:<6} {:>10} {:>10} {:>10} {:>10} {:>10}", "op", "count", "ops/s", "p50_ms", "p99_ms", "max_ms")?;
        for (name, h) in [("write", &self.writes), ("read", &self.reads)] {
            let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
            writeln!(
                f,
                "{:<6} {:>10} {:>10.0} {:>10.2} {:>10.2} {:>10.2}",
                name,
                h.len(),
                h.len() as f64 / self.seconds,
                ms(0.5),
                ms(0.99),
                h.max() as f64 / 1000.0
            )?;
        }
        let total = self.writes.len() + self.reads.len();
        write!(f, "total  {:>10} {:>10.0} ops/s", total, total as f64 / self.seconds)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{what}: {source}")]
    Io { what: &'static str, source: std::io::Error },
    #[error(transparent)]
    NoLeader(#[from] NoLeader),
    #[error("client task: {0}")]
    Client(#[from] tokio::task::JoinError),
    #[error("merging latency histograms: {0}")]
    Histogram(#[from] hdrhistogram::AdditionError),
}

/// Starts the cluster, waits for a leader, runs the clients for the duration, stops it all.
pub fn run(opts: &BenchOptions) -> Result<BenchReport, BenchError> {
    let dir = std::env::temp_dir().join(format!("faultline-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ports: Vec<u16> = if opts.base_port == 0 {
        free_ports(6).map_err(|source| BenchError::Io { what: "finding free ports", source })?
    } else {
        (0..6).map(|i| opts.base_port + i).collect()
    };
    let mut extra = opts.extra.clone();
    extra.push(format!("fsync={}", opts.fsync));
    extra.push("log_level=warn".into());
    let mut cluster = LocalCluster::start(&opts.exe, opts.algo, 3, &ports, &dir, &extra)
        .map_err(|source| BenchError::Io { what: "starting the cluster", source })?;
    cluster.remove_dir_on_drop();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| BenchError::Io { what: "tokio runtime", source })?;
    let result = rt.block_on(async {
        let (leader, _) = cluster.wait_leader(Duration::from_secs(15)).await?;
        let addr = cluster.client_addrs[leader].clone();
        let start = Instant::now();
        let end = start + opts.duration;
        let mut tasks = Vec::new();
        for c in 0..opts.clients {
            let addr = addr.clone();
            let read_fraction = opts.read_fraction;
            tasks.push(tokio::spawn(async move {
                let mut w = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
                let mut r = w.clone();
                let mut errors = 0u64;
                let mut rng = SplitMix64::new(c as u64 + 1);
                let mut client = match Client::connect(&addr, Duration::from_secs(5)).await {
                    Ok(cl) => cl,
                    Err(_) => return (w, r, 1),
                };
                let mut i = 0i64;
                while Instant::now() < end {
                    let key = format!("k{}", rng.next_u64() % 1000);
                    let t = Instant::now();
                    let is_read = rng.chance(read_fraction);
                    let res = if is_read {
                        client.read(&key).await.map(|_| ())
                    } else {
                        i += 1;
                        client.write(&key, Value::Int(i)).await
                    };
                    let us = t.elapsed().as_micros().max(1) as u64;
                    match res {
                        Ok(()) if is_read => r.saturating_record(us),
                        Ok(()) => w.saturating_record(us),
                        Err(_) => errors += 1,
                    }
                }
                (w, r, errors)
            }));
        }
        let mut writes = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
        let mut reads = writes.clone();
        let mut errors = 0;
        for t in tasks {
            let (w, r, e) = t.await?;
            writes.add(w)?;
            reads.add(r)?;
            errors += e;
        }
        let seconds = start.elapsed().as_secs_f64();
        Ok::<_, BenchError>(BenchReport {
            algo: opts.algo,
            clients: opts.clients,
            fsync: opts.fsync,
            seconds,
            writes,
            reads,
            errors,
        })
    });
    drop(cluster);
    result
}
