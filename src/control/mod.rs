//! The only code that knows SSH: connections to the hosts of an [`Inventory`], remote
//! commands with timeouts, and verified file uploads.
//!
//! # API
//!
//! ```text
//! let control = Control::connect(&inventory, &ControlOptions::default()).await?;
//! control.nodes()                                   // &[Node], inventory order
//! control.run("n1", "uname -r", timeout).await?     // Output {status, stdout, stderr, ..}
//!        .check()?                                  // non-zero exit -> ControlError::Failed
//! control.run_on(&["n1", "n3"], "cmd", timeout).await   // Vec<(node, Result<Output>)>, parallel
//! control.run_all("cmd", timeout).await                 // every node
//! control.upload(&nodes, local_path, "/remote/path", 0o755).await   // Vec<(node, Result<Uploaded>)>
//! control.put_bytes(&nodes, bytes, "/remote/path", 0o644).await     // same, from memory
//! control.close().await
//! ```
//!
//! * One ssh master connection per host (openssh native mux), opened in parallel; every
//!   command is a channel on it, so a command costs a round trip, not a handshake.
//! * At most `max_sessions_per_host` channels per host at once (default 8, below sshd's
//!   `MaxSessions 10`); callers beyond that wait, and the wait counts toward their timeout.
//! * Every call has a timeout. A command is also wrapped in the host's `timeout(1)`, so a
//!   command that overruns is killed on the host, not just abandoned by us.
//! * A non-zero exit is an [`Output`], not an error: the caller decides. Failures of the
//!   transport are [`ControlError`]s naming host and cause.
//! * Host keys are checked by default (`accept-new` into the inventory's `known_hosts`);
//!   `host_key_policy: no` turns that off only when an inventory asks.
//! * Uploads stream over the channel's stdin into a temporary file next to the target,
//!   verify its sha256 on the host, then rename it into place; a host that already holds a
//!   file with that hash is skipped.
//! * A master that died (host rebooted, connection dropped) is replaced on the next call.
//! * Control sockets live under a short private directory (`/tmp/flc-XXXXXXXX`) so their
//!   paths stay below the 108-byte Unix socket limit.

// Part of the API for every subcommand; not each item is used by each one.
#![allow(dead_code)]

mod error;

pub use error::ControlError;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::future::join_all;
use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder, Stdio};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Mutex, Semaphore};

use crate::inventory::{HostKeyPolicy, Inventory, Node};
use error::{ConnectCtx, classify_connect, tail};

/// Grace past a command's own timeout for the host's `timeout -k` to kill it and report.
const KILL_GRACE: Duration = Duration::from_secs(3);
/// An idle master exits after this long if the controller died without closing it.
const MASTER_IDLE_EXIT_S: usize = 900;

/// Knobs of the control layer; `None` takes the inventory's `ssh:` setting.
#[derive(Debug, Clone)]
pub struct ControlOptions {
    pub connect_timeout: Option<Duration>,
    pub max_sessions_per_host: Option<usize>,
    /// Bound on captured stdout and on captured stderr per command; the rest is drained and
    /// dropped, and `Output::truncated` is set.
    pub output_limit_bytes: usize,
    /// Bound on one upload to one host.
    pub upload_timeout: Duration,
    /// Directory under which the private control-socket directory is made.
    pub control_dir_base: PathBuf,
}

impl Default for ControlOptions {
    fn default() -> Self {
        ControlOptions {
            connect_timeout: None,
            max_sessions_per_host: None,
            output_limit_bytes: 16 << 20,
            upload_timeout: Duration::from_secs(600),
            control_dir_base: PathBuf::from("/tmp"),
        }
    }
}

/// What a remote command did. `status` is `None` when it was killed by a signal.
#[derive(Debug, Clone)]
pub struct Output {
    pub node: String,
    pub cmd: String,
    pub status: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Some output beyond `output_limit_bytes` was dropped.
    pub truncated: bool,
    pub elapsed: Duration,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    pub fn status_str(&self) -> String {
        match self.status {
            Some(c) => format!("exit code {c}"),
            None => "a signal".into(),
        }
    }

    /// A non-zero exit becomes [`ControlError::Failed`] naming host, command, exit code and
    /// the tail of stderr.
    pub fn check(self) -> Result<Output, ControlError> {
        if self.success() {
            return Ok(self);
        }
        Err(ControlError::Failed {
            node: self.node.clone(),
            cmd: self.cmd.clone(),
            status: self.status_str(),
            stderr_tail: tail(&self.stderr_str(), 500),
        })
    }
}

