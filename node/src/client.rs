//! Client library for the node's client protocol, used by workloads, the nemesis and the
//! benchmark. One request at a time per `Client`, Jepsen style: a harness process owns one.
//!
//! Every error says whether it is DEFINITE ([`ClientError::is_definite`]: the operation did
//! not and will not take effect, record `fail`) or INDEFINITE (record `info`).

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::kv::{Op, Value};
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

/// Not-leader answers carrying an address are followed this many times per request.
const MAX_REDIRECTS: usize = 3;

pub struct Client {
    addr: String,
    framed: Option<Framed<TcpStream, LengthDelimitedCodec>>,
    timeout: Duration,
    client_id: u64,
    seq: u64,
    next_id: u64,
    follow_leader: bool,
}

impl Client {
    /// Connects to `addr` (`host:port`), failing after `timeout`. The same timeout bounds
    /// every later request.
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Client, ClientError> {
        let mut c = Client {
            addr: addr.to_string(),
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
        self.framed = None;
        let err = |reason: String| ClientError::Connect { addr: self.addr.clone(), reason };
        let stream = match tokio::time::timeout(self.timeout, TcpStream::connect(&self.addr)).await {
            Err(_) => return Err(err("timed out".into())),
            Ok(Err(e)) => return Err(err(e.to_string())),
            Ok(Ok(s)) => s,
        };
        let _ = stream.set_nodelay(true);
        self.framed = Some(Framed::new(stream, protocol::client_codec()));
        Ok(())
    }

    async fn call(&mut self, body: RequestBody) -> Result<ResponseBody, ClientError> {
        let mut redirects = 0;
        loop {
            if self.framed.is_none() {
                self.reconnect().await?;
            }
            let resp = self.call_once(body.clone()).await;
            match resp {
                Ok(ResponseBody::Error(WireError::NotLeader { leader_addr: Some(a), leader }))
                    if self.follow_leader && redirects < MAX_REDIRECTS && a != self.addr =>
                {
                    redirects += 1;
                    let old = std::mem::replace(&mut self.addr, a.clone());
                    if let Err(e) = self.reconnect().await {
                        self.addr = old;
                        let _ = e;
                        return Ok(ResponseBody::Error(WireError::NotLeader { leader_addr: Some(a), leader }));
                    }
                }
                other => return other,
            }
        }
    }

    async fn call_once(&mut self, body: RequestBody) -> Result<ResponseBody, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let frame = protocol::encode(&Request { id, body });
        let addr = self.addr.clone();
        let timeout = self.timeout;
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
            Err(_) => Err(ClientError::Timeout { addr: addr.clone(), timeout_ms: timeout.as_millis() as u64 }),
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

    async fn done(&mut self, op: Op) -> Result<(), ClientError> {
        match self.op(op).await? {
            ResponseBody::Done => Ok(()),
            other => Err(self.unexpected(&other)),
        }
    }

    /// The node's admin status (never redirected: it describes the node asked).
    pub async fn status(&mut self) -> Result<NodeStatus, ClientError> {
        if self.framed.is_none() {
            self.reconnect().await?;
        }
        match self.call_once(RequestBody::Status).await? {
            ResponseBody::Status(s) => Ok(s),
            ResponseBody::Error(e) => Err(ClientError::Server(e)),
            other => Err(self.unexpected(&other)),
        }
    }
}
