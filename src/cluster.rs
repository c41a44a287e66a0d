//! `faultline cluster up|down|status|list`: a local cluster of hosts on this machine.
//!
//! Each node is a network namespace with one veth on a bridge in the root namespace, an
//! address on a /24 of its own (no default route: it reaches its peers and the controller,
//! nothing else), and its own PID, mount and UTS namespaces, where `faultline cluster init`
//! is PID 1 and runs a real `sshd` with the node's host key. So the controller drives it
//! exactly as it drives a VM: over SSH, by address.
//!
//! Everything `up` creates is recorded in `<clusters dir>/NAME/cluster.json` *before* it is
//! created, so `down` removes exactly that, also after an `up` that failed half-way. Names of
//! namespaces and interfaces derive from the cluster name, so `down` can still sweep them
//! by name if the record itself is lost.

mod init;
pub mod net;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::exit::usage;
use net::Prefix;

/// Where clusters keep their state; `FAULTLINE_CLUSTERS_DIR` overrides it.
pub const DEFAULT_CLUSTERS_DIR: &str = "/var/lib/faultline-clusters";
pub const NODES_MAX: usize = 200;
/// How long `up` waits for every sshd to accept connections.
const SSHD_READY_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(clap::Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    cmd: ClusterCmd,
}

#[derive(clap::Subcommand)]
enum ClusterCmd {
    /// Create a cluster; prints its inventory path as the last line of stdout.
    Up {
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        #[arg(long, default_value = "local")]
        name: String,
        /// Leave what was created in place when `up` fails (for debugging); `down` removes it.
        #[arg(long)]
        keep_on_failure: bool,
    },
    /// Remove a cluster and everything it created. Succeeds if it is already gone.
    Down {
        #[arg(long, default_value = "local")]
        name: String,
    },
    /// Each node's address, init process and whether its sshd answers.
    Status {
        #[arg(long, default_value = "local")]
        name: String,
    },
    /// Clusters on this machine.
    List,
    /// PID 1 of a node (started by `up`).
    #[command(hide = true)]
    Init {
        #[arg(long)]
        node_dir: PathBuf,
        #[arg(long)]
        hostname: String,
        #[arg(long)]
        sshd: PathBuf,
    },
}

pub fn run(args: ClusterArgs) -> anyhow::Result<ExitCode> {
    match args.cmd {
        ClusterCmd::Up {
            nodes,
            name,
            keep_on_failure,
        } => up(&name, nodes, keep_on_failure),
        ClusterCmd::Down { name } => down(&name),
        ClusterCmd::Status { name } => status(&name),
        ClusterCmd::List => list(),
        ClusterCmd::Init {
            node_dir,
            hostname,
            sshd,
        } => init::run(&node_dir, &hostname, &sshd),
    }
}

pub fn clusters_dir() -> PathBuf {
    std::env::var_os("FAULTLINE_CLUSTERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| DEFAULT_CLUSTERS_DIR.into())
}

pub fn cluster_dir(name: &str) -> PathBuf {
    clusters_dir().join(name)
}

/// The inventory a cluster writes; `-i NAME` resolves to it.
pub fn inventory_path(name: &str) -> PathBuf {
    cluster_dir(name).join("inventory.yaml")
}

/// Cluster names become parts of namespace and interface names.
pub fn valid_name(name: &str) -> Result<(), String> {
    let ok = (1..=32).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "bad cluster name {name:?}: use 1-32 characters from [a-z0-9-], starting with a letter"
        ))
    }
}

/// What `up` created, written before each thing is created.
#[derive(Serialize, Deserialize, Debug, Default)]
struct State {
    name: String,
    subnet: String,
    bridge: String,
    bridge_created: bool,
    nodes: Vec<NodeState>,
}

#[derive(Serialize, Deserialize, Debug, Default, Clone)]
struct NodeState {
    name: String,
    netns: String,
    veth: String,
    /// Set just before the namespace / veth is created, after checking it did not exist,
    /// so `down` never removes a same-named thing that was not ours.
    #[serde(default)]
    netns_created: bool,
    #[serde(default)]
    veth_created: bool,
    addr: String,
    /// `unshare` (parent of init, in the root PID namespace), with its start time so a
    /// recycled pid is never signalled.
    unshare_pid: Option<i32>,
    unshare_start: Option<u64>,
    init_pid: Option<i32>,
    init_start: Option<u64>,
}

impl State {
    fn path(name: &str) -> PathBuf {
        cluster_dir(name).join("cluster.json")
    }

