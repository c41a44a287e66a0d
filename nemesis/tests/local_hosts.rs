//! The fault scripts run for real: each "host" is a network namespace of its own (created
//! and deleted here) with its own journal directory and pidfile, and scripts run through
//! `ip netns exec`. Peer addresses are never assigned to an interface, so no packet leaves.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use faultline_nemesis::cluster::{BoxFuture, Cluster, HostPaths, Output, RemoteError, StatePaths};
use faultline_nemesis::executor::{ProcessState, heal, status};
use faultline_nemesis::{FaultOptions, Shape, TargetSpec, disk, kill, partition, pause};

struct Hosts {
    tag: String,
    dir: std::path::PathBuf,
    n: usize,
    children: std::sync::Mutex<Vec<u32>>,
}

impl Hosts {
    fn new(name: &str, n: usize) -> Arc<Hosts> {
        let tag = format!("fltn{}{}", std::process::id() % 100_000, name);
        let dir = std::env::temp_dir().join(&tag);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 1..=n {
            let ok = Command::new("ip")
                .args(["netns", "add", &format!("{tag}-n{i}")])
                .status()
                .unwrap();
            assert!(ok.success(), "ip netns add failed (tests run as root)");
            std::fs::create_dir_all(dir.join(format!("n{i}"))).unwrap();
        }
        Arc::new(Hosts {
            tag,
            dir,
            n,
            children: Default::default(),
        })
    }

    fn ns(&self, node: &str) -> String {
        format!("{}-{node}", self.tag)
    }

    fn sh(&self, node: &str, script: &str) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns(node), "sh", "-c", script])
            .output()
            .unwrap()
    }

    /// A stand-in node process with its pidfile.
    fn spawn_node(&self, node: &str) -> u32 {
        let child = Command::new("sleep").arg("600").spawn().unwrap();
        let pid = child.id();
        std::fs::write(self.paths_for(node).pidfile, format!("{pid}\n")).unwrap();
        self.children.lock().unwrap().push(pid);
        // Reap in the background so a killed stand-in does not linger as a zombie.
        std::thread::spawn(move || {
            let mut c = child;
            let _ = c.wait();
        });
        pid
    }

    fn paths_for(&self, node: &str) -> HostPaths {
        let d = self.dir.join(node);
        HostPaths {
            pidfile: d.join("node.pid").display().to_string(),
            journal_dir: d.join("journal").display().to_string(),
            state: None,
        }
    }

    fn iptables(&self, node: &str) -> String {
        String::from_utf8(self.sh(node, "iptables -w -S").stdout).unwrap()
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for pid in self.children.lock().unwrap().iter() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        for i in 1..=self.n {
            // A failed test may leave faults: replay their journals, which also cancels the
            // watchdogs, then drop the namespace.
            let node = format!("n{i}");
            let dir = self.paths_for(&node).journal_dir;
            let _ = self.sh(
                &node,
                &faultline_nemesis::journal::heal_script(
                    &dir,
                    &faultline_nemesis::journal::Select::All,
                ),
            );
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(&format!("n{i}"))])
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// All hosts share one pidfile/journal layout rooted per node; `paths()` cannot vary by node
/// in the trait, so each script is rewritten to its node's directory.
struct Local(Arc<Hosts>);

const GENERIC: &str = "/fltn-node";

impl Cluster for Local {
    fn nodes(&self) -> Vec<String> {
        (1..=self.0.n).map(|i| format!("n{i}")).collect()
    }
    fn address(&self, node: &str) -> Option<String> {
        let i: u8 = node.strip_prefix('n')?.parse().ok()?;
        Some(format!("10.213.0.{}", i + 1))
    }
    fn run<'a>(
        &'a self,
        node: &'a str,
        script: &'a str,
        _t: Duration,
    ) -> BoxFuture<'a, Result<Output, RemoteError>> {
        Box::pin(async move {
            let real = self.0.dir.join(node).display().to_string();
            let script = script.replace(GENERIC, &real);
            let out = self.0.sh(node, &script);
            Ok(Output {
                status: out.status.code(),
                stdout: String::from_utf8_lossy(&out.stdout).into(),
                stderr: String::from_utf8_lossy(&out.stderr).into(),
            })
        })
    }
    fn leader(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(async { Some("n1".to_string()) })
    }
    fn start_command(&self, node: &str) -> String {
        format!("echo started > {GENERIC}/started-{node}")
    }
    fn paths(&self) -> HostPaths {
        HostPaths {
            pidfile: format!("{GENERIC}/node.pid"),
            journal_dir: format!("{GENERIC}/journal"),
            state: Some(StatePaths {
                dir: format!("{GENERIC}/state"),
                log: vec!["wal.log".into()],
                snapshot: vec!["snapshot.bin".into()],
                lazyfs: None,
            }),
        }
    }
}

