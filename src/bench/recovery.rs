//! `faultline bench recovery`: one fault, many trials, distributions instead of anecdotes.
//!
//! Per database and knob setting the cluster is deployed once; a steady open-loop write
//! load runs for the whole experiment and is recorded as a history like any test's, which
//! is checked at the end (a violation fails the experiment with exit 1). Trials repeat
//! without redeploying:
//!
//! 1. wait until leadership is stable: every node answers its status with the same leader
//!    and term, exactly one of them as leader, for [`STABLE_HEARTBEATS`] heartbeats;
//! 2. wait a uniformly random delay within one heartbeat interval, so the fault lands at a
//!    random phase of the leader's heartbeat (the method of the Raft paper, §9.3);
//! 3. apply the scenario's fault through the nemesis packages (journaled on the hosts, so a
//!    crash of this process still heals them);
//! 4. measure until the clients have written again and a majority agrees on a leader, or
//!    until the window ends (the trial is then censored);
//! 5. heal (restart, resume, remove rules) and go back to 1. For a kill or a pause the heal
//!    runs while the next trial's stability wait does: every node answering its status
//!    proves the victim is back, so the wait cannot end before the heal took effect, and
//!    the heal's SSH round trip (hundreds of milliseconds on a loaded controller) is not
//!    paid on top of it. A partition's heal ends before the wait starts, because nodes cut
//!    off from each other may still all answer the controller. The next fault is applied
//!    only once the heal has returned.
//!
//! Every node's status is polled by its own task, one request at a time with
//! [`STATUS_POLL_GAP`] between them (each request bounded by [`STATUS_POLL_TIMEOUT`]), so
//! each node is sampled every ≤10 ms on a local cluster: the leader figure is from polled
//! status, not from the nodes' own timestamps. All times are on the history's clock; the
//! fault's time is the completion of its start (the kill script returns once the process
//! is gone), as in the recovery checker.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use faultline_checkers::{EventType, Validity};
use faultline_nemesis::registry::NemesisPackage;
use faultline_nemesis::{BoxFuture, Cluster, FaultOptions, HostPaths, Output, RemoteError, Shape, TargetSpec, journal};
use faultline_workloads::{F, Kv, Op, Outcome};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::recovery_report::{self, Cell, Trial};
use crate::control::{Control, ControlOptions};
use crate::db::{Database, DbSettings};
use crate::deploy;
use crate::exit::usage;
use crate::nemesis_remote::InventoryCluster;
use crate::runner::history::Recorder;

/// Leadership counts as stable after this many heartbeat intervals of agreement.
pub const STABLE_HEARTBEATS: u64 = 3;
/// Pause between two status requests to one node.
pub const STATUS_POLL_GAP: Duration = Duration::from_millis(4);
/// Bound on one status request while polling: a paused or cut-off node costs at most this.
pub const STATUS_POLL_TIMEOUT: Duration = Duration::from_millis(40);
/// How often the trial loop looks at the latest samples and completions.
const CHECK_EVERY: Duration = Duration::from_millis(2);
/// Bound on waiting for stability before a trial; past it the experiment stops.
const STABLE_WAIT_MAX: Duration = Duration::from_secs(60);
/// Concurrent client processes at most; an arrival finding all busy is skipped and counted.
const PROCESSES_MAX: usize = 256;
const TRIALS_MAX: usize = 100_000;
/// Bound on `--preload-mib`.
const PRELOAD_MIB_MAX: u64 = 256;
/// One preload write's value, within the bundled node's limit on a value (4096 bytes).
const PRELOAD_VALUE_BYTES: usize = 4000;
/// Preload writes in flight at once.
const PRELOAD_WRITERS: usize = 16;
/// A replacement is measured this long past its catch-up, so a dip that outlasts the
/// catch-up is seen whole.
pub const CATCH_UP_TAIL: Duration = Duration::from_secs(1);
/// The write throughput before a replacement, the dip's reference, is taken over this.
pub const DIP_BASELINE: Duration = Duration::from_secs(1);
/// Throughput is counted in bins this wide; a bin below [`DIP_THRESHOLD`] of the baseline
/// is part of the dip.
pub const DIP_BIN: Duration = Duration::from_millis(250);
pub const DIP_THRESHOLD: f64 = 0.9;

#[derive(clap::Args, Debug)]
pub struct RecoveryArgs {
    /// Inventory file, or the name of a local cluster.
    #[arg(short = 'i', long = "inventory")]
    pub inventory: String,
    /// Databases, measured in turn on the same hosts (comma list).
    #[arg(long, default_value = "raft,paxos")]
    pub db: String,
    /// Fault scenarios (comma list): kill-leader, kill-follower, kill-minority, pause-leader,
    /// partition-leader, one-way-leader (the leader hears nobody), one-way-leader-reverse
    /// (nobody hears the leader), quorum-loss, constrained, chained, replace-node (a
    /// follower removed, wiped and joined again as a fresh member: time until it has caught
    /// up, and the throughput dip meanwhile).
    #[arg(long, default_value = "kill-leader")]
    pub scenario: String,
    /// Trials per database, setting and scenario.
    #[arg(long, default_value_t = 100)]
    pub trials: usize,
    /// Election timeout ranges to sweep, e.g. `election_timeout_ms=150-150,150-300`
    /// (one deployment each); without it the databases' own settings.
    #[arg(long)]
    pub sweep: Option<String>,
    /// Heartbeat interval for every setting (`heartbeat_ms`).
    #[arg(long = "heartbeat-ms")]
    pub heartbeat_ms: Option<u64>,
    /// Offered load: write arrivals per second (open loop, evenly spaced).
    #[arg(long, default_value_t = 200)]
    pub rate: u64,
    /// Keys the writes go to, uniformly.
    #[arg(long, default_value_t = 8)]
    pub keys: u64,
    /// Share of arrivals that are linearizable reads, so the checker has reads to judge.
    #[arg(long, default_value_t = 0.1)]
    pub read_fraction: f64,
    /// State written before the trials, in MiB, under keys no trial touches: what a replaced
    /// node has to catch up on (by snapshot or log) besides the load's own keys.
    #[arg(long = "preload-mib", default_value_t = 0)]
    pub preload_mib: u64,
    /// A trial not recovered this long after its fault is censored.
    #[arg(long = "window-ms", default_value_t = 5000)]
    pub window_ms: u64,
    /// Client timeout per operation, ms.
    #[arg(long = "op-timeout-ms", default_value_t = 500)]
    pub op_timeout_ms: u64,
    /// Database knob for every database (repeatable); see `faultline test --db-opt`.
    #[arg(long = "db-opt", value_name = "KEY=VALUE")]
    pub db_opt: Vec<String>,
    /// A local executable to upload for databases that take one (etcd).
    #[arg(long = "db-binary", value_name = "PATH")]
    pub db_binary: Option<PathBuf>,
    /// Directory for recovery.json, report.html, one SVG per scenario and the histories.
    #[arg(long, default_value = "bench-recovery")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// A fault scenario, built from the nemesis families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    KillLeader,
    KillFollower,
    KillMinority,
    PauseLeader,
    PartitionLeader,
    OneWayLeader,
    OneWayLeaderReverse,
    QuorumLoss,
    Constrained,
    Chained,
    /// A follower replaced by a fresh node on its wiped host (the `member-replace` fault):
    /// the Omni-Paxos paper's reconfiguration experiment.
    ReplaceNode,
}

