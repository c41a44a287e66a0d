//! The Raft state machine: roles, elections, replication, compaction and the [`Replica`]
//! contract. See the module docs of [`super`].

use std::collections::{BTreeMap, VecDeque};

use crate::replica::{
    Entry, EntryData, Membership, MembershipChange, MembershipError, NodeId, ProposeError, ReadState, Ready, Replica,
    ReplicaConfig, ReplicaError, Role, Snapshot, SplitMix64, Status,
};

use super::msg::{Message, Record};
use super::progress::{Progress, ProgressState};
use super::read_only::{MAX_PENDING_READS, PendingRead};

/// Uncommitted entries a leader accepts before refusing proposals with `Busy`.
pub const MAX_UNCOMMITTED_ENTRIES: u64 = 16_384;

/// A Raft replica. See the [module docs](super).
pub struct Raft {
    pub(super) cfg: ReplicaConfig,
    pub(super) rng: SplitMix64,
    pub(super) term: u64,
    pub(super) vote: Option<NodeId>,
    pub(super) role: Role,
    pub(super) leader: Option<NodeId>,
    /// `leader` was heard from itself since it was set, not only named by a peer. Only then
    /// does it hold a lease here: a dead leader named by peers that heard of it from peers
    /// would otherwise be kept alive by hearsay, every node refusing every candidate.
    pub(super) leader_heard: bool,

    // The log: entries after (base_index, base_term), which a snapshot covers.
    pub(super) base_index: u64,
    pub(super) base_term: u64,
    pub(super) entries: Vec<Entry>,
    pub(super) snapshot: Option<Snapshot>,
    pub(super) commit: u64,
    pub(super) applied: u64,

    // Membership (thesis §4.1): a server uses the latest configuration in its log, committed
    // or not, so `conf` is always the last `Config` entry, or `base_conf` without one.
    pub(super) conf: Membership,
    /// Index of the entry `conf` came from (`base_index` when it is `base_conf`).
    pub(super) conf_index: u64,
    /// The configuration as of `base_index`, for when no configuration entry is left after it.
    pub(super) base_conf: Membership,

    pub(super) election_elapsed: u32,
    pub(super) heartbeat_elapsed: u32,
    pub(super) randomized_timeout: u32,
    pub(super) votes: BTreeMap<NodeId, bool>,
    pub(super) progress: BTreeMap<NodeId, Progress>,
    pub(super) transferee: Option<NodeId>,
    pub(super) transfer_elapsed: u32,

    pub(super) read_ctx: u64,
    /// A read round was opened and its heartbeats are not sent yet.
    pub(super) read_round_due: bool,
    pub(super) pending_reads: VecDeque<PendingRead>,
    /// Reads received before this leader committed an entry of its own term.
    pub(super) early_reads: Vec<u64>,

    // Output, drained by `ready`.
    pub(super) msgs: Vec<(NodeId, Message)>,
    pub(super) records: Vec<Record>,
    pub(super) read_states: Vec<ReadState>,
    pub(super) install: Option<Snapshot>,
    pub(super) persisted_hs: (u64, Option<NodeId>, u64),
}

impl Raft {
    pub(super) fn quorum(&self) -> usize {
        self.conf.quorum()
    }

    pub(super) fn is_voter(&self) -> bool {
        self.conf.is_voter(self.cfg.id)
    }

    /// The other voters: whom a candidate asks for votes.
    fn voter_peers(&self) -> Vec<NodeId> {
        self.conf.voters.iter().copied().filter(|&m| m != self.cfg.id).collect()
    }

    /// Everyone a leader replicates to: the other voters and the learners.
    fn peers(&self) -> Vec<NodeId> {
        self.progress.keys().copied().collect()
    }

    /// The latest configuration in the log and the index it came from.
    fn conf_from_log(&self, upto: u64) -> (Membership, u64) {
        let hi = upto.min(self.last_index()).saturating_sub(self.base_index) as usize;
        self.entries[..hi]
            .iter()
            .rev()
            .find_map(|e| match &e.data {
                EntryData::Config(m) => Some((m.clone(), e.index)),
                _ => None,
            })
            .unwrap_or_else(|| (self.base_conf.clone(), self.base_index))
    }

    /// Re-derives `conf` after the log changed; a leader starts or stops replicating to the
    /// servers that joined or left.
    fn refresh_conf(&mut self) {
        let (conf, index) = self.conf_from_log(u64::MAX);
        self.conf = conf;
        self.conf_index = index;
        if self.role == Role::Leader {
            let next = self.last_index() + 1;
            let me = self.cfg.id;
            // A server this entry removes keeps receiving the log until it holds the entry,
            // so that it learns it was removed and stops campaigning (see `prune_progress`).
            let prev = self.conf_from_log(self.conf_index.saturating_sub(1)).0;
            let conf = &self.conf;
            self.progress.retain(|id, _| (conf.contains(*id) || prev.contains(*id)) && *id != me);
            for id in conf.all().filter(|&id| id != me) {
                self.progress.entry(id).or_insert_with(|| Progress::new(next));
            }
        }
    }

