//! Deterministic simulation of a cluster of [`Replica`]s in one process (TigerBeetle/etcd
//! style): a seeded network that drops, duplicates, delays and partitions messages, crashes
//! that lose everything not yet persisted, and clients that record a Jepsen-format history.
//!
//! Everything is driven from one [`SplitMix64`], so a failing seed replays exactly. The
//! harness is protocol-agnostic; protocol-specific invariants (Raft's log matching, say) are
//! checked by the caller through [`Sim::run_with`] and [`Sim::replica`].
//!
//! Durability is modelled the way the real runtime provides it: each `Ready` is carried out
//! atomically (records "fsynced" before messages leave), and a crash keeps exactly the
//! snapshot and records persisted so far.
//!
//! The set of nodes can change during a run ([`Sim::add_node`], [`Sim::remove_node`]) so
//! that membership changes are exercised under the same faults. Node `id` lives at index
//! `id - 1` for ever: a removed node keeps its slot (empty), so after a few changes the
//! cluster's ids are neither `1..=n` nor contiguous, as cores must not assume they are.

pub mod net;

pub use self::net::Net;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use serde_json::json;

use crate::kv::{Command, Kv, Op, OpResult, Value};
use crate::replica::{
    Entry, EntryData, NodeId, ProposeError, Replica, ReplicaConfig, ReplicaError, Role, Snapshot, SplitMix64,
};

/// A property a run broke: a safety invariant, a convergence check, or a caller's check
/// passed to [`Sim::run_with`]. Plain text because each check words its own evidence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Violation(pub String);

impl From<String> for Violation {
    fn from(s: String) -> Self {
        Violation(s)
    }
}

impl From<&str> for Violation {
    fn from(s: &str) -> Self {
        Violation(s.to_string())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("node {node}: {source}")]
    Restore { node: NodeId, source: ReplicaError },
    /// `tick` is `None` for the end-of-run convergence checks. The seed replays the run.
    #[error("seed {seed}: {}: {violation}", match tick {
        Some(t) => format!("tick {t}"),
        None => "at end".to_string(),
    })]
    Violation { seed: u64, tick: Option<u64>, violation: Violation },
}

/// Fault and workload mix for one simulated run. Probabilities are per tick unless noted.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub nodes: usize,
    pub seed: u64,
    /// Ticks with faults and client load.
    pub ticks: u64,
    /// Ticks after `ticks` with every fault healed, for the cluster to converge.
    pub quiesce_ticks: u64,
    pub clients: usize,
    pub keys: usize,
    /// Per message.
    pub drop_prob: f64,
    /// Per message.
    pub dup_prob: f64,
    pub max_delay_ticks: u64,
    pub partition_prob: f64,
    pub partition_ticks_max: u64,
    pub crash_prob: f64,
    pub down_ticks_max: u64,
    /// A paused node (SIGSTOP) neither ticks nor runs; messages sent to it wait, like bytes in
    /// its socket buffers, and arrive together when it resumes, old terms and all.
    pub pause_prob: f64,
    pub pause_ticks_max: u64,
    /// Chance that a new partition cuts random individual links (bridges, rings, stars: a
    /// majority may be connected only through some nodes) instead of splitting into groups.
    pub partial_partition_prob: f64,
    /// Compact a node's log once this many entries were applied since its snapshot.
    pub compact_every: u64,
    pub op_timeout_ticks: u64,
    /// Ticks a client waits between operations (uniform in `0..=think_ticks_max`).
    pub think_ticks_max: u64,
    /// Election safety in Raft's sense: at most one leader per term. A Paxos core whose
    /// rounds are not unique per proposer turns this off.
    pub check_one_leader_per_term: bool,
    /// Applies the protocol's knobs to each node's config.
    pub tweak: fn(&mut ReplicaConfig),
}

