//! The Multi-Paxos replica: proposer, acceptor and learner in one pure state machine.
//!
//! # Roles
//! Every node is an acceptor and a learner. A node that stops hearing a leader for a
//! randomized election timeout probes its peers (if `prevote`), then runs phase 1 with a
//! fresh ballot for every slot above its chosen prefix. Unlike Raft, *any* node may do this:
//! the promises from a quorum carry every value a quorum may have chosen, and the new leader
//! re-proposes those values (no-ops in holes) under its own ballot before serving new
//! commands. A leader then runs only phase 2, one slot per command, pipelined up to
//! `batch_max * max_inflight_msgs` unchosen slots.
//!
//! # Learning
//! A leader knows a slot is chosen when a quorum accepted it under its ballot. It tells the
//! others through the `commit` carried by every `Accept` and `Heartbeat`: an acceptor whose
//! value at a slot `<= commit` was accepted under the *same* ballot knows that value is the
//! chosen one. That inference is sound because a leader only ever reports a commit point at
//! which every slot's chosen value equals what it proposed under its ballot — if it learns a
//! different chosen value (possible only if a higher ballot chose it), it steps down first.
//! Everything else a learner misses arrives as explicit `Chosen` values or a snapshot.
//!
//! # Durability
//! Promises and accepted values are written as [`Record`]s in the same `Ready` as the
//! replies that depend on them, and the runtime makes them durable before sending. Chosen
//! flags set by the commit inference are not persisted: after a restart they are learned
//! again from the leader.

use std::collections::{BTreeMap, VecDeque};

use crate::replica::{
    Entry, EntryData, MembershipChange, MembershipError, NodeId, ProposeError, ReadState, Ready, Replica, ReplicaConfig, ReplicaError, Role, Snapshot,
    SplitMix64, Status,
};

use super::msg::{Ballot, Message, Record, SlotValue};

/// At most this many committed entries are handed out per `Ready`; the rest follow.
const MAX_COMMITTED_PER_READY: usize = 4096;
/// Entries per `Record::Slots` when the log is rewritten.
const SLOTS_PER_RECORD: usize = 1024;
/// A new leader re-proposes every open slot above its chosen prefix. Honest peers only ever
/// leave a few pipelining windows open (the chosen ones are learned from the promises first),
/// so a range wider than this comes from a corrupt peer and is refused rather than walked.
const MAX_RECOVERY_SLOTS: u64 = 1 << 22;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Slot {
    ballot: Ballot,
    data: EntryData,
    chosen: bool,
}

#[derive(Debug, Clone, Default)]
struct PeerProgress {
    /// Heard from under the current ballot since the last quorum check.
    active: bool,
    /// Highest heartbeat context acknowledged under the current ballot.
    read_ctx: u64,
    /// When the last catch-up message was sent, while its answer is outstanding.
    catchup_at: Option<u64>,
    /// Highest commit point sent to this peer, so an ack that arrives after the commit point
    /// moved gets a prompt update instead of waiting for the next heartbeat.
    sent_commit: u64,
}

#[derive(Debug, Clone)]
struct Pending {
    /// Bitmask over member positions.
    acks: u64,
    sent_at: u64,
}

#[derive(Debug)]
struct LeaderState {
    ballot: Ballot,
    next_slot: u64,
    /// Slots proposed under `ballot` and not yet chosen.
    pending: BTreeMap<u64, Pending>,
    peers: Vec<PeerProgress>,
    /// Every slot a previous leader may have chosen is `<= recovery_end`, so a read must
    /// wait for at least that much to be applied.
    recovery_end: u64,
    heartbeat_elapsed: u32,
    check_elapsed: u32,
    /// Incremented with every heartbeat broadcast.
    read_round: u64,
    /// `(read id, index, heartbeat round that must be acknowledged by a quorum)`.
    reads: VecDeque<(u64, u64, u64)>,
    /// A read arrived since the last broadcast: send a heartbeat round with the next `ready`.
    read_round_wanted: bool,
}

#[derive(Debug)]
struct CandidateState {
    ballot: Ballot,
    /// Members whose promise pages are complete (bitmask over positions).
    complete: u64,
    /// The highest-ballot unchosen value reported for each slot.
    recovered: BTreeMap<u64, (Ballot, EntryData)>,
}

/// A Multi-Paxos replica: proposer, acceptor and learner in one pure state machine. Why a
/// follower may trust a commit point, and what is durable, is explained at the top of
/// `node/src/paxos/core.rs`.
#[derive(Debug)]
pub struct Paxos {
    cfg: ReplicaConfig,
    /// Position of `cfg.id` in `cfg.members`.
    me: usize,
    rng: SplitMix64,

    // Acceptor state (durable).
    promised: Ballot,
    log: BTreeMap<u64, Slot>,

