//! What can go wrong talking to a host, one variant per cause a person would act on
//! differently (start sshd, fix the key, check the host key, raise a timeout).

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(
        "{node} ({addr}): connection refused: nothing listens there (is sshd running on that port?)"
    )]
    Refused { node: String, addr: String },

    #[error("{node} ({addr}): host unreachable: {detail}")]
    Unreachable {
        node: String,
        addr: String,
        detail: String,
    },

    #[error("{node} ({addr}): no SSH handshake within {} ms (host down, paused, or filtered?)", .timeout.as_millis())]
    ConnectTimeout {
        node: String,
        addr: String,
        timeout: Duration,
    },

    #[error("{node} ({addr}): authentication refused for user {user:?} with key {key}: {detail}")]
    Auth {
        node: String,
        addr: String,
        user: String,
        key: String,
        detail: String,
    },

    #[error(
        "{node} ({addr}): HOST KEY MISMATCH: the host's key differs from the one in {known_hosts}; \
         refusing to connect (reinstalled host, or not the host you think?)"
    )]
    HostKeyMismatch {
        node: String,
        addr: String,
        known_hosts: String,
    },

    #[error(
        "{node} ({addr}): host key not in {known_hosts} and host_key_policy is strict \
         (add the key, or use host_key_policy: accept-new)"
    )]
    HostKeyUnknown {
        node: String,
        addr: String,
        known_hosts: String,
    },

    #[error("{node}: cannot use private key {}: {detail}", .path.display())]
    KeyFile {
        node: String,
        path: PathBuf,
        detail: String,
    },

    #[error("{node} ({addr}): ssh connection failed: {detail}")]
    Connect {
        node: String,
        addr: String,
        detail: String,
    },

    /// Several hosts failed to connect; each cause is listed.
    #[error("cannot connect to {} host(s):\n  {}", .0.len(), .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n  "))]
    ConnectMany(Vec<ControlError>),

    #[error("{node}: `{cmd}` did not finish within {} ms", .timeout.as_millis())]
    CommandTimeout {
        node: String,
        cmd: String,
        timeout: Duration,
    },

    #[error("{node}: connection lost while running `{cmd}`: {detail}")]
    Disconnected {
        node: String,
        cmd: String,
        detail: String,
    },

    #[error("{node}: ssh error running `{cmd}`: {detail}")]
    Ssh {
        node: String,
        cmd: String,
        detail: String,
    },

    #[error("no node {0:?} in the inventory")]
    UnknownNode(String),

    /// A command ran and exited non-zero (from [`super::Output::check`]).
    #[error("{node}: `{cmd}` exited with {status}{}", if .stderr_tail.is_empty() { String::new() } else { format!(": {}", .stderr_tail) })]
    Failed {
        node: String,
        cmd: String,
        status: String,
        stderr_tail: String,
    },

    #[error("{node}: upload {local} -> {remote} failed: {detail}")]
    Upload {
        node: String,
        local: String,
        remote: String,
        detail: String,
    },

    /// Privilege escalation failed: sudo is missing, refuses, or wants what it cannot get.
    #[error("{node}: sudo as login user {user:?} failed: {problem}")]
    Become {
        node: String,
        user: String,
        problem: BecomeProblem,
    },

    #[error("local I/O: {0}")]
    Local(String),
}

/// Why sudo did not work on a host, each with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BecomeProblem {
    /// sudo asked for a password and none was configured.
    NeedsPassword,
    /// The configured password was refused.
    WrongPassword,
    /// sudoers has `requiretty`.
    RequiresTty,
    /// The user may not use sudo (at all, or not as the become user).
    NotAllowed(String),
    /// No sudo on the host.
    Missing,
    /// The password's source (environment variable, file) could not be read.
    PasswordSource(String),
    /// sudo ran but the command did not end up as the become user.
    WrongUser { want: String, got: String },
}

