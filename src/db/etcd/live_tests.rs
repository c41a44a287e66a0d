//! A real three-member etcd on loopback, started from the host's `etcd` with the same
//! start command faultline runs on a host, driven through [`EtcdKv`], and killed by the
//! pids in its pidfiles. Skipped (with a note) where etcd is not installed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;

use super::*;

const OP_TIMEOUT: Duration = Duration::from_millis(1500);

fn etcd_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The members this test started, killed by pid however the test ends.
struct Cluster {
    root: PathBuf,
    layouts: Vec<Layout>,
    pids: Vec<i32>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for &pid in &self.pids {
            // SAFETY: plain syscalls on pids this test started and recorded itself.
            unsafe {
                libc::kill(pid, libc::SIGCONT);
                libc::kill(pid, libc::SIGKILL);
            }
        }
        for &pid in &self.pids {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                // Reap it if it is our child (nohup'd through sh, it usually is not).
                unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn read_pid(layout: &Layout) -> Option<i32> {
    let s = std::fs::read_to_string(layout.pidfile()).ok()?;
    let pid: i32 = s.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    // The same check the pidfile users make: the process carries this layout's directory.
    cmdline.contains(&layout.data_dir).then_some(pid)
}

fn start(bin: &Path) -> Cluster {
    let root = std::env::temp_dir().join(format!("faultline-etcd-test-{}-{}", std::process::id(), cluster_token()));
    let members: Vec<Member> = (1..=3)
        .map(|i| Member {
            name: format!("n{i}"),
            host: "127.0.0.1".into(),
            client_port: free_port(),
            peer_port: free_port(),
        })
        .collect();
    let opts = EtcdOptions::from_db_opts(&[
        ("heartbeat_ms".into(), "50".into()),
        ("election_timeout_ms".into(), "500".into()),
    ])
    .unwrap();
    let token = cluster_token();
    let mut cluster = Cluster { root: root.clone(), layouts: Vec::new(), pids: Vec::new() };
    for m in &members {
        let l = Layout {
            bin: bin.display().to_string(),
            data_dir: root.join(&m.name).display().to_string(),
            client_port: m.client_port,
            peer_port: m.peer_port,
        };
        let cmd = start_command(&l, &opts, &members, &m.name, &token).unwrap();
        let st = std::process::Command::new("sh").arg("-c").arg(&cmd).status().unwrap();
        // The pidfile is written before the shell returns, so the pid is ours to kill from
        // here on; it becomes etcd (the command line with the data dir) once nohup execs.
        let raw: Option<i32> = std::fs::read_to_string(l.pidfile()).ok().and_then(|s| s.trim().parse().ok());
        cluster.pids.extend(raw);
        assert!(st.success(), "{cmd}");
        let deadline = Instant::now() + Duration::from_secs(5);
        while read_pid(&l) != raw || raw.is_none() {
            assert!(Instant::now() < deadline, "{}: pidfile {} ({raw:?}) never named etcd after {cmd}", m.name, l.pidfile());
            std::thread::sleep(Duration::from_millis(10));
        }
        cluster.layouts.push(l);
    }
    cluster
}

fn db(cluster: &Cluster, serializable_reads: bool) -> Etcd {
    let members = cluster
        .layouts
        .iter()
        .enumerate()
        .map(|(i, l)| Member {
            name: format!("n{}", i + 1),
            host: "127.0.0.1".into(),
            client_port: l.client_port,
            peer_port: l.peer_port,
        })
        .collect();
    let opts = EtcdOptions { serializable_reads, ..Default::default() };
    Etcd::new(cluster.layouts[0].clone(), opts, members, "t".into(), OP_TIMEOUT)
}

/// Every member answers status and names the same leader, which says it leads.
async fn wait_for_leader(db: &Etcd, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let mut all = Vec::new();
        for n in db.nodes() {
            all.push((n.clone(), db.member_status(&n).await));
        }
        let leaders: Vec<Option<String>> = all
            .iter()
            .map(|(_, r)| r.as_ref().ok().and_then(|v| v["leader"].as_str().map(str::to_string)))
            .collect();
        if let Some(Some(l)) = leaders.first()
            && leaders.iter().all(|x| x.as_deref() == Some(l.as_str()))
        {
            let (_, s) = all.iter().find(|(n, _)| n == l).expect("leader is a member");
            let s = s.as_ref().unwrap();
            assert_eq!(s["role"], "leader", "{s}");
            assert!(s["term"].as_u64().unwrap() >= 1, "{s}");
            assert!(s["commit_index"].as_u64().unwrap() >= 1, "{s}");
            for (n, r) in &all {
                if n != l {
                    assert_eq!(r.as_ref().unwrap()["role"], "follower", "{n}: {r:?}");
                }
            }
            return l.clone();
        }
        assert!(Instant::now() < deadline, "no agreed leader: {all:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_etcd_cluster_serves_the_workload_operations() {
    let Some(bin) = etcd_binary() else {
        eprintln!("note: no etcd binary on PATH or in /usr/bin; skipping the live etcd test");
        return;
    };
    let cluster = start(&bin);
    tokio::time::timeout(Duration::from_secs(90), async {
        let db = db(&cluster, false);
        let leader = wait_for_leader(&db, Duration::from_secs(30)).await;
        let mut kv = db.kv("n1");

        assert_eq!(kv.read("x").await.unwrap(), Value::Null);
        kv.write("x", json!(1)).await.unwrap();
        assert_eq!(kv.read("x").await.unwrap(), json!(1));
        kv.cas("x", json!(1), json!(2)).await.unwrap();
        assert_eq!(kv.read("x").await.unwrap(), json!(2));
        assert_eq!(kv.cas("x", json!(1), json!(3)).await, Err(KvError::Definite("cas-mismatch".into())));
        assert_eq!(kv.read("x").await.unwrap(), json!(2));
        assert_eq!(kv.cas("absent", json!(1), json!(3)).await, Err(KvError::Definite("cas-mismatch".into())));
        assert_eq!(kv.read("absent").await.unwrap(), Value::Null);

        for e in [1, 2, 3] {
            kv.append("list", json!(e)).await.unwrap();
        }
        assert_eq!(kv.read("list").await.unwrap(), json!([1, 2, 3]));
        let e = kv.append("x", json!(9)).await.unwrap_err();
        assert!(matches!(&e, KvError::Definite(m) if m.starts_with("rejected:")), "{e:?}");

        // Concurrent appends through different members all land, each exactly once.
        let mut tasks = Vec::new();
        for (i, node) in ["n1", "n2", "n3", "n1", "n2", "n3"].into_iter().enumerate() {
            let mut c = db.kv(node);
            tasks.push(tokio::spawn(async move { c.append("shared", json!(i)).await }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let mut got: Vec<u64> = serde_json::from_value(kv.read("shared").await.unwrap()).unwrap();
        got.sort();
        assert_eq!(got, vec![0, 1, 2, 3, 4, 5]);

        // Serializable reads from a follower: the member's local state catches up.
        let follower = db.nodes().into_iter().find(|n| *n != leader).unwrap();
        let sdb = self::db(&cluster, true);
        let mut local = sdb.kv(&follower);
        let deadline = Instant::now() + Duration::from_secs(5);
        while local.read("x").await.unwrap() != json!(2) {
            assert!(Instant::now() < deadline, "serializable read on {follower} never saw x=2");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // A paused member: a write sent to it may yet apply (indefinite); a read had no effect.
        let fi = db.nodes().iter().position(|n| *n == follower).unwrap();
        let mut paused = db.kv(&follower);
        paused.read("x").await.unwrap();
        unsafe { libc::kill(cluster.pids[fi], libc::SIGSTOP) };
        let t0 = Instant::now();
        let w = paused.write("x", json!(7)).await;
        assert!(matches!(&w, Err(KvError::Indefinite(_))), "{w:?}");
        assert!(t0.elapsed() < OP_TIMEOUT * 3, "write took {:?}", t0.elapsed());
        let r = paused.read("x").await;
        assert!(matches!(&r, Err(KvError::Definite(_))), "{r:?}");
        unsafe { libc::kill(cluster.pids[fi], libc::SIGCONT) };

        // A killed member: nothing can be sent, so a write fails definitely and fast.
        let victim = db.nodes().into_iter().position(|n| *n != leader && *n != follower).unwrap();
        let mut dead = db.kv(&format!("n{}", victim + 1));
        dead.read("x").await.unwrap();
        unsafe { libc::kill(cluster.pids[victim], libc::SIGKILL) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Path::new(&format!("/proc/{}/status", cluster.pids[victim])).exists()
            && std::fs::read_to_string(format!("/proc/{}/status", cluster.pids[victim]))
                .map(|s| !s.contains("State:\tZ"))
                .unwrap_or(false)
        {
            assert!(Instant::now() < deadline, "etcd {} did not die", cluster.pids[victim]);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // On the connection that was open when etcd died, the write may have gone out
        // before the reset was seen: definite only if the client knew it was gone.
        let w = dead.write("y", json!(1)).await;
        assert!(
            matches!(&w, Err(KvError::Definite(m)) if m.starts_with("connect"))
                || matches!(&w, Err(KvError::Indefinite(m)) if m.starts_with("connection-lost")),
            "{w:?}"
        );
        assert!(!matches!(&w, Err(KvError::Definite(m)) if m == "cas-mismatch"));
        // After that the client reconnects, and a refused connection sends nothing. The
        // kernel may still reset a straggling connection or two first (indefinite, and
        // never ok); within a few attempts the refusal is definite, and fast.
        for c in [&mut dead, &mut db.kv(&format!("n{}", victim + 1))] {
            let mut refused = None;
            for _ in 0..5 {
                let t0 = Instant::now();
                match c.write("y", json!(1)).await {
                    Err(KvError::Definite(m)) if m.starts_with("connect") => {
                        refused = Some(t0.elapsed());
                        break;
                    }
                    Err(KvError::Indefinite(m)) if m.starts_with("connection-lost") => {}
                    other => panic!("write to a killed member: {other:?}"),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let took = refused.expect("a killed member's connection is refused, definitely");
            assert!(took < OP_TIMEOUT, "refused write took {took:?}");
        }
        assert!(db.member_status(&format!("n{}", victim + 1)).await.is_err());

        // The two left still form a majority.
        kv.write("y", json!(2)).await.unwrap();
        assert_eq!(kv.read("y").await.unwrap(), json!(2));
    })
    .await
    .expect("the live etcd test finished within 90 s");
    drop(cluster);
}
