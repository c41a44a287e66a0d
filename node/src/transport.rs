//! Peer transport: one outbound TCP connection per peer, fed from a bounded queue, and an
//! accept loop for inbound connections.
//!
//! Consensus tolerates loss, so the transport never blocks the core: a full queue drops
//! the message, a broken connection drops what was in flight, and reconnects back off
//! exponentially. Every connect has a timeout. Frames are postcard under a length prefix.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::codec::Framed;
use tracing::{debug, info, warn};

use crate::protocol::{self, PROTOCOL_VERSION, PeerHello};
use crate::replica::NodeId;

/// Outbound messages queued per peer before new ones are dropped.
pub const PEER_QUEUE: usize = 4096;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Inbound peer connections served at once (a peer reconnecting leaves old ones closing).
const MAX_INBOUND: usize = 64;
/// A batch that cannot be handed to the kernel within this long means the peer stopped
/// reading or the path is cut; reconnecting beats waiting behind a full send buffer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Unacknowledged data older than this aborts the connection (TCP_USER_TIMEOUT). Without it
/// a connection that lived through a partition stays "established" while the kernel backs
/// off its retransmissions for minutes, and a healed node hears nothing.
const USER_TIMEOUT_MS: u32 = 3_000;
/// Keepalive probes find dead idle connections the same way, e.g. the inbound side of a
/// link whose sender went quiet behind a partition.
const KEEPALIVE_IDLE_S: u32 = 1;
const KEEPALIVE_INTERVAL_S: u32 = 1;
const KEEPALIVE_PROBES: u32 = 3;

/// Socket options every peer connection gets, both directions. Best effort: a platform
/// without these options still works, only slower to notice a dead link.
fn tune(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let _ = stream.set_nodelay(true);
    let fd = stream.as_raw_fd();
    let set = |level: libc::c_int, name: libc::c_int, value: u32| {
        let v = value as libc::c_int;
        // SAFETY: fd is a live socket owned by `stream`; the option value is a c_int on
        // the stack whose size is passed alongside.
        unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                &v as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        }
    };
    set(libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, USER_TIMEOUT_MS);
    set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, KEEPALIVE_IDLE_S);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, KEEPALIVE_INTERVAL_S);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, KEEPALIVE_PROBES);
}

#[derive(Default)]
pub struct TransportStats {
    pub dropped_full: AtomicU64,
    pub dropped_disconnected: AtomicU64,
    pub sent: AtomicU64,
}

/// The sending half the core uses: never blocks.
#[derive(Clone)]
pub struct PeerSender {
    tx: mpsc::Sender<Bytes>,
    stats: Arc<TransportStats>,
    up: Arc<Notify>,
    refused: Arc<std::sync::atomic::AtomicBool>,
}

impl PeerSender {
    pub fn send(&self, frame: Bytes) {
        if self.refused.load(Ordering::Relaxed) {
            self.stats.dropped_disconnected.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.tx.try_send(frame).is_err() {
            self.stats.dropped_full.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The peer just connected to us, so it is up: a reconnect waiting out its backoff
    /// tries now. A restarted peer is otherwise reached only when the backoff (grown to a
    /// second while it was down) runs out, and an election in between loses its votes.
    pub fn peer_is_up(&self) {
        self.up.notify_one();
    }

    /// Sends nothing to this peer any more: it lost its state and is not the member it
    /// claims to be (see [`crate::incarnation`]).
    pub fn refuse(&self) {
        self.refused.store(true, Ordering::Relaxed);
    }

    /// Sends again after [`PeerSender::refuse`]: the refused member was removed from the
    /// configuration, and its name may now belong to a fresh node.
    pub fn unrefuse(&self) {
        self.refused.store(false, Ordering::Relaxed);
    }
}

/// Spawns the connection task for one peer and returns its queue.
pub fn spawn_outbound(
    hello: impl Fn() -> PeerHello + Send + 'static,
    peer_name: String,
    addr: String,
    stats: Arc<TransportStats>,
    shutdown: watch::Receiver<bool>,
) -> PeerSender {
    spawn_outbound_with(hello, peer_name, addr, stats, shutdown, (BACKOFF_MIN, BACKOFF_MAX))
}

fn spawn_outbound_with(
    hello: impl Fn() -> PeerHello + Send + 'static,
    peer_name: String,
    addr: String,
    stats: Arc<TransportStats>,
    mut shutdown: watch::Receiver<bool>,
    (backoff_min, backoff_max): (Duration, Duration),
) -> PeerSender {
    let (tx, mut rx) = mpsc::channel::<Bytes>(PEER_QUEUE);
    let up = Arc::new(Notify::new());
    let sender = PeerSender { tx, stats: stats.clone(), up: up.clone(), refused: Default::default() };
    tokio::spawn(async move {
        let mut backoff = backoff_min;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let conn = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr)).await;
            let stream = match conn {
                Ok(Ok(s)) => s,
                other => {
                    let why = match other {
                        Ok(Err(e)) => e.to_string(),
                        _ => "connect timed out".into(),
                    };
                    debug!(peer = %peer_name, %addr, %why, "peer connect failed");
                    // Messages queued while the peer is unreachable are stale by the time it
                    // is back; drop them rather than replay a burst of old heartbeats.
                    while rx.try_recv().is_ok() {
                        stats.dropped_disconnected.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => backoff = (backoff * 2).min(backoff_max),
                        _ = up.notified() => backoff = backoff_min,
                        _ = shutdown.changed() => return,
                    }
                    continue;
                }
            };
            tune(&stream);
            let mut framed = Framed::new(stream, protocol::peer_codec());
            // Built per connection: what we know of the peer can change while we run.
            if !matches!(tokio::time::timeout(WRITE_TIMEOUT, framed.send(protocol::encode(&hello()))).await, Ok(Ok(()))) {
                continue;
            }
            info!(peer = %peer_name, %addr, "connected to peer");
            backoff = backoff_min;
            loop {
                // The peer never writes on this connection, so anything readable means it is
                // gone: a peer that was killed and restarted closed it. Followers send each
                // other nothing between elections, so without this the first message of the
                // next election (a vote request) went into the dead connection and was lost,
                // and every candidate waited out a whole election timeout.
                let first = tokio::select! {
                    m = rx.recv() => m,
                    closed = framed.next() => {
                        debug!(peer = %peer_name, %addr, closed = ?closed.map(|r| r.map(|_| ())), "peer closed the connection; reconnecting");
                        break;
                    }
                    _ = shutdown.changed() => return,
                };
                let Some(first) = first else { return };
                let mut n = 1u64;
                let write = async {
                    framed.feed(first).await?;
                    while n < 256 {
                        match rx.try_recv() {
                            Ok(m) => {
                                framed.feed(m).await?;
                                n += 1;
                            }
                            Err(_) => break,
                        }
                    }
                    SinkExt::<Bytes>::flush(&mut framed).await
                };
                let ok = matches!(tokio::time::timeout(WRITE_TIMEOUT, write).await, Ok(Ok(())));
                if !ok {
                    stats.dropped_disconnected.fetch_add(n, Ordering::Relaxed);
                    warn!(peer = %peer_name, %addr, "peer connection lost; reconnecting");
                    break;
                }
                stats.sent.fetch_add(n, Ordering::Relaxed);
            }
        }
    });
    sender
}