impl Scenario {
    pub const ALL: [Scenario; 11] = [
        Scenario::KillLeader,
        Scenario::KillFollower,
        Scenario::KillMinority,
        Scenario::PauseLeader,
        Scenario::PartitionLeader,
        Scenario::OneWayLeader,
        Scenario::OneWayLeaderReverse,
        Scenario::QuorumLoss,
        Scenario::Constrained,
        Scenario::Chained,
        Scenario::ReplaceNode,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::KillLeader => "kill-leader",
            Scenario::KillFollower => "kill-follower",
            Scenario::KillMinority => "kill-minority",
            Scenario::PauseLeader => "pause-leader",
            Scenario::PartitionLeader => "partition-leader",
            Scenario::OneWayLeader => "one-way-leader",
            Scenario::OneWayLeaderReverse => "one-way-leader-reverse",
            Scenario::QuorumLoss => "quorum-loss",
            Scenario::Constrained => "constrained",
            Scenario::Chained => "chained",
            Scenario::ReplaceNode => "replace-node",
        }
    }

    pub fn parse(s: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|c| c.name() == s)
    }

    fn family(self) -> &'static str {
        match self {
            Scenario::KillLeader | Scenario::KillFollower | Scenario::KillMinority => "kill",
            Scenario::PauseLeader => "pause",
            Scenario::ReplaceNode => "member-replace",
            _ => "partition",
        }
    }

    /// A fault on processes (not on the network): it strikes when its victim stops
    /// answering, which the victim's poller sees.
    fn process_fault(self) -> bool {
        matches!(self.family(), "kill" | "pause" | "member-replace")
    }

    /// The victim is replaced by a fresh member, whose catch-up is measured.
    fn membership(self) -> bool {
        self == Scenario::ReplaceNode
    }

    /// Whether the old leader cannot keep leading, so recovery means a different leader.
    /// Otherwise any leader a majority agrees on counts (after a follower's crash the
    /// leader normally stays).
    fn forces_new_leader(self) -> bool {
        !matches!(
            self,
            Scenario::KillFollower | Scenario::Chained | Scenario::OneWayLeader | Scenario::ReplaceNode
        )
    }

    /// The fault's options and the nodes it acts on first (for kills and pauses, exactly
    /// those; for partitions, the leader the shape is built around).
    fn fault(self, leader: &str, nodes: &[String], expiry: Duration, rng: &mut impl Rng) -> (FaultOptions, Vec<String>) {
        let mut followers: Vec<String> = nodes.iter().filter(|n| *n != leader).cloned().collect();
        followers.shuffle(rng);
        let mut opts = FaultOptions {
            expiry,
            lag: Duration::from_secs(1),
            ..FaultOptions::default()
        };
        let victims = match self {
            Scenario::KillLeader | Scenario::PauseLeader => vec![leader.to_string()],
            Scenario::KillFollower | Scenario::ReplaceNode => vec![followers[0].clone()],
            Scenario::KillMinority => {
                let mut v = vec![leader.to_string()];
                v.extend(followers.iter().take((nodes.len() - 1) / 2 - 1).cloned());
                v
            }
            Scenario::PartitionLeader | Scenario::OneWayLeader => {
                opts.shape = Shape::Leader;
                opts.one_way = self == Scenario::OneWayLeader;
                vec![leader.to_string()]
            }
            Scenario::OneWayLeaderReverse => {
                opts.shape = Shape::LeaderMute;
                vec![leader.to_string()]
            }
            Scenario::QuorumLoss => {
                opts.shape = Shape::QuorumLoss;
                vec![leader.to_string()]
            }
            Scenario::Constrained => {
                opts.shape = Shape::Constrained;
                vec![leader.to_string()]
            }
            Scenario::Chained => {
                opts.shape = Shape::Chained;
                vec![leader.to_string()]
            }
        };
        if self.process_fault() {
            opts.target = TargetSpec::Nodes(victims.clone());
        }
        (opts, victims)
    }
}

/// One knob setting of the sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub election_timeout_ms: Option<(u64, u64)>,
    pub heartbeat_ms: Option<u64>,
}

impl Setting {
    pub fn label(&self) -> String {
        let mut parts = Vec::new();
        if let Some((lo, hi)) = self.election_timeout_ms {
            parts.push(format!("et={lo}-{hi}"));
        }
        if let Some(h) = self.heartbeat_ms {
            parts.push(format!("hb={h}"));
        }
        if parts.is_empty() { "defaults".into() } else { parts.join(" ") }
    }

    fn knobs(&self) -> Vec<(String, String)> {
        let mut k = Vec::new();
        if let Some((lo, hi)) = self.election_timeout_ms {
            k.push(("election_timeout_ms_min".to_string(), lo.to_string()));
            k.push(("election_timeout_ms_max".to_string(), hi.to_string()));
        }
        if let Some(h) = self.heartbeat_ms {
            k.push(("heartbeat_ms".to_string(), h.to_string()));
        }
        k
    }
}

/// `election_timeout_ms=150-150,150-300`: the ranges, each `MIN-MAX` with `MIN <= MAX`.
pub fn parse_sweep(s: &str) -> anyhow::Result<Vec<(u64, u64)>> {
    let (key, list) = s
        .split_once('=')
        .ok_or_else(|| usage(format!("--sweep {s:?}: expected election_timeout_ms=MIN-MAX,...")))?;
    if key.trim().replace('-', "_") != "election_timeout_ms" {
        return Err(usage(format!("--sweep {key:?}: only election_timeout_ms can be swept")));
    }
    let mut out = Vec::new();
    for r in list.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        let bad = || usage(format!("--sweep: {r:?} is not MIN-MAX in milliseconds"));
        let (lo, hi) = r.split_once('-').ok_or_else(bad)?;
        let (lo, hi): (u64, u64) = (lo.trim().parse().map_err(|_| bad())?, hi.trim().parse().map_err(|_| bad())?);
        if lo == 0 || hi < lo {
            return Err(usage(format!("--sweep: {r:?} needs 0 < MIN <= MAX")));
        }
        out.push((lo, hi));
    }
    if out.is_empty() {
        return Err(usage("--sweep names no range"));
    }
    Ok(out)
}

struct Config {
    inventory: crate::inventory::Inventory,
    /// Per setting, every database's validated settings.
    plan: Vec<(Setting, Vec<DbSettings>)>,
    scenarios: Vec<Scenario>,
    trials: usize,
    rate: u64,
    keys: u64,
    read_fraction: f64,
    preload_mib: u64,
    window: Duration,
    op_timeout: Duration,
    out: PathBuf,
    seed: u64,
    args: Value,
}

fn validate(a: RecoveryArgs) -> anyhow::Result<Config> {
    let mut scenarios = Vec::new();
    for s in a.scenario.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let sc = Scenario::parse(s).ok_or_else(|| {
            let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
            usage(format!("--scenario {s:?}: unknown (known: {})", names.join(", ")))
        })?;
        scenarios.push(sc);
    }
    if scenarios.is_empty() {
        return Err(usage("--scenario names no scenario"));
    }
    if a.trials == 0 || a.trials > TRIALS_MAX {
        return Err(usage(format!("--trials {} must be between 1 and {TRIALS_MAX}", a.trials)));
    }
    if !(1..=10_000).contains(&a.rate) {
        return Err(usage(format!("--rate {} must be between 1 and 10000", a.rate)));
    }
    if a.keys == 0 {
        return Err(usage("--keys must be at least 1"));
    }
    if !(0.0..1.0).contains(&a.read_fraction) {
        return Err(usage(format!("--read-fraction {} must be at least 0 and below 1", a.read_fraction)));
    }
    if !(100..=600_000).contains(&a.window_ms) {
        return Err(usage(format!("--window-ms {} must be between 100 and 600000", a.window_ms)));
    }
    if !(10..=60_000).contains(&a.op_timeout_ms) {
        return Err(usage(format!("--op-timeout-ms {} must be between 10 and 60000", a.op_timeout_ms)));
    }
    let ranges: Vec<Option<(u64, u64)>> = match &a.sweep {
        Some(s) => parse_sweep(s)?.into_iter().map(Some).collect(),
        None => vec![None],
    };
    let mut plan = Vec::new();
    for r in ranges {
        let setting = Setting {
            election_timeout_ms: r,
            heartbeat_ms: a.heartbeat_ms,
        };
        let dbs = super::db_settings(&a.db, &a.db_opt, a.db_binary.as_ref(), &setting.knobs())
            .map_err(|e| usage(format!("setting {}: {e:#}", setting.label())))?;
        plan.push((setting, dbs));
    }
    if a.preload_mib > PRELOAD_MIB_MAX {
        return Err(usage(format!("--preload-mib {} must be at most {PRELOAD_MIB_MAX}", a.preload_mib)));
    }
    if let Some(sc) = scenarios.iter().find(|s| s.membership())
        && let Some(d) = plan.iter().flat_map(|(_, dbs)| dbs).find(|d| !crate::db::lookup(d.db).is_some_and(|e| e.membership))
    {
        return Err(usage(format!("--scenario {}: --db {} cannot change its membership", sc.name(), d.db)));
    }
    let inventory = crate::inventory::resolve_cli(&a.inventory)?;
    let n = inventory.node_names().len();
    for sc in &scenarios {
        let need = match sc {
            Scenario::QuorumLoss | Scenario::Constrained | Scenario::Chained | Scenario::KillMinority => 5,
            _ => 3,
        };
        if n < need {
            return Err(usage(format!(
                "--scenario {}: needs at least {need} nodes; {} has {n}",
                sc.name(),
                a.inventory
            )));
        }
    }
    let args = json!({
        "inventory": a.inventory, "db": a.db, "scenario": a.scenario, "trials": a.trials,
        "sweep": a.sweep, "heartbeat_ms": a.heartbeat_ms, "rate": a.rate, "keys": a.keys,
        "read_fraction": a.read_fraction, "preload_mib": a.preload_mib, "window_ms": a.window_ms, "op_timeout_ms": a.op_timeout_ms,
        "db_opt": a.db_opt, "seed": a.seed, "nodes": n,
    });
    Ok(Config {
        inventory,
        plan,
        scenarios,
        trials: a.trials,
        rate: a.rate,
        keys: a.keys,
        read_fraction: a.read_fraction,
        preload_mib: a.preload_mib,
        window: Duration::from_millis(a.window_ms),
        op_timeout: Duration::from_millis(a.op_timeout_ms),
        out: a.out,
        seed: a.seed,
        args,
    })
}