    /// Stops replicating to removed servers once they hold the entry that removed them and
    /// the entry is committed. Run after each input, never in the middle of handling one
    /// (handlers hold on to a peer's progress).
    fn prune_progress(&mut self) {
        if self.role != Role::Leader || self.commit < self.conf_index {
            return;
        }
        let (conf, at) = (&self.conf, self.conf_index);
        self.progress.retain(|id, p| conf.contains(*id) || p.matched < at);
    }

    /// Thesis §4.2.2: a leader that is not part of the configuration it manages steps down
    /// once that configuration is committed. It hands over at once to a caught-up voter
    /// rather than let the cluster wait out an election timeout.
    fn maybe_step_down_removed(&mut self) {
        self.prune_progress();
        if self.role != Role::Leader || self.is_voter() || self.commit < self.conf_index {
            return;
        }
        let last = self.last_index();
        let heir = self
            .progress
            .iter()
            .filter(|(id, p)| self.conf.is_voter(**id) && p.matched == last)
            .map(|(&id, _)| id)
            .next();
        if let Some(h) = heir {
            self.send(h, Message::TimeoutNow { term: self.term });
        }
        let term = self.term;
        self.become_follower(term, None);
    }

    fn send(&mut self, to: NodeId, msg: Message) {
        self.msgs.push((to, msg));
    }

    fn reset(&mut self, term: u64) {
        if term != self.term {
            self.term = term;
            self.vote = None;
        }
        self.leader = None;
        self.leader_heard = false;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.randomized_timeout =
            self.rng.range_inclusive(self.cfg.election_ticks_min as u64, self.cfg.election_ticks_max as u64) as u32;
        self.votes.clear();
        self.transferee = None;
        self.pending_reads.clear();
        self.early_reads.clear();
    }

    fn become_follower(&mut self, term: u64, leader: Option<NodeId>) {
        self.reset(term);
        self.role = Role::Follower;
        self.leader = leader;
    }

    fn become_pre_candidate(&mut self) {
        // PreVote changes neither term nor vote: a partitioned node that keeps pre-campaigning
        // cannot inflate its term and later disrupt a healthy leader.
        self.votes.clear();
        self.leader = None;
        self.role = Role::PreCandidate;
        self.election_elapsed = 0;
        self.randomized_timeout =
            self.rng.range_inclusive(self.cfg.election_ticks_min as u64, self.cfg.election_ticks_max as u64) as u32;
    }

    fn become_candidate(&mut self) {
        let term = self.term + 1;
        self.reset(term);
        self.role = Role::Candidate;
        self.vote = Some(self.cfg.id);
    }

    fn become_leader(&mut self) {
        let term = self.term;
        self.reset(term);
        self.role = Role::Leader;
        self.leader = Some(self.cfg.id);
        self.leader_heard = true;
        let next = self.last_index() + 1;
        let me = self.cfg.id;
        self.progress = self.conf.all().filter(|&p| p != me).map(|p| (p, Progress::new(next))).collect();
        // §8: a leader commits a blank no-op entry at the start of its term to learn which
        // entries are committed, and before serving reads.
        self.append_local(vec![EntryData::Noop]);
        self.bcast_append();
    }

    fn append_local(&mut self, data: Vec<EntryData>) {
        let mut index = self.last_index();
        let new: Vec<Entry> = data
            .into_iter()
            .map(|data| {
                index += 1;
                Entry { index, term: self.term, data }
            })
            .collect();
        let config = new.iter().any(|e| matches!(e.data, EntryData::Config(_)));
        self.entries.extend(new.iter().cloned());
        self.records.push(Record::Entries(new));
        if config {
            self.refresh_conf();
        }
        self.maybe_commit();
    }

    fn campaign(&mut self, pre: bool, transfer: bool) {
        if !self.is_voter() {
            // Learners, joining servers and removed servers never campaign: their votes do
            // not count, and a removed server's higher term would only disrupt the cluster.
            return;
        }
        if pre {
            self.become_pre_candidate();
        } else {
            self.become_candidate();
        }
        let term = if pre { self.term + 1 } else { self.term };
        self.votes.insert(self.cfg.id, true);
        if self.votes.len() >= self.quorum() {
            if pre {
                self.campaign(false, false);
            } else {
                self.become_leader();
            }
            return;
        }
        let (last_index, last_term) = (self.last_index(), self.last_term());
        for p in self.voter_peers() {
            let msg = if pre {
                Message::PreVote { term, last_index, last_term }
            } else {
                Message::RequestVote { term, last_index, last_term, transfer }
            };
            self.send(p, msg);
        }
    }

    /// Votes of the current voters only: a vote from a server this candidate's
    /// configuration does not count must not make a majority.
    fn tally(&self) -> (usize, usize) {
        let counted = || self.votes.iter().filter(|(id, _)| self.conf.is_voter(**id));
        let granted = counted().filter(|(_, g)| **g).count();
        (granted, counted().count() - granted)
    }

