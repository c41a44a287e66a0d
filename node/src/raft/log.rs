//! Log accessors: the log is the entries after (base_index, base_term), the point a snapshot
//! covers; index arithmetic lives here and nowhere else.

use crate::replica::Entry;

use super::core::Raft;

impl Raft {
    pub(super) fn last_index(&self) -> u64 {
        self.base_index + self.entries.len() as u64
    }

    pub(super) fn last_term(&self) -> u64 {
        self.entries.last().map_or(self.base_term, |e| e.term)
    }

    /// The term of the entry at `index`, if the log still has it.
    pub fn term_at(&self, index: u64) -> Option<u64> {
        if index == self.base_index {
            Some(self.base_term)
        } else if index < self.base_index || index > self.last_index() {
            None
        } else {
            Some(self.entries[(index - self.base_index - 1) as usize].term)
        }
    }

    /// The entries the log holds (after the snapshot), for invariant checks in tests.
    pub fn log(&self) -> &[Entry] {
        &self.entries
    }

    pub fn first_index(&self) -> u64 {
        self.base_index + 1
    }

    pub(super) fn entry(&self, index: u64) -> &Entry {
        &self.entries[(index - self.base_index - 1) as usize]
    }

    pub(super) fn match_term(&self, index: u64, term: u64) -> bool {
        self.term_at(index) == Some(term)
    }

    pub(super) fn is_up_to_date(&self, last_index: u64, last_term: u64) -> bool {
        last_term > self.last_term() || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// Largest index <= `index` whose term is <= `term`: the fast-backtracking probe point.
    pub(super) fn find_conflict_by_term(&self, index: u64, term: u64) -> u64 {
        let mut i = index.min(self.last_index());
        while i > self.base_index {
            match self.term_at(i) {
                Some(t) if t > term => i -= 1,
                _ => break,
            }
        }
        i
    }
}