pub fn run(a: RecoveryArgs) -> anyhow::Result<ExitCode> {
    let cfg = validate(a)?;
    crate::logging::init();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(experiment(cfg))
}

/// The nemesis's cluster with the leader fixed to the one this trial measured, so a
/// partition shape is built around it without another status round trip.
///
/// Each script it runs also prints the host's clock when the script's work is done, so a
/// partition's time is when its rules were in place, not when SSH returned (which on a
/// loaded controller is hundreds of milliseconds later).
struct KnownLeader<'a> {
    inner: &'a InventoryCluster,
    leader: String,
    /// The earliest and the latest host clock reading (Unix ns) an apply printed: the
    /// fault took effect between the two (when depends on which hosts' rules cut the
    /// leader from its quorum first).
    done_unix_ns: Mutex<Option<(u64, u64)>>,
}

const STAMP: &str = "faultline-bench-done-unix-ns";

impl Cluster for KnownLeader<'_> {
    fn nodes(&self) -> Vec<String> {
        self.inner.nodes()
    }
    fn address(&self, node: &str) -> Option<String> {
        self.inner.address(node)
    }
    fn run<'a>(&'a self, node: &'a str, script: &'a str, timeout: Duration) -> BoxFuture<'a, Result<Output, RemoteError>> {
        Box::pin(async move {
            // Only a journaled apply (not a lookup before it) marks the fault's time.
            if !script.contains("watchdog_pid") {
                return self.inner.run(node, script, timeout).await;
            }
            let script = format!("{script}\necho \"{STAMP} $(date +%s%N)\" >&2\n");
            let mut out = self.inner.run(node, &script, timeout).await?;
            let mut kept = Vec::new();
            for line in out.stderr.lines() {
                match line.strip_prefix(STAMP).and_then(|v| v.trim().parse::<u64>().ok()) {
                    Some(ns) => {
                        let mut d = self.done_unix_ns.lock().unwrap_or_else(|e| e.into_inner());
                        *d = Some(d.map_or((ns, ns), |(lo, hi)| (lo.min(ns), hi.max(ns))));
                    }
                    None => kept.push(line),
                }
            }
            out.stderr = kept.join("\n");
            Ok(out)
        })
    }
    fn leader(&self) -> BoxFuture<'_, Option<String>> {
        let l = self.leader.clone();
        Box::pin(async move { Some(l) })
    }
    fn start_command(&self, node: &str) -> String {
        self.inner.start_command(node)
    }
    fn paths(&self) -> HostPaths {
        self.inner.paths()
    }
    fn remove_member<'a>(&'a self, node: &'a str) -> BoxFuture<'a, faultline_nemesis::Result<()>> {
        self.inner.remove_member(node)
    }
    fn join_command(&self, node: &str) -> Option<String> {
        self.inner.join_command(node)
    }
}

/// A node's latest status sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// When the answer (or the failure) arrived, on the history's clock.
    pub at_ns: u64,
    /// `None` when the node did not answer.
    pub status: Option<NodeStatus>,
    /// When the node last answered.
    pub last_ok_ns: Option<u64>,
    /// The last answer of the process that answered before the current one (by pid): when
    /// a replaced node's old process was last seen, even if no poll caught it silent.
    pub previous_process_last_ok_ns: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NodeStatus {
    pub role: String,
    pub term: u64,
    pub leader: Option<String>,
    /// Elections this node's process has won (the bundled nodes' `leader_elections_won`).
    pub elections_won: Option<u64>,
    pub applied_index: Option<u64>,
    /// The process answering: a replaced node answers with another.
    pub pid: Option<u64>,
    /// The voters of the configuration the node acts on (empty when it reports none).
    pub voters: Vec<String>,
}

impl NodeStatus {
    fn of(v: &Value) -> NodeStatus {
        NodeStatus {
            role: v.get("role").and_then(Value::as_str).unwrap_or("").to_string(),
            term: v.get("term").and_then(Value::as_u64).unwrap_or(0),
            leader: v.get("leader").and_then(Value::as_str).map(str::to_string),
            elections_won: v.get("leader_elections_won").and_then(Value::as_u64),
            applied_index: v.get("applied_index").and_then(Value::as_u64),
            pid: v.get("pid").and_then(Value::as_u64),
            voters: v
                .get("voters")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default(),
        }
    }
}

/// Every node answered at or after `since_ns`, all with the same leader and term, and
/// exactly one of them says it leads: that (leader, term).
pub fn unanimous(samples: &[Option<Sample>], nodes: &[String], since_ns: u64) -> Option<(String, u64)> {
    let mut agreed: Option<(&str, u64)> = None;
    let mut leaders = 0;
    for (i, s) in samples.iter().enumerate() {
        let s = s.as_ref().filter(|s| s.at_ns >= since_ns)?;
        let st = s.status.as_ref()?;
        let l = st.leader.as_deref()?;
        match agreed {
            None => agreed = Some((l, st.term)),
            Some(a) if a == (l, st.term) => {}
            Some(_) => return None,
        }
        if st.role == "leader" {
            if nodes.get(i).map(String::as_str) != Some(l) {
                return None;
            }
            leaders += 1;
        }
    }
    (leaders == 1).then(|| agreed.map(|(l, t)| (l.to_string(), t))).flatten()
}

/// The first (leader, term) that a majority of the nodes name in samples taken at or after
/// `since_ns`, the leader not among `excluded`, the term at least `term_min`; with the time
/// of the latest of those samples (when the majority was known).
pub fn majority_leader(
    samples: &[Option<Sample>],
    since_ns: u64,
    excluded: &[String],
    term_min: u64,
) -> Option<(String, u64, u64)> {
    let n = samples.len();
    let mut votes: std::collections::BTreeMap<(String, u64), (usize, u64)> = Default::default();
    for s in samples.iter().flatten().filter(|s| s.at_ns >= since_ns) {
        let Some(st) = &s.status else { continue };
        let Some(l) = &st.leader else { continue };
        if excluded.contains(l) || st.term < term_min {
            continue;
        }
        let e = votes.entry((l.clone(), st.term)).or_default();
        e.0 += 1;
        e.1 = e.1.max(s.at_ns);
    }
    votes
        .into_iter()
        .filter(|(_, (c, _))| *c > n / 2)
        .min_by_key(|(_, (_, at))| *at)
        .map(|((l, t), (_, at))| (l, t, at))
}

/// Every node's count of elections won, from its latest sample.
fn elections_won(samples: &[Option<Sample>]) -> Vec<Option<u64>> {
    samples.iter().map(|s| s.as_ref().and_then(|s| s.status.as_ref()).and_then(|st| st.elections_won)).collect()
}

/// Elections won between two readings of every node's counter, over the nodes that
/// answered both times (a restarted process counts from zero again, so a fall is skipped);
/// `None` when the database reports no counter.
pub fn elections_between(before: &[Option<u64>], after: &[Option<u64>]) -> Option<u64> {
    let pairs: Vec<(u64, u64)> = before.iter().zip(after).filter_map(|(b, a)| Some(((*b)?, (*a)?))).collect();
    (!pairs.is_empty()).then(|| pairs.iter().map(|(b, a)| a.saturating_sub(*b)).sum())
}

/// The longest gap between consecutive successful write completions among `ok_ns` (sorted)
/// from the last one at or before `fault_ns` up to `recovered_ns`: the client-observed
/// unavailability of a fault that was over by `recovered_ns`.
/// Returns (the gap's start, its length).
pub fn longest_gap(ok_ns: &[u64], fault_ns: u64, recovered_ns: u64) -> (u64, u64) {
    let first = ok_ns.partition_point(|t| *t <= fault_ns);
    let start = first.checked_sub(1).map_or(fault_ns, |i| ok_ns[i]);
    let mut prev = start;
    let mut longest = (start, 0);
    for &t in ok_ns[first..].iter().take_while(|t| **t <= recovered_ns) {
        if t - prev > longest.1 {
            longest = (prev, t - prev);
        }
        prev = t;
    }
    longest
}

