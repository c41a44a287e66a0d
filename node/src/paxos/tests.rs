//! Unit tests for the Multi-Paxos core, named after the rule each one checks.
//!
//! A tiny lossless network drives a handful of replicas to quiescence; fault schedules and
//! client histories are covered by the shared simulator in `tests/sim_paxos.rs`.

use std::collections::HashMap;

use super::*;
use crate::replica::{EntryData, NodeId, ProposeError, Replica, ReplicaConfig, Role, Snapshot};

type Net = crate::sim::Net<Paxos>;

fn cfg(id: NodeId, n: u64) -> ReplicaConfig {
    ReplicaConfig::new(id, (1..=n).collect(), 1000 + id)
}

impl Net {
    fn of(n: u64) -> Net {
        Net::fresh(n, |id| cfg(id, n)).unwrap()
    }

    fn restart(&mut self, id: NodeId) {
        let n = self.nodes.len() as u64;
        self.restart_with(cfg(id, n)).unwrap();
    }

    /// The leader, asserting there is at most one: a Paxos leader that loses its ballot
    /// steps down as soon as it hears of a higher one, and this network loses nothing.
    fn sole_leader(&self) -> Option<NodeId> {
        let ls = self.leaders();
        assert!(ls.len() <= 1, "two leaders at once: {ls:?}");
        ls.first().copied()
    }

    /// Ticks until some node leads.
    fn elect(&mut self) -> NodeId {
        for _ in 0..500 {
            self.tick(1);
            if let Some(l) = self.sole_leader() {
                return l;
            }
        }
        panic!("no leader elected");
    }
}

