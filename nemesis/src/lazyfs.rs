//! `lose-unfsynced`: kill the node and drop every write it had not fsynced, as a power cut
//! does (Jepsen's LazyFS faults, etcd's robustness tests).
//!
//! It needs the node's durable state on faultline's `lazyfs` (node/src/lazyfs.rs), a FUSE
//! filesystem that holds written data in memory until it is synced. That mount is a
//! *fixture*: a test that chooses this family gets it on every host before the nodes start,
//! journaled in the fixture journal (beside the fault journal) with its own expiry, and
//! removed after the nodes stop, or by any later heal. The heal of the mount stops the node,
//! syncs everything (a clean shutdown loses nothing), unmounts, and starts the node again if
//! it was running; the directory underneath then holds exactly the synced state.
//!
//! The fault itself: stop the node by its pidfile, write `lose` to the mount's control file,
//! and print `changed {json}` with what was dropped (files, bytes). The heal starts the node.

use crate::cluster::{Cluster, StatePaths};
use crate::journal;
use crate::kill::{start_script, stop_script};
use crate::script::quote;
use crate::{Applied, FaultOptions, NemesisError, Result};

/// The control file in the mount's root (node/src/lazyfs.rs `CONTROL_NAME`).
pub const CONTROL_NAME: &str = ".faultline-lazyfs";

/// The mount's source in `/proc/mounts` (node/src/lazyfs.rs `FS_NAME`): only mounts with
/// this source are ever unmounted.
pub const FS_NAME: &str = "faultline-lazyfs";

/// The state directory and the lazyfs command, or why this database cannot carry the fault.
fn lazyfs_of(state: Option<StatePaths>) -> Result<(String, String)> {
    let unsupported = || {
        NemesisError::Unsupported(
            "lose-unfsynced: the database does not run on faultline's lazyfs (only the bundled \
             node does)"
                .into(),
        )
    };
    let state = state.ok_or_else(unsupported)?;
    let cmd = state.lazyfs.ok_or_else(unsupported)?;
    Ok((state.dir, cmd))
}

/// `mounted`: true when `$d` is a faultline lazyfs mount point.
const MOUNTED_FN: &str = r#"mounted() {
  awk -v d="$d" -v s="faultline-lazyfs" '$1 == s && $2 == d { f = 1 } END { exit !f }' /proc/mounts
}
"#;