/// Result of an upload to one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uploaded {
    /// The file was sent and verified.
    Copied { bytes: u64 },
    /// The host already had a file with the same sha256 (mode is still applied).
    AlreadyPresent,
}

/// A set of live connections to the hosts of an inventory. Cheap to clone; clones share the
/// connections.
#[derive(Clone)]
pub struct Control {
    inner: Arc<Inner>,
}

struct Inner {
    inventory: Inventory,
    hosts: BTreeMap<String, Host>,
    dir: PathBuf,
    connect_timeout: Duration,
    output_limit: usize,
    upload_timeout: Duration,
}

struct Host {
    node: Node,
    session: Mutex<Option<Arc<Session>>>,
    /// Set when a call saw the connection drop; the next call checks and reconnects.
    suspect: AtomicBool,
    permits: Semaphore,
}

impl Control {
    /// Connects to every node of `inventory` in parallel. Fails if any host cannot be
    /// reached, listing each failure.
    pub async fn connect(
        inventory: &Inventory,
        opts: &ControlOptions,
    ) -> Result<Control, ControlError> {
        let (control, failures) = Control::connect_partial(inventory, opts).await?;
        if failures.is_empty() {
            return Ok(control);
        }
        control.close().await;
        let mut errs: Vec<ControlError> = failures.into_iter().map(|(_, e)| e).collect();
        if errs.len() == 1 {
            return Err(errs.remove(0));
        }
        Err(ControlError::ConnectMany(errs))
    }

    /// Connects to every node it can; the returned `Control` holds only the reachable ones,
    /// and the failures are returned beside it (for `exec`, which reports per node).
    pub async fn connect_partial(
        inventory: &Inventory,
        opts: &ControlOptions,
    ) -> Result<(Control, Vec<(String, ControlError)>), ControlError> {
        let connect_timeout = opts
            .connect_timeout
            .unwrap_or(Duration::from_millis(inventory.ssh.connect_timeout_ms));
        let per_host = opts
            .max_sessions_per_host
            .unwrap_or(inventory.ssh.max_sessions_per_host)
            .max(1);
        let dir = make_control_dir(&opts.control_dir_base)?;
        if let Some(kh) = &inventory.ssh.known_hosts {
            if let Some(parent) = kh.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
        }
        let attempts = inventory.nodes.iter().map(|node| {
            let dir = dir.clone();
            async move {
                let r = open_session(inventory, node, &dir, connect_timeout).await;
                (node.clone(), r)
            }
        });
        let mut hosts = BTreeMap::new();
        let mut failures = Vec::new();
        for (node, r) in join_all(attempts).await {
            match r {
                Ok(s) => {
                    hosts.insert(
                        node.name.clone(),
                        Host {
                            node: node.clone(),
                            session: Mutex::new(Some(Arc::new(s))),
                            suspect: AtomicBool::new(false),
                            permits: Semaphore::new(per_host),
                        },
                    );
                }
                Err(e) => failures.push((node.name.clone(), e)),
            }
        }
        let mut inv = inventory.clone();
        inv.nodes.retain(|n| hosts.contains_key(&n.name));
        let control = Control {
            inner: Arc::new(Inner {
                inventory: inv,
                hosts,
                dir,
                connect_timeout,
                output_limit: opts.output_limit_bytes,
                upload_timeout: opts.upload_timeout,
            }),
        };
        Ok((control, failures))
    }

    /// Connected nodes, in inventory order.
    pub fn nodes(&self) -> &[Node] {
        &self.inner.inventory.nodes
    }

    pub fn node_names(&self) -> Vec<String> {
        self.inner.inventory.node_names()
    }

    pub fn inventory(&self) -> &Inventory {
        &self.inner.inventory
    }

    /// The default command timeout from the inventory (`ssh.command_timeout_ms`).
    pub fn default_timeout(&self) -> Duration {
        Duration::from_millis(self.inner.inventory.ssh.command_timeout_ms)
    }

    /// Runs `cmd` with `sh -c` on `node`. A non-zero exit is `Ok(Output)`; use
    /// [`Output::check`] to make it an error.
    pub async fn run(
        &self,
        node: &str,
        cmd: &str,
        timeout: Duration,
    ) -> Result<Output, ControlError> {
        self.exec(node, cmd, None, timeout).await
    }

