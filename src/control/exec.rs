//! Remote commands: one channel each on the host's master, bounded in time and in output.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::future::join_all;
use openssh::{Session, Stdio};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::error::{classify_sudo, tail};
use super::{Control, ControlError, Host, RunAs, error_chain, quote};

/// Grace past a command's own timeout for the host's `timeout -k` to kill it and report.
const KILL_GRACE: Duration = Duration::from_secs(3);

/// What a remote command did. `status` is `None` when it was killed by a signal.
#[derive(Debug, Clone)]
pub struct Output {
    pub node: String,
    pub cmd: String,
    pub status: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Some output beyond `output_limit_bytes` was dropped.
    pub truncated: bool,
    pub elapsed: Duration,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    pub fn status_str(&self) -> String {
        match self.status {
            Some(c) => format!("exit code {c}"),
            None => "a signal".into(),
        }
    }

    /// A non-zero exit becomes [`ControlError::Failed`] naming host, command, exit code and
    /// the tail of stderr.
    pub fn check(self) -> Result<Output, ControlError> {
        if self.success() {
            return Ok(self);
        }
        Err(ControlError::Failed {
            node: self.node.clone(),
            cmd: self.cmd.clone(),
            status: self.status_str(),
            stderr_tail: tail(&self.stderr_str(), 500),
        })
    }
}

impl Control {
    /// Runs `cmd` with `sh -c` on `node`. A non-zero exit is `Ok(Output)`; use
    /// [`Output::check`] to make it an error.
    pub async fn run(
        &self,
        node: &str,
        cmd: &str,
        timeout: Duration,
    ) -> Result<Output, ControlError> {
        self.exec(node, cmd, None, timeout).await
    }

    /// Runs `cmd` on each of `nodes` in parallel; results come back in the order given.
    pub async fn run_on<S: AsRef<str>>(
        &self,
        nodes: &[S],
        cmd: &str,
        timeout: Duration,
    ) -> Vec<(String, Result<Output, ControlError>)> {
        let calls = nodes.iter().map(|n| async move {
            let n = n.as_ref();
            (n.to_string(), self.run(n, cmd, timeout).await)
        });
        join_all(calls).await
    }

    /// [`Control::run_on`] every connected node.
    pub async fn run_all(
        &self,
        cmd: &str,
        timeout: Duration,
    ) -> Vec<(String, Result<Output, ControlError>)> {
        let names = self.node_names();
        self.run_on(&names, cmd, timeout).await
    }
}

/// Wraps the remote command line `inner` so that it runs as `user` through sudo.
///
/// Without a password, `sudo -n` fails at once rather than waiting for one. With a password,
/// the controller sends it as the first line of the command's stdin: the remote shell reads
/// it into a variable and hands it to `sudo -S` through a pipe from its builtin `printf`, so
/// it is on no command line (no process's argv) and in no file; the rest of stdin goes on to
/// the command (uploads stream through it). When sudo does not need the password (NOPASSWD,
/// or cached credentials), it is never given one, so the line cannot leak into the command.
pub fn sudo_wrap(user: &str, with_password: bool, inner: &str) -> String {
    let u = quote(user);
    if !with_password {
        return format!("sudo -n -u {u} -- {inner}");
    }
    format!(
        "IFS= read -r p; if sudo -n -u {u} true 2>/dev/null; then unset p; exec sudo -n -u {u} -- {inner}; fi; \
         {{ printf '%s\\n' \"$p\"; unset p; exec cat; }} | sudo -S -p '' -k -u {u} -- {inner}"
    )
}