/// Why an inbound peer connection was refused.
#[derive(Debug, thiserror::Error)]
pub enum PeerRefused {
    #[error("undecodable hello: {0}")]
    BadHello(postcard::Error),
    #[error("protocol version {theirs}, this node speaks {ours}")]
    Version { theirs: u32, ours: u32 },
    #[error("peer {peer} runs {theirs}, this node runs {ours}")]
    Algo { peer: String, theirs: String, ours: &'static str },
    #[error("unknown peer `{0}` (no id, or the address book is full)")]
    UnknownPeer(String),
    #[error("peer {peer} says it is node id {theirs}, but it is configured here as {ours}")]
    IdMismatch { peer: String, ours: u64, theirs: u64 },
    #[error("peer {peer} claims node id {id}, which belongs to {by}")]
    IdTaken { peer: String, id: u64, by: String },
    #[error("peer {peer} has incarnation {theirs}, not {known}: it lost its durable state")]
    Replaced { peer: String, known: u64, theirs: u64 },
    #[error("peer {peer} knows this node as incarnation {known}, not {ours}")]
    WeAreReplaced { peer: String, known: u64, ours: u64 },
}

/// Accepts peer connections; each decoded message goes to `deliver(from, frame)`.
/// `resolve` maps the hello's node name to its id (None: unknown peer, refused).
pub async fn accept_loop<F, G>(listener: TcpListener, resolve: G, deliver: F, mut shutdown: watch::Receiver<bool>)
where
    F: Fn(NodeId, &[u8]) -> Result<(), postcard::Error> + Send + Sync + 'static,
    G: Fn(&PeerHello) -> Result<NodeId, PeerRefused> + Send + Sync + 'static,
{
    let deliver = Arc::new(deliver);
    let resolve = Arc::new(resolve);
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_INBOUND));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (stream, remote) = match accepted {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "peer accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            warn!(%remote, "too many inbound peer connections; refusing");
            continue;
        };
        let (deliver, resolve, mut shutdown) = (deliver.clone(), resolve.clone(), shutdown.clone());
        tokio::spawn(async move {
            let _permit = permit;
            tune(&stream);
            let mut framed = Framed::new(stream, protocol::peer_codec());
            let hello = tokio::time::timeout(CONNECT_TIMEOUT, framed.next()).await;
            let Ok(Some(Ok(hello))) = hello else {
                debug!(%remote, "peer connection without hello");
                return;
            };
            let from = match protocol::decode::<PeerHello>(&hello).map_err(PeerRefused::BadHello).and_then(|h| {
                if h.version == PROTOCOL_VERSION {
                    resolve(&h)
                } else {
                    Err(PeerRefused::Version { theirs: h.version, ours: PROTOCOL_VERSION })
                }
            }) {
                Ok(id) => id,
                Err(e) => {
                    warn!(%remote, error = %e, "refusing peer connection");
                    return;
                }
            };
            loop {
                let frame = tokio::select! {
                    f = framed.next() => f,
                    _ = shutdown.changed() => return,
                };
                match frame {
                    Some(Ok(bytes)) => {
                        if let Err(e) = deliver(from, &bytes) {
                            warn!(%remote, error = %e, "bad frame from peer; closing");
                            return;
                        }
                    }
                    Some(Err(e)) => {
                        debug!(%remote, error = %e, "peer read failed");
                        return;
                    }
                    None => return,
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// One "process" of the peer: an accept loop that records what it receives, stopped by
    /// dropping it (its connections close, as when the process is killed).
    struct Peer {
        stop: watch::Sender<bool>,
        hellos: mpsc::UnboundedReceiver<()>,
        frames: Arc<Mutex<Vec<Vec<u8>>>>,
    }

    async fn start_peer(addr: std::net::SocketAddr) -> Peer {
        let listener = TcpListener::bind(addr).await.expect("bind");
        let (stop, stop_rx) = watch::channel(false);
        let (hello_tx, hellos) = mpsc::unbounded_channel();
        let frames = Arc::new(Mutex::new(Vec::new()));
        let sink = frames.clone();
        tokio::spawn(accept_loop(
            listener,
            move |_h: &PeerHello| {
                let _ = hello_tx.send(());
                Ok(1)
            },
            move |_from, bytes| {
                sink.lock().unwrap().push(bytes.to_vec());
                Ok(())
            },
            stop_rx,
        ));
        Peer { stop, hellos, frames }
    }

    /// A free loopback address, a live shutdown channel, fresh stats and a hello.
    fn setup() -> (std::net::SocketAddr, watch::Sender<bool>, watch::Receiver<bool>, Arc<TransportStats>, PeerHello) {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let (keep, shutdown) = watch::channel(false);
        let hello = PeerHello {
            version: PROTOCOL_VERSION,
            from: "a".into(),
            algo: "raft".into(),
            incarnation: 1,
            knows_you_as: 0,
            node_id: 1,
            client_addr: "127.0.0.1:1".into(),
            peer_addr: "127.0.0.1:2".into(),
        };
        (addr, keep, shutdown, Arc::new(TransportStats::default()), hello)
    }

    /// Waits up to 5 s until `peer` has received a frame.
    async fn delivered(peer: &Peer) -> Result<(), tokio::time::error::Elapsed> {
        tokio::time::timeout(Duration::from_secs(5), async {
            while peer.frames.lock().unwrap().is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
    }

    /// Regression: a peer that was killed and restarted left the sender holding the dead
    /// connection, because followers exchange nothing between elections and the sender only
    /// noticed on its next write, which was lost. The next election's vote requests vanished
    /// that way, and elections took a whole extra timeout.
    #[tokio::test]
    async fn a_restarted_peer_gets_the_first_message_sent_after_it_is_back() {
        let (addr, _keep, shutdown, stats, hello) = setup();
        let mut first = start_peer(addr).await;
        let sender = spawn_outbound(move || hello.clone(), "b".into(), addr.to_string(), stats.clone(), shutdown);
        let wait = Duration::from_secs(5);
        tokio::time::timeout(wait, first.hellos.recv()).await.expect("connected").unwrap();
        sender.send(Bytes::from_static(b"before"));
        delivered(&first).await.expect("delivered before the restart");

        // "Kill" the peer: its accept loop and every connection it served go away.
        first.stop.send(true).unwrap();
        drop(first);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut second = start_peer(addr).await;
        tokio::time::timeout(wait, second.hellos.recv())
            .await
            .expect("the sender reconnects to the restarted peer on its own")
            .unwrap();
        sender.send(Bytes::from_static(b"after"));
        delivered(&second).await.expect("the first message after the restart is delivered");
        assert_eq!(second.frames.lock().unwrap().as_slice(), &[b"after".to_vec()]);
        assert_eq!(stats.dropped_disconnected.load(Ordering::Relaxed), 0);
    }

    /// A peer that connects to us is up, so a reconnect waiting out its backoff goes now
    /// (here the backoff is a minute, so only the wake-up can reconnect within the test).
    #[tokio::test]
    async fn a_peer_that_connects_back_ends_the_backoff_towards_it() {
        let (addr, _keep, shutdown, stats, hello) = setup();
        let minute = Duration::from_secs(60);
        let mut first = start_peer(addr).await;
        let sender = spawn_outbound_with(move || hello.clone(), "b".into(), addr.to_string(), stats, shutdown, (minute, minute));
        let wait = Duration::from_secs(5);
        tokio::time::timeout(wait, first.hellos.recv()).await.expect("connected").unwrap();
        first.stop.send(true).unwrap();
        drop(first);
        // The sender sees the close, fails to reconnect at once and sleeps its backoff.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut second = start_peer(addr).await;
        sender.peer_is_up();
        tokio::time::timeout(wait, second.hellos.recv())
            .await
            .expect("the wake-up ends the minute-long backoff")
            .unwrap();
        sender.send(Bytes::from_static(b"after"));
        delivered(&second).await.expect("delivered after the wake-up");
    }
}