    /// Runs `cmd` with `input` on its stdin.
    pub async fn run_with_input(
        &self,
        node: &str,
        cmd: &str,
        input: &[u8],
        timeout: Duration,
    ) -> Result<Output, ControlError> {
        self.exec(node, cmd, Some(Input::Bytes(input)), timeout)
            .await
    }

    /// Runs `cmd` on each of `nodes` in parallel; results come back in the order given.
    pub async fn run_on<S: AsRef<str>>(
        &self,
        nodes: &[S],
        cmd: &str,
        timeout: Duration,
    ) -> Vec<(String, Result<Output, ControlError>)> {
        let calls = nodes.iter().map(|n| async move {
            let n = n.as_ref();
            (n.to_string(), self.run(n, cmd, timeout).await)
        });
        join_all(calls).await
    }

    /// [`Control::run_on`] every connected node.
    pub async fn run_all(
        &self,
        cmd: &str,
        timeout: Duration,
    ) -> Vec<(String, Result<Output, ControlError>)> {
        let names = self.node_names();
        self.run_on(&names, cmd, timeout).await
    }

    /// Copies `local` to `remote` on each of `nodes` in parallel, with file mode `mode`.
    pub async fn upload<S: AsRef<str>>(
        &self,
        nodes: &[S],
        local: &Path,
        remote: &str,
        mode: u32,
    ) -> Vec<(String, Result<Uploaded, ControlError>)> {
        let local_s = local.display().to_string();
        let hash = match hash_file(local).await {
            Ok(h) => h,
            Err(e) => {
                return nodes
                    .iter()
                    .map(|n| {
                        let err = ControlError::Upload {
                            node: n.as_ref().into(),
                            local: local_s.clone(),
                            remote: remote.into(),
                            detail: format!("cannot read local file: {e}"),
                        };
                        (n.as_ref().to_string(), Err(err))
                    })
                    .collect();
            }
        };
        let calls = nodes.iter().map(|n| {
            let n = n.as_ref().to_string();
            let (hash, local_s) = (hash.clone(), local_s.clone());
            async move {
                let r = self
                    .upload_one(
                        &n,
                        Source::File(local),
                        &local_s,
                        &hash.0,
                        hash.1,
                        remote,
                        mode,
                    )
                    .await;
                (n, r)
            }
        });
        join_all(calls).await
    }

    /// Writes `data` to `remote` on each of `nodes`, with the same verification and skip
    /// rule as [`Control::upload`].
    pub async fn put_bytes<S: AsRef<str>>(
        &self,
        nodes: &[S],
        data: &[u8],
        remote: &str,
        mode: u32,
    ) -> Vec<(String, Result<Uploaded, ControlError>)> {
        let hash = hex(&Sha256::digest(data));
        let calls = nodes.iter().map(|n| {
            let n = n.as_ref().to_string();
            let hash = hash.clone();
            async move {
                let r = self
                    .upload_one(
                        &n,
                        Source::Bytes(data),
                        "<memory>",
                        &hash,
                        data.len() as u64,
                        remote,
                        mode,
                    )
                    .await;
                (n, r)
            }
        });
        join_all(calls).await
    }

