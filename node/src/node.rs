//! Process-level concerns of `faultline node`: data directory, pidfile, rotated log file,
//! signal handling, and choosing the consensus core named by `algo`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tracing::{error, info};

use crate::config::{Algo, Config};
use crate::server::{self, NodeError, Started};

/// Writes `<data_dir>/node.pid`, refusing to start over a live node using the same directory.
pub struct PidFile(PathBuf);

impl PidFile {
    pub fn create(data_dir: &Path) -> Result<PidFile, NodeError> {
        let path = data_dir.join("node.pid");
        if let Ok(old) = fs::read_to_string(&path)
            && let Ok(pid) = old.trim().parse::<i32>()
            && pid > 0
            && pid as u32 != std::process::id()
            // Signal 0 only checks that the process exists.
            && unsafe { libc::kill(pid, 0) } == 0
        {
            return Err(NodeError::AlreadyRunning { pidfile: path, pid });
        }
        let tmp = data_dir.join("node.pid.tmp");
        fs::write(&tmp, format!("{}\n", std::process::id()))
            .and_then(|_| fs::rename(&tmp, &path))
            .map_err(|source| NodeError::Io { what: format!("write {}", path.display()), source })?;
        Ok(PidFile(path))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// A size-bounded log file: at `max_bytes` the file becomes `node.log.1` (older ones shift
/// up to `.3`, the oldest is deleted), so nightly runs cannot fill the disk with logs.
#[derive(Clone)]
pub struct RotatingLog {
    inner: Arc<Mutex<LogInner>>,
}

struct LogInner {
    path: PathBuf,
    file: fs::File,
    len: u64,
    max_bytes: u64,
}

const LOG_KEEP: u32 = 3;

impl RotatingLog {
    pub fn open(dir: &Path, max_bytes: u64) -> std::io::Result<RotatingLog> {
        fs::create_dir_all(dir)?;
        let path = dir.join("node.log");
        let file = fs::OpenOptions::new().create(true).append(true).open(&path)?;
        let len = file.metadata()?.len();
        Ok(RotatingLog { inner: Arc::new(Mutex::new(LogInner { path, file, len, max_bytes: max_bytes.max(4096) })) })
    }
}

impl LogInner {
    fn rotate(&mut self) -> std::io::Result<()> {
        let name = |i: u32| PathBuf::from(format!("{}.{i}", self.path.display()));
        let _ = fs::remove_file(name(LOG_KEEP));
        for i in (1..LOG_KEEP).rev() {
            let _ = fs::rename(name(i), name(i + 1));
        }
        fs::rename(&self.path, name(1))?;
        self.file = fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.len = 0;
        Ok(())
    }
}

impl Write for RotatingLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.len + buf.len() as u64 > g.max_bytes {
            g.rotate()?;
        }
        g.file.write_all(buf)?;
        g.len += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).file.flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RotatingLog {
    type Writer = RotatingLog;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Runs `faultline node` to completion: blocks until SIGTERM/SIGINT or a fatal error.
pub fn run_node(cfg: Config) -> Result<(), NodeError> {
    fs::create_dir_all(&cfg.data_dir)
        .map_err(|source| NodeError::Io { what: format!("create {}", cfg.data_dir.display()), source })?;
    let log = RotatingLog::open(&cfg.data_dir.join("logs"), cfg.log_max_bytes)
        .map_err(|source| NodeError::Io { what: "open log file".into(), source })?;
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log_level)?;
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_writer(log).try_init();
    let _pid = PidFile::create(&cfg.data_dir)?;
    info!(id = %cfg.id, algo = cfg.algo.as_str(), pid = std::process::id(), "starting node");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| NodeError::Io { what: "tokio runtime".into(), source })?;
    let result = rt.block_on(async move {
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => info!("SIGTERM: shutting down"),
                _ = int.recv() => info!("SIGINT: shutting down"),
            }
            let _ = stop_tx.send(true);
        });
        run_algo(cfg, stop_rx, |_| {}).await
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    if let Err(e) = &result {
        error!(error = %e, "node stopped with an error");
    } else {
        info!("node stopped");
    }
    result
}

/// Starts the core named by `cfg.algo` (usable in-process, e.g. by tests and benchmarks).
pub async fn run_algo(cfg: Config, stop: watch::Receiver<bool>, on_started: impl FnOnce(Started)) -> Result<(), NodeError> {
    match cfg.algo {
        Algo::Raft => server::run::<crate::raft::Raft>(cfg, stop, on_started).await,
        Algo::Paxos => server::run::<crate::paxos::Paxos>(cfg, stop, on_started).await,
    }
}
