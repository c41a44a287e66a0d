//! The node runtime: one core thread that owns the consensus replica, the WAL and the KV
//! state machine, surrounded by tokio tasks for the client listener and the peer transport.
//!
//! The core thread is a plain loop (mini-redis shape, but synchronous where it matters): it
//! waits for the next event or tick, drains whatever else is queued (so concurrent requests
//! become one proposal batch and one fsync — group commit), then carries out the replica's
//! `Ready` in the order the [`Replica`] contract demands. Network tasks never block on it:
//! they hand events over a bounded channel and answer `Busy` when it is full.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio_util::codec::Framed;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::kv::{Command, Kv, MicroOp, Op, OpResult, Value};
use crate::protocol::{self, MemberChange, NodeStatus, PeerHello, Request, RequestBody, Response, ResponseBody, WireError};
use crate::replica::{
    EntryData, MembershipChange, MembershipError, NodeId, ProposeError, Replica, ReplicaError, Role, Snapshot, Status,
};
use crate::transport::{self, PeerRefused, PeerSender, TransportStats};
use crate::incarnation::Incarnations;
use crate::wal::{Wal, WalError};

/// Events queued for the core thread before network tasks start refusing work.
pub const EVENT_QUEUE: usize = 65_536;
/// Client requests waiting for an outcome before new ones get `Busy`.
pub const MAX_PENDING_REQUESTS: usize = 65_536;
/// Events handled per loop iteration before the replica's output is carried out.
const DRAIN_MAX: usize = 4096;
/// Nodes the address book holds (configured plus introduced); a node introducing itself
/// past this is refused, so a misbehaving caller cannot grow it without end.
pub const BOOK_MAX: usize = 256;

/// What this node knows of another one.
struct Known {
    name: String,
    client_addr: String,
    /// `None` for this node itself.
    sender: Option<PeerSender>,
}

/// Every node this one can reach, by consensus id: the configured peers, and nodes that
/// introduced themselves when they connected (one added to a running cluster, which the
/// members' configuration files do not list). The core reads it for names, redirect
/// addresses and senders; the peer listener adds to it.
#[derive(Default)]
struct Book {
    known: HashMap<NodeId, Known>,
}

type SharedBook = Arc<std::sync::Mutex<Book>>;

fn lock(book: &SharedBook) -> std::sync::MutexGuard<'_, Book> {
    // Nothing in the book can be left half-updated by a panic: every change is one insert.
    book.lock().unwrap_or_else(|e| e.into_inner())
}

impl Book {
    fn id_of(&self, name: &str) -> Option<NodeId> {
        self.known.iter().find(|(_, k)| k.name == name).map(|(&id, _)| id)
    }

