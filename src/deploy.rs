//! Putting the bundled node on the hosts and taking it off again.
//!
//! The controller uploads its own executable (the node is the `faultline node` subcommand
//! of the same binary), content-addressed so a host that already has this build is
//! skipped, writes each node's YAML config, and starts the node as a daemon detached from
//! the SSH session. Stopping acts only on the pid in the node's own pidfile, after checking
//! that the pid still belongs to a faultline node.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::control::{Control, quote};

/// Where things live on a host.
#[derive(Debug, Clone)]
pub struct Layout {
    pub bin: String,
    pub data_dir: String,
    pub client_port: u16,
    pub peer_port: u16,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            bin: "/var/lib/faultline/bin/faultline".into(),
            data_dir: "/var/lib/faultline/node".into(),
            client_port: 7000,
            peer_port: 7001,
        }
    }
}

impl Layout {
    pub fn config(&self) -> String {
        format!("{}/node.yaml", self.data_dir)
    }
    pub fn pidfile(&self) -> String {
        format!("{}/node.pid", self.data_dir)
    }
    pub fn logs(&self) -> String {
        format!("{}/logs", self.data_dir)
    }
    /// Where the daemon's stdout and stderr go (panics, early startup errors).
    pub fn console_log(&self) -> String {
        format!("{}/logs/console.log", self.data_dir)
    }
}

const SHORT: Duration = Duration::from_secs(20);

/// The shell command that starts the node on a host, detached from the SSH session
/// (also what the kill nemesis uses to restart it). `sets` are `--set KEY=VALUE` knobs.
pub fn start_command(layout: &Layout, sets: &[(String, String)]) -> String {
    let mut cmd = format!("{} node --config {}", quote(&layout.bin), quote(&layout.config()));
    for (k, v) in sets {
        cmd.push_str(&format!(" --set {}", quote(&format!("{k}={v}"))));
    }
    format!(
        "mkdir -p {logs} && setsid nohup {cmd} >> {console} 2>&1 < /dev/null &",
        logs = quote(&layout.logs()),
        console = quote(&layout.console_log()),
    )
}

/// A shell snippet that sets `$pid` to the node's pid if its pidfile names a live faultline
/// node process, else to the empty string. Never matches a process by name alone.
fn live_pid_sh(layout: &Layout) -> String {
    format!(
        r#"pid=$(cat {pf} 2>/dev/null | tr -dc 0-9); if [ -n "$pid" ] && [ -r /proc/$pid/cmdline ] && tr '\0' ' ' < /proc/$pid/cmdline | grep -q -- ' node '; then :; else pid=; fi"#,
        pf = quote(&layout.pidfile())
    )
}

/// Stops the node on every host (a leftover from an earlier run, or this run's): resumes
/// it if paused, SIGTERM, then SIGKILL after a grace period. Returns per-host notes.
pub async fn stop(control: &Control, layout: &Layout) -> anyhow::Result<Vec<(String, String)>> {
    let script = format!(
        r#"{live}
if [ -z "$pid" ]; then echo "not running"; exit 0; fi
kill -CONT "$pid" 2>/dev/null; kill -TERM "$pid" 2>/dev/null
i=0; while [ $i -lt 50 ] && kill -0 "$pid" 2>/dev/null; do sleep 0.1; i=$((i+1)); done
if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null; sleep 0.2; echo "killed $pid"; else echo "stopped $pid"; fi
rm -f {pf}"#,
        live = live_pid_sh(layout),
        pf = quote(&layout.pidfile())
    );
    let mut notes = Vec::new();
    let mut errors = Vec::new();
    for (node, r) in control.run_all(&script, SHORT).await {
        match r.and_then(|o| o.check()) {
            Ok(o) => notes.push((node, o.stdout_str().trim().to_string())),
            Err(e) => errors.push(format!("{node}: {e}")),
        }
    }
    if !errors.is_empty() {
        bail!("cannot stop the node: {}", errors.join("; "));
    }
    Ok(notes)
}

/// The controller's glibc version ("2.36"), or `None` when it has none (static build).
fn local_glibc() -> Option<String> {
    let out = std::process::Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
        .ok()?;
    let s = String::from_utf8(out.stdout).ok()?;
    s.split_whitespace().nth(1).map(str::to_string)
}

