//! Opening, checking and closing the master connections, and the directory of their sockets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::join_all;
use openssh::Session;
use tokio::sync::{Mutex, Semaphore};

use super::error::{ConnectCtx, classify_connect};
use super::master::{self, MasterSpec, StartError};
use super::{BecomeProblem, Control, ControlError, ControlOptions, Host, Inner, Master};
use crate::inventory::{HostKeyPolicy, Inventory, Node};

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
            let password = match node.privilege.as_ref().and_then(|b| b.password.as_ref()) {
                None => Ok(None),
                Some(p) => p.resolve().map(Some).map_err(|detail| ControlError::Become {
                    node: node.name.clone(),
                    user: node.user.clone(),
                    problem: BecomeProblem::PasswordSource(detail),
                }),
            };
            let r = match (r, password) {
                (Ok(s), Ok(p)) => Ok((s, p)),
                (Err(e), _) | (Ok(_), Err(e)) => Err(e),
            };
            match r {
                Ok((s, become_password)) => {
                    hosts.insert(
                        node.name.clone(),
                        Host {
                            node: node.clone(),
                            become_password,
                            session: Mutex::new(Some(s)),
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
            run_as: super::RunAs::Default,
        };
        Ok((control, failures))
    }
}

impl Control {
    /// Shuts every master connection down and removes the control directory.
    pub async fn close(&self) {
        for host in self.inner.hosts.values() {
            let taken = host.session.lock().await.take();
            if let Some(Master { session, proc }) = taken {
                match Arc::try_unwrap(session) {
                    Ok(s) => {
                        let _ = tokio::time::timeout(Duration::from_secs(5), s.close()).await;
                    }
                    // Still used by a running call; dropping the last handle shuts it down.
                    Err(s) => drop(s),
                }
                // Stopped by now, unless a call still runs on it.
                drop(proc);
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
        if let Some(m) = guard.as_ref() {
            if !host.suspect.load(Ordering::Relaxed) {
                return Ok(m.session.clone());
            }
            if m.session.check().await.is_ok() {
                host.suspect.store(false, Ordering::Relaxed);
                return Ok(m.session.clone());
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
        let session = fresh.session.clone();
        *guard = Some(fresh);
        host.suspect.store(false, Ordering::Relaxed);
        Ok(session)
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
) -> Result<Master, ControlError> {
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
    let spec = MasterSpec {
        host: node.host.clone(),
        port: node.port,
        user: node.user.clone(),
        key: key.clone(),
        known_hosts: ssh.known_hosts.clone(),
        config_file: ssh.config_file.clone(),
        host_key_check: match ssh.host_key_policy {
            HostKeyPolicy::Strict => "yes",
            HostKeyPolicy::AcceptNew => "accept-new",
            HostKeyPolicy::No => "no",
        },
        connect_timeout_s: timeout.as_secs().max(1),
        server_alive_interval_s: (ssh.server_alive_interval_ms / 1000).max(1),
    };
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
    match master::start(&spec, dir, timeout + Duration::from_secs(2)).await {
        Ok(proc) => {
            let session = Session::resume_mux(
                proc.ctl.clone().into_boxed_path(),
                Some(proc.log.clone().into_boxed_path()),
            );
            Ok(Master {
                session: Arc::new(session),
                proc,
            })
        }
        Err(StartError::Timeout) => Err(ControlError::ConnectTimeout {
            node: node.name.clone(),
            addr: ctx.addr,
            timeout,
        }),
        Err(StartError::Exited { log }) if log.trim().is_empty() => Err(ControlError::Connect {
            node: node.name.clone(),
            addr: ctx.addr,
            detail: "ssh exited before connecting, without a message".into(),
        }),
        Err(StartError::Exited { log }) => Err(classify_connect(&ctx, &log)),
        Err(StartError::Local(detail)) => Err(ControlError::Connect {
            node: node.name.clone(),
            addr: ctx.addr,
            detail,
        }),
    }
}

/// A control directory without an owner file (written by older versions) is removed when it
/// is older than this and none of its masters answers.
const STALE_CONTROL_DIR_S: u64 = 600;

/// Names the process that made a control directory: `PID START_TIME`, so that a recycled pid
/// is not taken for the owner.
const OWNER_FILE: &str = "owner";

fn make_control_dir(base: &Path) -> Result<PathBuf, ControlError> {
    use std::os::unix::fs::DirBuilderExt;
    sweep_stale_control_dirs(base);
    let me = std::process::id() as i32;
    let owner = format!(
        "{me} {}\n",
        crate::cluster::proc_start_time(me).unwrap_or(0)
    );
    for _ in 0..16 {
        let p = base.join(format!("flc-{:08x}", rand::random::<u32>()));
        match std::fs::DirBuilder::new().mode(0o700).create(&p) {
            Ok(()) => {
                return match std::fs::write(p.join(OWNER_FILE), &owner) {
                    Ok(()) => Ok(p),
                    Err(e) => {
                        let _ = std::fs::remove_dir_all(&p);
                        Err(ControlError::Local(format!(
                            "cannot write {}: {e}",
                            p.join(OWNER_FILE).display()
                        )))
                    }
                };
            }
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

/// Whether the directory's owner is known to be gone: `None` when it names none.
fn owner_is_dead(dir: &Path) -> Option<bool> {
    let text = std::fs::read_to_string(dir.join(OWNER_FILE)).ok()?;
    let mut words = text.split_whitespace();
    let pid: i32 = words.next()?.parse().ok()?;
    let start: u64 = words.next()?.parse().ok()?;
    Some(!crate::cluster::alive(pid, (start != 0).then_some(start)))
}

/// Removes the control directories of controllers that are gone. Their masters died with
/// them (see [`master`]); what they leave is the directory.
pub(super) fn sweep_stale_control_dirs(base: &Path) {
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
        let dir = e.path();
        match owner_is_dead(&dir) {
            Some(true) => {
                let _ = std::fs::remove_dir_all(&dir);
                continue;
            }
            Some(false) => continue,
            None => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_dirs_of_dead_controllers_are_swept_and_live_ones_kept() {
        let base = std::env::temp_dir().join(format!("fl-sweep-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let mine = make_control_dir(&base).unwrap();
        // A controller that exited: a real pid that is gone by now.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = child.id() as i32;
        let dead_start = crate::cluster::proc_start_time(dead_pid);
        child.wait().unwrap();
        let dead = base.join("flc-0000dead");
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(
            dead.join(OWNER_FILE),
            format!("{dead_pid} {}\n", dead_start.unwrap_or(1)),
        )
        .unwrap();
        // Our own pid with another start time: a recycled pid is not the owner.
        let me = std::process::id();
        let recycled = base.join("flc-0000beef");
        std::fs::create_dir(&recycled).unwrap();
        let my_start = crate::cluster::proc_start_time(me as i32).unwrap();
        std::fs::write(
            recycled.join(OWNER_FILE),
            format!("{me} {}\n", my_start + 1),
        )
        .unwrap();
        // No owner file and young: left alone (it may be being made right now).
        let young = base.join("flc-00000001");
        std::fs::create_dir(&young).unwrap();
        let other = base.join("not-flc");
        std::fs::create_dir(&other).unwrap();

        sweep_stale_control_dirs(&base);
        assert!(mine.is_dir(), "a live controller's directory was removed");
        assert!(!dead.exists(), "a dead controller's directory was kept");
        assert!(!recycled.exists(), "a recycled pid kept a directory alive");
        assert!(young.is_dir());
        assert!(other.is_dir());
        let _ = std::fs::remove_dir_all(&base);
    }
}