    fn load(name: &str) -> anyhow::Result<Option<State>> {
        let p = State::path(name);
        match std::fs::read(&p) {
            Ok(b) => Ok(Some(
                serde_json::from_slice(&b).with_context(|| format!("corrupt {}", p.display()))?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("read {}", p.display())),
        }
    }

    fn save(&self) -> anyhow::Result<()> {
        let p = State::path(&self.name);
        let tmp = p.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("write {}", tmp.display()))?;
        std::fs::rename(&tmp, &p).with_context(|| format!("rename {}", p.display()))?;
        Ok(())
    }
}

fn preflight() -> anyhow::Result<()> {
    if !net::is_root() {
        bail!(
            "local clusters need root (network namespaces, bridges and mounts need CAP_SYS_ADMIN and CAP_NET_ADMIN)"
        );
    }
    if let Some(m) = net::missing_tools() {
        bail!("{m}");
    }
    Ok(())
}

fn up(name: &str, nodes: usize, keep_on_failure: bool) -> anyhow::Result<ExitCode> {
    valid_name(name).map_err(usage)?;
    if nodes == 0 || nodes > NODES_MAX {
        return Err(usage(format!(
            "--nodes must be 1..={NODES_MAX}, got {nodes}"
        )));
    }
    preflight()?;
    let started = Instant::now();
    // With br_netfilter, bridged frames traverse the root namespace's iptables; a FORWARD
    // policy of DROP (common with container runtimes) would then cut the nodes off from
    // each other. Say so rather than let a test fail mysteriously.
    let br_nf = std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables")
        .is_ok_and(|v| v.trim() == "1");
    if br_nf
        && net::run("iptables", &["-w", "-S", "FORWARD"])
            .is_ok_and(|rules| !rules.lines().any(|l| l.trim() == "-P FORWARD ACCEPT"))
    {
        eprintln!(
            "faultline: warning: net.bridge.bridge-nf-call-iptables=1 and the FORWARD policy is not \
             ACCEPT: traffic between nodes must be accepted by the root namespace's FORWARD chain"
        );
    }
    std::fs::create_dir_all(clusters_dir())
        .with_context(|| format!("mkdir {}", clusters_dir().display()))?;
    let dir = cluster_dir(name);
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(usage(format!(
                "cluster {name:?} already exists ({}); remove it with `faultline cluster down --name {name}`",
                dir.display()
            )));
        }
        Err(e) => return Err(e).with_context(|| format!("mkdir {}", dir.display())),
    }
    match build(name, nodes, &dir) {
        Ok(inv) => {
            eprintln!(
                "cluster {name}: {nodes} node(s) up in {} ms; `faultline exec -i {name} -- hostname`",
                started.elapsed().as_millis()
            );
            println!("{}", inv.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) if keep_on_failure => Err(e.context(format!(
            "cluster {name}: left in place; `faultline cluster down --name {name}` removes it"
        ))),
        Err(e) => {
            if let Err(d) = teardown(name) {
                eprintln!("faultline: cleanup after failed up also failed: {d:#}");
            }
            Err(e.context(format!(
                "cluster {name}: up failed (what it created was removed)"
            )))
        }
    }
}