/// The dip in successful writes from `from_ns` to `to_ns` (sorted completion times
/// `ok_ns`): the baseline is their rate over `baseline_ns` before `from_ns`; the span is
/// cut into `bin_ns`-wide bins (a last partial bin is dropped). The depth is the worst
/// bin's shortfall against the baseline; the duration runs from the start of the first bin
/// below `threshold` of the baseline to the end of the last. `None` when no write succeeded
/// in the baseline, so there is nothing to compare against.
pub fn throughput_dip(
    ok_ns: &[u64],
    from_ns: u64,
    to_ns: u64,
    baseline_ns: u64,
    bin_ns: u64,
    threshold: f64,
) -> Option<recovery_report::Dip> {
    let count = |a: u64, b: u64| (ok_ns.partition_point(|t| *t < b) - ok_ns.partition_point(|t| *t < a)) as f64;
    let base_from = from_ns.saturating_sub(baseline_ns);
    if base_from == from_ns || bin_ns == 0 {
        return None;
    }
    let per_s = |n: f64, span_ns: u64| n * 1e9 / span_ns as f64;
    let baseline = per_s(count(base_from, from_ns), from_ns - base_from);
    if baseline <= 0.0 {
        return None;
    }
    let mut depth: f64 = 0.0;
    let mut low: Option<(u64, u64)> = None;
    for i in 0..to_ns.saturating_sub(from_ns) / bin_ns {
        let (a, b) = (from_ns + i * bin_ns, from_ns + (i + 1) * bin_ns);
        let rate = per_s(count(a, b), bin_ns);
        depth = depth.max(1.0 - rate / baseline);
        if rate < threshold * baseline {
            low = Some((low.map_or(a, |l| l.0), b));
        }
    }
    Some(recovery_report::Dip {
        baseline_writes_per_s: baseline,
        depth_pct: depth * 100.0,
        duration_ms: low.map_or(0.0, |(a, b)| (b - a) as f64 / 1e6),
    })
}

/// What the load has seen, on the history's clock.
#[derive(Default)]
struct LoadLog {
    /// (invoke, complete) of successful writes, in completion order.
    writes_ok: Vec<(u64, u64)>,
    /// Completion times of failed ops.
    failed: Vec<u64>,
    indeterminate: Vec<u64>,
}

struct Load {
    log: Arc<Mutex<LoadLog>>,
    skipped: Arc<AtomicU64>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// Open-loop arrivals at `rate` per second, evenly spaced; each op runs on a free client
/// process (a new one when none is free, up to [`PROCESSES_MAX`]). A process whose op did
/// not succeed is retired, so its next op starts on a fresh connection and process id.
fn start_load(db: Arc<dyn Database>, rec: Recorder, cfg: &Config, seed: u64) -> Load {
    let log = Arc::new(Mutex::new(LoadLog::default()));
    let skipped = Arc::new(AtomicU64::new(0));
    let cancel = CancellationToken::new();
    let (rate, keys, read_fraction, op_timeout) = (cfg.rate, cfg.keys, cfg.read_fraction, cfg.op_timeout);
    let task = {
        let (log, skipped, cancel) = (log.clone(), skipped.clone(), cancel.clone());
        tokio::spawn(async move {
            let nodes = db.nodes();
            let free: Arc<Mutex<Vec<(u64, String, Box<dyn Kv>)>>> = Arc::default();
            let busy = Arc::new(AtomicU64::new(0));
            let next_process = Arc::new(AtomicU64::new(0));
            let value = Arc::new(AtomicU64::new(0));
            let mut rng = faultline_workloads::rng(seed, "bench-recovery", 0);
            let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut running = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = cancel.cancelled() => break,
                }
                while running.try_join_next().is_some() {}
                if busy.load(Ordering::Relaxed) as usize >= PROCESSES_MAX {
                    skipped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let client = free.lock().unwrap_or_else(|e| e.into_inner()).pop();
                let (process, node, mut kv) = client.unwrap_or_else(|| {
                    let p = next_process.fetch_add(1, Ordering::Relaxed);
                    let node = nodes[p as usize % nodes.len()].clone();
                    let kv = db.client(&node, p);
                    (p, node, kv)
                });
                let op = if rng.random_bool(read_fraction) {
                    Op { f: F::Read, key: format!("k{}", rng.random_range(0..keys)), value: Value::Null }
                } else {
                    let v = value.fetch_add(1, Ordering::Relaxed) + 1;
                    Op { f: F::Write, key: format!("k{}", rng.random_range(0..keys)), value: json!(v) }
                };
                busy.fetch_add(1, Ordering::Relaxed);
                let (rec, log, free, busy, cancel) = (rec.clone(), log.clone(), free.clone(), busy.clone(), cancel.clone());
                running.spawn(async move {
                    let invoke_ns = rec.now_ns();
                    let outcome = crate::runner::clients::invoke_once(&rec, &mut *kv, process, &op, &node, op_timeout, &cancel).await;
                    let done_ns = rec.now_ns();
                    {
                        let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
                        match &outcome {
                            Outcome::Ok(_) if op.f == F::Write => l.writes_ok.push((invoke_ns, done_ns)),
                            Outcome::Ok(_) => {}
                            Outcome::Fail(_) => l.failed.push(done_ns),
                            Outcome::Info(_) => l.indeterminate.push(done_ns),
                        }
                    }
                    if matches!(outcome, Outcome::Ok(_)) {
                        free.lock().unwrap_or_else(|e| e.into_inner()).push((process, node, kv));
                    }
                    busy.fetch_sub(1, Ordering::Relaxed);
                });
            }
            // Ops in flight finish (or are cut off as indeterminate by the cancellation).
            while running.join_next().await.is_some() {}
        })
    };
    Load { log, skipped, cancel, task }
}

struct Pollers {
    samples: Arc<Mutex<Vec<Option<Sample>>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn start_pollers(db: Arc<dyn Database>, rec: Recorder) -> Pollers {
    let nodes = db.nodes();
    let samples = Arc::new(Mutex::new(vec![None; nodes.len()]));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = nodes
        .into_iter()
        .enumerate()
        .map(|(i, node)| {
            let (db, rec, samples, stop) = (db.clone(), rec.clone(), samples.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut last_ok_ns, mut last_pid, mut previous_process_last_ok_ns) = (None, None, None);
                while !stop.load(Ordering::Relaxed) {
                    let r = tokio::time::timeout(STATUS_POLL_TIMEOUT, db.status(&node)).await;
                    let status = match r {
                        Ok(Ok(v)) => Some(NodeStatus::of(&v)),
                        _ => None,
                    };
                    let at_ns = rec.now_ns();
                    if let Some(st) = &status {
                        if last_pid.is_some() && st.pid != last_pid {
                            previous_process_last_ok_ns = last_ok_ns;
                        }
                        (last_ok_ns, last_pid) = (Some(at_ns), st.pid);
                    }
                    let s = Sample { at_ns, status, last_ok_ns, previous_process_last_ok_ns };
                    samples.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(s);
                    tokio::time::sleep(STATUS_POLL_GAP).await;
                }
            })
        })
        .collect();
    Pollers { samples, stop, tasks }
}

