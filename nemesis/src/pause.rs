//! `pause`: SIGSTOP the node process by its pidfile, `resume` with SIGCONT. A paused node
//! keeps its sockets open and its peers see silence rather than resets, which exercises
//! different timeouts than a kill.

use crate::cluster::Cluster;
use crate::journal;
use crate::script::{ALIVE_FN, NODE_PID_FN, quote};
use crate::{Applied, FaultOptions, Result};

pub fn pause_script(pidfile: &str) -> String {
    format!(
        r#"pf={pf}
{ALIVE_FN}{NODE_PID_FN}pid=$(node_pid) || exit 3
if alive "$pid"; then kill -STOP "$pid"; echo "paused $pid"; else echo "not running ($pid)"; fi
"#,
        pf = quote(pidfile)
    )
}

/// Continues the pidfile's process. Succeeds when there is nothing to resume, so it is the
/// idempotent undo of a pause.
pub fn resume_script(pidfile: &str) -> String {
    format!(
        r#"pf={pf}
pid=$(tr -d ' \n' < "$pf" 2>/dev/null || true)
case "$pid" in ''|*[!0-9]*) echo "no pid to resume"; exit 0 ;; esac
kill -CONT "$pid" 2>/dev/null && echo "resumed $pid" || echo "not running ($pid)"
"#,
        pf = quote(pidfile)
    )
}

/// The registry's sweep: resume the pidfile's process, journal or not.
pub fn sweep_script(paths: &crate::HostPaths) -> String {
    resume_script(&paths.pidfile)
}

/// The `resume` drill.
pub fn end_script(cx: &dyn Cluster, _node: &str) -> String {
    resume_script(&cx.paths().pidfile)
}

pub fn start<'a>(
    cx: &'a dyn Cluster,
    opts: &'a FaultOptions,
    seed: u64,
) -> crate::BoxFuture<'a, Result<Applied>> {
    Box::pin(journal::process_fault(
        cx,
        opts,
        seed,
        "pause",
        |_node, pidfile| (pause_script(pidfile), resume_script(pidfile)),
    ))
}
