//! Membership changes on running nodes, for both cores: real listeners, real connections,
//! the client protocol's `Member` request. The simulation tests (membership_raft.rs,
//! membership_paxos.rs) check the rules at every crash point; these check the plumbing
//! around them: a node started to join is not in the members' configuration files, so it
//! must introduce itself; the leader catches it up by snapshot; after a restart the log's
//! configuration wins over the file's `voters`.

use std::path::Path;
use std::time::Duration;

use faultline_node::client::{Client, ClientError};
use faultline_node::config::{Algo, Config};
use faultline_node::kv::Value;
use faultline_node::local::free_ports;
use faultline_node::protocol::{MemberChange, NodeStatus, WireError};
use tokio::sync::watch;
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(20);

struct Running {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

/// (name, client address, peer address) of node `i` (1-based) on `ports`.
fn addrs(ports: &[u16], i: usize) -> (String, String, String) {
    (format!("n{i}"), format!("127.0.0.1:{}", ports[2 * (i - 1)]), format!("127.0.0.1:{}", ports[2 * (i - 1) + 1]))
}

/// Node `i`'s configuration: it knows nodes `known` (by number) and the initial voters 1..=3.
fn config(algo: Algo, dir: &Path, ports: &[u16], i: usize, known: &[usize]) -> Config {
    let mut peers = String::new();
    for &k in known {
        let (name, client, peer) = addrs(ports, k);
        peers.push_str(&format!("  - {{id: {name}, node_id: {k}, client_addr: \"{client}\", peer_addr: \"{peer}\"}}\n"));
    }
    let (name, client, peer) = addrs(ports, i);
    let data = dir.join(&name);
    let yaml = format!(
        "id: {name}\nalgo: {}\ndata_dir: \"{}\"\nlisten_client: \"{client}\"\nlisten_peer: \"{peer}\"\n\
         fsync: false\nsnapshot_entries: 16\nvoters: [n1, n2, n3]\npeers:\n{peers}",
        algo.as_str(),
        data.display()
    );
    let cfg = Config::parse(&yaml, Path::new("test")).unwrap();
    cfg.validate("test").unwrap();
    cfg
}

async fn start(cfg: Config) -> Running {
    let (stop, rx) = watch::channel(false);
    let (tx, started) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        faultline_node::node::run_algo(cfg, rx, move |_| {
            let _ = tx.send(());
        })
        .await
        .expect("node runs");
    });
    tokio::time::timeout(Duration::from_secs(5), started).await.expect("node starts").unwrap();
    Running { stop, task }
}

async fn status(addr: &str) -> Option<NodeStatus> {
    let mut c = Client::connect(addr, Duration::from_secs(1)).await.ok()?;
    c.status().await.ok()
}

