//! Databases under test: one trait, a registry, and the host operations they share.
//!
//! A database is what Jepsen splits into its `DB`, `Process`, `Pause`, `Primary` and
//! `LogFiles` protocols: how it is installed and configured on a host, the command that
//! starts it (as a daemon with a pidfile, so kill and pause act on that pid and never on a
//! process name), where its logs are, who leads, its status, and a client that speaks the
//! workloads' operations. The runner, the monitor and the nemesis see nothing else of it.
//!
//! Adding a database is one file in this directory plus one line in [`REGISTRY`]. Its knobs
//! (`--db-opt KEY=VALUE`) are validated by its [`DbEntry::validate`] before any host is
//! contacted; [`DbEntry::open`] then binds the validated settings to an inventory.

pub mod etcd;
pub mod node;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::Value;

use crate::control::Control;
use crate::deploy::Layout;
use crate::inventory::Inventory;

/// Why a database could not answer or be set up; the CLI maps `Knob` to a usage error.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A `--db-opt` the database does not declare, or a value it cannot take.
    #[error("{db}: {message}")]
    Knob { db: &'static str, message: String },
    /// A node that is not in the inventory.
    #[error("unknown node {0:?}")]
    UnknownNode(String),
    /// The node did not answer (connect, timeout, protocol).
    #[error("{node}: {message}")]
    Unreachable { node: String, message: String },
    /// The database cannot do what was asked (e.g. change its membership).
    #[error("{0}")]
    Unsupported(String),
}

/// Everything the user said about the database, before validation.
#[derive(Debug, Clone, Default)]
pub struct DbArgs {
    /// `--db-opt` / `--node-opt` pairs, in the order given.
    pub opts: Vec<(String, String)>,
    /// `--db-binary`: a local executable to upload instead of installing a package.
    pub binary: Option<PathBuf>,
}

/// A database's validated settings: what `test.json` records and what [`DbEntry::open`]
/// binds to an inventory. Touches no host.
#[derive(Debug, Clone, Serialize)]
pub struct DbSettings {
    /// The registry name (`raft`, `paxos`, `etcd`).
    pub db: &'static str,
    /// The knobs as given, normalised (`-` read as `_`).
    pub opts: Vec<(String, String)>,
    /// Every knob with its resolved value, defaults included.
    pub resolved: Value,
    pub binary: Option<PathBuf>,
}

/// One registry entry.
pub struct DbEntry {
    pub name: &'static str,
    pub about: &'static str,
    /// Checks the knobs and resolves them, locally.
    pub validate: fn(&DbArgs) -> Result<DbSettings, DbError>,
    /// The database on an inventory's hosts.
    pub open: fn(&DbSettings, &Inventory, &OpenOptions) -> Arc<dyn Database>,
    /// Its durable state can sit on faultline's lazyfs (`StatePaths::lazyfs`), so the
    /// `lose-unfsynced` family applies; checked before any host is contacted.
    pub lazyfs: bool,
    /// It can remove a node and take it back as a fresh joiner, so the membership families
    /// apply; checked before any host is contacted.
    pub membership: bool,
}

/// Run-wide parameters every adapter needs.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Bound on one client operation; a timed-out operation is indeterminate.
    pub op_timeout: Duration,
}

/// Bound on one status request, everywhere a status is asked for (the monitor, leader
/// lookups for the nemesis, readiness): below the monitor's 250 ms poll, so a node that
/// does not answer costs one sample, not a stalled monitor.
pub const STATUS_TIMEOUT: Duration = Duration::from_millis(200);

/// The databases faultline can test, by name.
pub static REGISTRY: &[DbEntry] = &[node::RAFT, node::PAXOS, etcd::ETCD];

pub fn lookup(name: &str) -> Option<&'static DbEntry> {
    REGISTRY.iter().find(|e| e.name == name)
}

pub fn names() -> Vec<&'static str> {
    REGISTRY.iter().map(|e| e.name).collect()
}

/// The client side of a database: what the workers and the monitor use. Split from
/// [`Database`] so the runner's tests can drive an in-memory store without hosts.
pub trait Db: Send + Sync {
    /// Node names, in inventory order.
    fn nodes(&self) -> Vec<String>;
    /// A client bound to `node`; `client_id` distinguishes clients for a database that
    /// deduplicates retried commands.
    fn client(&self, node: &str, client_id: u64) -> Box<dyn faultline_workloads::Kv>;
    /// The node's status as JSON: `role` (`leader`, `follower`, ...), `term`, `leader`
    /// (a node name or null) and `commit_index` where the database exposes them.
    fn status<'a>(&'a self, node: &'a str) -> BoxFuture<'a, Result<Value, DbError>>;
}

/// An executable a database uploads to its hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadImage {
    pub path: PathBuf,
    /// The flag that picks another image, for pre-flight's advice (`--node-binary`).
    pub flag: &'static str,
    /// What the image is, for pre-flight's messages (`the node image`, `the etcd binary`).
    pub what: &'static str,
    /// How to get an image for another machine, `{arch}` standing for the host's.
    pub rebuild: &'static str,
    /// How to get a static image, appended to the advice for a host with an old glibc.
    pub static_build: &'static str,
}