    // Learner state.
    snapshot: Option<Snapshot>,
    snapshot_index: u64,
    commit: u64,
    applied: u64,

    // Proposer state (volatile).
    role: Role,
    leader: Option<NodeId>,
    /// `leader` was heard from itself since it was set, not only named by a peer's probe
    /// reply. Only then does it count for [`Paxos::hears_leader`]: otherwise peers that
    /// learned of a dead leader from each other refuse every candidate, for ever.
    leader_heard: bool,
    pub(super) max_round_seen: u64,
    now: u64,
    election_elapsed: u32,
    election_timeout: u32,
    probe_round: u64,
    probe_grants: u64,
    lead: Option<LeaderState>,
    cand: Option<CandidateState>,

    out: Ready<Message, Record>,
}

impl Paxos {
    fn new(cfg: ReplicaConfig) -> Result<Self, ReplicaError> {
        cfg.validate()?;
        if cfg.members.len() > 64 {
            return Err(ReplicaError::Config("multi-paxos supports at most 64 members".into()));
        }
        let me = cfg.members.iter().position(|&m| m == cfg.id).expect("validated");
        let mut p = Paxos {
            rng: SplitMix64::new(cfg.seed),
            me,
            cfg,
            promised: Ballot::ZERO,
            log: BTreeMap::new(),
            snapshot: None,
            snapshot_index: 0,
            commit: 0,
            applied: 0,
            role: Role::Follower,
            leader: None,
            leader_heard: false,
            max_round_seen: 0,
            now: 0,
            election_elapsed: 0,
            election_timeout: 0,
            probe_round: 0,
            probe_grants: 0,
            lead: None,
            cand: None,
            out: Ready::default(),
        };
        p.reset_election_timer();
        Ok(p)
    }

    // ---- accessors for tests and invariant checks ----

    /// The acceptor's promised ballot.
    pub fn promised(&self) -> Ballot {
        self.promised
    }

