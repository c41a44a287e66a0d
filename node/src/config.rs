//! The node's configuration: `faultline node --config node.yaml [--set KEY=VALUE]...`.
//!
//! Raw YAML is parsed strictly (unknown fields are errors, with line and column), overrides
//! are applied, then [`Config::validate`] checks cross-field rules, so a node never starts on
//! a silently defaulted or contradictory configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::replica::{NodeId, ReplicaConfig};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("--set {arg}: {message}")]
    Override { arg: String, message: String },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algo {
    Raft,
    Paxos,
}

impl Algo {
    pub fn as_str(self) -> &'static str {
        match self {
            Algo::Raft => "raft",
            Algo::Paxos => "paxos",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    pub id: String,
    /// Where clients reach this node (also handed to clients in not-leader redirects).
    pub client_addr: String,
    pub peer_addr: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This node's id, e.g. "n1"; must appear in `peers` or is added from the listen addresses.
    pub id: String,
    #[serde(default = "default_algo")]
    pub algo: Algo,
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default = "default_listen_client")]
    pub listen_client: String,
    #[serde(default = "default_listen_peer")]
    pub listen_peer: String,
    /// Every member of the cluster (this node may be listed too).
    #[serde(default)]
    pub peers: Vec<Peer>,
    #[serde(default = "default_tick_ms")]
    pub tick_ms: u64,
    #[serde(default = "default_election_min")]
    pub election_timeout_ms_min: u64,
    #[serde(default = "default_election_max")]
    pub election_timeout_ms_max: u64,
    #[serde(default = "default_heartbeat")]
    pub heartbeat_ms: u64,
    /// Commands per proposal batch and entries per append message.
    #[serde(default = "default_batch_max")]
    pub batch_max: usize,
    /// Append messages in flight per follower (pipelining depth).
    #[serde(default = "default_inflight")]
    pub max_inflight_msgs: usize,
    #[serde(default = "default_true")]
    pub fsync: bool,
    #[serde(default = "default_true")]
    pub prevote: bool,
    #[serde(default = "default_true")]
    pub check_quorum: bool,
    /// Snapshot the state machine and compact the log after this many applied entries.
    #[serde(default = "default_snapshot_entries")]
    pub snapshot_entries: u64,
    /// How long a client request may wait for its outcome before answering `Timeout`.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_ms: u64,
    /// PLANTED BUG: serve reads from local state without confirming leadership.
    #[serde(default)]
    pub unsafe_local_reads: bool,
    /// PLANTED BUG: never fsync the WAL, even when `fsync` is on.
    #[serde(default)]
    pub unsafe_no_fsync: bool,
    /// `tracing` filter for the node's log file, e.g. "info" or "faultline_node=debug".
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// Rotate the log file at this size; three old files are kept.
    #[serde(default = "default_log_max_bytes")]
    pub log_max_bytes: u64,
}

fn default_algo() -> Algo {
    Algo::Raft
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/faultline/node")
}
fn default_listen_client() -> String {
    "0.0.0.0:7000".into()
}
fn default_listen_peer() -> String {
    "0.0.0.0:7001".into()
}
fn default_tick_ms() -> u64 {
    10
}
fn default_election_min() -> u64 {
    300
}
fn default_election_max() -> u64 {
    600
}
fn default_heartbeat() -> u64 {
    50
}
fn default_batch_max() -> usize {
    256
}
fn default_inflight() -> usize {
    64
}
fn default_true() -> bool {
    true
}
fn default_snapshot_entries() -> u64 {
    10_000
}
fn default_request_timeout() -> u64 {
    5_000
}
fn default_log_level() -> String {
    "info".into()
}
fn default_log_max_bytes() -> u64 {
    16 << 20
}

