//! Raft (Ongaro & Ousterhout, "In Search of an Understandable Consensus Algorithm",
//! extended version, and Ongaro's thesis for PreVote, CheckQuorum and ReadIndex) as a pure
//! [`Replica`] state machine.
//!
//! The structure follows etcd-io/raft: per-follower `Progress` with probe/replicate/snapshot
//! states and a bounded in-flight window, fast log backtracking with (index, term) hints,
//! heartbeats that carry a read-index context, and leases only in the CheckQuorum sense (no
//! lease-based reads: reads are confirmed by a quorum round).
//!
//! Membership changes follow the thesis's single-server scheme (§4.1–4.2): a configuration
//! entry is in effect on each server as soon as it is in that server's log, a leader makes
//! one change at a time and only after committing an entry of its own term, new servers
//! join as learners and are promoted once caught up, and a leader that removed itself
//! steps down once the removal commits. The configuration as of the snapshot is kept in
//! the WAL (`Record::SnapshotConfig`) and sent with `InstallSnapshot`.
//!
//! Layout (as in `paxos/`): [`msg`](self::msg) holds the wire messages and WAL records,
//! `log` the log accessors over (snapshot base, entries), `progress` the leader's
//! per-follower replication state, `read_only` the ReadIndex queue, and `core` the state
//! machine proper: roles, elections, replication and the [`Replica`] impl.
//!
//! [`Replica`]: crate::replica::Replica

mod core;
mod log;
mod msg;
mod progress;
mod read_only;

pub use self::core::{MAX_UNCOMMITTED_ENTRIES, Raft};
pub use self::msg::{Message, Record};
pub use self::read_only::MAX_PENDING_READS;
