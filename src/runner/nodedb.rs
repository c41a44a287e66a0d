//! The bundled node as the runner sees it: clients and status over the node's client
//! protocol, and the nemesis's view of the hosts over `control`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use faultline_checkers::Event;
use faultline_nemesis::{Cluster, Executor, NemesisConfig, Output, RemoteError};
use faultline_workloads::{Kv, KvError};
use futures::future::BoxFuture;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Db;
use super::history::Recorder;
use crate::control::Control;
use crate::deploy::{self, Layout};
use crate::inventory::Inventory;

/// Nemesis events waiting to be recorded; the nemesis emits a few per fault.
const NEMESIS_EVENTS_QUEUE_MAX: usize = 1024;

pub struct NodeDb {
    nodes: Vec<(String, String)>,
    op_timeout: Duration,
}

impl NodeDb {
    pub fn new(inventory: &Inventory, layout: &Layout, op_timeout: Duration) -> NodeDb {
        let nodes = inventory
            .nodes
            .iter()
            .map(|n| (n.name.clone(), format!("{}:{}", n.host, layout.client_port)))
            .collect();
        NodeDb { nodes, op_timeout }
    }

    fn addr(&self, node: &str) -> String {
        self.nodes
            .iter()
            .find(|(n, _)| n == node)
            .map(|(_, a)| a.clone())
            .unwrap_or_default()
    }
}

impl Db for NodeDb {
    fn nodes(&self) -> Vec<String> {
        self.nodes.iter().map(|(n, _)| n.clone()).collect()
    }

    fn client(&self, node: &str, client_id: u64) -> Box<dyn Kv> {
        Box::new(NodeKv {
            addr: self.addr(node),
            client_id,
            timeout: self.op_timeout,
        })
    }

    fn status<'a>(&'a self, node: &'a str) -> BoxFuture<'a, Result<Value, String>> {
        let addr = self.addr(node);
        Box::pin(async move { Err(format!("status of {addr}: node client not linked")) })
    }
}

struct NodeKv {
    addr: String,
    client_id: u64,
    timeout: Duration,
}

impl NodeKv {
    fn unavailable<T: Send + 'static>(&self) -> BoxFuture<'static, Result<T, KvError>> {
        let msg = format!(
            "client {} to {} ({} ms): node client not linked",
            self.client_id,
            self.addr,
            self.timeout.as_millis()
        );
        Box::pin(async move { Err(KvError::Definite(msg)) })
    }
}

impl Kv for NodeKv {
    fn read<'a>(&'a mut self, _key: &'a str) -> BoxFuture<'a, Result<Value, KvError>> {
        self.unavailable()
    }
    fn write<'a>(&'a mut self, _key: &'a str, _value: Value) -> BoxFuture<'a, Result<(), KvError>> {
        self.unavailable()
    }
    fn cas<'a>(&'a mut self, _key: &'a str, _from: Value, _to: Value) -> BoxFuture<'a, Result<(), KvError>> {
        self.unavailable()
    }
    fn append<'a>(&'a mut self, _key: &'a str, _elem: Value) -> BoxFuture<'a, Result<(), KvError>> {
        self.unavailable()
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

/// The hosts as the nemesis sees them.
pub struct ControlCluster {
    control: Control,
    layout: Layout,
    sets: Vec<(String, String)>,
    db: Option<Arc<dyn Db>>,
}

pub fn nemesis_cluster(control: &Control, layout: &Layout, sets: &[(String, String)]) -> Arc<ControlCluster> {
    Arc::new(ControlCluster {
        control: control.clone(),
        layout: layout.clone(),
        sets: sets.to_vec(),
        db: None,
    })
}

impl ControlCluster {
    pub fn with_db(&self, db: Arc<dyn Db>) -> Arc<ControlCluster> {
        Arc::new(ControlCluster {
            control: self.control.clone(),
            layout: self.layout.clone(),
            sets: self.sets.clone(),
            db: Some(db),
        })
    }
}

impl Cluster for ControlCluster {
    fn nodes(&self) -> Vec<String> {
        self.control.node_names()
    }

    fn address(&self, node: &str) -> Option<String> {
        self.control.inventory().node(node).map(|n| n.host.clone())
    }

    fn run<'a>(
        &'a self,
        node: &'a str,
        script: &'a str,
        timeout: Duration,
    ) -> faultline_nemesis::BoxFuture<'a, Result<Output, RemoteError>> {
        Box::pin(async move {
            match self.control.run(node, script, timeout).await {
                Ok(o) => Ok(Output {
                    status: o.status,
                    stdout: o.stdout_str(),
                    stderr: o.stderr_str(),
                }),
                Err(e) => Err(RemoteError(e.to_string())),
            }
        })
    }

    fn leader(&self) -> faultline_nemesis::BoxFuture<'_, Option<String>> {
        Box::pin(async move {
            let db = self.db.as_ref()?;
            for n in db.nodes() {
                if let Ok(Ok(v)) = tokio::time::timeout(Duration::from_millis(500), db.status(&n)).await
                    && let Some(l) = v.get("leader").and_then(Value::as_str)
                {
                    return Some(l.to_string());
                }
            }
            None
        })
    }

    fn start_command(&self, _node: &str) -> String {
        deploy::start_command(&self.layout, &self.sets)
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
