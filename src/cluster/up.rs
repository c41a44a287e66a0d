//! `cluster up`: bridge, namespaces, keys, and one init (with sshd) per node.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::down::teardown;
use super::net::{self, Prefix};
use super::state::{Flock, NodeState, State, alive, child_of, proc_start_time, sshd_answers};
use super::{NODES_MAX, cluster_dir, clusters_dir, inventory_path, valid_name_cli};
use crate::exit::usage;

/// How long `up` waits for every sshd to accept connections.
const SSHD_READY_TIMEOUT: Duration = Duration::from_secs(20);

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

pub(super) fn up(
    name: &str,
    nodes: usize,
    keep_on_failure: bool,
    login: Option<super::login::LoginSpec>,
) -> anyhow::Result<ExitCode> {
    valid_name_cli(name)?;
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
    match build(name, nodes, &dir, login.as_ref()) {
        Ok(inv) => {
            eprintln!(
                "cluster {name}: {nodes} node(s) up in {} ms; `faultline exec -i {name} -- hostname`",
                started.elapsed().as_millis()
            );
            outln!("{}", inv.display());
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

fn build(
    name: &str,
    n: usize,
    dir: &Path,
    login: Option<&super::login::LoginSpec>,
) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the faultline executable")?;
    let sshd = net::find_tool("sshd").context("sshd")?;
    let mut state = claim_subnet_and_bridge(name, n)?;
    make_keys(name, dir, &state)?;
    if let Some(l) = login {
        l.create(&mut state, dir)?;
    }
    make_links(&mut state)?;
    start_inits(&mut state, dir, &exe, &sshd)?;
    wait_until_ready(&mut state, dir)?;
    write_inventory(&state, dir)
}

/// Picks a subnet and claims it under a lock, so concurrent `up`s never pick the same one;
/// creates the bridge.
fn claim_subnet_and_bridge(name: &str, n: usize) -> anyhow::Result<State> {
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
    Ok(state)
}

/// One client key for the cluster, one host key per node (generated in parallel).
fn make_keys(name: &str, dir: &Path, state: &State) -> anyhow::Result<()> {
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
    // Readable by a login user too: sshd reads it with the user's rights. It is public.
    write_mode(&dir.join("authorized_keys"), pubkey.as_bytes(), 0o644)?;
    Ok(())
}

/// A namespace per node, and its veth on the bridge with the node's address.
fn make_links(state: &mut State) -> anyhow::Result<()> {
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
    Ok(())
}

/// sshd config and init per node.
fn start_inits(state: &mut State, dir: &Path, exe: &Path, sshd: &Path) -> anyhow::Result<()> {
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
    Ok(())
}

/// Records each init's pid (the child unshare forked), then waits for every sshd.
fn wait_until_ready(state: &mut State, dir: &Path) -> anyhow::Result<()> {
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
    Ok(())
}

/// known_hosts from the host keys we generated (strict checking from the first contact),
/// then the inventory.
fn write_inventory(state: &State, dir: &Path) -> anyhow::Result<PathBuf> {
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
    let inv = inventory_path(&state.name);
    std::fs::write(&inv, inventory_yaml(state))?;
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
    let user = state.login_user.as_deref().unwrap_or("root");
    let mut become_ = String::new();
    if state.login_user.is_some() {
        become_.push_str("  become: sudo\n");
        if let Some(v) = &state.sudo_password_env {
            become_.push_str(&format!("  become_password_env: {v}\n"));
        }
    }
    let mut s = format!(
        "# Local cluster {name} ({subnet}), written by `faultline cluster up`.\n\
         # Remove it with `faultline cluster down --name {name}`.\n\
         ssh:\n  user: {user}\n{become_}  private_key: id_ed25519\n  known_hosts: known_hosts\n  host_key_policy: strict\n  \
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

#[cfg(test)]
mod tests {
    use super::*;

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
            ..State::default()
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
        assert!(inv.ssh.privilege.is_none());
        let login = State {
            login_user: Some("flvm".into()),
            sudo_password_env: Some("FL_PW".into()),
            ..state
        };
        let inv =
            crate::inventory::parse(&inventory_yaml(&login), Path::new("/c/demo/inventory.yaml"))
                .unwrap();
        assert_eq!(inv.nodes[0].user, "flvm");
        let b = inv.nodes[0].privilege.clone().expect("become: sudo");
        assert_eq!(b.password, Some(crate::inventory::BecomePassword::Env("FL_PW".into())));
    }
}
