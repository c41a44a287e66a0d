//! Raft membership changes: the single-server rules of Ongaro's thesis (§4) sentence by
//! sentence, then randomized churn under the simulator's faults.

mod common;

use common::membership::{Churn, churn_on_a_healthy_network_keeps_making_progress, churn_under_faults_is_safe};
use faultline_node::raft::{Message, Raft, Record};
use faultline_node::replica::{
    EntryData, Membership, MembershipChange, MembershipError, NodeId, Replica, ReplicaConfig, Role, Snapshot, Status,
};
use faultline_node::sim::{Sim, SimConfig};

use MembershipChange::{AddLearner, Promote, Remove};

type Net = faultline_node::sim::Net<Raft>;

fn cfg(id: NodeId, members: &[NodeId]) -> ReplicaConfig {
    let mut c = ReplicaConfig::new(id, members.to_vec(), 1000 + id);
    c.prevote = false;
    c.check_quorum = false;
    c
}

/// `n` voters `1..=n` with leader 1 elected and its no-op committed.
fn cluster(n: u64) -> Net {
    let members: Vec<NodeId> = (1..=n).collect();
    let mut net = Net::fresh(n, |id| cfg(id, &members)).unwrap();
    campaign(&mut net, 1);
    assert_eq!(net.leader(), Some(1));
    net
}

fn campaign(net: &mut Net, id: NodeId) {
    for _ in 0..100 {
        if net.node(id).status().role != Role::Follower {
            break;
        }
        net.node(id).tick();
    }
    net.settle();
}

/// A fresh, empty server that is told the current voters.
fn join(net: &mut Net, voters: &[NodeId]) -> NodeId {
    let id = net.nodes.len() as NodeId + 1;
    net.add(Raft::restore(cfg(id, voters), None, Vec::new()).unwrap())
}

fn st(net: &mut Net, id: NodeId) -> Status {
    net.node(id).status()
}

fn conf(s: &Status) -> (Vec<NodeId>, Vec<NodeId>) {
    (s.voters.clone(), s.learners.clone())
}

fn put(net: &mut Net, leader: NodeId, n: u8) {
    for i in 0..n {
        net.node(leader).propose(vec![vec![i]]).unwrap();
    }
    net.settle();
}

/// Adds a fresh learner through `leader`, lets it catch up and promotes it.
fn add_voter(net: &mut Net, leader: NodeId) -> NodeId {
    let voters = st(net, leader).voters;
    let id = join(net, &voters);
    net.node(leader).propose_membership(AddLearner(id)).unwrap();
    net.settle();
    net.tick(3);
    net.node(leader).propose_membership(Promote(id)).unwrap();
    net.settle();
    net.tick(3);
    id
}

#[test]
fn a_configuration_takes_effect_when_appended_not_when_committed() {
    // Thesis §4.1: "The new configuration takes effect on each server as soon as it is added
    // to that server's log: the Cnew entry is replicated to the Cnew servers, and a majority
    // of the new configuration is used to determine the Cnew entry's commitment. This means
    // that servers do not wait for configuration entries to be committed, and each server
    // always uses the latest configuration found in its log."
    let mut net = cluster(3);
    let four = join(&mut net, &[1, 2, 3]);
    // 2 receives the entry but its acknowledgement is lost: nothing commits.
    net.cut.extend([(2, 1), (1, 3)]);
    let index = net.node(1).propose_membership(AddLearner(four)).unwrap();
    net.settle();
    for id in [1, 2] {
        let s = st(&mut net, id);
        assert!(s.last_index >= index && s.commit_index < index, "{s:?}");
        assert_eq!(conf(&s), (vec![1, 2, 3], vec![four]), "node {id} uses the appended configuration");
    }
    assert_eq!(conf(&st(&mut net, 3)), (vec![1, 2, 3], vec![]), "3 has not received it");
    net.heal();
    net.tick(10);
    assert!(st(&mut net, 1).commit_index >= index);
    assert_eq!(conf(&st(&mut net, four)), (vec![1, 2, 3], vec![four]), "the learner received the log");
}