    /// `#N` for an id the book has no name for.
    fn name(&self, id: NodeId) -> String {
        self.known.get(&id).map_or_else(|| format!("#{id}"), |k| k.name.clone())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("replica: {0}")]
    Replica(#[from] ReplicaError),
    #[error("{what}: undecodable snapshot: {source}")]
    Snapshot { what: &'static str, source: postcard::Error },
    /// The core handed out a committed entry that does not follow the last applied one.
    #[error("replica: applied {applied} but the next entry is {index}")]
    ApplyGap { applied: u64, index: u64 },
    #[error("{}: another node (pid {pid}) is running on this data directory", pidfile.display())]
    AlreadyRunning { pidfile: PathBuf, pid: i32 },
    #[error("log_level: {0}")]
    LogFilter(#[from] tracing_subscriber::filter::ParseError),
    #[error("node `{id}` is not a member of its own peer list")]
    NotAMember { id: String },
    #[error(transparent)]
    Incarnation(#[from] crate::incarnation::IncarnationError),
    #[error(
        "peer {peer} knows this node as incarnation {known}, but its data directory is incarnation {ours}: \
         the node lost its durable state and must be replaced, not restarted under its old name"
    )]
    Replaced { peer: String, known: u64, ours: u64 },
    #[error("core thread panicked")]
    CorePanicked,
    #[error("core thread: {0}")]
    CoreJoin(#[from] tokio::task::JoinError),
}

pub enum Event<M> {
    Peer(NodeId, M),
    Client(RequestBody, oneshot::Sender<ResponseBody>),
    Shutdown,
}

struct PendingWrite {
    replies: Vec<oneshot::Sender<ResponseBody>>,
    deadline: Instant,
}

/// A membership change proposed at `index`, answered when that index is applied.
struct PendingMember {
    index: u64,
    change: MembershipChange,
    reply: oneshot::Sender<ResponseBody>,
    deadline: Instant,
}

impl PendingMember {
    /// Whether the entry applied at `index` is this change taking effect (a later leader
    /// may have put something else there).
    fn took_effect(&self, data: &EntryData) -> bool {
        let EntryData::Config(m) = data else { return false };
        match self.change {
            MembershipChange::AddLearner(id) => m.learners.contains(&id),
            MembershipChange::Promote(id) => m.voters.contains(&id),
            MembershipChange::Remove(id) => !m.contains(id),
        }
    }
}

struct PendingRead {
    key: String,
    reply: oneshot::Sender<ResponseBody>,
    deadline: Instant,
    /// Set once the replica confirmed the read: serve when `applied >= index`.
    index: Option<u64>,
}

/// PLANTED BUG (`unsafe_txn_split`): a transaction being applied one micro-op per log entry.
/// Each part is a command of its own under a node-local synthetic client id, proposed only
/// once the previous part has applied, so other commands land in between.
struct SplitTxn {
    reply: oneshot::Sender<ResponseBody>,
    rest: std::collections::VecDeque<MicroOp>,
    results: Vec<Option<Value>>,
    next_seq: u64,
    deadline: Instant,
}

/// A file in the WAL directory saying this node was removed from the configuration and
/// wiped: started with nothing durable, it joins as a fresh node (as with `join: true`).
/// The membership nemesis writes it; the `wipe` disk fault removes it with the rest.
pub const JOIN_MARKER: &str = "JOIN";

/// Voters and learners of a replica's configuration.
fn members_of(st: &Status) -> BTreeSet<NodeId> {
    st.voters.iter().chain(&st.learners).copied().collect()
}

/// Synthetic client ids of split parts carry this bit (real clients draw random ids; a
/// collision only matters while the planted bug is on).
const SPLIT_CLIENT_BIT: u64 = 1 << 63;

/// Carried-out state shared with nothing: the core thread owns it all.
struct Core<R: Replica> {
    cfg: Arc<Config>,
    incarnations: Arc<Incarnations>,
    replica: R,
    wal: Wal,
    kv: Kv,
    applied: u64,
    applied_term: u64,
    snapshot_index: u64,
    book: SharedBook,
    pending_members: Vec<PendingMember>,
    proposals: Vec<(Command, oneshot::Sender<ResponseBody>)>,
    pending_writes: HashMap<(u64, u64), PendingWrite>,
    pending_reads: HashMap<u64, PendingRead>,
    next_read_id: u64,
    splits: HashMap<u64, SplitTxn>,
    next_split: u64,
    role: Role,
    elections_won: u64,
    request_timeout: Duration,
    /// Voters and learners as last seen, to notice members leaving the configuration.
    members: BTreeSet<NodeId>,
}

impl<R: Replica> Core<R> {
    fn name(&self, id: NodeId) -> String {
        lock(&self.book).name(id)
    }

    fn not_leader(&self, leader: Option<NodeId>) -> WireError {
        let book = lock(&self.book);
        WireError::NotLeader {
            leader: leader.map(|l| book.name(l)),
            leader_addr: leader.and_then(|l| book.known.get(&l)).map(|k| k.client_addr.clone()),
        }
    }

    fn map_propose_error(&self, e: ProposeError) -> WireError {
        match e {
            ProposeError::NotLeader { leader } => self.not_leader(leader),
            ProposeError::Busy => WireError::Busy,
            ProposeError::Transferring => self.not_leader(None),
        }
    }

    fn pending(&self) -> usize {
        self.pending_writes.len()
            + self.pending_reads.len()
            + self.proposals.len()
            + self.splits.len()
            + self.pending_members.len()
    }

    fn status(&self) -> NodeStatus {
        let st = self.replica.status();
        NodeStatus {
            id: self.cfg.id.clone(),
            algo: R::ALGO.to_string(),
            role: st.role.as_str().to_string(),
            term: st.term,
            leader: st.leader.map(|l| self.name(l)),
            commit_index: st.commit_index,
            applied_index: self.applied,
            last_index: st.last_index,
            snapshot_index: self.snapshot_index,
            leader_elections_won: self.elections_won,
            pid: std::process::id(),
            replaced_peers: self.incarnations.replaced(),
            voters: st.voters.iter().map(|&v| self.name(v)).collect(),
            learners: st.learners.iter().map(|&v| self.name(v)).collect(),
        }
    }

    fn member(&mut self, change: MemberChange, reply: oneshot::Sender<ResponseBody>) {
        let refuse = |reply: oneshot::Sender<ResponseBody>, e: WireError| {
            let _ = reply.send(ResponseBody::Error(e));
        };
        let Some(id) = lock(&self.book).id_of(change.node()) else {
            let why = format!(
                "unknown node `{}`: a node is known once it is configured here or has connected (start it first)",
                change.node()
            );
            return refuse(reply, WireError::BadRequest(why));
        };
        let change = match change {
            MemberChange::AddLearner { .. } => MembershipChange::AddLearner(id),
            MemberChange::Promote { .. } => MembershipChange::Promote(id),
            MemberChange::Remove { .. } => MembershipChange::Remove(id),
        };
        match self.replica.propose_membership(change) {
            Ok(index) => {
                info!(?change, index, "membership change proposed");
                let deadline = Instant::now() + self.request_timeout;
                self.pending_members.push(PendingMember { index, change, reply, deadline });
            }
            Err(MembershipError::Propose(e)) => refuse(reply, self.map_propose_error(e)),
            // Retry later: the previous change, or the learner's catch-up, is not done.
            Err(MembershipError::InProgress | MembershipError::NotCaughtUp(_)) => refuse(reply, WireError::Busy),
            Err(e) => refuse(reply, WireError::BadRequest(e.to_string())),
        }
    }

    fn handle(&mut self, ev: Event<R::Message>) -> bool {
        match ev {
            Event::Peer(from, msg) => self.replica.step(from, msg),
            Event::Client(body, reply) => self.client(body, reply),
            Event::Shutdown => return false,
        }
        true
    }

    fn client(&mut self, body: RequestBody, reply: oneshot::Sender<ResponseBody>) {
        let (client, seq, op) = match body {
            RequestBody::Status => {
                let _ = reply.send(ResponseBody::Status(self.status()));
                return;
            }
            RequestBody::Op { client, seq, op } => (client, seq, op),
            RequestBody::Member(change) => return self.member(change, reply),
        };
        if let Err(e) = op.validate() {
            let _ = reply.send(ResponseBody::Error(WireError::BadRequest(e.to_string())));
            return;
        }
        if self.pending() >= MAX_PENDING_REQUESTS {
            let _ = reply.send(ResponseBody::Error(WireError::Busy));
            return;
        }
        if let Op::Read { key } = op {
            if self.cfg.unsafe_local_reads {
                let v = match self.kv.read(&key) {
                    OpResult::Read(v) => v,
                    _ => None,
                };
                let _ = reply.send(ResponseBody::Value(v));
                return;
            }
            let id = self.next_read_id;
            self.next_read_id += 1;
            match self.replica.read_index(id) {
                Ok(()) => {
                    let deadline = Instant::now() + self.request_timeout;
                    self.pending_reads.insert(id, PendingRead { key, reply, deadline, index: None });
                }
                Err(e) => {
                    let _ = reply.send(ResponseBody::Error(self.map_propose_error(e)));
                }
            }
            return;
        }
        if seq == 0 {
            let _ = reply.send(ResponseBody::Error(WireError::BadRequest("writes need a non-zero seq".into())));
            return;
        }
        // With the planted stale-read bug, read-only transactions take the same shortcut
        // as single reads: answered from local state, without the log.
        if self.cfg.unsafe_local_reads
            && let Op::Txn { ops } = &op
            && ops.iter().all(|m| matches!(m, MicroOp::Read { .. }))
        {
            let got = ops.iter().map(|m| self.kv.get(m.key()).cloned()).collect();
            let _ = reply.send(ResponseBody::Txn(got));
            return;
        }
        if self.cfg.unsafe_txn_split
            && let Op::Txn { ops } = op
        {
            if self.replica.status().role != Role::Leader {
                let _ = reply.send(ResponseBody::Error(self.not_leader(self.replica.status().leader)));
                return;
            }
            let id = SPLIT_CLIENT_BIT | self.next_split;
            self.next_split += 1;
            let deadline = Instant::now() + self.request_timeout;
            let split = SplitTxn { reply, rest: ops.into(), results: Vec::new(), next_seq: 1, deadline };
            self.splits.insert(id, split);
            self.propose_next_part(id);
            return;
        }
        self.proposals.push((Command { client, seq, op }, reply));
    }

    /// Queues the next micro-op of split transaction `id`, or answers it when none is left.
    fn propose_next_part(&mut self, id: u64) {
        let Some(s) = self.splits.get_mut(&id) else { return };
        match s.rest.pop_front() {
            Some(m) => {
                let cmd = Command { client: id, seq: s.next_seq, op: Op::Txn { ops: vec![m] } };
                s.next_seq += 1;
                // Nobody waits on the part itself: the split's own entry answers the client.
                let (part_reply, _) = oneshot::channel();
                self.proposals.push((cmd, part_reply));
            }
            None => {
                let s = self.splits.remove(&id).expect("present");
                let _ = s.reply.send(ResponseBody::Txn(s.results));
            }
        }
    }

    fn flush_proposals(&mut self) {
        if self.proposals.is_empty() {
            return;
        }
        let all = std::mem::take(&mut self.proposals);
        let deadline = Instant::now() + self.request_timeout;
        let mut it = all.into_iter().peekable();
        while it.peek().is_some() {
            let chunk: Vec<_> = it.by_ref().take(self.cfg.batch_max).collect();
            let data = chunk.iter().map(|(c, _)| c.encode()).collect();
            match self.replica.propose(data) {
                Ok(()) => {
                    for (c, reply) in chunk {
                        let p = self
                            .pending_writes
                            .entry((c.client, c.seq))
                            .or_insert_with(|| PendingWrite { replies: Vec::new(), deadline });
                        p.replies.push(reply);
                    }
                }
                Err(e) => {
                    let err = self.map_propose_error(e);
                    for (_, reply) in chunk {
                        let _ = reply.send(ResponseBody::Error(err.clone()));
                    }
                }
            }
        }
    }

    fn process_ready(&mut self) -> Result<(), NodeError> {
        let mut rounds = 0;
        while self.replica.has_ready() && rounds < 64 {
            rounds += 1;
            let rd = self.replica.ready();
            let mut installed = false;
            if let Some(s) = rd.snapshot {
                self.wal.save_snapshot(&s)?;
                self.kv = Kv::restore(&s.data)
                    .map_err(|source| NodeError::Snapshot { what: "snapshot from leader", source })?;
                info!(index = s.index, term = s.term, "installed snapshot from leader");
                self.applied = s.index;
                self.applied_term = s.term;
                self.snapshot_index = s.index;
                installed = true;
            }
            self.wal.append(&rd.records)?;
            {
                let book = lock(&self.book);
                for (to, msg) in rd.messages {
                    // A member not (yet) in the book, e.g. an added node that has not
                    // connected since this node restarted: the message is lost, and resent.
                    if let Some(p) = book.known.get(&to).and_then(|k| k.sender.as_ref()) {
                        p.send(protocol::encode(&msg));
                    }
                }
            }
            for e in rd.committed {
                self.apply(e.index, e.term, &e.data)?;
            }
            for rs in rd.read_states {
                if let Some(r) = self.pending_reads.get_mut(&rs.id) {
                    r.index = Some(rs.index);
                }
            }
            if installed {
                self.wal.rewrite(&self.replica.durable_records())?;
            }
            self.serve_reads();
            self.maybe_compact()?;
        }
        // One status for both watches: it is built on every ready.
        let st = self.replica.status();
        self.watch_role(&st);
        self.watch_members(&st);
        Ok(())
    }

    /// A member the configuration no longer holds is forgotten by its incarnation: its
    /// name may come back as a fresh node (the host wiped and added again), which is then
    /// learned, not refused as a member that lost its state. Until this node sees the
    /// removal, it refuses the fresh node like any wiped member.
    fn watch_members(&mut self, st: &Status) {
        // Voters and learners are disjoint: same size and all known means unchanged.
        let same = st.voters.len() + st.learners.len() == self.members.len()
            && st.voters.iter().chain(&st.learners).all(|id| self.members.contains(id));
        if same {
            return;
        }
        let now = members_of(st);
        let gone: Vec<NodeId> = self.members.difference(&now).copied().collect();
        self.members = now;
        for id in gone {
            let name = self.name(id);
            if name == self.cfg.id {
                continue;
            }
            if let Err(e) = self.incarnations.forget(&name) {
                // Kept means the fresh node stays refused: safe, and the error says why.
                error!(peer = %name, error = %e, "cannot forget a removed member's incarnation");
                continue;
            }
            if let Some(s) = lock(&self.book).known.get(&id).and_then(|k| k.sender.as_ref()) {
                s.unrefuse();
            }
            info!(peer = %name, "removed from the configuration: its incarnation is forgotten");
        }
    }

    fn apply(&mut self, index: u64, term: u64, data: &EntryData) -> Result<(), NodeError> {
        if index != self.applied + 1 {
            return Err(NodeError::ApplyGap { applied: self.applied, index });
        }
        self.applied = index;
        self.applied_term = term;
        if let Some(i) = self.pending_members.iter().position(|p| p.index == index) {
            let p = self.pending_members.swap_remove(i);
            let body = match p.took_effect(data) {
                true => ResponseBody::Done,
                false => ResponseBody::Error(WireError::LeaderLost),
            };
            let _ = p.reply.send(body);
        }
        let EntryData::Command(bytes) = data else { return Ok(()) };
        let cmd = match Command::decode(bytes) {
            Ok(c) => c,
            Err(e) => {
                // Every replica skips it identically, so the state machines stay equal.
                error!(index, error = %e, "undecodable command in the log; skipped");
                return Ok(());
            }
        };
        let result = self.kv.apply(index, &cmd);
        if cmd.client & SPLIT_CLIENT_BIT != 0
            && let Some(s) = self.splits.get_mut(&cmd.client)
            && cmd.seq + 1 == s.next_seq
        {
            match &result {
                OpResult::Txn(r) => {
                    s.results.extend(r.iter().cloned());
                    self.propose_next_part(cmd.client);
                }
                other => {
                    let why = format!("split transaction part {} ended {other:?}", cmd.seq);
                    let s = self.splits.remove(&cmd.client).expect("present");
                    let _ = s.reply.send(ResponseBody::Error(WireError::Rejected(why)));
                }
            }
        }
        if let Some(p) = self.pending_writes.remove(&(cmd.client, cmd.seq)) {
            let body = match result {
                OpResult::Written => ResponseBody::Done,
                OpResult::Read(v) => ResponseBody::Value(v),
                OpResult::CasMismatch { current } => ResponseBody::Error(WireError::CasMismatch { current }),
                OpResult::Rejected(why) => ResponseBody::Error(WireError::Rejected(why)),
                OpResult::Stale => ResponseBody::Error(WireError::Timeout),
                OpResult::Txn(r) => ResponseBody::Txn(r),
            };
            for r in p.replies {
                let _ = r.send(body.clone());
            }
        }
        Ok(())
    }

    fn serve_reads(&mut self) {
        let applied = self.applied;
        let ready: Vec<u64> =
            self.pending_reads.iter().filter(|(_, r)| r.index.is_some_and(|i| i <= applied)).map(|(&id, _)| id).collect();
        for id in ready {
            let r = self.pending_reads.remove(&id).expect("listed");
            let v = match self.kv.read(&r.key) {
                OpResult::Read(v) => v,
                _ => None,
            };
            let _ = r.reply.send(ResponseBody::Value(v));
        }
    }

    fn maybe_compact(&mut self) -> Result<(), NodeError> {
        if self.applied < self.snapshot_index + self.cfg.snapshot_entries {
            return Ok(());
        }
        let snap = Snapshot { index: self.applied, term: self.applied_term, data: self.kv.snapshot() };
        self.replica.compact(snap.clone())?;
        self.wal.save_snapshot(&snap)?;
        self.wal.rewrite(&self.replica.durable_records())?;
        self.snapshot_index = snap.index;
        info!(index = snap.index, bytes = snap.data.len(), "snapshot taken; log compacted");
        Ok(())
    }

    /// Answers everything in flight when leadership is lost: writes are INDEFINITE (they may
    /// still commit under the next leader), reads are simply refused.
    fn watch_role(&mut self, st: &Status) {
        if st.role == self.role {
            return;
        }
        info!(role = st.role.as_str(), term = st.term, leader = ?st.leader.map(|l| self.name(l)), "role changed");
        if st.role == Role::Leader {
            self.elections_won += 1;
        }
        if self.role == Role::Leader {
            for (_, p) in self.pending_writes.drain() {
                for r in p.replies {
                    let _ = r.send(ResponseBody::Error(WireError::LeaderLost));
                }
            }
            for (_, s) in self.splits.drain() {
                let _ = s.reply.send(ResponseBody::Error(WireError::LeaderLost));
            }
            for p in self.pending_members.drain(..) {
                let _ = p.reply.send(ResponseBody::Error(WireError::LeaderLost));
            }
            let err = WireError::NotLeader { leader: None, leader_addr: None };
            for (_, r) in self.pending_reads.drain() {
                let _ = r.reply.send(ResponseBody::Error(err.clone()));
            }
        }
        self.role = st.role;
    }

    fn expire(&mut self, now: Instant) {
        let expired: Vec<(u64, u64)> =
            self.pending_writes.iter().filter(|(_, p)| p.deadline <= now).map(|(&k, _)| k).collect();
        for k in expired {
            for r in self.pending_writes.remove(&k).expect("listed").replies {
                let _ = r.send(ResponseBody::Error(WireError::Timeout));
            }
        }
        let expired: Vec<u64> = self.splits.iter().filter(|(_, s)| s.deadline <= now).map(|(&k, _)| k).collect();
        for k in expired {
            let s = self.splits.remove(&k).expect("listed");
            let _ = s.reply.send(ResponseBody::Error(WireError::Timeout));
        }
        let (late, on_time): (Vec<PendingMember>, _) =
            std::mem::take(&mut self.pending_members).into_iter().partition(|p| p.deadline <= now);
        self.pending_members = on_time;
        for p in late {
            let _ = p.reply.send(ResponseBody::Error(WireError::Timeout));
        }
        let expired: Vec<u64> = self.pending_reads.iter().filter(|(_, r)| r.deadline <= now).map(|(&k, _)| k).collect();
        for k in expired {
            let r = self.pending_reads.remove(&k).expect("listed");
            let _ = r.reply.send(ResponseBody::Error(WireError::Timeout));
        }
    }

    fn shutdown(&mut self) {
        for (_, p) in self.pending_writes.drain() {
            for r in p.replies {
                let _ = r.send(ResponseBody::Error(WireError::ShuttingDown));
            }
        }
        for (_, r) in self.pending_reads.drain() {
            let _ = r.reply.send(ResponseBody::Error(WireError::ShuttingDown));
        }
        for (_, s) in self.splits.drain() {
            let _ = s.reply.send(ResponseBody::Error(WireError::ShuttingDown));
        }
        for p in self.pending_members.drain(..) {
            let _ = p.reply.send(ResponseBody::Error(WireError::ShuttingDown));
        }
        for (_, r) in self.proposals.drain(..) {
            let _ = r.send(ResponseBody::Error(WireError::ShuttingDown));
        }
    }

    fn run(mut self, rx: Receiver<Event<R::Message>>) -> Result<(), NodeError> {
        let tick = Duration::from_millis(self.cfg.tick_ms);
        let mut next_tick = Instant::now() + tick;
        // Apply what the log already knows to be committed before serving anyone.
        self.process_ready()?;
        loop {
            let now = Instant::now();
            if now >= next_tick {
                self.replica.tick();
                next_tick += tick;
                if next_tick < now {
                    next_tick = now + tick;
                }
                self.expire(now);
            }
            let mut running = true;
            match rx.recv_timeout(next_tick.saturating_duration_since(Instant::now())) {
                Ok(ev) => {
                    running = self.handle(ev);
                    let mut n = 0;
                    while running && n < DRAIN_MAX {
                        match rx.try_recv() {
                            Ok(ev) => running = self.handle(ev),
                            Err(_) => break,
                        }
                        n += 1;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => running = false,
            }
            self.flush_proposals();
            self.process_ready()?;
            if !running {
                self.shutdown();
                info!(applied = self.applied, "core stopped");
                return Ok(());
            }
        }
    }
}

/// What `run` needs besides the config.
pub struct Started {
    pub client_addr: std::net::SocketAddr,
    pub peer_addr: std::net::SocketAddr,
}

/// Runs a node until `shutdown` flips to true. Binds both listeners first, so an address in
/// use is an immediate error. `on_started` is told the bound addresses.
pub async fn run<R: Replica>(
    cfg: Config,
    mut shutdown: watch::Receiver<bool>,
    on_started: impl FnOnce(Started),
) -> Result<(), NodeError> {
    let mut cfg = cfg;
    if !cfg.effective_fsync() {
        warn!(
            fsync = cfg.fsync,
            unsafe_no_fsync = cfg.unsafe_no_fsync,
            "WAL fsync is OFF: acknowledged writes can be lost on power failure{}",
            if cfg.unsafe_no_fsync { " (unsafe_no_fsync: a planted bug that lose-unfsynced catches)" } else { "" }
        );
    }
    if cfg.unsafe_local_reads {
        warn!("unsafe_local_reads is ON: reads are served without leadership confirmation (stale reads possible)");
    }
    if cfg.unsafe_txn_split {
        warn!("unsafe_txn_split is ON: transactions are applied one micro-op per log entry (others can see half a transaction)");
    }
    let members = cfg.numbered();
    let self_id = cfg.node_id_of(&cfg.id).ok_or_else(|| NodeError::NotAMember { id: cfg.id.clone() })?;
    let wal_dir: PathBuf = cfg.data_dir.join("wal");
    let (wal, recovered) = Wal::open::<R::Record>(&wal_dir, cfg.effective_fsync())?;
    let nothing_durable = recovered.snapshot.is_none() && recovered.records.is_empty();
    // Left by whoever removed this node from the configuration and wiped it: any start of
    // it (a kill's undo too, with the ordinary command) is a fresh node joining, never an
    // empty node posing as one of the file's initial voters.
    if nothing_durable && !cfg.join && wal_dir.join(JOIN_MARKER).exists() {
        info!(marker = %wal_dir.join(JOIN_MARKER).display(), "removed and wiped earlier: joining as a fresh node");
        cfg.join = true;
    }
    let cfg = Arc::new(cfg);
    if recovered.torn_bytes > 0 {
        warn!(bytes = recovered.torn_bytes, "truncated a torn write at the end of the WAL");
    }
    let incarnations = Arc::new(Incarnations::open(&wal_dir, cfg.unsafe_rejoin_empty)?);
    if cfg.unsafe_rejoin_empty {
        warn!("unsafe_rejoin_empty is ON: peers that lost their durable state rejoin under their old identity");
    }
    info!(incarnation = incarnations.own(), "incarnation");
    let kv = match &recovered.snapshot {
        Some(s) => Kv::restore(&s.data).map_err(|source| NodeError::Snapshot { what: "snapshot", source })?,
        None => Kv::new(),
    };
    let (applied, applied_term) = recovered.snapshot.as_ref().map_or((0, 0), |s| (s.index, s.term));
    info!(
        records = recovered.records.len(),
        snapshot_index = applied,
        algo = R::ALGO,
        "replaying durable state"
    );
    let seed = rand::random::<u64>();
    let replica = R::restore(cfg.replica_config(seed), recovered.snapshot, recovered.records)?;

    let client_listener = TcpListener::bind(&cfg.listen_client)
        .await
        .map_err(|source| NodeError::Io { what: format!("bind client address {}", cfg.listen_client), source })?;
    let peer_listener = TcpListener::bind(&cfg.listen_peer)
        .await
        .map_err(|source| NodeError::Io { what: format!("bind peer address {}", cfg.listen_peer), source })?;
    let started = Started {
        client_addr: client_listener.local_addr().map_err(|source| NodeError::Io { what: "client addr".into(), source })?,
        peer_addr: peer_listener.local_addr().map_err(|source| NodeError::Io { what: "peer addr".into(), source })?,
    };
    info!(id = %cfg.id, client = %started.client_addr, peer = %started.peer_addr, "listening");

    let (tx, rx) = std::sync::mpsc::sync_channel::<Event<R::Message>>(EVENT_QUEUE);
    let stats = Arc::new(TransportStats::default());
    let me = members.iter().find(|(id, _)| *id == self_id).map(|(_, p)| p.clone()).expect("self is a member");
    let hello = PeerHello {
        version: protocol::PROTOCOL_VERSION,
        from: cfg.id.clone(),
        algo: R::ALGO.to_string(),
        incarnation: incarnations.own(),
        knows_you_as: 0,
        node_id: self_id,
        client_addr: me.client_addr.clone(),
        peer_addr: me.peer_addr.clone(),
    };
    if !cfg.starts_as_voter() {
        info!(voters = ?cfg.voters, join = cfg.join, "not an initial voter: joining, waiting for a leader to add this node");
    }
    // One outbound connection per known node, each saying hello with what it knows of the
    // peer's incarnation at the time it connects.
    let connect = {
        let (base, book, stats, shutdown) = (hello.clone(), incarnations.clone(), stats.clone(), shutdown.clone());
        move |name: String, addr: String| {
            let (base, book, peer) = (base.clone(), book.clone(), name.clone());
            let hello = move || PeerHello { knows_you_as: book.known(&peer), ..base.clone() };
            transport::spawn_outbound(hello, name, addr, stats.clone(), shutdown.clone())
        }
    };
    let book: SharedBook = Default::default();
    for (id, m) in &members {
        let sender = (*id != self_id).then(|| connect(m.id.clone(), m.peer_addr.clone()));
        lock(&book).known.insert(*id, Known { name: m.id.clone(), client_addr: m.client_addr.clone(), sender });
    }
    let (initial_members, initially_voter) = {
        let st = replica.status();
        (members_of(&st), st.voters.contains(&self_id))
    };
    // A fresh joiner has nothing a peer could have known: a peer that remembers another
    // incarnation under this name knew the member this node replaces (removed, its host
    // wiped and added again), not this node. It refuses this node until it sees the
    // removal; this node must not end itself over it.
    let fresh_joiner = !cfg.starts_as_voter() && nothing_durable && !initial_members.contains(&self_id);
    let core = Core::<R> {
        incarnations: incarnations.clone(),
        request_timeout: Duration::from_millis(cfg.request_timeout_ms),
        cfg: cfg.clone(),
        replica,
        wal,
        kv,
        applied,
        applied_term,
        snapshot_index: applied,
        book: book.clone(),
        pending_members: Vec::new(),
        proposals: Vec::new(),
        pending_writes: HashMap::new(),
        pending_reads: HashMap::new(),
        next_read_id: 1,
        splits: HashMap::new(),
        next_split: 1,
        role: Role::Follower,
        elections_won: 0,
        // Every node this one knows, not just the members: the first look forgets the
        // incarnations of those the log says are not members (removed while this node was
        // down, so it never saw them leave).
        members: lock(&book).known.keys().copied().chain(initial_members.iter().copied()).collect(),
    };
    let core_thread = std::thread::Builder::new()
        .name("faultline-core".into())
        .spawn(move || core.run(rx))
        .map_err(|source| NodeError::Io { what: "spawn core thread".into(), source })?;

    let algo = R::ALGO;
    let peer_tx = tx.clone();
    let known_incarnations = incarnations.clone();
    // A peer that knew an earlier incarnation of this node ends it: it must not vote or
    // acknowledge with state it does not have.
    // One slot: the first such peer is the news; later ones (every peer says the same) find
    // the slot full and are dropped on purpose while the node stops.
    let (fatal_tx, mut fatal_rx) = tokio::sync::mpsc::channel::<NodeError>(1);
    tokio::spawn(transport::accept_loop(
        peer_listener,
        move |h: &PeerHello| {
            if h.algo != algo {
                return Err(PeerRefused::Algo { peer: h.from.clone(), theirs: h.algo.clone(), ours: algo });
            }
            let known = {
                let b = lock(&book);
                match b.id_of(&h.from) {
                    Some(id) if id != h.node_id => {
                        return Err(PeerRefused::IdMismatch { peer: h.from.clone(), ours: id, theirs: h.node_id });
                    }
                    Some(id) => Some(id),
                    None => {
                        if let Some(k) = b.known.get(&h.node_id) {
                            return Err(PeerRefused::IdTaken { peer: h.from.clone(), id: h.node_id, by: k.name.clone() });
                        }
                        if h.node_id == 0 || b.known.len() >= BOOK_MAX {
                            return Err(PeerRefused::UnknownPeer(h.from.clone()));
                        }
                        None
                    }
                }
            };
            let id = h.node_id;
            if !fresh_joiner && known_incarnations.replaced_by(h.knows_you_as) {
                let (peer, known, ours) = (h.from.clone(), h.knows_you_as, known_incarnations.own());
                let _ = fatal_tx.try_send(NodeError::Replaced { peer: peer.clone(), known, ours });
                return Err(PeerRefused::WeAreReplaced { peer, known, ours });
            }
            if let Err(known) = known_incarnations.check(&h.from, h.incarnation) {
                if let Some(s) = lock(&book).known.get(&id).and_then(|k| k.sender.as_ref()) {
                    s.refuse();
                }
                return Err(PeerRefused::Replaced { peer: h.from.clone(), known, theirs: h.incarnation });
            }
            match known {
                Some(_) => {
                    if let Some(s) = lock(&book).known.get(&id).and_then(|k| k.sender.as_ref()) {
                        s.peer_is_up();
                    }
                }
                None => {
                    info!(peer = %h.from, id, peer_addr = %h.peer_addr, "a node not in the configuration introduced itself");
                    let sender = connect(h.from.clone(), h.peer_addr.clone());
                    let k = Known { name: h.from.clone(), client_addr: h.client_addr.clone(), sender: Some(sender) };
                    lock(&book).known.insert(id, k);
                }
            }
            Ok(id)
        },
        move |from, bytes| {
            let msg: R::Message = protocol::decode(bytes)?;
            // A full queue drops the message: consensus tolerates loss, the core must not stall.
            let _ = peer_tx.try_send(Event::Peer(from, msg));
            Ok(())
        },
        shutdown.clone(),
    ));
    tokio::spawn(client_accept_loop::<R>(client_listener, tx.clone(), cfg.clone(), shutdown.clone()));
    if cfg.join && !initially_voter {
        let others = members.iter().filter(|(id, _)| *id != self_id).map(|(_, p)| p.client_addr.clone()).collect();
        tokio::spawn(crate::join::join(cfg.id.clone(), others, shutdown.clone()));
    }
    on_started(started);

    // Wait for shutdown or a dead core thread.
    let core_done = tokio::task::spawn_blocking(move || core_thread.join());
    tokio::pin!(core_done);
    let mut fatal = None;
    let result = tokio::select! {
        r = &mut core_done => r,
        _ = shutdown.changed() => {
            // Blocking send off the runtime: the shutdown event must not be dropped on a full queue.
            let _ = tokio::task::spawn_blocking(move || tx.send(Event::Shutdown)).await;
            core_done.await
        }
        Some(e) = fatal_rx.recv() => {
            error!(error = %e, "stopping");
            fatal = Some(e);
            let _ = tokio::task::spawn_blocking(move || tx.send(Event::Shutdown)).await;
            core_done.await
        }
    };
    if let Some(e) = fatal {
        return Err(e);
    }
    match result {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(NodeError::CorePanicked),
        Err(e) => Err(NodeError::CoreJoin(e)),
    }
}

async fn client_accept_loop<R: Replica>(
    listener: TcpListener,
    tx: SyncSender<Event<R::Message>>,
    cfg: Arc<Config>,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(cfg.max_client_connections));
    let status_permits = Arc::new(tokio::sync::Semaphore::new(cfg.status_reserved_connections));
    // The core answers within request_timeout; allow slack for queueing.
    let answer_within = Duration::from_millis(cfg.request_timeout_ms + 1000);
    let idle = Duration::from_millis(cfg.client_idle_timeout_ms);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let Ok((stream, remote)) = accepted else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let (permit, status_only) = match permits.clone().try_acquire_owned() {
            Ok(p) => (p, false),
            Err(_) => match status_permits.clone().try_acquire_owned() {
                Ok(p) => (p, true),
                Err(_) => {
                    warn!(%remote, "too many client connections; refusing");
                    continue;
                }
            },
        };
        let tx = tx.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = stream.set_nodelay(true);
            let mut framed = Framed::new(stream, protocol::client_codec());
            loop {
                let frame = tokio::select! {
                    f = tokio::time::timeout(idle, framed.next()) => match f {
                        Ok(f) => f,
                        Err(_) => return,
                    },
                    _ = shutdown.changed() => return,
                };
                let Some(Ok(frame)) = frame else { return };
                let req: Request = match protocol::decode(&frame) {
                    Ok(r) => r,
                    Err(e) => {
                        let body = ResponseBody::Error(WireError::BadRequest(format!("undecodable request: {e}")));
                        let _ = framed.send(protocol::encode(&Response { id: 0, body })).await;
                        return;
                    }
                };
                // A reserve slot exists so status gets through a full node; work waits for
                // an ordinary slot.
                if status_only && !matches!(req.body, RequestBody::Status) {
                    let body = ResponseBody::Error(WireError::Busy);
                    if framed.send(protocol::encode(&Response { id: req.id, body })).await.is_err() {
                        return;
                    }
                    continue;
                }
                let (reply_tx, reply_rx) = oneshot::channel();
                let body = match tx.try_send(Event::Client(req.body, reply_tx)) {
                    Err(TrySendError::Full(_)) => ResponseBody::Error(WireError::Busy),
                    Err(TrySendError::Disconnected(_)) => ResponseBody::Error(WireError::ShuttingDown),
                    Ok(()) => match tokio::time::timeout(answer_within, reply_rx).await {
                        Ok(Ok(b)) => b,
                        Ok(Err(_)) => ResponseBody::Error(WireError::ShuttingDown),
                        Err(_) => ResponseBody::Error(WireError::Timeout),
                    },
                };
                if framed.send(protocol::encode(&Response { id: req.id, body })).await.is_err() {
                    return;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncReadExt;
    use tokio::net::TcpStream;

    use crate::client::{Client, ClientError};
    use crate::config::Config;
    use crate::protocol::WireError;

    /// Starts a single-node cluster in-process; returns its client address and the stop switch.
    async fn start(cfg: Config) -> (String, tokio::sync::watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            crate::node::run_algo(cfg, stop_rx, move |s| {
                let _ = addr_tx.send(s.client_addr);
            })
            .await
            .expect("node runs");
        });
        let addr = tokio::time::timeout(Duration::from_secs(5), addr_rx).await.expect("node starts").unwrap();
        (addr.to_string(), stop_tx, task)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_connections_cannot_lock_out_status_and_are_closed() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::minimal("n1", dir.path().into());
        cfg.listen_client = "127.0.0.1:0".into();
        cfg.listen_peer = "127.0.0.1:0".into();
        cfg.fsync = false;
        cfg.max_client_connections = 4;
        cfg.status_reserved_connections = 1;
        cfg.client_idle_timeout_ms = 600;
        cfg.validate("test").unwrap();
        let (addr, stop, task) = start(cfg).await;

        let mut idle = Vec::new();
        for _ in 0..4 {
            idle.push(TcpStream::connect(&addr).await.unwrap());
        }
        // Every ordinary slot is held: the next connection lands in the status reserve.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut c = Client::connect(&addr, Duration::from_secs(2)).await.unwrap();
        c.set_follow_leader(false);
        let st = c.status().await.expect("status gets through a full node");
        assert_eq!(st.id, "n1");
        match c.write("k", crate::kv::Value::Int(1)).await {
            Err(ClientError::Server(WireError::Busy)) => {}
            other => panic!("a reserve slot must refuse work, got {other:?}"),
        }

        // The idle connections are closed by the node, not left holding their slots.
        for mut s in idle {
            let mut buf = [0u8; 1];
            let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
                .await
                .expect("idle connection closed within the timeout")
                .unwrap_or(0);
            assert_eq!(n, 0, "expected end-of-stream on an idle connection");
        }

        // With the slots free again, ordinary work is served (once the single node leads).
        let mut w = Client::connect(&addr, Duration::from_secs(2)).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match w.write("k", crate::kv::Value::Int(1)).await {
                Ok(()) => break,
                Err(ClientError::Server(WireError::NotLeader { .. })) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("write after the idle connections were closed: {e}"),
            }
        }
        // The client survives the node closing its idle connection: it reconnects, and the
        // read is not turned into an indefinite "connection lost".
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert_eq!(w.read("k").await.unwrap(), Some(crate::kv::Value::Int(1)));

        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
    }

    fn txn_node_config(dir: &std::path::Path, algo: crate::config::Algo, split: bool) -> Config {
        let mut cfg = Config::minimal("n1", dir.into());
        cfg.listen_client = "127.0.0.1:0".into();
        cfg.listen_peer = "127.0.0.1:0".into();
        cfg.fsync = false;
        cfg.algo = algo;
        cfg.unsafe_txn_split = split;
        cfg.validate("test").unwrap();
        cfg
    }

    async fn leader_client(addr: &str) -> Client {
        let mut c = Client::connect(addr, Duration::from_secs(2)).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match c.write("warmup", crate::kv::Value::Int(0)).await {
                Ok(()) => return c,
                Err(ClientError::Server(WireError::NotLeader { .. })) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("no leader: {e}"),
            }
        }
    }

    /// Writers put the same value into two keys in one transaction while readers read both
    /// in one transaction; returns how many reads saw the two keys differ.
    async fn torn_reads(algo: crate::config::Algo, split: bool) -> usize {
        use crate::kv::{MicroOp, Value};
        let dir = tempfile::tempdir().unwrap();
        let (addr, stop, task) = start(txn_node_config(dir.path(), algo, split)).await;
        leader_client(&addr).await;
        let mut writers = Vec::new();
        for w in 0..3i64 {
            let addr = addr.clone();
            writers.push(tokio::spawn(async move {
                let mut c = Client::connect(&addr, Duration::from_secs(2)).await.unwrap();
                for i in 0..150i64 {
                    let v = Value::Int(w * 1000 + i);
                    let ops = vec![
                        MicroOp::Write { key: "x".into(), value: v.clone() },
                        MicroOp::Append { key: "l".into(), value: v.clone() },
                        MicroOp::Write { key: "y".into(), value: v },
                        MicroOp::Append { key: "m".into(), value: Value::Int(w * 1000 + i) },
                    ];
                    c.txn(ops).await.expect("txn commits");
                }
            }));
        }
        let mut torn = 0;
        let mut c = Client::connect(&addr, Duration::from_secs(2)).await.unwrap();
        while !writers.iter().all(|w| w.is_finished()) {
            let ops = ["x", "y", "l", "m"].iter().map(|k| MicroOp::Read { key: (*k).into() }).collect();
            let r = c.txn(ops).await.expect("read txn commits");
            if r[0] != r[1] || r[2] != r[3] {
                torn += 1;
            }
        }
        for w in writers {
            w.await.unwrap();
        }
        // Every write committed exactly once: the lists hold all 450 appends.
        let r = c.txn(vec![MicroOp::Read { key: "l".into() }]).await.unwrap();
        assert!(matches!(&r[0], Some(Value::List(l)) if l.len() == 450), "{r:?}");
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
        torn
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn txn_is_applied_atomically_by_both_cores() {
        for algo in [crate::config::Algo::Raft, crate::config::Algo::Paxos] {
            assert_eq!(torn_reads(algo, false).await, 0, "{algo:?}: a reader saw half a transaction");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unsafe_txn_split_lets_a_reader_see_half_a_txn() {
        for algo in [crate::config::Algo::Raft, crate::config::Algo::Paxos] {
            // Interleaving depends on scheduling: a few rounds make a miss vanishingly rare.
            let mut torn = 0;
            for _ in 0..5 {
                torn += torn_reads(algo, true).await;
                if torn > 0 {
                    break;
                }
            }
            assert!(torn > 0, "{algo:?}: the planted split was never observed");
        }
    }
}
