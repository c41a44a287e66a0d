//! What `up` created, recorded before each thing is created, and whether the processes it
//! started are still the ones it recorded.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::cluster_dir;

/// What `up` created, written before each thing is created.
#[derive(Serialize, Deserialize, Debug, Default)]
pub(super) struct State {
    pub(super) name: String,
    pub(super) subnet: String,
    pub(super) bridge: String,
    pub(super) bridge_created: bool,
    pub(super) nodes: Vec<NodeState>,
    /// The login user `up --login-user` made, and its sudoers drop-in; each recorded
    /// before it is created, so `down` removes exactly these.
    #[serde(default)]
    pub(super) login_user: Option<String>,
    #[serde(default)]
    pub(super) login_user_created: bool,
    #[serde(default)]
    pub(super) sudoers_file: Option<PathBuf>,
    /// The variable the inventory names for the sudo password, if sudo asks for one.
    #[serde(default)]
    pub(super) sudo_password_env: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Default, Clone)]
pub(super) struct NodeState {
    pub(super) name: String,
    pub(super) netns: String,
    pub(super) veth: String,
    /// Set just before the namespace / veth is created, after checking it did not exist,
    /// so `down` never removes a same-named thing that was not ours.
    #[serde(default)]
    pub(super) netns_created: bool,
    #[serde(default)]
    pub(super) veth_created: bool,
    pub(super) addr: String,
    /// `unshare` (parent of init, in the root PID namespace), with its start time so a
    /// recycled pid is never signalled.
    pub(super) unshare_pid: Option<i32>,
    pub(super) unshare_start: Option<u64>,
    pub(super) init_pid: Option<i32>,
    pub(super) init_start: Option<u64>,
}

impl State {
    pub(super) fn path(name: &str) -> PathBuf {
        cluster_dir(name).join("cluster.json")
    }

    pub(super) fn load(name: &str) -> anyhow::Result<Option<State>> {
        let p = State::path(name);
        match std::fs::read(&p) {
            Ok(b) => Ok(Some(
                serde_json::from_slice(&b).with_context(|| format!("corrupt {}", p.display()))?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("read {}", p.display())),
        }
    }

    pub(super) fn save(&self) -> anyhow::Result<()> {
        let p = State::path(&self.name);
        let tmp = p.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("write {}", tmp.display()))?;
        std::fs::rename(&tmp, &p).with_context(|| format!("rename {}", p.display()))?;
        Ok(())
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
pub(crate) fn alive(pid: i32, start: Option<u64>) -> bool {
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

pub(super) fn child_of(parent: i32) -> Option<i32> {
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
pub(super) fn sshd_answers(addr: &str, timeout: Duration) -> bool {
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

/// An exclusive `flock` held until dropped.
pub(super) struct Flock(std::fs::File);

impl Flock {
    pub(super) fn acquire(path: &Path) -> anyhow::Result<Flock> {
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
    fn own_process_start_time_is_readable() {
        let me = std::process::id() as i32;
        assert!(proc_start_time(me).is_some());
        assert!(alive(me, proc_start_time(me)));
        assert!(!alive(me, proc_start_time(me).map(|s| s + 1)));
    }
}