#[tokio::test]
async fn partition_rules_live_in_faultline_chains_and_heal_leaves_other_rules_alone() {
    let hosts = Hosts::new("p", 3);
    let cx = Local(hosts.clone());
    // A rule faultline did not create.
    assert!(
        hosts
            .sh("n1", "iptables -w -A INPUT -s 192.0.2.7 -j ACCEPT")
            .status
            .success()
    );
    let opts = FaultOptions {
        shape: Shape::Leader,
        ..Default::default()
    };
    let a = partition::start(&cx, &opts, 3).await.unwrap();
    assert_eq!(a.description["isolated"], "n1");
    let n1 = hosts.iptables("n1");
    let lines: Vec<&str> = n1.lines().collect();
    let first_input = lines.iter().find(|l| l.starts_with("-A INPUT")).unwrap();
    assert_eq!(
        *first_input, "-A INPUT -j FAULTLINE-IN",
        "jump is first:\n{n1}"
    );
    assert_eq!(n1.matches("-j FAULTLINE-IN").count(), 1);
    assert_eq!(n1.matches("-j FAULTLINE-OUT").count(), 1);
    assert!(n1.contains("-A FAULTLINE-IN -s 10.213.0.3/32 -j DROP"));
    assert!(n1.contains("-A FAULTLINE-OUT -d 10.213.0.4/32 -j DROP"));
    let n2 = hosts.iptables("n2");
    assert!(n2.contains("-A FAULTLINE-IN -s 10.213.0.2/32 -j DROP"));
    assert!(
        !n2.contains("10.213.0.4"),
        "n2 and n3 stay connected:\n{n2}"
    );

    let st = status(&cx).await;
    assert!(
        st.iter()
            .all(|(_, s)| s.as_ref().unwrap().journal.len() == 1)
    );

    // A second partition replaces, never stacks.
    let b = partition::start(
        &cx,
        &FaultOptions {
            shape: Shape::Halves,
            ..Default::default()
        },
        4,
    )
    .await
    .unwrap();
    assert_ne!(a.journal_id, b.journal_id);
    assert_eq!(hosts.iptables("n1").matches("-j FAULTLINE-IN").count(), 1);

    let r = heal(&cx, false).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.healed.iter().map(|(_, ids)| ids.len()).sum::<usize>(), 6);
    for n in ["n1", "n2", "n3"] {
        let rules = hosts.iptables(n);
        assert!(!rules.contains("FAULTLINE"), "{n}:\n{rules}");
    }
    assert!(
        hosts
            .iptables("n1")
            .contains("-A INPUT -s 192.0.2.7/32 -j ACCEPT")
    );
    // Healing a healed cluster succeeds, with the sweep too.
    let r = heal(&cx, true).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(
        status(&cx)
            .await
            .iter()
            .all(|(_, s)| s.as_ref().unwrap().is_clean())
    );
}

