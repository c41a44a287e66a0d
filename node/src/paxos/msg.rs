//! Multi-Paxos wire messages and durable records.
//!
//! Message names follow "Paxos Made Simple": phase 1 is `Prepare`/`Promise`, phase 2 is
//! `Accept`/`Accepted`; everything else exists for a long-lived leader (heartbeats, read
//! confirmation) and for learners that fall behind (`Chosen`, `InstallSnapshot`).

use serde::{Deserialize, Serialize};

use crate::replica::{EntryData, Membership, NodeId, Snapshot};

/// A proposal number. Rounds are allocated so that a round belongs to exactly one proposer
/// (`round % members == position of the proposer`), so `round` alone names a leadership the
/// way a Raft term does and `node` only makes the ordering explicit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Ballot {
    pub round: u64,
    pub node: NodeId,
}

impl Ballot {
    pub const ZERO: Ballot = Ballot { round: 0, node: 0 };
}

/// One acceptor's state for one slot, as reported in a promise, a catch-up message or the WAL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotValue {
    pub index: u64,
    /// The ballot under which the value was accepted.
    pub ballot: Ballot,
    pub data: EntryData,
    /// The value is known to be chosen (a quorum accepted it under one ballot).
    pub chosen: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Would you follow a new proposer? Sent before bumping the ballot (the `prevote` knob)
    /// so that a node that cannot reach a quorum does not disrupt one that can.
    Probe {
        round: u64,
    },
    /// `granted` when the sender does not currently hear a leader. `promised` lets the prober
    /// pick a round above every promise it has seen. `leader` is the ballot of the leader
    /// the sender hears, if any: a prober that was down (restarted, or cut off) learns who
    /// leads from any one follower, whose connection to it comes back at once, instead of
    /// waiting until the leader's own reconnect backoff lets a heartbeat through.
    ProbeReply {
        round: u64,
        granted: bool,
        promised: u64,
        leader: Option<Ballot>,
    },
    /// Phase 1a for every slot `>= from`. Re-sent with the same ballot and a higher `from` to
    /// fetch the next page of an acceptor's log.
    Prepare {
        ballot: Ballot,
        from: u64,
    },
    /// Phase 1b: the acceptor promised `ballot` and reports what it accepted in `from..=upto`.
    /// `complete` means there is nothing above `upto`. A snapshot stands in for slots that the
    /// acceptor has compacted (they are all chosen).
    Promise {
        ballot: Ballot,
        from: u64,
        upto: u64,
        complete: bool,
        entries: Vec<SlotValue>,
        snapshot: Option<Snapshot>,
        /// The configuration as of the snapshot's last slot, when a snapshot is sent.
        membership: Option<Membership>,
    },
    /// `ballot` was refused because the sender has promised `promised`.
    Nack {
        ballot: Ballot,
        promised: Ballot,
    },
    /// Phase 2a. `commit` is the leader's chosen prefix: slots up to it whose accepted ballot
    /// is `ballot` are chosen.
    Accept {
        ballot: Ballot,
        commit: u64,
        entries: Vec<(u64, EntryData)>,
    },
    /// Phase 2b for `slots`. `commit` is the acceptor's chosen prefix after handling the
    /// request and `seen` the leader commit the request carried: `commit < seen` tells the
    /// leader this acceptor is missing chosen values it cannot learn on its own.
    Accepted {
        ballot: Ballot,
        slots: Vec<u64>,
        commit: u64,
        seen: u64,
    },
    /// Leadership, commit point, and (through `ctx`) read confirmation.
    Heartbeat {
        ballot: Ballot,
        commit: u64,
        ctx: u64,
    },
    HeartbeatAck {
        ballot: Ballot,
        commit: u64,
        seen: u64,
        ctx: u64,
    },
    /// Chosen values for a learner that fell behind.
    Chosen {
        ballot: Ballot,
        entries: Vec<SlotValue>,
    },
    /// For a learner that fell behind the sender's compacted prefix.
    InstallSnapshot {
        ballot: Ballot,
        snapshot: Snapshot,
        /// The configuration as of the snapshot's last slot: the configuration values before
        /// it are gone with the compacted log.
        membership: Membership,
    },
    /// A learner's chosen prefix after a `Chosen` or `InstallSnapshot`; paces catch-up.
    ChosenAck {
        ballot: Ballot,
        commit: u64,
    },
}

/// What an acceptor must not forget. Written before any reply that depends on it leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// The acceptor promised never to accept below this ballot.
    Promise(Ballot),
    /// The acceptor accepted these values under `ballot` (which implies a promise of it).
    Accept { ballot: Ballot, entries: Vec<(u64, EntryData)> },
    /// Slot states written verbatim: chosen values learned from others, and the rewritten
    /// log after compaction.
    Slots(Vec<SlotValue>),
    /// The configuration in effect after slot `index`, written when it is known to be chosen
    /// there (or comes with a snapshot ending there). Chosen flags inferred from a leader's
    /// commit point are not persisted, so without this a restart could not tell which
    /// configuration values were chosen, nor recover those a snapshot compacted away.
    Config { index: u64, membership: Membership },
}