/// Retries `change` at `addr` (following the leader) until it is applied, while the answer
/// is a refusal to retry (`Busy`, no leader yet, the node not connected yet).
async fn change(addr: &str, change: MemberChange) {
    let deadline = Instant::now() + WAIT;
    let mut c = Client::connect(addr, Duration::from_secs(2)).await.unwrap();
    loop {
        match c.member(change.clone()).await {
            Ok(()) => return,
            Err(e) if Instant::now() < deadline => {
                let retry = matches!(
                    &e,
                    ClientError::Server(WireError::Busy | WireError::NotLeader { .. } | WireError::BadRequest(_))
                        | ClientError::Connect { .. }
                        | ClientError::Io { .. }
                        | ClientError::Timeout { .. }
                );
                assert!(retry, "{change:?}: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{change:?} not applied within {WAIT:?}: {e}"),
        }
    }
}

async fn write_all(addr: &str, keys: std::ops::Range<usize>) {
    let mut c = Client::connect(addr, Duration::from_secs(2)).await.unwrap();
    for k in keys {
        let deadline = Instant::now() + WAIT;
        while let Err(e) = c.write(&format!("k{k}"), Value::Int(k as i64)).await {
            assert!(Instant::now() < deadline, "write k{k}: {e}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn read_all(addr: &str, keys: std::ops::Range<usize>) {
    let mut c = Client::connect(addr, Duration::from_secs(2)).await.unwrap();
    for k in keys {
        let deadline = Instant::now() + WAIT;
        loop {
            match c.read(&format!("k{k}")).await {
                Ok(v) => {
                    assert_eq!(v, Some(Value::Int(k as i64)), "k{k}");
                    break;
                }
                Err(e) => assert!(Instant::now() < deadline, "read k{k}: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Waits until `cond` holds for the status of the node at `addr`.
async fn until(addr: &str, what: &str, cond: impl Fn(&NodeStatus) -> bool) -> NodeStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(s) = status(addr).await
            && cond(&s)
        {
            return s;
        }
        assert!(Instant::now() < deadline, "{addr}: {what} not within {WAIT:?} (last: {:?})", status(addr).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Replace n1 by n4 the safe way round (add, catch up, promote, then remove), under the
/// eyes of a client: every write made before, during and after is read back through the
/// new member, and the configuration survives the new member's restart.
async fn replace_a_member(algo: Algo) {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(8).unwrap();
    let voters = [1, 2, 3];
    let mut nodes = Vec::new();
    for i in voters {
        nodes.push(Some(start(config(algo, dir.path(), &ports, i, &voters)).await));
    }
    let a = |i| addrs(&ports, i).1;
    until(&a(1), "a leader", |s| s.leader.is_some()).await;
    // More entries than snapshot_entries: the new node can only catch up from a snapshot.
    write_all(&a(1), 0..60).await;

    // n4's file lists every node; the members' files do not list n4.
    let n4 = config(algo, dir.path(), &ports, 4, &[1, 2, 3, 4]);
    let mut n4_run = start(n4.clone()).await;
    let st = status(&a(4)).await.unwrap();
    assert!(st.voters.iter().all(|v| v != "n4"), "a joiner does not vote: {st:?}");
    change(&a(1), MemberChange::AddLearner { node: "n4".into() }).await;
    let leader = until(&a(2), "n4 as a learner", |s| s.learners == names(&["n4"])).await;
    assert_eq!(leader.voters, names(&["n1", "n2", "n3"]));
    let caught = until(&a(4), "n4 caught up", |s| s.applied_index >= 60 && s.snapshot_index > 0).await;
    assert!(caught.snapshot_index > 0, "caught up from a snapshot: {caught:?}");
    change(&a(2), MemberChange::Promote { node: "n4".into() }).await;
    change(&a(3), MemberChange::Remove { node: "n1".into() }).await;
    let after = until(&a(2), "n1 removed", |s| s.voters == names(&["n2", "n3", "n4"])).await;
    assert!(after.learners.is_empty(), "{after:?}");
    nodes[0].take().unwrap().stop().await;

    // Quorum is now two of n2, n3, n4: writes commit with n1 gone, and n4 serves them all.
    write_all(&a(2), 60..80).await;
    read_all(&a(4), 0..80).await;

    // Restarted, n4 is a voter by its log, though its file's `voters` says n1, n2, n3.
    n4_run.stop().await;
    n4_run = start(n4).await;
    let back = until(&a(4), "n4 back with the log's configuration", |s| s.voters == names(&["n2", "n3", "n4"])).await;
    assert!(back.learners.is_empty(), "{back:?}");
    // With n3 stopped, a quorum needs n4 (n2 alone is not one): writes prove it votes.
    nodes[2].take().unwrap().stop().await;
    write_all(&a(2), 80..90).await;
    read_all(&a(4), 0..90).await;

    // n1 comes back wiped, under its old name and id and with its old file (which names it
    // a voter), and the marker its removal left (the ordinary start command, as a kill's
    // undo runs it): it starts as a joiner and asks to be taken in. The members forgot its old incarnation when it was
    // removed, so it is learned anew, caught up and promoted; with n3 still down a quorum of
    // four needs it.
    std::fs::remove_dir_all(dir.path().join("n1")).unwrap();
    let n1 = config(algo, dir.path(), &ports, 1, &[1, 2, 3, 4]);
    std::fs::create_dir_all(dir.path().join("n1/wal")).unwrap();
    std::fs::write(dir.path().join("n1/wal").join(faultline_node::server::JOIN_MARKER), b"").unwrap();
    let n1_run = start(n1).await;
    until(&a(2), "n1 a voter again", |s| s.voters == names(&["n1", "n2", "n3", "n4"])).await;
    let caught = until(&a(1), "the wiped n1 caught up", |s| s.applied_index >= 90).await;
    assert!(caught.snapshot_index > 0, "caught up from a snapshot: {caught:?}");
    write_all(&a(4), 90..100).await;
    read_all(&a(1), 0..100).await;

    n1_run.stop().await;
    n4_run.stop().await;
    for n in nodes.into_iter().flatten() {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_replaces_a_member_on_running_nodes() {
    replace_a_member(Algo::Raft).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paxos_replaces_a_member_on_running_nodes() {
    replace_a_member(Algo::Paxos).await;
}

/// A node that claims a configured node's id under another name is refused, so a mistyped
/// joiner cannot take over a member's votes; `Member` for a node never seen is refused too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_node_cannot_be_added_and_a_stolen_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(8).unwrap();
    let voters = [1, 2, 3];
    let mut nodes = Vec::new();
    for i in voters {
        nodes.push(start(config(Algo::Raft, dir.path(), &ports, i, &voters)).await);
    }
    let a = |i| addrs(&ports, i).1;
    until(&a(1), "a leader", |s| s.leader.is_some()).await;
    let mut c = Client::connect(&a(1), Duration::from_secs(2)).await.unwrap();
    match c.member(MemberChange::AddLearner { node: "n9".into() }).await {
        Err(ClientError::Server(WireError::BadRequest(why))) => assert!(why.contains("unknown node `n9`"), "{why}"),
        other => panic!("adding a node never seen: {other:?}"),
    }
    // "n4" with node id 2 (n2's): the members refuse its connections, so it stays unknown.
    let mut thief = config(Algo::Raft, dir.path(), &ports, 4, &[1, 2, 3, 4]);
    for p in thief.peers.iter_mut().filter(|p| p.id == "n4") {
        p.node_id = Some(2);
    }
    for p in thief.peers.iter_mut().filter(|p| p.id == "n2") {
        p.node_id = Some(9);
    }
    let thief = start(thief).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    match c.member(MemberChange::AddLearner { node: "n4".into() }).await {
        Err(ClientError::Server(WireError::BadRequest(why))) => assert!(why.contains("unknown node `n4`"), "{why}"),
        other => panic!("a node that claimed a member's id: {other:?}"),
    }
    thief.stop().await;
    for n in nodes {
        n.stop().await;
    }
}
