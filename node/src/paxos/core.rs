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
//! # Membership
//! A configuration is a value in the log (`EntryData::Config`), chosen like any other and in
//! effect for the slots after it (an α of 1). The leader proposes one only with nothing in
//! flight and a majority holding the whole chosen prefix (it briefly refuses commands to
//! get there), and proposes nothing after it until it is chosen, so every slot it has in
//! flight is counted by a configuration it knows. That is the stop-sign idea without a new
//! instance: the same leader carries on under the new configuration. Changes are one
//! server at a time, so consecutive configurations' majorities meet; a candidate gathers
//! promises from a majority of the newest configuration it knows chosen and of every one
//! that may have been chosen after it. New servers join as learners (they accept and learn
//! but are never counted) and catch up through `Chosen` values or a snapshot before
//! promotion. Acceptors serve requests from anyone, so a server can catch up on a log
//! whose configuration it does not know yet; replies from strangers are dropped.
//!
//! # Durability
//! Promises and accepted values are written as [`Record`]s in the same `Ready` as the
//! replies that depend on them, and the runtime makes them durable before sending. Chosen
//! flags set by the commit inference are not persisted: after a restart they are learned
//! again from the leader.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::replica::{
    Entry, EntryData, Membership, MembershipChange, MembershipError, NodeId, ProposeError, ReadState, Ready, Replica,
    ReplicaConfig, ReplicaError, Role, Snapshot, SplitMix64, Status,
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
    /// The peer's chosen prefix as it last reported it: how far a learner has caught up.
    commit: u64,
}

#[derive(Debug, Clone)]
struct Pending {
    /// Who accepted the slot under the leader's ballot. Ids, not positions in a member list:
    /// the configuration that counts them is the slot's, which may differ from today's.
    acks: Vec<NodeId>,
    sent_at: u64,
}

#[derive(Debug)]
struct LeaderState {
    ballot: Ballot,
    next_slot: u64,
    /// Slots proposed under `ballot` and not yet chosen.
    pending: BTreeMap<u64, Pending>,
    /// Everyone this leader sends to: the members of every configuration it knows of above
    /// the chosen prefix, and removed servers until they learn they were removed.
    peers: BTreeMap<NodeId, PeerProgress>,
    /// Configuration values in this leader's log above the chosen prefix, by slot: with a
    /// leader's own proposals being the only values its ballot can choose, they decide which
    /// configuration counts each later slot's acceptances.
    confs: BTreeMap<u64, Membership>,
    /// Servers removed by a chosen configuration at the given slot, still sent heartbeats
    /// until they report a chosen prefix that includes it (so that they stop campaigning).
    leaving: BTreeMap<NodeId, u64>,
    /// A membership change is waiting for the pipeline to drain: new commands are refused
    /// with `Busy` until this tick, or a steady client load would keep it waiting for ever.
    drain_until: u64,
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
    /// Acceptors whose promise pages are complete.
    complete: BTreeSet<NodeId>,
    /// Acceptors sent a `Prepare`.
    asked: BTreeSet<NodeId>,
    /// The highest-ballot unchosen value reported for each slot.
    recovered: BTreeMap<u64, (Ballot, EntryData)>,
}

/// A Multi-Paxos replica: proposer, acceptor and learner in one pure state machine. Why a
/// follower may trust a commit point, and what is durable, is explained at the top of
/// `node/src/paxos/core.rs`.
#[derive(Debug)]
pub struct Paxos {
    cfg: ReplicaConfig,
    /// Position of `cfg.id` in `cfg.members` (the initial configuration), which decides the
    /// rounds this node owns; a node that joined later has none and takes `id % n`.
    me: usize,
    rng: SplitMix64,

    // Membership. A configuration value chosen at slot `s` governs slots `> s` (α = 1):
    // the leader proposes a change only with nothing else in flight and proposes nothing
    // after it until it is chosen, so no slot is ever in flight under a configuration the
    // leader does not know. `conf` is the configuration after the chosen prefix.
    conf: Membership,
    conf_index: u64,
    /// The configuration as of `snapshot_index`.
    base_conf: Membership,

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
    probe_grants: BTreeSet<NodeId>,
    lead: Option<LeaderState>,
    cand: Option<CandidateState>,