/// Knob names `--set` accepts, for the error message.
const KNOBS: &[&str] = &[
    "id",
    "algo",
    "data_dir",
    "listen_client",
    "listen_peer",
    "peers",
    "tick_ms",
    "election_timeout_ms_min",
    "election_timeout_ms_max",
    "heartbeat_ms",
    "batch_max",
    "max_inflight_msgs",
    "fsync",
    "prevote",
    "check_quorum",
    "snapshot_entries",
    "request_timeout_ms",
    "unsafe_local_reads",
    "unsafe_no_fsync",
    "log_level",
    "log_max_bytes",
];

impl Config {
    /// Reads, parses, applies `overrides` (`KEY=VALUE`) and validates.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        let mut cfg = Config::parse(&text, path)?;
        cfg.apply_overrides(overrides)?;
        cfg.validate(&path.display().to_string())?;
        Ok(cfg)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        serde_saphyr::from_str::<Config>(text)
            .map_err(|e| ConfigError::Parse { path: path.into(), message: e.to_string() })
    }

    /// `VALUE` is read as JSON when it parses as such (numbers, booleans, lists), else as a
    /// plain string.
    pub fn apply_overrides(&mut self, overrides: &[String]) -> Result<(), ConfigError> {
        for arg in overrides {
            let err = |message: String| ConfigError::Override { arg: arg.clone(), message };
            let (key, value) = arg.split_once('=').ok_or_else(|| err("expected KEY=VALUE".into()))?;
            if !KNOBS.contains(&key) {
                return Err(err(format!("unknown knob `{key}`; known: {}", KNOBS.join(", "))));
            }
            let value: serde_json::Value =
                serde_json::from_str(value).unwrap_or_else(|_| serde_json::Value::String(value.to_string()));
            let mut tree = serde_json::to_value(&*self).expect("config serializes");
            tree[key] = value;
            *self = serde_json::from_value(tree).map_err(|e| err(e.to_string()))?;
        }
        Ok(())
    }

    /// Cross-field checks; `origin` names the file in messages.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let bad = |message: String| Err(ConfigError::Invalid { path: origin.to_string(), message });
        if self.id.is_empty() {
            return bad("id must not be empty".into());
        }
        for (name, addr) in [("listen_client", &self.listen_client), ("listen_peer", &self.listen_peer)] {
            if addr.parse::<SocketAddr>().is_err() {
                return bad(format!("{name}: `{addr}` is not an IP:port address"));
            }
        }
        let mut ids: Vec<&str> = self.peers.iter().map(|p| p.id.as_str()).collect();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return bad(format!("peers: id `{}` listed twice", w[0]));
        }
        if !self.peers.is_empty() && !self.peers.iter().any(|p| p.id == self.id) {
            return bad(format!("peers must include this node (`{}`)", self.id));
        }
        if self.tick_ms == 0 || self.tick_ms > 1000 {
            return bad("tick_ms must be in 1..=1000".into());
        }
        if self.heartbeat_ms < self.tick_ms {
            return bad(format!("heartbeat_ms ({}) must be at least tick_ms ({})", self.heartbeat_ms, self.tick_ms));
        }
        if self.election_timeout_ms_min <= self.heartbeat_ms {
            return bad("election_timeout_ms_min must exceed heartbeat_ms".into());
        }
        if self.election_timeout_ms_max < self.election_timeout_ms_min {
            return bad("election_timeout_ms_max must be >= election_timeout_ms_min".into());
        }
        if self.batch_max == 0 || self.batch_max > 65_536 {
            return bad("batch_max must be in 1..=65536".into());
        }
        if self.max_inflight_msgs == 0 || self.max_inflight_msgs > 4096 {
            return bad("max_inflight_msgs must be in 1..=4096".into());
        }
        if self.snapshot_entries < 16 {
            return bad("snapshot_entries must be at least 16".into());
        }
        if self.request_timeout_ms == 0 {
            return bad("request_timeout_ms must be positive".into());
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log_level).is_err() {
            return bad(format!("log_level: `{}` is not a valid filter", self.log_level));
        }
        Ok(())
    }

    /// All members, sorted by id; a node's [`NodeId`] is its position + 1 here, so every
    /// member derives the same mapping from the same peer list.
    pub fn members(&self) -> Vec<Peer> {
        let mut m = self.peers.clone();
        if m.is_empty() {
            m.push(Peer { id: self.id.clone(), client_addr: self.listen_client.clone(), peer_addr: self.listen_peer.clone() });
        }
        m.sort_by(|a, b| a.id.cmp(&b.id));
        m
    }

    pub fn node_id_of(&self, id: &str) -> Option<NodeId> {
        self.members().iter().position(|p| p.id == id).map(|i| i as NodeId + 1)
    }

    /// Whether the WAL is actually fsynced.
    pub fn effective_fsync(&self) -> bool {
        self.fsync && !self.unsafe_no_fsync
    }

    /// The protocol knobs in ticks, identical for Raft and Multi-Paxos.
    pub fn replica_config(&self, seed: u64) -> ReplicaConfig {
        let ticks = |ms: u64| ms.div_ceil(self.tick_ms).max(1) as u32;
        let members: Vec<NodeId> = (1..=self.members().len() as NodeId).collect();
        let mut heartbeat = ticks(self.heartbeat_ms);
        let min = ticks(self.election_timeout_ms_min);
        if heartbeat >= min {
            heartbeat = min.saturating_sub(1).max(1);
        }
        ReplicaConfig {
            id: self.node_id_of(&self.id).expect("validated: self is a member"),
            members,
            election_ticks_min: min.max(2),
            election_ticks_max: ticks(self.election_timeout_ms_max).max(min.max(2)),
            heartbeat_ticks: heartbeat,
            batch_max: self.batch_max,
            max_inflight_msgs: self.max_inflight_msgs,
            prevote: self.prevote,
            check_quorum: self.check_quorum,
            seed,
        }
    }

    /// A minimal configuration for tools and tests.
    pub fn minimal(id: &str, data_dir: PathBuf) -> Config {
        let yaml = format!("id: {id}\n");
        let mut c = Config::parse(&yaml, Path::new("<built-in>")).expect("minimal config parses");
        c.data_dir = data_dir;
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_errors_with_a_position() {
        let e = Config::parse("id: n1\nbatch_mx: 3\n", Path::new("n.yaml")).unwrap_err().to_string();
        assert!(e.contains("n.yaml") && e.contains("batch_mx"), "{e}");
        assert!(e.contains('2'), "names the line: {e}");
    }

    #[test]
    fn overrides_apply_and_are_checked() {
        let mut c = Config::minimal("n1", "/tmp/x".into());
        c.apply_overrides(&["batch_max=7".into(), "algo=paxos".into(), "fsync=false".into()]).unwrap();
        assert_eq!((c.batch_max, c.algo, c.fsync), (7, Algo::Paxos, false));
        assert!(c.apply_overrides(&["nope=1".into()]).unwrap_err().to_string().contains("unknown knob"));
        assert!(c.apply_overrides(&["batch_max=lots".into()]).is_err());
        c.heartbeat_ms = 5000;
        assert!(c.validate("x").is_err());
    }

    #[test]
    fn members_are_sorted_and_ids_derived_from_position() {
        let yaml = "id: n2\npeers:\n  - {id: n3, client_addr: 127.0.0.1:3, peer_addr: 127.0.0.1:4}\n  - {id: n1, client_addr: 127.0.0.1:1, peer_addr: 127.0.0.1:2}\n  - {id: n2, client_addr: 127.0.0.1:5, peer_addr: 127.0.0.1:6}\n";
        let c = Config::parse(yaml, Path::new("t")).unwrap();
        c.validate("t").unwrap();
        assert_eq!(c.node_id_of("n2"), Some(2));
        let rc = c.replica_config(1);
        assert_eq!(rc.members, vec![1, 2, 3]);
        assert_eq!((rc.election_ticks_min, rc.election_ticks_max, rc.heartbeat_ticks), (30, 60, 5));
        rc.validate().unwrap();
    }
}
