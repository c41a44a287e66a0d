//! The bundled node as real processes: three `faultline node` processes on loopback, writes
//! through any node, kill -9 of the leader (by the pid this test spawned), re-election, and
//! no acknowledged write lost — not even after every node is killed and restarted from disk.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use faultline_node::client::{Client, ClientError};
use faultline_node::config::Algo;
use faultline_node::kv::Value;
use faultline_node::local::{LocalCluster, free_ports};
use faultline_node::protocol::WireError;

const FAST: &[&str] = &["election_timeout_ms_min=150", "election_timeout_ms_max=300", "heartbeat_ms=30", "snapshot_entries=40"];

fn cluster_dir(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("faultline-node-test-{tag}-{}", std::process::id()))
}

fn start(tag: &str, algo: Algo) -> LocalCluster {
    let dir = cluster_dir(tag);
    let _ = std::fs::remove_dir_all(&dir);
    let ports = free_ports(6).unwrap();
    let extra: Vec<String> = FAST.iter().map(|s| s.to_string()).collect();
    let mut c = LocalCluster::start(std::path::Path::new(env!("CARGO_BIN_EXE_faultline")), algo, 3, &ports, &dir, &extra)
        .expect("start cluster");
    c.remove_dir_on_drop();
    c
}

async fn connect(addr: &str) -> Client {
    Client::connect(addr, Duration::from_secs(3)).await.expect("connect")
}

/// Writes `key = value` through `addr`, retrying definite failures (nothing happened) a
/// few times while an election settles. Returns whether the write was acknowledged.
async fn write_acked(addr: &str, key: &str, value: i64) -> bool {
    for _ in 0..50 {
        let Ok(mut c) = Client::connect(addr, Duration::from_secs(2)).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        match c.write(key, Value::Int(value)).await {
            Ok(()) => return true,
            Err(e) if e.is_definite() => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(_) => return false,
        }
    }
    false
}

