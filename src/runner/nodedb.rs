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
use serde_json::{Value, json};
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
