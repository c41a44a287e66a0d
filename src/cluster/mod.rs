//! `faultline cluster up|down|status|list`: a local cluster of hosts on this machine.
//!
//! Each node is a network namespace with one veth on a bridge in the root namespace, an
//! address on a /24 of its own (no default route: it reaches its peers and the controller,
//! nothing else), and its own PID, mount and UTS namespaces, where `faultline cluster init`
//! is PID 1 and runs a real `sshd` with the node's host key. So the controller drives it
//! exactly as it drives a VM: over SSH, by address.
//!
//! Everything `up` creates is recorded in `<clusters dir>/NAME/cluster.json` *before* it is
//! created, so `down` removes exactly that, also after an `up` that failed half-way. Names of
//! namespaces and interfaces derive from the cluster name, so `down` can still sweep them
//! by name if the record itself is lost.

mod down;
mod init;
mod login;
pub mod net;
mod state;
mod up;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::exit::usage;
use state::{State, sshd_answers};
pub(crate) use state::{alive, proc_start_time};

/// Where clusters keep their state; `FAULTLINE_CLUSTERS_DIR` overrides it.
pub const DEFAULT_CLUSTERS_DIR: &str = "/var/lib/faultline-clusters";
pub const NODES_MAX: usize = 200;

#[derive(clap::Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    cmd: ClusterCmd,
}

#[derive(clap::Subcommand)]
enum ClusterCmd {
    /// Create a cluster; prints its inventory path as the last line of stdout.
    Up {
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        #[arg(long, default_value = "local")]
        name: String,
        /// Leave what was created in place when `up` fails (for debugging); `down` removes it.
        #[arg(long)]
        keep_on_failure: bool,
        /// Log in as this unprivileged user (created here, removed by `down`) with sudo,
        /// like a cloud VM; the inventory gets `become: sudo`.
        #[arg(long, value_name = "NAME")]
        login_user: Option<String>,
        /// Make the login user's sudo ask for the password held in this environment
        /// variable (the inventory names the variable, never the password).
        #[arg(long, value_name = "VAR", requires = "login_user")]
        sudo_password_env: Option<String>,
        /// Give the login user no sudo rights (to see pre-flight refuse it).
        #[arg(long, hide = true, requires = "login_user")]
        login_user_without_sudo: bool,
    },
    /// Remove a cluster and everything it created. Succeeds if it is already gone.
    Down {
        #[arg(long, default_value = "local")]
        name: String,
    },
    /// Each node's address, init process and whether its sshd answers.
    Status {
        #[arg(long, default_value = "local")]
        name: String,
    },
    /// Clusters on this machine.
    List,
    /// PID 1 of a node (started by `up`).
    #[command(hide = true)]
    Init {
        #[arg(long)]
        node_dir: PathBuf,
        #[arg(long)]
        hostname: String,
        #[arg(long)]
        sshd: PathBuf,
    },
}

pub fn run(args: ClusterArgs) -> anyhow::Result<ExitCode> {
    match args.cmd {
        ClusterCmd::Up {
            nodes,
            name,
            keep_on_failure,
            login_user,
            sudo_password_env,
            login_user_without_sudo,
        } => {
            let login = match login_user {
                None => None,
                Some(user) => Some(login::LoginSpec::new(
                    &name,
                    user,
                    sudo_password_env,
                    !login_user_without_sudo,
                )?),
            };
            up::up(&name, nodes, keep_on_failure, login)
        }
        ClusterCmd::Down { name } => down::down(&name),
        ClusterCmd::Status { name } => status(&name),
        ClusterCmd::List => list(),
        ClusterCmd::Init {
            node_dir,
            hostname,
            sshd,
        } => init::run(&node_dir, &hostname, &sshd),
    }
}

pub fn clusters_dir() -> PathBuf {
    std::env::var_os("FAULTLINE_CLUSTERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| DEFAULT_CLUSTERS_DIR.into())
}

pub fn cluster_dir(name: &str) -> PathBuf {
    clusters_dir().join(name)
}

/// The inventory a cluster writes; `-i NAME` resolves to it.
pub fn inventory_path(name: &str) -> PathBuf {
    cluster_dir(name).join("inventory.yaml")
}

/// A cluster name that cannot become part of namespace and interface names.
#[derive(Debug, thiserror::Error)]
#[error("bad cluster name {0:?}: use 1-32 characters from [a-z0-9-], starting with a letter")]
pub struct BadClusterName(pub String);

/// Cluster names become parts of namespace and interface names.
pub fn valid_name(name: &str) -> Result<(), BadClusterName> {
    let ok = (1..=32).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(BadClusterName(name.into()))
    }
}

/// [`valid_name`] at the CLI edge: a bad name is a usage error (exit 64).
fn valid_name_cli(name: &str) -> anyhow::Result<()> {
    valid_name(name).map_err(|e| usage(e.to_string()))
}

fn status(name: &str) -> anyhow::Result<ExitCode> {
    valid_name_cli(name)?;
    let Some(state) = State::load(name)? else {
        return Err(usage(format!("no local cluster named {name:?}")));
    };
    outln!(
        "cluster {} subnet {} bridge {}",
        state.name, state.subnet, state.bridge
    );
    outln!("inventory {}", inventory_path(name).display());
    let mut all_ok = true;
    outln!(
        "{:<6} {:<16} {:<10} {:<8}",
        "node", "address", "init", "sshd"
    );
    for n in &state.nodes {
        let init = match n.init_pid {
            Some(p) if alive(p, n.init_start) => format!("{p}"),
            Some(_) => "dead".into(),
            None => "-".into(),
        };
        let ssh = sshd_answers(&n.addr, Duration::from_millis(1000));
        all_ok &= ssh;
        outln!(
            "{:<6} {:<16} {:<10} {:<8}",
            n.name,
            n.addr,
            init,
            if ssh { "up" } else { "DOWN" }
        );
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::exit::HARNESS)
    })
}

fn list() -> anyhow::Result<ExitCode> {
    let mut names: Vec<String> = match std::fs::read_dir(clusters_dir()) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    for n in names {
        match State::load(&n) {
            Ok(Some(s)) => outln!("{n}\t{} node(s)\t{}", s.nodes.len(), s.subnet),
            _ => outln!("{n}\t(incomplete)"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_names_are_checked() {
        assert!(valid_name("local").is_ok());
        assert!(valid_name("t-exec-12345").is_ok());
        for bad in ["", "Local", "1abc", "a_b", "a-", "a/b", &"x".repeat(33)] {
            assert!(valid_name(bad).is_err(), "{bad:?}");
        }
    }
}
