//! faultline-node: the replicated key-value store that faultline deploys and tests.
//!
//! Consensus cores ([`raft`], and Multi-Paxos in `paxos`) are pure state machines behind the
//! [`replica::Replica`] trait; everything else — WAL, transport, batching, timers, the KV state
//! machine, the client protocol — is shared, so a Paxos-vs-Raft comparison measures the
//! protocols and not two different storage stacks.

pub mod paxos;
pub mod replica;
pub mod kv;
pub mod raft;
pub mod sim;
pub mod wal;
pub mod incarnation;
pub mod lazyfs;
pub mod protocol;
pub mod config;
pub mod client;
pub mod transport;
pub mod server;
pub mod join;
pub mod node;
pub mod local;
pub mod bench;
