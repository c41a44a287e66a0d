//! `cluster down`: removes what the state file records, then what the cluster's name implies.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::net;
use super::state::{NodeState, State, alive, proc_start_time};
use super::{cluster_dir, valid_name_cli};

pub(super) fn down(name: &str) -> anyhow::Result<ExitCode> {
    valid_name_cli(name)?;
    if !net::is_root() {
        bail!("removing a local cluster needs root");
    }
    let existed = cluster_dir(name).exists();
    teardown(name)?;
    if existed {
        eprintln!("cluster {name}: removed");
    } else {
        eprintln!("cluster {name}: nothing to remove");
    }
    Ok(ExitCode::SUCCESS)
}

/// Removes what the state file records, then sweeps names derived from the cluster name.
/// Every step tolerates things already gone.
pub(super) fn teardown(name: &str) -> anyhow::Result<()> {
    let state = State::load(name).unwrap_or_else(|e| {
        eprintln!("faultline: {e:#}; removing by name only");
        None
    });
    let mut netns: Vec<String> = Vec::new();
    let mut links: Vec<String> = Vec::new();
    if let Some(s) = &state {
        // Stopping init stops the node: the kernel kills the rest of its PID namespace.
        type Recorded = Option<(i32, Option<u64>)>;
        let recorded =
            |pick: fn(&NodeState) -> Recorded| s.nodes.iter().filter_map(pick).collect::<Vec<_>>();
        stop_all(&recorded(|n| n.init_pid.map(|p| (p, n.init_start))));
        stop_all(&recorded(|n| n.unshare_pid.map(|p| (p, n.unshare_start))));
        for n in s.nodes.iter() {
            if n.netns_created {
                netns.push(n.netns.clone());
            }
            if n.veth_created {
                links.push(n.veth.clone());
            }
        }
        if s.bridge_created {
            links.push(s.bridge.clone());
        }
    }
    // Without a record (state file lost), sweep by name: namespaces `fl-NAME-n*` and the bridge.
    let prefix = format!("fl-{name}-n");
    let listed = if state.is_none() {
        net::run("ip", &["netns", "list"]).ok()
    } else {
        None
    };
    if let Some(list) = listed {
        for line in list.lines() {
            let ns = line.split_whitespace().next().unwrap_or("");
            if ns
                .strip_prefix(&prefix)
                .is_some_and(|r| r.chars().all(|c| c.is_ascii_digit()) && !r.is_empty())
                && !netns.iter().any(|x| x == ns)
            {
                netns.push(ns.to_string());
            }
        }
    }
    let br = net::bridge_name(name);
    if !links.contains(&br) && state.is_none() && net::link_exists(&br) {
        links.push(br);
    }
    for ns in &netns {
        // Anything still running in the namespace is ours (we made the namespace).
        if let Ok(pids) = net::run("ip", &["netns", "pids", ns]) {
            let pids: Vec<(i32, Option<u64>)> = pids
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .map(|p| (p, proc_start_time(p)))
                .collect();
            stop_all(&pids);
        }
        net::run_quiet("ip", &["netns", "del", ns]);
    }
    for l in &links {
        if net::link_exists(l) {
            net::run_quiet("ip", &["link", "del", l]);
        }
    }
    let left_ns: Vec<&String> = netns
        .iter()
        .filter(|ns| Path::new("/run/netns").join(ns).exists())
        .collect();
    let left_links: Vec<&String> = links.iter().filter(|l| net::link_exists(l)).collect();
    if !left_ns.is_empty() || !left_links.is_empty() {
        bail!(
            "cluster {name}: could not remove namespaces {left_ns:?} / interfaces {left_links:?}"
        );
    }
    if let Some(s) = &state {
        super::login::remove(s)?;
    }
    let dir = cluster_dir(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    Ok(())
}

/// SIGTERM, up to 2 s grace, then SIGKILL; only pids whose start time still matches.
fn stop_all(pids: &[(i32, Option<u64>)]) {
    let live: Vec<(i32, Option<u64>)> = pids
        .iter()
        .copied()
        .filter(|(p, st)| *p > 1 && alive(*p, *st))
        .collect();
    for (p, _) in &live {
        // SAFETY: signalling a pid we verified is the process we started.
        unsafe { libc::kill(*p, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && live.iter().any(|(p, st)| alive(*p, *st)) {
        std::thread::sleep(Duration::from_millis(10));
    }
    for (p, st) in &live {
        if alive(*p, *st) {
            // SAFETY: as above.
            unsafe { libc::kill(*p, libc::SIGKILL) };
        }
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && live.iter().any(|(p, st)| alive(*p, *st)) {
        std::thread::sleep(Duration::from_millis(10));
    }
}