#[tokio::test]
async fn a_fault_expires_on_the_host_without_the_controller() {
    let hosts = Hosts::new("e", 3);
    let cx = Local(hosts.clone());
    let pid = hosts.spawn_node("n2");
    let opts = FaultOptions {
        target: TargetSpec::Nodes(vec!["n2".into()]),
        expiry: Duration::from_secs(4),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    pause::start(&cx, &opts, 1).await.unwrap();
    partition::start(
        &cx,
        &FaultOptions {
            expiry: Duration::from_secs(4),
            ..Default::default()
        },
        2,
    )
    .await
    .unwrap();
    let st = status(&cx).await;
    let n2 = st
        .iter()
        .find(|(n, _)| n == "n2")
        .unwrap()
        .1
        .as_ref()
        .unwrap();
    assert_eq!(n2.process, ProcessState::Stopped(pid));
    assert_eq!(n2.journal.len(), 2);
    assert!(
        n2.journal
            .iter()
            .all(|e| e.as_ref().unwrap().watchdog_pid.is_some())
    );
    // Nobody heals: the watchdogs must.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let st = status(&cx).await;
        if st.iter().all(|(_, s)| s.as_ref().unwrap().is_clean()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not healed by expiry: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "healed no earlier than the expiry"
    );
    let st = status(&cx).await;
    let n2 = st
        .iter()
        .find(|(n, _)| n == "n2")
        .unwrap()
        .1
        .as_ref()
        .unwrap();
    assert_eq!(n2.process, ProcessState::Running(pid));
}

#[tokio::test]
async fn explicit_heal_cancels_the_watchdog() {
    let hosts = Hosts::new("w", 3);
    let cx = Local(hosts.clone());
    hosts.spawn_node("n3");
    let opts = FaultOptions {
        target: TargetSpec::Nodes(vec!["n3".into()]),
        ..Default::default()
    };
    let a = pause::start(&cx, &opts, 1).await.unwrap();
    let st = status(&cx).await;
    let entry = st[2].1.as_ref().unwrap().journal[0].clone().unwrap();
    assert_eq!(entry.id, a.journal_id);
    let wd = entry.watchdog_pid.unwrap();
    assert!(std::path::Path::new(&format!("/proc/{wd}")).exists());
    heal(&cx, false).await;
    std::thread::sleep(Duration::from_millis(200));
    let alive =
        std::fs::read_to_string(format!("/proc/{wd}/cmdline")).map(|c| c.contains(&a.journal_id));
    assert!(
        !alive.unwrap_or(false),
        "watchdog {wd} still running after heal"
    );
}

#[tokio::test]
async fn kill_is_by_pidfile_and_its_undo_restarts() {
    let hosts = Hosts::new("k", 3);
    let cx = Local(hosts.clone());
    let pid = hosts.spawn_node("n1");
    let decoy = hosts.spawn_node("n2"); // another `sleep 600` that must survive
    std::fs::remove_file(hosts.paths_for("n2").pidfile).unwrap();
    // Status works on a host that never had a fault (no journal directory yet).
    let st = status(&cx).await;
    assert_eq!(
        st[0].1.as_ref().unwrap().process,
        ProcessState::Running(pid)
    );
    assert_eq!(st[1].1.as_ref().unwrap().process, ProcessState::NoPidfile);
    let opts = FaultOptions {
        target: TargetSpec::Leader,
        ..Default::default()
    };
    let a = kill::start(&cx, &opts, 1).await.unwrap();
    assert_eq!(a.hosts, vec!["n1"]);
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}/cmdline")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap()
                .contains(") Z")
    );
    assert!(
        std::path::Path::new(&format!("/proc/{decoy}")).exists(),
        "kill is never by name"
    );
    let started = hosts.dir.join("n1").join("started-n1");
    assert!(!started.exists());
    heal(&cx, false).await;
    assert!(started.exists(), "heal of a kill runs the start command");
    // Killing a node with no pidfile is an error that names the pidfile.
    let e = kill::start(
        &cx,
        &FaultOptions {
            target: TargetSpec::Nodes(vec!["n2".into()]),
            ..Default::default()
        },
        1,
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("no pidfile"), "{e}");
}