#[test]
fn the_leader_refuses_a_second_change_until_the_first_is_committed() {
    // Thesis §4.1: "a configuration change is complete once the Cnew entry is committed. At
    // this point, the leader knows that a majority of the Cnew servers have adopted Cnew ...
    // At this point, it is safe to begin the next configuration change".
    let mut net = cluster(3);
    let four = join(&mut net, &[1, 2, 3]);
    net.isolate(1);
    let index = net.node(1).propose_membership(AddLearner(four)).unwrap();
    assert_eq!(net.node(1).propose_membership(Remove(3)), Err(MembershipError::InProgress));
    net.heal();
    net.tick(3);
    assert!(st(&mut net, 1).commit_index >= index);
    net.node(1).propose_membership(Remove(3)).expect("the first change is committed");
}

#[test]
fn a_new_leader_changes_nothing_before_committing_an_entry_of_its_term() {
    // The fix for the single-server bug (Ongaro, raft-dev, 2015): "a leader may not append a
    // new configuration entry until it has committed an entry from its own term". Without it
    // a leader elected under an old configuration could commit a change whose majority does
    // not overlap with that of a change another leader already committed.
    let mut r = Raft::restore(cfg(1, &[1, 2, 3]), None, Vec::new()).unwrap();
    while r.status().role != Role::Candidate {
        r.tick();
    }
    r.step(2, Message::RequestVoteResp { term: 1, granted: true });
    assert_eq!(r.status().role, Role::Leader);
    r.ready();
    assert_eq!(r.propose_membership(Remove(3)), Err(MembershipError::InProgress), "its no-op is not committed");
    r.step(2, Message::AppendResp { term: 1, index: 1, reject: false, hint_index: 0, hint_term: 0 });
    assert_eq!(r.status().commit_index, 1);
    assert_eq!(r.propose_membership(Remove(3)), Ok(2));
}

#[test]
fn a_learner_does_not_count_toward_a_majority() {
    // Thesis §4.2.1: new servers join "as non-voting members (the leader replicates log
    // entries to them, but they are not considered for majorities)".
    let mut net = cluster(3);
    let four = join(&mut net, &[1, 2, 3]);
    net.node(1).propose_membership(AddLearner(four)).unwrap();
    net.tick(3);
    let before = st(&mut net, 1).commit_index;
    net.isolate(2);
    net.isolate(3);
    net.node(1).propose(vec![b"x".to_vec()]).unwrap();
    net.tick(3);
    assert_eq!(st(&mut net, four).last_index, st(&mut net, 1).last_index, "the learner has the entry");
    assert_eq!(st(&mut net, 1).commit_index, before, "leader and learner are not a majority of three voters");
    net.heal();
    net.tick(3);
    assert!(st(&mut net, 1).commit_index > before);
}

#[test]
fn a_learner_is_promoted_only_once_it_has_caught_up() {
    // Thesis §4.2.1: "the leader should abort the change if the new server is unavailable or
    // is so slow that it will never catch up" — here it refuses to promote until it has.
    let mut net = cluster(3);
    put(&mut net, 1, 5);
    let four = join(&mut net, &[1, 2, 3]);
    net.isolate(four);
    net.node(1).propose_membership(AddLearner(four)).unwrap();
    net.tick(3);
    assert_eq!(net.node(1).propose_membership(Promote(four)), Err(MembershipError::NotCaughtUp(four)));
    assert_eq!(net.node(1).propose_membership(Promote(3)), Err(MembershipError::NotLearner(3)));
    net.heal();
    net.tick(3);
    let index = net.node(1).propose_membership(Promote(four)).unwrap();
    net.tick(3);
    for id in [1, 2, 3, four] {
        let s = st(&mut net, id);
        assert!(s.commit_index >= index);
        assert_eq!(conf(&s), (vec![1, 2, 3, four], vec![]), "node {id}");
    }
    // Four voters: a majority is three, so losing two stops commits.
    net.isolate(3);
    net.isolate(four);
    let c = st(&mut net, 1).commit_index;
    net.node(1).propose(vec![b"y".to_vec()]).unwrap();
    net.tick(3);
    assert_eq!(st(&mut net, 1).commit_index, c);
}

