//! The nemesis's view of an inventory's hosts, for `faultline nemesis` and the nemesis of
//! `faultline test`: scripts run over `control`, the leader is asked of the nodes
//! themselves through their admin `status`.

use std::time::Duration;

use faultline_nemesis::{BoxFuture, Cluster, HostPaths, Output, RemoteError};

use crate::control::Control;
use crate::deploy::{self, Layout};

/// Bound on asking one node for its status.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

pub struct InventoryCluster {
    pub control: Control,
    pub layout: Layout,
    /// Replaces the deployed node's start command (e.g. a node started another way).
    pub start_command: Option<String>,
}

impl InventoryCluster {
    fn client_addr(&self, node: &str) -> Option<String> {
        let host = &self.control.inventory().node(node)?.host;
        Some(deploy::socket_addr(host, self.layout.client_port))
    }
}

/// The leader by the nodes' own word: a node that says it is leader wins (the highest term
/// if several do, as after a partition heals); otherwise the leader most nodes name.
pub fn pick_leader(answers: &[(String, faultline_node::protocol::NodeStatus)]) -> Option<String> {
    if let Some((node, _)) = answers
        .iter()
        .filter(|(_, s)| s.role == "leader")
        .max_by_key(|(_, s)| s.term)
    {
        return Some(node.clone());
    }
    let mut votes: std::collections::BTreeMap<&str, usize> = Default::default();
    for (_, s) in answers {
        if let Some(l) = &s.leader {
            *votes.entry(l.as_str()).or_default() += 1;
        }
    }
    votes
        .into_iter()
        .max_by_key(|(_, c)| *c)
        .map(|(l, _)| l.to_string())
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
        Box::pin(async move {
            let asks = self.nodes().into_iter().map(|n| async move {
                let addr = self.client_addr(&n)?;
                let ask = async {
                    let mut c = faultline_node::client::Client::connect(&addr, STATUS_TIMEOUT)
                        .await
                        .ok()?;
                    c.set_follow_leader(false);
                    c.status().await.ok()
                };
                let s = tokio::time::timeout(STATUS_TIMEOUT, ask)
                    .await
                    .ok()
                    .flatten()?;
                Some((n, s))
            });
            let answers: Vec<_> = futures::future::join_all(asks)
                .await
                .into_iter()
                .flatten()
                .collect();
            pick_leader(&answers)
        })
    }

    fn start_command(&self, _node: &str) -> String {
        self.start_command
            .clone()
            .unwrap_or_else(|| deploy::start_command(&self.layout, &[]))
    }

    fn paths(&self) -> HostPaths {
        HostPaths {
            pidfile: self.layout.pidfile(),
            ..HostPaths::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_node::protocol::NodeStatus;

    fn st(id: &str, role: &str, term: u64, leader: Option<&str>) -> (String, NodeStatus) {
        (
            id.to_string(),
            NodeStatus {
                id: id.into(),
                algo: "raft".into(),
                role: role.into(),
                term,
                leader: leader.map(str::to_string),
                commit_index: 0,
                applied_index: 0,
                last_index: 0,
                snapshot_index: 0,
                leader_elections_won: 0,
                pid: 1,
            },
        )
    }

    #[test]
    fn nemesis_leader_is_the_self_declared_leader_of_the_highest_term() {
        // A deposed leader behind a partition still believes it leads, in an older term.
        let answers = vec![
            st("n1", "leader", 3, Some("n1")),
            st("n2", "follower", 5, Some("n3")),
            st("n3", "leader", 5, Some("n3")),
        ];
        assert_eq!(pick_leader(&answers).as_deref(), Some("n3"));
    }

    #[test]
    fn nemesis_leader_falls_back_to_what_most_nodes_name() {
        // The leader itself did not answer.
        let answers = vec![
            st("n1", "follower", 4, Some("n2")),
            st("n3", "follower", 4, Some("n2")),
            st("n4", "candidate", 5, None),
        ];
        assert_eq!(pick_leader(&answers).as_deref(), Some("n2"));
        assert_eq!(pick_leader(&[st("n1", "candidate", 2, None)]), None);
    }
}
