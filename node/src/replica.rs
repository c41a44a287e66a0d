//! The contract between a consensus core (Raft, Multi-Paxos) and everything around it.
//!
//! A core is a pure, deterministic state machine in the etcd-io/raft mould: it performs no
//! I/O, reads no clock and draws randomness only from the seed in its [`ReplicaConfig`].
//! That is what lets one simulation harness (see [`crate::sim`]) drive either protocol through
//! millions of interleavings reproducibly, and lets the runtime share the WAL, transport,
//! batching, timers and state machine between protocols.
//!
//! # Driving a core
//! The runtime feeds inputs — [`Replica::tick`] every tick, [`Replica::step`] for each peer
//! message, [`Replica::propose`] for client commands, [`Replica::read_index`] for
//! linearizable reads — and after a batch of inputs takes the accumulated [`Ready`] with
//! [`Replica::ready`]. It must handle a `Ready` strictly in this order:
//!
//! 1. if `snapshot` is set: persist it durably and install it into the state machine;
//! 2. append `records` to the WAL and make them durable (one fsync for the whole batch —
//!    group commit); acknowledging a vote or an accept before this point breaks safety;
//! 3. send `messages` (best effort: cores tolerate loss, duplication and reordering);
//! 4. apply `committed` entries in order; entries always arrive gap-free and in index order,
//!    continuing after the last applied entry or after an installed snapshot;
//! 5. serve each [`ReadState`] once the state machine has applied `index`.
//!
//! Handing out a `Ready` moves the core forward: it assumes the runtime carries it out, and
//! a runtime that cannot (say, fsync failed) must stop the process rather than continue.
//!
//! # Durability
//! Each protocol defines its own `Record` type; the WAL stores records opaquely and on
//! start-up hands them back to [`Replica::restore`] in the order they were written, together
//! with the latest snapshot. Records at or below the snapshot index must be ignored by the core.
//! To bound the WAL the runtime periodically calls [`Replica::compact`] with a state-machine
//! snapshot and then rewrites the WAL from [`Replica::durable_records`].
//!
//! # Positions
//! Raft speaks of (term, index); Multi-Paxos of (ballot, slot). Both are mapped onto the
//! same names: `index` is the log position (slot), `term` is the term or ballot round.
//! Index 0 is "before the first entry": the first real entry has index 1.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt::Debug;

/// A replica's identity inside a core: a small integer. The runtime maps configured string
/// ids ("n1") onto these by sorting the member list, so every node agrees on the mapping.
/// Cores treat ids as opaque: after membership changes they need not be `1..=n` or contiguous.
pub type NodeId = u64;

/// Knobs shared by every protocol. Times are in ticks; the runtime converts from the
/// configured milliseconds so that both protocols see identical timing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaConfig {
    pub id: NodeId,
    /// The voting members of the cluster's initial configuration (the one before the first
    /// log entry), sorted and without duplicates. Later configurations come from the log, so
    /// a restarted node needs the same list it started with. A node whose `id` is missing
    /// here is joining an existing cluster: it neither votes nor campaigns until a
    /// configuration entry it receives from the leader makes it a voter.
    pub members: Vec<NodeId>,
    /// An election (or phase-1) timeout is drawn uniformly from `[min, max]` ticks.
    pub election_ticks_min: u32,
    pub election_ticks_max: u32,
    /// A leader sends heartbeats every this many ticks.
    pub heartbeat_ticks: u32,
    /// At most this many entries in one append/accept message.
    pub batch_max: usize,
    /// At most this many unacknowledged append/accept messages in flight per follower.
    pub max_inflight_msgs: usize,
    /// Raft: pre-vote before disrupting a cluster with a higher term. A Paxos core may use it
    /// to ask peers whether they still hear a leader before starting phase 1.
    pub prevote: bool,
    /// Raft: a leader steps down when it has not heard from a quorum for an election
    /// timeout; followers ignore vote requests while they hear from a live leader.
    pub check_quorum: bool,
    /// Seed for the core's private PRNG (randomized timeouts). Never thread_rng.
    pub seed: u64,
}

impl ReplicaConfig {
    /// A configuration with the project defaults, for tests and tools.
    pub fn new(id: NodeId, members: Vec<NodeId>, seed: u64) -> Self {
        ReplicaConfig {
            id,
            members,
            election_ticks_min: 10,
            election_ticks_max: 20,
            heartbeat_ticks: 2,
            batch_max: 64,
            max_inflight_msgs: 64,
            prevote: true,
            check_quorum: true,
            seed,
        }
    }

    pub fn quorum(&self) -> usize {
        self.members.len() / 2 + 1
    }

    /// Checked once at construction so cores can rely on sane values.
    pub fn validate(&self) -> Result<(), ReplicaError> {
        let bad = |m: &str| Err(ReplicaError::Config(m.to_string()));
        if self.members.is_empty() {
            return bad("members must not be empty");
        }
        if self.members.windows(2).any(|w| w[0] >= w[1]) {
            return bad("members must be sorted and unique");
        }
        if self.election_ticks_min == 0 || self.election_ticks_max < self.election_ticks_min {
            return bad("need 0 < election_ticks_min <= election_ticks_max");
        }
        if self.heartbeat_ticks == 0 || self.heartbeat_ticks >= self.election_ticks_min {
            return bad("need 0 < heartbeat_ticks < election_ticks_min");
        }
        if self.batch_max == 0 || self.max_inflight_msgs == 0 {
            return bad("batch_max and max_inflight_msgs must be positive");
        }
        Ok(())
    }
}

