//! The leader's view of each follower (etcd-io/raft's `Progress`): how far its log is known
//! to match, what to send next, and whether appends are probing, streaming or waiting for a
//! snapshot.

use std::collections::VecDeque;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ProgressState {
    /// Unknown match: one append in flight at a time until a reply locates the follower.
    Probe,
    /// Streaming: optimistic `next`, up to `max_inflight_msgs` appends outstanding.
    Replicate,
    /// Waiting for an InstallSnapshot at `pending` to land; resent after a timeout.
    Snapshot { pending: u64, ticks: u32 },
}

#[derive(Debug, Clone)]
pub(super) struct Progress {
    pub(super) matched: u64,
    pub(super) next: u64,
    pub(super) state: ProgressState,
    pub(super) probe_sent: bool,
    /// Last index of each append in flight (Replicate state).
    pub(super) inflight: VecDeque<u64>,
    /// Heard from since the last CheckQuorum round.
    pub(super) recent_active: bool,
    /// Highest read-index round this follower acknowledged.
    pub(super) read_ack: u64,
    /// Leader ticks since `matched` last advanced while entries were outstanding: detects
    /// lost appends or acks, which would otherwise stall a Replicate stream forever.
    pub(super) stall_ticks: u32,
    /// Highest commit index this follower was told in a way it could apply, so an ack that
    /// arrives after the commit point moved gets a prompt commit update.
    pub(super) sent_commit: u64,
}

impl Progress {
    pub(super) fn new(next: u64) -> Self {
        Progress {
            matched: 0,
            next,
            state: ProgressState::Probe,
            probe_sent: false,
            inflight: VecDeque::new(),
            recent_active: false,
            read_ack: 0,
            stall_ticks: 0,
            sent_commit: 0,
        }
    }

    pub(super) fn become_probe(&mut self) {
        self.state = ProgressState::Probe;
        self.next = self.matched + 1;
        self.probe_sent = false;
        self.inflight.clear();
    }

    pub(super) fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.next = self.matched + 1;
        self.probe_sent = false;
        self.inflight.clear();
    }
}
