//! ssh master processes that end with the controller.
//!
//! The openssh crate starts masters with `ssh -f`: they detach and outlive a controller that
//! is killed, for as long as `ControlPersist` says and, whatever it says, for as long as a
//! command they carry runs on the host. So masters are started here instead, in the
//! foreground (`-N -M`, `ControlPersist=no`), as children of one thread that lives as long as
//! the process, with `PR_SET_PDEATHSIG`: when the controller dies, SIGKILL included, the
//! kernel sends each master SIGTERM and it exits, closing its channels. The crate then talks
//! to the master over its control socket (`Session::resume_mux`), as before.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

/// What a master needs: everything the openssh crate's builder would have passed.
pub(super) struct MasterSpec {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub key: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    pub config_file: Option<PathBuf>,
    /// `StrictHostKeyChecking` value.
    pub host_key_check: &'static str,
    pub connect_timeout_s: u64,
    pub server_alive_interval_s: u64,
}

/// A running master: its socket and log, and the process, stopped when this is dropped.
pub(super) struct MasterProc {
    pub ctl: PathBuf,
    pub log: PathBuf,
    pid: i32,
    /// Set by the reaper once the process has exited, under the lock that `kill` takes, so a
    /// pid is never signalled after it may have been reused.
    exited: Arc<Mutex<bool>>,
}

/// How starting a master failed.
pub(super) enum StartError {
    /// ssh exited before the control socket answered; its log says why.
    Exited {
        log: String,
    },
    /// The control socket did not answer within the bound.
    Timeout,
    Local(String),
}

impl MasterProc {
    fn has_exited(&self) -> bool {
        *self.exited.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn kill(&self) {
        let exited = self.exited.lock().unwrap_or_else(|e| e.into_inner());
        if !*exited {
            // SAFETY: the pid is our child and not yet reaped (checked under the lock the
            // reaper takes before reaping), so it is this process.
            unsafe { libc::kill(self.pid, libc::SIGTERM) };
        }
    }
}

impl Drop for MasterProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts a master for `spec` with its socket under `dir` (a new subdirectory), and waits
/// until its control socket answers, it exits, or `timeout` passes.
pub(super) async fn start(
    spec: &MasterSpec,
    dir: &Path,
    timeout: Duration,
) -> Result<MasterProc, StartError> {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let sub = dir.join(format!("m{}", SEQ.fetch_add(1, Ordering::Relaxed)));
    std::fs::create_dir(&sub)
        .map_err(|e| StartError::Local(format!("cannot create {}: {e}", sub.display())))?;
    let ctl = sub.join("master");
    let log = sub.join("log");
    let args = ssh_args(spec, &ctl, &log);
    let (pid, exited) = spawn_tied(args).map_err(StartError::Local)?;
    let master = MasterProc {
        ctl,
        log,
        pid,
        exited,
    };
    let deadline = Instant::now() + timeout;
    loop {
        if std::os::unix::net::UnixStream::connect(&master.ctl).is_ok() {
            return Ok(master);
        }
        if master.has_exited() {
            let log = std::fs::read_to_string(&master.log).unwrap_or_default();
            return Err(StartError::Exited { log });
        }
        if Instant::now() > deadline {
            return Err(StartError::Timeout);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn ssh_args(spec: &MasterSpec, ctl: &Path, log: &Path) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |s: &dyn AsRef<std::ffi::OsStr>| a.push(s.as_ref().to_os_string());
    push(&"-E");
    push(&log);
    push(&"-S");
    push(&ctl);
    push(&"-M");
    push(&"-N");
    for o in [
        "ControlPersist=no".to_string(),
        "BatchMode=yes".to_string(),
        format!("StrictHostKeyChecking={}", spec.host_key_check),
        format!("ConnectTimeout={}", spec.connect_timeout_s),
        format!("ServerAliveInterval={}", spec.server_alive_interval_s),
    ] {
        push(&"-o");
        push(&o);
    }
    push(&"-p");
    push(&spec.port.to_string());
    push(&"-l");
    push(&spec.user);
    if let Some(k) = &spec.key {
        push(&"-o");
        push(&"IdentitiesOnly=yes");
        push(&"-i");
        push(k);
    }
    if let Some(c) = &spec.config_file {
        push(&"-F");
        push(c);
    }
    if let Some(kh) = &spec.known_hosts {
        let mut o = OsString::from("UserKnownHostsFile=");
        o.push(kh);
        push(&"-o");
        push(&o);
    }
    // Host names beginning with '-' are refused by the inventory; `--` makes sure anyway.
    push(&"--");
    push(&spec.host);
    a
}

type SpawnRequest = (
    Vec<OsString>,
    mpsc::Sender<Result<(i32, Arc<Mutex<bool>>), String>>,
);

/// `PR_SET_PDEATHSIG` fires when the thread that forked the child ends, not the process; so
/// every master is forked by this one thread, which never ends.
fn spawn_tied(args: Vec<OsString>) -> Result<(i32, Arc<Mutex<bool>>), String> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("ssh-masters".into())
            .spawn(move || {
                for (args, reply) in rx {
                    let _ = reply.send(spawn_here(args));
                }
                // Unreachable while the static sender lives; parks rather than end the
                // thread, which would signal every master.
                loop {
                    std::thread::park();
                }
            })
            .expect("spawn the ssh-masters thread");
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    tx.lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((args, reply_tx))
        .map_err(|_| "the ssh-masters thread is gone".to_string())?;
    reply_rx
        .recv()
        .map_err(|_| "the ssh-masters thread is gone".to_string())?
}

fn spawn_here(args: Vec<OsString>) -> Result<(i32, Arc<Mutex<bool>>), String> {
    // SAFETY: getpid is async-signal-safe.
    let parent = unsafe { libc::getpid() };
    let mut cmd = Command::new("ssh");
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: prctl, getppid and _exit are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The controller died between fork and prctl: nobody would signal us.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot run ssh: {e}"))?;
    let pid = child.id() as i32;
    let exited = Arc::new(Mutex::new(false));
    let flag = exited.clone();
    // The reaper: waits without reaping, marks the process gone under the lock, then reaps.
    std::thread::Builder::new()
        .name("ssh-master-reaper".into())
        .spawn(move || {
            // SAFETY: a zeroed siginfo_t is a valid out-parameter for waitid.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            loop {
                // SAFETY: waits for our own child; WNOWAIT leaves it to be reaped below.
                let r = unsafe {
                    libc::waitid(
                        libc::P_PID,
                        pid as libc::id_t,
                        &mut info,
                        libc::WEXITED | libc::WNOWAIT,
                    )
                };
                if r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                    break;
                }
            }
            let mut gone = flag.lock().unwrap_or_else(|e| e.into_inner());
            *gone = true;
            let _ = child.wait();
        })
        .map_err(|e| format!("cannot start a reaper thread: {e}"))?;
    Ok((pid, exited))
}