/// The disk faults end to end: journaled, kill by pidfile, damage exactly what the history
/// says, and a heal that starts the node again.
#[tokio::test]
async fn disk_faults_kill_damage_what_they_record_and_heal_by_starting() {
    let hosts = Hosts::new("d", 3);
    let cx = Local(hosts.clone());
    let wal: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut pids = Vec::new();
    for n in ["n1", "n2", "n3"] {
        let state = hosts.dir.join(n).join("state");
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(state.join("wal.log"), &wal).unwrap();
        pids.push(hosts.spawn_node(n));
    }
    let all = FaultOptions {
        target: TargetSpec::All,
        ..Default::default()
    };
    let gone = |pid: u32| {
        std::thread::sleep(Duration::from_millis(50));
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z"))
    };

    let a = disk::start_bitflip(&cx, &all, 9).await.unwrap();
    assert!(pids.iter().all(|&p| gone(p)), "bitflip stops the node first");
    for n in ["n1", "n2", "n3"] {
        let c = &a.description["changed"][n][0];
        assert_eq!(c["action"], "bitflip", "{}", a.description);
        let off = c["offset"].as_u64().unwrap() as usize;
        let now = std::fs::read(hosts.dir.join(n).join("state/wal.log")).unwrap();
        let diff: Vec<usize> = (0..wal.len()).filter(|&i| wal[i] != now[i]).collect();
        assert_eq!(diff, vec![off], "{n}: only the recorded byte changed");
        assert_eq!(now[off] as u64, c["after"].as_u64().unwrap());
        assert_eq!((wal[off] ^ now[off]).count_ones(), 1);
    }
    // Other hosts draw other offsets from the same fault seed.
    let offsets: std::collections::BTreeSet<u64> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| a.description["changed"][*n][0]["offset"].as_u64().unwrap())
        .collect();
    assert!(offsets.len() > 1, "{}", a.description);
    heal(&cx, false).await;
    for n in ["n1", "n2", "n3"] {
        let started = hosts.dir.join(n).join(format!("started-{n}"));
        assert!(started.exists(), "heal starts {n}");
        std::fs::remove_file(started).unwrap();
    }

    let pid = hosts.spawn_node("n2");
    let one = FaultOptions {
        target: TargetSpec::Nodes(vec!["n2".into()]),
        ..Default::default()
    };
    let a = disk::start_truncate(&cx, &one, 4).await.unwrap();
    assert!(gone(pid));
    let c = &a.description["changed"]["n2"][0];
    let len = std::fs::metadata(hosts.dir.join("n2/state/wal.log")).unwrap().len();
    assert_eq!(len, c["offset"].as_u64().unwrap());
    assert_eq!(5000 - len, c["cut_bytes"].as_u64().unwrap());
    assert!(a.description["changed"].get("n1").is_none(), "only the target is damaged");
    heal(&cx, false).await;

    hosts.spawn_node("n2");
    let a = disk::start_wipe(&cx, &one, 5).await.unwrap();
    assert_eq!(a.description["changed"]["n2"][0]["files"], 1);
    assert!(!hosts.dir.join("n2/state").exists());
    assert!(hosts.dir.join("n1/state/wal.log").exists());
    heal(&cx, false).await;
    assert!(hosts.dir.join("n2/started-n2").exists());
    // Nothing left to damage: an error, and no fault recorded as applied. (No pidfile is
    // not the error: a node that refused to start has none and can still be damaged.)
    std::fs::remove_file(hosts.paths_for("n2").pidfile).unwrap();
    let e = disk::start_truncate(&cx, &one, 6).await.unwrap_err();
    assert!(e.to_string().contains("no state directory"), "{e}");
    std::fs::create_dir_all(hosts.dir.join("n2/state")).unwrap();
    std::fs::write(hosts.dir.join("n2/state/wal.log"), [0u8; 10]).unwrap();
    let a = disk::start_truncate(&cx, &one, 7).await.unwrap();
    assert!(a.description["changed"]["n2"][0]["cut_bytes"].as_u64().unwrap() >= 1);
    heal(&cx, false).await;
    assert!(status(&cx).await.iter().all(|(_, s)| s.as_ref().unwrap().journal.is_empty()));
}