fn cmd(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

#[test]
fn a_single_node_leads_itself_and_chooses_alone() {
    let mut net = Net::of(1);
    assert_eq!(net.elect(), 1);
    net.node(1).propose(vec![cmd("a"), cmd("b")]).unwrap();
    net.settle();
    assert_eq!(net.commands(1), vec![cmd("a"), cmd("b")]);
    net.node(1).read_index(7).unwrap();
    net.settle();
    assert_eq!(net.reads[0], vec![(7, 2)]);
}

#[test]
fn a_value_accepted_by_a_quorum_is_chosen_and_learned_by_every_replica() {
    let mut net = Net::of(3);
    let l = net.elect();
    net.node(l).propose(vec![cmd("x")]).unwrap();
    net.settle();
    assert_eq!(net.commands(l), vec![cmd("x")]);
    // Followers learn the commit point from the next heartbeat.
    net.tick(3);
    for id in 1..=3 {
        assert_eq!(net.commands(id), vec![cmd("x")], "node {id}");
        assert_eq!(net.node(id).status().commit_index, 1);
        assert_eq!(net.node(id).status().leader, Some(l));
    }
}

#[test]
fn a_follower_refuses_proposals_and_names_the_leader() {
    let mut net = Net::of(3);
    let l = net.elect();
    net.tick(2);
    let f = if l == 1 { 2 } else { 1 };
    assert_eq!(net.node(f).propose(vec![cmd("x")]), Err(ProposeError::NotLeader { leader: Some(l) }));
    assert_eq!(net.node(f).read_index(1), Err(ProposeError::NotLeader { leader: Some(l) }));
}

#[test]
fn an_acceptor_rejects_ballots_below_its_promise() {
    let mut p = Paxos::restore(cfg(2, 3), None, vec![]).unwrap();
    let high = Ballot { round: 5, node: 3 };
    p.step(3, Message::Prepare { ballot: high, from: 1 });
    let rd = p.ready();
    assert_eq!(rd.records, vec![Record::Promise(high)]);
    assert!(matches!(rd.messages[..], [(3, Message::Promise { ballot, complete: true, .. })] if ballot == high));
    let low = Ballot { round: 4, node: 1 };
    p.step(1, Message::Accept { ballot: low, commit: 0, entries: vec![(1, EntryData::Command(cmd("x")))] });
    let rd = p.ready();
    assert!(rd.records.is_empty(), "nothing may be accepted below the promise");
    assert_eq!(rd.messages, vec![(1, Message::Nack { ballot: low, promised: high })]);
    assert!(p.accepted().next().is_none());
}

#[test]
fn a_promise_survives_a_restart() {
    let mut p = Paxos::restore(cfg(2, 3), None, vec![]).unwrap();
    let high = Ballot { round: 5, node: 3 };
    p.step(3, Message::Prepare { ballot: high, from: 1 });
    let records = p.ready().records;
    let mut p = Paxos::restore(cfg(2, 3), None, records).unwrap();
    assert_eq!(p.promised(), high);
    let low = Ballot { round: 4, node: 1 };
    p.step(1, Message::Prepare { ballot: low, from: 1 });
    assert_eq!(p.ready().messages, vec![(1, Message::Nack { ballot: low, promised: high })]);
}

#[test]
fn phase_one_adopts_the_highest_ballot_value_and_fills_holes_with_noops() {
    // Node 3 is the candidate. Acceptor 1 accepted "old" at slot 1 under round 1 and "b" at
    // slot 3; node 3 itself accepted "new" at slot 1 under round 2. Slot 2 is a hole.
    let b1 = Ballot { round: 1, node: 2 };
    let b2 = Ballot { round: 2, node: 3 };
    let acc = |b: Ballot, e: Vec<(u64, &str)>| Record::Accept {
        ballot: b,
        entries: e.into_iter().map(|(i, s)| (i, EntryData::Command(cmd(s)))).collect(),
    };
    let mut net = Net::of(3);
    net.nodes[0] = Some(Paxos::restore(cfg(1, 3), None, vec![acc(b1, vec![(1, "old"), (3, "b")])]).unwrap());
    net.nodes[2] = Some(Paxos::restore(cfg(3, 3), None, vec![acc(b2, vec![(1, "new")])]).unwrap());
    // The quorum is {1, 3}: node 2 is unreachable.
    net.isolate(2);
    // Let node 3 win: keep node 1 from campaigning by only ticking node 3.
    for _ in 0..100 {
        net.node(3).tick();
        net.settle();
        if net.sole_leader() == Some(3) {
            break;
        }
    }
    assert_eq!(net.sole_leader(), Some(3));
    net.settle();
    let got: Vec<EntryData> = net.applied[2].iter().map(|e| e.data.clone()).collect();
    assert_eq!(got, vec![EntryData::Command(cmd("new")), EntryData::Noop, EntryData::Command(cmd("b"))]);
    let round = net.node(3).status().term;
    assert!(round > 2, "the new ballot is above every ballot seen");
    assert!(net.applied[2].iter().all(|e| e.term == round), "recovered values are re-proposed under the new ballot");
}

#[test]
fn any_node_may_lead_even_one_with_a_stale_log() {
    let mut net = Net::of(3);
    let l = net.elect();
    let stale = if l == 3 { 2 } else { 3 };
    net.isolate(stale);
    for i in 0..5 {
        net.node(l).propose(vec![cmd(&format!("w{i}"))]).unwrap();
    }
    net.tick(3);
    assert_eq!(net.node(stale).status().commit_index, 0);
    // The old leader goes away; only the stale node and one up-to-date acceptor remain.
    net.crash(l);
    net.heal();
    let other = (1..=3).find(|&i| i != l && i != stale).unwrap();
    // Restart the up-to-date node with long timeouts so the stale one campaigns first.
    net.crash(other);
    let mut slow = cfg(other, 3);
    slow.election_ticks_min = 1000;
    slow.election_ticks_max = 1000;
    net.restart_with(slow).unwrap();
    for _ in 0..200 {
        net.tick(1);
        if net.sole_leader() == Some(stale) {
            break;
        }
    }
    assert_eq!(net.sole_leader(), Some(stale), "a node with a stale log leads");
    net.node(stale).propose(vec![cmd("after")]).unwrap();
    net.settle();
    let want: Vec<Vec<u8>> = (0..5).map(|i| cmd(&format!("w{i}"))).chain([cmd("after")]).collect();
    assert_eq!(net.commands(stale), want, "phase 1 recovered every chosen value");
    for _ in 0..3 {
        net.node(stale).tick();
        net.settle();
    }
    assert_eq!(net.commands(other), want);
}

#[test]
fn a_lagging_learner_catches_up_with_chosen_values() {
    let mut net = Net::of(3);
    let l = net.elect();
    let lag = if l == 1 { 2 } else { 1 };
    net.isolate(lag);
    for i in 0..200 {
        net.node(l).propose(vec![cmd(&format!("w{i}"))]).unwrap();
    }
    net.settle();
    net.heal();
    net.tick(6);
    assert_eq!(net.commands(lag).len(), 200);
    assert_eq!(net.commands(lag), net.commands(l));
}

#[test]
fn a_learner_behind_the_leaders_snapshot_gets_the_snapshot() {
    let mut net = Net::of(3);
    let l = net.elect();
    let lag = if l == 1 { 2 } else { 1 };
    net.isolate(lag);
    for i in 0..20 {
        net.node(l).propose(vec![cmd(&format!("w{i}"))]).unwrap();
    }
    net.settle();
    let applied = net.node(l).status().applied_index;
    let snap = Snapshot { index: applied, term: 1, data: b"state".to_vec() };
    net.node(l).compact(snap.clone()).unwrap();
    assert_eq!(net.node(l).status().snapshot_index, applied);
    net.node(l).propose(vec![cmd("tail")]).unwrap();
    net.settle();
    net.heal();
    net.tick(6);
    let st = net.node(lag).status();
    assert_eq!(st.snapshot_index, applied);
    assert_eq!(st.applied_index, applied + 1);
    assert_eq!(net.wal[(lag - 1) as usize].0.as_ref(), Some(&snap));
    assert_eq!(net.commands(lag), vec![cmd("tail")]);
}

#[test]
fn compaction_beyond_the_applied_index_is_refused() {
    let mut net = Net::of(1);
    net.elect();
    let err = net.node(1).compact(Snapshot { index: 5, term: 1, data: vec![] }).unwrap_err();
    assert!(matches!(err, crate::replica::ReplicaError::Compact { index: 5, .. }));
}

#[test]
fn a_restarted_acceptor_rebuilds_its_log_from_its_records_and_the_snapshot() {
    let mut net = Net::of(3);
    let l = net.elect();
    for i in 0..10 {
        net.node(l).propose(vec![cmd(&format!("w{i}"))]).unwrap();
    }
    net.tick(3);
    let f = if l == 1 { 2 } else { 1 };
    let before: Vec<_> = net.node(f).accepted().map(|(i, b, d, _)| (i, b, d.clone())).collect();
    // Compact, rewrite the WAL the way the runtime does, then restart.
    let applied = net.node(f).status().applied_index;
    let snap = Snapshot { index: 4, term: 1, data: vec![] };
    assert!(applied >= 4);
    net.node(f).compact(snap.clone()).unwrap();
    net.wal[(f - 1) as usize] = (Some(snap), net.node(f).durable_records());
    let promised = net.node(f).promised();
    net.crash(f);
    net.restart(f);
    let after: Vec<_> = net.node(f).accepted().map(|(i, b, d, _)| (i, b, d.clone())).collect();
    assert_eq!(after, before.into_iter().filter(|(i, ..)| *i > 4).collect::<Vec<_>>());
    assert_eq!(net.node(f).promised(), promised);
    assert_eq!(net.node(f).status().snapshot_index, 4);
    // The restarted node re-applies what it knows is chosen, then follows again.
    net.tick(3);
    assert_eq!(net.node(f).status().commit_index, net.node(l).status().commit_index);
    assert_eq!(net.commands(f).len(), 6);
}

#[test]
fn a_read_is_released_only_after_a_quorum_confirms_the_leadership() {
    let mut net = Net::of(3);
    let l = net.elect();
    net.node(l).propose(vec![cmd("x")]).unwrap();
    net.settle();
    for id in 1..=3 {
        if id != l {
            net.isolate(id);
        }
    }
    net.node(l).read_index(9).unwrap();
    net.settle();
    assert!(net.reads[(l - 1) as usize].is_empty(), "no quorum, no read");
    net.heal();
    net.node(l).read_index(10).unwrap();
    net.settle();
    let got: HashMap<u64, u64> = net.reads[(l - 1) as usize].iter().copied().collect();
    assert_eq!(got.get(&10), Some(&1));
}

#[test]
fn a_leader_that_cannot_hear_a_quorum_steps_down() {
    let mut net = Net::of(3);
    let l = net.elect();
    net.isolate(l);
    net.tick(25);
    assert_ne!(net.nodes[(l - 1) as usize].as_ref().unwrap().status().role, Role::Leader);
    let new = net.sole_leader().expect("the majority side elects a leader");
    assert_ne!(new, l);
    net.heal();
    net.tick(5);
    assert_eq!(net.node(l).status().leader, Some(new));
}

#[test]
fn a_node_that_cannot_reach_a_quorum_does_not_raise_the_ballot() {
    let mut net = Net::of(3);
    let l = net.elect();
    net.tick(2);
    let term = net.node(l).status().term;
    let f = if l == 1 { 2 } else { 1 };
    net.isolate(f);
    net.tick(100);
    assert_eq!(net.node(f).status().term, term, "prevote kept the isolated node from bumping its round");
    net.heal();
    net.tick(5);
    assert_eq!(net.sole_leader(), Some(l), "the healthy leader was not disrupted");
}

#[test]
fn rounds_belong_to_one_proposer_each() {
    let mut owner = HashMap::new();
    for id in 1..=5u64 {
        let mut p = Paxos::restore(cfg(id, 5), None, vec![]).unwrap();
        for seen in 0..60 {
            p.max_round_seen = seen;
            let r = p.next_round();
            assert!(r > seen && r <= seen + 5, "round {r} after {seen}");
            assert_eq!(*owner.entry(r).or_insert(id), id, "round {r} used by two proposers");
        }
    }
}

#[test]
fn a_slow_proposer_gets_busy_instead_of_an_unbounded_window() {
    let mut c = cfg(1, 3);
    c.batch_max = 2;
    c.max_inflight_msgs = 2;
    let mut net = Net::of(3);
    net.nodes[0] = Some(Paxos::restore(c, None, vec![]).unwrap());
    for _ in 0..200 {
        net.node(1).tick();
        net.settle();
        if net.sole_leader() == Some(1) {
            break;
        }
    }
    assert_eq!(net.sole_leader(), Some(1));
    net.isolate(1);
    net.node(1).propose(vec![cmd("a"), cmd("b"), cmd("c"), cmd("d")]).unwrap();
    assert_eq!(net.node(1).propose(vec![cmd("e")]), Err(ProposeError::Busy));
}

#[test]
fn a_candidate_refuses_to_walk_an_absurd_slot_range_from_a_corrupt_peer() {
    let far = Record::Accept { ballot: Ballot { round: 1, node: 2 }, entries: vec![(1 << 40, EntryData::Noop)] };
    let mut net = Net::of(3);
    net.nodes[0] = Some(Paxos::restore(cfg(1, 3), None, vec![far]).unwrap());
    net.isolate(2);
    for _ in 0..100 {
        net.node(3).tick();
        net.settle();
    }
    assert_eq!(net.sole_leader(), None, "no leader re-proposes 2^40 slots");
    assert!(net.node(3).status().term > 0, "node 3 did run phase 1");
}

#[test]
fn a_dead_leader_named_only_by_peers_does_not_keep_its_followers() {
    // A probe reply that names a live leader makes a pre-candidate follow it at once; that
    // peer's word is not the leader's own, so it must not stop the follower from helping
    // the next candidate. With equal timeouts followers otherwise passed a dead leader's
    // name round for ever and nobody was elected.
    let mk = |id: NodeId| {
        let mut c = cfg(id, 5);
        c.election_ticks_min = 10;
        c.election_ticks_max = 10;
        c
    };
    let mut net = Net::fresh(5, mk).unwrap();
    let old = net.elect();
    net.tick(5);
    net.crash(old);
    let live: Vec<NodeId> = (1..=5).filter(|&i| i != old).collect();
    for _ in 0..20 * 10 {
        for &i in &live {
            net.node(i).tick();
            net.settle();
        }
        if net.sole_leader().is_some() {
            break;
        }
    }
    let leader = net.sole_leader().expect("a new leader within 20 election timeouts");
    assert_ne!(leader, old);
}
