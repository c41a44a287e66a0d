//! Client library for the node's client protocol, used by workloads, the nemesis and the
//! benchmark. One request at a time per `Client`, Jepsen style: a harness process owns one.
//!
//! Every error says whether it is DEFINITE ([`ClientError::is_definite`]: the operation did
//! not and will not take effect, record `fail`) or INDEFINITE (record `info`).

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::kv::{MicroOp, Op, Value};
use crate::protocol::{self, NodeStatus, Request, RequestBody, Response, ResponseBody, WireError};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Could not connect: nothing was sent.
    #[error("connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    /// The connection broke while a request was outstanding.
    #[error("connection to {addr} lost: {reason}")]
    Io { addr: String, reason: String },
    /// No response within the client's timeout.
    #[error("no response from {addr} within {timeout_ms} ms")]
    Timeout { addr: String, timeout_ms: u64 },
    /// The node answered with an error.
    #[error("{0}")]
    Server(WireError),
    /// The node answered with something that is not a valid response to the request.
    #[error("protocol error from {addr}: {reason}")]
    Protocol { addr: String, reason: String },
}

impl ClientError {
    pub fn is_definite(&self) -> bool {
        match self {
            ClientError::Connect { .. } => true,
            ClientError::Server(e) => e.is_definite(),
            ClientError::Io { .. } | ClientError::Timeout { .. } | ClientError::Protocol { .. } => false,
        }
    }

    /// A short tag for the history's `error` field. `cas-mismatch` is the one checkers use.
    pub fn tag(&self) -> &'static str {
        match self {
            ClientError::Connect { .. } => "connect",
            ClientError::Io { .. } => "connection-lost",
            ClientError::Timeout { .. } => "timeout",
            ClientError::Protocol { .. } => "protocol",
            ClientError::Server(e) => match e {
                WireError::NotLeader { .. } => "not-leader",
                WireError::CasMismatch { .. } => "cas-mismatch",
                WireError::Busy => "busy",
                WireError::BadRequest(_) => "bad-request",
                WireError::Rejected(_) => "rejected",
                WireError::LeaderLost => "leader-lost",
                WireError::Timeout => "server-timeout",
                WireError::ShuttingDown => "shutting-down",
            },
        }
    }
}

/// Hops to another node per request: following a not-leader answer to the leader it names,
/// or going back to the home node when the node a redirect led to is gone or knows no leader.
const MAX_REDIRECTS: usize = 3;

pub struct Client {
    addr: String,
    /// The node this client was opened on. A redirect moves the client to the leader; once
    /// that node fails it (unreachable, no leader known, no answer) the client returns here,
    /// so a dead or partitioned-off old leader cannot capture it.
    home: String,
    framed: Option<Framed<TcpStream, LengthDelimitedCodec>>,
    timeout: Duration,
    client_id: u64,
    seq: u64,
    next_id: u64,
    follow_leader: bool,
}

impl Client {
    /// Connects to `addr` (`host:port`), failing after `timeout`. The same timeout bounds
    /// every later request as a whole, redirects and reconnects included.
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Client, ClientError> {
        let mut c = Client {
            addr: addr.to_string(),
            home: addr.to_string(),
            framed: None,
            timeout,
            client_id: rand::random::<u64>() | 1,
            seq: 0,
            next_id: 1,
            follow_leader: true,
        };
        c.reconnect().await?;
        Ok(c)
    }

    /// Whether a not-leader answer is followed to the leader (on by default). Off pins the
    /// client to one node, which is what node-targeted fault drills want.
    pub fn set_follow_leader(&mut self, follow: bool) {
        self.follow_leader = follow;
    }

