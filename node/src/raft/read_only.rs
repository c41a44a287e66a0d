//! The ReadIndex queue (thesis §6.4): reads wait for a heartbeat round a quorum acknowledges,
//! and reads that reach a new leader before it committed an entry of its own term wait for
//! that first.

use crate::replica::ReadState;

use super::core::Raft;

/// Reads a leader queues before refusing more with `Busy`.
pub const MAX_PENDING_READS: usize = 16_384;

#[derive(Debug, Clone)]
pub(super) struct PendingRead {
    pub(super) id: u64,
    pub(super) index: u64,
    pub(super) ctx: u64,
}

impl Raft {
    pub(super) fn release_early_reads(&mut self) {
        if self.committed_in_term() && !self.early_reads.is_empty() {
            for id in std::mem::take(&mut self.early_reads) {
                self.start_read(id);
            }
        }
    }

    pub(super) fn start_read(&mut self, id: u64) {
        if self.conf.voters.len() == 1 && self.is_voter() {
            self.read_states.push(ReadState { id, index: self.commit });
            return;
        }
        // Reads arriving together share one heartbeat round, sent when the batch is handed
        // out in `ready`; a read joins a round only if the round has not been sent yet.
        if !self.read_round_due {
            self.read_ctx += 1;
            self.read_round_due = true;
        }
        self.pending_reads.push_back(PendingRead { id, index: self.commit, ctx: self.read_ctx });
    }

    /// Releases reads whose heartbeat round a quorum has acknowledged: at that moment no other
    /// leader could have committed anything this leader does not know about.
    pub(super) fn advance_reads(&mut self) {
        let mut acks: Vec<u64> =
            self.progress.iter().filter(|(id, _)| self.conf.is_voter(**id)).map(|(_, p)| p.read_ack).collect();
        if self.is_voter() {
            acks.push(self.read_ctx);
        }
        acks.sort_unstable_by(|a, b| b.cmp(a));
        let safe = acks[self.quorum() - 1];
        while let Some(r) = self.pending_reads.front() {
            if r.ctx > safe {
                break;
            }
            let r = self.pending_reads.pop_front().expect("front exists");
            self.read_states.push(ReadState { id: r.id, index: r.index });
        }
    }
}
