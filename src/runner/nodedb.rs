//! Waiting for a database to be ready, and the run's nemesis.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use faultline_checkers::Event;
use faultline_nemesis::{Cluster, Executor, NemesisConfig};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Db;
use super::history::Recorder;

/// Nemesis events waiting to be recorded; the nemesis emits a few per fault.
const NEMESIS_EVENTS_QUEUE_MAX: usize = 1024;

/// Waits until every node answers `status` and they agree on a leader.
pub async fn wait_ready(db: &dyn Db, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let polls = db.nodes().into_iter().map(|n| async move {
            let r = tokio::time::timeout(crate::db::STATUS_TIMEOUT, db.status(&n)).await;
            (n, r)
        });
        let mut leaders = Vec::new();
        let mut problems = Vec::new();
        for (node, r) in futures::future::join_all(polls).await {
            match r {
                Ok(Ok(v)) => leaders.push(v.get("leader").and_then(Value::as_str).map(str::to_string)),
                Ok(Err(e)) => problems.push(format!("{node}: {e}")),
                Err(_) => problems.push(format!("{node}: status timed out")),
            }
        }
        let last = if problems.is_empty() {
            let first = leaders.first().cloned().flatten();
            if first.is_some() && leaders.iter().all(|l| *l == first) {
                tracing::info!(leader = ?first, "cluster ready");
                return Ok(());
            }
            format!("no agreed leader yet: {leaders:?}")
        } else {
            problems.join("; ")
        };
        if Instant::now() > deadline {
            bail!("cluster not ready after {} s: {last}", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Starts the nemesis for the run, if any; the task heals everything when `cancel` fires
/// and returns the executor's summary.
pub fn spawn_nemesis(
    cfg: &super::TestConfig,
    cluster: Arc<dyn Cluster>,
    rec: Recorder,
    cancel: CancellationToken,
) -> anyhow::Result<Option<JoinHandle<Value>>> {
    if cfg.nemesis.is_empty() {
        return Ok(None);
    }
    let config = NemesisConfig::from_flags(
        &cfg.nemesis.join(","),
        cfg.nemesis_interval_s,
        cfg.nemesis_targets.as_deref(),
        cfg.nemesis_shapes.as_deref(),
        false,
    )
    .map_err(|e| crate::exit::usage(e.to_string()))?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Event>(NEMESIS_EVENTS_QUEUE_MAX);
    let forward = tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            rec.record(e).await;
        }
    });
    let seed = cfg.seed;
    Ok(Some(tokio::spawn(async move {
        let exec = Executor::new(cluster, config, seed);
        let summary = exec
            .run(tokio::time::Instant::now(), cancel, move |e: Event| {
                if tx.try_send(e).is_err() {
                    tracing::error!("nemesis event queue full; event dropped");
                }
            })
            .await;
        let _ = forward.await;
        json!({
            "faults-started": summary.faults_started,
            "faults-failed": summary.faults_failed,
            "heals": summary.heals,
            "heal-errors": summary.heal_errors,
        })
    })))
}