    fn in_lease(&self) -> bool {
        self.cfg.check_quorum && self.leader.is_some() && self.leader_heard && self.election_elapsed < self.cfg.election_ticks_min
    }

    /// Advances the commit index to the highest index a quorum has stored, if that entry is
    /// from the current term (§5.4.2).
    fn maybe_commit(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        // Thesis §4.2.2: a leader being removed replicates but does not count itself.
        let mut matched: Vec<u64> =
            self.progress.iter().filter(|(id, _)| self.conf.is_voter(**id)).map(|(_, p)| p.matched).collect();
        if self.is_voter() {
            matched.push(self.last_index());
        }
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let n = matched[self.quorum() - 1];
        if n > self.commit && self.term_at(n) == Some(self.term) {
            self.commit = n;
            self.release_early_reads();
        }
    }

    pub(super) fn committed_in_term(&self) -> bool {
        self.term_at(self.commit) == Some(self.term)
    }

    fn bcast_append(&mut self) {
        for p in self.peers() {
            self.send_append(p);
        }
    }

    fn bcast_heartbeat(&mut self) {
        // Every peer now hears the current read round: reads registered from here on must
        // open a new one, or an ack of this earlier heartbeat could confirm them.
        self.read_round_due = false;
        for p in self.peers() {
            self.send_heartbeat(p);
        }
    }

    fn send_heartbeat(&mut self, to: NodeId) {
        // A round still due is not on the wire until it is broadcast; a lone heartbeat must
        // not carry it, or its ack could confirm reads registered after it was sent.
        let ctx = self.read_ctx - u64::from(self.read_round_due);
        let term = self.term;
        let pr = self.progress.get_mut(&to).expect("progress for every peer");
        let commit = self.commit.min(pr.matched);
        pr.sent_commit = pr.sent_commit.max(commit);
        self.send(to, Message::Heartbeat { term, commit, ctx });
    }

    /// Sends the next batch of entries to `to` if its progress allows, or a snapshot when the
    /// entries it needs were compacted away.
    fn send_append(&mut self, to: NodeId) {
        let last = self.last_index();
        let (term, commit, batch_max, inflight_max) =
            (self.term, self.commit, self.cfg.batch_max as u64, self.cfg.max_inflight_msgs);
        let pr = self.progress.get(&to).expect("progress for every peer");
        match pr.state {
            ProgressState::Snapshot { .. } => return,
            ProgressState::Probe if pr.probe_sent => return,
            ProgressState::Replicate if pr.inflight.len() >= inflight_max => return,
            ProgressState::Replicate if pr.next > last => return,
            _ => {}
        }
        let prev_index = pr.next - 1;
        let Some(prev_term) = self.term_at(prev_index) else {
            self.send_snapshot(to);
            return;
        };
        let hi = last.min(prev_index + batch_max);
        let entries: Vec<Entry> = (prev_index + 1..=hi).map(|i| self.entry(i).clone()).collect();
        let pr = self.progress.get_mut(&to).expect("progress");
        pr.sent_commit = pr.sent_commit.max(commit.min(hi));
        match pr.state {
            ProgressState::Replicate => {
                pr.next = hi + 1;
                pr.inflight.push_back(hi);
            }
            _ => pr.probe_sent = true,
        }
        self.send(to, Message::Append { term, prev_index, prev_term, entries, commit });
    }

    fn send_snapshot(&mut self, to: NodeId) {
        let Some(snap) = self.snapshot.clone() else {
            // Compaction always keeps a snapshot; without one the peer simply waits.
            return;
        };
        let pr = self.progress.get_mut(&to).expect("progress");
        pr.state = ProgressState::Snapshot { pending: snap.index, ticks: 0 };
        pr.inflight.clear();
        let membership = self.base_conf.clone();
        self.send(to, Message::InstallSnapshot { term: self.term, snapshot: snap, membership });
    }


    fn handle_vote(&mut self, from: NodeId, pre: bool, term: u64, last_index: u64, last_term: u64) {
        // "If votedFor is null or candidateId, and candidate's log is at least as up-to-date
        // as receiver's log, grant vote." A pre-vote for a future term is granted on the log
        // alone, since it binds nothing.
        let can_vote = self.vote == Some(from)
            || (self.vote.is_none() && self.leader.is_none())
            || (pre && term > self.term);
        let t = self.term;
        let granted = can_vote && self.is_up_to_date(last_index, last_term);
        match (pre, granted) {
            (true, true) => self.send(from, Message::PreVoteResp { term, granted: true, leader: None }),
            (true, false) => {
                let leader = self.leader.filter(|_| self.in_lease() || self.role == Role::Leader);
                self.send(from, Message::PreVoteResp { term: t, granted: false, leader })
            }
            (false, true) => {
                self.election_elapsed = 0;
                self.vote = Some(from);
                self.send(from, Message::RequestVoteResp { term, granted: true });
            }
            (false, false) => self.send(from, Message::RequestVoteResp { term: t, granted: false }),
        }
    }

