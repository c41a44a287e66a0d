//! Opening, checking and closing the master connections, and the directory of their sockets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::join_all;
use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder};
use tokio::sync::{Mutex, Semaphore};

use super::error::{ConnectCtx, classify_connect};
use super::{Control, ControlError, ControlOptions, Host, Inner, error_chain};
use crate::inventory::{HostKeyPolicy, Inventory, Node};

/// An idle master exits after this long if the controller died without closing it.
const MASTER_IDLE_EXIT_S: usize = 900;

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
}

impl Control {
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

    pub(super) fn host(&self, node: &str) -> Result<&Host, ControlError> {
        self.inner
            .hosts
            .get(node)
            .ok_or_else(|| ControlError::UnknownNode(node.into()))
    }

    /// The host's session, reconnecting first if the last call saw the connection drop.
    pub(super) async fn session(&self, host: &Host) -> Result<Arc<Session>, ControlError> {
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
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Sessions shut their masters down in their own Drop; the directory is ours.
        self.hosts.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
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