/// Mounts lazyfs over the state directory (creating it), in the background, and waits until
/// it answers. Refuses a directory that is already mounted: a leftover is a heal's to remove.
pub fn mount_script(dir: &str, lazyfs: &str) -> String {
    format!(
        r#"d={d}
{MOUNTED_FN}[ -e /dev/fuse ] || {{ echo "/dev/fuse is missing: lose-unfsynced needs FUSE on this host (modprobe fuse)" >&2; exit 1; }}
if mounted; then echo "$d is already on a faultline lazyfs mount (heal it first: faultline nemesis heal)" >&2; exit 1; fi
mkdir -p "$d"
setsid nohup {lazyfs} --dir "$d" > "$d.lazyfs.log" 2>&1 < /dev/null &
echo $! > "$d.lazyfs.pid"
i=0
while [ ! -e "$d/{CONTROL_NAME}" ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done
if [ ! -e "$d/{CONTROL_NAME}" ]; then
  echo "lazyfs did not mount $d within 5 s; its log:" >&2; cat "$d.lazyfs.log" >&2; exit 1
fi
echo "mounted $d"
"#,
        d = quote(dir),
    )
}

/// The mount's heal: idempotent. Stops the node if it runs, syncs everything, unmounts, ends
/// the lazyfs process (by its pidfile, and only if its command line is lazyfs's), and starts
/// the node again if it had been running.
pub fn unmount_script(dir: &str, pidfile: &str, start_command: &str) -> String {
    format!(
        r#"d={d}
{MOUNTED_FN}{alive}was_running=
if mounted; then
  p=$(tr -d ' \n' < {pf} 2>/dev/null || true)
  if [ -n "$p" ] && alive "$p"; then was_running=1; fi
  (
{stop}  ) || exit 1
  if [ -e "$d/{CONTROL_NAME}" ] && printf flush > "$d/{CONTROL_NAME}"; then
    echo "synced $(cat "$d/{CONTROL_NAME}")"
  else
    echo "lazyfs at $d does not answer: what it had not synced is gone" >&2
  fi
  umount "$d" 2>/dev/null || umount -l "$d"
  echo "unmounted $d"
fi
lp=$(tr -d ' \n' < "$d.lazyfs.pid" 2>/dev/null || true)
if [ -n "$lp" ] && alive "$lp" && tr '\0' ' ' < "/proc/$lp/cmdline" 2>/dev/null | grep -q lazyfs; then
  i=0
  while alive "$lp" && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done
  alive "$lp" && kill -KILL "$lp"
fi
rm -f "$d.lazyfs.pid"
if [ -n "$was_running" ]; then
{start}fi
"#,
        d = quote(dir),
        pf = quote(pidfile),
        alive = crate::script::ALIVE_FN,
        stop = stop_script(pidfile),
        start = start_script(pidfile, start_command),
    )
}

/// Drops what the node had not synced, after the stop. Exits non-zero when the directory is
/// not on lazyfs, so a fault that lost nothing is never recorded as applied.
pub fn lose_script(dir: &str) -> String {
    format!(
        r#"d={d}
if [ ! -e "$d/{CONTROL_NAME}" ]; then
  echo "$d is not on faultline's lazyfs: lose-unfsynced needs the mount a test makes before its nodes start" >&2
  exit 1
fi
printf lose > "$d/{CONTROL_NAME}"
echo "changed $(cat "$d/{CONTROL_NAME}")"
"#,
        d = quote(dir)
    )
}

pub fn start<'a>(cx: &'a dyn Cluster, opts: &'a FaultOptions, seed: u64) -> crate::BoxFuture<'a, Result<Applied>> {
    Box::pin(async move {
        let (dir, _) = lazyfs_of(cx.paths().state)?;
        let lose = lose_script(&dir);
        journal::process_fault(cx, opts, seed, "lose-unfsynced", move |node, pidfile| {
            (
                format!("{}{lose}", stop_script(pidfile)),
                start_script(pidfile, &cx.start_command(node)),
            )
        })
        .await
    })
}

/// The fixture: (mount, unmount) for one host.
pub fn fixture(cx: &dyn Cluster, node: &str) -> Result<(String, String)> {
    let paths = cx.paths();
    let (dir, cmd) = lazyfs_of(paths.state)?;
    Ok((mount_script(&dir, &cmd), unmount_script(&dir, &paths.pidfile, &cx.start_command(node))))
}

/// Leftover mounts are healed through the fixture journal; a host that lost that journal
/// has its faultline lazyfs mounts found by their source name and removed by the same
/// script (no node restart: the sweep does not know the start command).
pub fn sweep_script(paths: &crate::HostPaths) -> String {
    match &paths.state {
        Some(StatePaths { dir, lazyfs: Some(_), .. }) => unmount_script(dir, &paths.pidfile, ":"),
        _ => String::new(),
    }
}

/// One line per live lazyfs mount.
pub fn status_script(paths: &crate::HostPaths) -> String {
    match &paths.state {
        Some(StatePaths { dir, lazyfs: Some(_), .. }) => format!(
            "d={d}\n{MOUNTED_FN}if mounted; then echo \"lazyfs mounted at $d\"; fi\n",
            d = quote(dir)
        ),
        // The probe is run in a subshell of its own: it must hold a command.
        _ => ":\n".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> (bool, String, String) {
        let out = std::process::Command::new("sh").arg("-c").arg(script).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    #[test]
    fn lose_refuses_a_directory_that_is_not_on_lazyfs() {
        let d = std::env::temp_dir().join(format!("faultline-lose-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let (ok, out, err) = sh(&lose_script(&d.to_string_lossy()));
        assert!(!ok, "{out}");
        assert!(err.contains("is not on faultline's lazyfs"), "{err}");
        assert!(!out.contains("changed"), "{out}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn unmount_of_a_directory_never_mounted_is_a_no_op_that_succeeds() {
        let d = std::env::temp_dir().join(format!("faultline-unmount-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("wal.log"), b"x").unwrap();
        let pf = d.join("node.pid");
        let (ok, out, err) = sh(&unmount_script(&d.to_string_lossy(), &pf.to_string_lossy(), "echo STARTED"));
        assert!(ok, "{err}");
        assert!(!out.contains("unmounted") && !out.contains("STARTED"), "{out}");
        assert_eq!(std::fs::read(d.join("wal.log")).unwrap(), b"x");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[tokio::test]
    async fn a_database_without_lazyfs_cannot_carry_the_fault_and_no_host_is_touched() {
        let cx = crate::fake::FakeCluster::new(3);
        let e = start(&cx, &FaultOptions::default(), 1).await.unwrap_err();
        assert!(matches!(e, NemesisError::Unsupported(_)), "{e}");
        assert!(fixture(&cx, "n1").is_err());
        assert!(cx.scripts().is_empty());
    }
}