#[test]
fn a_learner_catches_up_from_a_snapshot_that_carries_the_configuration() {
    // Thesis §5.1 (a snapshot's metadata holds "the latest configuration as of the last
    // included index") and §4.2.1: a new server is caught up by the leader's ordinary
    // replication, including snapshots.
    let mut net = cluster(3);
    let four = join(&mut net, &[1, 2, 3]);
    net.isolate(four);
    net.node(1).propose_membership(AddLearner(four)).unwrap();
    put(&mut net, 1, 10);
    let s1 = st(&mut net, 1);
    let term = net.node(1).term_at(s1.applied_index).unwrap();
    net.node(1).compact(Snapshot { index: s1.applied_index, term, data: b"state".to_vec() }).unwrap();
    net.heal();
    net.tick(5);
    let s4 = st(&mut net, four);
    assert_eq!(s4.snapshot_index, s1.applied_index, "caught up from the snapshot");
    assert_eq!(conf(&s4), (vec![1, 2, 3], vec![four]), "the configuration came with the snapshot");
    net.node(1).propose_membership(Promote(four)).expect("caught up");
    net.tick(3);
    // The configuration survives the learner's restart (snapshot plus its own records).
    net.crash(four);
    net.restart_with(cfg(four, &[1, 2, 3])).unwrap();
    assert_eq!(conf(&st(&mut net, four)), (vec![1, 2, 3, four], vec![]));
}

#[test]
fn a_leader_being_removed_does_not_count_itself_and_steps_down_once_removed() {
    // Thesis §4.2.2: "the leader steps down once the Cnew entry is committed ... for a period
    // of time it is managing a cluster that does not include itself; it replicates log
    // entries but does not count itself in majorities."
    let mut net = cluster(3);
    net.isolate(3);
    net.cut.insert((2, 1));
    let index = net.node(1).propose_membership(Remove(1)).unwrap();
    net.settle();
    let s = st(&mut net, 1);
    assert_eq!((s.role, conf(&s)), (Role::Leader, (vec![2, 3], vec![])));
    net.cut.remove(&(2, 1));
    net.tick(3);
    let s = st(&mut net, 1);
    assert!(s.commit_index < index, "1 and 2 were a majority of {{1,2,3}} but 2 alone is not one of {{2,3}}");
    assert_eq!(s.role, Role::Leader);
    net.heal();
    net.tick(3);
    assert_ne!(st(&mut net, 1).role, Role::Leader, "stepped down once its removal committed");
    assert!(matches!(net.leader(), Some(2 | 3)), "a remaining voter took over at once");
    // Thesis §4.2.3 on removed servers disrupting the cluster: this one never campaigns.
    net.isolate(1);
    for _ in 0..100 {
        net.node(1).tick();
        assert_eq!(st(&mut net, 1).role, Role::Follower);
    }
}

#[test]
fn a_removed_follower_stops_receiving_the_log_and_never_campaigns() {
    let mut net = cluster(3);
    let index = net.node(1).propose_membership(Remove(3)).unwrap();
    net.tick(3);
    assert!(st(&mut net, 3).last_index >= index, "3 received its own removal");
    let last3 = st(&mut net, 3).last_index;
    put(&mut net, 1, 3);
    net.tick(3);
    assert_eq!(st(&mut net, 3).last_index, last3, "the leader no longer replicates to 3");
    assert!(st(&mut net, 1).commit_index > index, "1 and 2 commit alone");
    net.isolate(3);
    for _ in 0..100 {
        net.node(3).tick();
    }
    assert_eq!(st(&mut net, 3).role, Role::Follower);
}

#[test]
fn a_truncated_configuration_entry_is_no_longer_in_effect() {
    // Thesis §4.1: "a log entry for a configuration change can be removed (if leadership
    // changes); in this case, a server must be prepared to fall back to the previous
    // configuration in its log."
    let mut net = cluster(3);
    net.isolate(1);
    net.node(1).propose_membership(Remove(3)).unwrap();
    net.settle();
    assert_eq!(st(&mut net, 1).voters, vec![1, 2]);
    // 2 leads term 2 without the entry; 1 comes back and takes 2's log.
    campaign(&mut net, 2);
    assert_eq!(st(&mut net, 2).role, Role::Leader);
    net.heal();
    net.tick(3);
    let s = st(&mut net, 1);
    assert_eq!((s.role, s.voters.clone()), (Role::Follower, vec![1, 2, 3]), "{s:?}");
}

