//! Waiting for a database to be ready, and the run's nemesis.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use faultline_checkers::Event;
use faultline_nemesis::{Cluster, Executor, NemesisConfig};
use serde_json::Value;
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
/// and returns the executor's summary (see `faultline_nemesis::executor::Summary::to_json`).
pub fn spawn_nemesis(
    cfg: &super::TestConfig,
    cluster: Arc<dyn Cluster>,
    rec: Recorder,
    cancel: CancellationToken,
) -> anyhow::Result<Option<JoinHandle<Value>>> {
    let Some(config) = cfg.nemesis_config.clone() else {
        return Ok(None);
    };
    Ok(Some(run_nemesis(
        config,
        cfg.seed,
        cluster,
        NEMESIS_EVENTS_QUEUE_MAX,
        cancel,
        move |e| {
            let rec = rec.clone();
            async move {
                rec.record(e).await;
            }
        },
    )))
}

/// Runs the executor with its events forwarded through a bounded queue into `sink`. A full
/// queue holds the nemesis back (the executor awaits room); no event is ever dropped,
/// since a lost start or stop would silently corrupt the run's fault windows.
fn run_nemesis<S, F>(
    config: NemesisConfig,
    seed: u64,
    cluster: Arc<dyn Cluster>,
    queue_max: usize,
    cancel: CancellationToken,
    mut sink: S,
) -> JoinHandle<Value>
where
    S: FnMut(Event) -> F + Send + 'static,
    F: std::future::Future<Output = ()> + Send,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Event>(queue_max.max(1));
    let forward = tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            sink(e).await;
        }
    });
    tokio::spawn(async move {
        let exec = Executor::new(cluster, config, seed);
        let summary = exec.run(tokio::time::Instant::now(), cancel, tx).await;
        if let Err(e) = forward.await {
            tracing::error!(error = %e, "forwarding nemesis events failed");
        }
        summary.to_json()
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use faultline_nemesis::{BoxFuture, Output, RemoteError};

    use super::*;

    /// Every script succeeds at once, so the nemesis produces events as fast as the
    /// schedule allows.
    struct InstantCluster;

    impl Cluster for InstantCluster {
        fn nodes(&self) -> Vec<String> {
            vec!["n1".into(), "n2".into(), "n3".into()]
        }
        fn address(&self, node: &str) -> Option<String> {
            Some(format!("10.9.0.{}", &node[1..]))
        }
        fn run<'a>(
            &'a self,
            _node: &'a str,
            _script: &'a str,
            _timeout: Duration,
        ) -> BoxFuture<'a, Result<Output, RemoteError>> {
            Box::pin(async {
                Ok(Output {
                    status: Some(0),
                    stdout: String::new(),
                    stderr: String::new(),
                })
            })
        }
        fn leader(&self) -> BoxFuture<'_, Option<String>> {
            Box::pin(async { Some("n1".to_string()) })
        }
        fn start_command(&self, _node: &str) -> String {
            "true".into()
        }
    }

    #[tokio::test]
    async fn nemesis_events_are_never_dropped_under_a_flood() {
        // The shortest interval, three families composing, a one-slot queue and a sink
        // slower than the nemesis: the old try_send dropped most of these.
        let config = NemesisConfig::parse("kill,pause,partition", 0.1, &[]).unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink_got = got.clone();
        let cancel = CancellationToken::new();
        let task = run_nemesis(
            config,
            7,
            Arc::new(InstantCluster),
            1,
            cancel.clone(),
            move |e: Event| {
                let got = sink_got.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(3)).await;
                    got.lock().unwrap().push(e);
                }
            },
        );
        tokio::time::sleep(Duration::from_millis(1500)).await;
        cancel.cancel();
        let summary = task.await.unwrap();
        let got = got.lock().unwrap();
        let planned = summary["faults"]["planned"].as_u64().unwrap() as usize;
        let heals = summary["heals"].as_u64().unwrap() as usize;
        assert!(planned >= 10, "too few faults to flood the queue: {summary}");
        assert_eq!(summary["faults"]["failed"], 0);
        // Each start and each stop is an invoke and an info.
        assert_eq!(got.len(), 2 * (planned + heals), "{summary}");
        let starts = got.iter().filter(|e| e.f.starts_with("start-")).count();
        let stops = got.iter().filter(|e| e.f.starts_with("stop-")).count();
        assert_eq!((starts, stops), (2 * planned, 2 * heals));
    }
}
