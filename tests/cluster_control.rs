//! Local clusters end to end, through the CLI: `cluster up`, commands and uploads over SSH
//! with `exec`, isolation of the nodes, the control layer's connection errors, and a
//! `cluster down` that leaves nothing behind (also after a failed `up`).
//!
//! Needs root and the cluster tools; without them each test says why and returns.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_faultline");

mod common;

fn skip_reason() -> Option<String> {
    common::missing_root_or_tools(&["ip", "sshd", "ssh", "ssh-keygen", "unshare", "iptables"])
}

macro_rules! require_cluster_env {
    () => {
        if let Some(why) = skip_reason() {
            eprintln!("SKIPPED: local cluster tests need root and cluster tools: {why}");
            return;
        }
    };
}

fn fl(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run faultline")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Tears the cluster down even when an assertion fails half-way.
struct Cluster {
    name: String,
}

impl Cluster {
    fn up(name: &str, nodes: usize) -> (Cluster, PathBuf) {
        let _ = fl(&["cluster", "down", "--name", name]);
        let started = Instant::now();
        let out = fl(&[
            "cluster",
            "up",
            "--nodes",
            &nodes.to_string(),
            "--name",
            name,
        ]);
        assert!(
            out.status.success(),
            "cluster up failed: {}",
            text(&out.stderr)
        );
        eprintln!(
            "cluster up --nodes {nodes}: {} ms",
            started.elapsed().as_millis()
        );
        let stdout = text(&out.stdout);
        let inv = PathBuf::from(stdout.lines().last().expect("inventory path line").trim());
        assert!(inv.is_file(), "{inv:?}");
        (Cluster { name: name.into() }, inv)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = fl(&["cluster", "down", "--name", &self.name]);
    }
}

fn exec(inv: &str, extra: &[&str], cmd: &str) -> Output {
    let mut args = vec!["exec", "-i", inv];
    args.extend_from_slice(extra);
    args.push("--");
    args.push(cmd);
    fl(&args)
}

/// `node: line` lines of one node.
fn lines_of(out: &Output, node: &str) -> Vec<String> {
    let p = format!("{node}: ");
    text(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix(&p))
        .map(String::from)
        .collect()
}

fn state(name: &str) -> serde_json::Value {
    let p = Path::new("/var/lib/faultline-clusters")
        .join(name)
        .join("cluster.json");
    serde_json::from_slice(&std::fs::read(&p).expect("cluster.json")).expect("json")
}

fn pid_alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

fn netns_exists(ns: &str) -> bool {
    Path::new("/run/netns").join(ns).exists()
}

fn link_exists(l: &str) -> bool {
    Path::new("/sys/class/net").join(l).exists()
}

#[test]
fn cluster_lifecycle_exec_upload_isolation() {
    require_cluster_env!();
    let name = format!("t-cl-{}", std::process::id());
    let (cluster, inv) = Cluster::up(&name, 3);
    let inv_s = inv.to_str().unwrap();
    let st = state(&name);
    let nodes = st["nodes"].as_array().unwrap().clone();
    assert_eq!(nodes.len(), 3);

    // Every node answers over SSH, as itself; `-i NAME` resolves to the same inventory.
    let out = exec(&name, &[], "hostname");
    assert!(out.status.success(), "{}", text(&out.stderr));
    for n in ["n1", "n2", "n3"] {
        assert_eq!(lines_of(&out, n), vec![n.to_string()]);
    }
    let out = exec(inv_s, &["--nodes", "n2"], "echo out; echo err >&2");
    assert!(out.status.success());
    assert_eq!(lines_of(&out, "n2"), vec!["out"]);
    assert!(text(&out.stderr).contains("n2: err"));
    assert!(lines_of(&out, "n1").is_empty());

    // A failing node makes exec exit 3 and names it.
    let out = exec(inv_s, &[], "[ $(hostname) != n3 ]");
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(
        err.contains("1 of 3 node(s) failed") && err.contains("n3: exit code 1"),
        "{err}"
    );

    // A command past its timeout is stopped, on time.
    let started = Instant::now();
    let out = exec(inv_s, &["--nodes", "n1", "--timeout-s", "1"], "sleep 30");
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("did not finish within 1000 ms"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let out = exec(inv_s, &["--nodes", "n1"], "pgrep -x sleep || echo none");
    assert_eq!(
        lines_of(&out, "n1"),
        vec!["none"],
        "the timed-out command was killed on the host"
    );

    // Isolation: own PID namespace with our init as PID 1, few processes, no default route.
    let out = exec(
        inv_s,
        &[],
        "cat /proc/1/comm; ps -e -o pid= | wc -l; ip route show default | wc -l",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    for n in ["n1", "n2", "n3"] {
        let l = lines_of(&out, n);
        assert_eq!(l[0], "faultline", "{n}: {l:?}");
        let procs: usize = l[1].trim().parse().unwrap();
        assert!(procs < 15, "{n} sees {procs} processes");
        assert_eq!(l[2].trim(), "0", "{n} has a default route");
    }
    // Private /tmp and /var/lib/faultline.
    let marker = format!("iso-{}", std::process::id());
    let out = exec(
        inv_s,
        &["--nodes", "n1"],
        &format!("echo x > /tmp/{marker} && echo y > /var/lib/faultline/{marker}"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = exec(
        inv_s,
        &[],
        &format!("cat /tmp/{marker} /var/lib/faultline/{marker} 2>/dev/null | tr -d '\\n'; echo"),
    );
    assert_eq!(lines_of(&out, "n1"), vec!["xy"]);
    assert_eq!(lines_of(&out, "n2"), vec![""]);
    assert_eq!(lines_of(&out, "n3"), vec![""]);
    assert!(!Path::new("/tmp").join(&marker).exists());
    assert!(!Path::new("/var/lib/faultline").join(&marker).exists());

    // iptables works inside the node's network namespace.
    let ns = nodes[0]["netns"].as_str().unwrap();
    let ipt = Command::new("ip")
        .args(["netns", "exec", ns, "iptables", "-w", "-L", "-n"])
        .output()
        .unwrap();
    assert!(
        ipt.status.success(),
        "iptables in {ns}: {}",
        text(&ipt.stderr)
    );
    let out = exec(
        inv_s,
        &["--nodes", "n2"],
        "iptables -w -N fl-probe && iptables -w -L fl-probe -n >/dev/null && iptables -w -X fl-probe && echo ok",
    );
    assert_eq!(lines_of(&out, "n2"), vec!["ok"], "{}", text(&out.stderr));

    // Upload: copied and verified, then skipped where the same bytes are present.
    let dir = std::env::temp_dir().join(format!("fl-up-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let local = dir.join("payload.bin");
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&local, &payload).unwrap();
    let spec = format!("{}=/var/lib/faultline/bin/payload.bin", local.display());
    let up = |extra: &[&str]| {
        let mut a = vec!["exec", "-i", inv_s, "--upload", &spec, "--mode", "750"];
        a.extend_from_slice(extra);
        fl(&a)
    };
    let out = up(&["--nodes", "n1,n2"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        lines_of(&out, "n1"),
        vec![format!(
            "uploaded {} -> /var/lib/faultline/bin/payload.bin (300000 bytes)",
            local.display()
        )]
    );
    let out = up(&[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        lines_of(&out, "n1"),
        vec!["/var/lib/faultline/bin/payload.bin already up to date"]
    );
    assert!(
        lines_of(&out, "n3")[0].starts_with("uploaded"),
        "{:?}",
        lines_of(&out, "n3")
    );
    let out = exec(
        inv_s,
        &[],
        "sha256sum < /var/lib/faultline/bin/payload.bin | cut -c1-64; stat -c %a /var/lib/faultline/bin/payload.bin",
    );
    let first = lines_of(&out, "n1");
    assert_eq!(first[1], "750");
    for n in ["n2", "n3"] {
        assert_eq!(lines_of(&out, n), first);
    }
    // A changed file is sent again.
    std::fs::write(&local, b"changed").unwrap();
    let out = up(&["--nodes", "n1"]);
    assert!(
        lines_of(&out, "n1")[0].starts_with("uploaded"),
        "{}",
        text(&out.stdout)
    );
    let _ = std::fs::remove_dir_all(&dir);

    // Status reports every sshd up.
    let out = fl(&["cluster", "status", "--name", &name]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert_eq!(
        text(&out.stdout).matches(" up").count(),
        3,
        "{}",
        text(&out.stdout)
    );

    // Down removes everything that was recorded: processes, namespaces, interfaces, state.
    let pids: Vec<i64> = nodes
        .iter()
        .flat_map(|n| [n["init_pid"].as_i64(), n["unshare_pid"].as_i64()])
        .flatten()
        .collect();
    assert_eq!(pids.len(), 6);
    assert!(pids.iter().all(|p| pid_alive(*p)));
    let bridge = st["bridge"].as_str().unwrap().to_string();
    let started = Instant::now();
    let out = fl(&["cluster", "down", "--name", &name]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    eprintln!("cluster down: {} ms", started.elapsed().as_millis());
    std::mem::forget(cluster);
    for p in &pids {
        assert!(!pid_alive(*p), "pid {p} still alive");
    }
    for n in &nodes {
        assert!(!netns_exists(n["netns"].as_str().unwrap()));
        assert!(!link_exists(n["veth"].as_str().unwrap()));
    }
    assert!(!link_exists(&bridge));
    assert!(
        !Path::new("/var/lib/faultline-clusters")
            .join(&name)
            .exists()
    );
    // Down again: nothing to do, still success.
    let out = fl(&["cluster", "down", "--name", &name]);
    assert!(out.status.success());
    assert!(text(&out.stderr).contains("nothing to remove"));
}

/// Writes an inventory for the cluster's nodes with the given ssh settings.
fn custom_inventory(dir: &Path, addrs: &[&str], ssh: &str) -> PathBuf {
    let mut s = format!("ssh:\n{ssh}nodes:\n");
    for (i, a) in addrs.iter().enumerate() {
        s.push_str(&format!("  - name: n{}\n    host: {a}\n", i + 1));
    }
    static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let p = dir.join(format!("inv-{seq}.yaml"));
    std::fs::write(&p, s).unwrap();
    p
}

#[test]
fn cluster_connection_errors_are_distinct_and_bounded() {
    require_cluster_env!();
    let name = format!("t-ce-{}", std::process::id());
    let (_cluster, inv) = Cluster::up(&name, 2);
    let cdir = inv.parent().unwrap().to_path_buf();
    let st = state(&name);
    let a1 = st["nodes"][0]["addr"].as_str().unwrap().to_string();
    let a2 = st["nodes"][1]["addr"].as_str().unwrap().to_string();
    let dir = std::env::temp_dir().join(format!("fl-ce-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = cdir.join("id_ed25519");
    let kh = cdir.join("known_hosts");
    let base = |extra: &str| {
        format!(
            "  private_key: {}\n  known_hosts: {}\n  host_key_policy: strict\n  config_file: /dev/null\n  connect_timeout_ms: 3000\n{extra}",
            key.display(),
            kh.display()
        )
    };
    let run = |inv: &Path| {
        let started = Instant::now();
        let out = exec(inv.to_str().unwrap(), &[], "true");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(15), "took {took:?}");
        assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
        text(&out.stderr)
    };

    // Baseline: the same settings work.
    let good = custom_inventory(&dir, &[&a1], &base(""));
    assert!(exec(good.to_str().unwrap(), &[], "true").status.success());

    // Nothing listening on that port.
    let err = run(&custom_inventory(&dir, &[&a1], &base("  port: 2222\n")));
    assert!(err.contains("connection refused"), "{err}");

    // A key the hosts do not accept.
    let wrong = dir.join("wrong_key");
    let kg = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&wrong)
        .output()
        .unwrap();
    assert!(kg.status.success());
    let wrong_inv = base("").replace(&key.display().to_string(), &wrong.display().to_string());
    let err = run(&custom_inventory(&dir, &[&a1], &wrong_inv));
    assert!(err.contains("authentication refused"), "{err}");

    // A key file that does not exist: an inventory error, found before connecting.
    let missing_inv = base("").replace(&key.display().to_string(), "/nonexistent/key");
    let missing = custom_inventory(&dir, &[&a1], &missing_inv);
    let out = exec(missing.to_str().unwrap(), &[], "true");
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    let want = format!(
        "{}:2:16: ssh.private_key: cannot read key file /nonexistent/key",
        missing.display()
    );
    assert!(text(&out.stderr).contains(&want), "{}", text(&out.stderr));

    // known_hosts holds another host's key for this address.
    let kh_text = std::fs::read_to_string(&kh).unwrap();
    let n2_key = kh_text
        .lines()
        .find(|l| l.starts_with(&format!("{a2} ")))
        .unwrap();
    let bad_kh = dir.join("bad_known_hosts");
    std::fs::write(&bad_kh, n2_key.replacen(&a2, &a1, 1) + "\n").unwrap();
    let mismatch_inv = base("").replace(&kh.display().to_string(), &bad_kh.display().to_string());
    let err = run(&custom_inventory(&dir, &[&a1], &mismatch_inv));
    assert!(err.contains("HOST KEY MISMATCH"), "{err}");
    // ... and accept-new still refuses a changed key.
    let err = run(&custom_inventory(
        &dir,
        &[&a1],
        &mismatch_inv.replace("strict", "accept-new"),
    ));
    assert!(err.contains("HOST KEY MISMATCH"), "{err}");

    // Strict checking with the host missing from known_hosts.
    let empty_kh = dir.join("empty_known_hosts");
    std::fs::write(&empty_kh, "").unwrap();
    let unknown_inv = base("").replace(&kh.display().to_string(), &empty_kh.display().to_string());
    let err = run(&custom_inventory(&dir, &[&a1], &unknown_inv));
    assert!(err.contains("host key not in"), "{err}");
    // accept-new records it on first contact, then strict accepts it.
    let out = exec(
        custom_inventory(&dir, &[&a1], &unknown_inv.replace("strict", "accept-new"))
            .to_str()
            .unwrap(),
        &[],
        "true",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(std::fs::read_to_string(&empty_kh).unwrap().contains(&a1));
    assert!(
        exec(
            custom_inventory(&dir, &[&a1], &unknown_inv)
                .to_str()
                .unwrap(),
            &[],
            "true"
        )
        .status
        .success()
    );

    // An address in the cluster's subnet where no host lives: bounded by the connect timeout.
    let octets: Vec<&str> = a1.split('.').collect();
    let ghost = format!("{}.{}.{}.250", octets[0], octets[1], octets[2]);
    let err = run(&custom_inventory(&dir, &[&ghost], &base("")));
    assert!(
        err.contains("unreachable") || err.contains("no SSH handshake"),
        "{err}"
    );

    // One bad node among good ones: the good one still runs, the bad one is named.
    let out = exec(
        custom_inventory(&dir, &[&a1, &ghost], &base(""))
            .to_str()
            .unwrap(),
        &[],
        "hostname",
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(lines_of(&out, "n1"), vec!["n1"]);
    assert!(
        text(&out.stderr).contains("1 of 2 node(s) failed"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cluster_down_cleans_up_after_a_failed_up() {
    require_cluster_env!();
    // Short name, so interface names are `fl<name>v<i>` and one can be taken beforehand.
    let name = format!("h{}", std::process::id() % 1_000_000);
    let _ = fl(&["cluster", "down", "--name", &name]);
    let blocker = format!("fl{name}v2");
    let add = Command::new("ip")
        .args(["link", "add", &blocker, "type", "bridge"])
        .output()
        .unwrap();
    assert!(add.status.success(), "{}", text(&add.stderr));

    // Without --keep-on-failure, up removes what it made and reports why.
    let out = fl(&["cluster", "up", "--nodes", "3", "--name", &name]);
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(
        err.contains(&blocker) && err.contains("already exists"),
        "{err}"
    );
    assert!(!netns_exists(&format!("fl-{name}-n1")));
    assert!(!link_exists(&format!("flb{name}")));
    assert!(
        !Path::new("/var/lib/faultline-clusters")
            .join(&name)
            .exists()
    );
    assert!(
        link_exists(&blocker),
        "an interface that is not ours was removed"
    );

    // With it, the half-built cluster stays, and down removes it (and only it).
    let out = fl(&[
        "cluster",
        "up",
        "--nodes",
        "3",
        "--name",
        &name,
        "--keep-on-failure",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(netns_exists(&format!("fl-{name}-n1")));
    assert!(link_exists(&format!("flb{name}")));
    let out = fl(&["cluster", "down", "--name", &name]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!netns_exists(&format!("fl-{name}-n1")));
    assert!(!link_exists(&format!("flb{name}")));
    assert!(!link_exists(&format!("fl{name}v1")));
    assert!(
        link_exists(&blocker),
        "an interface that is not ours was removed"
    );
    let _ = Command::new("ip").args(["link", "del", &blocker]).output();
}

#[test]
fn cluster_usage_errors_exit_64() {
    let out = fl(&["cluster", "up", "--nodes", "0", "--name", "x"]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    let out = fl(&["cluster", "up", "--name", "Bad_Name"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).contains("bad cluster name"));
    let out = fl(&["exec", "-i", "/nonexistent/inventory.yaml", "--", "true"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        text(&out.stderr).contains("no inventory file or local cluster"),
        "{}",
        text(&out.stderr)
    );
    // A located inventory error.
    let dir = std::env::temp_dir().join(format!("fl-ue-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("inv.yaml");
    std::fs::write(&p, "nodes:\n  - name: a\n    host: x\n    port: 99999\n").unwrap();
    let out = fl(&["exec", "-i", p.to_str().unwrap(), "--", "true"]);
    assert_eq!(out.status.code(), Some(64));
    let want = format!("{}:4:11: nodes[0].port: bad port 99999", p.display());
    assert!(text(&out.stderr).contains(&want), "{}", text(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cluster_up_without_root_says_root_is_needed() {
    require_cluster_env!();
    let Ok(setpriv) = which("setpriv") else {
        eprintln!("SKIPPED: setpriv (util-linux) not installed");
        return;
    };
    // A copy the unprivileged user can execute, wherever the build directory lives.
    let dir = std::env::temp_dir().join(format!("fl-nr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bin = dir.join("faultline");
    std::fs::copy(BIN, &bin).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .args(["cluster", "up", "--nodes", "1", "--name", "nonroot"])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("local clusters need root"),
        "{}",
        text(&out.stderr)
    );
}

fn which(tool: &str) -> Result<PathBuf, ()> {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.exists())
        .ok_or(())
}

#[test]
fn cluster_two_clusters_coexist_and_go_down_separately() {
    require_cluster_env!();
    let a = format!("t-ca-{}", std::process::id());
    let b = format!("t-cb-{}", std::process::id());
    let (ca, _) = Cluster::up(&a, 1);
    let (cb, _) = Cluster::up(&b, 1);
    let (sa, sb) = (state(&a), state(&b));
    assert_ne!(sa["subnet"], sb["subnet"]);
    assert_ne!(sa["bridge"], sb["bridge"]);
    for name in [&a, &b] {
        let out = exec(name, &[], "hostname");
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
    }
    assert!(fl(&["cluster", "down", "--name", &a]).status.success());
    std::mem::forget(ca);
    let out = exec(&b, &[], "hostname");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(lines_of(&out, "n1"), vec!["n1"]);
    let list = text(&fl(&["cluster", "list"]).stdout);
    assert!(list.contains(&b) && !list.contains(&a), "{list}");
    drop(cb);
    assert!(!Path::new("/var/lib/faultline-clusters").join(&b).exists());
}

/// Processes whose command line mentions `needle`, other than this test's own.
fn processes_mentioning(needle: &str) -> Vec<(i64, String)> {
    let me = std::process::id() as i64;
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i64>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if pid != me && pid_alive(pid) && cmd.contains(needle) {
            out.push((pid, cmd));
        }
    }
    out
}

/// The control directory whose owner file names `pid`.
fn control_dir_of(pid: u32) -> Option<PathBuf> {
    std::fs::read_dir("/tmp").ok()?.flatten().find_map(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        let owner = std::fs::read_to_string(e.path().join("owner")).ok()?;
        (name.starts_with("flc-") && owner.split_whitespace().next() == Some(&pid.to_string()))
            .then(|| e.path())
    })
}

#[test]
fn killed_controller_leaves_no_ssh_master_behind() {
    require_cluster_env!();
    let name = format!("t-ck-{}", std::process::id());
    let (_cluster, inv) = Cluster::up(&name, 2);
    let inv = inv.to_str().unwrap().to_string();
    let mut controller = Command::new(BIN)
        .args(["exec", "-i", &inv, "--", "sleep 30"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Both masters up and the command running on them.
    let deadline = Instant::now() + Duration::from_secs(15);
    let dir = loop {
        if let Some(d) = control_dir_of(controller.id()) {
            let masters = processes_mentioning(&format!("-S {}/", d.display()));
            if masters.len() == 2 {
                break d;
            }
        }
        assert!(Instant::now() < deadline, "the masters did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(500));
    controller.kill().unwrap(); // SIGKILL: nothing of the controller runs after this.
    controller.wait().unwrap();
    let needle = format!("-S {}/", dir.display());
    let deadline = Instant::now() + Duration::from_secs(3);
    while !processes_mentioning(&needle).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left = processes_mentioning(&needle);
    // Not the test's to leave running if it fails.
    for (pid, _) in &left {
        let _ = Command::new("kill").arg(pid.to_string()).status();
    }
    assert!(left.is_empty(), "masters outlived the controller: {left:?}");
    // The next controller removes the dead one's directory.
    assert!(dir.exists());
    let out = exec(&inv, &[], "true");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!dir.exists(), "{} left behind", dir.display());
}
