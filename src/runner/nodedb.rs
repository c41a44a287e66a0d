//! The bundled node as the runner sees it: clients and status over the node's client
//! protocol, and the run's nemesis.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use faultline_checkers::Event;
use faultline_nemesis::{Cluster, Executor, NemesisConfig};
use faultline_node::client::{Client, ClientError};
use faultline_node::kv::Value as NodeValue;
use faultline_node::protocol::WireError;
use faultline_workloads::{Kv, KvError};
use futures::future::BoxFuture;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Db;
use super::history::Recorder;
use crate::deploy::{self, Layout};
use crate::inventory::Inventory;

/// Nemesis events waiting to be recorded; the nemesis emits a few per fault.
const NEMESIS_EVENTS_QUEUE_MAX: usize = 1024;

pub struct NodeDb {
    nodes: Vec<(String, String)>,
    op_timeout: Duration,
    /// One status connection per node, reused by the monitor.
    status: Vec<tokio::sync::Mutex<Option<Client>>>,
}

impl NodeDb {
    pub fn new(inventory: &Inventory, layout: &Layout, op_timeout: Duration) -> NodeDb {
        let nodes: Vec<(String, String)> = inventory
            .nodes
            .iter()
            .map(|n| (n.name.clone(), deploy::socket_addr(&n.host, layout.client_port)))
            .collect();
        let status = nodes.iter().map(|_| tokio::sync::Mutex::new(None)).collect();
        NodeDb {
            nodes,
            op_timeout,
            status,
        }
    }

    fn index(&self, node: &str) -> Option<usize> {
        self.nodes.iter().position(|(n, _)| n == node)
    }
}

impl Db for NodeDb {
    fn nodes(&self) -> Vec<String> {
        self.nodes.iter().map(|(n, _)| n.clone()).collect()
    }

    fn client(&self, node: &str, _client_id: u64) -> Box<dyn Kv> {
        let addr = self
            .index(node)
            .map(|i| self.nodes[i].1.clone())
            .unwrap_or_default();
        Box::new(NodeKv {
            addr,
            client: None,
            timeout: self.op_timeout,
        })
    }

    fn status<'a>(&'a self, node: &'a str) -> BoxFuture<'a, Result<Value, String>> {
        Box::pin(async move {
            let i = self.index(node).ok_or_else(|| format!("unknown node {node}"))?;
            let mut slot = self.status[i].lock().await;
            // Out of the slot while in use: a caller's timeout that drops this future
            // mid-request leaves no connection in an unknown state behind.
            let mut c = match slot.take() {
                Some(c) => c,
                None => {
                    let mut c = Client::connect(&self.nodes[i].1, STATUS_TIMEOUT)
                        .await
                        .map_err(|e| e.to_string())?;
                    c.set_follow_leader(false);
                    c
                }
            };
            let s = c.status().await.map_err(|e| e.to_string())?;
            *slot = Some(c);
            Ok(s.to_json())
        })
    }
}

const STATUS_TIMEOUT: Duration = Duration::from_millis(500);

/// A worker's connection: opened on first use, so a node that is down costs a definite
/// connect failure rather than a stuck worker. Follows not-leader redirects.
struct NodeKv {
    addr: String,
    client: Option<Client>,
    timeout: Duration,
}

fn kv_error(e: ClientError) -> KvError {
    // The checkers rely on exactly `cas-mismatch` for an executed compare that failed.
    let msg = match &e {
        ClientError::Server(WireError::CasMismatch { .. }) => e.tag().to_string(),
        _ => format!("{}: {e}", e.tag()),
    };
    if e.is_definite() {
        KvError::Definite(msg)
    } else {
        KvError::Indefinite(msg)
    }
}

fn node_value(v: &Value) -> Result<NodeValue, KvError> {
    NodeValue::from_json(v)
        .ok_or_else(|| KvError::Definite(format!("bad-request: {v} has no node value form")))
}

impl NodeKv {
    async fn client(&mut self) -> Result<&mut Client, KvError> {
        if self.client.is_none() {
            self.client = Some(
                Client::connect(&self.addr, self.timeout)
                    .await
                    .map_err(kv_error)?,
            );
        }
        Ok(self.client.as_mut().expect("connected above"))
    }
}

impl Kv for NodeKv {
    fn read<'a>(&'a mut self, key: &'a str) -> BoxFuture<'a, Result<Value, KvError>> {
        Box::pin(async move {
            let v = self.client().await?.read(key).await.map_err(kv_error)?;
            Ok(v.map(|v| v.to_json()).unwrap_or(Value::Null))
        })
    }
    fn write<'a>(&'a mut self, key: &'a str, value: Value) -> BoxFuture<'a, Result<(), KvError>> {
        Box::pin(async move {
            let v = node_value(&value)?;
            self.client().await?.write(key, v).await.map_err(kv_error)
        })
    }
    fn cas<'a>(&'a mut self, key: &'a str, from: Value, to: Value) -> BoxFuture<'a, Result<(), KvError>> {
        Box::pin(async move {
            let (from, to) = (node_value(&from)?, node_value(&to)?);
            self.client().await?.cas(key, from, to).await.map_err(kv_error)
        })
    }
    fn append<'a>(&'a mut self, key: &'a str, elem: Value) -> BoxFuture<'a, Result<(), KvError>> {
        Box::pin(async move {
            let v = node_value(&elem)?;
            self.client().await?.append(key, v).await.map_err(kv_error)
        })
    }
}

/// Waits until every node answers `status` and they agree on a leader.
pub async fn wait_ready(db: &dyn Db, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let polls = db.nodes().into_iter().map(|n| async move {
            let r = tokio::time::timeout(Duration::from_secs(1), db.status(&n)).await;
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
