//! Wire types of the client protocol (see `node/PROTOCOL.md`) and the peer handshake.
//!
//! Every frame is a `u32` big-endian length (tokio-util `LengthDelimitedCodec`) followed by
//! a postcard-encoded value. Frame sizes are capped so a garbage length cannot make a node
//! allocate gigabytes.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio_util::codec::LengthDelimitedCodec;

use crate::kv::{Op, Value};

/// Client frames are small: one key, one value.
pub const MAX_CLIENT_FRAME_BYTES: usize = 1 << 20;
/// Peer frames may carry a snapshot.
pub const MAX_PEER_FRAME_BYTES: usize = 256 << 20;
/// Bumped on any incompatible change to the frames below.
pub const PROTOCOL_VERSION: u32 = 3;

pub fn client_codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder().max_frame_length(MAX_CLIENT_FRAME_BYTES).new_codec()
}

pub fn peer_codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder().max_frame_length(MAX_PEER_FRAME_BYTES).new_codec()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Echoed in the response so a client can match them up.
    pub id: u64,
    pub body: RequestBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestBody {
    /// `client`/`seq` identify the command for deduplication of retries (seq 0: none).
    Op { client: u64, seq: u64, op: Op },
    Status,
    /// A membership change, by node name, answered by the leader once the configuration
    /// entry is applied there (`Done`), or with a definite error if it was refused.
    Member(MemberChange),
}

/// One single-server membership change (see [`crate::replica::MembershipChange`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberChange {
    /// Replicate to `node`, which must have connected to the leader (it introduces itself
    /// with its id and addresses), without counting it toward quorums.
    AddLearner { node: String },
    /// Make the caught-up learner `node` a voter.
    Promote { node: String },
    Remove { node: String },
}

impl MemberChange {
    pub fn node(&self) -> &str {
        match self {
            MemberChange::AddLearner { node } | MemberChange::Promote { node } | MemberChange::Remove { node } => node,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub id: u64,
    pub body: ResponseBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseBody {
    /// A read's value (`None`: never written).
    Value(Option<Value>),
    /// A write, cas or append took effect.
    Done,
    Status(NodeStatus),
    Error(WireError),
    /// A transaction committed: per micro-op, what a read saw (`None` for writes, appends and
    /// reads of keys never written).
    Txn(Vec<Option<Value>>),
}

/// Errors on the wire. [`WireError::is_definite`] is the contract the harness relies on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum WireError {
    /// Not proposed: this node is not the leader. `leader_addr` is its client address when
    /// known, so the client can go there.
    #[error("not the leader (leader: {leader:?} at {leader_addr:?})")]
    NotLeader { leader: Option<String>, leader_addr: Option<String> },
    /// Not proposed: the compare of a cas saw another value.
    #[error("cas mismatch: current value {current:?}")]
    CasMismatch { current: Option<Value> },
    /// Not proposed: overloaded, or the request is malformed.
    #[error("busy, retry later")]
    Busy,
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The command was applied and rejected by the state machine (append to a non-list).
    #[error("rejected: {0}")]
    Rejected(String),
    /// Proposed, but leadership was lost before the outcome was known.
    #[error("leadership lost after proposing; outcome unknown")]
    LeaderLost,
    /// Proposed (or possibly proposed), no outcome within the deadline.
    #[error("timed out; outcome unknown")]
    Timeout,
    /// The node is shutting down; the request may have been proposed.
    #[error("node shutting down; outcome unknown")]
    ShuttingDown,
}

impl WireError {
    /// DEFINITE: did not and will not happen (record `fail`). Otherwise INDEFINITE: it may
    /// or may not take effect (record `info`).
    pub fn is_definite(&self) -> bool {
        matches!(
            self,
            WireError::NotLeader { .. }
                | WireError::CasMismatch { .. }
                | WireError::Busy
                | WireError::BadRequest(_)
                | WireError::Rejected(_)
        )
    }
}

/// The admin `status` answer, also sampled by the test runner's monitor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub id: String,
    pub algo: String,
    /// "leader", "follower", "candidate", "pre-candidate".
    pub role: String,
    /// Raft term or Paxos ballot round.
    pub term: u64,
    pub leader: Option<String>,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_index: u64,
    pub snapshot_index: u64,
    /// Times this node became leader since it started.
    pub leader_elections_won: u64,
    pub pid: u32,
    /// Peers refused since this node started because they came back with another
    /// incarnation (they lost their durable state).
    pub replaced_peers: Vec<String>,
    /// The configuration this node acts on (names; `#N` for an id it has no name for).
    pub voters: Vec<String>,
    pub learners: Vec<String>,
}

impl NodeStatus {
    /// The monitor's history form: `{"role":..,"term":..,"leader":..,"commit_index":..,...}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "role": self.role,
            "term": self.term,
            "leader": self.leader,
            "commit_index": self.commit_index,
            "applied_index": self.applied_index,
            "last_index": self.last_index,
            "snapshot_index": self.snapshot_index,
            "leader_elections_won": self.leader_elections_won,
            "pid": self.pid,
            "replaced_peers": self.replaced_peers,
            "voters": self.voters,
            "learners": self.learners,
        })
    }
}

/// First frame on every peer connection: who is calling, and that we speak the same version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerHello {
    pub version: u32,
    pub from: String,
    pub algo: String,
    /// The caller's data-directory incarnation (see [`crate::incarnation`]).
    pub incarnation: u64,
    /// The incarnation the caller knows for the callee (0: none yet). A callee whose own
    /// differs lost its state since the caller first saw it, and stops.
    pub knows_you_as: u64,
    /// The caller's consensus id and addresses, so a node added to a running cluster is
    /// reachable by members whose configuration does not list it.
    pub node_id: u64,
    pub client_addr: String,
    pub peer_addr: String,
}

pub fn encode<T: Serialize>(v: &T) -> Bytes {
    Bytes::from(postcard::to_allocvec(v).expect("wire types always serialize"))
}

pub fn decode<'a, T: Deserialize<'a>>(b: &'a [u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(b)
}