impl SimConfig {
    pub fn new(seed: u64) -> Self {
        SimConfig {
            nodes: 3,
            seed,
            ticks: 3000,
            quiesce_ticks: 600,
            clients: 4,
            keys: 3,
            drop_prob: 0.05,
            dup_prob: 0.02,
            max_delay_ticks: 3,
            partition_prob: 0.004,
            partition_ticks_max: 200,
            crash_prob: 0.002,
            down_ticks_max: 150,
            pause_prob: 0.0,
            pause_ticks_max: 0,
            partial_partition_prob: 0.0,
            compact_every: 50,
            op_timeout_ticks: 120,
            think_ticks_max: 6,
            check_one_leader_per_term: true,
            tweak: |_| {},
        }
    }
}

/// Totals of one run, for assertions that the run did real work.
#[derive(Debug, Clone, Default)]
pub struct SimStats {
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
    pub crashes: u64,
    pub partitions: u64,
    pub partial_partitions: u64,
    pub pauses: u64,
    pub snapshots_installed: u64,
    pub compactions: u64,
    pub max_term: u64,
    pub leaders_seen: u64,
}

struct Flight<M> {
    from: NodeId,
    to: NodeId,
    msg: M,
}

struct SimNode<R: Replica> {
    id: NodeId,
    replica: Option<R>,
    /// The `members` this node was created with: a restart must hand the same ones back.
    seed_members: Vec<NodeId>,
    /// Taken out of the cluster for good: never restarted, sent nothing.
    removed: bool,
    down_until: u64,
    paused_until: u64,
    restarts: u64,
    durable_snapshot: Option<Snapshot>,
    durable_records: Vec<R::Record>,
    kv: Kv,
    applied: u64,
    applied_term: u64,
    /// `(client process, seq)` -> client slot.
    pending_writes: HashMap<(u64, u64), usize>,
    /// read id -> client slot, until its ReadState arrives.
    pending_reads: HashMap<u64, usize>,
    /// ReadStates waiting for the state machine to catch up: (index, read id, client slot).
    waiting_reads: Vec<(u64, u64, usize)>,
}

impl<R: Replica> SimNode<R> {
    /// A node that has never run: empty durable state, nothing applied or pending. Both
    /// the initial members and nodes added later start this way.
    fn fresh(id: NodeId, replica: R, seed_members: Vec<NodeId>) -> Self {
        SimNode {
            id,
            replica: Some(replica),
            seed_members,
            removed: false,
            down_until: 0,
            paused_until: 0,
            restarts: 0,
            durable_snapshot: None,
            durable_records: Vec::new(),
            kv: Kv::new(),
            applied: 0,
            applied_term: 0,
            pending_writes: HashMap::new(),
            pending_reads: HashMap::new(),
            waiting_reads: Vec::new(),
        }
    }
}

#[derive(Clone)]
enum ClientState {
    Idle { next_at: u64 },
    Waiting { f: &'static str, key: String, seq: u64, read_id: u64, deadline: u64 },
    Done,
}

struct SimClient {
    process: u64,
    seq: u64,
    leader_hint: Option<NodeId>,
    state: ClientState,
}

/// A simulated cluster. Build with [`Sim::new`], drive with [`Sim::run`] or [`Sim::run_with`].
pub struct Sim<R: Replica> {
    cfg: SimConfig,
    rng: SplitMix64,
    now: u64,
    nodes: Vec<SimNode<R>>,
    /// Min-heap on (deliver_at, sequence) for a deterministic delivery order.
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    flights: HashMap<u64, Flight<R::Message>>,
    next_flight: u64,
    /// Node index -> group; messages cross groups only when equal. `None` = no partition.
    partition: Option<(Vec<u8>, u64)>,
    /// Directed links cut by a partial partition, until the given tick.
    cut_links: Option<(std::collections::BTreeSet<(NodeId, NodeId)>, u64)>,
    clients: Vec<SimClient>,
    next_read_id: u64,
    history: Vec<serde_json::Value>,
    leader_of_term: BTreeMap<u64, NodeId>,
    /// The command committed at each index, by whichever node applied it first.
    chosen: HashMap<u64, EntryData>,
    pub stats: SimStats,
}

const PARTITION_NONE: u8 = 0;

impl<R: Replica> Sim<R> {
    pub fn new(cfg: SimConfig) -> Result<Self, SimError> {
        let members: Vec<NodeId> = (1..=cfg.nodes as u64).collect();
        let mut rng = SplitMix64::new(cfg.seed);
        let mut nodes = Vec::new();
        for &id in &members {
            let rc = Self::replica_config(&cfg, &members, id, rng.next_u64());
            let replica = R::restore(rc, None, Vec::new()).map_err(|source| SimError::Restore { node: id, source })?;
            nodes.push(SimNode::fresh(id, replica, members.clone()));
        }
        let clients = (0..cfg.clients)
            .map(|i| SimClient {
                process: i as u64,
                seq: 0,
                leader_hint: None,
                state: ClientState::Idle { next_at: 0 },
            })
            .collect();
        Ok(Sim {
            rng,
            now: 0,
            nodes,
            queue: BinaryHeap::new(),
            flights: HashMap::new(),
            next_flight: 0,
            partition: None,
            cut_links: None,
            clients,
            next_read_id: 1,
            history: Vec::new(),
            leader_of_term: BTreeMap::new(),
            chosen: HashMap::new(),
            stats: SimStats::default(),
            cfg,
        })
    }