    /// The acceptor's accepted `(slot, ballot, value, known chosen)` above its snapshot.
    pub fn accepted(&self) -> impl Iterator<Item = (u64, Ballot, &EntryData, bool)> + '_ {
        self.log.iter().map(|(&i, s)| (i, s.ballot, &s.data, s.chosen))
    }

    /// [`Paxos::accepted`] for slots `>= from` only, for invariant checks that run every tick.
    pub fn accepted_from(&self, from: u64) -> impl Iterator<Item = (u64, Ballot, &EntryData, bool)> + '_ {
        self.log.range(from..).map(|(&i, s)| (i, s.ballot, &s.data, s.chosen))
    }

    /// The slot's value if this replica knows it is chosen.
    pub fn chosen_value(&self, index: u64) -> Option<&EntryData> {
        self.log.get(&index).filter(|s| s.chosen).map(|s| &s.data)
    }

    // ---- helpers ----

    fn quorum(&self) -> usize {
        self.cfg.quorum()
    }

    fn position(&self, id: NodeId) -> Option<usize> {
        self.cfg.members.binary_search(&id).ok()
    }

    fn peer_ids(&self) -> Vec<NodeId> {
        self.cfg.members.iter().copied().filter(|&m| m != self.cfg.id).collect()
    }

    /// Unchosen slots a leader may have in flight before `propose` answers `Busy`.
    fn window(&self) -> usize {
        self.cfg.batch_max.saturating_mul(self.cfg.max_inflight_msgs)
    }

    fn last_index(&self) -> u64 {
        self.log.keys().next_back().copied().unwrap_or(0).max(self.snapshot_index)
    }

    fn send(&mut self, to: NodeId, msg: Message) {
        self.out.messages.push((to, msg));
    }

    fn reset_election_timer(&mut self) {
        self.election_elapsed = 0;
        self.election_timeout =
            self.rng.range_inclusive(self.cfg.election_ticks_min as u64, self.cfg.election_ticks_max as u64) as u32;
    }

    /// The smallest round above everything seen that belongs to this node.
    pub(super) fn next_round(&self) -> u64 {
        let n = self.cfg.members.len() as u64;
        let floor = self.max_round_seen.max(self.promised.round) + 1;
        let want = self.me as u64;
        floor + (want + n - floor % n) % n
    }

    fn note_round(&mut self, round: u64) {
        self.max_round_seen = self.max_round_seen.max(round);
    }

    /// Raises the promise; always safe for an acceptor, and persisted before any reply.
    fn raise_promise(&mut self, ballot: Ballot) {
        if ballot > self.promised {
            self.promised = ballot;
            self.note_round(ballot.round);
            self.out.records.push(Record::Promise(ballot));
        }
    }

    /// Whether this node hears a live leader and so refuses to help unseat it (check-quorum
    /// stickiness, as in Raft's §9.6 / etcd's `checkQuorum`).
    fn hears_leader(&self) -> bool {
        match self.role {
            Role::Leader => true,
            _ => self.leader.is_some() && self.leader_heard && self.election_elapsed < self.cfg.election_ticks_min,
        }
    }

    fn become_follower(&mut self, leader: Option<NodeId>) {
        self.role = Role::Follower;
        self.leader = leader;
        self.leader_heard = false;
        self.lead = None;
        self.cand = None;
        self.reset_election_timer();
    }

    /// Accept-side handling of a message from the leader of `ballot` (which is `>= promised`),
    /// or, with `heard: false`, of a peer naming that leader.
    fn follow(&mut self, ballot: Ballot, heard: bool) {
        self.raise_promise(ballot);
        if self.role != Role::Follower || self.leader != Some(ballot.node) {
            self.become_follower(Some(ballot.node));
        } else {
            self.election_elapsed = 0;
        }
        self.leader_heard |= heard;
    }

    fn advance_commit(&mut self) {
        while self.log.get(&(self.commit + 1)).is_some_and(|s| s.chosen) {
            self.commit += 1;
        }
    }

    /// The commit inference described in the module docs.
    fn learn_commit(&mut self, ballot: Ballot, commit: u64) {
        if commit <= self.commit {
            return;
        }
        let limit = self.window().max(self.cfg.batch_max) * 2;
        for (_, slot) in self.log.range_mut(self.commit + 1..=commit).take(limit) {
            if slot.ballot == ballot {
                slot.chosen = true;
            }
        }
        self.advance_commit();
    }

    /// Records values known to be chosen. A leader whose own proposal at one of these slots
    /// differs has been superseded by a higher ballot and steps down before it can report a
    /// commit point covering the slot.
    fn learn_chosen(&mut self, entries: Vec<SlotValue>) {
        let mut fresh = Vec::new();
        let mut superseded = false;
        for e in entries {
            if e.index <= self.snapshot_index || self.log.get(&e.index).is_some_and(|s| s.chosen) {
                continue;
            }
            if let Some(lead) = &self.lead
                && ((lead.pending.contains_key(&e.index) && self.log.get(&e.index).is_some_and(|s| s.data != e.data))
                    || e.index >= lead.next_slot)
            {
                // Either a higher ballot chose something else where we proposed, or it chose
                // a slot we have not reached: both mean we no longer lead.
                superseded = true;
            }
            self.log.insert(e.index, Slot { ballot: e.ballot, data: e.data.clone(), chosen: true });
            fresh.push(SlotValue { chosen: true, ..e });
        }
        if let Some(lead) = self.lead.as_mut() {
            for e in &fresh {
                lead.pending.remove(&e.index);
            }
        }
        if !fresh.is_empty() {
            self.out.records.push(Record::Slots(fresh));
        }
        if superseded {
            self.become_follower(None);
        }
        self.advance_commit();
    }

    fn install_snapshot(&mut self, snap: Snapshot) {
        if snap.index <= self.commit {
            return;
        }
        if self
            .lead
            .as_ref()
            .is_some_and(|l| l.pending.range(..=snap.index).next().is_some() || snap.index >= l.next_slot)
        {
            // Our own proposals below the snapshot cannot be checked against it, and slots
            // past our log were chosen by someone else.
            self.become_follower(None);
        }
        self.log = self.log.split_off(&(snap.index + 1));
        self.snapshot_index = snap.index;
        self.commit = snap.index;
        self.applied = snap.index;
        self.out.snapshot = Some(snap.clone());
        self.snapshot = Some(snap);
        self.advance_commit();
    }

    // ---- elections ----

    fn campaign(&mut self) {
        if self.cfg.prevote && self.cfg.members.len() > 1 {
            self.role = Role::PreCandidate;
            self.leader = None;
            self.lead = None;
            self.cand = None;
            self.reset_election_timer();
            self.probe_round = self.next_round();
            self.probe_grants = 1 << self.me;
            for p in self.peer_ids() {
                self.send(p, Message::Probe { round: self.probe_round });
            }
        } else {
            self.start_phase1();
        }
    }

    fn start_phase1(&mut self) {
        let ballot = Ballot { round: self.next_round(), node: self.cfg.id };
        self.raise_promise(ballot);
        self.role = Role::Candidate;
        self.leader = None;
        self.lead = None;
        self.reset_election_timer();
        // Our own acceptor state is one of the promises.
        let recovered = self
            .log
            .range(self.commit + 1..)
            .filter(|(_, s)| !s.chosen)
            .map(|(&i, s)| (i, (s.ballot, s.data.clone())))
            .collect();
        self.cand = Some(CandidateState { ballot, complete: 1 << self.me, recovered });
        let from = self.commit + 1;
        for p in self.peer_ids() {
            self.send(p, Message::Prepare { ballot, from });
        }
        self.maybe_win();
    }

    fn maybe_win(&mut self) {
        let Some(c) = &self.cand else { return };
        if (c.complete.count_ones() as usize) < self.quorum() {
            return;
        }
        let end = self.last_index().max(c.recovered.keys().next_back().copied().unwrap_or(0));
        if end.saturating_sub(self.commit) > MAX_RECOVERY_SLOTS {
            self.become_follower(None);
            return;
        }
        let c = self.cand.take().expect("checked");
        self.role = Role::Leader;
        self.leader = Some(self.cfg.id);
        let mut entries = Vec::new();
        for s in self.commit + 1..=end {
            if self.log.get(&s).is_some_and(|x| x.chosen) {
                continue;
            }
            let data = c.recovered.get(&s).map(|(_, d)| d.clone()).unwrap_or(EntryData::Noop);
            entries.push((s, data));
        }
        let members = self.cfg.members.len();
        self.lead = Some(LeaderState {
            ballot: c.ballot,
            next_slot: end + 1,
            pending: BTreeMap::new(),
            peers: vec![PeerProgress::default(); members],
            recovery_end: end,
            heartbeat_elapsed: 0,
            check_elapsed: 0,
            read_round: 0,
            reads: VecDeque::new(),
            read_round_wanted: false,
        });
        self.propose_slots(entries);
        self.broadcast_heartbeat();
    }

    // ---- phase 2 (leader) ----

    /// Accepts `entries` locally under the leader's ballot and sends them to every peer.
    fn propose_slots(&mut self, entries: Vec<(u64, EntryData)>) {
        if entries.is_empty() {
            return;
        }
        let lead = self.lead.as_mut().expect("only a leader proposes");
        let ballot = lead.ballot;
        for (s, d) in &entries {
            self.log.insert(*s, Slot { ballot, data: d.clone(), chosen: false });
            lead.pending.insert(*s, Pending { acks: 1 << self.me, sent_at: self.now });
        }
        self.out.records.push(Record::Accept { ballot, entries: entries.clone() });
        let commit = self.commit;
        lead.peers.iter_mut().for_each(|p| p.sent_commit = p.sent_commit.max(commit));
        for p in self.peer_ids() {
            for chunk in entries.chunks(self.cfg.batch_max) {
                self.send(p, Message::Accept { ballot, commit, entries: chunk.to_vec() });
            }
        }
        self.check_chosen(entries.iter().map(|(s, _)| *s).collect());
    }

    /// Marks the pending slots among `slots` that have a quorum as chosen.
    fn check_chosen(&mut self, slots: Vec<u64>) {
        let q = self.quorum();
        let Some(lead) = self.lead.as_mut() else { return };
        for s in slots {
            if lead.pending.get(&s).is_some_and(|p| p.acks.count_ones() as usize >= q) {
                lead.pending.remove(&s);
                if let Some(slot) = self.log.get_mut(&s) {
                    slot.chosen = true;
                }
            }
        }
        self.advance_commit();
    }

    fn broadcast_heartbeat(&mut self) {
        let Some(lead) = self.lead.as_mut() else { return };
        lead.read_round += 1;
        lead.read_round_wanted = false;
        lead.heartbeat_elapsed = 0;
        let (ballot, ctx, commit) = (lead.ballot, lead.read_round, self.commit);
        lead.peers.iter_mut().for_each(|p| p.sent_commit = p.sent_commit.max(commit));
        for p in self.peer_ids() {
            self.send(p, Message::Heartbeat { ballot, commit, ctx });
        }
    }

    /// A heartbeat to one peer carrying the current commit point. It reuses the current read
    /// round, which only reads registered before that round's broadcast wait for.
    fn send_commit(&mut self, peer: NodeId) {
        let commit = self.commit;
        let (Some(pos), Some(lead)) = (self.position(peer), self.lead.as_mut()) else { return };
        lead.peers[pos].sent_commit = commit;
        let (ballot, ctx) = (lead.ballot, lead.read_round);
        self.send(peer, Message::Heartbeat { ballot, commit, ctx });
    }

    /// Re-sends accepts that have gone unanswered for two heartbeat intervals; the network
    /// may drop anything and a slot without a quorum would otherwise stall the commit point.
    fn retransmit(&mut self) {
        let age = 2 * self.cfg.heartbeat_ticks as u64;
        let now = self.now;
        let commit = self.commit;
        let Some(lead) = self.lead.as_mut() else { return };
        let ballot = lead.ballot;
        let stale: Vec<(u64, u64)> = lead
            .pending
            .iter_mut()
            .filter(|(_, p)| now.saturating_sub(p.sent_at) >= age)
            .map(|(&s, p)| {
                p.sent_at = now;
                (s, p.acks)
            })
            .collect();
        if stale.is_empty() {
            return;
        }
        let members = self.cfg.members.clone();
        for (pos, &peer) in members.iter().enumerate() {
            if pos == self.me {
                continue;
            }
            let entries: Vec<(u64, EntryData)> = stale
                .iter()
                .filter(|(_, acks)| acks & (1 << pos) == 0)
                .filter_map(|(s, _)| self.log.get(s).map(|slot| (*s, slot.data.clone())))
                .collect();
            for chunk in entries.chunks(self.cfg.batch_max).take(self.cfg.max_inflight_msgs) {
                self.send(peer, Message::Accept { ballot, commit, entries: chunk.to_vec() });
            }
        }
    }

    /// Sends a lagging learner the next chosen values (or our snapshot) after `from - 1`.
    fn send_catch_up(&mut self, peer: NodeId, from: u64) {
        let Some(pos) = self.position(peer) else { return };
        let Some(lead) = self.lead.as_ref() else { return };
        let ballot = lead.ballot;
        let msg = if from <= self.snapshot_index {
            let Some(snapshot) = self.snapshot.clone() else { return };
            Message::InstallSnapshot { ballot, snapshot }
        } else {
            let entries: Vec<SlotValue> = self
                .log
                .range(from..=self.commit)
                .take(self.cfg.batch_max)
                .map(|(&index, s)| SlotValue { index, ballot: s.ballot, data: s.data.clone(), chosen: true })
                .collect();
            if entries.is_empty() {
                return;
            }
            Message::Chosen { ballot, entries }
        };
        self.send(peer, msg);
        let now = self.now;
        if let Some(lead) = self.lead.as_mut() {
            lead.peers[pos].catchup_at = Some(now);
        }
    }

    /// Called with an acceptor's reported chosen prefix and the leader commit it had seen.
    fn maybe_catch_up(&mut self, peer: NodeId, peer_commit: u64, seen: u64) {
        let Some(pos) = self.position(peer) else { return };
        let Some(lead) = self.lead.as_ref() else { return };
        if peer_commit >= seen.min(self.commit) {
            return;
        }
        let retry = self.cfg.election_ticks_min as u64;
        if lead.peers[pos].catchup_at.is_some_and(|t| self.now.saturating_sub(t) < retry) {
            return;
        }
        self.send_catch_up(peer, peer_commit + 1);
    }

    fn mark_active(&mut self, from: NodeId) {
        if let (Some(pos), Some(lead)) = (self.position(from), self.lead.as_mut()) {
            lead.peers[pos].active = true;
        }
    }

    /// Releases the reads whose heartbeat round a quorum has acknowledged.
    fn release_reads(&mut self) {
        let q = self.quorum();
        let me = self.me;
        let Some(lead) = self.lead.as_mut() else { return };
        if lead.reads.is_empty() {
            return;
        }
        let mut ctxs: Vec<u64> =
            lead.peers.iter().enumerate().map(|(i, p)| if i == me { lead.read_round } else { p.read_ctx }).collect();
        ctxs.sort_unstable_by(|a, b| b.cmp(a));
        let confirmed = ctxs[q - 1];
        while let Some(&(id, index, round)) = lead.reads.front() {
            if round > confirmed {
                break;
            }
            lead.reads.pop_front();
            self.out.read_states.push(ReadState { id, index });
        }
    }

    // ---- message handlers ----

    fn on_probe(&mut self, from: NodeId, round: u64) {
        let hears = self.hears_leader();
        let granted = !hears && round > self.promised.round;
        let promised = self.promised.round;
        // A leader's ballot is the one we promised: we raised our promise to it when we
        // started following (or leading) under it.
        let leader = (hears && self.leader == Some(self.promised.node)).then_some(self.promised);
        self.send(from, Message::ProbeReply { round, granted, promised, leader });
    }

    fn on_probe_reply(&mut self, from: NodeId, round: u64, granted: bool, promised: u64, leader: Option<Ballot>) {
        self.note_round(promised);
        if self.role != Role::PreCandidate || round != self.probe_round {
            return;
        }
        if let Some(b) = leader.filter(|b| !granted && *b >= self.promised && b.node != self.cfg.id) {
            // A peer hears a live leader whose ballot is at least our promise: follow it now.
            // Raising a promise is always safe, and the leader's next message (once its
            // connection to us is back) finds us following; if it is dead after all, our
            // election timer, restarted here, runs out as usual.
            self.follow(b, false);
            return;
        }
        if !granted {
            return;
        }
        let Some(pos) = self.position(from) else { return };
        self.probe_grants |= 1 << pos;
        if self.probe_grants.count_ones() as usize >= self.quorum() {
            self.start_phase1();
        }
    }

    fn on_prepare(&mut self, from: NodeId, ballot: Ballot, from_slot: u64) {
        if ballot.node != from {
            return;
        }
        if ballot < self.promised {
            self.send(from, Message::Nack { ballot, promised: self.promised });
            return;
        }
        if ballot > self.promised {
            if self.cfg.check_quorum && self.hears_leader() {
                return;
            }
            self.raise_promise(ballot);
            self.become_follower(None);
        } else {
            // A page request under the ballot we promised: the proposer is alive.
            self.election_elapsed = 0;
        }
        // One page; a long log goes out in several, each re-requested by the proposer.
        let cap = self.cfg.batch_max.saturating_mul(8).max(1);
        let mut snapshot = None;
        let mut start = from_slot.max(1);
        if start <= self.snapshot_index {
            snapshot = self.snapshot.clone();
            start = self.snapshot_index + 1;
        }
        let entries: Vec<SlotValue> = self
            .log
            .range(start..)
            .take(cap)
            .map(|(&index, s)| SlotValue { index, ballot: s.ballot, data: s.data.clone(), chosen: s.chosen })
            .collect();
        let last = self.last_index();
        let (upto, complete) = match entries.last() {
            Some(e) if entries.len() == cap && e.index < last => (e.index, false),
            _ => (last.max(start - 1), true),
        };
        self.send(from, Message::Promise { ballot, from: from_slot, upto, complete, entries, snapshot });
    }

    fn on_promise(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        upto: u64,
        complete: bool,
        entries: Vec<SlotValue>,
        snapshot: Option<Snapshot>,
    ) {
        if self.role != Role::Candidate || self.cand.as_ref().is_none_or(|c| c.ballot != ballot) {
            return;
        }
        let Some(pos) = self.position(from) else { return };
        if let Some(s) = snapshot {
            self.install_snapshot(s);
        }
        let (chosen, unchosen): (Vec<_>, Vec<_>) = entries.into_iter().partition(|e| e.chosen);
        self.learn_chosen(chosen);
        let Some(c) = self.cand.as_mut() else { return };
        for e in unchosen {
            let better = c.recovered.get(&e.index).is_none_or(|(b, _)| e.ballot > *b);
            if better {
                c.recovered.insert(e.index, (e.ballot, e.data));
            }
        }
        if complete {
            c.complete |= 1 << pos;
            self.maybe_win();
        } else {
            self.send(from, Message::Prepare { ballot, from: upto + 1 });
        }
    }

    fn on_nack(&mut self, ballot: Ballot, promised: Ballot) {
        self.note_round(promised.round);
        let ours = match self.role {
            Role::Leader => self.lead.as_ref().map(|l| l.ballot),
            Role::Candidate => self.cand.as_ref().map(|c| c.ballot),
            _ => None,
        };
        if ours == Some(ballot) && promised > ballot {
            self.become_follower(None);
        }
    }

    fn on_accept(&mut self, from: NodeId, ballot: Ballot, commit: u64, entries: Vec<(u64, EntryData)>) {
        if ballot.node != from {
            return;
        }
        if ballot < self.promised {
            self.send(from, Message::Nack { ballot, promised: self.promised });
            return;
        }
        self.follow(ballot, true);
        let mut stored = Vec::new();
        let mut acked = Vec::new();
        for (s, data) in entries {
            if s <= self.snapshot_index {
                continue;
            }
            match self.log.get(&s) {
                // A chosen value never changes; a proposal that matches it is harmless.
                Some(slot) if slot.chosen => {
                    if slot.data == data {
                        acked.push(s);
                    }
                }
                _ => {
                    self.log.insert(s, Slot { ballot, data: data.clone(), chosen: false });
                    stored.push((s, data));
                    acked.push(s);
                }
            }
        }
        if !stored.is_empty() {
            self.out.records.push(Record::Accept { ballot, entries: stored });
        }
        self.learn_commit(ballot, commit);
        let msg = Message::Accepted { ballot, slots: acked, commit: self.commit, seen: commit };
        self.send(from, msg);
    }

    fn on_accepted(&mut self, from: NodeId, ballot: Ballot, slots: Vec<u64>, commit: u64, seen: u64) {
        let Some(pos) = self.position(from) else { return };
        if self.lead.as_ref().is_none_or(|l| l.ballot != ballot) {
            return;
        }
        self.mark_active(from);
        if let Some(lead) = self.lead.as_mut() {
            for s in &slots {
                if let Some(p) = lead.pending.get_mut(s) {
                    p.acks |= 1 << pos;
                }
            }
        }
        self.check_chosen(slots);
        if self.lead.as_ref().is_some_and(|l| self.commit > l.peers[pos].sent_commit) {
            self.send_commit(from);
        }
        self.maybe_catch_up(from, commit, seen);
    }

    fn on_heartbeat(&mut self, from: NodeId, ballot: Ballot, commit: u64, ctx: u64) {
        if ballot.node != from {
            return;
        }
        if ballot < self.promised {
            self.send(from, Message::Nack { ballot, promised: self.promised });
            return;
        }
        self.follow(ballot, true);
        self.learn_commit(ballot, commit);
        self.send(from, Message::HeartbeatAck { ballot, commit: self.commit, seen: commit, ctx });
    }

    fn on_heartbeat_ack(&mut self, from: NodeId, ballot: Ballot, commit: u64, seen: u64, ctx: u64) {
        let Some(pos) = self.position(from) else { return };
        let Some(lead) = self.lead.as_mut() else { return };
        if lead.ballot != ballot {
            return;
        }
        lead.peers[pos].active = true;
        lead.peers[pos].read_ctx = lead.peers[pos].read_ctx.max(ctx);
        self.release_reads();
        self.maybe_catch_up(from, commit, seen);
    }

    fn on_chosen(&mut self, from: NodeId, ballot: Ballot, entries: Vec<SlotValue>) {
        if ballot >= self.promised && self.role == Role::Follower && self.leader == Some(from) {
            self.election_elapsed = 0;
            self.leader_heard = true;
        }
        self.learn_chosen(entries);
        self.send(from, Message::ChosenAck { ballot, commit: self.commit });
    }

    fn on_install_snapshot(&mut self, from: NodeId, ballot: Ballot, snapshot: Snapshot) {
        if ballot >= self.promised && self.role == Role::Follower && self.leader == Some(from) {
            self.election_elapsed = 0;
            self.leader_heard = true;
        }
        self.install_snapshot(snapshot);
        self.send(from, Message::ChosenAck { ballot, commit: self.commit });
    }

    fn on_chosen_ack(&mut self, from: NodeId, ballot: Ballot, commit: u64) {
        let Some(pos) = self.position(from) else { return };
        let Some(lead) = self.lead.as_mut() else { return };
        if lead.ballot != ballot {
            return;
        }
        lead.peers[pos].active = true;
        lead.peers[pos].catchup_at = None;
        if commit < self.commit {
            self.send_catch_up(from, commit + 1);
        }
    }
}

