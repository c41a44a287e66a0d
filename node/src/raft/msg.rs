//! Raft wire messages and durable records.

use serde::{Deserialize, Serialize};

use crate::replica::{Entry, Membership, NodeId, Snapshot};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// §9.6 of the thesis: ask whether a vote would be granted for `term` without bumping ours.
    PreVote { term: u64, last_index: u64, last_term: u64 },
    /// `leader`: on a refusal, the leader the sender currently hears (of `term`), so that a
    /// restarted or reconnected server follows it at once rather than re-campaigning until
    /// the leader's own connection to it is back.
    PreVoteResp { term: u64, granted: bool, leader: Option<NodeId> },
    RequestVote { term: u64, last_index: u64, last_term: u64, transfer: bool },
    RequestVoteResp { term: u64, granted: bool },
    Append { term: u64, prev_index: u64, prev_term: u64, entries: Vec<Entry>, commit: u64 },
    /// `index`: on success the follower's last index matching the leader; on rejection the
    /// rejected `prev_index`, with a hint for fast backtracking.
    AppendResp { term: u64, index: u64, reject: bool, hint_index: u64, hint_term: u64 },
    /// `commit` is capped at what the follower is known to hold; `ctx` is the read-index round.
    Heartbeat { term: u64, commit: u64, ctx: u64 },
    HeartbeatResp { term: u64, ctx: u64 },
    /// `membership`: the configuration as of the snapshot's last entry, which the receiver
    /// cannot derive once the configuration entries before it are gone.
    InstallSnapshot { term: u64, snapshot: Snapshot, membership: Membership },
    /// Leader transfer: start an election now, bypassing PreVote and leases.
    TimeoutNow { term: u64 },
}

impl Message {
    pub fn term(&self) -> u64 {
        match self {
            Message::PreVote { term, .. }
            | Message::PreVoteResp { term, .. }
            | Message::RequestVote { term, .. }
            | Message::RequestVoteResp { term, .. }
            | Message::Append { term, .. }
            | Message::AppendResp { term, .. }
            | Message::Heartbeat { term, .. }
            | Message::HeartbeatResp { term, .. }
            | Message::InstallSnapshot { term, .. }
            | Message::TimeoutNow { term } => *term,
        }
    }
}

/// What Raft keeps in the WAL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// "Updated on stable storage before responding to RPCs": currentTerm and votedFor. The
    /// commit index rides along when the record is written anyway, so a restart re-applies
    /// what it knew to be committed; a commit advance alone never costs an fsync (the paper
    /// keeps commitIndex volatile, and the Paxos core does not persist its chosen point
    /// either — the comparison must not charge one protocol for an extra sync).
    HardState { term: u64, vote: Option<NodeId>, commit: u64 },
    /// Entries to append; an entry at an index that already exists replaces it and everything
    /// after it (the follower's conflict truncation).
    Entries(Vec<Entry>),
    /// The log was replaced by a snapshot ending at (index, term): forget all earlier entries.
    SnapshotMark { index: u64, term: u64 },
    /// The configuration as of `index`, a snapshot's last entry: the configuration entries
    /// up to there are compacted away (or never arrived, for a snapshot from the leader).
    SnapshotConfig { index: u64, membership: Membership },
}