    out: Ready<Message, Record>,
}

impl Paxos {
    fn new(cfg: ReplicaConfig) -> Result<Self, ReplicaError> {
        cfg.validate()?;
        let me =
            cfg.members.iter().position(|&m| m == cfg.id).unwrap_or((cfg.id % cfg.members.len() as u64) as usize);
        let initial = Membership::new(cfg.members.iter().copied());
        let mut p = Paxos {
            rng: SplitMix64::new(cfg.seed),
            me,
            conf: initial.clone(),
            conf_index: 0,
            base_conf: initial,
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
            probe_grants: BTreeSet::new(),
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

    fn is_voter(&self) -> bool {
        self.conf.is_voter(self.cfg.id)
    }

    /// Whether `ids` hold a majority of `conf`'s voters.
    fn majority(conf: &Membership, ids: impl IntoIterator<Item = NodeId>) -> bool {
        ids.into_iter().filter(|id| conf.is_voter(*id)).count() >= conf.quorum()
    }

    /// The configuration that counts acceptances for `slot`: the last configuration value
    /// before it in this leader's log, or the one after the chosen prefix.
    fn conf_for(&self, slot: u64) -> &Membership {
        self.lead.as_ref().and_then(|l| l.confs.range(..slot).next_back().map(|(_, m)| m)).unwrap_or(&self.conf)
    }

    /// The newest configuration this node knows of (a leader's pending one included).
    fn latest_conf(&self) -> &Membership {
        self.conf_for(u64::MAX)
    }

    /// Whom to send to: a leader's peers, otherwise everyone in the configuration.
    fn peer_ids(&self) -> Vec<NodeId> {
        match &self.lead {
            Some(l) => l.peers.keys().copied().collect(),
            None => self.conf.all().filter(|&m| m != self.cfg.id).collect(),
        }
    }

    /// A reply from a server this node neither knows as a member nor sends to counts for
    /// nothing; requests are served whoever sends them (see `step`).
    fn knows(&self, id: NodeId) -> bool {
        self.conf.contains(id)
            || self.lead.as_ref().is_some_and(|l| l.peers.contains_key(&id))
            || self.cand.as_ref().is_some_and(|c| c.asked.contains(&id))
    }

    /// Keeps a leader's peers in line with the configurations it knows of.
    fn sync_peers(&mut self) {
        let me = self.cfg.id;
        let Some(lead) = self.lead.as_mut() else { return };
        let mut want: BTreeSet<NodeId> = self.conf.all().collect();
        for m in lead.confs.values() {
            want.extend(m.all());
        }
        want.extend(lead.leaving.keys().copied());
        want.remove(&me);
        lead.peers.retain(|id, _| want.contains(id));
        for id in want {
            lead.peers.entry(id).or_default();
        }
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
        // Ballots stay unique across membership changes because they carry the node id; a
        // node that joined later may share rounds with an initial member.
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
        let mut changed = false;
        while let Some(slot) = self.log.get(&(self.commit + 1)).filter(|s| s.chosen) {
            self.commit += 1;
            if let EntryData::Config(m) = &slot.data
                && self.commit > self.conf_index
            {
                let m = m.clone();
                self.out.records.push(Record::Config { index: self.commit, membership: m.clone() });
                self.set_conf(self.commit, m);
                changed = true;
            }
        }
        if changed {
            self.sync_peers();
        }
    }

    fn set_conf(&mut self, index: u64, m: Membership) {
        let commit = self.commit;
        if let Some(lead) = self.lead.as_mut() {
            for id in self.conf.all().filter(|id| !m.contains(*id)) {
                lead.leaving.insert(id, index);
            }
            lead.confs = lead.confs.split_off(&(commit + 1));
        }
        self.conf = m;
        self.conf_index = index;
    }

    /// A leader that is not in the configuration it chose steps down: it no longer counts
    /// for any quorum, and a voter takes over after an election timeout.
    fn maybe_step_down_removed(&mut self) {
        if self.role == Role::Leader && !self.is_voter() {
            self.become_follower(None);
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

    fn install_snapshot(&mut self, snap: Snapshot, membership: Option<Membership>) {
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
        if let Some(m) = membership {
            self.out.records.push(Record::Config { index: snap.index, membership: m.clone() });
            self.base_conf = m.clone();
            if snap.index > self.conf_index {
                self.set_conf(snap.index, m);
                self.sync_peers();
            }
        }
        self.out.snapshot = Some(snap.clone());
        self.snapshot = Some(snap);
        self.advance_commit();
    }

    // ---- elections ----

    fn campaign(&mut self) {
        if !self.is_voter() {
            // Learners, joining and removed servers never run for leader.
            self.reset_election_timer();
            self.leader_heard = false;
            return;
        }
        if self.cfg.prevote && self.conf.voters.len() > 1 {
            self.role = Role::PreCandidate;
            self.leader = None;
            self.lead = None;
            self.cand = None;
            self.reset_election_timer();
            self.probe_round = self.next_round();
            self.probe_grants = BTreeSet::from([self.cfg.id]);
            for p in self.conf.voters.iter().copied().filter(|&v| v != self.cfg.id).collect::<Vec<_>>() {
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
        self.cand = Some(CandidateState {
            ballot,
            complete: BTreeSet::from([self.cfg.id]),
            asked: BTreeSet::new(),
            recovered,
        });
        self.ask_for_promises();
        self.maybe_win();
    }

    /// The configurations whose majorities a candidate needs promises from: the newest one
    /// it knows to be chosen, and every configuration value after it that may have been
    /// (its own accepted values and the highest-ballot values reported).
    ///
    /// Why older ones are not needed: a change is proposed only once every slot before it
    /// is chosen and a majority of the configuration then in effect holds all of them (see
    /// `propose_membership`). That configuration is one server away from the new one, so a
    /// majority of the new one meets it and sees every chosen value before the change. The
    /// configurations after it are each one server from the one before, and the candidate
    /// asks the members of each as it appears. Requiring majorities of superseded
    /// configurations instead would stall elections once their removed servers are gone.
    fn needed_confs(&self) -> Vec<Membership> {
        let mut base = (self.conf_index, self.conf.clone());
        for (&i, slot) in self.log.range(self.commit + 1..) {
            if let (EntryData::Config(m), true) = (&slot.data, slot.chosen)
                && i > base.0
            {
                base = (i, m.clone());
            }
        }
        let mut out = vec![base.1];
        let above = self.log.range(base.0 + 1..).map(|(&i, s)| (i, &s.data));
        let recovered = self.cand.iter().flat_map(|c| c.recovered.iter().map(|(&i, (_, d))| (i, d)));
        for (i, d) in above.chain(recovered) {
            if let EntryData::Config(m) = d
                && i > base.0
                && !out.contains(m)
            {
                out.push(m.clone());
            }
        }
        out
    }

    /// Sends `Prepare` to the members of every needed configuration not asked yet.
    fn ask_for_promises(&mut self) {
        let me = self.cfg.id;
        let need: BTreeSet<NodeId> = self.needed_confs().iter().flat_map(|m| m.all().collect::<Vec<_>>()).collect();
        let from = self.commit + 1;
        let Some(c) = self.cand.as_mut() else { return };
        let ballot = c.ballot;
        let fresh: Vec<NodeId> = need.into_iter().filter(|&id| id != me && c.asked.insert(id)).collect();
        for p in fresh {
            self.send(p, Message::Prepare { ballot, from });
        }
    }

    fn maybe_win(&mut self) {
        let Some(c) = &self.cand else { return };
        if !self.needed_confs().iter().all(|m| Self::majority(m, c.complete.iter().copied())) {
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
        let confs = entries
            .iter()
            .filter_map(|(s, d)| match d {
                EntryData::Config(m) => Some((*s, m.clone())),
                _ => None,
            })
            .collect();
        self.lead = Some(LeaderState {
            ballot: c.ballot,
            next_slot: end + 1,
            pending: BTreeMap::new(),
            peers: BTreeMap::new(),
            confs,
            leaving: BTreeMap::new(),
            drain_until: 0,
            recovery_end: end,
            heartbeat_elapsed: 0,
            check_elapsed: 0,
            read_round: 0,
            reads: VecDeque::new(),
            read_round_wanted: false,
        });
        self.sync_peers();
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
            lead.pending.insert(*s, Pending { acks: vec![self.cfg.id], sent_at: self.now });
        }
        self.out.records.push(Record::Accept { ballot, entries: entries.clone() });
        let commit = self.commit;
        lead.peers.values_mut().for_each(|p| p.sent_commit = p.sent_commit.max(commit));
        for p in self.peer_ids() {
            for chunk in entries.chunks(self.cfg.batch_max) {
                self.send(p, Message::Accept { ballot, commit, entries: chunk.to_vec() });
            }
        }
        self.check_chosen(entries.iter().map(|(s, _)| *s).collect());
    }

    /// Marks the pending slots among `slots` that have a quorum as chosen.
    fn check_chosen(&mut self, slots: Vec<u64>) {
        let Some(lead) = self.lead.as_ref() else { return };
        let done: Vec<u64> = slots
            .into_iter()
            .filter(|s| lead.pending.get(s).is_some_and(|p| Self::majority(self.conf_for(*s), p.acks.iter().copied())))
            .collect();
        let lead = self.lead.as_mut().expect("checked");
        for s in done {
            lead.pending.remove(&s);
            if let Some(slot) = self.log.get_mut(&s) {
                slot.chosen = true;
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
        lead.peers.values_mut().for_each(|p| p.sent_commit = p.sent_commit.max(commit));
        for p in self.peer_ids() {
            self.send(p, Message::Heartbeat { ballot, commit, ctx });
        }
    }

    /// A heartbeat to one peer carrying the current commit point. It reuses the current read
    /// round, which only reads registered before that round's broadcast wait for.
    fn send_commit(&mut self, peer: NodeId) {
        let commit = self.commit;
        let Some(pr) = self.lead.as_mut().and_then(|l| l.peers.get_mut(&peer)) else { return };
        pr.sent_commit = commit;
        let lead = self.lead.as_ref().expect("leading");
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
        let stale: Vec<(u64, Vec<NodeId>)> = lead
            .pending
            .iter_mut()
            .filter(|(_, p)| now.saturating_sub(p.sent_at) >= age)
            .map(|(&s, p)| {
                p.sent_at = now;
                (s, p.acks.clone())
            })
            .collect();
        if stale.is_empty() {
            return;
        }
        for peer in self.peer_ids() {
            let entries: Vec<(u64, EntryData)> = stale
                .iter()
                .filter(|(_, acks)| !acks.contains(&peer))
                .filter_map(|(s, _)| self.log.get(s).map(|slot| (*s, slot.data.clone())))
                .collect();
            for chunk in entries.chunks(self.cfg.batch_max).take(self.cfg.max_inflight_msgs) {
                self.send(peer, Message::Accept { ballot, commit, entries: chunk.to_vec() });
            }
        }
    }

    /// Sends a lagging learner the next chosen values (or our snapshot) after `from - 1`.
    fn send_catch_up(&mut self, peer: NodeId, from: u64) {
        let Some(lead) = self.lead.as_ref() else { return };
        if !lead.peers.contains_key(&peer) {
            return;
        }
        let ballot = lead.ballot;
        let msg = if from <= self.snapshot_index {
            let Some(snapshot) = self.snapshot.clone() else { return };
            Message::InstallSnapshot { ballot, snapshot, membership: self.base_conf.clone() }
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
        if let Some(pr) = self.lead.as_mut().and_then(|l| l.peers.get_mut(&peer)) {
            pr.catchup_at = Some(now);
        }
    }

    /// Called with an acceptor's reported chosen prefix and the leader commit it had seen.
    fn maybe_catch_up(&mut self, peer: NodeId, peer_commit: u64, seen: u64) {
        let Some(lead) = self.lead.as_mut() else { return };
        let Some(pr) = lead.peers.get_mut(&peer) else { return };
        pr.commit = pr.commit.max(peer_commit);
        if lead.leaving.get(&peer).is_some_and(|&at| peer_commit >= at) {
            // It knows it was removed: stop sending to it.
            lead.leaving.remove(&peer);
            self.sync_peers();
            return;
        }
        let Some(pr) = self.lead.as_ref().and_then(|l| l.peers.get(&peer)) else { return };
        if peer_commit >= seen.min(self.commit) {
            return;
        }
        let retry = self.cfg.election_ticks_min as u64;
        if pr.catchup_at.is_some_and(|t| self.now.saturating_sub(t) < retry) {
            return;
        }
        self.send_catch_up(peer, peer_commit + 1);
    }

    fn mark_active(&mut self, from: NodeId) {
        if let Some(pr) = self.lead.as_mut().and_then(|l| l.peers.get_mut(&from)) {
            pr.active = true;
        }
    }

    /// Releases the reads whose heartbeat round a quorum has acknowledged.
    fn release_reads(&mut self) {
        // The newest configuration: a majority of it meets a majority of the one before, and
        // any leader after this one needs both if the newest is not chosen yet.
        let conf = self.latest_conf().clone();
        let me = self.cfg.id;
        let Some(lead) = self.lead.as_mut() else { return };
        if lead.reads.is_empty() {
            return;
        }
        let mut ctxs: Vec<u64> =
            lead.peers.iter().filter(|(id, _)| conf.is_voter(**id)).map(|(_, p)| p.read_ctx).collect();
        if conf.is_voter(me) {
            ctxs.push(lead.read_round);
        }
        ctxs.sort_unstable_by(|a, b| b.cmp(a));
        let Some(&confirmed) = ctxs.get(conf.quorum() - 1) else { return };
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
        self.probe_grants.insert(from);
        if Self::majority(&self.conf, self.probe_grants.iter().copied()) {
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
        let mut membership = None;
        let mut start = from_slot.max(1);
        if start <= self.snapshot_index {
            snapshot = self.snapshot.clone();
            membership = Some(self.base_conf.clone());
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
        self.send(from, Message::Promise { ballot, from: from_slot, upto, complete, entries, snapshot, membership });
    }

    #[allow(clippy::too_many_arguments)] // the fields of one `Promise`
    fn on_promise(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        upto: u64,
        complete: bool,
        entries: Vec<SlotValue>,
        snapshot: Option<Snapshot>,
        membership: Option<Membership>,
    ) {
        if self.role != Role::Candidate || self.cand.as_ref().is_none_or(|c| c.ballot != ballot) {
            return;
        }
        if let Some(s) = snapshot {
            self.install_snapshot(s, membership);
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
            c.complete.insert(from);
            self.ask_for_promises();
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
        if self.lead.as_ref().is_none_or(|l| l.ballot != ballot) {
            return;
        }
        self.mark_active(from);
        if let Some(lead) = self.lead.as_mut() {
            for s in &slots {
                if let Some(p) = lead.pending.get_mut(s)
                    && !p.acks.contains(&from)
                {
                    p.acks.push(from);
                }
            }
        }
        self.check_chosen(slots);
        if self.lead.as_ref().is_some_and(|l| l.peers.get(&from).is_some_and(|p| self.commit > p.sent_commit)) {
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
        let Some(lead) = self.lead.as_mut() else { return };
        if lead.ballot != ballot {
            return;
        }
        let Some(pr) = lead.peers.get_mut(&from) else { return };
        pr.active = true;
        pr.read_ctx = pr.read_ctx.max(ctx);
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

    fn on_install_snapshot(&mut self, from: NodeId, ballot: Ballot, snapshot: Snapshot, membership: Membership) {
        if ballot >= self.promised && self.role == Role::Follower && self.leader == Some(from) {
            self.election_elapsed = 0;
            self.leader_heard = true;
        }
        self.install_snapshot(snapshot, Some(membership));
        self.send(from, Message::ChosenAck { ballot, commit: self.commit });
    }

    fn on_chosen_ack(&mut self, from: NodeId, ballot: Ballot, commit: u64) {
        let Some(lead) = self.lead.as_mut() else { return };
        if lead.ballot != ballot {
            return;
        }
        let Some(pr) = lead.peers.get_mut(&from) else { return };
        pr.active = true;
        pr.catchup_at = None;
        pr.commit = pr.commit.max(commit);
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
        let mut confs: BTreeMap<u64, Membership> = BTreeMap::new();
        for r in records {
            match r {
                Record::Config { index, membership } => {
                    confs.insert(index, membership);
                }
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
        if let Some((_, m)) = confs.range(..=floor).next_back() {
            p.base_conf = m.clone();
            p.conf = m.clone();
            p.conf_index = floor;
        }
        if let Some((&i, m)) = confs.range(floor + 1..).next_back() {
            p.conf = m.clone();
            p.conf_index = i;
        }
        p.advance_commit();
        // What `advance_commit` re-derived is durable already.
        p.out.records.clear();
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
                    let active: Vec<NodeId> = lead
                        .peers
                        .iter()
                        .filter(|(_, p)| p.active)
                        .map(|(&id, _)| id)
                        .chain([self.cfg.id])
                        .collect();
                    lead.peers.values_mut().for_each(|p| p.active = false);
                    if !Self::majority(&self.latest_conf().clone(), active) {
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

    /// Requests are served whoever sends them: a server must accept values from a leader its
    /// chosen prefix does not know as a member yet (or a new server could never catch up),
    /// and promise to a candidate from a configuration it has not learned yet (or a lagging
    /// acceptor could block every election). Replies from strangers count for nothing.
    fn step(&mut self, from: NodeId, msg: Message) {
        let reply = matches!(
            msg,
            Message::ProbeReply { .. }
                | Message::Promise { .. }
                | Message::Nack { .. }
                | Message::Accepted { .. }
                | Message::HeartbeatAck { .. }
                | Message::ChosenAck { .. }
        );
        if from == self.cfg.id || (reply && !self.knows(from)) {
            return;
        }
        self.step_inner(from, msg);
        self.maybe_step_down_removed();
    }

    fn propose_membership(&mut self, change: MembershipChange) -> Result<u64, MembershipError> {
        let Some(lead) = self.lead.as_ref() else {
            return Err(ProposeError::NotLeader { leader: self.leader }.into());
        };
        // Nothing in flight: recovery done, and the previous change chosen and in effect. And
        // a majority holds the whole chosen prefix, which is what lets a later candidate skip
        // the configurations before this change (see `needed_confs`).
        let holders = lead.peers.iter().filter(|(_, p)| p.commit >= self.commit).map(|(&id, _)| id);
        let drained = lead.pending.is_empty() && lead.next_slot == self.commit + 1;
        if !lead.confs.is_empty() {
            return Err(MembershipError::InProgress);
        }
        // A change that would be refused anyway is refused before the drain: a joiner asks to
        // be promoted again and again while it catches up, and a drain per ask held every
        // client command back for an election timeout each time.
        let next = self.conf.apply(change)?;
        if let MembershipChange::Promote(id) = change {
            let lag = self.cfg.batch_max as u64;
            if lead.peers.get(&id).is_none_or(|p| p.commit + lag < self.commit) {
                return Err(MembershipError::NotCaughtUp(id));
            }
        }
        if !drained || !Self::majority(&self.conf, holders.chain([self.cfg.id])) {
            let until = self.now + u64::from(self.cfg.election_ticks_min);
            let lead = self.lead.as_mut().expect("checked");
            if lead.drain_until <= self.now {
                lead.drain_until = until;
            }
            return Err(MembershipError::InProgress);
        }
        let slot = self.lead.as_ref().expect("checked").next_slot;
        let lead = self.lead.as_mut().expect("checked");
        lead.drain_until = 0;
        lead.next_slot = slot + 1;
        lead.confs.insert(slot, next.clone());
        self.sync_peers();
        self.propose_slots(vec![(slot, EntryData::Config(next))]);
        self.maybe_step_down_removed();
        Ok(slot)
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
        if !lead.confs.is_empty() || self.now < lead.drain_until {
            // Nothing goes after a configuration value until it is chosen: those slots'
            // quorums would depend on whether it is.
            return Err(ProposeError::Busy);
        }
        let first = lead.next_slot;
        let entries: Vec<(u64, EntryData)> =
            commands.into_iter().enumerate().map(|(i, c)| (first + i as u64, EntryData::Command(c))).collect();
        self.lead.as_mut().expect("checked").next_slot = first + entries.len() as u64;
        self.propose_slots(entries);
        Ok(())
    }

    fn read_index(&mut self, id: u64) -> Result<(), ProposeError> {
        let commit = self.commit;
        let single = self.latest_conf().voters.len() == 1 && self.latest_conf().is_voter(self.cfg.id);
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
            voters: self.conf.voters.iter().copied().collect(),
            learners: self.conf.learners.iter().copied().collect(),
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
        self.base_conf = if self.conf_index <= snapshot.index {
            self.conf.clone()
        } else {
            self.log
                .range(..=snapshot.index)
                .rev()
                .find_map(|(_, s)| match &s.data {
                    EntryData::Config(m) => Some(m.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| self.base_conf.clone())
        };
        self.log = self.log.split_off(&(snapshot.index + 1));
        self.snapshot_index = snapshot.index;
        self.snapshot = Some(snapshot);
        Ok(())
    }

    fn durable_records(&self) -> Vec<Record> {
        let mut out = vec![
            Record::Promise(self.promised),
            Record::Config { index: self.snapshot_index, membership: self.base_conf.clone() },
        ];
        if self.conf_index > self.snapshot_index {
            out.push(Record::Config { index: self.conf_index, membership: self.conf.clone() });
        }
        let slots: Vec<SlotValue> = self
            .log
            .iter()
            .map(|(&index, s)| SlotValue { index, ballot: s.ballot, data: s.data.clone(), chosen: s.chosen })
            .collect();
        out.extend(slots.chunks(SLOTS_PER_RECORD).map(|c| Record::Slots(c.to_vec())));
        out
    }
}

impl Paxos {
    fn step_inner(&mut self, from: NodeId, msg: Message) {
        match msg {
            Message::Probe { round } => self.on_probe(from, round),
            Message::ProbeReply { round, granted, promised, leader } => {
                self.on_probe_reply(from, round, granted, promised, leader)
            }
            Message::Prepare { ballot, from: s } => self.on_prepare(from, ballot, s),
            Message::Promise { ballot, upto, complete, entries, snapshot, membership, .. } => {
                self.on_promise(from, ballot, upto, complete, entries, snapshot, membership)
            }
            Message::Nack { ballot, promised } => self.on_nack(ballot, promised),
            Message::Accept { ballot, commit, entries } => self.on_accept(from, ballot, commit, entries),
            Message::Accepted { ballot, slots, commit, seen } => self.on_accepted(from, ballot, slots, commit, seen),
            Message::Heartbeat { ballot, commit, ctx } => self.on_heartbeat(from, ballot, commit, ctx),
            Message::HeartbeatAck { ballot, commit, seen, ctx } => {
                self.on_heartbeat_ack(from, ballot, commit, seen, ctx)
            }
            Message::Chosen { ballot, entries } => self.on_chosen(from, ballot, entries),
            Message::InstallSnapshot { ballot, snapshot, membership } => {
                self.on_install_snapshot(from, ballot, snapshot, membership)
            }
            Message::ChosenAck { ballot, commit } => self.on_chosen_ack(from, ballot, commit),
        }
    }
}