    fn handle_append(&mut self, from: NodeId, prev_index: u64, prev_term: u64, entries: Vec<Entry>, commit: u64) {
        let term = self.term;
        if prev_index < self.commit {
            self.send(from, Message::AppendResp { term, index: self.commit, reject: false, hint_index: 0, hint_term: 0 });
            return;
        }
        // Malformed batches (non-contiguous, or older terms than prev) are dropped unanswered.
        let contiguous = entries.iter().enumerate().all(|(k, e)| e.index == prev_index + 1 + k as u64)
            && entries.windows(2).all(|w| w[0].term <= w[1].term)
            && entries.first().is_none_or(|e| e.term >= prev_term);
        if !contiguous {
            return;
        }
        if !self.match_term(prev_index, prev_term) {
            let hint = self.find_conflict_by_term(prev_index.min(self.last_index()), prev_term);
            let hint_term = self.term_at(hint).unwrap_or(0);
            self.send(from, Message::AppendResp { term, index: prev_index, reject: true, hint_index: hint, hint_term });
            return;
        }
        let last_new = prev_index + entries.len() as u64;
        // "If an existing entry conflicts with a new one (same index but different terms),
        // delete the existing entry and all that follow it"; entries already present are kept.
        let first_new = entries.iter().position(|e| !self.match_term(e.index, e.term));
        if let Some(pos) = first_new {
            let at = entries[pos].index;
            assert!(at > self.commit, "conflict at {at} below commit {}: log matching violated", self.commit);
            let cut = (at - self.base_index - 1) as usize;
            // A configuration entry is in effect from the moment it is appended, and stops
            // being in effect when a conflicting leader's log removes it.
            let config = self.entries[cut..].iter().chain(&entries[pos..]).any(|e| matches!(e.data, EntryData::Config(_)));
            self.entries.truncate(cut);
            let new: Vec<Entry> = entries[pos..].to_vec();
            self.entries.extend(new.iter().cloned());
            self.records.push(Record::Entries(new));
            if config {
                self.refresh_conf();
            }
        }
        // "If leaderCommit > commitIndex, set commitIndex = min(leaderCommit, index of last new entry)".
        let c = commit.min(last_new);
        if c > self.commit {
            self.commit = c;
        }
        self.send(from, Message::AppendResp { term, index: last_new, reject: false, hint_index: 0, hint_term: 0 });
    }

    fn handle_snapshot(&mut self, from: NodeId, snap: Snapshot, membership: Membership) {
        let term = self.term;
        if snap.index <= self.commit {
            self.send(from, Message::AppendResp { term, index: self.commit, reject: false, hint_index: 0, hint_term: 0 });
            return;
        }
        if self.match_term(snap.index, snap.term) {
            // "If existing log entry has same index and term as snapshot's last included entry,
            // retain log entries following it": only the commit index moves.
            self.commit = snap.index;
        } else {
            // "Discard the entire log ... reset state machine using snapshot contents".
            self.entries.clear();
            self.base_index = snap.index;
            self.base_term = snap.term;
            self.commit = snap.index;
            self.applied = snap.index;
            self.records.push(Record::SnapshotMark { index: snap.index, term: snap.term });
            self.records.push(Record::SnapshotConfig { index: snap.index, membership: membership.clone() });
            self.base_conf = membership;
            self.refresh_conf();
            self.snapshot = Some(snap.clone());
            self.install = Some(snap);
        }
        let index = self.last_index().max(self.commit);
        self.send(from, Message::AppendResp { term, index, reject: false, hint_index: 0, hint_term: 0 });
    }

    fn handle_append_resp(&mut self, from: NodeId, index: u64, reject: bool, hint_index: u64, hint_term: u64) {
        let last = self.last_index();
        let Some(pr) = self.progress.get_mut(&from) else { return };
        pr.recent_active = true;
        if reject {
            let moved = match pr.state {
                ProgressState::Replicate => {
                    if index <= pr.matched {
                        false
                    } else {
                        pr.become_probe();
                        true
                    }
                }
                ProgressState::Probe => {
                    if pr.next.saturating_sub(1) != index {
                        false // stale rejection of an older probe
                    } else {
                        true
                    }
                }
                ProgressState::Snapshot { .. } => false,
            };
            if !moved {
                return;
            }
            let probe = if hint_term > 0 { self.find_conflict_by_term(hint_index, hint_term) } else { hint_index };
            let pr = self.progress.get_mut(&from).expect("progress");
            if pr.state == ProgressState::Probe {
                pr.next = index.min(probe + 1).max(pr.matched + 1);
                pr.probe_sent = false;
            }
            self.send_append(from);
            return;
        }
        let updated = index > pr.matched;
        if updated {
            pr.matched = index;
            pr.stall_ticks = 0;
        }
        pr.next = pr.next.max(index + 1);
        while pr.inflight.front().is_some_and(|&i| i <= index) {
            pr.inflight.pop_front();
        }
        match pr.state {
            ProgressState::Probe => pr.become_replicate(),
            ProgressState::Snapshot { pending, .. } if pr.matched >= pending => pr.become_probe(),
            _ => {}
        }
        if matches!(pr.state, ProgressState::Probe) && pr.matched >= index {
            pr.probe_sent = false;
        }
        let caught_up = pr.matched == last;
        if updated {
            let before = self.commit;
            self.maybe_commit();
            if self.commit > before {
                // Tell followers about the new commit index promptly.
                self.bcast_append_or_heartbeat();
            }
        }
        // Keep the pipe full.
        let mut guard = self.cfg.max_inflight_msgs;
        while guard > 0 && self.progress[&from].next <= self.last_index() {
            let before = self.msgs.len();
            self.send_append(from);
            if self.msgs.len() == before {
                break;
            }
            guard -= 1;
        }
        let pr = &self.progress[&from];
        if self.commit.min(pr.matched) > pr.sent_commit {
            // The commit point moved before this follower's ack arrived: tell it now rather
            // than at the next heartbeat.
            self.send_heartbeat(from);
        }
        if caught_up && self.transferee == Some(from) {
            self.send(from, Message::TimeoutNow { term: self.term });
        }
    }