fn version_tuple(v: &str) -> Vec<u64> {
    v.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

/// Checks every host can run this binary and the test: same architecture, a glibc at least
/// as new as the controller's, the node's ports free, and the tools the run needs.
pub async fn preflight(control: &Control, layout: &Layout, tools: &[&str]) -> anyhow::Result<()> {
    let ports: Vec<String> = [layout.client_port, layout.peer_port]
        .iter()
        .map(|p| format!("{p:04X}"))
        .collect();
    let mut script = String::from(
        "echo arch=$(uname -m); echo glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | cut -d' ' -f2)\n",
    );
    script.push_str(&format!(
        "echo listening=$(awk 'NR>1 && $4==\"0A\" {{split($2,a,\":\"); print a[length(a)]}}' /proc/net/tcp /proc/net/tcp6 2>/dev/null | grep -x -e {} -e {} | sort -u | tr '\\n' ' ')\n",
        ports[0], ports[1]
    ));
    for t in tools {
        script.push_str(&format!("command -v {t} >/dev/null 2>&1 || echo missing={t}\n"));
    }
    let want_arch = std::env::consts::ARCH;
    let want_glibc = local_glibc();
    let mut problems = Vec::new();
    for (node, r) in control.run_all(&script, SHORT).await {
        let out = match r.and_then(|o| o.check()) {
            Ok(o) => o.stdout_str(),
            Err(e) => {
                problems.push(format!("{node}: pre-flight check failed: {e}"));
                continue;
            }
        };
        for line in out.lines() {
            let (k, v) = line.split_once('=').unwrap_or((line, ""));
            let v = v.trim();
            match k {
                "arch" if v != want_arch => problems.push(format!(
                    "{node}: architecture {v} does not match the controller's {want_arch}; \
                     the bundled binary cannot run there"
                )),
                "glibc" => {
                    if let Some(want) = &want_glibc {
                        if v.is_empty() {
                            problems.push(format!(
                                "{node}: no glibc found (controller built against glibc {want})"
                            ));
                        } else if version_tuple(v) < version_tuple(want) {
                            problems.push(format!(
                                "{node}: glibc {v} is older than the controller's {want}; \
                                 the bundled binary needs at least {want}"
                            ));
                        }
                    }
                }
                "listening" if !v.is_empty() => {
                    let taken: Vec<String> = v
                        .split_whitespace()
                        .filter_map(|h| u16::from_str_radix(h, 16).ok())
                        .map(|p| p.to_string())
                        .collect();
                    problems.push(format!(
                        "{node}: port(s) {} already in use by a process faultline did not start",
                        taken.join(", ")
                    ));
                }
                "missing" => problems.push(format!("{node}: required tool `{v}` is not installed")),
                _ => {}
            }
        }
    }
    if !problems.is_empty() {
        bail!("pre-flight failed:\n  {}", problems.join("\n  "));
    }
    Ok(())
}

/// Uploads this executable to every host (skipped where the same build is present).
pub async fn install(control: &Control, layout: &Layout) -> anyhow::Result<()> {
    // The running image, not its path: a rebuild during a run replaces the file on disk,
    // and nodes must get the build whose protocol this controller speaks.
    let exe = if Path::new("/proc/self/exe").exists() {
        std::path::PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe().context("cannot locate the faultline executable")?
    };
    let dir = Path::new(&layout.bin)
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let mkdir = format!("mkdir -p {} {}", quote(&dir), quote(&layout.logs()));
    for (node, r) in control.run_all(&mkdir, SHORT).await {
        r.and_then(|o| o.check())
            .with_context(|| format!("{node}: cannot create directories"))?;
    }
    let names = control.node_names();
    let mut errors = Vec::new();
    for (node, r) in control.upload(&names, &exe, &layout.bin, 0o755).await {
        match r {
            Ok(u) => tracing::info!(node = %node, result = ?u, "binary installed"),
            Err(e) => errors.push(format!("{node}: {e}")),
        }
    }
    if !errors.is_empty() {
        bail!("cannot install the node binary: {}", errors.join("; "));
    }
    Ok(())
}

/// `host:port`, with an IPv6 literal in brackets.
pub fn socket_addr(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// One node's config file.
pub fn node_yaml(layout: &Layout, algo: &str, id: &str, hosts: &[(String, String)]) -> String {
    let own = hosts
        .iter()
        .find(|(n, _)| n == id)
        .map(|(_, h)| h.as_str())
        .unwrap_or("0.0.0.0");
    let mut y = format!(
        "id: {id}\nalgo: {algo}\ndata_dir: {dd}\nlisten_client: {lc}\nlisten_peer: {lp}\npeers:\n",
        id = yaml_str(id),
        dd = yaml_str(&layout.data_dir),
        lc = yaml_str(&socket_addr(own, layout.client_port)),
        lp = yaml_str(&socket_addr(own, layout.peer_port)),
    );
    for (n, h) in hosts {
        y.push_str(&format!(
            "  - id: {}\n    client_addr: {}\n    peer_addr: {}\n",
            yaml_str(n),
            yaml_str(&socket_addr(h, layout.client_port)),
            yaml_str(&socket_addr(h, layout.peer_port)),
        ));
    }
    y
}

fn yaml_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// Wipes each host's node data (a test starts from empty state), writes the configs.
pub async fn configure(control: &Control, layout: &Layout, algo: &str) -> anyhow::Result<()> {
    let hosts: Vec<(String, String)> = control
        .nodes()
        .iter()
        .map(|n| (n.name.clone(), n.host.clone()))
        .collect();
    let wipe = format!(
        "rm -rf {dd} && mkdir -p {logs}",
        dd = quote(&layout.data_dir),
        logs = quote(&layout.logs())
    );
    for (node, r) in control.run_all(&wipe, SHORT).await {
        r.and_then(|o| o.check())
            .with_context(|| format!("{node}: cannot reset {}", layout.data_dir))?;
    }
    // Every host gets its own file, written in parallel.
    let writes = hosts.iter().map(|(name, _)| {
        let yaml = node_yaml(layout, algo, name, &hosts);
        async move {
            control
                .put_bytes(&[name.as_str()], yaml.as_bytes(), &layout.config(), 0o644)
                .await
        }
    });
    for r in futures::future::join_all(writes).await {
        for (node, r) in r {
            r.with_context(|| format!("{node}: cannot write {}", layout.config()))?;
        }
    }
    Ok(())
}

/// Starts the node on every host and checks each wrote its pidfile.
pub async fn start(control: &Control, layout: &Layout, sets: &[(String, String)]) -> anyhow::Result<()> {
    let cmd = start_command(layout, sets);
    let script = format!(
        "{cmd}\ni=0; while [ $i -lt 100 ]; do {live}; [ -n \"$pid\" ] && {{ echo $pid; exit 0; }}; sleep 0.1; i=$((i+1)); done\necho 'node did not write its pidfile within 10 s' >&2; tail -n 20 {console} >&2; exit 1",
        live = live_pid_sh(layout),
        console = quote(&layout.console_log()),
    );
    let mut errors = Vec::new();
    for (node, r) in control.run_all(&script, SHORT).await {
        match r.and_then(|o| o.check()) {
            Ok(o) => tracing::info!(node = %node, pid = %o.stdout_str().trim(), "node started"),
            Err(e) => errors.push(format!("{node}: {e}")),
        }
    }
    if !errors.is_empty() {
        bail!("cannot start the node: {}", errors.join("; "));
    }
    Ok(())
}

/// Copies each host's node logs into `<run dir>/nodes/<name>/`.
pub async fn collect_logs(control: &Control, layout: &Layout, run: &crate::store::RunDir) -> Vec<String> {
    let cmd = format!("tar -C {} -czf - logs 2>/dev/null", quote(&layout.data_dir));
    let mut errors = Vec::new();
    for (node, r) in control.run_all(&cmd, Duration::from_secs(60)).await {
        let dir = run.node_dir(&node);
        let res = (|| -> anyhow::Result<()> {
            let out = r?;
            std::fs::create_dir_all(&dir)?;
            if out.truncated {
                bail!("logs larger than the transfer limit; kept the first part");
            }
            let mut child = std::process::Command::new("tar")
                .args(["-xzf", "-", "--strip-components=1", "-C"])
                .arg(&dir)
                .stdin(std::process::Stdio::piped())
                .spawn()?;
            use std::io::Write;
            child.stdin.take().expect("piped").write_all(&out.stdout)?;
            let st = child.wait()?;
            if !st.success() {
                bail!("tar exited {st}");
            }
            Ok(())
        })();
        if let Err(e) = res {
            errors.push(format!("{node}: {e}"));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_command_detaches_and_quotes_knobs() {
        let l = Layout::default();
        let c = start_command(&l, &[("unsafe_local_reads".into(), "true".into())]);
        assert!(c.contains("setsid nohup /var/lib/faultline/bin/faultline node --config /var/lib/faultline/node/node.yaml"), "{c}");
        assert!(c.contains("--set unsafe_local_reads=true"), "{c}");
        let c = start_command(&l, &[("k".into(), "a b".into())]);
        assert!(c.contains("--set 'k=a b'"), "{c}");
        assert!(c.ends_with("< /dev/null &"), "{c}");
    }

    #[test]
    fn node_yaml_lists_every_peer() {
        let hosts = vec![
            ("n1".to_string(), "10.0.0.1".to_string()),
            ("n2".into(), "10.0.0.2".into()),
        ];
        let y = node_yaml(&Layout::default(), "raft", "n2", &hosts);
        assert!(y.contains("id: \"n2\"\nalgo: raft\n"), "{y}");
        assert!(y.contains("listen_client: \"10.0.0.2:7000\""), "{y}");
        assert!(y.contains("peer_addr: \"10.0.0.1:7001\""), "{y}");
        assert_eq!(y.matches("- id:").count(), 2);
    }

    #[test]
    fn node_yaml_brackets_ipv6_hosts() {
        let hosts = vec![
            ("n1".to_string(), "fd00::1".to_string()),
            ("n2".into(), "fd00::2".into()),
        ];
        let y = node_yaml(&Layout::default(), "paxos", "n1", &hosts);
        assert!(y.contains("listen_client: \"[fd00::1]:7000\""), "{y}");
        assert!(y.contains("peer_addr: \"[fd00::2]:7001\""), "{y}");
        let parsed =
            faultline_node::config::Config::parse(&y, std::path::Path::new("node.yaml")).unwrap();
        parsed.validate("node.yaml").unwrap();
        assert_eq!(parsed.peers.len(), 2);
    }

    #[test]
    fn glibc_versions_compare_numerically() {
        assert!(version_tuple("2.9") < version_tuple("2.36"));
        assert!(version_tuple("2.36") >= version_tuple("2.36"));
    }
}
