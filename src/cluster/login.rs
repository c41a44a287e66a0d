//! `cluster up --login-user NAME`: the nodes' SSH login becomes an unprivileged user with
//! sudo, as on a cloud VM. The namespaces share this machine's `/etc`, so this is exactly
//! one user and one sudoers drop-in on this machine, each recorded in the cluster state
//! before it is made, and removed by `down` (also after a failed `up`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use super::net;
use super::state::State;
use crate::exit::usage;

pub(crate) struct LoginSpec {
    user: String,
    password_env: Option<String>,
    sudo: bool,
    sudoers: PathBuf,
}

impl LoginSpec {
    pub(crate) fn new(
        cluster: &str,
        user: String,
        password_env: Option<String>,
        sudo: bool,
    ) -> anyhow::Result<LoginSpec> {
        let ok = (1..=32).contains(&user.len())
            && user.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && user
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !ok || user == "root" {
            return Err(usage(format!(
                "--login-user {user:?}: expected a new login name from [a-z0-9_-], starting with a letter, not root"
            )));
        }
        if let Some(v) = &password_env {
            match std::env::var(v) {
                Ok(p) if !p.is_empty() && !p.contains(['\n', ':']) => {}
                _ => {
                    return Err(usage(format!(
                        "--sudo-password-env {v}: the variable must hold the password (non-empty, one line, no ':')"
                    )));
                }
            }
        }
        if net::find_tool("sudo").is_none() {
            bail!("--login-user needs sudo on this machine (the nodes share its /usr): apt-get install sudo");
        }
        Ok(LoginSpec {
            user,
            password_env,
            sudo,
            sudoers: PathBuf::from(format!("/etc/sudoers.d/faultline-{cluster}")),
        })
    }

    /// Creates the user (home in the cluster directory) and its sudoers drop-in.
    pub(crate) fn create(&self, state: &mut State, dir: &Path) -> anyhow::Result<()> {
        if user_exists(&self.user) {
            bail!(
                "--login-user {}: a user of that name already exists on this machine; pick a new name (it is removed again by `cluster down`)",
                self.user
            );
        }
        state.login_user = Some(self.user.clone());
        state.login_user_created = true;
        state.sudo_password_env = self.password_env.clone();
        state.save()?;
        let home = dir.join("home");
        run(
            Command::new("useradd")
                .args(["--user-group", "--shell", "/bin/sh", "--no-create-home", "--home-dir"])
                .arg(&home)
                .arg(&self.user),
        )?;
        std::fs::create_dir_all(&home)?;
        run(Command::new("chown").arg(format!("{0}:{0}", self.user)).arg(&home))?;
        match &self.password_env {
            // A locked account (`!`) cannot log in with a key either when sshd does not use PAM.
            None => run(Command::new("usermod").args(["-p", "*", &self.user]))?,
            Some(v) => {
                let pw = std::env::var(v).with_context(|| format!("{v} is not set"))?;
                let mut c = Command::new("chpasswd")
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .context("spawn chpasswd")?;
                c.stdin
                    .take()
                    .expect("piped")
                    .write_all(format!("{}:{pw}\n", self.user).as_bytes())?;
                let out = c.wait_with_output()?;
                if !out.status.success() {
                    bail!("chpasswd failed: {}", String::from_utf8_lossy(&out.stderr).trim());
                }
            }
        }
        if self.sudo {
            if self.sudoers.exists() {
                bail!("{} already exists (not this cluster's)", self.sudoers.display());
            }
            state.sudoers_file = Some(self.sudoers.clone());
            state.save()?;
            let rule = if self.password_env.is_some() { "ALL" } else { "NOPASSWD: ALL" };
            let text = format!(
                "# Written by `faultline cluster up --name {}`; removed by `cluster down`.\n{} ALL=(ALL:ALL) {rule}\n",
                state.name, self.user
            );
            let tmp = self.sudoers.with_extension("tmp");
            std::fs::write(&tmp, text).with_context(|| format!("write {}", tmp.display()))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o440))?;
            if let Some(visudo) = net::find_tool("visudo") {
                if let Err(e) = run(Command::new(visudo).arg("-cqf").arg(&tmp)) {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e.context("the sudoers drop-in does not parse"));
                }
            }
            std::fs::rename(&tmp, &self.sudoers)?;
        }
        Ok(())
    }
}

/// Removes the recorded user and sudoers drop-in; tolerates both being gone already.
pub(crate) fn remove(state: &State) -> anyhow::Result<()> {
    if let Some(f) = &state.sudoers_file {
        match std::fs::remove_file(f) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("remove {}", f.display())),
        }
        let _ = std::fs::remove_file(f.with_extension("tmp"));
    }
    if let (Some(u), true) = (&state.login_user, state.login_user_created) {
        if user_exists(u) {
            if run(Command::new("userdel").arg(u)).is_err() {
                run(Command::new("userdel").args(["-f", u]))
                    .with_context(|| format!("cannot remove login user {u}"))?;
            }
        }
    }
    Ok(())
}

fn user_exists(user: &str) -> bool {
    std::fs::read_to_string("/etc/passwd")
        .is_ok_and(|t| t.lines().any(|l| l.split(':').next() == Some(user)))
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}