/// What a log position holds. `Noop` is what a new leader commits to learn the commit
/// point (Raft §8) or to fill holes (Paxos); the state machine skips it, and `Config` too.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EntryData {
    Noop,
    /// An opaque state-machine command (the KV layer encodes it).
    Command(Vec<u8>),
    /// The whole cluster configuration from this position on (how soon it takes effect is
    /// protocol-specific: see each core). Whole rather than a delta so that any one entry,
    /// or a snapshot's copy of it, is enough to know the configuration.
    Config(Membership),
}

/// A cluster configuration: who votes, and who only receives the log.
///
/// Learners exist so that a new, empty server catches up before it counts toward any
/// quorum: adding an empty voter to a three-node cluster would make every commit wait for it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Membership {
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
}

impl Membership {
    pub fn new(voters: impl IntoIterator<Item = NodeId>) -> Self {
        Membership { voters: voters.into_iter().collect(), learners: BTreeSet::new() }
    }

    /// A strict majority of the voters.
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id)
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.learners.contains(&id)
    }

    /// Voters and learners, each once.
    pub fn all(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().chain(self.learners.iter()).copied()
    }

    /// The configuration after `change`, or why the change cannot be made. Only checks the
    /// change against this configuration; each core adds its own conditions (one change at a
    /// time, a caught-up learner).
    pub fn apply(&self, change: MembershipChange) -> Result<Membership, MembershipError> {
        let mut next = self.clone();
        match change {
            MembershipChange::AddLearner(id) => {
                if self.contains(id) {
                    return Err(MembershipError::AlreadyMember(id));
                }
                next.learners.insert(id);
            }
            MembershipChange::Promote(id) => {
                if !self.learners.contains(&id) {
                    return Err(MembershipError::NotLearner(id));
                }
                next.learners.remove(&id);
                next.voters.insert(id);
            }
            MembershipChange::Remove(id) => {
                if !self.contains(id) {
                    return Err(MembershipError::NotMember(id));
                }
                if self.voters.len() == 1 && self.is_voter(id) {
                    return Err(MembershipError::LastVoter);
                }
                next.voters.remove(&id);
                next.learners.remove(&id);
            }
        }
        Ok(next)
    }
}

/// One step of a membership change. One voter at a time: any majority of the old voters
/// and any majority of the new then share a server, so no two leaders can be elected in
/// one term across the change (thesis §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MembershipChange {
    /// Start replicating to a new, possibly empty server that does not vote yet.
    AddLearner(NodeId),
    /// Make a caught-up learner a voter.
    Promote(NodeId),
    /// Remove a voter or a learner.
    Remove(NodeId),
}

/// A membership change refused before anything was proposed: a DEFINITE failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum MembershipError {
    #[error(transparent)]
    Propose(#[from] ProposeError),
    /// The previous change is not committed yet (or, in Raft, this leader has not committed
    /// an entry of its own term yet); retry later.
    #[error("a membership change is in progress")]
    InProgress,
    #[error("node {0} is already a member")]
    AlreadyMember(NodeId),
    #[error("node {0} is not a learner")]
    NotLearner(NodeId),
    #[error("node {0} is not a member")]
    NotMember(NodeId),
    #[error("cannot remove the last voter")]
    LastVoter,
    /// The learner is still behind the leader's log; promoting it now would stall commits.
    #[error("learner {0} has not caught up yet")]
    NotCaughtUp(NodeId),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Entry {
    pub index: u64,
    /// Raft term, or Paxos ballot round, under which the entry was proposed/chosen.
    pub term: u64,
    pub data: EntryData,
}

/// A state-machine snapshot covering every entry up to and including `index`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub index: u64,
    pub term: u64,
    /// The serialized state machine, opaque to cores.
    pub data: Vec<u8>,
}

/// A linearizable read became safe: serve read `id` once the state machine has applied `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadState {
    pub id: u64,
    pub index: u64,
}

/// Output accumulated since the last [`Replica::ready`]; see the module docs for the order
/// in which it must be carried out.
#[derive(Debug, Clone)]
pub struct Ready<M, R> {
    pub snapshot: Option<Snapshot>,
    pub records: Vec<R>,
    /// `(to, message)`.
    pub messages: Vec<(NodeId, M)>,
    pub committed: Vec<Entry>,
    pub read_states: Vec<ReadState>,
}

impl<M, R> Default for Ready<M, R> {
    fn default() -> Self {
        Ready {
            snapshot: None,
            records: Vec::new(),
            messages: Vec::new(),
            committed: Vec::new(),
            read_states: Vec::new(),
        }
    }
}