    /// Shuts every master connection down and removes the control directory.
    pub async fn close(&self) {
        for host in self.inner.hosts.values() {
            let taken = host.session.lock().await.take();
            if let Some(s) = taken {
                match Arc::try_unwrap(s) {
                    Ok(s) => {
                        let _ = tokio::time::timeout(Duration::from_secs(5), s.close()).await;
                    }
                    // Still used by a running call; dropping the last handle shuts it down.
                    Err(s) => drop(s),
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.inner.dir);
    }

    fn host(&self, node: &str) -> Result<&Host, ControlError> {
        self.inner
            .hosts
            .get(node)
            .ok_or_else(|| ControlError::UnknownNode(node.into()))
    }

    /// The host's session, reconnecting first if the last call saw the connection drop.
    async fn session(&self, host: &Host) -> Result<Arc<Session>, ControlError> {
        let mut guard = host.session.lock().await;
        if let Some(s) = guard.as_ref() {
            if !host.suspect.load(Ordering::Relaxed) {
                return Ok(s.clone());
            }
            if s.check().await.is_ok() {
                host.suspect.store(false, Ordering::Relaxed);
                return Ok(s.clone());
            }
        }
        *guard = None;
        let fresh = open_session(
            &self.inner.inventory,
            &host.node,
            &self.inner.dir,
            self.inner.connect_timeout,
        )
        .await?;
        let fresh = Arc::new(fresh);
        *guard = Some(fresh.clone());
        host.suspect.store(false, Ordering::Relaxed);
        Ok(fresh)
    }

    async fn exec(
        &self,
        node: &str,
        cmd: &str,
        input: Option<Input<'_>>,
        timeout: Duration,
    ) -> Result<Output, ControlError> {
        let host = self.host(node)?;
        let started = Instant::now();
        let deadline = started + timeout + KILL_GRACE;
        let timed_out = || ControlError::CommandTimeout {
            node: node.into(),
            cmd: cmd.into(),
            timeout,
        };
        let _permit = tokio::time::timeout_at(deadline.into(), host.permits.acquire())
            .await
            .map_err(|_| timed_out())?
            .map_err(|_| ControlError::Local("semaphore closed".into()))?;
        let mut session = tokio::time::timeout_at(deadline.into(), self.session(host))
            .await
            .map_err(|_| timed_out())??;
        // The host enforces the limit too, so an overrunning command does not outlive us.
        let remaining = timeout
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(100));
        let wrapped = format!(
            "timeout -k 2 {:.3} sh -c {}",
            remaining.as_secs_f64(),
            quote(cmd)
        );
        let limit = self.inner.output_limit;
        let piped_stdin = input.is_some();
        let work = async {
            let spawn = |session: Arc<Session>| {
                let wrapped = wrapped.clone();
                async move {
                    let child = session
                        .arc_raw_command(wrapped)
                        .stdin(if piped_stdin {
                            Stdio::piped()
                        } else {
                            Stdio::null()
                        })
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped())
                        .spawn()
                        .await;
                    child
                }
            };
            let mut child = match spawn(session.clone()).await {
                Ok(c) => c,
                // The channel never opened, so nothing ran: reconnect once and retry.
                Err(openssh::Error::Disconnected) | Err(openssh::Error::SshMux(_)) => {
                    host.suspect.store(true, Ordering::Relaxed);
                    session = self.session(host).await?;
                    spawn(session.clone())
                        .await
                        .map_err(|e| self.ssh_error(host, node, cmd, e))?
                }
                Err(e) => return Err(self.ssh_error(host, node, cmd, e)),
            };
            let stdin = child.stdin().take();
            let stdout = child.stdout().take();
            let stderr = child.stderr().take();
            let feed = async {
                if let (Some(mut w), Some(input)) = (stdin, input) {
                    let r = match input {
                        Input::Bytes(b) => w.write_all(b).await,
                        Input::File(p) => match tokio::fs::File::open(p).await {
                            Ok(mut f) => tokio::io::copy(&mut f, &mut w).await.map(|_| ()),
                            Err(e) => Err(e),
                        },
                    };
                    let _ = w.shutdown().await;
                    r
                } else {
                    Ok(())
                }
            };
            let (fed, out, err) =
                tokio::join!(feed, read_capped(stdout, limit), read_capped(stderr, limit));
            let status = child.wait().await;
            let ((stdout, t1), (stderr, t2)) = (out, err);
            if let Err(e) = fed {
                // The command may have exited without reading all of its input; that is its
                // business and shows in its status, unless the transport itself failed.
                if status.is_err() {
                    return Err(ControlError::Ssh {
                        node: node.into(),
                        cmd: cmd.into(),
                        detail: format!("stdin: {e}"),
                    });
                }
            }
            let status = match status {
                Ok(s) => s.code(),
                Err(openssh::Error::RemoteProcessTerminated) => {
                    if session.check().await.is_ok() {
                        None
                    } else {
                        host.suspect.store(true, Ordering::Relaxed);
                        return Err(ControlError::Disconnected {
                            node: node.into(),
                            cmd: cmd.into(),
                            detail: "ssh master connection closed".into(),
                        });
                    }
                }
                Err(e) => return Err(self.ssh_error(host, node, cmd, e)),
            };
            Ok(Output {
                node: node.into(),
                cmd: cmd.into(),
                status,
                stdout,
                stderr,
                truncated: t1 || t2,
                elapsed: started.elapsed(),
            })
        };
        let out = tokio::time::timeout_at(deadline.into(), work)
            .await
            .map_err(|_| timed_out())??;
        // `timeout(1)` exits 124 when it had to stop the command.
        if out.status == Some(124) && out.elapsed + Duration::from_millis(50) >= timeout {
            return Err(timed_out());
        }
        Ok(out)
    }