impl Control {
    pub(super) async fn exec(
        &self,
        node: &str,
        cmd: &str,
        input: Option<Input<'_>>,
        timeout: Duration,
    ) -> Result<Output, ControlError> {
        let host = self.host(node)?;
        let started = Instant::now();
        let deadline = started + timeout + KILL_GRACE;
        let timed_out = || ControlError::CommandTimeout {
            node: node.into(),
            cmd: cmd.into(),
            timeout,
        };
        let _permit = tokio::time::timeout_at(deadline.into(), host.permits.acquire())
            .await
            .map_err(|_| timed_out())?
            .map_err(|_| ControlError::Local("semaphore closed".into()))?;
        let mut session = tokio::time::timeout_at(deadline.into(), self.session(host))
            .await
            .map_err(|_| timed_out())??;
        // The host enforces the limit too, so an overrunning command does not outlive us.
        let remaining = timeout
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(100));
        let inner = format!(
            "timeout -k 2 {:.3} sh -c {}",
            remaining.as_secs_f64(),
            quote(cmd)
        );
        let sudo = self.sudo_for(host);
        let password = sudo.and_then(|_| host.become_password.as_deref());
        let wrapped = match sudo {
            None => inner,
            Some(user) => sudo_wrap(user, password.is_some(), &inner),
        };
        let limit = self.inner.output_limit;
        let piped_stdin = input.is_some() || password.is_some();
        let work = async {
            let spawn = |session: Arc<Session>| {
                let wrapped = wrapped.clone();
                async move {
                    let child = session
                        .arc_raw_command(wrapped)
                        .stdin(if piped_stdin {
                            Stdio::piped()
                        } else {
                            Stdio::null()
                        })
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped())
                        .spawn()
                        .await;
                    child
                }
            };
            let mut child = match spawn(session.clone()).await {
                Ok(c) => c,
                // The channel never opened, so nothing ran: reconnect once and retry.
                Err(openssh::Error::Disconnected) | Err(openssh::Error::SshMux(_)) => {
                    host.suspect.store(true, Ordering::Relaxed);
                    session = self.session(host).await?;
                    spawn(session.clone())
                        .await
                        .map_err(|e| self.ssh_error(host, node, cmd, e))?
                }
                Err(e) => return Err(self.ssh_error(host, node, cmd, e)),
            };
            let mut stdin = child.stdin().take();
            let stdout = child.stdout().take();
            let stderr = child.stderr().take();
            let feed = async {
                if let (Some(w), Some(p)) = (stdin.as_mut(), password) {
                    // The first line is sudo's (see `sudo_wrap`); the rest is the command's.
                    let mut line = Vec::with_capacity(p.len() + 1);
                    line.extend_from_slice(p.as_bytes());
                    line.push(b'\n');
                    if let Err(e) = w.write_all(&line).await {
                        return Err(e);
                    }
                }
                if let (Some(mut w), Some(input)) = (stdin.take(), input) {
                    let r = match input {
                        Input::Bytes(b) => w.write_all(b).await,
                        Input::File(p) => match tokio::fs::File::open(p).await {
                            Ok(mut f) => tokio::io::copy(&mut f, &mut w).await.map(|_| ()),
                            Err(e) => Err(e),
                        },
                    };
                    let _ = w.shutdown().await;
                    r
                } else {
                    if let Some(mut w) = stdin.take() {
                        let _ = w.shutdown().await;
                    }
                    Ok(())
                }
            };
            let (fed, out, err) =
                tokio::join!(feed, read_capped(stdout, limit), read_capped(stderr, limit));
            let status = child.wait().await;
            let ((stdout, t1), (stderr, t2)) = (out, err);
            if let Err(e) = fed {
                // The command may have exited without reading all of its input; that is its
                // business and shows in its status, unless the transport itself failed.
                if status.is_err() {
                    return Err(ControlError::Ssh {
                        node: node.into(),
                        cmd: cmd.into(),
                        detail: format!("stdin: {e}"),
                    });
                }
            }
            let status = match status {
                Ok(s) => s.code(),
                Err(openssh::Error::RemoteProcessTerminated) => {
                    if session.check().await.is_ok() {
                        None
                    } else {
                        host.suspect.store(true, Ordering::Relaxed);
                        return Err(ControlError::Disconnected {
                            node: node.into(),
                            cmd: cmd.into(),
                            detail: "ssh master connection closed".into(),
                        });
                    }
                }
                Err(e) => return Err(self.ssh_error(host, node, cmd, e)),
            };
            Ok(Output {
                node: node.into(),
                cmd: cmd.into(),
                status,
                stdout,
                stderr,
                truncated: t1 || t2,
                elapsed: started.elapsed(),
            })
        };
        let out = tokio::time::timeout_at(deadline.into(), work)
            .await
            .map_err(|_| timed_out())??;
        // `timeout(1)` exits 124 when it had to stop the command.
        if out.status == Some(124) && out.elapsed + Duration::from_millis(50) >= timeout {
            return Err(timed_out());
        }
        if sudo.is_some() && !out.success() {
            if let Some(problem) = classify_sudo(out.status, &out.stderr_str()) {
                return Err(ControlError::Become {
                    node: node.into(),
                    user: host.node.user.clone(),
                    problem,
                });
            }
        }
        Ok(out)
    }

    /// The user to sudo to on `host` for this handle's commands, if any.
    pub(super) fn sudo_for<'h>(&self, host: &'h Host) -> Option<&'h str> {
        let configured = host.node.privilege.as_ref().map(|b| b.user.as_str());
        let user = match self.run_as {
            RunAs::Login => return None,
            RunAs::Default => configured?,
            RunAs::Privileged => configured.unwrap_or("root"),
        };
        // A root login that wants root needs no sudo (and may have none).
        if host.node.user == "root" && user == "root" {
            return None;
        }
        Some(user)
    }

    fn ssh_error(&self, host: &Host, node: &str, cmd: &str, e: openssh::Error) -> ControlError {
        match e {
            openssh::Error::Disconnected | openssh::Error::RemoteProcessTerminated => {
                host.suspect.store(true, Ordering::Relaxed);
                ControlError::Disconnected {
                    node: node.into(),
                    cmd: cmd.into(),
                    detail: e.to_string(),
                }
            }
            other => {
                host.suspect.store(true, Ordering::Relaxed);
                ControlError::Ssh {
                    node: node.into(),
                    cmd: cmd.into(),
                    detail: error_chain(&other),
                }
            }
        }
    }
}