impl std::fmt::Display for BecomeProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BecomeProblem::NeedsPassword => f.write_str(
                "sudo needs a password, or the user is not allowed to use sudo at all (`sudo -n` cannot tell which): \
                 grant `USER ALL=(ALL) NOPASSWD: ALL` in /etc/sudoers.d/, or set become_password_env / become_password_file in the inventory",
            ),
            BecomeProblem::WrongPassword => f.write_str(
                "sudo refused the password from become_password_env / become_password_file",
            ),
            BecomeProblem::RequiresTty => f.write_str(
                "sudoers has `requiretty`, so sudo cannot run over a non-interactive SSH session: add `Defaults:USER !requiretty` for the login user",
            ),
            BecomeProblem::NotAllowed(m) => write!(
                f,
                "the user is not allowed to use sudo ({m}): add a sudoers rule for it, e.g. `USER ALL=(ALL) NOPASSWD: ALL` in /etc/sudoers.d/"
            ),
            BecomeProblem::Missing => f.write_str(
                "sudo is not installed on the host: install it, or log in as root",
            ),
            BecomeProblem::PasswordSource(m) => f.write_str(m),
            BecomeProblem::WrongUser { want, got } => {
                write!(f, "commands ran as {got:?}, not as become_user {want:?}")
            }
        }
    }
}

/// Recognises sudo's own complaints in a failed command's stderr.
pub(super) fn classify_sudo(status: Option<i32>, stderr: &str) -> Option<BecomeProblem> {
    let s = stderr.to_ascii_lowercase();
    if status == Some(127) && (s.contains("sudo: not found") || s.contains("sudo: command not found")) {
        return Some(BecomeProblem::Missing);
    }
    if status != Some(1) || !s.contains("sudo") {
        return None;
    }
    if s.contains("a terminal is required") || s.contains("must have a tty") {
        return Some(BecomeProblem::RequiresTty);
    }
    if s.contains("incorrect password") || s.contains("sorry, try again") {
        return Some(BecomeProblem::WrongPassword);
    }
    if s.contains("a password is required") {
        return Some(BecomeProblem::NeedsPassword);
    }
    if s.contains("not in the sudoers file")
        || s.contains("is not allowed to")
        || s.contains("may not run sudo")
    {
        let line = stderr
            .lines()
            .find(|l| {
                let l = l.to_ascii_lowercase();
                l.contains("sudoers") || l.contains("not allowed") || l.contains("may not run")
            })
            .unwrap_or("")
            .trim();
        return Some(BecomeProblem::NotAllowed(line.to_string()));
    }
    None
}

impl ControlError {
    /// The node the error is about, when it is about one.
    pub fn node(&self) -> Option<&str> {
        use ControlError::*;
        match self {
            Refused { node, .. }
            | Unreachable { node, .. }
            | ConnectTimeout { node, .. }
            | Auth { node, .. }
            | HostKeyMismatch { node, .. }
            | HostKeyUnknown { node, .. }
            | KeyFile { node, .. }
            | Connect { node, .. }
            | CommandTimeout { node, .. }
            | Disconnected { node, .. }
            | Ssh { node, .. }
            | Failed { node, .. }
            | Upload { node, .. }
            | Become { node, .. } => Some(node),
            UnknownNode(n) => Some(n),
            ConnectMany(_) | Local(_) => None,
        }
    }
}

/// Facts about the connection attempt, to word the error.
pub(crate) struct ConnectCtx<'a> {
    pub node: &'a str,
    pub addr: String,
    pub user: &'a str,
    pub key: String,
    pub known_hosts: String,
    pub timeout: Duration,
}

