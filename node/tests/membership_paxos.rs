//! Multi-Paxos membership changes: the rules of the core's design (a configuration value
//! chosen at slot `s` governs slots after `s`, proposed with nothing else in flight), then
//! the same randomized churn as Raft faces.

mod common;

use common::membership::{Churn, churn_on_a_healthy_network_keeps_making_progress, churn_under_faults_is_safe};
use faultline_node::paxos::{Message, Paxos};
use faultline_node::replica::{
    EntryData, MembershipChange, MembershipError, NodeId, ProposeError, Replica, ReplicaConfig, Role, Snapshot, Status,
};
use faultline_node::sim::{Sim, SimConfig};

use MembershipChange::{AddLearner, Promote, Remove};

type Net = faultline_node::sim::Net<Paxos>;

/// Paxos state-machine safety on top of the simulator's own check: no two replicas know
/// different values chosen at one slot.
fn chosen_agree(sim: &Sim<Paxos>) -> Result<(), String> {
    let mut seen: std::collections::HashMap<u64, &EntryData> = std::collections::HashMap::new();
    for i in 0..sim.node_count() {
        let Some(p) = sim.replica(i) else { continue };
        let from = p.status().commit_index.saturating_sub(64);
        for (slot, _, data, chosen) in p.accepted_from(from) {
            if !chosen {
                continue;
            }
            if let Some(other) = seen.insert(slot, data)
                && other != data
            {
                return Err(format!("slot {slot}: chosen {other:?} and {data:?}"));
            }
        }
    }
    Ok(())
}

fn run_churn(mut cfg: SimConfig, churn: &mut Churn) -> Result<Sim<Paxos>, String> {
    // A node that joined later may share rounds with an initial member (ballots stay unique
    // through the node id), so one leader per round is not a Paxos invariant here.
    cfg.check_one_leader_per_term = false;
    let mut sim = Sim::<Paxos>::new(cfg).map_err(|e| e.to_string())?;
    common::membership::run_churn(&mut sim, churn, chosen_agree)?;
    Ok(sim)
}

#[test]
fn paxos_churn_under_faults_is_safe() {
    churn_under_faults_is_safe(run_churn, 12);
}

/// A change needs a drained pipeline, which the leader gets by refusing commands briefly
/// (`Busy`); the bound is the same as Raft's.
#[test]
fn paxos_churn_on_a_healthy_network_keeps_making_progress() {
    churn_on_a_healthy_network_keeps_making_progress(run_churn, 3, 400);
}

fn cfg(id: NodeId, members: &[NodeId]) -> ReplicaConfig {
    ReplicaConfig::new(id, members.to_vec(), 1000 + id)
}

fn st(net: &mut Net, id: NodeId) -> Status {
    net.node(id).status()
}

fn conf(s: &Status) -> (Vec<NodeId>, Vec<NodeId>) {
    (s.voters.clone(), s.learners.clone())
}

fn cluster(n: u64) -> (Net, NodeId) {
    let members: Vec<NodeId> = (1..=n).collect();
    let mut net = Net::fresh(n, |id| cfg(id, &members)).unwrap();
    for _ in 0..500 {
        net.tick(1);
        if let Some(l) = net.leader() {
            net.tick(3);
            return (net, l);
        }
    }
    panic!("no leader");
}

fn join(net: &mut Net, voters: &[NodeId]) -> NodeId {
    let id = net.nodes.len() as NodeId + 1;
    net.add(Paxos::restore(cfg(id, voters), None, Vec::new()).unwrap())
}

#[test]
fn a_configuration_is_in_effect_once_chosen_and_nothing_is_proposed_after_it_until_then() {
    let (mut net, l) = cluster(3);
    let others: Vec<NodeId> = (1..=3).filter(|&i| i != l).collect();
    let four = join(&mut net, &[1, 2, 3]);
    for &o in &others {
        net.isolate(o);
    }
    let slot = net.node(l).propose_membership(AddLearner(four)).unwrap();
    assert_eq!(conf(&st(&mut net, l)), (vec![1, 2, 3], vec![]), "not chosen, not in effect");
    assert_eq!(net.node(l).propose(vec![b"x".to_vec()]), Err(ProposeError::Busy), "nothing after it");
    assert_eq!(net.node(l).propose_membership(Remove(others[0])), Err(MembershipError::InProgress));
    net.heal();
    net.tick(5);
    assert!(st(&mut net, l).commit_index >= slot);
    for id in [1, 2, 3, four] {
        assert_eq!(conf(&st(&mut net, id)), (vec![1, 2, 3], vec![four]), "node {id}");
    }
    net.node(l).propose(vec![b"x".to_vec()]).unwrap();
    net.tick(3);
    assert_eq!(net.commands(four), net.commands(l), "the learner has caught up");
}