pub(super) enum Input<'a> {
    Bytes(&'a [u8]),
    File(&'a Path),
}

/// Reads up to `limit` bytes and drains the rest, so a chatty command cannot exhaust memory
/// nor block on a full pipe.
async fn read_capped<R: AsyncRead + Unpin>(r: Option<R>, limit: usize) -> (Vec<u8>, bool) {
    let Some(mut r) = r else {
        return (Vec::new(), false);
    };
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut truncated = false;
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = limit.saturating_sub(out.len());
                if n > room {
                    truncated = true;
                }
                out.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    (out, truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_names_host_command_status_and_stderr() {
        let o = Output {
            node: "n2".into(),
            cmd: "false".into(),
            status: Some(3),
            stdout: vec![],
            stderr: b"line1\nboom\n".to_vec(),
            truncated: false,
            elapsed: Duration::ZERO,
        };
        let e = o.check().unwrap_err().to_string();
        assert!(
            e.contains("n2")
                && e.contains("`false`")
                && e.contains("exit code 3")
                && e.contains("boom"),
            "{e}"
        );
    }

    #[test]
    fn the_sudo_password_is_never_on_the_command_line() {
        let w = sudo_wrap("root", true, "timeout -k 2 5 sh -c id");
        assert!(w.contains("sudo -S -p '' -k -u root -- timeout -k 2 5 sh -c id"), "{w}");
        assert!(w.starts_with("IFS= read -r p;"), "{w}");
        assert_eq!(sudo_wrap("db", false, "x"), "sudo -n -u db -- x");
        // End to end with a stand-in sudo: the first stdin line is its, the rest the command's.
        let dir = std::env::temp_dir().join(format!("fl-sudo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("sudo");
        std::fs::write(
            &fake,
            "#!/bin/sh\ncase \"$*\" in *-n*true*) exit 1;; esac\nIFS= read -r pw; echo \"pw=$pw\" >&2\nwhile [ \"$1\" != -- ]; do shift; done; shift; exec \"$@\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(sudo_wrap("root", true, "cat"))
            .env("PATH", format!("{}:/usr/bin:/bin", dir.display()))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(b"hunter2\npayload")?;
                c.wait_with_output()
            })
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "payload");
        assert!(String::from_utf8_lossy(&out.stderr).contains("pw=hunter2"));
    }

    #[tokio::test]
    async fn read_capped_drains_past_the_limit() {
        let data = vec![7u8; 200_000];
        let (out, truncated) = read_capped(Some(&data[..]), 1000).await;
        assert_eq!(out.len(), 1000);
        assert!(truncated);
        let (out, truncated) = read_capped(Some(&data[..10]), 1000).await;
        assert_eq!((out.len(), truncated), (10, false));
    }
}
