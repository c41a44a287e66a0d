//! PID 1 of a local cluster node: private mounts, hostname, sshd, and reaping.
//!
//! It runs as the first process of the node's PID namespace (started by `unshare --pid
//! --fork --mount --uts --mount-proc` inside the node's network namespace). Daemons started
//! over SSH that detach are reparented here, so it must reap them or they pile up as
//! zombies. When it exits, the kernel kills everything else in the namespace, which is
//! what makes `cluster down` complete: stopping this one process stops the node.
//!
//! Single-threaded and signal-driven: signals are blocked and taken with `sigtimedwait`, so
//! there is no handler and no race between reaping and shutdown.

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

pub fn run(node_dir: &Path, hostname: &str, sshd: &Path) -> anyhow::Result<std::process::ExitCode> {
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } != 1 {
        bail!("`cluster init` must be PID 1 of a fresh PID namespace");
    }
    set_hostname(hostname)?;
    // State first, then /tmp: the state dir must be bound before a tmpfs could hide it.
    std::fs::create_dir_all("/var/lib/faultline").context("mkdir /var/lib/faultline")?;
    mount_bind(&node_dir.join("root"), Path::new("/var/lib/faultline"))?;
    mount_tmpfs(Path::new("/tmp"))?;
    // sshd's privilege-separation directory; a fresh machine without a running sshd lacks it.
    std::fs::create_dir_all("/run/sshd").context("mkdir /run/sshd")?;

    let set = signal_set(&[libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGCHLD]);
    // SAFETY: set is a valid, initialised sigset_t.
    unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };

    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(node_dir.join("sshd.log"))
        .context("open sshd.log")?;
    let mut cmd = Command::new(sshd);
    cmd.arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(node_dir.join("sshd_config"));
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let empty = signal_set(&[]);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            Ok(())
        });
    }
    let sshd_pid = cmd.spawn().context("spawn sshd")?.id() as i32;
    eprintln!("init: {hostname}: sshd pid {sshd_pid}");

    loop {
        // SAFETY: zeroed siginfo_t is a valid out-parameter.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let ts = libc::timespec {
            tv_sec: 5,
            tv_nsec: 0,
        };
        // SAFETY: set, info and ts are valid for the call.
        let sig = unsafe { libc::sigtimedwait(&set, &mut info, &ts) };
        // Reap on every wakeup: SIGCHLDs coalesce, and the timeout is a safety net.
        if reap(sshd_pid) {
            eprintln!("init: {hostname}: sshd exited; stopping the node");
            return Ok(std::process::ExitCode::from(1));
        }
        if sig == libc::SIGTERM || sig == libc::SIGINT || sig == libc::SIGHUP {
            eprintln!("init: {hostname}: signal {sig}; stopping the node");
            // SAFETY: plain kill of our own child.
            unsafe { libc::kill(sshd_pid, libc::SIGTERM) };
            for _ in 0..40 {
                if reap(sshd_pid) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            // Our exit makes the kernel kill every remaining process of the namespace.
            return Ok(std::process::ExitCode::SUCCESS);
        }
    }
}

/// Reaps every exited child; true if `watch` was among them.
fn reap(watch: i32) -> bool {
    let mut seen = false;
    // Bounded: one pass reaps what has exited so far.
    for _ in 0..100_000 {
        let mut status = 0;
        // SAFETY: waitpid with WNOHANG on any child.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            break;
        }
        if pid == watch {
            seen = true;
        }
    }
    seen
}

fn signal_set(sigs: &[i32]) -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set before sigaddset reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in sigs {
            libc::sigaddset(&mut set, *s);
        }
        set
    }
}

fn set_hostname(name: &str) -> anyhow::Result<()> {
    // SAFETY: pointer and length describe a valid buffer.
    let r = unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) };
    if r != 0 {
        bail!("sethostname({name}): {}", std::io::Error::last_os_error());
    }
    Ok(())
}

fn cstr(p: &Path) -> anyhow::Result<CString> {
    CString::new(p.as_os_str().as_encoded_bytes())
        .with_context(|| format!("bad path {}", p.display()))
}

fn mount_bind(src: &Path, dst: &Path) -> anyhow::Result<()> {
    let (s, d) = (cstr(src)?, cstr(dst)?);
    // SAFETY: valid C strings; null fstype/data are allowed for MS_BIND.
    let r = unsafe {
        libc::mount(
            s.as_ptr(),
            d.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    if r != 0 {
        bail!(
            "bind {} on {}: {}",
            src.display(),
            dst.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

fn mount_tmpfs(dst: &Path) -> anyhow::Result<()> {
    let d = cstr(dst)?;
    let fstype = CString::new("tmpfs").unwrap();
    let data = CString::new("mode=1777,size=1g").unwrap();
    // SAFETY: valid C strings.
    let r = unsafe {
        libc::mount(
            fstype.as_ptr(),
            d.as_ptr(),
            fstype.as_ptr(),
            0,
            data.as_ptr().cast(),
        )
    };
    if r != 0 {
        bail!(
            "tmpfs on {}: {}",
            dst.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}