#[test]
fn a_learner_does_not_count_and_is_promoted_only_once_caught_up() {
    let (mut net, l) = cluster(3);
    let others: Vec<NodeId> = (1..=3).filter(|&i| i != l).collect();
    let four = join(&mut net, &[1, 2, 3]);
    net.isolate(four);
    net.node(l).propose_membership(AddLearner(four)).unwrap();
    net.tick(3);
    // More than a batch behind.
    net.node(l).propose((0..100u8).map(|i| vec![i]).collect()).unwrap();
    net.tick(3);
    assert_eq!(net.node(l).propose_membership(Promote(four)), Err(MembershipError::NotCaughtUp(four)));
    net.heal();
    net.tick(30);
    // Leader plus learner are no majority of three voters.
    let c = st(&mut net, l).commit_index;
    for &o in &others {
        net.isolate(o);
    }
    net.cut.retain(|&(a, b)| !((a == l && b == four) || (a == four && b == l)));
    net.node(l).propose(vec![b"b".to_vec()]).unwrap();
    net.tick(3);
    assert_eq!(st(&mut net, l).commit_index, c);
    net.heal();
    net.tick(5);
    let slot = net.node(l).propose_membership(Promote(four)).expect("caught up");
    net.tick(5);
    for id in [1, 2, 3, four] {
        let s = st(&mut net, id);
        assert!(s.commit_index >= slot);
        assert_eq!(conf(&s), (vec![1, 2, 3, four], vec![]), "node {id}");
    }
}

#[test]
fn asking_to_promote_a_lagging_learner_does_not_hold_back_the_leaders_commands() {
    // A joiner asks to be promoted again and again while it catches up; a refused ask must
    // not drain the pipeline (which refuses commands with `Busy` for an election timeout).
    let (mut net, l) = cluster(3);
    let four = join(&mut net, &[1, 2, 3]);
    net.isolate(four);
    let added = net.node(l).propose_membership(AddLearner(four)).unwrap();
    net.tick(10);
    assert!(st(&mut net, l).commit_index >= added);
    // The learner is more than a batch behind, and commands are in flight, so the
    // pipeline is not drained.
    net.node(l).propose((0..100u8).map(|i| vec![i]).collect()).unwrap();
    net.tick(3);
    net.node(l).propose(vec![b"in flight".to_vec()]).unwrap();
    assert_eq!(net.node(l).propose_membership(Promote(four)), Err(MembershipError::NotCaughtUp(four)));
    net.node(l).propose(vec![b"next".to_vec()]).expect("not held back by the refused promotion");
}

#[test]
fn a_removed_leader_steps_down_and_a_remaining_voter_takes_over() {
    let (mut net, l) = cluster(3);
    let slot = net.node(l).propose_membership(Remove(l)).unwrap();
    net.tick(3);
    assert_ne!(st(&mut net, l).role, Role::Leader);
    assert!(st(&mut net, l).commit_index >= slot);
    for _ in 0..300 {
        net.tick(1);
        if net.leaders().iter().any(|&x| x != l) {
            break;
        }
    }
    let new = net.leaders().into_iter().find(|&x| x != l).expect("a voter leads");
    net.node(new).propose(vec![b"after".to_vec()]).unwrap();
    net.tick(3);
    assert_eq!(st(&mut net, l).role, Role::Follower, "the removed server never campaigns");
    let voters = st(&mut net, new).voters;
    assert!(!voters.contains(&l) && voters.len() == 2);
}

#[test]
fn a_learner_catches_up_from_a_snapshot_and_the_configuration_survives_restarts() {
    let (mut net, l) = cluster(3);
    let four = join(&mut net, &[1, 2, 3]);
    net.isolate(four);
    net.node(l).propose_membership(AddLearner(four)).unwrap();
    net.tick(3);
    for i in 0..10u8 {
        net.node(l).propose(vec![vec![i]]).unwrap();
    }
    net.tick(3);
    let s = st(&mut net, l);
    net.node(l).compact(Snapshot { index: s.applied_index, term: 1, data: b"state".to_vec() }).unwrap();
    net.heal();
    net.tick(30);
    let s4 = st(&mut net, four);
    assert_eq!(s4.snapshot_index, s.applied_index, "caught up from the snapshot");
    assert_eq!(conf(&s4), (vec![1, 2, 3], vec![four]));
    net.crash(four);
    net.restart_with(cfg(four, &[1, 2, 3])).unwrap();
    assert_eq!(conf(&st(&mut net, four)), (vec![1, 2, 3], vec![four]), "from the snapshot's configuration record");
    let other = (1..=3).find(|&i| i != l).unwrap();
    net.crash(other);
    net.restart_with(cfg(other, &[1, 2, 3])).unwrap();
    assert_eq!(conf(&st(&mut net, other)), (vec![1, 2, 3], vec![four]), "from the configuration record");
}

#[test]
fn replies_from_strangers_are_ignored_and_never_panic() {
    let (mut net, l) = cluster(3);
    let before = st(&mut net, l);
    let b = faultline_node::paxos::Ballot { round: 1 << 40, node: 42 };
    for m in [
        Message::Nack { ballot: b, promised: b },
        Message::Accepted { ballot: b, slots: vec![1, 2, 3], commit: 1 << 30, seen: 0 },
        Message::HeartbeatAck { ballot: b, commit: 0, seen: 0, ctx: 1 << 30 },
        Message::ChosenAck { ballot: b, commit: 0 },
    ] {
        net.node(l).step(42, m);
    }
    net.settle();
    let after = st(&mut net, l);
    assert_eq!((after.role, after.term), (before.role, before.term));
    assert!(net.node(l).propose_membership(Promote(42)).is_err());
}