async fn read_retry(addr: &str, key: &str) -> Option<Value> {
    for _ in 0..50 {
        if let Ok(mut c) = Client::connect(addr, Duration::from_secs(2)).await
            && let Ok(v) = c.read(key).await
        {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("could not read {key} from {addr}");
}

async fn scenario(tag: &str, algo: Algo) {
    let mut cluster = start(tag, algo);
    let (leader, st) = cluster.wait_leader(Duration::from_secs(15)).await.unwrap();
    assert_eq!(st.algo, algo.as_str());
    let follower = (leader + 1) % 3;

    // Writes, cas and reads through a follower are redirected to the leader.
    let mut c = connect(&cluster.client_addrs[follower]).await;
    c.write("x", Value::Int(1)).await.unwrap();
    c.cas("x", Value::Int(1), Value::Int(2)).await.unwrap();
    let err = c.cas("x", Value::Int(1), Value::Int(3)).await.unwrap_err();
    assert!(matches!(err, ClientError::Server(WireError::CasMismatch { current: Some(Value::Int(2)) })), "{err:?}");
    assert!(err.is_definite() && err.tag() == "cas-mismatch");
    assert_eq!(c.read("x").await.unwrap(), Some(Value::Int(2)));
    c.append("l", Value::Int(7)).await.unwrap();
    c.append("l", Value::Str("s".into())).await.unwrap();
    assert_eq!(c.read("l").await.unwrap(), Some(Value::List(vec![Value::Int(7), Value::Str("s".into())])));
    assert_eq!(c.read("never").await.unwrap(), None);

    // A follower pinned to itself refuses definitively and names the leader.
    let mut pinned = connect(&cluster.client_addrs[follower]).await;
    pinned.set_follow_leader(false);
    let e = pinned.write("y", Value::Int(1)).await.unwrap_err();
    assert!(e.is_definite(), "{e:?}");
    assert!(matches!(&e, ClientError::Server(WireError::NotLeader { leader: Some(l), .. }) if *l == st.id), "{e:?}");

    // Enough acknowledged writes to cross the snapshot threshold several times.
    let mut acked: BTreeMap<String, i64> = BTreeMap::new();
    for i in 0..150 {
        let key = format!("k{}", i % 30);
        if write_acked(&cluster.client_addrs[follower], &key, i).await {
            acked.insert(key, i);
        }
    }
    assert_eq!(acked.len(), 30, "every write should be acknowledged in a healthy cluster");

    // kill -9 the leader while writers are mid-flight: a new one takes over and every
    // acknowledged write — before or during the kill — is still there.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let addrs = cluster.client_addrs.clone();
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut i = 0i64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && i < 2000 {
                i += 1;
                let key = format!("w{w}-{i}");
                let addr = &addrs[(i as usize) % addrs.len()];
                if let Ok(mut c) = Client::connect(addr, Duration::from_secs(2)).await
                    && c.write(&key, Value::Int(i)).await.is_ok()
                {
                    acked.push((key, i));
                }
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let old_pid = cluster.pid(leader).unwrap();
    cluster.kill9(leader);
    let (new_leader, st2) = cluster.wait_leader(Duration::from_secs(15)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut during = 0;
    for w in writers {
        for (k, v) in w.await.unwrap() {
            acked.insert(k, v);
            during += 1;
        }
    }
    assert!(during > 20, "writers made progress around the kill: {during}");
    assert_ne!(new_leader, leader, "the killed node (pid {old_pid}) cannot lead");
    assert!(st2.term > st.term, "a new election happened: {} > {}", st2.term, st.term);
    for (k, v) in &acked {
        assert_eq!(read_retry(&cluster.client_addrs[new_leader], k).await, Some(Value::Int(*v)), "key {k}");
    }
    // The survivors keep accepting writes; then the old leader comes back from its disk.
    for i in 150..200 {
        let key = format!("k{}", i % 30);
        if write_acked(&cluster.client_addrs[new_leader], &key, i).await {
            acked.insert(key, i);
        }
    }
    cluster.spawn(leader, &FAST.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    cluster.wait_leader(Duration::from_secs(15)).await.unwrap();

    // Now kill -9 every node and restart all of them: nothing acknowledged may be lost.
    for i in 0..3 {
        cluster.kill9(i);
    }
    for i in 0..3 {
        cluster.spawn(i, &FAST.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    }
    let (l3, _) = cluster.wait_leader(Duration::from_secs(20)).await.unwrap();
    for (k, v) in &acked {
        assert_eq!(read_retry(&cluster.client_addrs[l3], k).await, Some(Value::Int(*v)), "key {k} after full restart");
    }
    // Every node caught up: the restarted nodes replayed WAL and snapshot.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut applied = Vec::new();
    for a in &cluster.client_addrs {
        applied.push(connect(a).await.status().await.unwrap().applied_index);
    }
    assert!(applied.iter().all(|&x| x > 0 && x + 5 >= applied[l3]), "{applied:?}");

    // SIGTERM is a clean shutdown that removes the pidfile.
    let pidfile = cluster.dir.join("n1").join("node.pid");
    assert!(pidfile.exists());
    assert!(cluster.terminate(0, Duration::from_secs(5)), "clean exit on SIGTERM");
    assert!(!pidfile.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_raft_processes_survive_kill9_of_the_leader() {
    scenario("raft", Algo::Raft).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_paxos_processes_survive_kill9_of_the_leader() {
    scenario("paxos", Algo::Paxos).await;
}

#[test]
fn node_bad_config_is_a_usage_error_naming_the_file() {
    let dir = cluster_dir("badcfg");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("node.yaml");
    std::fs::write(&path, "id: n1\nelection_timeout_ms_minimum: 3\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["node", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("node.yaml") && err.contains("election_timeout_ms_minimum"), "{err}");
}

/// faultline's lazyfs over `dir` (what the `lose-unfsynced` fixture mounts on a host),
/// unmounted and ended on drop.
struct Lazyfs {
    dir: PathBuf,
    child: std::process::Child,
}

impl Lazyfs {
    fn mount(dir: PathBuf) -> Lazyfs {
        std::fs::create_dir_all(&dir).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
            .arg("lazyfs")
            .arg("--dir")
            .arg(&dir)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let fs = Lazyfs { dir, child };
        let control = fs.dir.join(".faultline-lazyfs");
        for _ in 0..500 {
            if control.exists() {
                return fs;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("lazyfs did not mount {} within 5 s", fs.dir.display());
    }

    /// Drops what was not synced; the report as JSON.
    fn lose(&self) -> serde_json::Value {
        let control = self.dir.join(".faultline-lazyfs");
        std::fs::write(&control, "lose").unwrap();
        serde_json::from_slice(&std::fs::read(&control).unwrap()).unwrap()
    }
}

impl Drop for Lazyfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.dir).status();
        for _ in 0..200 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Every node's state on lazyfs: kill all three and drop what they had not synced, then
/// start them. A correct node fsynced every write it acknowledged, so the last write
/// survives; with `unsafe_no_fsync` it does not (the planted bug is observable, which is
/// what the checkers must then catch). A kill -9 alone would not show it.
async fn lose_unfsynced_on_every_node(tag: &str, planted: bool) -> (Option<Value>, u64) {
    let dir = cluster_dir(tag);
    let _ = std::fs::remove_dir_all(&dir);
    let mounts: Vec<Lazyfs> = (1..=3).map(|i| Lazyfs::mount(dir.join(format!("n{i}")).join("wal"))).collect();
    let ports = free_ports(6).unwrap();
    let mut extra: Vec<String> = FAST.iter().map(|s| s.to_string()).collect();
    if planted {
        extra.push("unsafe_no_fsync=true".into());
    }
    extra.push("snapshot_entries=100000".into());
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_faultline"));
    let mut cluster = LocalCluster::start(exe, Algo::Raft, 3, &ports, &dir, &extra).unwrap();
    let (leader, _) = cluster.wait_leader(Duration::from_secs(15)).await.unwrap();
    let mut c = connect(&cluster.client_addrs[leader]).await;
    for i in 0..20 {
        c.write("z", Value::Int(i)).await.unwrap();
    }
    for i in 0..3 {
        cluster.kill9(i);
    }
    let lost: u64 = mounts.iter().map(|m| m.lose()["lost_bytes"].as_u64().unwrap()).sum();
    for i in 0..3 {
        cluster.spawn(i, &extra).unwrap();
    }
    let (l2, _) = cluster.wait_leader(Duration::from_secs(20)).await.unwrap();
    let v = read_retry(&cluster.client_addrs[l2], "z").await;
    drop(cluster);
    drop(mounts);
    let _ = std::fs::remove_dir_all(&dir);
    (v, lost)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_unsafe_no_fsync_loses_acknowledged_writes_when_unsynced_data_is_lost() {
    let (v, lost) = lose_unfsynced_on_every_node("nofsync", true).await;
    assert!(lost > 0, "nothing was un-synced: the fault did nothing");
    assert_ne!(v, Some(Value::Int(19)), "the last acknowledged write survived; the planted bug is not observable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_keeps_every_acknowledged_write_when_unsynced_data_is_lost() {
    let (v, _) = lose_unfsynced_on_every_node("fsynced", false).await;
    assert_eq!(v, Some(Value::Int(19)), "an acknowledged write was lost although the node fsyncs");
}

/// A node whose data directory is wiped comes back with a new incarnation; its peers refuse
/// it under its old name (it forgot its votes and the entries it acknowledged), say so in
/// their status, and carry on without it; the wiped node, told by the first peer that knew it,
/// stops. With the planted bug `unsafe_rejoin_empty` they take it back as if nothing happened.
async fn wiped_follower(tag: &str, algo: Algo, unsafe_rejoin: bool) {
    let dir = cluster_dir(tag);
    let _ = std::fs::remove_dir_all(&dir);
    let ports = free_ports(6).unwrap();
    let mut extra: Vec<String> = FAST.iter().map(|s| s.to_string()).collect();
    if unsafe_rejoin {
        extra.push("unsafe_rejoin_empty=true".into());
    }
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_faultline"));
    let mut cluster = LocalCluster::start(exe, algo, 3, &ports, &dir, &extra).unwrap();
    cluster.remove_dir_on_drop();
    let (leader, _) = cluster.wait_leader(Duration::from_secs(15)).await.unwrap();
    for i in 0..20 {
        assert!(write_acked(&cluster.client_addrs[leader], "k", i).await);
    }
    let f = (leader + 1) % 3;
    let name = format!("n{}", f + 1);
    cluster.kill9(f);
    std::fs::remove_dir_all(dir.join(&name).join("wal")).unwrap();
    cluster.spawn(f, &extra).unwrap();
    if !unsafe_rejoin {
        // The first peer that connects knows the old incarnation: the wiped node stops.
        assert_stops_as_replaced(&mut cluster, f, &dir, &name).await;
    } else {
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    // The rest of the cluster keeps writing.
    for i in 20..30 {
        assert!(write_acked(&cluster.client_addrs[leader], "k", i).await, "{algo:?}: the cluster stopped");
    }
    // A peer that saw the new incarnation refused it; the wiped node may stop (told by one
    // peer) before its hello reaches the other, so one refusal is all that is certain.
    let mut refusing = 0;
    for other in (0..3).filter(|&i| i != f) {
        let st = connect(&cluster.client_addrs[other]).await.status().await.unwrap();
        if unsafe_rejoin {
            assert!(st.replaced_peers.is_empty(), "{algo:?}: {:?}", st.replaced_peers);
        } else if !st.replaced_peers.is_empty() {
            assert_eq!(st.replaced_peers, vec![name.clone()], "{algo:?}: n{}", other + 1);
            refusing += 1;
        }
    }
    assert!(unsafe_rejoin || refusing >= 1, "{algo:?}: no peer refused the wiped node");
    if unsafe_rejoin {
        // Taken back as the old member: it hears the leader (though Raft's leader, which
        // remembers the old member's match index, never repairs the empty log).
        // Polled: on a loaded machine the first heartbeat can take a while to arrive.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let wiped = connect(&cluster.client_addrs[f]).await.status().await.unwrap();
            if wiped.leader == Some(format!("n{}", leader + 1)) {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "{algo:?}: {wiped:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // A majority wiped while one node that knew them is up: each stops on its first contact
    // instead of forming an empty majority with the other.
    let g = (leader + 2) % 3;
    let name_g = format!("n{}", g + 1);
    cluster.kill9(g);
    std::fs::remove_dir_all(dir.join(&name_g).join("wal")).unwrap();
    cluster.spawn(f, &extra).unwrap();
    cluster.spawn(g, &extra).unwrap();
    assert_stops_as_replaced(&mut cluster, f, &dir, &name).await;
    assert_stops_as_replaced(&mut cluster, g, &dir, &name_g).await;
}

async fn assert_stops_as_replaced(cluster: &mut LocalCluster, i: usize, dir: &std::path::Path, name: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(st) = cluster.exited(i) {
            break st;
        }
        assert!(std::time::Instant::now() < deadline, "{name}: the wiped node kept running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!status.success(), "{name}: {status:?}");
    let err = std::fs::read_to_string(dir.join(format!("{name}.stderr"))).unwrap();
    assert!(err.contains("lost its durable state and must be replaced"), "{name}: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_a_wiped_node_is_refused_under_its_old_name() {
    wiped_follower("wipe-raft", Algo::Raft, false).await;
    wiped_follower("wipe-paxos", Algo::Paxos, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_unsafe_rejoin_empty_takes_a_wiped_node_back() {
    wiped_follower("wipe-unsafe", Algo::Raft, true).await;
}