impl Replica for Paxos {
    type Message = Message;
    type Record = Record;

    const ALGO: &'static str = "paxos";

    fn restore(cfg: ReplicaConfig, snapshot: Option<Snapshot>, records: Vec<Record>) -> Result<Self, ReplicaError> {
        let mut p = Paxos::new(cfg)?;
        if let Some(s) = snapshot {
            p.snapshot_index = s.index;
            p.commit = s.index;
            p.applied = s.index;
            p.snapshot = Some(s);
        }
        let floor = p.snapshot_index;
        for r in records {
            match r {
                Record::Promise(b) => p.promised = p.promised.max(b),
                Record::Accept { ballot, entries } => {
                    p.promised = p.promised.max(ballot);
                    for (s, data) in entries {
                        if s <= floor || p.log.get(&s).is_some_and(|x| x.chosen) {
                            continue;
                        }
                        p.log.insert(s, Slot { ballot, data, chosen: false });
                    }
                }
                Record::Slots(v) => {
                    for e in v {
                        if e.index <= floor || (p.log.get(&e.index).is_some_and(|x| x.chosen) && !e.chosen) {
                            continue;
                        }
                        if e.ballot > p.promised && !e.chosen {
                            return Err(ReplicaError::Corrupt(format!(
                                "slot {} accepted under {:?} above the promise {:?}",
                                e.index, e.ballot, p.promised
                            )));
                        }
                        p.log.insert(e.index, Slot { ballot: e.ballot, data: e.data, chosen: e.chosen });
                    }
                }
            }
        }
        p.max_round_seen = p.promised.round;
        p.advance_commit();
        Ok(p)
    }

