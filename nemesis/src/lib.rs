//! Faults for faultline: process kills and pauses, network partitions of many shapes, packet
//! delay and loss — and the guarantee that every one of them heals.
//!
//! The crate knows faults, not SSH. It talks to hosts through the [`Cluster`] trait (run a
//! shell script on a named node, list node addresses, find the leader), which the controller
//! implements on top of its `control` module. Everything else lives here: target selection,
//! partition shapes as [`Grudge`]s, the iptables scripts, the on-host journal that makes every
//! fault undoable, the expiry watchdog that heals a fault even when the controller never comes
//! back, seeded [`Schedule`]s and the [`Executor`] a test run spawns.
//!
//! Each fault family is a file (`kill`, `pause`, `partition`, `packet`, `disk`) plus one entry in
//! [`registry`]: a [`registry::NemesisPackage`] bundles the fault, the options it reads, the
//! host tools it needs, its heal sweep and status probe, and how reports draw its windows.

pub mod cluster;
pub mod disk;
pub mod executor;
pub mod grudge;
pub mod journal;
pub mod kill;
pub mod lazyfs;
pub mod membership;
pub mod packet;
pub mod partition;
pub mod pause;
pub mod registry;
pub mod schedule;
pub mod script;
pub mod target;

#[cfg(test)]
mod fake;

use std::time::Duration;

pub use cluster::{BoxFuture, Cluster, HostPaths, Output, RemoteError, StatePaths};
pub use executor::{Executor, HealReport, HostStatus, heal, heal_fixtures, setup_fixtures, status};
pub use grudge::Grudge;
pub use partition::Shape;
pub use registry::{NemesisPackage, Opt, PlotMeta, lookup};
pub use schedule::{Action, NemesisConfig, Schedule, Step};
pub use target::TargetSpec;

/// What a nemesis operation can fail with. Remote failures name the host and the command.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NemesisError {
    #[error("{node}: {message}")]
    Remote { node: String, message: String },
    #[error("{node}: {what} failed (exit {status}): {stderr}")]
    Command {
        node: String,
        what: String,
        status: String,
        stderr: String,
    },
    /// Bad input: an unknown family, shape or target, or a fault that does not fit the cluster.
    #[error("{0}")]
    Invalid(String),
    /// A family option's value is bad, or no chosen family reads the option; the CLI names
    /// the flag that set it.
    #[error("{opt}: {message}")]
    Option {
        opt: registry::Opt,
        message: String,
    },
    /// The host cannot carry this fault (for example, its kernel lacks netem).
    #[error("{0}")]
    Unsupported(String),
    /// The current leader was asked for and no node named one.
    #[error("no leader: {0}")]
    NoLeader(String),
}

pub type Result<T, E = NemesisError> = std::result::Result<T, E>;

/// Everything a single fault needs besides the cluster: how to pick targets, which shape,
/// and how long before it heals itself on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultOptions {
    pub target: TargetSpec,
    pub shape: Shape,
    pub one_way: bool,
    /// After this long the host undoes the fault on its own, controller or not.
    pub expiry: Duration,
    /// For `constrained`: how long the future hub is cut off first so its log falls behind.
    pub lag: Duration,
    pub packet: packet::PacketSpec,
}

impl Default for FaultOptions {
    fn default() -> Self {
        FaultOptions {
            target: TargetSpec::One,
            shape: Shape::Halves,
            one_way: false,
            expiry: Duration::from_secs(3600),
            lag: Duration::from_secs(5),
            packet: packet::PacketSpec::default(),
        }
    }
}

impl FaultOptions {
    /// Checks what can be checked without a cluster (the packet spec's ranges).
    pub fn validate(&self) -> Result<()> {
        self.packet.validate().map_err(|e| NemesisError::Option {
            opt: registry::Opt::DelayMs,
            message: e.to_string(),
        })
    }
}

/// A fault as applied: what the history records and what a heal must undo.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub family: &'static str,
    /// The journal id on every touched host; healing replays exactly this journal.
    pub journal_id: String,
    /// Hosts that carry a journal entry for this fault.
    pub hosts: Vec<String>,
    /// The history value: targets, shape, grudge, expiry.
    pub description: serde_json::Value,
}