    fn replica_config(cfg: &SimConfig, members: &[NodeId], id: NodeId, seed: u64) -> ReplicaConfig {
        let mut rc = ReplicaConfig::new(id, members.to_vec(), seed);
        (cfg.tweak)(&mut rc);
        rc
    }

    /// The live replica with index `i` (0-based), for protocol-specific invariant checks.
    pub fn replica(&self, i: usize) -> Option<&R> {
        self.nodes[i].replica.as_ref()
    }

    /// The live replica `id`, for a test driver that proposes membership changes.
    pub fn replica_mut(&mut self, id: NodeId) -> Option<&mut R> {
        self.nodes.get_mut(id.checked_sub(1)? as usize)?.replica.as_mut()
    }

    /// Ids of the nodes not removed (up or down).
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.nodes.iter().filter(|n| !n.removed).map(|n| n.id).collect()
    }

    /// Starts a fresh, empty node that joins an existing cluster; `members` is what it is
    /// told of the cluster (the current voters), and it does not include the new node itself.
    pub fn add_node(&mut self, members: Vec<NodeId>) -> Result<NodeId, SimError> {
        let id = self.nodes.len() as NodeId + 1;
        let rc = Self::replica_config(&self.cfg, &members, id, self.rng.next_u64());
        let replica = R::restore(rc, None, Vec::new()).map_err(|source| SimError::Restore { node: id, source })?;
        self.nodes.push(SimNode::fresh(id, replica, members));
        Ok(id)
    }

    /// Takes node `id` out for good (its disk is wiped): after its removal from the
    /// configuration committed, an operator decommissions it.
    pub fn remove_node(&mut self, id: NodeId) {
        let Some(n) = id.checked_sub(1).and_then(|i| self.nodes.get_mut(i as usize)) else { return };
        n.replica = None;
        n.removed = true;
        n.durable_records.clear();
        n.durable_snapshot = None;
        n.pending_writes.clear();
        n.pending_reads.clear();
        n.waiting_reads.clear();
    }

    /// Crashes node `id` (losing what it did not persist) for `down_ticks`; a driver uses it to
    /// crash a node at a chosen point, say right after a membership proposal.
    pub fn crash_node(&mut self, id: NodeId, down_ticks: u64) {
        let Some(i) = id.checked_sub(1).map(|i| i as usize).filter(|&i| i < self.nodes.len()) else { return };
        if self.nodes[i].replica.is_some() && !self.nodes[i].removed {
            let until = self.now + down_ticks;
            self.crash(i, until);
        }
    }

