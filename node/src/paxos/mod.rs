//! Multi-Paxos ("Paxos Made Simple", "Paxos Made Moderately Complex", "Paxos Made Live")
//! behind the same [`Replica`](crate::replica::Replica) trait as Raft.
//!
//! The protocol differences that matter for a comparison are deliberate and documented on
//! [`Paxos`]: any node may become leader (phase 1 recovers what a quorum accepted, so no log
//! up-to-dateness rule restricts who can lead), and values are learned per slot rather than
//! by log matching.

mod core;
mod msg;

#[cfg(test)]
mod tests;

pub use self::core::Paxos;
pub use self::msg::{Ballot, Message, Record, SlotValue};
