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
    #[error("--set {arg:?}: expected KEY=VALUE")]
    NotKeyValue { arg: String },
    #[error("unknown knob {knob:?}{}", match suggestion {
        Some(s) => format!(" (did you mean {s:?}?)"),
        None => format!(" (known knobs: {})", knob_names().collect::<Vec<_>>().join(", ")),
    })]
    UnknownKnob { knob: String, suggestion: Option<&'static str> },
    #[error("{knob}={value}: expected {expected}")]
    BadValue { knob: &'static str, value: String, expected: &'static str },
    /// A knob fixed by where the node is installed (ports, paths, membership): the controller
    /// derives it from its layout per host, so overriding it per run would desynchronise the
    /// two (e.g. the controller would look for the pidfile in the old data directory).
    #[error("{knob:?} is per-host layout and cannot be changed per run")]
    LayoutKnob { knob: &'static str },
    #[error("{origin}: {knob}: {message}")]
    Invalid { origin: String, knob: &'static str, message: String },
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
    /// The consensus id, fixed for the node's life. Either every peer has one or none does;
    /// without them ids are positions in the sorted list, which is stable only while the list
    /// is, so a cluster whose membership changes must give them (the controller always does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<u64>,
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
    /// Every node this one can reach at start (this node may be listed too). Nodes added to
    /// the cluster later introduce themselves when they connect.
    #[serde(default)]
    pub peers: Vec<Peer>,
    /// The voting members of a cluster that has never run (empty: every peer). A node not
    /// among them starts as a joiner: it votes and counts for nothing until a leader adds it
    /// and it has caught up. Once the log holds a configuration, the log wins.
    #[serde(default)]
    pub voters: Vec<String>,
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
    /// A client connection with no request for this long is closed, so leaked or abandoned
    /// connections cannot hold the connection slots forever.
    #[serde(default = "default_client_idle_timeout")]
    pub client_idle_timeout_ms: u64,
    /// Client connections served at once (besides the status reserve).
    #[serde(default = "default_max_client_connections")]
    pub max_client_connections: usize,
    /// Extra connection slots that only answer status requests, so the controller and the
    /// nemesis can still find the leader when ordinary clients hold every other slot.
    #[serde(default = "default_status_reserved_connections")]
    pub status_reserved_connections: usize,
    /// PLANTED BUG: serve reads from local state without confirming leadership.
    #[serde(default)]
    pub unsafe_local_reads: bool,
    /// PLANTED BUG: never fsync the WAL, even when `fsync` is on.
    #[serde(default)]
    pub unsafe_no_fsync: bool,
    /// PLANTED BUG: apply a transaction's micro-ops as separate log entries, one after the
    /// other, so other clients can observe (and interleave with) half of a transaction.
    #[serde(default)]
    pub unsafe_txn_split: bool,
    /// PLANTED BUG: accept a peer that came back with a new incarnation (it lost its durable
    /// state) as if it were the old member.
    #[serde(default)]
    pub unsafe_rejoin_empty: bool,
    /// When this node is not among `voters`, ask the cluster to add it as a learner and to
    /// promote it once caught up, instead of waiting for an operator's `Member` requests.
    /// The membership nemesis starts a wiped node this way, so the journaled undo of a
    /// removal (start the node again) heals on its own.
    #[serde(default)]
    pub join: bool,
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
fn default_client_idle_timeout() -> u64 {
    30_000
}
fn default_max_client_connections() -> usize {
    4096
}
fn default_status_reserved_connections() -> usize {
    16
}
fn default_log_level() -> String {
    "info".into()
}
fn default_log_max_bytes() -> u64 {
    16 << 20
}

/// What a knob's value must look like on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Integer,
    Bool,
    Text,
    Algo,
    /// A JSON list of `{id, client_addr, peer_addr}` objects.
    Peers,
    /// A JSON list of node names.
    Names,
}

impl Kind {
    fn expected(self) -> &'static str {
        match self {
            Kind::Integer => "an integer",
            Kind::Bool => "true or false",
            Kind::Text => "a string",
            Kind::Algo => "raft or paxos",
            Kind::Peers => "a JSON list of {id, client_addr, peer_addr} objects",
            Kind::Names => "a JSON list of node names",
        }
    }
}

/// Every knob `--set` accepts, in `Config` field order.
const KNOBS: &[(&str, Kind)] = &[
    ("id", Kind::Text),
    ("algo", Kind::Algo),
    ("data_dir", Kind::Text),
    ("listen_client", Kind::Text),
    ("listen_peer", Kind::Text),
    ("peers", Kind::Peers),
    ("voters", Kind::Names),
    ("tick_ms", Kind::Integer),
    ("election_timeout_ms_min", Kind::Integer),
    ("election_timeout_ms_max", Kind::Integer),
    ("heartbeat_ms", Kind::Integer),
    ("batch_max", Kind::Integer),
    ("max_inflight_msgs", Kind::Integer),
    ("fsync", Kind::Bool),
    ("prevote", Kind::Bool),
    ("check_quorum", Kind::Bool),
    ("snapshot_entries", Kind::Integer),
    ("request_timeout_ms", Kind::Integer),
    ("client_idle_timeout_ms", Kind::Integer),
    ("max_client_connections", Kind::Integer),
    ("status_reserved_connections", Kind::Integer),
    ("unsafe_local_reads", Kind::Bool),
    ("unsafe_no_fsync", Kind::Bool),
    ("unsafe_txn_split", Kind::Bool),
    ("unsafe_rejoin_empty", Kind::Bool),
    ("join", Kind::Bool),
    ("log_level", Kind::Text),
    ("log_max_bytes", Kind::Integer),
];

/// Knobs that describe where a node is installed rather than how it behaves. The controller
/// writes them into each host's node.yaml from its layout (and finds the pidfile and logs
/// under `data_dir`), so `--node-opt` must not change them per run.
pub const LAYOUT_KNOBS: &[&str] = &["id", "data_dir", "listen_client", "listen_peer", "peers", "voters"];

fn knob_names() -> impl Iterator<Item = &'static str> {
    KNOBS.iter().map(|(n, _)| *n)
}

