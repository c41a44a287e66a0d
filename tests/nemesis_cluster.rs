//! Fault drills against a real local cluster (network namespaces with sshd): traffic is
//! really cut and really restored, foreign rules survive, and faults heal on the hosts even
//! when the controller is SIGKILLed mid-fault. Each test makes its own uniquely named
//! cluster and always removes it.

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_faultline");

struct LocalCluster {
    name: String,
    addrs: BTreeMap<String, String>,
}

impl LocalCluster {
    fn up(tag: &str) -> LocalCluster {
        let name = format!("t-nem{}{tag}", std::process::id());
        let out = Command::new(BIN)
            .args(["cluster", "up", "--nodes", "3", "--name", &name])
            .output()
            .unwrap();
        // Constructed before the assert so a failed `up` is still torn down.
        let mut c = LocalCluster {
            name,
            addrs: BTreeMap::new(),
        };
        assert!(
            out.status.success(),
            "cluster up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let inv_path = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap()
            .trim()
            .to_string();
        let inv = std::fs::read_to_string(inv_path).unwrap();
        let mut name = None;
        for line in inv.lines() {
            let l = line.trim().trim_start_matches("- ");
            if let Some(n) = l.strip_prefix("name: ") {
                name = Some(n.trim().to_string());
            } else if let (Some(h), Some(n)) = (l.strip_prefix("host: "), name.take()) {
                c.addrs.insert(n, h.trim().to_string());
            }
        }
        assert_eq!(c.addrs.len(), 3, "inventory:\n{inv}");
        c
    }

    /// Runs `cmd` on one node; (exit status, stdout without the node prefix).
    fn exec(&self, node: &str, cmd: &str) -> (bool, String) {
        let out = Command::new(BIN)
            .args(["exec", "-i", &self.name, "--nodes", node, "--", cmd])
            .output()
            .unwrap();
        let prefix = format!("{node}: ");
        let stdout = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.strip_prefix(&prefix).unwrap_or(l).to_string())
            .collect::<Vec<_>>()
            .join("\n");
        if !out.status.success() {
            eprintln!(
                "exec on {node} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        (out.status.success(), stdout)
    }

    fn exec_all(&self, cmd: &str) -> bool {
        Command::new(BIN)
            .args(["exec", "-i", &self.name, "--", cmd])
            .output()
            .unwrap()
            .status
            .success()
    }

    fn nemesis(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(["nemesis", "-i", &self.name])
            .args(args)
            .output()
            .unwrap()
    }

    fn nodes(&self) -> Vec<String> {
        self.addrs.keys().cloned().collect()
    }

    /// Which peers a new TCP connection from `a` to their sshd reaches, within 3 s each (one
    /// SSH round trip for all peers).
    fn reaches(&self, a: &str) -> BTreeMap<String, bool> {
        let peers: Vec<&String> = self.addrs.keys().filter(|p| *p != a).collect();
        let script: String = peers
            .iter()
            .map(|p| {
                format!(
                    "if timeout 3 bash -c '</dev/tcp/{}/22' 2>/dev/null; then echo {p}=yes; else echo {p}=no; fi; ",
                    self.addrs[*p]
                )
            })
            .collect();
        let (_, out) = self.exec(a, &script);
        let got: BTreeMap<String, bool> = out
            .lines()
            .filter_map(|l| l.trim().split_once('='))
            .map(|(p, v)| (p.to_string(), v == "yes"))
            .collect();
        assert_eq!(got.len(), peers.len(), "{a}: {out}");
        got
    }

    fn faultline_rules(&self, node: &str) -> String {
        self.exec(node, "iptables -w -S | grep FAULTLINE || true").1
    }

    /// A stand-in node process with its pidfile at the default path.
    fn spawn_dummy_nodes(&self) {
        for n in self.nodes() {
            let (ok, out) = self.exec(
                &n,
                "mkdir -p /var/lib/faultline/node; setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $! > /var/lib/faultline/node/node.pid",
            );
            assert!(ok, "{n}: {out}");
        }
    }

    fn dummy_state(&self, node: &str) -> String {
        self.exec(
            node,
            "p=$(cat /var/lib/faultline/node/node.pid); if [ -r /proc/$p/stat ]; then sed 's/^.*) //' /proc/$p/stat | cut -d' ' -f1; else echo gone; fi",
        )
            .1
            .trim()
            .to_string()
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let _ = Command::new(BIN)
            .args(["cluster", "down", "--name", &self.name])
            .output();
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn assert_ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what}: exit {:?}\n{}\n{}",
        o.status,
        stdout(o),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The applied fault's `--json` line.
fn applied_json(o: &Output) -> serde_json::Value {
    let line = stdout(o)
        .lines()
        .find(|l| l.starts_with("{\"family\""))
        .expect("a --json line")
        .to_string();
    serde_json::from_str(&line).unwrap()
}

/// Opens a TCP connection from `a` to `b`'s sshd now, and once `/tmp/go` exists on `a`,
/// sends an SSH client banner and records whether the server's answer arrives within 3 s.
fn start_flow_probe(c: &LocalCluster, a: &str, b: &str) {
    let script = format!(
        "exec 3<>/dev/tcp/{addr}/22 || exit 9; read -r -t 3 banner <&3 || exit 8; echo open > /tmp/flow-{b}; \
         i=0; while [ ! -e /tmp/go ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; \
         printf 'SSH-2.0-probe\\r\\n' >&3; n=$(timeout 3 head -c 8 <&3 | wc -c); \
         if [ \"$n\" -gt 0 ]; then echo got > /tmp/flow-{b}; else echo none > /tmp/flow-{b}; fi",
        addr = c.addrs[b]
    );
    let (ok, _) = c.exec(
        a,
        &format!("rm -f /tmp/go; printf '%s' '{}' > /tmp/probe-{b}.sh; setsid bash /tmp/probe-{b}.sh </dev/null >/dev/null 2>&1 &", script.replace('\'', "'\\''")),
    );
    assert!(ok);
}

fn flow_result(c: &LocalCluster, a: &str, b: &str) -> String {
    c.exec(a, &format!("cat /tmp/flow-{b} 2>/dev/null || echo missing"))
        .1
        .trim()
        .to_string()
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn nemesis_cluster_partition_cuts_new_and_open_flows_and_heal_restores_them_leaving_foreign_rules()
{
    let c = LocalCluster::up("p");
    let nodes = c.nodes();
    // A rule faultline did not create.
    assert!(
        c.exec("n1", "iptables -w -A INPUT -s 192.0.2.7 -j ACCEPT")
            .0
    );
    for a in &nodes {
        wait_for(
            &format!("{a} to reach every peer before any fault"),
            Duration::from_secs(15),
            || c.reaches(a).values().all(|&ok| ok),
        );
        for b in nodes.iter().filter(|b| *b != a) {
            start_flow_probe(&c, a, b);
        }
    }
    for a in &nodes {
        for b in nodes.iter().filter(|b| *b != a) {
            wait_for("flows to open", Duration::from_secs(10), || {
                flow_result(&c, a, b) == "open"
            });
        }
    }

    let out = c.nemesis(&["partition", "--shape", "halves", "--json"]);
    assert_ok(&out, "partition");
    assert!(
        stdout(&out).contains("each host undoes it on its own in 60m00s"),
        "{}",
        stdout(&out)
    );
    let grudge = applied_json(&out)["value"]["grudge"].clone();
    let cut = |a: &str, b: &str| {
        grudge[b]
            .as_array()
            .is_some_and(|p| p.iter().any(|x| x == a))
            || grudge[a]
                .as_array()
                .is_some_and(|p| p.iter().any(|x| x == b))
    };
    for n in &nodes {
        assert!(c.exec(n, "touch /tmp/go").0);
    }
    std::thread::sleep(Duration::from_secs(4));
    let mut cut_pairs = 0;
    for a in &nodes {
        for b in nodes.iter().filter(|b| *b != a) {
            let want = if cut(a, b) { "none" } else { "got" };
            assert_eq!(
                flow_result(&c, a, b),
                want,
                "open flow {a} -> {b} (grudge {grudge})"
            );
            assert_eq!(
                c.reaches(a)[b],
                !cut(a, b),
                "new connection {a} -> {b} (grudge {grudge})"
            );
            cut_pairs += usize::from(cut(a, b));
        }
    }
    assert_eq!(
        cut_pairs, 4,
        "halves of three cut one node from two, both ways"
    );
    let rules = c.exec("n1", "iptables -w -S").1;
    assert_eq!(
        rules.lines().find(|l| l.starts_with("-A INPUT")),
        Some("-A INPUT -j FAULTLINE-IN")
    );

    let st = c.nemesis(&["status"]);
    assert_ok(&st, "status");
    assert!(stdout(&st).contains("partition-"), "{}", stdout(&st));

    let heal = c.nemesis(&["heal"]);
    assert_ok(&heal, "heal");
    assert!(
        stdout(&heal).contains("healed partition-"),
        "{}",
        stdout(&heal)
    );
    for a in &nodes {
        assert_eq!(
            c.faultline_rules(a).trim(),
            "",
            "{a} still has faultline rules"
        );
        wait_for(
            &format!("{a} to reach every peer after heal"),
            Duration::from_secs(15),
            || c.reaches(a).values().all(|&ok| ok),
        );
    }
    assert!(
        c.exec("n1", "iptables -w -S INPUT")
            .1
            .contains("-A INPUT -s 192.0.2.7/32 -j ACCEPT")
    );
    // Healing what is healed succeeds, the sweep too.
    assert_ok(&c.nemesis(&["heal"]), "second heal");
    assert_ok(&c.nemesis(&["heal", "--all"]), "heal --all");
}

#[test]
fn nemesis_cluster_faults_heal_on_the_hosts_after_the_controller_is_sigkilled() {
    let c = LocalCluster::up("k");
    let nodes = c.nodes();

    // A partition whose controller dies mid-fault.
    let mut child = Command::new(BIN)
        .args([
            "nemesis",
            "-i",
            &c.name,
            "partition",
            "--shape",
            "majorities-ring",
            "--for",
            "5s",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("partition rules", Duration::from_secs(20), || {
        nodes
            .iter()
            .any(|n| !c.faultline_rules(n).trim().is_empty())
    });
    let applied_at = Instant::now();
    child.kill().unwrap(); // SIGKILL, by pid
    child.wait().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        nodes
            .iter()
            .any(|n| !c.faultline_rules(n).trim().is_empty()),
        "still partitioned: nobody healed yet"
    );
    // --for 5s gives an expiry of 10s on each host.
    wait_for(
        "hosts to heal the partition themselves",
        Duration::from_secs(15),
        || nodes.iter().all(|n| c.faultline_rules(n).trim().is_empty()),
    );
    assert!(applied_at.elapsed() >= Duration::from_secs(5));
    for a in &nodes {
        wait_for(
            &format!("{a} to reach every peer after expiry"),
            Duration::from_secs(15),
            || c.reaches(a).values().all(|&ok| ok),
        );
        assert_eq!(
            c.exec(a, "ls /var/lib/faultline/nemesis/journal | wc -l")
                .1
                .trim(),
            "0",
            "{a} journal emptied"
        );
    }

    // SIGINT and SIGTERM heal at once rather than at the end of --for.
    for sig in ["-INT", "-TERM"] {
        let mut child = Command::new(BIN)
            .args([
                "nemesis",
                "-i",
                &c.name,
                "partition",
                "--shape",
                "halves",
                "--for",
                "60s",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for("partition rules", Duration::from_secs(20), || {
            nodes
                .iter()
                .any(|n| !c.faultline_rules(n).trim().is_empty())
        });
        let sent = Instant::now();
        assert!(
            Command::new("kill")
                .args([sig, &child.id().to_string()])
                .status()
                .unwrap()
                .success()
        );
        let status = child.wait().unwrap();
        assert!(status.success(), "{sig}: {status:?}");
        assert!(
            sent.elapsed() < Duration::from_secs(20),
            "{sig} healed promptly"
        );
        for n in &nodes {
            assert_eq!(c.faultline_rules(n).trim(), "", "{n} healed after {sig}");
        }
    }

    // A pause whose controller dies mid-fault.
    c.spawn_dummy_nodes();
    let mut child = Command::new(BIN)
        .args([
            "nemesis", "-i", &c.name, "pause", "--target", "all", "--for", "5s",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("nodes to stop", Duration::from_secs(20), || {
        nodes.iter().all(|n| c.dummy_state(n) == "T")
    });
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        nodes.iter().all(|n| c.dummy_state(n) == "T"),
        "still paused: nobody resumed yet"
    );
    wait_for(
        "hosts to resume the node themselves",
        Duration::from_secs(15),
        || nodes.iter().all(|n| c.dummy_state(n) == "S"),
    );
}

#[test]
fn nemesis_cluster_kill_start_pause_resume_act_on_the_pidfile() {
    let c = LocalCluster::up("s");
    c.spawn_dummy_nodes();
    // Nodes are not running a real node: asking for the leader fails with a clear error.
    let out = c.nemesis(&["kill", "--target", "leader"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("leader"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = c.nemesis(&["kill", "--target", "n9"]);
    assert_eq!(
        out.status.code(),
        Some(64),
        "an unknown node is a usage error"
    );

    let start_cmd =
        "setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $! > /var/lib/faultline/node/node.pid";
    let out = c.nemesis(&["kill", "--target", "n2", "--start-command", start_cmd]);
    assert_ok(&out, "kill");
    assert!(stdout(&out).contains("targets: n2"));
    assert_eq!(c.dummy_state("n2"), "gone");
    assert_eq!(c.dummy_state("n1"), "S");
    let st = stdout(&c.nemesis(&["status"]));
    assert!(st.contains("dead ("), "{st}");

    let out = c.nemesis(&["start", "--target", "all", "--start-command", start_cmd]);
    assert_ok(&out, "start");
    let s = stdout(&out);
    assert!(s.contains("n2: healed kill-"), "{s}");
    assert!(s.contains("n1: already running"), "{s}");
    assert!(
        s.contains("n2: already running"),
        "the journal's undo restarted n2 first:\n{s}"
    );
    assert_eq!(c.dummy_state("n2"), "S");

    assert_ok(&c.nemesis(&["pause", "--target", "n1,n3"]), "pause");
    assert_eq!(c.dummy_state("n1"), "T");
    assert_eq!(c.dummy_state("n2"), "S");
    let st = stdout(&c.nemesis(&["status"]));
    assert_eq!(st.matches("STOPPED").count(), 2, "{st}");
    assert_ok(&c.nemesis(&["resume"]), "resume");
    assert_eq!(c.dummy_state("n1"), "S");
    assert_eq!(c.dummy_state("n3"), "S");
    let st = stdout(&c.nemesis(&["status"]));
    assert!(!st.contains("pause-"), "journal cleared by resume:\n{st}");

    // This kernel may lack netem; either way the answer is clear.
    let out = c.nemesis(&["packet", "--target", "n1", "--for", "1s"]);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("netem"), "{err}");
        assert_eq!(
            c.exec(
                "n1",
                "ls /var/lib/faultline/nemesis/journal | grep -c packet || true"
            )
            .1
            .trim(),
            "0"
        );
    }
}

#[test]
fn nemesis_cluster_leader_targets_ask_the_running_nodes() {
    let c = LocalCluster::up("l");
    let store = std::env::temp_dir().join(format!("{}-store", c.name));
    // Deploy and start the real node, and leave it running.
    let out = Command::new(BIN)
        .args([
            "test",
            "-i",
            &c.name,
            "--time-limit",
            "2",
            "--leave-db-running",
            "--store",
        ])
        .arg(&store)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&store);
    assert_ok(&out, "faultline test --leave-db-running");

    let out = c.nemesis(&["kill", "--target", "leader", "--for", "2s", "--json"]);
    assert_ok(&out, "kill --target leader");
    let v = applied_json(&out);
    let leader = v["value"]["leader"].as_str().expect("a leader").to_string();
    assert_eq!(v["value"]["targets"], serde_json::json!([leader.clone()]));
    assert!(
        stdout(&out).contains(&format!("{leader}: healed kill-")),
        "{}",
        stdout(&out)
    );
    let st = stdout(&c.nemesis(&["status"]));
    assert_eq!(
        st.matches("running (").count(),
        3,
        "the killed leader was restarted:\n{st}"
    );

    // Wait for a leader again, then cut it off.
    let mut isolated = None;
    for _ in 0..20 {
        let out = c.nemesis(&["partition", "--shape", "leader", "--for", "1s", "--json"]);
        if out.status.success() {
            isolated = applied_json(&out)["value"]["isolated"]
                .as_str()
                .map(str::to_string);
            break;
        }
        assert!(String::from_utf8_lossy(&out.stderr).contains("leader"));
        std::thread::sleep(Duration::from_millis(500));
    }
    let isolated = isolated.expect("a leader was elected and isolated");
    assert!(c.nodes().contains(&isolated));
    for n in c.nodes() {
        assert_eq!(c.faultline_rules(&n).trim(), "", "{n} healed after --for");
    }
    // Leave nothing running.
    let _ = c.exec_all("kill $(cat /var/lib/faultline/node/node.pid) 2>/dev/null; true");
}