impl<M, R> Ready<M, R> {
    pub fn is_empty(&self) -> bool {
        self.snapshot.is_none()
            && self.records.is_empty()
            && self.messages.is_empty()
            && self.committed.is_empty()
            && self.read_states.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Follower,
    /// Raft PreVote phase (no term bump yet); Paxos may use it for a leader probe.
    PreCandidate,
    /// Raft candidate; Paxos phase-1 in progress.
    Candidate,
    Leader,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre-candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        }
    }
}

/// A point-in-time view for the admin `status` request and for test invariants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub id: NodeId,
    pub role: Role,
    /// Raft term or Paxos ballot round.
    pub term: u64,
    /// The leader this replica currently believes in, if any.
    pub leader: Option<NodeId>,
    pub commit_index: u64,
    /// Highest index handed out in `Ready::committed` (or covered by an installed snapshot).
    pub applied_index: u64,
    pub last_index: u64,
    pub snapshot_index: u64,
    /// The configuration this replica currently acts on.
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
}

/// A proposal or read that was refused before anything was proposed: a DEFINITE failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ProposeError {
    #[error("not the leader (leader hint: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    /// Too many proposals in flight; the client should back off and retry.
    #[error("proposal queue is full")]
    Busy,
    /// A leader transfer is in progress; retry at the new leader.
    #[error("leadership transfer in progress")]
    Transferring,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaError {
    #[error("invalid replica configuration: {0}")]
    Config(String),
    /// The durable state read back from disk contradicts itself.
    #[error("inconsistent durable state: {0}")]
    Corrupt(String),
    #[error("compaction at index {index} is not allowed: {reason}")]
    Compact { index: u64, reason: String },
}

/// A consensus core. See the module docs for the contract.
pub trait Replica: Send + 'static {
    /// Peer-to-peer message, sent by the transport as a postcard frame.
    type Message: Clone + Debug + Send + Serialize + serde::de::DeserializeOwned + 'static;
    /// Durable record, stored opaquely in the WAL.
    type Record: Clone + Debug + Send + Serialize + serde::de::DeserializeOwned + 'static;

    /// Name used in config (`algo`) and logs.
    const ALGO: &'static str;

    /// Rebuilds a replica from its latest snapshot and the WAL records written after it (in
    /// write order). A fresh replica gets `None` and no records.
    fn restore(
        cfg: ReplicaConfig,
        snapshot: Option<Snapshot>,
        records: Vec<Self::Record>,
    ) -> Result<Self, ReplicaError>
    where
        Self: Sized;

    /// Advances logical time by one tick.
    fn tick(&mut self);

    /// Handles one message from peer `from`. Messages from unknown peers are ignored.
    fn step(&mut self, from: NodeId, msg: Self::Message);

    /// Proposes a batch of commands. `Ok` means they were appended to the leader's log (and
    /// may still be lost if leadership is lost: an INDEFINITE outcome). `Err` means none of them
    /// were proposed (a DEFINITE failure).
    fn propose(&mut self, commands: Vec<Vec<u8>>) -> Result<(), ProposeError>;

    /// Proposes one membership change; `Ok` is the log index of the configuration entry (an
    /// INDEFINITE outcome, like [`Replica::propose`]). Wait until that index is committed before
    /// proposing the next change.
    fn propose_membership(&mut self, change: MembershipChange) -> Result<u64, MembershipError>;

    /// Requests a linearizable read tagged `id`; a [`ReadState`] with the same id appears in
    /// a later `Ready` once it is safe. If leadership is lost first the read is silently
    /// dropped and the runtime times it out.
    fn read_index(&mut self, id: u64) -> Result<(), ProposeError>;

    /// Whether `ready()` would return something.
    fn has_ready(&self) -> bool;

    /// Takes the accumulated output; see the module docs for how to carry it out.
    fn ready(&mut self) -> Ready<Self::Message, Self::Record>;

    fn status(&self) -> Status;

    /// Hands the core a state-machine snapshot at an already-applied index, letting it drop
    /// the log prefix and use the snapshot for peers that fall behind. Call only after the
    /// last `Ready` has been carried out.
    fn compact(&mut self, snapshot: Snapshot) -> Result<(), ReplicaError>;

    /// The smallest record sequence from which `restore` (with the latest snapshot) rebuilds
    /// the current durable state; the runtime rewrites the WAL from it after compaction.
    /// Valid only when every `Ready` handed out has been persisted.
    fn durable_records(&self) -> Vec<Self::Record>;

    /// Asks the leader to hand leadership to `to`. Optional: the default refuses.
    fn transfer_leader(&mut self, to: NodeId) -> Result<(), ProposeError> {
        let _ = to;
        Err(ProposeError::NotLeader { leader: self.status().leader })
    }
}

/// A small, fast, seedable PRNG (SplitMix64) so cores need no dependency and stay
/// reproducible across platforms and crate versions.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi]` (inclusive); the modulo bias is irrelevant at these ranges.
    pub fn range_inclusive(&mut self, lo: u64, hi: u64) -> u64 {
        debug_assert!(lo <= hi);
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// True with probability `p` (0.0..=1.0).
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }
}