    fn tick(&mut self) {
        self.now += 1;
        if self.role == Role::Leader {
            let hb = self.cfg.heartbeat_ticks;
            let check = self.cfg.election_ticks_min;
            let lead = self.lead.as_mut().expect("a leader has leader state");
            lead.heartbeat_elapsed += 1;
            lead.check_elapsed += 1;
            if lead.heartbeat_elapsed >= hb {
                self.broadcast_heartbeat();
                self.retransmit();
            }
            if self.cfg.check_quorum {
                let lead = self.lead.as_mut().expect("still leader");
                if lead.check_elapsed >= check {
                    lead.check_elapsed = 0;
                    let me = self.me;
                    let active = lead.peers.iter().enumerate().filter(|(i, p)| *i == me || p.active).count();
                    lead.peers.iter_mut().for_each(|p| p.active = false);
                    if active < self.quorum() {
                        self.become_follower(None);
                    }
                }
            }
            return;
        }
        self.election_elapsed += 1;
        if self.election_elapsed >= self.election_timeout {
            self.campaign();
        }
    }

    fn step(&mut self, from: NodeId, msg: Message) {
        if from == self.cfg.id || self.position(from).is_none() {
            return;
        }
        match msg {
            Message::Probe { round } => self.on_probe(from, round),
            Message::ProbeReply { round, granted, promised, leader } => {
                self.on_probe_reply(from, round, granted, promised, leader)
            }
            Message::Prepare { ballot, from: s } => self.on_prepare(from, ballot, s),
            Message::Promise { ballot, upto, complete, entries, snapshot, .. } => {
                self.on_promise(from, ballot, upto, complete, entries, snapshot)
            }
            Message::Nack { ballot, promised } => self.on_nack(ballot, promised),
            Message::Accept { ballot, commit, entries } => self.on_accept(from, ballot, commit, entries),
            Message::Accepted { ballot, slots, commit, seen } => self.on_accepted(from, ballot, slots, commit, seen),
            Message::Heartbeat { ballot, commit, ctx } => self.on_heartbeat(from, ballot, commit, ctx),
            Message::HeartbeatAck { ballot, commit, seen, ctx } => {
                self.on_heartbeat_ack(from, ballot, commit, seen, ctx)
            }
            Message::Chosen { ballot, entries } => self.on_chosen(from, ballot, entries),
            Message::InstallSnapshot { ballot, snapshot } => self.on_install_snapshot(from, ballot, snapshot),
            Message::ChosenAck { ballot, commit } => self.on_chosen_ack(from, ballot, commit),
        }
    }