    fn bcast_append_or_heartbeat(&mut self) {
        for p in self.peers() {
            let before = self.msgs.len();
            self.send_append(p);
            if self.msgs.len() == before {
                self.send_heartbeat(p);
            }
        }
    }

    fn tick_leader(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if self.election_elapsed >= self.cfg.election_ticks_min {
            self.election_elapsed = 0;
            if self.cfg.check_quorum {
                let active = usize::from(self.is_voter())
                    + self.progress.iter().filter(|(id, p)| p.recent_active && self.conf.is_voter(**id)).count();
                for p in self.progress.values_mut() {
                    p.recent_active = false;
                }
                if active < self.quorum() {
                    // CheckQuorum: a leader cut off from a majority steps down instead of
                    // accepting writes it can never commit.
                    let term = self.term;
                    self.become_follower(term, None);
                    return;
                }
            }
        }
        if self.transferee.is_some() {
            self.transfer_elapsed += 1;
            if self.transfer_elapsed >= self.cfg.election_ticks_min {
                self.transferee = None;
            }
        }
        let timeout = self.cfg.election_ticks_min;
        let last = self.last_index();
        for pr in self.progress.values_mut() {
            if pr.matched < last {
                pr.stall_ticks = pr.stall_ticks.saturating_add(1);
            } else {
                pr.stall_ticks = 0;
            }
            if let ProgressState::Snapshot { ticks, .. } = &mut pr.state {
                *ticks += 1;
                if *ticks >= timeout {
                    // The InstallSnapshot was probably lost: probe again, which resends it.
                    pr.become_probe();
                }
            }
        }
        if self.heartbeat_elapsed >= self.cfg.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            self.bcast_heartbeat();
        }
    }

    fn restore_inner(cfg: ReplicaConfig, snapshot: Option<Snapshot>, records: Vec<Record>) -> Result<Raft, ReplicaError> {
        cfg.validate()?;
        let mut r = Raft {
            rng: SplitMix64::new(cfg.seed),
            term: 0,
            vote: None,
            role: Role::Follower,
            leader: None,
            leader_heard: false,
            base_index: 0,
            base_term: 0,
            entries: Vec::new(),
            snapshot: None,
            commit: 0,
            applied: 0,
            conf: Membership::new(cfg.members.iter().copied()),
            conf_index: 0,
            base_conf: Membership::new(cfg.members.iter().copied()),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_timeout: 0,
            votes: BTreeMap::new(),
            progress: BTreeMap::new(),
            transferee: None,
            transfer_elapsed: 0,
            read_ctx: 0,
            read_round_due: false,
            pending_reads: VecDeque::new(),
            early_reads: Vec::new(),
            msgs: Vec::new(),
            records: Vec::new(),
            read_states: Vec::new(),
            install: None,
            persisted_hs: (0, None, 0),
            cfg,
        };
        if let Some(s) = snapshot {
            r.base_index = s.index;
            r.base_term = s.term;
            r.applied = s.index;
            r.commit = s.index;
            r.snapshot = Some(s);
        }
        // Configurations at or below the snapshot, by index: from the snapshot's own record, or
        // from the entries of a WAL not yet rewritten after the snapshot was taken.
        let mut low_confs: BTreeMap<u64, Membership> = BTreeMap::new();
        let mut entry_confs: BTreeMap<u64, Membership> = BTreeMap::new();
        for rec in records {
            match rec {
                Record::SnapshotConfig { index, membership } => {
                    low_confs.insert(index, membership);
                }
                Record::HardState { term, vote, commit } => {
                    r.term = term;
                    r.vote = vote;
                    r.commit = r.commit.max(commit);
                }
                Record::SnapshotMark { index, term } => {
                    r.entries.clear();
                    if index > r.base_index {
                        r.base_index = index;
                        r.base_term = term;
                    }
                }
                Record::Entries(es) => {
                    if let Some(first) = es.first() {
                        entry_confs.split_off(&first.index);
                    }
                    for e in &es {
                        if let EntryData::Config(m) = &e.data {
                            entry_confs.insert(e.index, m.clone());
                        }
                    }
                    let es: Vec<Entry> = es.into_iter().filter(|e| e.index > r.base_index).collect();
                    let Some(first) = es.first() else { continue };
                    if first.index > r.last_index() + 1 {
                        return Err(ReplicaError::Corrupt(format!(
                            "entries start at {} but the log ends at {}",
                            first.index,
                            r.last_index()
                        )));
                    }
                    r.entries.truncate((first.index - r.base_index - 1) as usize);
                    r.entries.extend(es);
                }
            }
        }
        if r.snapshot.as_ref().is_some_and(|s| s.index < r.base_index) || (r.snapshot.is_none() && r.base_index > 0) {
            return Err(ReplicaError::Corrupt(format!("log starts after {} but no snapshot covers it", r.base_index)));
        }
        if r.commit > r.last_index() {
            return Err(ReplicaError::Corrupt(format!(
                "commit index {} beyond the last log entry {}",
                r.commit,
                r.last_index()
            )));
        }
        low_confs.extend(entry_confs.into_iter().filter(|(i, _)| *i <= r.base_index));
        // Without any record the configuration never changed: it is still the initial one
        // (a WAL written before membership changes existed, say).
        if let Some((_, m)) = low_confs.range(..=r.base_index).next_back() {
            r.base_conf = m.clone();
        }
        r.refresh_conf();
        r.persisted_hs = (r.term, r.vote, r.commit);
        let term = r.term;
        let vote = r.vote;
        r.become_follower(term, None);
        r.vote = vote;
        Ok(r)
    }

    /// Thesis §4.1: "servers process incoming RPC requests without consulting their current
    /// configurations": a server must take the log from a leader its own log does not know
    /// yet (or a new server could never receive the entries before the one adding it), and
    /// vote for such a candidate (or a lagging voter could block every election). Replies
    /// from outside the configuration, though, count for nothing and are dropped: a removed
    /// server's higher term in a reply must not depose the leader.
    fn step_inner(&mut self, from: NodeId, msg: Message) {
        let reply = matches!(
            msg,
            Message::PreVoteResp { .. }
                | Message::RequestVoteResp { .. }
                | Message::AppendResp { .. }
                | Message::HeartbeatResp { .. }
        );
        let known = self.conf.contains(from) || (self.role == Role::Leader && self.progress.contains_key(&from));
        if from == self.cfg.id || (reply && !known) {
            return;
        }
        let mterm = msg.term();
        if mterm > self.term {
            match &msg {
                Message::PreVote { .. } if self.in_lease() => {
                    // §9.6 of the thesis: a server that hears from a current leader does not
                    // grant the vote (nor updates its term). It does say who leads, so that
                    // a server that has just come back follows that leader.
                    let (term, leader) = (self.term, self.leader);
                    self.send(from, Message::PreVoteResp { term, granted: false, leader });
                    return;
                }
                Message::RequestVote { transfer: false, .. } if self.in_lease() => {
                    // §6 of the thesis: a server that hears from a current leader ignores
                    // votes, so a removed or partitioned server cannot depose it.
                    return;
                }
                Message::PreVote { .. } => {}
                Message::PreVoteResp { granted: true, .. } => {}
                Message::PreVoteResp { granted: false, leader: Some(l), .. } if *l != self.cfg.id => {
                    let l = *l;
                    self.become_follower(mterm, Some(l));
                }
                Message::Append { .. } | Message::Heartbeat { .. } | Message::InstallSnapshot { .. } => {
                    self.become_follower(mterm, Some(from));
                }
                _ => self.become_follower(mterm, None),
            }
        } else if mterm < self.term {
            match msg {
                Message::Append { .. } | Message::Heartbeat { .. }
                    if self.cfg.check_quorum || self.cfg.prevote =>
                {
                    // A stale leader that never hears a higher term would keep its role
                    // forever when votes are refused through PreVote/leases; tell it.
                    let term = self.term;
                    self.send(from, Message::AppendResp { term, index: 0, reject: false, hint_index: 0, hint_term: 0 });
                }
                Message::PreVote { .. } => {
                    let term = self.term;
                    let leader = self.leader.filter(|_| self.in_lease() || self.role == Role::Leader);
                    self.send(from, Message::PreVoteResp { term, granted: false, leader });
                }
                _ => {}
            }
            return;
        }

        match msg {
            Message::PreVote { term, last_index, last_term } => self.handle_vote(from, true, term, last_index, last_term),
            Message::RequestVote { term, last_index, last_term, .. } => {
                self.handle_vote(from, false, term, last_index, last_term)
            }
            Message::PreVoteResp { term, granted, leader } => {
                if self.role != Role::PreCandidate || (granted && term != self.term + 1) {
                    return;
                }
                if let Some(l) = leader.filter(|&l| !granted && l != self.cfg.id) {
                    // A peer of our term hears its leader: follow it (one leader per term).
                    self.become_follower(term, Some(l));
                    return;
                }
                self.votes.entry(from).or_insert(granted);
                let (yes, no) = self.tally();
                if yes >= self.quorum() {
                    self.campaign(false, false);
                } else if no >= self.quorum() {
                    let t = self.term;
                    self.become_follower(t, None);
                }
            }
            Message::RequestVoteResp { granted, .. } => {
                if self.role != Role::Candidate {
                    return;
                }
                self.votes.entry(from).or_insert(granted);
                let (yes, no) = self.tally();
                if yes >= self.quorum() {
                    self.become_leader();
                } else if no >= self.quorum() {
                    let t = self.term;
                    self.become_follower(t, None);
                }
            }
            Message::Append { term, prev_index, prev_term, entries, commit } => {
                if self.role != Role::Follower {
                    self.become_follower(term, Some(from));
                }
                self.leader = Some(from);
                self.leader_heard = true;
                self.election_elapsed = 0;
                self.handle_append(from, prev_index, prev_term, entries, commit);
            }
            Message::Heartbeat { term, commit, ctx } => {
                if self.role != Role::Follower {
                    self.become_follower(term, Some(from));
                }
                self.leader = Some(from);
                self.leader_heard = true;
                self.election_elapsed = 0;
                // The leader caps `commit` at our confirmed match, so our prefix up to it is its.
                let c = commit.min(self.last_index());
                if c > self.commit {
                    self.commit = c;
                }
                self.send(from, Message::HeartbeatResp { term, ctx });
            }
            Message::InstallSnapshot { term, snapshot, membership } => {
                if self.role != Role::Follower {
                    self.become_follower(term, Some(from));
                }
                self.leader = Some(from);
                self.leader_heard = true;
                self.election_elapsed = 0;
                self.handle_snapshot(from, snapshot, membership);
            }
            Message::AppendResp { index, reject, hint_index, hint_term, .. } => {
                if self.role == Role::Leader {
                    self.handle_append_resp(from, index, reject, hint_index, hint_term);
                }
            }
            Message::HeartbeatResp { ctx, .. } => {
                if self.role != Role::Leader {
                    return;
                }
                let last = self.last_index();
                let Some(pr) = self.progress.get_mut(&from) else { return };
                pr.recent_active = true;
                pr.probe_sent = false;
                pr.read_ack = pr.read_ack.max(ctx);
                if pr.state == ProgressState::Replicate && pr.stall_ticks >= 2 * self.cfg.heartbeat_ticks {
                    // Something in the stream was lost: resume from what the follower has.
                    pr.become_probe();
                    pr.stall_ticks = 0;
                }
                if pr.matched < last {
                    self.send_append(from);
                }
                self.advance_reads();
            }
            Message::TimeoutNow { .. } => {
                if self.role != Role::Leader && self.is_voter() {
                    self.campaign(false, true);
                }
            }
        }
    }
}