fn build(name: &str, n: usize, dir: &Path) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the faultline executable")?;
    let sshd = net::find_tool("sshd").context("sshd")?;

    // Pick a subnet and claim it under a lock, so concurrent `up`s never pick the same one.
    let mut state = State {
        name: name.into(),
        bridge: net::bridge_name(name),
        ..State::default()
    };
    {
        let _lock = Flock::acquire(&clusters_dir().join(".lock"))?;
        let subnet = allocate_subnet(name)?;
        state.subnet = subnet.to_string();
        for i in 1..=n {
            let node = format!("n{i}");
            state.nodes.push(NodeState {
                netns: net::netns_name(name, &node),
                veth: net::veth_name(name, i),
                addr: subnet.host(i as u32 + 1).to_string(),
                name: node,
                ..NodeState::default()
            });
        }
        if net::link_exists(&state.bridge) {
            bail!(
                "interface {} already exists (left by an earlier cluster {name}?); run `faultline cluster down --name {name}`",
                state.bridge
            );
        }
        state.bridge_created = true;
        state.save()?;
        let br = state.bridge.clone();
        net::run("ip", &["link", "add", &br, "type", "bridge"])?;
        net::run(
            "ip",
            &["addr", "add", &format!("{}/24", subnet.host(1)), "dev", &br],
        )?;
        net::run("ip", &["link", "set", &br, "up"])?;
    }

    // Keys: one client key for the cluster, one host key per node (generated in parallel).
    let client_key = dir.join("id_ed25519");
    let mut keygens = vec![keygen(&client_key, &format!("faultline-{name}"))?];
    for node in &state.nodes {
        let ndir = dir.join("nodes").join(&node.name);
        std::fs::create_dir_all(ndir.join("root"))
            .with_context(|| format!("mkdir {}", ndir.display()))?;
        keygens.push(keygen(
            &ndir.join("ssh_host_ed25519_key"),
            &format!("{}-{}", name, node.name),
        )?);
    }
    for k in keygens {
        let out = k.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "ssh-keygen failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    let pubkey = std::fs::read_to_string(dir.join("id_ed25519.pub"))?;
    write_mode(&dir.join("authorized_keys"), pubkey.as_bytes(), 0o600)?;

    // Namespaces and links.
    for i in 0..state.nodes.len() {
        let node = state.nodes[i].clone();
        if Path::new("/run/netns").join(&node.netns).exists() {
            bail!("network namespace {} already exists", node.netns);
        }
        state.nodes[i].netns_created = true;
        state.save()?;
        net::run("ip", &["netns", "add", &node.netns])?;
        if net::link_exists(&node.veth) {
            bail!(
                "interface {} already exists (not removed: it is not this cluster's)",
                node.veth
            );
        }
        state.nodes[i].veth_created = true;
        state.save()?;
        net::run(
            "ip",
            &[
                "link",
                "add",
                &node.veth,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &node.netns,
            ],
        )?;
        net::run(
            "ip",
            &["link", "set", &node.veth, "master", &state.bridge, "up"],
        )?;
        let ns = node.netns.as_str();
        net::run(
            "ip",
            &[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/24", node.addr),
                "dev",
                "eth0",
            ],
        )?;
        net::run("ip", &["-n", ns, "link", "set", "eth0", "up"])?;
        net::run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
    }

    // sshd and init per node.
    for i in 0..state.nodes.len() {
        let node = state.nodes[i].clone();
        let ndir = dir.join("nodes").join(&node.name);
        std::fs::write(
            ndir.join("sshd_config"),
            sshd_config(&node.addr, &ndir, dir),
        )?;
        let log = std::fs::File::create(ndir.join("init.log"))?;
        let mut cmd = Command::new(net::find_tool("ip").context("ip")?);
        cmd.args(["netns", "exec", &node.netns])
            .arg(net::find_tool("unshare").context("unshare")?)
            .args([
                "--pid",
                "--fork",
                "--mount",
                "--uts",
                "--mount-proc",
                "--propagation",
                "private",
                "--",
            ])
            .arg(&exe)
            .args(["cluster", "init", "--hostname", &node.name, "--node-dir"])
            .arg(&ndir)
            .arg("--sshd")
            .arg(&sshd)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // SAFETY: setsid is async-signal-safe; detaches the node from our session and
        // terminal so it outlives this command.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let child = cmd.spawn().context("spawn node init")?;
        let pid = child.id() as i32;
        // Not waited for: it runs until `down`. The handle is dropped without killing it.
        std::mem::forget(child);
        state.nodes[i].unshare_pid = Some(pid);
        state.nodes[i].unshare_start = proc_start_time(pid);
        state.save()?;
    }

    // Record each init's pid (the child unshare forked), then wait for every sshd.
    let deadline = Instant::now() + SSHD_READY_TIMEOUT;
    for i in 0..state.nodes.len() {
        let up = state.nodes[i].unshare_pid.expect("set above");
        loop {
            if let Some(pid) = child_of(up) {
                state.nodes[i].init_pid = Some(pid);
                state.nodes[i].init_start = proc_start_time(pid);
                break;
            }
            if Instant::now() > deadline || !alive(up, state.nodes[i].unshare_start) {
                bail!(
                    "node {}: init did not start: {}",
                    state.nodes[i].name,
                    node_logs(dir, &state.nodes[i].name)
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    state.save()?;
    let mut pending: Vec<usize> = (0..state.nodes.len()).collect();
    while !pending.is_empty() {
        pending.retain(|&i| !sshd_answers(&state.nodes[i].addr, Duration::from_millis(200)));
        if pending.is_empty() {
            break;
        }
        for &i in &pending {
            if !alive(
                state.nodes[i].init_pid.unwrap_or(0),
                state.nodes[i].init_start,
            ) {
                bail!(
                    "node {}: init exited: {}",
                    state.nodes[i].name,
                    node_logs(dir, &state.nodes[i].name)
                );
            }
        }
        if Instant::now() > deadline {
            let n = &state.nodes[pending[0]];
            bail!(
                "node {}: sshd on {}:22 not answering after {} s: {}",
                n.name,
                n.addr,
                SSHD_READY_TIMEOUT.as_secs(),
                node_logs(dir, &n.name)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }

    // known_hosts from the host keys we generated: strict checking from the first contact.
    let mut kh = String::new();
    for node in &state.nodes {
        let host_pub = std::fs::read_to_string(
            dir.join("nodes")
                .join(&node.name)
                .join("ssh_host_ed25519_key.pub"),
        )?;
        let mut parts = host_pub.split_whitespace();
        let (t, k) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        kh.push_str(&format!("{} {t} {k}\n", node.addr));
    }
    std::fs::write(dir.join("known_hosts"), kh)?;
    let inv = inventory_path(name);
    std::fs::write(&inv, inventory_yaml(&state))?;
    Ok(inv)
}

fn keygen(path: &Path, comment: &str) -> anyhow::Result<std::process::Child> {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    Command::new(net::find_tool("ssh-keygen").context("ssh-keygen")?)
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawn ssh-keygen")
}

fn write_mode(path: &Path, data: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    f.write_all(data)?;
    Ok(())
}

fn sshd_config(addr: &str, ndir: &Path, dir: &Path) -> String {
    format!(
        "# sshd of local cluster node; written by `faultline cluster up`\n\
         ListenAddress {addr}:22\n\
         HostKey {hk}\n\
         AuthorizedKeysFile {ak}\n\
         PermitRootLogin prohibit-password\n\
         PubkeyAuthentication yes\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         UsePAM no\n\
         PidFile none\n\
         UseDNS no\n\
         PrintMotd no\n\
         MaxSessions 10\n\
         MaxStartups 100:30:200\n\
         ClientAliveInterval 15\n\
         Subsystem sftp internal-sftp\n",
        hk = ndir.join("ssh_host_ed25519_key").display(),
        ak = dir.join("authorized_keys").display(),
    )
}

fn inventory_yaml(state: &State) -> String {
    let mut s = format!(
        "# Local cluster {name} ({subnet}), written by `faultline cluster up`.\n\
         # Remove it with `faultline cluster down --name {name}`.\n\
         ssh:\n  user: root\n  private_key: id_ed25519\n  known_hosts: known_hosts\n  host_key_policy: strict\n  \
         config_file: /dev/null\n  connect_timeout_ms: 5000\n  command_timeout_ms: 60000\nnodes:\n",
        name = state.name,
        subnet = state.subnet
    );
    for n in &state.nodes {
        s.push_str(&format!("  - name: {}\n    host: {}\n", n.name, n.addr));
    }
    s
}

fn allocate_subnet(name: &str) -> anyhow::Result<Prefix> {
    let mut used = net::prefixes_in_use()?;
    // Clusters still being built may not have their bridge address yet.
    if let Ok(rd) = std::fs::read_dir(clusters_dir()) {
        for e in rd.flatten() {
            let other = e.file_name().to_string_lossy().into_owned();
            if other == name {
                continue;
            }
            if let Ok(Some(s)) = State::load(&other) {
                if let Some(p) = Prefix::parse(&s.subnet) {
                    used.push(p);
                }
            }
        }
    }
    net::candidate_subnets(name)
        .find(|c| !used.iter().any(|u| u.overlaps(c)))
        .context("no free /24 left in 10.224.0.0-10.254.255.0")
}

fn down(name: &str) -> anyhow::Result<ExitCode> {
    valid_name(name).map_err(usage)?;
    if !net::is_root() {
        bail!("removing a local cluster needs root");
    }
    let existed = cluster_dir(name).exists();
    teardown(name)?;
    if existed {
        eprintln!("cluster {name}: removed");
    } else {
        eprintln!("cluster {name}: nothing to remove");
    }
    Ok(ExitCode::SUCCESS)
}

/// Removes what the state file records, then sweeps names derived from the cluster name.
/// Every step tolerates things already gone.
fn teardown(name: &str) -> anyhow::Result<()> {
    let state = State::load(name).unwrap_or_else(|e| {
        eprintln!("faultline: {e:#}; removing by name only");
        None
    });
    let mut netns: Vec<String> = Vec::new();
    let mut links: Vec<String> = Vec::new();
    if let Some(s) = &state {
        // Stopping init stops the node: the kernel kills the rest of its PID namespace.
        let inits: Vec<(i32, Option<u64>)> = s
            .nodes
            .iter()
            .filter_map(|n| n.init_pid.map(|p| (p, n.init_start)))
            .collect();
        stop_all(&inits);
        let unshares: Vec<(i32, Option<u64>)> = s
            .nodes
            .iter()
            .filter_map(|n| n.unshare_pid.map(|p| (p, n.unshare_start)))
            .collect();
        stop_all(&unshares);
        for n in s.nodes.iter() {
            if n.netns_created {
                netns.push(n.netns.clone());
            }
            if n.veth_created {
                links.push(n.veth.clone());
            }
        }
        if s.bridge_created {
            links.push(s.bridge.clone());
        }
    }
    // Without a record (state file lost), sweep by name: namespaces `fl-NAME-n*` and the bridge.
    let prefix = format!("fl-{name}-n");
    let listed = if state.is_none() {
        net::run("ip", &["netns", "list"]).ok()
    } else {
        None
    };
    if let Some(list) = listed {
        for line in list.lines() {
            let ns = line.split_whitespace().next().unwrap_or("");
            if ns
                .strip_prefix(&prefix)
                .is_some_and(|r| r.chars().all(|c| c.is_ascii_digit()) && !r.is_empty())
                && !netns.iter().any(|x| x == ns)
            {
                netns.push(ns.to_string());
            }
        }
    }
    let br = net::bridge_name(name);
    if !links.contains(&br) && state.is_none() && net::link_exists(&br) {
        links.push(br);
    }
    for ns in &netns {
        // Anything still running in the namespace is ours (we made the namespace).
        if let Ok(pids) = net::run("ip", &["netns", "pids", ns]) {
            let pids: Vec<(i32, Option<u64>)> = pids
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .map(|p| (p, proc_start_time(p)))
                .collect();
            stop_all(&pids);
        }
        net::run_quiet("ip", &["netns", "del", ns]);
    }
    for l in &links {
        if net::link_exists(l) {
            net::run_quiet("ip", &["link", "del", l]);
        }
    }
    let left_ns: Vec<&String> = netns
        .iter()
        .filter(|ns| Path::new("/run/netns").join(ns).exists())
        .collect();
    let left_links: Vec<&String> = links.iter().filter(|l| net::link_exists(l)).collect();
    if !left_ns.is_empty() || !left_links.is_empty() {
        bail!(
            "cluster {name}: could not remove namespaces {left_ns:?} / interfaces {left_links:?}"
        );
    }
    let dir = cluster_dir(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    Ok(())
}

/// SIGTERM, up to 2 s grace, then SIGKILL; only pids whose start time still matches.
fn stop_all(pids: &[(i32, Option<u64>)]) {
    let live: Vec<(i32, Option<u64>)> = pids
        .iter()
        .copied()
        .filter(|(p, st)| *p > 1 && alive(*p, *st))
        .collect();
    for (p, _) in &live {
        // SAFETY: signalling a pid we verified is the process we started.
        unsafe { libc::kill(*p, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && live.iter().any(|(p, st)| alive(*p, *st)) {
        std::thread::sleep(Duration::from_millis(10));
    }
    for (p, st) in &live {
        if alive(*p, *st) {
            // SAFETY: as above.
            unsafe { libc::kill(*p, libc::SIGKILL) };
        }
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && live.iter().any(|(p, st)| alive(*p, *st)) {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Fields of /proc/PID/stat after the command name.
fn proc_stat(pid: i32) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(String::from).collect())
}

pub(crate) fn proc_start_time(pid: i32) -> Option<u64> {
    proc_stat(pid)?.get(19)?.parse().ok()
}

/// Alive, not a zombie, and (when known) the same process that was recorded.
fn alive(pid: i32, start: Option<u64>) -> bool {
    if pid <= 0 {
        return false;
    }
    match proc_stat(pid) {
        None => false,
        Some(f) => {
            f.first().map(|s| s != "Z" && s != "X").unwrap_or(false)
                && (start.is_none() || f.get(19).and_then(|s| s.parse().ok()) == start)
        }
    }
}

fn child_of(parent: i32) -> Option<i32> {
    let children = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).ok();
    if let Some(c) = children.and_then(|c| c.split_whitespace().next().and_then(|p| p.parse().ok()))
    {
        return Some(c);
    }
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if proc_stat(pid).and_then(|f| f.get(1)?.parse::<i32>().ok()) == Some(parent) {
            return Some(pid);
        }
    }
    None
}

/// sshd answers when it sends its banner.
fn sshd_answers(addr: &str, timeout: Duration) -> bool {
    let Ok(ip) = addr.parse::<Ipv4Addr>() else {
        return false;
    };
    let Ok(mut s) = TcpStream::connect_timeout(&SocketAddr::from((ip, 22)), timeout) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(timeout));
    let mut buf = [0u8; 8];
    matches!(s.read(&mut buf), Ok(n) if n >= 4 && &buf[..4] == b"SSH-")
}

fn node_logs(dir: &Path, node: &str) -> String {
    let nd = dir.join("nodes").join(node);
    let mut s = String::new();
    for f in ["init.log", "sshd.log"] {
        if let Ok(t) = std::fs::read_to_string(nd.join(f)) {
            let t = t.trim();
            if !t.is_empty() {
                let tail: Vec<&str> = t.lines().rev().take(5).collect();
                s.push_str(&format!(
                    "[{f}] {} ",
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                ));
            }
        }
    }
    if s.is_empty() {
        "(no log output)".into()
    } else {
        s
    }
}

fn status(name: &str) -> anyhow::Result<ExitCode> {
    valid_name(name).map_err(usage)?;
    let Some(state) = State::load(name)? else {
        return Err(usage(format!("no local cluster named {name:?}")));
    };
    println!(
        "cluster {} subnet {} bridge {}",
        state.name, state.subnet, state.bridge
    );
    println!("inventory {}", inventory_path(name).display());
    let mut all_ok = true;
    println!(
        "{:<6} {:<16} {:<10} {:<8}",
        "node", "address", "init", "sshd"
    );
    for n in &state.nodes {
        let init = match n.init_pid {
            Some(p) if alive(p, n.init_start) => format!("{p}"),
            Some(_) => "dead".into(),
            None => "-".into(),
        };
        let ssh = sshd_answers(&n.addr, Duration::from_millis(1000));
        all_ok &= ssh;
        println!(
            "{:<6} {:<16} {:<10} {:<8}",
            n.name,
            n.addr,
            init,
            if ssh { "up" } else { "DOWN" }
        );
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::exit::HARNESS)
    })
}

fn list() -> anyhow::Result<ExitCode> {
    let mut names: Vec<String> = match std::fs::read_dir(clusters_dir()) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    for n in names {
        match State::load(&n) {
            Ok(Some(s)) => println!("{n}\t{} node(s)\t{}", s.nodes.len(), s.subnet),
            _ => println!("{n}\t(incomplete)"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// An exclusive `flock` held until dropped.
struct Flock(std::fs::File);

impl Flock {
    fn acquire(path: &Path) -> anyhow::Result<Flock> {
        use std::os::fd::AsRawFd;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("open {}", path.display()))?;
        // SAFETY: valid fd owned by f.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            bail!(
                "flock {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            );
        }
        Ok(Flock(f))
    }
}

impl Drop for Flock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: valid fd owned by self.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_names_are_checked() {
        assert!(valid_name("local").is_ok());
        assert!(valid_name("t-exec-12345").is_ok());
        for bad in ["", "Local", "1abc", "a_b", "a-", "a/b", &"x".repeat(33)] {
            assert!(valid_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn written_inventory_parses_back() {
        let state = State {
            name: "demo".into(),
            subnet: "10.230.1.0/24".into(),
            bridge: "flbdemo".into(),
            bridge_created: true,
            nodes: vec![
                NodeState {
                    name: "n1".into(),
                    addr: "10.230.1.2".into(),
                    ..Default::default()
                },
                NodeState {
                    name: "n2".into(),
                    addr: "10.230.1.3".into(),
                    ..Default::default()
                },
            ],
        };
        let inv =
            crate::inventory::parse(&inventory_yaml(&state), Path::new("/c/demo/inventory.yaml"))
                .unwrap();
        assert_eq!(inv.node_names(), vec!["n1", "n2"]);
        assert_eq!(
            inv.ssh.private_key.as_deref(),
            Some(Path::new("/c/demo/id_ed25519"))
        );
        assert_eq!(
            inv.ssh.host_key_policy,
            crate::inventory::HostKeyPolicy::Strict
        );
    }

    #[test]
    fn own_process_start_time_is_readable() {
        let me = std::process::id() as i32;
        assert!(proc_start_time(me).is_some());
        assert!(alive(me, proc_start_time(me)));
        assert!(!alive(me, proc_start_time(me).map(|s| s + 1)));
    }
}