impl Pollers {
    fn now(&self) -> Vec<Option<Sample>> {
        self.samples.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn heartbeat_ms(settings: &DbSettings, setting: &Setting) -> u64 {
    setting
        .heartbeat_ms
        .or_else(|| settings.resolved.get("heartbeat_ms").and_then(Value::as_u64))
        .unwrap_or(50)
        .max(1)
}

/// Waits until [`unanimous`] has held, for the same leader and term, for `hold`.
async fn wait_stable(p: &Pollers, rec: &Recorder, nodes: &[String], hold: Duration) -> anyhow::Result<(String, u64)> {
    let since = rec.now_ns();
    let give_up = Instant::now() + STABLE_WAIT_MAX;
    let mut held: Option<((String, u64), Instant)> = None;
    loop {
        match unanimous(&p.now(), nodes, since) {
            Some(lt) => match &held {
                Some((h, from)) if *h == lt => {
                    if from.elapsed() >= hold {
                        return Ok(lt);
                    }
                }
                _ => held = Some((lt, Instant::now())),
            },
            None => held = None,
        }
        if Instant::now() > give_up {
            let s: Vec<String> = p
                .now()
                .iter()
                .zip(nodes)
                .map(|(s, n)| format!("{n}: {:?}", s.as_ref().and_then(|s| s.status.as_ref())))
                .collect();
            anyhow::bail!(
                "leadership did not become stable within {} s ({})",
                STABLE_WAIT_MAX.as_secs(),
                s.join("; ")
            );
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
}

async fn experiment(cfg: Config) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&cfg.out).with_context(|| format!("cannot create {}", cfg.out.display()))?;
    let control = Control::connect(&cfg.inventory, &ControlOptions::default())
        .await
        .context("cannot connect to the cluster")?;
    let mut cells: Vec<Cell> = Vec::new();
    let mut verdicts: Vec<(String, Validity, String)> = Vec::new();
    let mut failure = None;
    let interrupt = CancellationToken::new();
    let watcher = tokio::spawn(crate::run_loop::watch_signals(interrupt.clone()));
    'plan: for (setting, dbs) in &cfg.plan {
        for settings in dbs {
            if interrupt.is_cancelled() {
                failure = Some(anyhow::anyhow!("interrupted before {} {}", settings.db, setting.label()));
                break 'plan;
            }
            let entry = crate::db::lookup(settings.db).expect("validated");
            let db = (entry.open)(settings, &cfg.inventory, &crate::db::OpenOptions { op_timeout: cfg.op_timeout });
            let dir = cfg.out.join(format!(
                "{}-{}",
                settings.db,
                setting.label().replace([' ', '='], "_")
            ));
            let r = deployment(&control, &db, settings, setting, &cfg, &dir, &mut cells, &verdicts, &interrupt).await;
            if let Err(e) = deploy::stop(&control, db.layout()).await {
                tracing::warn!(error = %format!("{e:#}"), "stopping {}", settings.db);
            }
            match r {
                Ok((v, why)) => {
                    eprintln!("{} {}: history {:?}{}", settings.db, setting.label(), v, if why.is_empty() { String::new() } else { format!(" ({why})") });
                    verdicts.push((format!("{} {}", settings.db, setting.label()), v, why));
                }
                Err(e) => {
                    failure = Some(e.context(format!("{} {}", settings.db, setting.label())));
                    break 'plan;
                }
            }
        }
    }
    control.close().await;
    watcher.abort();
    write_outputs(&cfg, &cells, &verdicts)?;
    if !cells.is_empty() {
        outln!("{}", recovery_report::table(&cells));
        if let Some(t) = recovery_report::catch_up_table(&cells) {
            outln!("{t}");
        }
        outln!("report: {}", cfg.out.join("report.html").display());
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let worst = verdicts.iter().fold(Validity::Valid, |v, (_, w, _)| v.and(*w));
    Ok(crate::exit::for_validity(worst))
}

fn write_outputs(cfg: &Config, cells: &[Cell], verdicts: &[(String, Validity, String)]) -> anyhow::Result<()> {
    let experiment = json!({
        "args": cfg.args,
        "leader_figure": "status polled per node, one request at a time, 4 ms apart, each bounded by 40 ms",
        "fault_time": "completion of the fault's start on the hosts",
        "bootstrap": {"resamples": recovery_report::BOOTSTRAP_RESAMPLES, "seed": recovery_report::BOOTSTRAP_SEED},
        "histories": verdicts.iter().map(|(k, v, why)| json!({"deployment": k, "valid": format!("{v:?}").to_lowercase(), "why": why})).collect::<Vec<_>>(),
    });
    let mut svgs = Vec::new();
    for sc in recovery_report::scenarios(cells) {
        let of: Vec<&Cell> = cells.iter().filter(|c| c.scenario == sc).collect();
        match recovery_report::cdf_svg(&sc, &of) {
            Ok(svg) => {
                let p = cfg.out.join(format!("{sc}.svg"));
                std::fs::write(&p, &svg).with_context(|| format!("cannot write {}", p.display()))?;
                svgs.push((sc, svg));
            }
            Err(e) => tracing::warn!("plot {sc}: {e}"),
        }
    }
    let doc = json!({"experiment": experiment, "cells": cells});
    let p = cfg.out.join("recovery.json");
    std::fs::write(&p, serde_json::to_vec_pretty(&doc)?).with_context(|| format!("cannot write {}", p.display()))?;
    let p = cfg.out.join("report.html");
    std::fs::write(&p, recovery_report::html(cells, &experiment, &svgs))
        .with_context(|| format!("cannot write {}", p.display()))?;
    Ok(())
}

/// One deployment: bring up, load, every scenario's trials, check the history.
#[allow(clippy::too_many_arguments)]
async fn deployment(
    control: &Control,
    db: &Arc<dyn Database>,
    settings: &DbSettings,
    setting: &Setting,
    cfg: &Config,
    dir: &std::path::Path,
    cells: &mut Vec<Cell>,
    verdicts: &[(String, Validity, String)],
    interrupt: &CancellationToken,
) -> anyhow::Result<(Validity, String)> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let cx = InventoryCluster { control: control.clone(), db: db.clone(), start_command: None };
    // Faults a crashed earlier experiment left behind.
    let _ = faultline_nemesis::executor::heal(&cx, true).await;
    super::bring_up(control, db).await?;
    preload(db, cfg.preload_mib, cfg.op_timeout).await?;
    let history = dir.join("history.jsonl");
    let _ = std::fs::remove_file(&history);
    let (rec, writer) = Recorder::open(&history, Instant::now()).await?;
    let nodes = db.nodes();
    let pollers = start_pollers(db.clone(), rec.clone());
    let load = start_load(db.clone(), rec.clone(), cfg, cfg.seed);
    let hb = heartbeat_ms(settings, setting);
    let hold = Duration::from_millis(hb * STABLE_HEARTBEATS);
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed ^ 0x7e57);
    let mut result = Ok(());
    let mut pending: Option<PendingHeal> = None;
    for &sc in &cfg.scenarios {
        let started = Instant::now();
        let mut trials: Vec<Trial> = Vec::new();
        // Whether the last trial run was counted, so the next heal's time is its.
        let mut last_counted = false;
        let mut void = 0;
        let mut n = 0;
        while trials.len() < cfg.trials {
            if interrupt.is_cancelled() {
                result = Err(anyhow::anyhow!("interrupted in {} after {} trials", sc.name(), trials.len()));
                break;
            }
            n += 1;
            match trial(&cx, &pollers, &load, &rec, &nodes, sc, n, hb, hold, cfg, &mut rng, dir, pending.take()).await {
                Ok((t, p, prev_heal)) => {
                    if last_counted && let Some(last) = trials.last_mut() {
                        last.phases_ms[3] = prev_heal.as_secs_f64() * 1e3;
                    }
                    pending = Some(p);
                    last_counted = t.is_some();
                    match t {
                        Some(t) => trials.push(t),
                        None if void < cfg.trials => void += 1,
                        None => {
                            result = Err(anyhow::anyhow!("{} trials void: leadership kept moving before the faults landed", void + 1));
                            break;
                        }
                    }
                }
                Err(e) => {
                    result = Err(e.context(format!("{} trial {n}", sc.name())));
                    break;
                }
            }
        }
        // The scenario's last fault is healed inside its wall time, as every other one.
        if let Some(p) = pending.take() {
            match heal(&cx, &rec, p).await {
                Ok(d) => {
                    if last_counted && let Some(last) = trials.last_mut() {
                        last.phases_ms[3] = d.as_secs_f64() * 1e3;
                    }
                }
                Err(e) if result.is_ok() => result = Err(e),
                Err(_) => {}
            }
        }
        let wall_s = started.elapsed().as_secs_f64();
        let mut c = Cell::new(settings.db, &setting.label(), sc.name(), cfg.window.as_secs_f64() * 1000.0, trials, wall_s);
        c.void_trials = void;
        eprintln!(
            "{} {} {}: {} trials in {:.0} s, median unavailability {} ms ({} censored)",
            c.db,
            c.setting,
            c.scenario,
            c.unavailability.trials,
            wall_s,
            recovery_report::fmt_ms(c.unavailability.median_ms, c.window_ms),
            c.unavailability.censored
        );
        cells.push(c);
        // What is measured is on disk as the experiment goes, not only at its end.
        if let Err(e) = write_outputs(cfg, cells, verdicts) {
            tracing::warn!(error = %format!("{e:#}"), "writing the figures so far");
        }
        if result.is_err() {
            break;
        }
    }
    load.cancel.cancel();
    let _ = load.task.await;
    pollers.stop.store(true, Ordering::Relaxed);
    for t in pollers.tasks {
        let _ = t.await;
    }
    let skipped = load.skipped.load(Ordering::Relaxed);
    if skipped > 0 {
        eprintln!("{} {}: {skipped} arrivals skipped (every client process busy)", settings.db, setting.label());
    }
    rec.close().await;
    writer.finish().await?;
    let _ = faultline_nemesis::executor::heal(&cx, false).await;
    result?;
    let (valid, why) = check_history(&history)?;
    Ok((valid, why))
}