    /// Whether the run is still in its faulty phase (a driver stops changing things after).
    pub fn in_fault_phase(&self) -> bool {
        self.faulty()
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn now(&self) -> u64 {
        self.now
    }

    /// The recorded client history, one JSON object per event in the `checkers` format.
    pub fn history(&self) -> &[serde_json::Value] {
        &self.history
    }

    /// The command chosen at each index, as seen by the state machines.
    pub fn chosen(&self) -> &HashMap<u64, EntryData> {
        &self.chosen
    }

    pub fn run(&mut self) -> Result<(), SimError> {
        self.run_with(|_| Ok(()))
    }

    /// Runs the whole schedule, calling `check` after every tick. Any violation is returned
    /// with the seed so it can be replayed.
    pub fn run_with(&mut self, mut check: impl FnMut(&Self) -> Result<(), Violation>) -> Result<(), SimError> {
        self.run_driven(|s| check(s))
    }

    /// [`Sim::run_with`] with a hook that may also act on the cluster after every tick (add
    /// and remove nodes, propose membership changes) as well as check it.
    pub fn run_driven(&mut self, mut drive: impl FnMut(&mut Self) -> Result<(), Violation>) -> Result<(), SimError> {
        let total = self.cfg.ticks + self.cfg.quiesce_ticks;
        let seed = self.cfg.seed;
        while self.now < total {
            let stepped = self.step_once().and_then(|()| drive(self));
            stepped.map_err(|violation| SimError::Violation { seed, tick: Some(self.now), violation })?;
        }
        self.finish().map_err(|violation| SimError::Violation { seed, tick: None, violation })
    }

    fn faulty(&self) -> bool {
        self.now < self.cfg.ticks
    }

    fn step_once(&mut self) -> Result<(), Violation> {
        self.now += 1;
        self.faults();
        for i in 0..self.nodes.len() {
            if self.paused(i) {
                continue;
            }
            if let Some(r) = self.nodes[i].replica.as_mut() {
                r.tick();
            }
        }
        self.deliver();
        self.clients_invoke();
        for i in 0..self.nodes.len() {
            if !self.paused(i) {
                self.process_ready(i)?;
            }
        }
        self.client_timeouts();
        self.check_leaders()
    }

    fn faults(&mut self) {
        let now = self.now;
        // Restarts happen even after the faulty phase so the cluster can converge.
        for i in 0..self.nodes.len() {
            if self.nodes[i].replica.is_none()
                && !self.nodes[i].removed
                && (now >= self.nodes[i].down_until || !self.faulty())
            {
                self.restart(i);
            }
        }
        if let Some((_, until)) = &self.partition
            && (now >= *until || !self.faulty())
        {
            self.partition = None;
        }
        if let Some((_, until)) = &self.cut_links
            && (now >= *until || !self.faulty())
        {
            self.cut_links = None;
        }
        if !self.faulty() {
            return;
        }
        if self.cfg.pause_prob > 0.0 && self.rng.chance(self.cfg.pause_prob) {
            let i = (self.rng.next_u64() % self.nodes.len() as u64) as usize;
            if self.nodes[i].replica.is_some() && !self.paused(i) {
                self.nodes[i].paused_until = now + self.rng.range_inclusive(1, self.cfg.pause_ticks_max.max(1));
                self.stats.pauses += 1;
            }
        }
        let no_partition = self.partition.is_none() && self.cut_links.is_none();
        if no_partition && self.cfg.partial_partition_prob > 0.0 && self.rng.chance(self.cfg.partition_prob) {
            let len = self.rng.range_inclusive(1, self.cfg.partition_ticks_max);
            if self.rng.chance(self.cfg.partial_partition_prob) {
                let mut cut = std::collections::BTreeSet::new();
                let ids = self.node_ids();
                for &a in &ids {
                    for &b in &ids {
                        if a < b && self.rng.chance(0.4) {
                            cut.insert((a, b));
                            cut.insert((b, a));
                        }
                    }
                }
                self.cut_links = Some((cut, now + len));
                self.stats.partial_partitions += 1;
            } else {
                let groups: Vec<u8> = (0..self.nodes.len()).map(|_| 1 + (self.rng.next_u64() % 2) as u8).collect();
                self.partition = Some((groups, now + len));
            }
            self.stats.partitions += 1;
        } else if no_partition && self.cfg.partial_partition_prob == 0.0 && self.rng.chance(self.cfg.partition_prob) {
            let groups: Vec<u8> = (0..self.nodes.len()).map(|_| 1 + (self.rng.next_u64() % 2) as u8).collect();
            let len = self.rng.range_inclusive(1, self.cfg.partition_ticks_max);
            self.partition = Some((groups, now + len));
            self.stats.partitions += 1;
        }
        if self.rng.chance(self.cfg.crash_prob) {
            let i = (self.rng.next_u64() % self.nodes.len() as u64) as usize;
            if self.nodes[i].replica.is_some() {
                let down = self.rng.range_inclusive(1, self.cfg.down_ticks_max);
                self.crash(i, now + down);
            }
        }
    }

    /// Loses all volatile state: the replica, the state machine, pending requests.
    fn crash(&mut self, i: usize, until: u64) {
        let n = &mut self.nodes[i];
        n.replica = None;
        n.down_until = until;
        n.paused_until = 0;
        n.kv = Kv::new();
        n.pending_writes.clear();
        n.pending_reads.clear();
        n.waiting_reads.clear();
        self.stats.crashes += 1;
    }

    fn restart(&mut self, i: usize) {
        let seed = self.rng.next_u64();
        let n = &mut self.nodes[i];
        n.restarts += 1;
        let rc = Self::replica_config(&self.cfg, &n.seed_members, n.id, seed);
        let replica = R::restore(rc, n.durable_snapshot.clone(), n.durable_records.clone())
            .unwrap_or_else(|e| panic!("seed {}: node {} cannot restore: {e}", self.cfg.seed, n.id));
        n.replica = Some(replica);
        match &n.durable_snapshot {
            Some(s) => {
                n.kv = Kv::restore(&s.data).expect("sim snapshots decode");
                n.applied = s.index;
                n.applied_term = s.term;
            }
            None => {
                n.kv = Kv::new();
                n.applied = 0;
                n.applied_term = 0;
            }
        }
    }

    /// Whether node index `i` is stopped. Every pause ends with the faulty phase.
    fn paused(&self, i: usize) -> bool {
        self.faulty() && self.now < self.nodes[i].paused_until
    }

    fn connected(&self, from: NodeId, to: NodeId) -> bool {
        if self.cut_links.as_ref().is_some_and(|(cut, _)| cut.contains(&(from, to))) {
            return false;
        }
        match &self.partition {
            None => true,
            Some((groups, _)) => {
                let g = |id: NodeId| groups.get((id - 1) as usize).copied().unwrap_or(PARTITION_NONE);
                g(from) == g(to)
            }
        }
    }

    fn send(&mut self, from: NodeId, to: NodeId, msg: R::Message) {
        if !self.connected(from, to) || (self.faulty() && self.rng.chance(self.cfg.drop_prob)) {
            return;
        }
        let copies = if self.faulty() && self.rng.chance(self.cfg.dup_prob) { 2 } else { 1 };
        for _ in 0..copies {
            let at = self.now + self.rng.range_inclusive(1, self.cfg.max_delay_ticks.max(1));
            let seq = self.next_flight;
            self.next_flight += 1;
            self.queue.push(Reverse((at, seq)));
            self.flights.insert(seq, Flight { from, to, msg: msg.clone() });
        }
    }

    fn deliver(&mut self) {
        while let Some(Reverse((at, seq))) = self.queue.peek().copied() {
            if at > self.now {
                break;
            }
            self.queue.pop();
            if self.paused((self.flights[&seq].to - 1) as usize) {
                // Held for the stopped node, in order; it reads them all when it resumes.
                self.queue.push(Reverse((self.now + 1, seq)));
                continue;
            }
            let f = self.flights.remove(&seq).expect("queued flight exists");
            // A partition that began while the message was in flight also cuts it.
            if !self.connected(f.from, f.to) {
                continue;
            }
            if let Some(r) = self.nodes[(f.to - 1) as usize].replica.as_mut() {
                r.step(f.from, f.msg);
            }
        }
    }

    fn process_ready(&mut self, i: usize) -> Result<(), Violation> {
        for _ in 0..16 {
            let Some(r) = self.nodes[i].replica.as_mut() else { return Ok(()) };
            if !r.has_ready() {
                break;
            }
            let rd = r.ready();
            let from = self.nodes[i].id;
            let mut installed = false;
            if let Some(s) = rd.snapshot {
                let n = &mut self.nodes[i];
                if s.index <= n.applied {
                    return Err(Violation(format!(
                        "node {from}: snapshot at {} does not advance applied {}",
                        s.index, n.applied
                    )));
                }
                n.kv = Kv::restore(&s.data).map_err(|e| Violation(format!("snapshot decode: {e}")))?;
                n.applied = s.index;
                n.applied_term = s.term;
                n.durable_snapshot = Some(s);
                installed = true;
                self.stats.snapshots_installed += 1;
            }
            self.nodes[i].durable_records.extend(rd.records);
            for (to, msg) in rd.messages {
                if to == from || to == 0 || to > self.nodes.len() as NodeId {
                    return Err(Violation(format!("node {from} sent a message to {to}")));
                }
                if !self.nodes[(to - 1) as usize].removed {
                    self.send(from, to, msg);
                }
            }
            for e in rd.committed {
                self.apply(i, e)?;
            }
            for rs in rd.read_states {
                if let Some(slot) = self.nodes[i].pending_reads.remove(&rs.id) {
                    self.nodes[i].waiting_reads.push((rs.index, rs.id, slot));
                }
            }
            self.serve_reads(i);
            if installed {
                let n = &mut self.nodes[i];
                n.durable_records = n.replica.as_ref().expect("live").durable_records();
            }
            self.maybe_compact(i)?;
        }
        Ok(())
    }

    fn apply(&mut self, i: usize, e: Entry) -> Result<(), Violation> {
        let n = &mut self.nodes[i];
        if e.index != n.applied + 1 {
            return Err(Violation(format!("node {}: applied {} then got entry {}", n.id, n.applied, e.index)));
        }
        // State machine safety: no two replicas apply different commands at one index.
        match self.chosen.get(&e.index) {
            Some(d) if *d != e.data => {
                return Err(Violation(format!(
                    "node {} applied {:?} at {} but another applied {:?}",
                    n.id, e.data, e.index, d
                )));
            }
            Some(_) => {}
            None => {
                self.chosen.insert(e.index, e.data.clone());
            }
        }
        n.applied = e.index;
        n.applied_term = e.term;
        let EntryData::Command(bytes) = &e.data else { return Ok(()) };
        let cmd =
            Command::decode(bytes).map_err(|err| Violation(format!("undecodable command at {}: {err}", e.index)))?;
        let result = n.kv.apply(e.index, &cmd);
        // The slot may have moved on to a new process (its old one timed out) that has reached
        // the same seq by now: the old process's late write is not the new one's.
        if let Some(slot) = n.pending_writes.remove(&(cmd.client, cmd.seq))
            && self.clients[slot].process == cmd.client
        {
            self.complete(slot, cmd.seq, Some(result));
        }
        Ok(())
    }

    fn serve_reads(&mut self, i: usize) {
        let applied = self.nodes[i].applied;
        let mut ready = Vec::new();
        self.nodes[i].waiting_reads.retain(|&(index, id, slot)| {
            if index <= applied {
                ready.push((id, slot));
                false
            } else {
                true
            }
        });
        for (id, slot) in ready {
            let ClientState::Waiting { key, read_id, .. } = &self.clients[slot].state else { continue };
            if *read_id != id {
                continue;
            }
            let r = self.nodes[i].kv.read(key);
            self.complete(slot, 0, Some(r));
        }
    }

    fn maybe_compact(&mut self, i: usize) -> Result<(), Violation> {
        let n = &mut self.nodes[i];
        let Some(r) = n.replica.as_mut() else { return Ok(()) };
        let snap_index = n.durable_snapshot.as_ref().map_or(0, |s| s.index);
        if n.applied < snap_index + self.cfg.compact_every {
            return Ok(());
        }
        let snap = Snapshot { index: n.applied, term: n.applied_term, data: n.kv.snapshot() };
        r.compact(snap.clone()).map_err(|e| Violation(format!("node {}: compact: {e}", n.id)))?;
        n.durable_records = r.durable_records();
        n.durable_snapshot = Some(snap);
        self.stats.compactions += 1;
        Ok(())
    }

    fn check_leaders(&mut self) -> Result<(), Violation> {
        for n in &self.nodes {
            let Some(r) = &n.replica else { continue };
            let st = r.status();
            self.stats.max_term = self.stats.max_term.max(st.term);
            if st.role != Role::Leader {
                continue;
            }
            match self.leader_of_term.get(&st.term) {
                Some(&other) if other != n.id && self.cfg.check_one_leader_per_term => {
                    return Err(Violation(format!(
                        "election safety: {} and {} both lead term {}",
                        other, n.id, st.term
                    )));
                }
                Some(_) => {}
                None => {
                    self.leader_of_term.insert(st.term, n.id);
                    self.stats.leaders_seen += 1;
                }
            }
        }
        Ok(())
    }

    fn record(&mut self, process: u64, kind: &str, f: &str, key: &str, value: serde_json::Value) {
        self.history.push(json!({
            "time": self.now * 1_000_000,
            "process": process,
            "type": kind,
            "f": f,
            "key": key,
            "value": value,
        }));
    }

    fn clients_invoke(&mut self) {
        if !self.faulty() {
            return;
        }
        for slot in 0..self.clients.len() {
            let ClientState::Idle { next_at } = self.clients[slot].state else { continue };
            if next_at > self.now {
                continue;
            }
            let key = format!("k{}", self.rng.next_u64() % self.cfg.keys as u64);
            let (f, op, value) = match self.rng.next_u64() % 3 {
                0 => ("read", Op::Read { key: key.clone() }, serde_json::Value::Null),
                1 => {
                    let v = (self.rng.next_u64() % 5) as i64;
                    ("write", Op::Write { key: key.clone(), value: Value::Int(v) }, json!(v))
                }
                _ => {
                    let a = (self.rng.next_u64() % 5) as i64;
                    let b = (self.rng.next_u64() % 5) as i64;
                    ("cas", Op::Cas { key: key.clone(), from: Value::Int(a), to: Value::Int(b) }, json!([a, b]))
                }
            };
            let target = match self.clients[slot].leader_hint {
                Some(l) if self.rng.chance(0.9) => l,
                _ => {
                    let ids = self.node_ids();
                    ids[(self.rng.next_u64() % ids.len() as u64) as usize]
                }
            };
            let c = &mut self.clients[slot];
            c.seq += 1;
            let (process, seq) = (c.process, c.seq);
            self.record(process, "invoke", f, &key, value);
            let read_id = self.next_read_id;
            self.next_read_id += 1;
            self.clients[slot].state = ClientState::Waiting {
                f,
                key: key.clone(),
                seq,
                read_id,
                deadline: self.now + self.cfg.op_timeout_ticks,
            };
            if target == 0 || target > self.nodes.len() as NodeId {
                self.fail(slot, "connection refused");
                continue;
            }
            if self.paused((target - 1) as usize) {
                // A stopped node accepts the connection but never answers: the client times out.
                continue;
            }
            let node = &mut self.nodes[(target - 1) as usize];
            let Some(r) = node.replica.as_mut() else {
                self.fail(slot, "connection refused");
                continue;
            };
            let res = if f == "read" {
                r.read_index(read_id).map(|_| node.pending_reads.insert(read_id, slot)).map(|_| ())
            } else {
                let cmd = Command { client: process, seq, op };
                r.propose(vec![cmd.encode()]).map(|_| {
                    node.pending_writes.insert((process, seq), slot);
                })
            };
            if let Err(e) = res {
                if let ProposeError::NotLeader { leader } = e {
                    self.clients[slot].leader_hint = leader;
                }
                self.fail(slot, "not-leader");
            }
        }
    }

    fn fail(&mut self, slot: usize, why: &str) {
        let ClientState::Waiting { f, key, .. } = self.clients[slot].state.clone() else { return };
        let p = self.clients[slot].process;
        self.history.push(json!({
            "time": self.now * 1_000_000, "process": p, "type": "fail", "f": f, "key": key,
            "value": serde_json::Value::Null, "error": why,
        }));
        self.stats.fail += 1;
        self.idle(slot);
    }

    fn idle(&mut self, slot: usize) {
        let think = self.rng.range_inclusive(0, self.cfg.think_ticks_max);
        self.clients[slot].state = ClientState::Idle { next_at: self.now + think };
    }

    /// Completes the op a client is waiting for, if it is still the one with `seq` (0 for reads).
    fn complete(&mut self, slot: usize, seq: u64, result: Option<OpResult>) {
        let ClientState::Waiting { f, key, seq: want, .. } = self.clients[slot].state.clone() else { return };
        if (f == "read") != (seq == 0) || (seq != 0 && seq != want) {
            return;
        }
        let p = self.clients[slot].process;
        let invoke_value = self
            .history
            .iter()
            .rev()
            .find(|e| e["process"] == json!(p) && e["type"] == "invoke")
            .map(|e| e["value"].clone())
            .unwrap_or_default();
        let (kind, value) = match result {
            Some(OpResult::Read(v)) => ("ok", v.map_or(serde_json::Value::Null, |v| v.to_json())),
            Some(OpResult::Written) => ("ok", invoke_value),
            Some(OpResult::CasMismatch { .. }) => ("fail", invoke_value),
            Some(other) => panic!("seed {}: unexpected result {other:?}", self.cfg.seed),
            None => return,
        };
        self.record(p, kind, f, &key, value);
        if kind == "fail" {
            // The compare ran and saw another value: the checker may use that observation.
            self.history.last_mut().expect("just recorded")["error"] = json!("cas-mismatch");
        }
        if kind == "ok" {
            self.stats.ok += 1;
        } else {
            self.stats.fail += 1;
        }
        self.idle(slot);
    }

    fn client_timeouts(&mut self) {
        let n = self.cfg.clients as u64;
        for slot in 0..self.clients.len() {
            let ClientState::Waiting { f, key, deadline, .. } = self.clients[slot].state.clone() else { continue };
            if deadline > self.now {
                continue;
            }
            let p = self.clients[slot].process;
            self.history.push(json!({
                "time": self.now * 1_000_000, "process": p, "type": "info", "f": f, "key": key,
                "value": serde_json::Value::Null, "error": "timeout",
            }));
            self.stats.info += 1;
            // A client with an indefinite op never invokes again (Jepsen rule); its worker
            // continues as a fresh process.
            let c = &mut self.clients[slot];
            c.process += n;
            c.seq = 0;
            c.leader_hint = None;
            c.state =
                if self.now < self.cfg.ticks { ClientState::Idle { next_at: self.now } } else { ClientState::Done };
        }
        if !self.faulty() {
            for slot in 0..self.clients.len() {
                if matches!(self.clients[slot].state, ClientState::Idle { .. }) {
                    self.clients[slot].state = ClientState::Done;
                }
            }
        }
    }

    /// After the quiet period every node is up, agrees on one leader and has applied
    /// everything that was committed: a liveness check that catches stuck clusters.
    fn finish(&mut self) -> Result<(), Violation> {
        let mut leaders = Vec::new();
        let mut applied = Vec::new();
        for n in self.nodes.iter().filter(|n| !n.removed) {
            let r = n.replica.as_ref().ok_or_else(|| Violation(format!("node {} still down", n.id)))?;
            let st = r.status();
            if st.role == Role::Leader {
                leaders.push((n.id, st.term));
            }
            applied.push(n.applied);
        }
        if leaders.len() != 1 {
            return Err(Violation(format!("expected one leader after healing, found {leaders:?}")));
        }
        let max = *applied.iter().max().unwrap_or(&0);
        if applied.iter().any(|&a| a != max) {
            return Err(Violation(format!("replicas did not converge after healing: applied {applied:?}")));
        }
        let mut states = self.nodes.iter().filter(|n| !n.removed).map(|n| &n.kv);
        let first = states.next().expect("at least one node");
        if states.any(|kv| kv_data(kv) != kv_data(first)) {
            return Err("replica states differ after converging".into());
        }
        Ok(())
    }
}

fn kv_data(kv: &Kv) -> Vec<u8> {
    // Sessions are a HashMap; compare through a canonical encoding of the data only.
    let mut v = postcard::to_allocvec(&kv.dump()).expect("serializable");
    v.shrink_to_fit();
    v
}