#[tokio::test]
async fn constrained_cuts_the_hub_off_first_then_swaps_in_the_final_shape() {
    let hosts = Hosts::new("c", 5);
    let cx = Local(hosts.clone());
    let opts = FaultOptions {
        shape: Shape::Constrained,
        lag: Duration::from_millis(300),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let a = partition::start(&cx, &opts, 8).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the lag phase ran"
    );
    assert_eq!(a.description["lag_ms"], 300);
    let hub = a.description["hub"].as_str().unwrap().to_string();
    assert_eq!(a.description["leader"], "n1");
    // Only the final fault is journaled: the lag phase's entry was dropped, not healed.
    for (n, st) in status(&cx).await {
        let st = st.unwrap();
        let ids: Vec<String> = st
            .journal
            .iter()
            .map(|e| e.as_ref().unwrap().id.clone())
            .collect();
        assert_eq!(ids, vec![a.journal_id.clone()], "{n}");
    }
    // The old leader hears nobody; the hub hears everyone but the old leader.
    let n1 = hosts.iptables("n1");
    assert_eq!(n1.matches("-A FAULTLINE-IN -s").count(), 4, "{n1}");
    let hub_rules = hosts.iptables(&hub);
    assert_eq!(
        hub_rules.matches("-A FAULTLINE-IN -s").count(),
        1,
        "{hub_rules}"
    );
    assert!(hub_rules.contains("-A FAULTLINE-IN -s 10.213.0.2/32 -j DROP"));
    let r = heal(&cx, false).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(
        status(&cx)
            .await
            .iter()
            .all(|(_, s)| s.as_ref().unwrap().is_clean())
    );
}

/// Like [`Local`], with IPv6 peer addresses.
struct Local6(Arc<Hosts>);

impl Cluster for Local6 {
    fn nodes(&self) -> Vec<String> {
        Local(self.0.clone()).nodes()
    }
    fn address(&self, node: &str) -> Option<String> {
        let i: u8 = node.strip_prefix('n')?.parse().ok()?;
        Some(format!("fd00:213::{}", i + 1))
    }
    fn run<'a>(
        &'a self,
        node: &'a str,
        script: &'a str,
        _t: Duration,
    ) -> BoxFuture<'a, Result<Output, RemoteError>> {
        Box::pin(async move {
            let real = self.0.dir.join(node).display().to_string();
            let out = self.0.sh(node, &script.replace(GENERIC, &real));
            Ok(Output {
                status: out.status.code(),
                stdout: String::from_utf8_lossy(&out.stdout).into(),
                stderr: String::from_utf8_lossy(&out.stderr).into(),
            })
        })
    }
    fn leader(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(async { None })
    }
    fn start_command(&self, _node: &str) -> String {
        "true".into()
    }
    fn paths(&self) -> HostPaths {
        Local(self.0.clone()).paths()
    }
}

#[tokio::test]
async fn ipv6_peers_are_cut_with_ip6tables_and_healed() {
    let hosts = Hosts::new("6", 3);
    let cx = Local6(hosts.clone());
    let a = partition::start(&cx, &FaultOptions::default(), 5)
        .await
        .unwrap();
    let v6_rules: String = ["n1", "n2", "n3"]
        .iter()
        .map(|n| String::from_utf8(hosts.sh(n, "ip6tables -w -S").stdout).unwrap())
        .collect();
    // Halves of three: 2 cut links, each dropped both ways, in and out.
    assert_eq!(v6_rules.matches("-j DROP").count(), 8, "{v6_rules}");
    assert!(v6_rules.contains("-s fd00:213::"), "{v6_rules}");
    let st = status(&cx).await;
    assert_eq!(
        st.iter()
            .map(|(_, s)| {
                s.as_ref()
                    .unwrap()
                    .leftovers_of("partition")
                    .iter()
                    .filter(|l| l.starts_with("-A FAULTLINE-"))
                    .count()
            })
            .sum::<usize>(),
        8
    );
    heal(&cx, false).await;
    for n in ["n1", "n2", "n3"] {
        let v6 = String::from_utf8(hosts.sh(n, "ip6tables -w -S").stdout).unwrap();
        assert!(!v6.contains("FAULTLINE"), "{n}: {v6}");
    }
    assert!(
        status(&cx)
            .await
            .iter()
            .all(|(_, s)| s.as_ref().unwrap().is_clean()),
        "{}",
        a.journal_id
    );
}