/// `-` and `_` are interchangeable because people type both on a command line.
fn normalize(name: &str) -> String {
    name.trim().replace('-', "_")
}

/// The canonical spelling of a knob (`election-timeout-ms-min` → `election_timeout_ms_min`),
/// or an error naming the closest known knob.
pub fn canonical_knob(name: &str) -> Result<&'static str, ConfigError> {
    let n = normalize(name);
    if let Some(&(k, _)) = KNOBS.iter().find(|(k, _)| *k == n) {
        return Ok(k);
    }
    let suggestion = knob_names()
        .map(|k| (edit_distance(&n, k), k))
        .min()
        .filter(|&(d, k)| d <= (k.len() / 3).max(2))
        .map(|(_, k)| k);
    Err(ConfigError::UnknownKnob { knob: name.to_string(), suggestion })
}

/// Whether `name` (either spelling) is a per-host layout knob; unknown names are not.
pub fn is_layout_knob(name: &str) -> bool {
    canonical_knob(name).is_ok_and(|k| LAYOUT_KNOBS.contains(&k))
}

/// Levenshtein distance, for "did you mean" suggestions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != cb)).min(row[j] + 1).min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// Parses one knob's value by the knob's declared type, so a bad value is reported as
/// `knob=value: expected <type>` instead of a serde message.
fn parse_value(knob: &'static str, kind: Kind, raw: &str) -> Result<serde_json::Value, ConfigError> {
    let bad = || ConfigError::BadValue { knob, value: raw.to_string(), expected: kind.expected() };
    let v = raw.trim();
    Ok(match kind {
        Kind::Integer => serde_json::Value::from(v.parse::<u64>().map_err(|_| bad())?),
        Kind::Bool => match v {
            "true" => true.into(),
            "false" => false.into(),
            _ => return Err(bad()),
        },
        Kind::Text => raw.into(),
        Kind::Algo => match v {
            "raft" | "paxos" => v.into(),
            _ => return Err(bad()),
        },
        Kind::Peers => {
            let list: Vec<Peer> = serde_json::from_str(v).map_err(|_| bad())?;
            serde_json::to_value(list).expect("peers serialize")
        }
        Kind::Names => {
            let list: Vec<String> = serde_json::from_str(v).map_err(|_| bad())?;
            serde_json::to_value(list).expect("names serialize")
        }
    })
}

