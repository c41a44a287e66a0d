//! The seam between faults and transport: the controller implements [`Cluster`] over SSH, the
//! unit tests over a fake that records scripts.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a remote shell script produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// `None` when the script died of a signal or the transport lost its status.
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }
}

/// The transport failed (connection refused, timeout): distinct from a script that ran and
/// exited non-zero.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct RemoteError(pub String);

/// Where faultline keeps its state on a host. Paths are shell-quoted where used, so they may
/// contain spaces, but not newlines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPaths {
    /// The node writes its pid here; kill and pause act on this pid and never on a name.
    pub pidfile: String,
    /// One entry per active fault: `<id>.json`, `<id>.undo.sh`.
    pub journal_dir: String,
    /// The database's durable state, for the disk faults; `None` when it names none.
    pub state: Option<StatePaths>,
}

/// Where a database keeps what it must not lose. Patterns are shell globs relative to `dir`
/// (letters, digits, `/ . _ - *` only), expanded in sorted order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatePaths {
    /// Everything durable; `wipe` removes it whole.
    pub dir: String,
    /// Log files, oldest first by name; `truncate` cuts the last.
    pub log: Vec<String>,
    /// Snapshot files; `bitflip` picks among these and the log files.
    pub snapshot: Vec<String>,
    /// The command that serves `dir` on faultline's lazyfs (`<bin> lazyfs`), for
    /// `lose-unfsynced`; `None` when the database cannot run on it.
    pub lazyfs: Option<String>,
}

impl HostPaths {
    /// Where fixtures (mounts a test needs for its whole run) are journaled: beside the
    /// fault journal, so the end-of-run heal of faults leaves them, and every other heal
    /// replays both.
    pub fn fixture_dir(&self) -> String {
        match self.journal_dir.rsplit_once('/') {
            Some((parent, _)) if !parent.is_empty() => format!("{parent}/fixtures"),
            _ => format!("{}.fixtures", self.journal_dir),
        }
    }
}

impl Default for HostPaths {
    fn default() -> Self {
        HostPaths {
            pidfile: "/var/lib/faultline/node/node.pid".into(),
            journal_dir: "/var/lib/faultline/nemesis/journal".into(),
            state: None,
        }
    }
}

/// A cluster as the nemesis sees it.
pub trait Cluster: Send + Sync {
    /// Node names in inventory order (`n1`, `n2`, ...).
    fn nodes(&self) -> Vec<String>;

    /// The address the node's peers reach it at; partitions drop traffic by this address
    /// only, so the controller's own SSH connection is never cut.
    fn address(&self, node: &str) -> Option<String>;

    /// Runs a POSIX `sh` script on a node as root. Must time out.
    fn run<'a>(
        &'a self,
        node: &'a str,
        script: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Output, RemoteError>>;

    /// The node the cluster currently calls leader, asked through the nodes' admin status
    /// request; `None` when no node names one.
    fn leader(&self) -> BoxFuture<'_, Option<String>>;

    /// The shell command that starts the node process on `node`, detached from the session
    /// (the test runner defines how the node is launched).
    fn start_command(&self, node: &str) -> String;

    fn paths(&self) -> HostPaths {
        HostPaths::default()
    }

    /// Takes `node` out of the cluster's configuration through its leader, returning once
    /// the removal is committed (or the node was no member already). `Unsupported` for a
    /// database that cannot change its membership.
    fn remove_member<'a>(&'a self, node: &'a str) -> BoxFuture<'a, crate::Result<()>> {
        Box::pin(async move {
            Err(crate::NemesisError::Unsupported(format!(
                "cannot remove {node}: the database has no membership changes"
            )))
        })
    }

    /// The shell command that starts `node` as a fresh joiner, which asks the cluster to
    /// add it and promote it once caught up; `None` when the database cannot.
    fn join_command(&self, _node: &str) -> Option<String> {
        None
    }
}

/// Timeout for one fault or heal script on one host.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `script` on `node` and turns a non-zero exit into an error naming `what`.
pub async fn run_checked(
    cx: &dyn Cluster,
    node: &str,
    what: &str,
    script: &str,
) -> crate::Result<Output> {
    let out =
        cx.run(node, script, SCRIPT_TIMEOUT)
            .await
            .map_err(|e| crate::NemesisError::Remote {
                node: node.to_string(),
                message: format!("{what}: {e}"),
            })?;
    if !out.success() {
        return Err(crate::NemesisError::Command {
            node: node.to_string(),
            what: what.to_string(),
            status: out
                .status
                .map_or_else(|| "signal".to_string(), |s| s.to_string()),
            stderr: out.stderr.trim().to_string(),
        });
    }
    Ok(out)
}

/// Runs one script per node concurrently; results in the order given.
pub async fn run_all(
    cx: &dyn Cluster,
    what: &str,
    scripts: Vec<(String, String)>,
) -> Vec<(String, crate::Result<Output>)> {
    let futs = scripts.iter().map(|(node, script)| async move {
        (node.clone(), run_checked(cx, node, what, script).await)
    });
    futures::future::join_all(futs).await
}