/// Writes `mib` MiB under `preload-<i>` keys, which no trial touches, before the load
/// starts: state a replaced node must catch up on. Not part of the checked history (nothing
/// reads these keys). [`PRELOAD_WRITERS`] clients write at once; a write that fails is
/// retried on a fresh connection to the next node a few times, then the deployment fails.
async fn preload(db: &Arc<dyn Database>, mib: u64, op_timeout: Duration) -> anyhow::Result<()> {
    const ATTEMPTS: usize = 5;
    if mib == 0 {
        return Ok(());
    }
    let t = Instant::now();
    let keys = ((mib as usize) << 20).div_ceil(PRELOAD_VALUE_BYTES);
    // Ids no load client uses (they count up from zero).
    let process = |w: usize| u64::MAX / 2 + w as u64;
    let timeout = op_timeout.max(Duration::from_secs(5));
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..PRELOAD_WRITERS {
        let db = db.clone();
        writers.spawn(async move {
            let nodes = db.nodes();
            let value = Value::String("p".repeat(PRELOAD_VALUE_BYTES));
            let mut at = w % nodes.len();
            let mut kv = db.client(&nodes[at], process(w));
            for i in (w..keys).step_by(PRELOAD_WRITERS) {
                let key = format!("preload-{i}");
                let mut attempt = 0;
                loop {
                    let e = match tokio::time::timeout(timeout, kv.write(&key, value.clone())).await {
                        Ok(Ok(())) => break,
                        Ok(Err(e)) => e.to_string(),
                        Err(_) => format!("no answer within {} ms", timeout.as_millis()),
                    };
                    attempt += 1;
                    if attempt == ATTEMPTS {
                        anyhow::bail!("preload: writing {key} failed {ATTEMPTS} times, last: {e}");
                    }
                    at = (at + 1) % nodes.len();
                    kv = db.client(&nodes[at], process(w));
                }
            }
            Ok(())
        });
    }
    while let Some(r) = writers.join_next().await {
        r.context("preload writer")??;
    }
    eprintln!("{}: preloaded {mib} MiB ({keys} keys) in {:.1} s", db.name(), t.elapsed().as_secs_f64());
    Ok(())
}

/// The last lines of every node's logs, into `<dir>/trial-<n>-<node>.log`.
async fn save_log_tails(cx: &InventoryCluster, dir: &std::path::Path, n: usize) {
    let logs = cx.db.layout().logs();
    let cmd = format!("tail -n 100 {logs}/* 2>&1");
    for (node, r) in cx.control.run_all(&cmd, Duration::from_secs(20)).await {
        let text = match r {
            Ok(o) => o.stdout_str(),
            Err(e) => format!("{e:#}"),
        };
        let _ = std::fs::write(dir.join(format!("trial-{n}-{node}.log")), text);
    }
}

/// The register workload's checkers over the experiment's whole history.
fn check_history(path: &std::path::Path) -> anyhow::Result<(Validity, String)> {
    let events = crate::runner::history::read_history(path)?;
    let names = crate::verdict::workload_checkers("register").unwrap_or(&["linearizable"]);
    let mut valid = Validity::Valid;
    let mut why = Vec::new();
    for name in names {
        let c = faultline_checkers::registry::lookup(name).with_context(|| format!("no checker {name}"))?;
        let t = Instant::now();
        let r = faultline_checkers::registry::unless_nothing_checked(&events, c.check(&events));
        tracing::info!(checker = name, seconds = t.elapsed().as_secs_f64(), "checked");
        if r.valid != Validity::Valid {
            why.push(format!("{name}: {:?}", r.valid));
        }
        valid = valid.and(r.valid);
    }
    Ok((valid, why.join("; ")))
}

/// A trial's fault, measured and not yet healed.
struct PendingHeal {
    pkg: &'static NemesisPackage,
    scenario: Scenario,
    applied: faultline_nemesis::Applied,
}

/// Heals `p` and records the nemesis's stop; returns how long the heal took.
async fn heal(cx: &InventoryCluster, rec: &Recorder, p: PendingHeal) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let (heal_ok, heal_errors) = journal::heal_on(cx, &p.applied.hosts, &journal::Select::Id(p.applied.journal_id.clone())).await;
    let error = (!heal_errors.is_empty()).then(|| heal_errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "));
    rec.named(
        faultline_checkers::Process::NEMESIS,
        if error.is_some() { EventType::Info } else { EventType::Ok },
        &p.pkg.stop_f(),
        json!({"healed": heal_ok.iter().map(|(n, ids)| json!({"node": n, "ids": ids})).collect::<Vec<_>>()}),
        None,
        error.clone(),
    )
    .await;
    match error {
        Some(e) => anyhow::bail!("healing {}: {e}", p.scenario.name()),
        None => Ok(t.elapsed()),
    }
}

/// Heals the previous trial's fault (if any) and waits for stable leadership: at once for
/// a process fault, one after the other otherwise (see the module docs). Returns the
/// stable (leader, term) and the heal's duration.
async fn heal_then_stable(
    cx: &InventoryCluster,
    pollers: &Pollers,
    rec: &Recorder,
    nodes: &[String],
    hold: Duration,
    prev: Option<PendingHeal>,
) -> (anyhow::Result<Duration>, anyhow::Result<(String, u64)>) {
    let Some(prev) = prev else {
        return (Ok(Duration::ZERO), wait_stable(pollers, rec, nodes, hold).await);
    };
    if prev.scenario.process_fault() {
        tokio::join!(heal(cx, rec, prev), wait_stable(pollers, rec, nodes, hold))
    } else {
        let h = heal(cx, rec, prev).await;
        if h.is_err() {
            return (h, Err(anyhow::anyhow!("not waited for: the heal failed")));
        }
        (h, wait_stable(pollers, rec, nodes, hold).await)
    }
}