    fn propose(&mut self, commands: Vec<Vec<u8>>) -> Result<(), ProposeError> {
        let window = self.window();
        let Some(lead) = self.lead.as_ref() else {
            return Err(ProposeError::NotLeader { leader: self.leader });
        };
        if commands.is_empty() {
            return Ok(());
        }
        if !lead.pending.is_empty() && lead.pending.len() + commands.len() > window {
            return Err(ProposeError::Busy);
        }
        let first = lead.next_slot;
        let entries: Vec<(u64, EntryData)> =
            commands.into_iter().enumerate().map(|(i, c)| (first + i as u64, EntryData::Command(c))).collect();
        self.lead.as_mut().expect("checked").next_slot = first + entries.len() as u64;
        self.propose_slots(entries);
        Ok(())
    }

    fn propose_membership(&mut self, _change: MembershipChange) -> Result<u64, MembershipError> {
        Err(ProposeError::NotLeader { leader: self.leader }.into())
    }

    fn read_index(&mut self, id: u64) -> Result<(), ProposeError> {
        let commit = self.commit;
        let single = self.cfg.members.len() == 1;
        let Some(lead) = self.lead.as_mut() else {
            return Err(ProposeError::NotLeader { leader: self.leader });
        };
        let index = commit.max(lead.recovery_end);
        if single {
            self.out.read_states.push(ReadState { id, index });
            return Ok(());
        }
        lead.reads.push_back((id, index, lead.read_round + 1));
        lead.read_round_wanted = true;
        Ok(())
    }

