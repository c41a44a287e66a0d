//! A fake cluster for unit tests: records every script per node, answers success, and can
//! be told to fail a node or name a leader.

use std::sync::Mutex;
use std::time::Duration;

use crate::cluster::{BoxFuture, Cluster, Output, RemoteError};

pub struct FakeCluster {
    pub nodes: Vec<String>,
    pub leader: Option<String>,
    /// Scripts run on these nodes exit 1.
    pub failing: Vec<String>,
    pub log: Mutex<Vec<(String, String)>>,
}

impl FakeCluster {
    pub fn new(n: usize) -> Self {
        FakeCluster {
            nodes: (1..=n).map(|i| format!("n{i}")).collect(),
            leader: None,
            failing: Vec::new(),
            log: Mutex::new(Vec::new()),
        }
    }

    pub fn scripts(&self) -> Vec<(String, String)> {
        self.log.lock().unwrap().clone()
    }

    /// Scripts on `node` that contain `needle`.
    pub fn count(&self, node: &str, needle: &str) -> usize {
        self.scripts()
            .iter()
            .filter(|(n, s)| n == node && s.contains(needle))
            .count()
    }
}

impl Cluster for FakeCluster {
    fn nodes(&self) -> Vec<String> {
        self.nodes.clone()
    }

    fn address(&self, node: &str) -> Option<String> {
        let i = self.nodes.iter().position(|n| n == node)?;
        Some(format!("10.77.0.{}", i + 2))
    }

    fn run<'a>(
        &'a self,
        node: &'a str,
        script: &'a str,
        _t: Duration,
    ) -> BoxFuture<'a, Result<Output, RemoteError>> {
        Box::pin(async move {
            self.log
                .lock()
                .unwrap()
                .push((node.to_string(), script.to_string()));
            let status = if self.failing.iter().any(|n| n == node) {
                1
            } else {
                0
            };
            let stdout = if script.contains("netem: yes") {
                "netem: yes\n".into()
            } else {
                String::new()
            };
            Ok(Output {
                status: Some(status),
                stdout,
                stderr: if status == 0 {
                    String::new()
                } else {
                    "boom".into()
                },
            })
        })
    }

    fn leader(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(async move { self.leader.clone() })
    }

    fn start_command(&self, _node: &str) -> String {
        "setsid nohup /usr/local/bin/faultline node --config /var/lib/faultline/node/node.yaml >/dev/null 2>&1 &".into()
    }
}