    /// The node this client currently talks to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    async fn reconnect(&mut self) -> Result<(), ClientError> {
        let timeout = self.timeout;
        self.reconnect_within(timeout).await
    }

    async fn reconnect_within(&mut self, timeout: Duration) -> Result<(), ClientError> {
        self.framed = None;
        let err = |reason: String| ClientError::Connect { addr: self.addr.clone(), reason };
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(&self.addr)).await {
            Err(_) => return Err(err("timed out".into())),
            Ok(Err(e)) => return Err(err(e.to_string())),
            Ok(Ok(s)) => s,
        };
        let _ = stream.set_nodelay(true);
        self.framed = Some(Framed::new(stream, protocol::client_codec()));
        Ok(())
    }

    /// The node closes connections that stay idle (`client_idle_timeout_ms`); sending on one
    /// would turn a request that was never delivered into an indefinite outcome, so a
    /// connection already at end-of-stream is replaced before use.
    fn drop_if_closed_by_peer(&mut self) {
        use futures::FutureExt;
        let Some(framed) = self.framed.as_mut() else { return };
        let mut byte = [0u8; 1];
        match framed.get_mut().peek(&mut byte).now_or_never() {
            Some(Ok(0)) | Some(Err(_)) => self.framed = None,
            Some(Ok(_)) | None => {}
        }
    }

    fn go_home(&mut self) {
        if self.addr != self.home {
            self.addr = self.home.clone();
            self.framed = None;
        }
    }

    /// One operation, bounded by the client's timeout from start to finish. Resending after
    /// `NotLeader` or a failed connect is safe: nothing was proposed.
    async fn call(&mut self, body: RequestBody) -> Result<ResponseBody, ClientError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut hops = 0;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            self.drop_if_closed_by_peer();
            let resp = match self.framed.is_some() {
                true => Ok(()),
                false => self.reconnect_within(left).await,
            };
            let resp = match resp {
                Ok(()) => {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    self.call_once(body.clone(), left).await
                }
                Err(e) => Err(e),
            };
            // A hop only while time is left; otherwise this answer (definite) stands.
            let may_hop = self.follow_leader && hops < MAX_REDIRECTS && tokio::time::Instant::now() < deadline;
            let away = self.addr != self.home;
            match resp {
                Ok(ResponseBody::Error(WireError::NotLeader { leader_addr: Some(a), .. }))
                    if may_hop && a != self.addr =>
                {
                    hops += 1;
                    self.addr = a;
                    self.framed = None;
                }
                Ok(ResponseBody::Error(WireError::NotLeader { leader_addr: None, .. }))
                | Err(ClientError::Connect { .. })
                    if may_hop && away =>
                {
                    // The leader we were sent to is gone or no longer knows one: ask home again.
                    hops += 1;
                    self.go_home();
                }
                other => {
                    let failed = match &other {
                        Err(_) => true,
                        Ok(ResponseBody::Error(e)) => {
                            !matches!(e, WireError::CasMismatch { .. } | WireError::Rejected(_))
                        }
                        Ok(_) => false,
                    };
                    if failed && self.follow_leader {
                        self.go_home();
                    }
                    return other;
                }
            }
        }
    }

    async fn call_once(&mut self, body: RequestBody, timeout: Duration) -> Result<ResponseBody, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let frame = protocol::encode(&Request { id, body });
        let addr = self.addr.clone();
        let framed = self.framed.as_mut().expect("connected");
        let exchange = async {
            framed.send(frame).await.map_err(|e| ClientError::Io { addr: addr.clone(), reason: e.to_string() })?;
            loop {
                let Some(frame) = framed.next().await else {
                    return Err(ClientError::Io { addr: addr.clone(), reason: "closed by peer".into() });
                };
                let frame = frame.map_err(|e| ClientError::Io { addr: addr.clone(), reason: e.to_string() })?;
                let resp: Response = protocol::decode(&frame)
                    .map_err(|e| ClientError::Protocol { addr: addr.clone(), reason: e.to_string() })?;
                if resp.id == id {
                    return Ok(resp.body);
                }
                // A late answer to an earlier request that timed out: skip it.
            }
        };
        let result = match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout { addr: addr.clone(), timeout_ms: self.timeout.as_millis() as u64 }),
        };
        if result.is_err() {
            // Do not reuse a connection in an unknown state.
            self.framed = None;
        }
        result
    }

    async fn op(&mut self, op: Op) -> Result<ResponseBody, ClientError> {
        self.seq += 1;
        let body = RequestBody::Op { client: self.client_id, seq: self.seq, op };
        match self.call(body).await? {
            ResponseBody::Error(e) => Err(ClientError::Server(e)),
            other => Ok(other),
        }
    }

    fn unexpected(&self, what: &ResponseBody) -> ClientError {
        ClientError::Protocol { addr: self.addr.clone(), reason: format!("unexpected response {what:?}") }
    }

    /// A linearizable read; `None` when the key was never written.
    pub async fn read(&mut self, key: &str) -> Result<Option<Value>, ClientError> {
        match self.op(Op::Read { key: key.into() }).await? {
            ResponseBody::Value(v) => Ok(v),
            other => Err(self.unexpected(&other)),
        }
    }

    pub async fn write(&mut self, key: &str, value: Value) -> Result<(), ClientError> {
        self.done(Op::Write { key: key.into(), value }).await
    }

    /// Compare-and-set; a mismatch is `ClientError::Server(WireError::CasMismatch)`, definite.
    pub async fn cas(&mut self, key: &str, from: Value, to: Value) -> Result<(), ClientError> {
        self.done(Op::Cas { key: key.into(), from, to }).await
    }

    /// Appends `value` to the list at `key` (creating it).
    pub async fn append(&mut self, key: &str, value: Value) -> Result<(), ClientError> {
        self.done(Op::Append { key: key.into(), value }).await
    }

    /// Runs micro-ops atomically; per micro-op, what a read saw (`None` for writes and
    /// appends). A timeout or lost leader is indefinite: the transaction may have committed.
    pub async fn txn(&mut self, ops: Vec<MicroOp>) -> Result<Vec<Option<Value>>, ClientError> {
        let n = ops.len();
        match self.op(Op::Txn { ops }).await? {
            ResponseBody::Txn(r) if r.len() == n => Ok(r),
            other => Err(self.unexpected(&other)),
        }
    }

    async fn done(&mut self, op: Op) -> Result<(), ClientError> {
        match self.op(op).await? {
            ResponseBody::Done => Ok(()),
            other => Err(self.unexpected(&other)),
        }
    }

    /// A membership change, sent to the leader (redirects are followed when enabled). `Done`
    /// once the leader applied the configuration entry; `Busy` while the previous change or
    /// the learner's catch-up is not finished, definite like every refusal.
    pub async fn member(&mut self, change: crate::protocol::MemberChange) -> Result<(), ClientError> {
        match self.call(RequestBody::Member(change)).await? {
            ResponseBody::Done => Ok(()),
            ResponseBody::Error(e) => Err(ClientError::Server(e)),
            other => Err(self.unexpected(&other)),
        }
    }

    /// The node's admin status (never redirected: it describes the node asked).
    pub async fn status(&mut self) -> Result<NodeStatus, ClientError> {
        if self.framed.is_none() {
            self.reconnect().await?;
        }
        let timeout = self.timeout;
        match self.call_once(RequestBody::Status, timeout).await? {
            ResponseBody::Status(s) => Ok(s),
            ResponseBody::Error(e) => Err(ClientError::Server(e)),
            other => Err(self.unexpected(&other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::net::TcpListener;

    use super::*;

    async fn fake_node(answer: impl Fn(&RequestBody) -> Option<ResponseBody> + Send + Sync + 'static) -> String {
        let addr = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().to_string();
        fake_node_at(&addr, Duration::ZERO, answer).await
    }

    /// An address nothing listens on.
    async fn dead_addr() -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().to_string()
    }

    fn redirect(to: &str) -> ResponseBody {
        ResponseBody::Error(WireError::NotLeader { leader: Some("nX".into()), leader_addr: Some(to.into()) })
    }

    #[tokio::test]
    async fn a_redirect_to_a_node_that_never_answers_ends_within_the_timeout() {
        // Every hop is slow: home and a stale follower each take 200 ms to name the next node,
        // which never answers. Per-hop timeouts alone would add up to 700 ms.
        let silent = fake_node(|_| None).await;
        let s = silent.clone();
        let addr = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().to_string();
        let stale = fake_node_at(&addr, Duration::from_millis(200), move |_| Some(redirect(&s))).await;
        let addr = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().to_string();
        let home = fake_node_at(&addr, Duration::from_millis(200), move |_| Some(redirect(&stale))).await;
        let mut c = Client::connect(&home, Duration::from_millis(300)).await.unwrap();
        let t = Instant::now();
        let e = c.write("k", Value::Int(1)).await.unwrap_err();
        let took = t.elapsed();
        assert!(matches!(e, ClientError::Timeout { .. }), "{e:?}");
        assert!(!e.is_definite());
        assert!(took < Duration::from_millis(450), "took {took:?}, the timeout is 300 ms");
        // The silent node failed us: the next operation starts from home again.
        assert_eq!(c.addr(), home);
    }

    #[tokio::test]
    async fn a_dead_leader_sends_the_client_home_within_the_same_operation() {
        let dead = dead_addr().await;
        let leader = fake_node(|_| Some(ResponseBody::Done)).await;
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (d, l, n) = (dead.clone(), leader.clone(), calls.clone());
        // Home first names a leader that has died, then (once it knows better) the live one.
        let home = fake_node(move |_| {
            let k = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Some(redirect(if k == 0 { &d } else { &l }))
        })
        .await;
        let mut c = Client::connect(&home, Duration::from_secs(2)).await.unwrap();
        c.write("k", Value::Int(1)).await.unwrap();
        assert_eq!(c.addr(), leader);
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_leader_that_lost_leadership_sends_the_client_home() {
        let old = fake_node(|_| Some(ResponseBody::Done)).await;
        let mut c = Client::connect(&old, Duration::from_secs(2)).await.unwrap();
        drop(c.framed.take());
        // Re-home a client that was redirected to `old` earlier, and make `old` step down.
        let stepped_down =
            fake_node(|_| Some(ResponseBody::Error(WireError::NotLeader { leader: None, leader_addr: None }))).await;
        let new_leader = fake_node(|_| Some(ResponseBody::Done)).await;
        let nl = new_leader.clone();
        let home = fake_node(move |_| Some(redirect(&nl))).await;
        c.home = home.clone();
        c.addr = stepped_down.clone();
        c.write("k", Value::Int(1)).await.unwrap();
        assert_eq!(c.addr(), new_leader);
    }

    #[tokio::test]
    async fn redirect_loops_end_with_a_definite_not_leader() {
        // Two nodes that name each other as leader forever.
        let l1 = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let l2 = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (a1, a2) = (l1.local_addr().unwrap().to_string(), l2.local_addr().unwrap().to_string());
        drop((l1, l2));
        let b = a2.clone();
        let n1 = fake_node_at(&a1, Duration::ZERO, move |_| Some(redirect(&b))).await;
        let a = a1.clone();
        let _n2 = fake_node_at(&a2, Duration::ZERO, move |_| Some(redirect(&a))).await;
        let mut c = Client::connect(&n1, Duration::from_secs(2)).await.unwrap();
        let t = Instant::now();
        let e = c.read("k").await.unwrap_err();
        assert!(matches!(e, ClientError::Server(WireError::NotLeader { .. })), "{e:?}");
        assert!(e.is_definite());
        assert!(t.elapsed() < Duration::from_secs(1));
        assert_eq!(c.addr(), n1, "a definite refusal sends the next operation home");
    }

    /// A fake node on `addr`: answers every request with `answer(request)`, or never when None.
    async fn fake_node_at(
        addr: &str,
        delay: Duration,
        answer: impl Fn(&RequestBody) -> Option<ResponseBody> + Send + Sync + 'static,
    ) -> String {
        let listener = TcpListener::bind(addr).await.unwrap();
        let answer = std::sync::Arc::new(answer);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut framed = Framed::new(stream, protocol::client_codec());
                    while let Some(Ok(frame)) = framed.next().await {
                        let req: Request = protocol::decode(&frame).unwrap();
                        tokio::time::sleep(delay).await;
                        if let Some(body) = answer(&req.body) {
                            let _ = framed.send(protocol::encode(&Response { id: req.id, body })).await;
                        }
                    }
                });
            }
        });
        addr.to_string()
    }
}