/// One trial. `prev` is the previous trial's fault, healed here while this trial waits
/// for stability; this trial's own fault is returned unhealed, with the previous heal's
/// duration (for the previous trial's `phases_ms`).
#[allow(clippy::too_many_arguments)]
async fn trial(
    cx: &InventoryCluster,
    pollers: &Pollers,
    load: &Load,
    rec: &Recorder,
    nodes: &[String],
    sc: Scenario,
    n: usize,
    hb_ms: u64,
    hold: Duration,
    cfg: &Config,
    rng: &mut rand::rngs::StdRng,
    logs_dir: &std::path::Path,
    prev: Option<PendingHeal>,
) -> anyhow::Result<(Option<Trial>, PendingHeal, Duration)> {
    let t0 = Instant::now();
    let mut restarted = false;
    let (healed, stable) = heal_then_stable(cx, pollers, rec, nodes, hold, prev).await;
    let prev_heal = healed?;
    let (leader, term) = match stable {
        Ok(lt) => lt,
        Err(e) => {
            // A node that did not come back (its restart failed, or it died on start):
            // keep the evidence, start what is down, and give it one more wait.
            eprintln!("{} trial {n}: {e:#}; starting every node that is down and waiting again", sc.name());
            save_log_tails(cx, logs_dir, n).await;
            let _ = faultline_nemesis::executor::heal(cx, true).await;
            for node in nodes {
                let script = faultline_nemesis::kill::end_script(cx, node);
                if let Err(e) = faultline_nemesis::cluster::run_checked(cx, node, "start", &script).await {
                    eprintln!("{node}: start: {e}");
                }
            }
            restarted = true;
            wait_stable(pollers, rec, nodes, hold).await.context("after starting the nodes that were down")?
        }
    };
    let t_stable = Instant::now();
    let won_before = elections_won(&pollers.now());
    let offset = Duration::from_micros(rng.random_range(0..hb_ms * 1000));
    tokio::time::sleep(offset).await;
    let pkg: &NemesisPackage = faultline_nemesis::registry::lookup(sc.family())?;
    // The hosts heal on their own well after the window if this process dies mid-trial.
    let expiry = cfg.window * 2 + Duration::from_secs(30);
    let (opts, victims) = sc.fault(&leader, nodes, expiry, rng);
    let kc = KnownLeader { inner: cx, leader: leader.clone(), done_unix_ns: Mutex::new(None) };
    let inv_ns = rec
        .named(
            faultline_checkers::Process::NEMESIS,
            EventType::Invoke,
            &pkg.start_f(),
            json!({"scenario": sc.name(), "trial": n, "victims": victims}),
            None,
            None,
        )
        .await;
    let excluded: Vec<String> = if sc.forces_new_leader() { victims.clone() } else { Vec::new() };
    let term_min = if sc.forces_new_leader() { term + 1 } else { term };
    let process_fault = sc.process_fault();
    // A replacement: the old process is the one answering now; the fresh node must come to
    // hold what the leader has applied by now.
    let victim_at = nodes.iter().position(|n| *n == victims[0]);
    let (old_pid, target_index) = {
        let now = pollers.now();
        let status = |i: Option<usize>| i.and_then(|i| now[i].as_ref()).and_then(|s| s.status.clone());
        (
            status(victim_at).and_then(|st| st.pid),
            status(nodes.iter().position(|n| *n == leader)).and_then(|st| st.applied_index).unwrap_or(0),
        )
    };
    let mut caught_up_ns: Option<u64> = None;
    // The apply runs over SSH and returns well after the fault took effect (a kill waits
    // for the process to be gone), so the samples are watched while it runs.
    let fault_seed: u64 = rng.random();
    let mut apply = std::pin::pin!((pkg.start)(&kc, &opts, fault_seed));
    let mut applied = None;
    let mut applied_at: Option<(u64, Instant)> = None;
    let mut fault_ns: Option<u64> = None;
    // Writes invoked from here on started after the fault for certain.
    let mut after_ns = 0u64;
    let mut agreed: Option<(String, u64, u64)> = None;
    let mut recovered_ns: Option<u64> = None;
    loop {
        tokio::select! {
            r = &mut apply, if applied.is_none() => {
                match r {
                    Ok(a) => {
                        let at = rec
                            .named(faultline_checkers::Process::NEMESIS, EventType::Ok, &pkg.start_f(), a.description.clone(), None, None)
                            .await;
                        applied_at = Some((at, Instant::now()));
                        applied = Some(a);
                    }
                    Err(e) => {
                        rec.named(faultline_checkers::Process::NEMESIS, EventType::Info, &pkg.start_f(), Value::Null, None, Some(e.to_string()))
                            .await;
                        return Err(anyhow::Error::new(e).context(format!("applying {}", sc.name())));
                    }
                }
            }
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
        let samples = pollers.now();
        if agreed.is_none() {
            agreed = majority_leader(&samples, inv_ns, &excluded, term_min);
        }
        let victim_sample = victim_at.and_then(|i| samples[i].as_ref());
        // A replaced victim is gone once it is silent or another process answers for it.
        let replaced = |st: &NodeStatus| sc.membership() && old_pid.is_some() && st.pid != old_pid;
        let Some((applied_ns, applied_instant)) = applied_at else { continue };
        if fault_ns.is_none() {
            // A killed or paused victim: the fault struck after its last answer (the
            // fault's time, at most one poll period early) and before its poller saw it
            // silent (from then on a write certainly started after the fault). A replaced
            // one: after the old process's last answer.
            let silent = victim_sample
                .filter(|s| s.status.as_ref().is_none_or(replaced))
                .map(|s| {
                    let last_ok = if s.status.is_some() { s.previous_process_last_ok_ns } else { s.last_ok_ns };
                    (last_ok.unwrap_or(inv_ns).max(inv_ns), s.at_ns)
                });
            (fault_ns, after_ns) = match (process_fault, silent) {
                (false, _) => {
                    // The hosts' clock, mapped onto the history's (the same clock on a local
                    // cluster; NTP-close on real hosts), never later than the apply's return.
                    let to_history = |host_ns: u64| {
                        let unix_now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_nanos());
                        ((rec.now_ns() as u128 + host_ns as u128).saturating_sub(unix_now) as u64).clamp(inv_ns, applied_ns)
                    };
                    match *kc.done_unix_ns.lock().unwrap_or_else(|e| e.into_inner()) {
                        Some((lo, hi)) => (Some(to_history(lo)), to_history(hi)),
                        None => (Some(applied_ns), applied_ns),
                    }
                }
                (true, Some((last_ok, seen))) => (Some(last_ok), seen),
                (true, None) if applied_instant.elapsed() > Duration::from_secs(1) => (Some(applied_ns), applied_ns),
                (true, None) => (None, 0),
            };
        }
        let Some(f_ns) = fault_ns else { continue };
        if sc.membership() && caught_up_ns.is_none() {
            // The fresh process, a voter in the leader's configuration and in its own,
            // holding the target. Its own alone is not enough: a snapshot taken before the
            // removal lists it as a voter until the entries after the snapshot arrive.
            let leader_lists = samples
                .iter()
                .flatten()
                .filter(|s| s.at_ns > after_ns)
                .filter_map(|s| s.status.as_ref())
                .any(|st| st.role == "leader" && st.voters.contains(&victims[0]));
            caught_up_ns = victim_sample
                .filter(|_| leader_lists)
                .filter(|s| s.at_ns > after_ns)
                .filter(|s| {
                    s.status.as_ref().is_some_and(|st| {
                        (old_pid.is_none() || replaced(st))
                            && st.voters.contains(&victims[0])
                            && st.applied_index.is_some_and(|a| a >= target_index)
                    })
                })
                .map(|s| s.at_ns);
        }
        if recovered_ns.is_none() {
            let l = load.log.lock().unwrap_or_else(|e| e.into_inner());
            recovered_ns = l
                .writes_ok
                .iter()
                .rev()
                .take_while(|(_, c)| *c > after_ns)
                .filter(|(i, _)| *i >= after_ns)
                .map(|(_, c)| *c)
                .min();
        }
        let caught_up = !sc.membership()
            || caught_up_ns.is_some_and(|c| rec.now_ns() >= c + CATCH_UP_TAIL.as_nanos() as u64);
        if (agreed.is_some() && recovered_ns.is_some() && caught_up)
            || rec.now_ns() >= f_ns + cfg.window.as_nanos() as u64
        {
            break;
        }
    }
    let applied = applied.expect("the loop ends after the apply");
    // Read at the end, not when the majority agreed: the new leader's own sample may
    // predate its win by a poll period.
    let won_after = elections_won(&pollers.now());
    let fault_ns = fault_ns.expect("the loop ends after the fault time is known");
    // The SSH round trip of the apply gives leadership time to move on its own; a trial
    // whose new leader was agreed before the fault struck measured nothing of the fault.
    let void = process_fault && sc.forces_new_leader() && agreed.as_ref().is_some_and(|(_, _, at)| *at < fault_ns);
    let (applied_ns, t_applied) = applied_at.expect("applied");
    let end_ns = rec.now_ns();
    let t_measured = Instant::now();
    // Where the apply's time went: from its invocation until the host printed its clock
    // after the work (SSH channel, remote shell, the kill and its wait), and from then
    // until the SSH call returned.
    let apply_ms = kc.done_unix_ns.lock().unwrap_or_else(|e| e.into_inner()).map(|(_, hi)| {
        let unix_now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let done = ((rec.now_ns() as u128 + hi as u128).saturating_sub(unix_now) as u64).clamp(inv_ns, applied_ns);
        [(done - inv_ns) as f64 / 1e6, (applied_ns - done) as f64 / 1e6]
    });
    let pending = PendingHeal { pkg, scenario: sc, applied };
    let (gap, failed, indeterminate, dip) = {
        let l = load.log.lock().unwrap_or_else(|e| e.into_inner());
        let mut ok: Vec<u64> = l.writes_ok.iter().map(|(_, c)| *c).collect();
        ok.sort_unstable();
        // From the replacement's start (the removal included) to the end of the measurement.
        let dip = sc.membership().then(|| {
            throughput_dip(&ok, inv_ns, end_ns, DIP_BASELINE.as_nanos() as u64, DIP_BIN.as_nanos() as u64, DIP_THRESHOLD)
        });
        // A partition's rules may bite before any host reports them done: its gap is
        // searched from the invocation (the gaps before the outage are one arrival long).
        let from = if process_fault { fault_ns } else { inv_ns };
        let gap = recovered_ns.map(|r| longest_gap(&ok, from, r));
        let count = |v: &[u64]| v.iter().filter(|t| **t >= inv_ns && **t <= end_ns).count() as u64;
        (gap, count(&l.failed), count(&l.indeterminate), dip.flatten())
    };
    let unavailability_ms = gap.map(|(_, len)| len as f64 / 1e6);
    // A partition's rules land on the hosts over a span; the clients saw it strike at the
    // start of their longest gap, which bounds the fault's time within one arrival.
    let leader_from_ns = match gap {
        Some((start, _)) if !process_fault => start,
        _ => fault_ns,
    };
    if void {
        eprintln!("{} trial {n}: leadership moved before the fault struck; not counted", sc.name());
        return Ok((None, pending, prev_heal));
    }
    let catch_up = sc.membership().then(|| recovery_report::CatchUp {
        target_index,
        caught_up_ms: caught_up_ns.map(|c| c.saturating_sub(fault_ns) as f64 / 1e6),
        dip,
    });
    let censored = unavailability_ms.is_none() || catch_up.as_ref().is_some_and(|c| c.caught_up_ms.is_none());
    if censored {
        // A censored trial is the one worth reading the nodes' logs of.
        eprintln!("{} trial {n}: not recovered within {} ms; node log tails in {}", sc.name(), cfg.window.as_millis(), logs_dir.display());
        save_log_tails(cx, logs_dir, n).await;
    }
    let t = Trial {
        n,
        victims,
        leader_before: leader,
        term_before: term,
        offset_ms: offset.as_secs_f64() * 1000.0,
        unavailability_ms,
        leader_ms: agreed.as_ref().map(|(_, _, at)| (at.saturating_sub(leader_from_ns)) as f64 / 1e6),
        leader_after: agreed.as_ref().map(|(l, _, _)| l.clone()),
        terms_used: agreed.as_ref().map(|(_, t, _)| t.saturating_sub(term)),
        elections: agreed.as_ref().and_then(|_| elections_between(&won_before, &won_after)),
        failed,
        indeterminate,
        censored,
        catch_up,
        restarted_before: restarted,
        // The heal is filled in once it has run, during the next trial's wait.
        phases_ms: [
            (t_stable - t0).as_secs_f64() * 1e3,
            (t_applied - t_stable).as_secs_f64() * 1e3,
            (t_measured - t_applied).as_secs_f64() * 1e3,
            0.0,
        ],
        apply_ms,
    };
    Ok((Some(t), pending, prev_heal))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(at_ns: u64, role: &str, term: u64, leader: Option<&str>) -> Option<Sample> {
        Some(Sample {
            at_ns,
            status: Some(NodeStatus { role: role.into(), term, leader: leader.map(str::to_string), elections_won: None, applied_index: None, pid: None, voters: Vec::new() }),
            last_ok_ns: Some(at_ns),
            previous_process_last_ok_ns: None,
        })
    }

    fn nodes() -> Vec<String> {
        ["n1", "n2", "n3"].map(String::from).to_vec()
    }

    #[test]
    fn stability_needs_every_node_fresh_and_one_leader() {
        let ok = vec![s(10, "leader", 2, Some("n1")), s(11, "follower", 2, Some("n1")), s(12, "follower", 2, Some("n1"))];
        assert_eq!(unanimous(&ok, &nodes(), 5), Some(("n1".into(), 2)));
        // A sample from before the wait began does not count.
        assert_eq!(unanimous(&ok, &nodes(), 11), None);
        let mut split = ok.clone();
        split[2] = s(12, "follower", 3, Some("n1"));
        assert_eq!(unanimous(&split, &nodes(), 0), None);
        let mut silent = ok.clone();
        silent[1] = Some(Sample { at_ns: 11, status: None, last_ok_ns: Some(5), previous_process_last_ok_ns: None });
        assert_eq!(unanimous(&silent, &nodes(), 0), None);
        let mut two = ok;
        two[1] = s(11, "leader", 2, Some("n1"));
        assert_eq!(unanimous(&two, &nodes(), 0), None);
    }

    #[test]
    fn new_leader_needs_a_fresh_majority_without_the_victim() {
        // The killed n1 is silent; the deposed leader's followers still name it until they
        // hear from n2.
        let v = vec![None, s(30, "leader", 3, Some("n2")), s(20, "follower", 2, Some("n1"))];
        assert_eq!(majority_leader(&v, 10, &["n1".into()], 3), None);
        let v = vec![None, s(30, "leader", 3, Some("n2")), s(40, "follower", 3, Some("n2"))];
        assert_eq!(majority_leader(&v, 10, &["n1".into()], 3), Some(("n2".into(), 3, 40)));
        // The same answers from before the fault prove nothing.
        assert_eq!(majority_leader(&v, 35, &["n1".into()], 3), None);
    }

    #[test]
    fn unavailability_is_the_longest_gap_up_to_recovery() {
        let ok = [100, 110, 120, 400, 405, 900];
        // The fault at 115: gap 120 -> 400 is the longest up to the recovery at 405.
        assert_eq!(longest_gap(&ok, 115, 405), (120, 280));
        // A later gap (405 -> 900) is after recovery and not this fault's.
        assert_eq!(longest_gap(&ok, 115, 400), (120, 280));
        // No write before the fault: the gap runs from the fault.
        assert_eq!(longest_gap(&[300], 50, 300), (50, 250));
    }

    #[test]
    fn elections_count_only_nodes_that_answered_both_times() {
        // n1 was killed (no answer after), n2 won the election, n3 restarted (counter reset).
        let before = [Some(4), Some(1), Some(2)];
        let after = [None, Some(2), Some(0)];
        assert_eq!(elections_between(&before, &after), Some(1));
        assert_eq!(elections_between(&[None, None], &[Some(1), Some(1)]), None);
    }

    #[test]
    fn sweep_ranges_parse_and_bad_ones_are_usage_errors() {
        assert_eq!(parse_sweep("election_timeout_ms=150-150,150-300").unwrap(), vec![(150, 150), (150, 300)]);
        assert_eq!(parse_sweep("election-timeout-ms=12-24").unwrap(), vec![(12, 24)]);
        for bad in ["heartbeat_ms=1-2", "election_timeout_ms=300-150", "election_timeout_ms=", "election_timeout_ms=a-b", "150-300"] {
            let e = parse_sweep(bad).expect_err(bad);
            assert!(e.chain().any(|c| c.is::<crate::exit::UsageError>()), "{bad}: {e:#}");
        }
    }

    #[test]
    fn scenarios_target_what_they_say() {
        let nodes: Vec<String> = ["n1", "n2", "n3", "n4", "n5"].map(String::from).to_vec();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let exp = Duration::from_secs(60);
        let (o, v) = Scenario::KillLeader.fault("n3", &nodes, exp, &mut rng);
        assert_eq!(v, vec!["n3"]);
        assert_eq!(o.target, TargetSpec::Nodes(vec!["n3".into()]));
        let (_, v) = Scenario::KillFollower.fault("n3", &nodes, exp, &mut rng);
        assert!(v.len() == 1 && v[0] != "n3");
        let (_, v) = Scenario::KillMinority.fault("n3", &nodes, exp, &mut rng);
        assert!(v.len() == 2 && v[0] == "n3" && v[1] != "n3");
        let (o, _) = Scenario::OneWayLeader.fault("n3", &nodes, exp, &mut rng);
        assert!(o.one_way && o.shape == Shape::Leader);
        let (o, v) = Scenario::OneWayLeaderReverse.fault("n3", &nodes, exp, &mut rng);
        assert!(o.shape == Shape::LeaderMute && v == ["n3"]);
        assert!(Scenario::OneWayLeaderReverse.forces_new_leader());
        // A replacement acts on one follower, through the membership family, and keeps the
        // leader.
        let (o, v) = Scenario::ReplaceNode.fault("n3", &nodes, exp, &mut rng);
        assert!(v.len() == 1 && v[0] != "n3" && o.target == TargetSpec::Nodes(v.clone()));
        assert_eq!(Scenario::ReplaceNode.family(), "member-replace");
        assert!(faultline_nemesis::registry::lookup(Scenario::ReplaceNode.family()).is_ok_and(|p| p.membership));
        assert!(!Scenario::ReplaceNode.forces_new_leader() && Scenario::ReplaceNode.process_fault());
        for sc in Scenario::ALL {
            assert_eq!(Scenario::parse(sc.name()), Some(sc));
        }
    }

    const MS: u64 = 1_000_000;

    /// Completions every `gap_ms` from `from_ms` up to (not including) `to_ms`.
    fn every(gap_ms: u64, from_ms: u64, to_ms: u64) -> Vec<u64> {
        (from_ms..to_ms).step_by(gap_ms as usize).map(|t| t * MS).collect()
    }

    #[test]
    fn a_dip_is_the_worst_bin_against_the_second_before_and_spans_the_low_bins() {
        // 100 writes/s for a second, then from t=1000 ms: full rate for 250 ms, nothing for
        // 500 ms, half rate for 250 ms, full rate again.
        let mut ok = every(10, 0, 1250);
        ok.extend(every(20, 1750, 2000));
        ok.extend(every(10, 2000, 3000));
        let d = throughput_dip(&ok, 1000 * MS, 3000 * MS, 1000 * MS, 250 * MS, 0.9).unwrap();
        assert_eq!(d.baseline_writes_per_s, 100.0);
        assert_eq!(d.depth_pct, 100.0);
        // The bins 1250-1500, 1500-1750 (empty) and 1750-2000 (half) are low.
        assert_eq!(d.duration_ms, 750.0);
    }

    #[test]
    fn no_dip_at_the_baseline_rate_and_none_without_a_baseline() {
        let ok = every(10, 0, 3000);
        let d = throughput_dip(&ok, 1000 * MS, 3000 * MS, 1000 * MS, 250 * MS, 0.9).unwrap();
        assert_eq!((d.depth_pct, d.duration_ms), (0.0, 0.0));
        // The writes stop at 2890 ms: the partial bin 2750-2900 is not judged.
        let d = throughput_dip(&ok[..290], 1000 * MS, 2900 * MS, 1000 * MS, 250 * MS, 0.9).unwrap();
        assert_eq!(d.duration_ms, 0.0);
        let late = every(10, 1000, 3000);
        assert_eq!(throughput_dip(&late, 1000 * MS, 3000 * MS, 1000 * MS, 250 * MS, 0.9), None);
    }
}
