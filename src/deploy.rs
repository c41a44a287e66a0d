//! Host operations every database shares: pre-flight, uploading a binary, resetting the
//! data directory, starting a daemon that writes a pidfile, stopping it by that pidfile,
//! and collecting its logs. What differs per database (its config, its command line) lives
//! in its adapter under `db/`.
//!
//! Stopping acts only on the pid in the database's own pidfile, after checking that the pid
//! still belongs to a process started with this layout's data directory on its command line.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::control::{Control, quote};

/// Root of everything faultline keeps on a host.
pub const HOST_ROOT: &str = "/var/lib/faultline";

/// Where one database lives on a host: the single source for its paths and ports, used by
/// deploy, the nemesis (pidfile), log collection and pre-flight alike.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The executable that runs the database.
    pub bin: String,
    /// The database's own directory (config, pidfile, logs, data); wiped at configure.
    pub data_dir: String,
    pub client_port: u16,
    pub peer_port: u16,
}

impl Layout {
    /// The bundled node's layout.
    pub fn node() -> Layout {
        Layout {
            bin: format!("{HOST_ROOT}/bin/faultline"),
            data_dir: format!("{HOST_ROOT}/node"),
            client_port: 7000,
            peer_port: 7001,
        }
    }
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
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "bin": self.bin, "data_dir": self.data_dir, "pidfile": self.pidfile(),
            "logs": self.logs(), "client_port": self.client_port, "peer_port": self.peer_port,
        })
    }
}

const SHORT: Duration = Duration::from_secs(20);

/// Wraps `cmd` so it runs detached from the SSH session with its output in the console
/// log. `write_pidfile` records `$!` for a program that does not write the pidfile itself.
pub fn daemon_command(layout: &Layout, cmd: &str, write_pidfile: bool) -> String {
    let pid = if write_pidfile {
        format!(" echo $! > {};", quote(&layout.pidfile()))
    } else {
        String::new()
    };
    // Braces: only the program goes to the background, so `$!` is its pid and the pidfile
    // is written after the directory exists.
    format!(
        "mkdir -p {logs} && {{ setsid nohup {cmd} >> {console} 2>&1 < /dev/null &{pid} }}",
        logs = quote(&layout.logs()),
        console = quote(&layout.console_log()),
    )
}

/// A shell snippet that sets `$pid` to the pidfile's pid if that process is alive and was
/// started with this layout's directory on its command line, else to the empty string.
/// Never matches a process by name alone.
fn live_pid_sh(layout: &Layout) -> String {
    format!(
        r#"pid=$(cat {pf} 2>/dev/null | tr -dc 0-9); if [ -n "$pid" ] && [ -r /proc/$pid/cmdline ] && tr '\0' ' ' < /proc/$pid/cmdline | grep -qF -- {dd}; then :; else pid=; fi"#,
        pf = quote(&layout.pidfile()),
        dd = quote(&layout.data_dir),
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

/// Checks every host can take the test, before anything on it is touched (even the heal of
/// what an earlier run left, which needs the same sudo and tools, so a broken sudo is told
/// as such rather than as a failed heal): sudo works non-interactively where the inventory
/// escalates (and a non-root login escalates at all), the tools the run needs are there
/// (each missing one named with its package and the command that installs it), and the
/// image the database uploads, if any, can run there ([`check_image`]). The node's ports
/// are checked after that heal ([`ports_free`]), since a node an earlier run left holds them.
pub async fn preflight(
    control: &Control,
    tools: &[&str],
    image: Option<&crate::db::UploadImage>,
) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    for n in &control.inventory().nodes {
        if n.user != "root" && n.privilege.is_none() {
            problems.push(format!(
                "{}: logs in as {:?}, not root, and the inventory sets no `become: sudo`; \
                 faultline's host steps need root (add `become: sudo` under `ssh:`, or \
                 `ansible_become: true`)",
                n.name, n.user
            ));
        }
    }
    for (_, r) in control.check_privilege(SHORT).await {
        if let Err(e) = r {
            problems.push(e.to_string());
        }
    }
    if !problems.is_empty() {
        bail!("pre-flight failed:\n  {}", problems.join("\n  "));
    }
    let mut script = String::from(crate::hosts::PACKAGE_MANAGER_SH);
    for t in tools {
        script.push_str(&format!("command -v {t} >/dev/null 2>&1 || echo missing={t}\n"));
    }
    for (node, r) in control.run_all(&script, SHORT).await {
        let out = match r.and_then(|o| o.check()) {
            Ok(o) => o.stdout_str(),
            Err(e) => {
                problems.push(format!("{node}: pre-flight check failed: {e}"));
                continue;
            }
        };
        let mut missing = Vec::new();
        let mut pm = String::new();
        for line in out.lines() {
            match line.split_once('=').unwrap_or((line, "")) {
                ("pm", v) => pm = v.trim().to_string(),
                ("missing", v) => missing.push(v.trim().to_string()),
                _ => {}
            }
        }
        if !missing.is_empty() {
            problems.push(crate::hosts::describe_missing(&node, &pm, &missing));
        }
    }
    if !problems.is_empty() {
        bail!("pre-flight failed:\n  {}", problems.join("\n  "));
    }
    if let Some(image) = image {
        check_image(control, image).await?;
    }
    Ok(())
}

/// Checks that no process faultline did not start listens on the node's ports (run after
/// the node an earlier run left is stopped).
pub async fn ports_free(control: &Control, layout: &Layout) -> anyhow::Result<()> {
    let ports: Vec<String> = [layout.client_port, layout.peer_port]
        .iter()
        .map(|p| format!("{p:04X}"))
        .collect();
    let script = format!(
        "echo listening=$(awk 'NR>1 && $4==\"0A\" {{split($2,a,\":\"); print a[length(a)]}}' /proc/net/tcp /proc/net/tcp6 2>/dev/null | grep -x -e {} -e {} | sort -u | tr '\\n' ' ')\n",
        ports[0], ports[1]
    );
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
            let Some(v) = line.strip_prefix("listening=").map(str::trim) else { continue };
            if v.is_empty() {
                continue;
            }
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
    }
    if !problems.is_empty() {
        bail!("pre-flight failed:\n  {}", problems.join("\n  "));
    }
    Ok(())
}