/// Turns ssh's stderr (the master's log) into a specific error. ssh has no structured
/// errors, so this reads its messages; anything unrecognised keeps the full text.
pub(crate) fn classify_connect(ctx: &ConnectCtx, log: &str) -> ControlError {
    let detail = clean_log(log);
    let node = ctx.node.to_string();
    let addr = ctx.addr.clone();
    if log.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || log.contains("Host key for") && log.contains("has changed")
    {
        ControlError::HostKeyMismatch {
            node,
            addr,
            known_hosts: ctx.known_hosts.clone(),
        }
    } else if log.contains("you have requested strict checking") {
        ControlError::HostKeyUnknown {
            node,
            addr,
            known_hosts: ctx.known_hosts.clone(),
        }
    } else if log.contains("Host key verification failed") {
        ControlError::HostKeyMismatch {
            node,
            addr,
            known_hosts: ctx.known_hosts.clone(),
        }
    } else if log.contains("Connection refused") {
        ControlError::Refused { node, addr }
    } else if log.contains("Permission denied") || log.contains("Too many authentication failures")
    {
        ControlError::Auth {
            node,
            addr,
            user: ctx.user.into(),
            key: ctx.key.clone(),
            detail,
        }
    } else if log.contains("timed out") || log.contains("Connection timed out") {
        ControlError::ConnectTimeout {
            node,
            addr,
            timeout: ctx.timeout,
        }
    } else if log.contains("No route to host")
        || log.contains("Network is unreachable")
        || log.contains("Could not resolve hostname")
    {
        ControlError::Unreachable { node, addr, detail }
    } else if log.contains("Load key")
        || log.contains("invalid format")
        || log.contains("bad permissions")
    {
        ControlError::KeyFile {
            node,
            path: PathBuf::from(&ctx.key),
            detail,
        }
    } else {
        ControlError::Connect { node, addr, detail }
    }
}

fn clean_log(log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .map(|l| l.trim())
        .filter(|l| {
            !l.is_empty() && !l.starts_with("@@@") && !l.starts_with("Warning: Permanently added")
        })
        .collect();
    tail(&lines.join(" | "), 400)
}

/// Last `max` bytes of `s` on a char boundary, for error messages that quote output.
pub(crate) fn tail(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &s[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ConnectCtx<'static> {
        ConnectCtx {
            node: "n1",
            addr: "10.0.0.2:22".into(),
            user: "root",
            key: "/k".into(),
            known_hosts: "/kh".into(),
            timeout: Duration::from_secs(2),
        }
    }

    #[test]
    fn ssh_messages_map_to_their_causes() {
        let c = ctx();
        let cases: &[(&str, &str)] = &[
            (
                "ssh: connect to host 10.0.0.2 port 22: Connection refused",
                "Refused",
            ),
            ("root@10.0.0.2: Permission denied (publickey).", "Auth"),
            (
                "ssh: connect to host 10.0.0.2 port 22: Connection timed out",
                "ConnectTimeout",
            ),
            (
                "ssh: connect to host 10.0.0.2 port 22: No route to host",
                "Unreachable",
            ),
            (
                "@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\nHost key verification failed.",
                "HostKeyMismatch",
            ),
            (
                "No ED25519 host key is known for 10.0.0.2 and you have requested strict checking.\nHost key verification failed.",
                "HostKeyUnknown",
            ),
            (
                "kex_exchange_identification: read: Connection reset by peer",
                "Connect",
            ),
        ];
        for (log, want) in cases {
            let got = format!("{:?}", classify_connect(&c, log));
            assert!(got.starts_with(want), "{log:?} -> {got}");
        }
    }

    #[test]
    fn tail_keeps_the_end_on_a_char_boundary() {
        assert_eq!(tail("abc", 10), "abc");
        assert_eq!(tail("0123456789", 3), "...789");
        assert_eq!(tail("ééé", 3), "...é");
    }
}

#[cfg(test)]
mod sudo_tests {
    use super::*;

    #[test]
    fn sudo_complaints_are_told_apart() {
        let c = |st, e: &str| classify_sudo(Some(st), e);
        assert_eq!(c(1, "sudo: a password is required\n"), Some(BecomeProblem::NeedsPassword));
        assert_eq!(c(1, "sudo: sorry, you must have a tty to run sudo\n"), Some(BecomeProblem::RequiresTty));
        assert_eq!(c(1, "sudo: 1 incorrect password attempt\n"), Some(BecomeProblem::WrongPassword));
        assert!(matches!(c(1, "bob is not in the sudoers file.\nsudo: x"), Some(BecomeProblem::NotAllowed(_))));
        assert_eq!(c(127, "sh: 1: sudo: not found\n"), Some(BecomeProblem::Missing));
        // A command's own failure is not sudo's.
        assert_eq!(c(1, "grep: no such file\n"), None);
        assert_eq!(c(2, "sudo: a password is required\n"), None);
    }
}
