//! The "constrained election" partition from Omni-Paxos (Ng, Haridi, Carbone, EuroSys 2023),
//! run against both cores on the same deterministic network.
//!
//! Five nodes. A node C misses a stretch of committed entries while it is cut off; then the
//! leader is cut off entirely and the remaining links form a star around C: C reaches every
//! other survivor, but they reach only C. C is the only node that can reach a majority, and
//! its log is stale.
//!
//! - Raft (§5.4.1) grants votes only to candidates whose log is at least as up to date, so C
//!   can never be elected, and nobody else can reach a majority: the cluster stays
//!   unavailable for as long as the partition lasts.
//! - Multi-Paxos has no such restriction: C runs phase 1, the promises from the others carry
//!   every value they accepted (including the entries C missed), and C leads.

use std::collections::BTreeSet;

use faultline_node::paxos::Paxos;
use faultline_node::raft::Raft;
use faultline_node::replica::{NodeId, Replica, ReplicaConfig, Role};
use faultline_node::sim::Net;

/// Five fresh replicas on a lossless network with a one-tick delay
/// ([`Net::tick_delayed`]).
fn cluster<R: Replica>(seed: u64) -> Net<R> {
    let members: Vec<NodeId> = (1..=5).collect();
    Net::fresh(5, |id| ReplicaConfig::new(id, members.clone(), seed * 100 + id)).unwrap()
}

/// What happened after the partition formed.
#[derive(Debug)]
struct Outcome {
    stale: NodeId,
    /// Ticks from the partition until a write proposed afterwards was applied on the stale node.
    recovered_after_ticks: Option<u64>,
    leaders_during_partition: BTreeSet<NodeId>,
    /// Whether the stale node applied every write committed before the partition.
    stale_has_history: bool,
}

const WRITES_BEFORE: usize = 20;

fn constrained_election<R: Replica>(seed: u64, partition_ticks: u64) -> Outcome {
    let mut c = cluster::<R>(seed);
    let mesh = c.full_mesh();
    c.set_links(&mesh);
    let old = (0..500).find_map(|_| {
        c.tick_delayed();
        c.leader()
    });
    let old = old.expect("a leader in a healthy cluster");
    for _ in 0..5 {
        c.tick_delayed();
    }
    // C falls behind: cut off while the others commit.
    let stale = c.ids().into_iter().find(|&i| i != old).expect("five nodes");
    let without_c: Vec<_> = mesh.iter().copied().filter(|&(a, b)| a != stale && b != stale).collect();
    c.set_links(&without_c);
    for i in 0..WRITES_BEFORE {
        c.node(old).propose(vec![format!("before-{i}").into_bytes()]).expect("the leader accepts writes");
        c.tick_delayed();
    }
    for _ in 0..20 {
        c.tick_delayed();
    }
    let committed_before = c.node(old).status().commit_index;
    assert!(c.commands(old).len() == WRITES_BEFORE, "the majority committed the writes");
    assert!(c.node(stale).status().commit_index < committed_before, "C is stale");

    // The partition: the old leader is gone, the others reach only C.
    let star: Vec<_> = c.ids().into_iter().filter(|&i| i != old && i != stale).map(|i| (stale, i)).collect();
    c.set_links(&star);
    let start = c.now;
    let mut leaders = BTreeSet::new();
    let mut proposed = false;
    let mut recovered = None;
    while c.now - start < partition_ticks {
        c.tick_delayed();
        for id in c.ids() {
            if id != old && c.node(id).status().role == Role::Leader {
                leaders.insert(id);
                if !proposed && c.node(id).propose(vec![b"after".to_vec()]).is_ok() {
                    proposed = true;
                }
            }
        }
        if recovered.is_none() && c.commands(stale).last().is_some_and(|v| v == b"after") {
            recovered = Some(c.now - start);
        }
    }
    let want: Vec<Vec<u8>> = (0..WRITES_BEFORE).map(|i| format!("before-{i}").into_bytes()).collect();
    let got = c.commands(stale);
    Outcome {
        stale,
        recovered_after_ticks: recovered,
        leaders_during_partition: leaders,
        stale_has_history: got.len() >= WRITES_BEFORE && got[..WRITES_BEFORE] == want[..],
    }
}

/// With the project's default timing (election timeout 10-20 ticks, heartbeat 2), 100
/// election timeouts is far longer than any healthy election takes.
const PARTITION_TICKS: u64 = 2000;

#[test]
fn multi_paxos_elects_the_only_quorum_connected_node_despite_its_stale_log() {
    let mut ticks = Vec::new();
    for seed in 1..=10 {
        let o = constrained_election::<Paxos>(seed, PARTITION_TICKS);
        assert_eq!(o.leaders_during_partition, BTreeSet::from([o.stale]), "seed {seed}: {o:?}");
        assert!(o.stale_has_history, "seed {seed}: phase 1 must recover the writes C missed: {o:?}");
        let t = o.recovered_after_ticks.unwrap_or_else(|| panic!("seed {seed}: no progress: {o:?}"));
        ticks.push(t);
    }
    ticks.sort_unstable();
    eprintln!("multi-paxos: ticks from partition to a new write applied on C, 10 seeds: {ticks:?}");
    assert!(ticks[ticks.len() - 1] < 200, "recovery within a few election timeouts: {ticks:?}");
}

#[test]
fn raft_cannot_elect_the_only_quorum_connected_node_because_its_log_is_stale() {
    for seed in 1..=10 {
        let o = constrained_election::<Raft>(seed, PARTITION_TICKS);
        assert!(o.leaders_during_partition.is_empty(), "seed {seed}: {o:?}");
        assert_eq!(o.recovered_after_ticks, None, "seed {seed}: {o:?}");
        assert!(!o.stale_has_history, "seed {seed}: C cannot learn the writes without a leader: {o:?}");
    }
}

/// The same star partition with an up-to-date centre is no obstacle for either protocol:
/// Raft's unavailability above is caused by the stale log, not by the shape.
fn star_with_fresh_centre<R: Replica>(seed: u64) -> Option<u64> {
    let mut c = cluster::<R>(seed);
    let mesh = c.full_mesh();
    c.set_links(&mesh);
    let old = (0..500)
        .find_map(|_| {
            c.tick_delayed();
            c.leader()
        })
        .expect("a leader");
    for _ in 0..20 {
        c.tick_delayed();
    }
    let centre = c.ids().into_iter().find(|&i| i != old).expect("five nodes");
    let star: Vec<_> = c.ids().into_iter().filter(|&i| i != old && i != centre).map(|i| (centre, i)).collect();
    c.set_links(&star);
    let start = c.now;
    while c.now - start < PARTITION_TICKS {
        c.tick_delayed();
        if let Some(l) = c.leader().filter(|&l| l != old) {
            let _ = c.node(l).propose(vec![b"after".to_vec()]);
        }
        if c.max_commit() > 0 && c.commands(centre).last().is_some_and(|v| v == b"after") {
            return Some(c.now - start);
        }
    }
    None
}

#[test]
fn both_protocols_recover_when_the_quorum_connected_node_is_up_to_date() {
    let (mut raft, mut paxos) = (vec![], vec![]);
    for seed in 1..=10 {
        raft.push(star_with_fresh_centre::<Raft>(seed).unwrap_or_else(|| panic!("raft, seed {seed}")));
        paxos.push(star_with_fresh_centre::<Paxos>(seed).unwrap_or_else(|| panic!("paxos, seed {seed}")));
    }
    raft.sort_unstable();
    paxos.sort_unstable();
    eprintln!("fresh centre, ticks to a new write applied on it: raft {raft:?}, multi-paxos {paxos:?}");
}