/// The ELF machine of an executable (`e_machine`), as `uname -m` names it.
pub fn elf_machine(path: &Path) -> anyhow::Result<String> {
    use std::io::Read;
    let mut h = [0u8; 20];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut h))
        .with_context(|| format!("cannot read {}", path.display()))?;
    if &h[..4] != b"\x7fELF" {
        bail!("{} is not an ELF executable", path.display());
    }
    let m = if h[5] == 2 {
        u16::from_be_bytes([h[18], h[19]])
    } else {
        u16::from_le_bytes([h[18], h[19]])
    };
    Ok(match m {
        0x3e => "x86_64".into(),
        0xb7 => "aarch64".into(),
        0x03 => "i686".into(),
        0x28 => "armv7l".into(),
        0xf3 => "riscv64".into(),
        0x15 => "ppc64le".into(),
        0x16 => "s390x".into(),
        other => format!("ELF machine {other:#x}"),
    })
}

/// Whether an ELF executable is statically linked (no program interpreter).
pub fn elf_is_static(path: &Path) -> anyhow::Result<bool> {
    let b = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    // 64-bit little-endian ELF only; anything else is treated as dynamic.
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 || b[5] != 1 {
        return Ok(false);
    }
    let u16at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(b[32..40].try_into().expect("8 bytes")) as usize;
    let (phentsize, phnum) = (u16at(54), u16at(56));
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        if o + 4 > b.len() {
            return Ok(false);
        }
        // PT_INTERP
        if u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes")) == 3 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Checks that `image` can run on every host: its ELF machine matches `uname -m`, and a
/// dynamically linked image finds a glibc at least as new as this machine's.
pub async fn check_image(control: &Control, upload: &crate::db::UploadImage) -> anyhow::Result<()> {
    let (image, flag, what) = (upload.path.as_path(), upload.flag, upload.what);
    let machine = elf_machine(image)?;
    let dynamic = !elf_is_static(image)?;
    let want_glibc = if dynamic { local_glibc() } else { None };
    let script = "echo arch=$(uname -m); echo glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | cut -d' ' -f2)";
    let mut problems = Vec::new();
    for (node, r) in control.run_all(script, SHORT).await {
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
                "arch" if v != machine && !(v == "amd64" && machine == "x86_64") => {
                    problems.push(format!(
                        "{node}: host is {v} but {what} {} is built for {machine}; pass {flag} PATH with {}",
                        image.display(),
                        upload.rebuild.replace("{arch}", v)
                    ));
                }
                "glibc" => {
                    if let Some(want) = &want_glibc {
                        if v.is_empty() || version_tuple(v) < version_tuple(want) {
                            problems.push(format!(
                                "{node}: glibc {} is older than the {want} that {what} {} (dynamically linked) needs; \
                                 pass {flag} PATH with a static build{}",
                                if v.is_empty() { "(none)" } else { v },
                                image.display(),
                                upload.static_build
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
    }
    if !problems.is_empty() {
        bail!("pre-flight failed:\n  {}", problems.join("\n  "));
    }
    Ok(())
}

/// Uploads `exe` to every host as the layout's binary (skipped where the same content is
/// present).
pub async fn upload_binary(control: &Control, layout: &Layout, exe: &Path) -> anyhow::Result<()> {
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
    for (node, r) in control.upload(&names, exe, &layout.bin, 0o755).await {
        match r {
            Ok(u) => tracing::info!(node = %node, result = ?u, "binary installed"),
            Err(e) => errors.push(format!("{node}: {e}")),
        }
    }
    if !errors.is_empty() {
        bail!("cannot install {}: {}", exe.display(), errors.join("; "));
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

/// Wipes each host's database directory (a test starts from empty state).
pub async fn reset_data_dir(control: &Control, layout: &Layout) -> anyhow::Result<()> {
    let wipe = format!(
        "rm -rf {dd} && mkdir -p {logs}",
        dd = quote(&layout.data_dir),
        logs = quote(&layout.logs())
    );
    for (node, r) in control.run_all(&wipe, SHORT).await {
        r.and_then(|o| o.check())
            .with_context(|| format!("{node}: cannot reset {}", layout.data_dir))?;
    }
    Ok(())
}

/// Starts the database on every host with its own start command and checks that each
/// pidfile names a live process within 10 s.
pub async fn start(control: &Control, db: &dyn crate::db::Database) -> anyhow::Result<()> {
    let layout = db.layout();
    let starts = control.node_names().into_iter().map(|node| async move {
        let script = format!(
            "{cmd}\ni=0; while [ $i -lt 1000 ]; do {live}; [ -n \"$pid\" ] && {{ echo $pid; exit 0; }}; sleep 0.01; i=$((i+1)); done\necho '{db} did not write its pidfile {pf} within 10 s; the end of its console log:' >&2; tail -n 20 {console} >&2; exit 1",
            cmd = db.start_command(&node),
            live = live_pid_sh(layout),
            db = db.name(),
            pf = layout.pidfile(),
            console = quote(&layout.console_log()),
        );
        let r = control.run(&node, &script, SHORT).await;
        (node, r)
    });
    let mut errors = Vec::new();
    for (node, r) in futures::future::join_all(starts).await {
        match r.and_then(|o| o.check()) {
            Ok(o) => tracing::info!(node = %node, pid = %o.stdout_str().trim(), "database started"),
            Err(e) => errors.push(format!("{node}: {e}")),
        }
    }
    if !errors.is_empty() {
        bail!("cannot start {}: {}", db.name(), errors.join("; "));
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
    fn daemon_command_detaches_and_records_the_pid_when_asked() {
        let l = Layout::node();
        let c = daemon_command(&l, "etcd --data-dir /x", true);
        assert!(c.contains("{ setsid nohup etcd --data-dir /x >> /var/lib/faultline/node/logs/console.log 2>&1 < /dev/null & echo $! > /var/lib/faultline/node/node.pid; }"), "{c}");
        assert!(daemon_command(&l, "x", false).ends_with("< /dev/null & }"));
    }

    #[test]
    fn a_live_pid_must_carry_the_layout_directory_on_its_command_line() {
        // Never a process by name: only the pidfile's pid, and only if it is ours.
        let s = live_pid_sh(&Layout::node());
        assert!(s.contains("cat /var/lib/faultline/node/node.pid"), "{s}");
        assert!(s.contains("grep -qF -- /var/lib/faultline/node"), "{s}");
    }

    #[test]
    fn the_node_image_is_static_and_the_controller_is_not() {
        // The controller (this test binary) links glibc dynamically.
        let me = std::env::current_exe().unwrap();
        assert!(!elf_is_static(&me).unwrap());
        assert_eq!(elf_machine(&me).unwrap(), std::env::consts::ARCH);
        assert!(elf_machine(Path::new("/etc/hostname")).is_err());
    }

    #[test]
    fn glibc_versions_compare_numerically() {
        assert!(version_tuple("2.9") < version_tuple("2.36"));
        assert!(version_tuple("2.36") >= version_tuple("2.36"));
    }
}
