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
//! * Masters die with the controller, also with a SIGKILL (see `master`), so nothing keeps
//!   a connection to a host once the command that opened it is gone.
//! * Control sockets live under a short private directory (`/tmp/flc-XXXXXXXX`) so their
//!   paths stay below the 108-byte Unix socket limit. It names its owner; the next
//!   controller removes the directories of owners that are gone.

mod error;
mod exec;
mod master;
mod session;
mod upload;

pub use error::{BecomeProblem, ControlError};
pub use exec::Output;
pub use upload::Uploaded;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use openssh::Session;
use tokio::sync::{Mutex, Semaphore};

use crate::inventory::{Inventory, Node};

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

/// A set of live connections to the hosts of an inventory. Cheap to clone; clones share the
/// connections.
#[derive(Clone)]
pub struct Control {
    inner: Arc<Inner>,
    /// Whom this handle's commands run as; see [`RunAs`].
    run_as: RunAs,
}

/// Whom a command runs as on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunAs {
    /// Through the host's `become` when the inventory sets one, else as the login user:
    /// what every faultline step uses, since they all need root.
    Default,
    /// Always as the login user, never through sudo (`faultline exec` without `--sudo`).
    Login,
    /// Through sudo even where the inventory sets no `become` (as root, without a
    /// password); a root login needs no sudo. `faultline exec --sudo`.
    Privileged,
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
    /// The sudo password, read when connecting (never logged, never on a command line).
    become_password: Option<String>,
    session: Mutex<Option<Master>>,
    /// Set when a call saw the connection drop; the next call checks and reconnects.
    suspect: AtomicBool,
    permits: Semaphore,
}

/// A master connection: the crate's handle on its control socket, and the ssh process,
/// which is stopped when this is dropped and dies with the controller (see [`master`]).
struct Master {
    session: Arc<Session>,
    proc: master::MasterProc,
}

impl Control {
    pub fn node_names(&self) -> Vec<String> {
        self.inner.inventory.node_names()
    }

    pub fn inventory(&self) -> &Inventory {
        &self.inner.inventory
    }

    /// A handle on the same connections whose commands run as `run_as`.
    pub fn with_run_as(&self, run_as: RunAs) -> Control {
        Control {
            inner: self.inner.clone(),
            run_as,
        }
    }

    /// Proves that sudo works non-interactively on every host that escalates (as this
    /// handle would run commands), and that it lands as the become user. Hosts that do not
    /// escalate are not listed.
    pub async fn check_privilege(&self, timeout: Duration) -> Vec<(String, Result<(), ControlError>)> {
        let mut calls = Vec::new();
        for name in self.node_names() {
            let Ok(host) = self.host(&name) else { continue };
            let Some(want) = self.sudo_for(host).map(str::to_string) else {
                continue;
            };
            calls.push(async move {
                let r = match self.run(&name, "id -un", timeout).await {
                    Err(e) => Err(e),
                    Ok(o) if !o.success() => o.check().map(|_| ()),
                    Ok(o) if o.stdout_str().trim() != want => Err(ControlError::Become {
                        node: name.clone(),
                        user: host.node.user.clone(),
                        problem: BecomeProblem::WrongUser {
                            want,
                            got: o.stdout_str().trim().to_string(),
                        },
                    }),
                    Ok(_) => Ok(()),
                };
                (name, r)
            });
        }
        futures::future::join_all(calls).await
    }

    /// The default command timeout from the inventory (`ssh.command_timeout_ms`).
    pub fn default_timeout(&self) -> Duration {
        Duration::from_millis(self.inner.inventory.ssh.command_timeout_ms)
    }
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
}
