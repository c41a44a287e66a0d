//! A lossless in-process network for scenario tests of one core: every message is delivered
//! unless its directed link is cut, each `Ready` is carried out in full (WAL, snapshot,
//! committed entries, read states), and nodes can crash and restart from what they
//! persisted. The randomized [`Sim`](super::Sim) covers fault schedules; this is for tests
//! that script one situation exactly, like the Raft paper's sentences.

use std::collections::BTreeSet;

use crate::replica::{Entry, EntryData, NodeId, Replica, ReplicaConfig, ReplicaError, Role, Snapshot};

pub struct Net<R: Replica> {
    /// `None` while crashed. Node `id` is at `id - 1`.
    pub nodes: Vec<Option<R>>,
    /// Durable state per node: what a restart gets back.
    pub wal: Vec<(Option<Snapshot>, Vec<R::Record>)>,
    /// Committed entries handed out per node, in order (a crash forgets them).
    pub applied: Vec<Vec<Entry>>,
    /// Confirmed reads per node, as (read id, read index).
    pub reads: Vec<Vec<(u64, u64)>>,
    /// Directed links that drop everything.
    pub cut: BTreeSet<(NodeId, NodeId)>,
    /// Messages sent and not yet delivered, as (from, to, message).
    pub in_flight: Vec<(NodeId, NodeId, R::Message)>,
    /// Ticks taken by [`Net::tick_delayed`].
    pub now: u64,
}

impl<R: Replica> Net<R> {
    /// `nodes[i]` must be the replica with id `i + 1`.
    pub fn new(nodes: Vec<R>) -> Self {
        let n = nodes.len();
        Net {
            nodes: nodes.into_iter().map(Some).collect(),
            wal: (0..n).map(|_| (None, Vec::new())).collect(),
            applied: vec![Vec::new(); n],
            reads: vec![Vec::new(); n],
            cut: BTreeSet::new(),
            in_flight: Vec::new(),
            now: 0,
        }
    }

    /// `n` fresh replicas built from `cfg(id)`.
    pub fn fresh(n: u64, cfg: impl Fn(NodeId) -> ReplicaConfig) -> Result<Self, ReplicaError> {
        let nodes = (1..=n).map(|id| R::restore(cfg(id), None, Vec::new())).collect::<Result<_, _>>()?;
        Ok(Net::new(nodes))
    }

    /// Adds replica `r` (whose id must be the next one, `nodes.len() + 1`), say a fresh
    /// server about to join the cluster.
    pub fn add(&mut self, r: R) -> NodeId {
        self.nodes.push(Some(r));
        self.wal.push((None, Vec::new()));
        self.applied.push(Vec::new());
        self.reads.push(Vec::new());
        self.nodes.len() as NodeId
    }

    /// The live replica `id`; panics when it is crashed (a scripted test knows).
    pub fn node(&mut self, id: NodeId) -> &mut R {
        self.nodes[(id - 1) as usize].as_mut().expect("node is up")
    }

    pub fn ids(&self) -> Vec<NodeId> {
        (1..=self.nodes.len() as u64).collect()
    }

    pub fn isolate(&mut self, id: NodeId) {
        for other in self.ids() {
            if other != id {
                self.cut.insert((id, other));
                self.cut.insert((other, id));
            }
        }
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Allows exactly the undirected links in `links`.
    pub fn set_links(&mut self, links: &[(NodeId, NodeId)]) {
        self.cut.clear();
        for a in self.ids() {
            for b in self.ids() {
                if a != b && !links.contains(&(a, b)) && !links.contains(&(b, a)) {
                    self.cut.insert((a, b));
                }
            }
        }
    }

    /// Every undirected link, each once.
    pub fn full_mesh(&self) -> Vec<(NodeId, NodeId)> {
        let ids = self.ids();
        ids.iter().flat_map(|&a| ids.iter().filter(move |&&b| b > a).map(move |&b| (a, b))).collect()
    }

    /// Loses everything `id` did not persist.
    pub fn crash(&mut self, id: NodeId) {
        self.nodes[(id - 1) as usize] = None;
        self.applied[(id - 1) as usize].clear();
    }

    /// Restarts node `cfg.id` from its snapshot and WAL records.
    pub fn restart_with(&mut self, cfg: ReplicaConfig) -> Result<(), ReplicaError> {
        let i = (cfg.id - 1) as usize;
        let (snap, recs) = self.wal[i].clone();
        self.nodes[i] = Some(R::restore(cfg, snap, recs)?);
        Ok(())
    }

    /// Carries out node `i`'s pending `Ready`s; returns whether there were any.
    fn drain(&mut self, i: usize) -> bool {
        let from = i as NodeId + 1;
        let mut moved = false;
        while let Some(p) = self.nodes[i].as_mut().filter(|p| p.has_ready()) {
            moved = true;
            let rd = p.ready();
            if let Some(s) = rd.snapshot {
                self.applied[i].retain(|e| e.index > s.index);
                self.wal[i].0 = Some(s);
            }
            self.wal[i].1.extend(rd.records);
            self.in_flight.extend(rd.messages.into_iter().map(|(to, m)| (from, to, m)));
            self.applied[i].extend(rd.committed);
            self.reads[i].extend(rd.read_states.iter().map(|r| (r.id, r.index)));
        }
        moved
    }

    fn deliver(&mut self) -> bool {
        let q = std::mem::take(&mut self.in_flight);
        let moved = !q.is_empty();
        for (from, to, m) in q {
            if self.cut.contains(&(from, to)) {
                continue;
            }
            // A message to a node that does not exist (any more) is lost.
            if let Some(Some(p)) = to.checked_sub(1).and_then(|i| self.nodes.get_mut(i as usize)) {
                p.step(from, m);
            }
        }
        moved
    }

    /// Carries out every pending `Ready` and delivers messages until nothing moves.
    pub fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                moved |= self.drain(i);
            }
            moved |= self.deliver();
            if !moved {
                return;
            }
        }
        panic!("network did not settle");
    }

    /// Ticks every live node `n` times, settling after each tick.
    pub fn tick(&mut self, n: u32) {
        for _ in 0..n {
            for p in self.nodes.iter_mut().flatten() {
                p.tick();
            }
            self.settle();
        }
    }

    /// One tick of a network with a one-tick delay: what was sent during the previous tick
    /// arrives, every node ticks, and what they send now waits for the next tick.
    pub fn tick_delayed(&mut self) {
        self.now += 1;
        self.deliver();
        for p in self.nodes.iter_mut().flatten() {
            p.tick();
        }
        for i in 0..self.nodes.len() {
            self.drain(i);
        }
    }

    /// Every live node that believes it leads (a stale leader may still believe so).
    pub fn leaders(&self) -> Vec<NodeId> {
        self.nodes.iter().flatten().map(|p| p.status()).filter(|s| s.role == Role::Leader).map(|s| s.id).collect()
    }

    /// The lowest-numbered live node that believes it leads.
    pub fn leader(&self) -> Option<NodeId> {
        self.leaders().first().copied()
    }

    pub fn max_commit(&self) -> u64 {
        self.nodes.iter().flatten().map(|p| p.status().commit_index).max().unwrap_or(0)
    }

    /// The commands node `id` applied, in order, without no-ops.
    pub fn commands(&self, id: NodeId) -> Vec<Vec<u8>> {
        self.applied[(id - 1) as usize]
            .iter()
            .filter_map(|e| match &e.data {
                EntryData::Command(c) => Some(c.clone()),
                EntryData::Noop | EntryData::Config(_) => None,
            })
            .collect()
    }
}
