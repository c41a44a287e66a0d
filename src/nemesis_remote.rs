//! The nemesis's view of an inventory's hosts, for `faultline nemesis` and the nemesis of
//! `faultline test`: scripts run over `control`, the leader is asked of the nodes
//! themselves through their admin `status`.

use std::sync::Arc;
use std::time::Duration;

use faultline_nemesis::{BoxFuture, Cluster, HostPaths, Output, RemoteError};

use crate::control::Control;
use crate::db::Database;

use crate::db::STATUS_TIMEOUT;

pub struct InventoryCluster {
    pub control: Control,
    /// The database on the hosts: its pidfile, start command and status.
    pub db: Arc<dyn Database>,
    /// Replaces the database's start command (e.g. a node started another way).
    pub start_command: Option<String>,
}

impl Cluster for InventoryCluster {
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
    ) -> BoxFuture<'a, Result<Output, RemoteError>> {
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

    fn leader(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(crate::db::leader(&*self.db, STATUS_TIMEOUT))
    }

    fn start_command(&self, node: &str) -> String {
        self.start_command
            .clone()
            .unwrap_or_else(|| self.db.start_command(node))
    }

    fn remove_member<'a>(&'a self, node: &'a str) -> BoxFuture<'a, faultline_nemesis::Result<()>> {
        Box::pin(async move {
            self.db.remove_member(node).await.map_err(|e| match e {
                crate::db::DbError::Unsupported(m) => faultline_nemesis::NemesisError::Unsupported(m),
                other => faultline_nemesis::NemesisError::Remote { node: node.to_string(), message: other.to_string() },
            })
        })
    }

    fn join_command(&self, node: &str) -> Option<String> {
        // A start command given instead of the database's has no joining form.
        if self.start_command.is_some() {
            return None;
        }
        self.db.join_command(node)
    }

    fn paths(&self) -> HostPaths {
        HostPaths {
            pidfile: self.db.layout().pidfile(),
            state: self.db.state_paths(),
            ..HostPaths::default()
        }
    }
}