/// A database on the hosts of one inventory.
pub trait Database: Db {
    /// The registry name.
    fn name(&self) -> &'static str;
    /// Where it lives on a host: data directory, pidfile, logs, ports.
    fn layout(&self) -> &Layout;
    /// Its durable state (log, snapshots), which the disk faults damage; `None` makes them
    /// refuse this database instead of damaging a guessed file.
    fn state_paths(&self) -> Option<faultline_nemesis::StatePaths> {
        None
    }
    /// Host commands it needs, for pre-flight.
    fn tools(&self) -> Vec<&'static str> {
        Vec::new()
    }
    /// The executable `install` uploads to every host, when it uploads one of its own
    /// (rather than installing the hosts' packages), so pre-flight can check it runs there
    /// before any host is touched. `Err` when the image it would upload cannot be found.
    fn upload_image(&self) -> anyhow::Result<Option<UploadImage>> {
        Ok(None)
    }
    /// What the report states about it: resolved knobs, the exact command line.
    fn describe(&self) -> Value;
    /// Puts the software on every host (skipped where it is already present).
    fn install<'a>(&'a self, control: &'a Control) -> BoxFuture<'a, anyhow::Result<()>>;
    /// Wipes the data directory and writes each node's configuration.
    fn configure<'a>(&'a self, control: &'a Control) -> BoxFuture<'a, anyhow::Result<()>>;
    /// The shell command that starts `node` detached from the SSH session, writing the
    /// layout's pidfile (also how the kill nemesis restarts it).
    fn start_command(&self, node: &str) -> String;
    /// Takes `node` out of the configuration through the leader, returning once the removal
    /// is committed or `node` was no member already.
    fn remove_member<'a>(&'a self, node: &'a str) -> BoxFuture<'a, Result<(), DbError>> {
        Box::pin(async move {
            Err(DbError::Unsupported(format!("{}: no membership changes (asked to remove {node})", self.name())))
        })
    }
    /// The command that starts `node` as a fresh joiner, which asks to be added and
    /// promoted; `None` when the database has no such start.
    fn join_command(&self, _node: &str) -> Option<String> {
        None
    }
}

/// The leader by the nodes' own word: a node that says it leads wins (the highest term if
/// several do, as after a partition heals); otherwise the leader most nodes name.
pub fn pick_leader(answers: &[(String, Value)]) -> Option<String> {
    let term = |v: &Value| v.get("term").and_then(Value::as_u64).unwrap_or(0);
    if let Some((node, _)) = answers
        .iter()
        .filter(|(_, s)| s.get("role").and_then(Value::as_str) == Some("leader"))
        .max_by_key(|(_, s)| term(s))
    {
        return Some(node.clone());
    }
    let mut votes: std::collections::BTreeMap<&str, usize> = Default::default();
    for (_, s) in answers {
        if let Some(l) = s.get("leader").and_then(Value::as_str) {
            *votes.entry(l).or_default() += 1;
        }
    }
    votes.into_iter().max_by_key(|(_, c)| *c).map(|(l, _)| l.to_string())
}

/// Asks every node for its status, each bounded by `timeout`, and picks the leader.
pub async fn leader(db: &dyn Db, timeout: Duration) -> Option<String> {
    let asks = db.nodes().into_iter().map(|n| async move {
        let s = tokio::time::timeout(timeout, db.status(&n)).await.ok()?.ok()?;
        Some((n, s))
    });
    let answers: Vec<_> = futures::future::join_all(asks).await.into_iter().flatten().collect();
    pick_leader(&answers)
}

/// Closest of `known` to `given` by edit distance, for "did you mean" hints.
pub fn closest<'a>(given: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|k| (edit_distance(given, k), k))
        .filter(|(d, k)| *d <= (k.len().max(given.len()) / 2).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn leader_is_the_self_declared_leader_of_the_highest_term() {
        // A deposed leader behind a partition still believes it leads, in an older term.
        let answers = vec![
            ("n1".to_string(), json!({"role": "leader", "term": 3, "leader": "n1"})),
            ("n2".to_string(), json!({"role": "follower", "term": 5, "leader": "n3"})),
            ("n3".to_string(), json!({"role": "leader", "term": 5, "leader": "n3"})),
        ];
        assert_eq!(pick_leader(&answers).as_deref(), Some("n3"));
    }

    #[test]
    fn leader_falls_back_to_what_most_nodes_name() {
        let answers = vec![
            ("n1".to_string(), json!({"role": "follower", "term": 4, "leader": "n2"})),
            ("n3".to_string(), json!({"role": "follower", "term": 4, "leader": "n2"})),
            ("n4".to_string(), json!({"role": "candidate", "term": 5, "leader": null})),
        ];
        assert_eq!(pick_leader(&answers).as_deref(), Some("n2"));
        assert_eq!(pick_leader(&answers[2..]), None);
    }

    #[test]
    fn every_registered_database_validates_its_defaults() {
        for e in REGISTRY {
            let s = (e.validate)(&DbArgs::default()).unwrap_or_else(|err| panic!("{}: {err}", e.name));
            assert_eq!(s.db, e.name);
            assert!(s.resolved.is_object(), "{}: resolved knobs are an object", e.name);
        }
        assert!(lookup("mongodb").is_none());
    }

    #[test]
    fn closest_suggests_near_names_only() {
        let known = ["unsafe_local_reads", "election_timeout_ms_min", "heartbeat_ms"];
        assert_eq!(closest("unsafe_locl_reads", known), Some("unsafe_local_reads"));
        assert_eq!(closest("heartbeat", known), Some("heartbeat_ms"));
        assert_eq!(closest("zzzzzzzzzz", known), None);
    }
}