impl Replica for Raft {
    type Message = Message;
    type Record = Record;
    const ALGO: &'static str = "raft";

    fn restore(cfg: ReplicaConfig, snapshot: Option<Snapshot>, records: Vec<Record>) -> Result<Self, ReplicaError> {
        Raft::restore_inner(cfg, snapshot, records)
    }

    fn tick(&mut self) {
        if self.role == Role::Leader {
            self.tick_leader();
            return;
        }
        self.election_elapsed = self.election_elapsed.saturating_add(1);
        if self.election_elapsed >= self.randomized_timeout {
            if self.is_voter() {
                self.election_elapsed = 0;
                self.campaign(self.cfg.prevote, false);
            } else {
                // A server that may not campaign still stops vouching for a leader it no
                // longer hears, or its refusals would shield a dead leader for ever.
                self.leader_heard = false;
            }
        }
        self.maybe_step_down_removed();
    }

    fn step(&mut self, from: NodeId, msg: Message) {
        self.step_inner(from, msg);
        self.maybe_step_down_removed();
    }

    fn propose(&mut self, commands: Vec<Vec<u8>>) -> Result<(), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader { leader: self.leader });
        }
        if self.transferee.is_some() {
            return Err(ProposeError::Transferring);
        }
        if self.last_index() - self.commit + commands.len() as u64 > MAX_UNCOMMITTED_ENTRIES {
            return Err(ProposeError::Busy);
        }
        if commands.is_empty() {
            return Ok(());
        }
        self.append_local(commands.into_iter().map(EntryData::Command).collect());
        self.bcast_append();
        Ok(())
    }

    /// Thesis §4.1: the change takes effect on each server as soon as its entry is in that
    /// server's log. The leader accepts a change only once the previous one is committed,
    /// and only once it has committed an entry of its own term: without that a leader
    /// elected under an older configuration could commit a change whose majority does not
    /// overlap one a competing leader used (the single-server bug, raft-dev 2015).
    fn propose_membership(&mut self, change: MembershipChange) -> Result<u64, MembershipError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader { leader: self.leader }.into());
        }
        if self.transferee.is_some() {
            return Err(ProposeError::Transferring.into());
        }
        if !self.committed_in_term() || self.conf_index > self.commit {
            return Err(MembershipError::InProgress);
        }
        let next = self.conf.apply(change)?;
        if let MembershipChange::Promote(id) = change {
            // Caught up: holds everything committed so far, so counting it in the quorum
            // cannot stall the commit point while it fetches a backlog.
            if self.progress.get(&id).is_none_or(|p| p.matched < self.commit) {
                return Err(MembershipError::NotCaughtUp(id));
            }
        }
        if self.last_index() - self.commit + 1 > MAX_UNCOMMITTED_ENTRIES {
            return Err(ProposeError::Busy.into());
        }
        self.append_local(vec![EntryData::Config(next)]);
        self.bcast_append();
        let index = self.last_index();
        self.maybe_step_down_removed();
        Ok(index)
    }

    fn read_index(&mut self, id: u64) -> Result<(), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader { leader: self.leader });
        }
        if self.pending_reads.len() + self.early_reads.len() >= MAX_PENDING_READS {
            return Err(ProposeError::Busy);
        }
        if !self.committed_in_term() {
            // Until its no-op commits, a new leader does not know the commit index (§8).
            self.early_reads.push(id);
            return Ok(());
        }
        self.start_read(id);
        Ok(())
    }

    fn has_ready(&self) -> bool {
        self.read_round_due
            || !self.msgs.is_empty()
            || !self.records.is_empty()
            || !self.read_states.is_empty()
            || self.install.is_some()
            || self.commit > self.applied
            || (self.term, self.vote) != (self.persisted_hs.0, self.persisted_hs.1)
    }

    fn ready(&mut self) -> Ready<Message, Record> {
        if self.read_round_due {
            if self.role == Role::Leader {
                self.bcast_heartbeat();
            }
            self.read_round_due = false;
        }
        let mut records = std::mem::take(&mut self.records);
        let hs = (self.term, self.vote, self.commit);
        if (hs.0, hs.1) != (self.persisted_hs.0, self.persisted_hs.1) {
            // Last in the batch: a torn write can then lose the hard state but never leave a
            // commit index pointing past entries that did not make it to disk.
            records.push(Record::HardState { term: hs.0, vote: hs.1, commit: hs.2 });
            self.persisted_hs = hs;
        }
        let committed = (self.applied + 1..=self.commit).map(|i| self.entry(i).clone()).collect();
        self.applied = self.commit;
        Ready {
            snapshot: self.install.take(),
            records,
            messages: std::mem::take(&mut self.msgs),
            committed,
            read_states: std::mem::take(&mut self.read_states),
        }
    }

    fn status(&self) -> Status {
        Status {
            id: self.cfg.id,
            role: self.role,
            term: self.term,
            leader: self.leader,
            commit_index: self.commit,
            applied_index: self.applied,
            last_index: self.last_index(),
            snapshot_index: self.base_index,
            voters: self.conf.voters.iter().copied().collect(),
            learners: self.conf.learners.iter().copied().collect(),
        }
    }

    fn compact(&mut self, snapshot: Snapshot) -> Result<(), ReplicaError> {
        let index = snapshot.index;
        let err = |reason: &str| Err(ReplicaError::Compact { index, reason: reason.to_string() });
        if index <= self.base_index {
            return err("not past the current snapshot");
        }
        if index > self.applied {
            return err("not yet applied");
        }
        if self.term_at(index) != Some(snapshot.term) {
            return err("term does not match the log");
        }
        self.base_conf = self.conf_from_log(index).0;
        self.entries.drain(..(index - self.base_index) as usize);
        self.base_index = index;
        self.base_term = snapshot.term;
        self.snapshot = Some(snapshot);
        Ok(())
    }

    fn durable_records(&self) -> Vec<Record> {
        let mut v = vec![
            Record::SnapshotMark { index: self.base_index, term: self.base_term },
            Record::SnapshotConfig { index: self.base_index, membership: self.base_conf.clone() },
        ];
        if !self.entries.is_empty() {
            v.push(Record::Entries(self.entries.clone()));
        }
        let (term, vote, commit) = self.persisted_hs;
        v.push(Record::HardState { term, vote, commit });
        v
    }

    fn transfer_leader(&mut self, to: NodeId) -> Result<(), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader { leader: self.leader });
        }
        if to == self.cfg.id || !self.progress.contains_key(&to) || !self.conf.is_voter(to) {
            return Ok(());
        }
        self.transferee = Some(to);
        self.transfer_elapsed = 0;
        if self.progress[&to].matched == self.last_index() {
            self.send(to, Message::TimeoutNow { term: self.term });
        } else {
            self.send_append(to);
        }
        Ok(())
    }
}