#[test]
fn the_configuration_survives_restarts_with_and_without_compaction() {
    let mut net = cluster(3);
    let four = add_voter(&mut net, 1);
    net.node(1).propose_membership(Remove(2)).unwrap();
    net.tick(3);
    let want = (vec![1, 3, four], vec![]);
    assert_eq!(conf(&st(&mut net, 1)), want);
    // From the log records alone.
    net.crash(3);
    net.restart_with(cfg(3, &[1, 2, 3])).unwrap();
    assert_eq!(conf(&st(&mut net, 3)), want);
    // After compaction past every configuration entry: from the snapshot's record.
    net.tick(3);
    let s = st(&mut net, 3);
    let term = net.node(3).term_at(s.applied_index).unwrap();
    let snap = Snapshot { index: s.applied_index, term, data: vec![] };
    net.node(3).compact(snap.clone()).unwrap();
    let rewritten = net.node(3).durable_records();
    assert!(rewritten.iter().any(|r| matches!(r, Record::SnapshotConfig { .. })));
    let back = Raft::restore(cfg(3, &[1, 2, 3]), Some(snap.clone()), rewritten).unwrap();
    assert_eq!(conf(&back.status()), want);
    // A snapshot saved but the WAL not yet rewritten (a crash in between): from the entries.
    let old_wal = net.wal[2].1.clone();
    let back = Raft::restore(cfg(3, &[1, 2, 3]), Some(snap), old_wal).unwrap();
    assert_eq!(conf(&back.status()), want);
}

#[test]
fn messages_from_outside_the_configuration_are_ignored_and_never_panic() {
    let mut net = cluster(3);
    let before = st(&mut net, 1);
    for m in [
        Message::AppendResp { term: 99, index: 1000, reject: false, hint_index: 0, hint_term: 0 },
        Message::AppendResp { term: 1, index: 1000, reject: true, hint_index: 5, hint_term: 7 },
        Message::HeartbeatResp { term: 99, ctx: 1 },
        Message::RequestVoteResp { term: 1, granted: true },
        Message::PreVoteResp { term: 99, granted: false, leader: Some(42) },
    ] {
        net.node(1).step(42, m);
    }
    net.settle();
    let after = st(&mut net, 1);
    assert_eq!((after.role, after.term, after.commit_index), (before.role, before.term, before.commit_index));
    assert!(net.node(1).propose_membership(Remove(42)).is_err());
    assert!(net.node(1).propose_membership(Promote(42)).is_err());
}

#[test]
fn ids_need_not_be_contiguous() {
    // Voters 2, 5 and 9; the slots of the other ids hold crashed placeholders.
    let members = [2, 5, 9];
    let mut net = Net::fresh(9, |id| cfg(id, &members)).unwrap();
    for id in [1, 3, 4, 6, 7, 8] {
        net.crash(id);
    }
    campaign(&mut net, 5);
    assert_eq!(net.leader(), Some(5));
    put(&mut net, 5, 3);
    net.restart_with(cfg(7, &members)).unwrap();
    net.node(5).propose_membership(AddLearner(7)).unwrap();
    net.tick(3);
    net.node(5).propose_membership(Promote(7)).unwrap();
    net.tick(3);
    net.node(5).propose_membership(Remove(2)).unwrap();
    net.tick(3);
    put(&mut net, 5, 3);
    for id in [5, 7, 9] {
        assert_eq!(st(&mut net, id).voters, vec![5, 7, 9], "node {id}");
    }
    assert_eq!(net.commands(7), net.commands(5));
    let configs = net.applied[6].iter().filter(|e| matches!(e.data, EntryData::Config(_))).count();
    assert_eq!(configs, 3);
    let _ = Membership::default();
}

fn run_churn(cfg: SimConfig, churn: &mut Churn) -> Result<Sim<Raft>, String> {
    let mut sim = Sim::<Raft>::new(cfg).map_err(|e| e.to_string())?;
    let mut lc = common::raft_checks::LeaderCompleteness::default();
    common::membership::run_churn(&mut sim, churn, |s| {
        common::raft_checks::log_matching(s)?;
        lc.check(s)
    })?;
    Ok(sim)
}

#[test]
fn raft_churn_under_faults_is_safe() {
    churn_under_faults_is_safe(run_churn, 12);
}

#[test]
fn raft_churn_on_a_healthy_network_keeps_making_progress() {
    churn_on_a_healthy_network_keeps_making_progress(run_churn, 3, 400);
}