    fn has_ready(&self) -> bool {
        !self.out.is_empty() || self.applied < self.commit || self.lead.as_ref().is_some_and(|l| l.read_round_wanted)
    }

    fn ready(&mut self) -> Ready<Message, Record> {
        if self.lead.as_ref().is_some_and(|l| l.read_round_wanted) {
            self.broadcast_heartbeat();
        }
        let mut committed = Vec::new();
        while self.applied < self.commit && committed.len() < MAX_COMMITTED_PER_READY {
            let index = self.applied + 1;
            let slot = self.log.get(&index).expect("slots up to commit are present");
            committed.push(Entry { index, term: slot.ballot.round, data: slot.data.clone() });
            self.applied = index;
        }
        let mut rd = std::mem::take(&mut self.out);
        rd.committed = committed;
        rd
    }

    fn status(&self) -> Status {
        Status {
            id: self.cfg.id,
            role: self.role,
            term: self.promised.round,
            leader: self.leader,
            commit_index: self.commit,
            applied_index: self.applied,
            last_index: self.last_index(),
            snapshot_index: self.snapshot_index,
            voters: self.cfg.members.clone(),
            learners: Vec::new(),
        }
    }

    fn compact(&mut self, snapshot: Snapshot) -> Result<(), ReplicaError> {
        if snapshot.index > self.applied {
            return Err(ReplicaError::Compact {
                index: snapshot.index,
                reason: format!("only {} entries are applied", self.applied),
            });
        }
        if snapshot.index <= self.snapshot_index {
            return Ok(());
        }
        self.log = self.log.split_off(&(snapshot.index + 1));
        self.snapshot_index = snapshot.index;
        self.snapshot = Some(snapshot);
        Ok(())
    }

    fn durable_records(&self) -> Vec<Record> {
        let mut out = vec![Record::Promise(self.promised)];
        let slots: Vec<SlotValue> = self
            .log
            .iter()
            .map(|(&index, s)| SlotValue { index, ballot: s.ballot, data: s.data.clone(), chosen: s.chosen })
            .collect();
        out.extend(slots.chunks(SLOTS_PER_RECORD).map(|c| Record::Slots(c.to_vec())));
        out
    }
}
