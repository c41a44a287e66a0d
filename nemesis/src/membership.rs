//! Membership faults, the classic recovery story of a machine that dies for good:
//!
//! - `member-remove` (shrink): the leader takes the target out of the configuration; once the
//!   removal commits, the node is stopped and its durable state wiped. Its undo (the heal,
//!   the expiry, the `member-add` drill) starts it as a fresh joiner, which asks the cluster
//!   to add it as a learner and promotes itself once caught up (grow).
//! - `member-replace`: both at once, a node replaced by a fresh one on its wiped host.
//!
//! The removal goes through consensus before anything on the host is touched, so a node is
//! never wiped while it still counts toward a quorum: wiping a member is the `wipe` disk
//! fault, a different experiment. The fresh node keeps its name and id but has a new
//! incarnation; the members forgot the old one when they saw it removed, so it is learned
//! anew rather than refused as a member that lost its state.
//!
//! The history records the removal and exactly what the wipe removed (`changed`).

use crate::cluster::Cluster;
use crate::disk::{Damage, damage_script};
use crate::journal;
use crate::kill::{start_script, stop_script};
use crate::{Applied, FaultOptions, NemesisError, Result};

/// The file, in the state directory, that tells a wiped node to join as a fresh one when it
/// starts; the bundled node's `server::JOIN_MARKER` (the nemesis crate does not depend on it).
pub const JOIN_MARKER: &str = "JOIN";

/// Stops the node and wipes its state; a node whose state directory is gone already (a
/// replace of a node that never started) reports an empty wipe rather than failing.
fn stop_and_wipe(cx: &dyn Cluster, pidfile: &str) -> Result<String> {
    let state = cx.paths().state.ok_or_else(|| {
        NemesisError::Unsupported("membership: the database names no durable state to wipe".into())
    })?;
    let d = crate::script::quote(&state.dir);
    // The marker makes any later start of the node a fresh join, the ordinary start
    // command of a kill's undo included (see the node's `JOIN_MARKER`).
    Ok(format!(
        "{}mkdir -p {d}\n{}mkdir -p {d} && : > {d}/{JOIN_MARKER}\n",
        stop_script(pidfile),
        damage_script(&state, Damage::Wipe)?
    ))
}

/// Starts the node as a joiner unless it runs: the undo of both faults and the `member-add`
/// drill (a no-op for a running member).
fn join_script(cx: &dyn Cluster, node: &str) -> Result<String> {
    let join = cx.join_command(node).ok_or_else(|| {
        NemesisError::Unsupported(format!("membership: the database cannot start {node} as a joining node"))
    })?;
    Ok(start_script(&cx.paths().pidfile, &join))
}

/// The `member-add` drill.
pub fn end_script(cx: &dyn Cluster, node: &str) -> String {
    join_script(cx, node)
        .unwrap_or_else(|e| format!("echo {} >&2; exit 1\n", crate::script::quote(&e.to_string())))
}

fn start_family<'a>(
    cx: &'a dyn Cluster,
    opts: &'a FaultOptions,
    seed: u64,
    family: &'static str,
) -> crate::BoxFuture<'a, Result<Applied>> {
    Box::pin(async move {
        use rand::SeedableRng;
        // Resolved once: after the removal, `leader` names another node.
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let (targets, leader) = crate::target::resolve_with(&opts.target, cx, &mut rng).await?;
        if targets.len() >= cx.nodes().len() {
            return Err(NemesisError::Invalid(format!(
                "{family}: cannot remove every node ({}); target fewer",
                targets.join(", ")
            )));
        }
        // Everything the hosts will run is built first: an unsupported database touches
        // neither the configuration nor a host.
        let mut scripts = std::collections::BTreeMap::new();
        let wipe = stop_and_wipe(cx, &cx.paths().pidfile)?;
        for t in &targets {
            let join = join_script(cx, t)?;
            let apply = if family == "member-replace" { format!("{wipe}{join}") } else { wipe.clone() };
            scripts.insert(t.clone(), (apply, join));
        }
        for t in &targets {
            cx.remove_member(t).await?;
        }
        journal::process_fault_on(cx, opts, &mut rng, family, targets, leader, move |node, _| {
            scripts[node].clone()
        })
        .await
    })
}

pub fn start_remove<'a>(
    cx: &'a dyn Cluster,
    opts: &'a FaultOptions,
    seed: u64,
) -> crate::BoxFuture<'a, Result<Applied>> {
    start_family(cx, opts, seed, "member-remove")
}

pub fn start_replace<'a>(
    cx: &'a dyn Cluster,
    opts: &'a FaultOptions,
    seed: u64,
) -> crate::BoxFuture<'a, Result<Applied>> {
    start_family(cx, opts, seed, "member-replace")
}

/// Nothing to sweep: a removed node is stopped, and starting nodes is the undo's business.
pub fn sweep_script(_: &crate::HostPaths) -> String {
    String::new()
}
