//! `kill`: SIGKILL the node process by its pidfile; the undo (and `start`) relaunches it with
//! the cluster's start command. Never by process name: another process with the same name on
//! the host is not ours to kill.

use crate::cluster::Cluster;
use crate::journal;
use crate::script::{ALIVE_FN, NODE_PID_FN, quote};
use crate::{Applied, FaultOptions, Result};

/// Kills the pidfile's process and waits (bounded, 10 s) until it is gone. A node that is
/// already down is fine: the fault's effect holds. The wait polls every 10 ms: a SIGKILLed
/// process is gone within a few, and the script's return marks the fault's time for
/// `bench recovery`, so a coarse poll would only add latency to every trial.
pub fn kill_script(pidfile: &str) -> String {
    kill_script_with(pidfile, false)
}

/// [`kill_script`] for faults that need the node stopped rather than killed (the disk
/// faults): no pidfile means stopped already (a node that refused to start leaves none).
pub fn stop_script(pidfile: &str) -> String {
    kill_script_with(pidfile, true)
}

fn kill_script_with(pidfile: &str, missing_ok: bool) -> String {
    let get_pid = if missing_ok {
        "pid=$(node_pid 2>/dev/null) || { echo \"not running (no pid in $pf)\"; pid=; }"
    } else {
        "pid=$(node_pid) || exit 3"
    };
    format!(
        r#"pf={pf}
{ALIVE_FN}{NODE_PID_FN}{get_pid}
if [ -z "$pid" ]; then
  :
elif alive "$pid"; then
  kill -KILL "$pid"
  i=0
  while alive "$pid" && [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done
  if alive "$pid"; then echo "pid $pid survived SIGKILL" >&2; exit 1; fi
  echo "killed $pid"
else
  echo "not running ($pid)"
fi
"#,
        pf = quote(pidfile)
    )
}

/// Starts the node unless the pidfile's process is alive. Idempotent, so it doubles as the
/// undo of a kill.
pub fn start_script(pidfile: &str, start_command: &str) -> String {
    format!(
        r#"pf={pf}
{ALIVE_FN}pid=$(tr -d ' \n' < "$pf" 2>/dev/null || true)
if [ -n "$pid" ] && alive "$pid"; then
  echo "already running ($pid)"
else
  {start_command}
  echo "started"
fi
"#,
        pf = quote(pidfile)
    )
}

/// A kill leaves nothing behind but a stopped node, which `start` (not a sweep) undoes:
/// restarting nodes is not a heal's business.
pub fn sweep_script(_: &crate::HostPaths) -> String {
    String::new()
}

/// The `start` drill: launch the node unless it runs.
pub fn end_script(cx: &dyn Cluster, node: &str) -> String {
    start_script(&cx.paths().pidfile, &cx.start_command(node))
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
        "kill",
        move |node, pidfile| {
            (
                kill_script(pidfile),
                start_script(pidfile, &cx.start_command(node)),
            )
        },
    ))
}