/// Checks per-run node options (the controller's `--node-opt KEY=VALUE` pairs) before any
/// host is contacted: applies them to the built-in defaults and runs every validation rule.
/// Layout knobs are refused ([`LAYOUT_KNOBS`]). Returns the resolved configuration.
pub fn validate_overrides(pairs: &[(String, String)]) -> Result<Config, ConfigError> {
    validate_overrides_on(&Config::default(), pairs)
}

/// [`validate_overrides`] on top of `base` instead of the defaults.
pub fn validate_overrides_on(base: &Config, pairs: &[(String, String)]) -> Result<Config, ConfigError> {
    for (k, _) in pairs {
        let knob = canonical_knob(k)?;
        if LAYOUT_KNOBS.contains(&knob) {
            return Err(ConfigError::LayoutKnob { knob });
        }
    }
    let mut cfg = base.clone();
    cfg.apply_pairs(pairs)?;
    cfg.validate("--node-opt")?;
    Ok(cfg)
}

impl Default for Config {
    /// The defaults of every knob, for a single node named `n1` (what `--node-opt` values are
    /// checked against; the controller supplies the real id and layout per host).
    fn default() -> Config {
        Config::minimal("n1", default_data_dir())
    }
}

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

    /// Applies `KEY=VALUE` strings (split at the first `=`); see [`Config::apply_pairs`].
    pub fn apply_overrides(&mut self, overrides: &[String]) -> Result<(), ConfigError> {
        let pairs = overrides
            .iter()
            .map(|arg| {
                arg.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .ok_or_else(|| ConfigError::NotKeyValue { arg: arg.clone() })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.apply_pairs(&pairs)
    }

    /// Sets each knob (either spelling, `-` or `_`) from its command-line text, checked
    /// against the knob's type. Cross-field rules are left to [`Config::validate`].
    pub fn apply_pairs(&mut self, pairs: &[(String, String)]) -> Result<(), ConfigError> {
        let mut tree = serde_json::to_value(&*self).expect("config serializes");
        for (key, raw) in pairs {
            let knob = canonical_knob(key)?;
            let kind = KNOBS.iter().find(|(k, _)| *k == knob).expect("canonical").1;
            tree[knob] = parse_value(knob, kind, raw)?;
        }
        *self = serde_json::from_value(tree).map_err(|e| ConfigError::Invalid {
            origin: "--set".into(),
            knob: "config",
            message: e.to_string(),
        })?;
        Ok(())
    }

    /// Every knob with its resolved value, defaults included, keyed by canonical name (what
    /// the controller records in test.json so a run says exactly what the nodes ran with).
    pub fn knobs_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("config serializes")
    }

    /// Range and cross-field checks; `origin` names the file (or flag) in messages.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let bad = |knob: &'static str, message: String| {
            Err(ConfigError::Invalid { origin: origin.to_string(), knob, message })
        };
        if self.id.is_empty() {
            return bad("id", "must not be empty".into());
        }
        for (name, addr) in [("listen_client", &self.listen_client), ("listen_peer", &self.listen_peer)] {
            if addr.parse::<SocketAddr>().is_err() {
                return bad(name, format!("`{addr}` is not an IP:port address"));
            }
        }
        let mut ids: Vec<&str> = self.peers.iter().map(|p| p.id.as_str()).collect();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return bad("peers", format!("id `{}` listed twice", w[0]));
        }
        if !self.peers.is_empty() && !self.peers.iter().any(|p| p.id == self.id) {
            return bad("peers", format!("must include this node (`{}`)", self.id));
        }
        let numbered = self.peers.iter().filter(|p| p.node_id.is_some()).count();
        if numbered != 0 && numbered != self.peers.len() {
            return bad("peers", "either every peer has a node_id or none does".into());
        }
        let mut nums: Vec<u64> = self.peers.iter().filter_map(|p| p.node_id).collect();
        nums.sort_unstable();
        if nums.first() == Some(&0) {
            return bad("peers", "node_id 0 is reserved (ids start at 1)".into());
        }
        if let Some(w) = nums.windows(2).find(|w| w[0] == w[1]) {
            return bad("peers", format!("node_id {} given twice", w[0]));
        }
        let mut voters: Vec<&str> = self.voters.iter().map(String::as_str).collect();
        voters.sort_unstable();
        if let Some(w) = voters.windows(2).find(|w| w[0] == w[1]) {
            return bad("voters", format!("`{}` listed twice", w[0]));
        }
        let members = self.members();
        if let Some(v) = self.voters.iter().find(|v| !members.iter().any(|p| &p.id == *v)) {
            return bad("voters", format!("`{v}` is not in peers"));
        }
        if self.tick_ms == 0 || self.tick_ms > 1000 {
            return bad("tick_ms", format!("{} is not in 1..=1000", self.tick_ms));
        }
        if self.heartbeat_ms < self.tick_ms {
            return bad("heartbeat_ms", format!("{} must be at least tick_ms ({})", self.heartbeat_ms, self.tick_ms));
        }
        if self.election_timeout_ms_min <= self.heartbeat_ms {
            return bad(
                "election_timeout_ms_min",
                format!("{} must exceed heartbeat_ms ({})", self.election_timeout_ms_min, self.heartbeat_ms),
            );
        }
        if self.election_timeout_ms_max < self.election_timeout_ms_min {
            return bad(
                "election_timeout_ms_max",
                format!(
                    "{} must be >= election_timeout_ms_min ({})",
                    self.election_timeout_ms_max, self.election_timeout_ms_min
                ),
            );
        }
        if self.batch_max == 0 || self.batch_max > 65_536 {
            return bad("batch_max", format!("{} is not in 1..=65536", self.batch_max));
        }
        if self.max_inflight_msgs == 0 || self.max_inflight_msgs > 4096 {
            return bad("max_inflight_msgs", format!("{} is not in 1..=4096", self.max_inflight_msgs));
        }
        if self.snapshot_entries < 16 {
            return bad("snapshot_entries", format!("{} must be at least 16", self.snapshot_entries));
        }
        for (knob, v) in [
            ("request_timeout_ms", self.request_timeout_ms),
            ("client_idle_timeout_ms", self.client_idle_timeout_ms),
            ("max_client_connections", self.max_client_connections as u64),
            ("log_max_bytes", self.log_max_bytes),
        ] {
            if v == 0 {
                return bad(knob, "must be positive".into());
            }
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log_level).is_err() {
            return bad("log_level", format!("`{}` is not a valid filter", self.log_level));
        }
        Ok(())
    }

    /// All members, sorted by id; a node's [`NodeId`] is its position + 1 here, so every
    /// member derives the same mapping from the same peer list.
    pub fn members(&self) -> Vec<Peer> {
        let mut m = self.peers.clone();
        if m.is_empty() {
            m.push(Peer {
                id: self.id.clone(),
                client_addr: self.listen_client.clone(),
                peer_addr: self.listen_peer.clone(),
                node_id: None,
            });
        }
        m.sort_by(|a, b| a.id.cmp(&b.id));
        m
    }

    /// Every peer with its consensus id: the given `node_id`s, or else positions + 1 in the
    /// sorted list.
    pub fn numbered(&self) -> Vec<(NodeId, Peer)> {
        self.members()
            .into_iter()
            .enumerate()
            .map(|(i, p)| (p.node_id.unwrap_or(i as u64 + 1) as NodeId, p))
            .collect()
    }

    pub fn node_id_of(&self, id: &str) -> Option<NodeId> {
        self.numbered().into_iter().find(|(_, p)| p.id == id).map(|(n, _)| n)
    }

    /// Whether this node is among the initial voters (otherwise it starts as a joiner). A
    /// node told to `join` is not, whatever `voters` says: it was wiped and comes back as a
    /// fresh node under its old name, so the file's `voters` still names it.
    pub fn starts_as_voter(&self) -> bool {
        !self.join && (self.voters.is_empty() || self.voters.contains(&self.id))
    }

    /// Whether the WAL is actually fsynced.
    pub fn effective_fsync(&self) -> bool {
        self.fsync && !self.unsafe_no_fsync
    }

    /// The protocol knobs in ticks, identical for Raft and Multi-Paxos.
    pub fn replica_config(&self, seed: u64) -> ReplicaConfig {
        let ticks = |ms: u64| ms.div_ceil(self.tick_ms).max(1) as u32;
        let mut members: Vec<NodeId> = self
            .numbered()
            .into_iter()
            .filter(|(_, p)| self.voters.is_empty() || self.voters.contains(&p.id))
            .filter(|(_, p)| !(self.join && p.id == self.id))
            .map(|(n, _)| n)
            .collect();
        // Given ids need not follow the names' order; the cores want them sorted.
        members.sort_unstable();
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
        assert!(matches!(c.apply_overrides(&["batch_max".into()]), Err(ConfigError::NotKeyValue { .. })));
        c.heartbeat_ms = 5000;
        assert!(c.validate("x").is_err());
    }

    fn pairs(kv: &[(&str, &str)]) -> Vec<(String, String)> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn hyphenated_knob_names_are_accepted() {
        let c = validate_overrides(&pairs(&[("unsafe-local-reads", "true"), ("election-timeout-ms-max", "900")]))
            .unwrap();
        assert!(c.unsafe_local_reads);
        assert_eq!(c.election_timeout_ms_max, 900);
        let mut d = Config::default();
        d.apply_overrides(&["heartbeat-ms=40".into()]).unwrap();
        assert_eq!(d.heartbeat_ms, 40);
    }

    #[test]
    fn unknown_knob_suggests_the_closest_one() {
        let e = validate_overrides(&pairs(&[("unsafe_locl_reads", "true")])).unwrap_err();
        assert_eq!(e.to_string(), r#"unknown knob "unsafe_locl_reads" (did you mean "unsafe_local_reads"?)"#);
        let e = validate_overrides(&pairs(&[("zzzzzzzz", "1")])).unwrap_err().to_string();
        assert!(e.contains("known knobs: id, algo,"), "{e}");
    }

    #[test]
    fn bad_integer_names_knob_value_and_type() {
        let e = validate_overrides(&pairs(&[("election_timeout_ms_min", "abc")])).unwrap_err();
        assert_eq!(e.to_string(), "election_timeout_ms_min=abc: expected an integer");
        let e = validate_overrides(&pairs(&[("fsync", "yes")])).unwrap_err();
        assert_eq!(e.to_string(), "fsync=yes: expected true or false");
        let e = validate_overrides(&pairs(&[("algo", "zab")])).unwrap_err();
        assert_eq!(e.to_string(), "algo=zab: expected raft or paxos");
    }

    #[test]
    fn election_timeout_min_above_max_is_refused() {
        let e = validate_overrides(&pairs(&[("election_timeout_ms_min", "700")])).unwrap_err();
        assert!(matches!(e, ConfigError::Invalid { knob: "election_timeout_ms_max", .. }), "{e}");
        assert!(e.to_string().contains("600 must be >= election_timeout_ms_min (700)"), "{e}");
    }

    #[test]
    fn heartbeat_not_below_election_timeout_and_zero_timeouts_are_refused() {
        let e = validate_overrides(&pairs(&[("heartbeat_ms", "300")])).unwrap_err();
        assert!(matches!(e, ConfigError::Invalid { knob: "election_timeout_ms_min", .. }), "{e}");
        for knob in ["request_timeout_ms", "client_idle_timeout_ms", "max_client_connections", "tick_ms"] {
            let e = validate_overrides(&pairs(&[(knob, "0")])).unwrap_err();
            assert!(matches!(&e, ConfigError::Invalid { knob: k, .. } if *k == knob), "{knob}: {e}");
        }
    }

    #[test]
    fn layout_knobs_are_listed_and_refused_per_run() {
        for k in ["id", "data_dir", "data-dir", "listen_client", "listen_peer", "peers"] {
            assert!(is_layout_knob(k), "{k}");
        }
        assert!(!is_layout_knob("batch_max"));
        assert!(!is_layout_knob("no_such_knob"));
        let e = validate_overrides(&pairs(&[("data-dir", "/tmp/x")])).unwrap_err();
        assert_eq!(e.to_string(), r#""data_dir" is per-host layout and cannot be changed per run"#);
        // The node itself still accepts them on its own command line.
        let mut c = Config::default();
        c.apply_overrides(&["data_dir=/tmp/x".into()]).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn knobs_json_lists_every_knob_with_defaults() {
        let c = validate_overrides(&pairs(&[("batch_max", "8")])).unwrap();
        let j = c.knobs_json();
        let obj = j.as_object().unwrap();
        for (k, _) in KNOBS {
            assert!(obj.contains_key(*k), "{k} missing from {j}");
        }
        assert_eq!(obj.len(), KNOBS.len(), "KNOBS and Config fields disagree: {j}");
        assert_eq!(j["batch_max"], 8);
        assert_eq!(j["election_timeout_ms_min"], 300);
        assert_eq!(j["algo"], "raft");
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

    #[test]
    fn given_node_ids_are_used_and_voters_name_the_initial_members() {
        let yaml = "id: n4\nvoters: [n1, n2]\npeers:\n  - {id: n1, node_id: 7, client_addr: 127.0.0.1:1, peer_addr: 127.0.0.1:2}\n  - {id: n2, node_id: 3, client_addr: 127.0.0.1:3, peer_addr: 127.0.0.1:4}\n  - {id: n4, node_id: 9, client_addr: 127.0.0.1:5, peer_addr: 127.0.0.1:6}\n";
        let c = Config::parse(yaml, Path::new("t")).unwrap();
        c.validate("t").unwrap();
        assert_eq!((c.node_id_of("n1"), c.node_id_of("n4")), (Some(7), Some(9)));
        assert!(!c.starts_as_voter());
        let rc = c.replica_config(1);
        assert_eq!((rc.id, rc.members.clone()), (9, vec![3, 7]), "sorted by id, self not a voter");
        rc.validate().unwrap();

        let some = yaml.replace("node_id: 3, ", "");
        let e = Config::parse(&some, Path::new("t")).unwrap().validate("t").unwrap_err().to_string();
        assert!(e.contains("every peer has a node_id or none"), "{e}");
        let twice = yaml.replace("node_id: 3", "node_id: 7");
        let e = Config::parse(&twice, Path::new("t")).unwrap().validate("t").unwrap_err().to_string();
        assert!(e.contains("node_id 7 given twice"), "{e}");
        let stranger = yaml.replace("voters: [n1, n2]", "voters: [n1, n5]");
        let e = Config::parse(&stranger, Path::new("t")).unwrap().validate("t").unwrap_err().to_string();
        assert!(e.contains("`n5` is not in peers"), "{e}");
    }
}