    fn ssh_error(&self, host: &Host, node: &str, cmd: &str, e: openssh::Error) -> ControlError {
        match e {
            openssh::Error::Disconnected | openssh::Error::RemoteProcessTerminated => {
                host.suspect.store(true, Ordering::Relaxed);
                ControlError::Disconnected {
                    node: node.into(),
                    cmd: cmd.into(),
                    detail: e.to_string(),
                }
            }
            other => {
                host.suspect.store(true, Ordering::Relaxed);
                ControlError::Ssh {
                    node: node.into(),
                    cmd: cmd.into(),
                    detail: error_chain(&other),
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn upload_one(
        &self,
        node: &str,
        src: Source<'_>,
        local_s: &str,
        hash: &str,
        bytes: u64,
        remote: &str,
        mode: u32,
    ) -> Result<Uploaded, ControlError> {
        let up_err = |detail: String| ControlError::Upload {
            node: node.into(),
            local: local_s.into(),
            remote: remote.into(),
            detail,
        };
        if remote.is_empty() || remote.ends_with('/') {
            return Err(up_err("remote path must name a file".into()));
        }
        let q = quote(remote);
        let probe = format!(
            "if [ -f {q} ] && [ \"$(sha256sum < {q} | cut -d' ' -f1)\" = {hash} ]; then chmod {mode:o} {q} && echo same; else echo differ; fi"
        );
        let short = Duration::from_secs(30).min(self.inner.upload_timeout);
        let out = self.run(node, &probe, short).await?.check()?;
        if out.stdout_str().trim() == "same" {
            return Ok(Uploaded::AlreadyPresent);
        }
        let script = format!(
            "set -e; t={q}.fl-up.$$; mkdir -p \"$(dirname {q})\"; trap 'rm -f \"$t\"' EXIT; cat > \"$t\"; \
             h=$(sha256sum < \"$t\" | cut -d' ' -f1); \
             if [ \"$h\" != {hash} ]; then echo \"sha256 mismatch on host: got $h\" >&2; exit 90; fi; \
             chmod {mode:o} \"$t\"; mv -f \"$t\" {q}; trap - EXIT"
        );
        let input = match src {
            Source::File(p) => Input::File(p),
            Source::Bytes(b) => Input::Bytes(b),
        };
        let out = self
            .exec(node, &script, Some(input), self.inner.upload_timeout)
            .await?;
        if !out.success() {
            return Err(up_err(format!(
                "{}: {}",
                out.status_str(),
                tail(&out.stderr_str(), 300)
            )));
        }
        Ok(Uploaded::Copied { bytes })
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Sessions shut their masters down in their own Drop; the directory is ours.
        self.hosts.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

enum Input<'a> {
    Bytes(&'a [u8]),
    File(&'a Path),
}

enum Source<'a> {
    File(&'a Path),
    Bytes(&'a [u8]),
}

async fn open_session(
    inventory: &Inventory,
    node: &Node,
    dir: &Path,
    timeout: Duration,
) -> Result<Session, ControlError> {
    let key = inventory.key_for(node).map(Path::to_path_buf);
    if let Some(k) = &key {
        if let Err(e) = std::fs::File::open(k) {
            return Err(ControlError::KeyFile {
                node: node.name.clone(),
                path: k.clone(),
                detail: e.to_string(),
            });
        }
    }
    let ssh = &inventory.ssh;
    let mut b = SessionBuilder::default();
    b.user(node.user.clone())
        .port(node.port)
        .control_directory(dir)
        .connect_timeout(Duration::from_secs(timeout.as_secs().max(1)))
        .server_alive_interval(Duration::from_secs(
            (ssh.server_alive_interval_ms / 1000).max(1),
        ))
        .control_persist(ControlPersist::IdleFor(
            MASTER_IDLE_EXIT_S.try_into().expect("non-zero"),
        ))
        .known_hosts_check(match ssh.host_key_policy {
            HostKeyPolicy::Strict => KnownHosts::Strict,
            HostKeyPolicy::AcceptNew => KnownHosts::Add,
            HostKeyPolicy::No => KnownHosts::Accept,
        });
    if let Some(k) = &key {
        b.keyfile(k);
    }
    if let Some(kh) = &ssh.known_hosts {
        b.user_known_hosts_file(kh);
    }
    if let Some(c) = &ssh.config_file {
        b.config_file(c);
    }
    let ctx = ConnectCtx {
        node: &node.name,
        addr: format!("{}:{}", node.host, node.port),
        user: &node.user,
        key: key
            .as_ref()
            .map(|k| k.display().to_string())
            .unwrap_or_else(|| "(ssh default keys)".into()),
        known_hosts: ssh
            .known_hosts
            .as_ref()
            .map(|k| k.display().to_string())
            .unwrap_or_else(|| "~/.ssh/known_hosts".into()),
        timeout,
    };
    // ssh's ConnectTimeout covers TCP and the banner; this covers the rest of the handshake.
    match tokio::time::timeout(timeout + Duration::from_secs(2), b.connect_mux(&node.host)).await {
        Err(_) => Err(ControlError::ConnectTimeout {
            node: node.name.clone(),
            addr: ctx.addr,
            timeout,
        }),
        Ok(Ok(s)) => Ok(s),
        Ok(Err(openssh::Error::Connect(io))) => Err(classify_connect(&ctx, &io.to_string())),
        Ok(Err(e)) => Err(ControlError::Connect {
            node: node.name.clone(),
            addr: ctx.addr,
            detail: error_chain(&e),
        }),
    }
}

/// A control directory older than this whose masters are all gone belonged to a controller
/// that died without closing; it is removed by the next one.
const STALE_CONTROL_DIR_S: u64 = 600;

fn make_control_dir(base: &Path) -> Result<PathBuf, ControlError> {
    use std::os::unix::fs::DirBuilderExt;
    sweep_stale_control_dirs(base);
    for _ in 0..16 {
        let p = base.join(format!("flc-{:08x}", rand::random::<u32>()));
        match std::fs::DirBuilder::new().mode(0o700).create(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(ControlError::Local(format!(
                    "cannot create control directory {}: {e}",
                    p.display()
                )));
            }
        }
    }
    Err(ControlError::Local(format!(
        "cannot find a free control directory name under {}",
        base.display()
    )))
}

fn sweep_stale_control_dirs(base: &Path) {
    let Ok(rd) = std::fs::read_dir(base) else {
        return;
    };
    // Bounded: a directory full of junk costs at most this many checks per connect.
    for e in rd.flatten().take(4096) {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with("flc-") && name.len() == 12) {
            continue;
        }
        let old = e
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() > STALE_CONTROL_DIR_S);
        if !old {
            continue;
        }
        let dir = e.path();
        let live = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|conn| {
                std::os::unix::net::UnixStream::connect(conn.path().join("master")).is_ok()
            });
        if !live {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// Reads up to `limit` bytes and drains the rest, so a chatty command cannot exhaust memory
/// nor block on a full pipe.
async fn read_capped<R: AsyncRead + Unpin>(r: Option<R>, limit: usize) -> (Vec<u8>, bool) {
    let Some(mut r) = r else {
        return (Vec::new(), false);
    };
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut truncated = false;
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = limit.saturating_sub(out.len());
                if n > room {
                    truncated = true;
                }
                out.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    (out, truncated)
}

async fn hash_file(p: &Path) -> std::io::Result<(String, u64)> {
    let p = p.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut f = std::fs::File::open(&p)?;
        let mut h = Sha256::new();
        let n = std::io::copy(&mut f, &mut h)?;
        Ok((hex(&h.finalize()), n))
    })
    .await
    .map_err(std::io::Error::other)?
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Quotes `s` as one word for a POSIX shell.
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod cluster_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_survives_a_shell_round_trip() {
        for s in ["plain", "", "a b", "it's", "$(rm -rf /)", "a\"b\\c", "x\ny"] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", quote(s)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), s);
        }
    }

    #[test]
    fn check_names_host_command_status_and_stderr() {
        let o = Output {
            node: "n2".into(),
            cmd: "false".into(),
            status: Some(3),
            stdout: vec![],
            stderr: b"line1\nboom\n".to_vec(),
            truncated: false,
            elapsed: Duration::ZERO,
        };
        let e = o.check().unwrap_err().to_string();
        assert!(
            e.contains("n2")
                && e.contains("`false`")
                && e.contains("exit code 3")
                && e.contains("boom"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn read_capped_drains_past_the_limit() {
        let data = vec![7u8; 200_000];
        let (out, truncated) = read_capped(Some(&data[..]), 1000).await;
        assert_eq!(out.len(), 1000);
        assert!(truncated);
        let (out, truncated) = read_capped(Some(&data[..10]), 1000).await;
        assert_eq!((out.len(), truncated), (10, false));
    }
}
