//! Raft against the sentences of the paper (Ongaro & Ousterhout, extended version) and of
//! Ongaro's thesis for PreVote, CheckQuorum and ReadIndex, in the style of etcd-io/raft's
//! `raft_paper_test.go`. Each test quotes what it checks.

use std::collections::BTreeSet;

use faultline_node::raft::{Message, Raft, Record};
use faultline_node::replica::{Entry, EntryData, NodeId, ProposeError, Replica, ReplicaConfig, Role, Snapshot};

fn cfg(id: NodeId, n: u64) -> ReplicaConfig {
    let mut c = ReplicaConfig::new(id, (1..=n).collect(), 1000 + id);
    c.prevote = false;
    c.check_quorum = false;
    c
}

fn new(id: NodeId, n: u64) -> Raft {
    Raft::restore(cfg(id, n), None, Vec::new()).unwrap()
}

fn entry(index: u64, term: u64) -> Entry {
    Entry { index, term, data: EntryData::Command(vec![index as u8, term as u8]) }
}

type Net = faultline_node::sim::Net<Raft>;

trait Campaign {
    /// Ticks `id` until it starts campaigning, then settles.
    fn campaign(&mut self, id: NodeId);
}

impl Campaign for Net {
    fn campaign(&mut self, id: NodeId) {
        for _ in 0..100 {
            if self.node(id).status().role != Role::Follower {
                break;
            }
            self.node(id).tick();
        }
        self.settle();
    }
}

fn drain(r: &mut Raft) -> Vec<(NodeId, Message)> {
    r.ready().messages
}

#[test]
fn follower_starts_an_election_after_the_election_timeout() {
    // §5.2: "If a follower receives no communication over a period of time called the
    // election timeout, then it assumes there is no viable leader and begins an election to
    // choose a new leader. To begin an election, a follower increments its current term and
    // transitions to candidate state. It then votes for itself and issues RequestVote RPCs in
    // parallel to each of the other servers in the cluster."
    let mut r = new(1, 3);
    for _ in 0..cfg(1, 3).election_ticks_max {
        r.tick();
    }
    let st = r.status();
    assert_eq!((st.role, st.term), (Role::Candidate, 1));
    let msgs = drain(&mut r);
    let to: BTreeSet<NodeId> = msgs.iter().map(|(to, _)| *to).collect();
    assert_eq!(to, BTreeSet::from([2, 3]));
    assert!(msgs.iter().all(|(_, m)| matches!(m, Message::RequestVote { term: 1, .. })));
}

#[test]
fn election_timeouts_are_randomized() {
    // §5.2: "Raft uses randomized election timeouts to ensure that split votes are rare ...
    // election timeouts are chosen randomly from a fixed interval".
    let mut seen = BTreeSet::new();
    for seed in 0..50 {
        let mut c = cfg(1, 3);
        c.seed = seed;
        let mut r = Raft::restore(c.clone(), None, Vec::new()).unwrap();
        let mut ticks = 0;
        while r.status().role == Role::Follower {
            r.tick();
            ticks += 1;
        }
        assert!(ticks >= c.election_ticks_min && ticks <= c.election_ticks_max, "{ticks}");
        seen.insert(ticks);
    }
    assert!(seen.len() > 3, "timeouts should vary: {seen:?}");
}

#[test]
fn candidate_with_a_majority_of_votes_becomes_leader() {
    // §5.2: "A candidate wins an election if it receives votes from a majority of the servers
    // in the full cluster for the same term." And: "Once a candidate wins an election, it
    // becomes leader. It then sends heartbeat messages to all of the other servers".
    let mut net = Net::new((1..=5).map(|i| new(i, 5)).collect());
    net.isolate(4);
    net.isolate(5);
    net.cut.remove(&(1, 4));
    net.cut.remove(&(4, 1));
    net.campaign(1);
    assert_eq!(net.leader(), Some(1), "votes from 1, 2, 3 (and 4) are a majority of 5");
    let st = net.node(2).status();
    assert_eq!((st.leader, st.term), (Some(1), 1));
}

#[test]
fn candidate_without_a_majority_does_not_lead() {
    let mut net = Net::new((1..=5).map(|i| new(i, 5)).collect());
    for i in 3..=5 {
        net.isolate(i);
    }
    net.campaign(1);
    assert_eq!(net.node(1).status().role, Role::Candidate, "two votes of five are not a majority");
}

#[test]
fn each_server_votes_for_at_most_one_candidate_per_term() {
    // §5.2: "Each server will vote for at most one candidate in a given term, on a
    // first-come-first-served basis".
    let mut r = new(3, 3);
    r.step(1, Message::RequestVote { term: 1, last_index: 0, last_term: 0, transfer: false });
    r.step(2, Message::RequestVote { term: 1, last_index: 0, last_term: 0, transfer: false });
    let msgs = drain(&mut r);
    assert_eq!(msgs[0], (1, Message::RequestVoteResp { term: 1, granted: true }));
    assert_eq!(msgs[1], (2, Message::RequestVoteResp { term: 1, granted: false }));
}

#[test]
fn the_vote_survives_a_restart() {
    // Figure 2: "Updated on stable storage before responding to RPCs": currentTerm, votedFor.
    let mut r = new(3, 3);
    r.step(1, Message::RequestVote { term: 1, last_index: 0, last_term: 0, transfer: false });
    let rd = r.ready();
    assert!(rd.records.contains(&Record::HardState { term: 1, vote: Some(1), commit: 0 }));
    let mut back = Raft::restore(cfg(3, 3), None, rd.records).unwrap();
    back.step(2, Message::RequestVote { term: 1, last_index: 0, last_term: 0, transfer: false });
    assert_eq!(drain(&mut back), vec![(2, Message::RequestVoteResp { term: 1, granted: false })]);
}

#[test]
fn a_voter_denies_a_candidate_whose_log_is_less_up_to_date() {
    // §5.4.1: "the voter denies its vote if its own log is more up-to-date than that of the
    // candidate ... If the logs have last entries with different terms, then the log with the
    // later term is more up-to-date. If the logs end with the same term, then whichever log is
    // longer is more up-to-date."
    let records = vec![Record::Entries(vec![entry(1, 1), entry(2, 2)]), Record::HardState { term: 2, vote: None, commit: 0 }];
    let cases = [
        (2, 1, false), // older last term
        (1, 2, false), // same term, shorter
        (2, 2, true),  // same
        (3, 2, true),  // longer
        (1, 3, true),  // newer last term
    ];
    for (last_index, last_term, granted) in cases {
        let mut r = Raft::restore(cfg(3, 3), None, records.clone()).unwrap();
        r.step(1, Message::RequestVote { term: 3, last_index, last_term, transfer: false });
        let m = drain(&mut r);
        assert_eq!(m, vec![(1, Message::RequestVoteResp { term: 3, granted })], "({last_index}, {last_term})");
    }
}

#[test]
fn stale_terms_are_rejected_and_newer_terms_adopted() {
    // §5.1: "If a server receives a request with a stale term number, it rejects the request."
    // "If one server's current term is smaller than the other's, then it updates its current
    // term to the larger value. If a candidate or leader discovers that its term is out of
    // date, it immediately reverts to follower state."
    let mut r = Raft::restore(cfg(2, 3), None, vec![Record::HardState { term: 5, vote: None, commit: 0 }]).unwrap();
    r.step(1, Message::Append { term: 4, prev_index: 0, prev_term: 0, entries: vec![entry(1, 4)], commit: 0 });
    assert_eq!(r.status().last_index, 0, "no entry from a stale leader");
    let mut c = cfg(2, 3);
    c.check_quorum = true;
    let mut r = Raft::restore(c, None, vec![Record::HardState { term: 5, vote: None, commit: 0 }]).unwrap();
    r.step(1, Message::Append { term: 4, prev_index: 0, prev_term: 0, entries: vec![entry(1, 4)], commit: 0 });
    let m = drain(&mut r);
    assert!(matches!(m[0], (1, Message::AppendResp { term: 5, .. })), "tells the stale leader the term: {m:?}");

    let mut net = Net::new((1..=3).map(|i| new(i, 3)).collect());
    net.campaign(1);
    assert_eq!(net.leader(), Some(1));
    net.node(1).step(2, Message::AppendResp { term: 9, index: 0, reject: true, hint_index: 0, hint_term: 0 });
    let st = net.node(1).status();
    assert_eq!((st.role, st.term), (Role::Follower, 9));
}

#[test]
fn leader_replicates_in_parallel_and_commits_on_a_majority() {
    // §5.3: "The leader appends the command to its log as a new entry, then issues
    // AppendEntries RPCs in parallel to each of the other servers to replicate the entry."
    // "A log entry is committed once the leader that created the entry has replicated it on
    // a majority of the servers".
    let mut net = Net::new((1..=3).map(|i| new(i, 3)).collect());
    net.campaign(1);
    net.node(1).propose(vec![b"x".to_vec()]).unwrap();
    let msgs = net.node(1).ready().messages;
    let appends: Vec<NodeId> =
        msgs.iter().filter(|(_, m)| matches!(m, Message::Append { entries, .. } if !entries.is_empty())).map(|(t, _)| *t).collect();
    assert_eq!(appends, vec![2, 3]);
    let before = net.node(1).status().commit_index;
    // Only node 2 answers: with the leader, that is a majority of three.
    for (to, m) in msgs {
        if to == 2 {
            net.node(2).step(1, m);
        }
    }
    for (_, m) in net.node(2).ready().messages {
        net.node(1).step(2, m);
    }
    assert_eq!(net.node(1).status().commit_index, before + 1);
    let rd = net.node(1).ready();
    assert_eq!(rd.committed.last().unwrap().data, EntryData::Command(b"x".to_vec()), "then it is applied");
}

#[test]
fn follower_refuses_entries_that_do_not_follow_a_matching_entry() {
    // §5.3: "If the follower does not find an entry in its log with the same index and term,
    // then it refuses the new entries."
    let mut r = Raft::restore(cfg(2, 3), None, vec![Record::Entries(vec![entry(1, 1), entry(2, 1)])]).unwrap();
    r.step(1, Message::Append { term: 2, prev_index: 2, prev_term: 2, entries: vec![entry(3, 2)], commit: 0 });
    let m = drain(&mut r);
    assert!(matches!(m[0], (1, Message::AppendResp { reject: true, index: 2, .. })), "{m:?}");
    assert_eq!(r.status().last_index, 2);
}

#[test]
fn conflicting_follower_entries_are_overwritten_by_the_leaders() {
    // §5.3: "the leader handles inconsistencies by forcing the followers' logs to duplicate
    // its own. This means that conflicting entries in follower logs will be overwritten with
    // entries from the leader's log." (Figure 7's (d)-(f) shapes.)
    let leader_log = vec![entry(1, 1), entry(2, 1), entry(3, 4), entry(4, 4), entry(5, 5), entry(6, 6)];
    let follower_logs = [
        vec![entry(1, 1), entry(2, 1), entry(3, 2), entry(4, 2), entry(5, 3)],
        vec![entry(1, 1), entry(2, 1), entry(3, 4), entry(4, 4), entry(5, 5), entry(6, 6), entry(7, 6), entry(8, 6)],
        vec![entry(1, 1)],
    ];
    for follower_log in follower_logs {
        let hs = Record::HardState { term: 6, vote: None, commit: 0 };
        let mut net = Net::new(vec![
            Raft::restore(cfg(1, 3), None, vec![Record::Entries(leader_log.clone()), hs.clone()]).unwrap(),
            Raft::restore(cfg(2, 3), None, vec![Record::Entries(follower_log.clone()), hs.clone()]).unwrap(),
            Raft::restore(cfg(3, 3), None, vec![Record::Entries(leader_log.clone()), hs]).unwrap(),
        ]);
        net.campaign(1);
        assert_eq!(net.leader(), Some(1));
        net.node(1).propose(vec![b"after".to_vec()]).unwrap();
        net.settle();
        for _ in 0..10 {
            net.node(1).tick();
            net.settle();
        }
        let l = net.node(1).log().to_vec();
        assert_eq!(net.node(2).log(), &l[..], "from {follower_log:?}");
    }
}

#[test]
fn entries_from_previous_terms_are_never_committed_by_counting_replicas() {
    // §5.4.2: "Raft never commits log entries from previous terms by counting replicas. Only
    // log entries from the leader's current term are committed by counting replicas; once an
    // entry from the current term has been committed in this way, then all prior entries are
    // committed indirectly because of the Log Matching Property."
    let recs = vec![Record::Entries(vec![entry(1, 1), entry(2, 2)]), Record::HardState { term: 2, vote: None, commit: 1 }];
    let mut l = Raft::restore(cfg(1, 3), None, recs).unwrap();
    for _ in 0..cfg(1, 3).election_ticks_max {
        l.tick();
    }
    l.step(2, Message::RequestVoteResp { term: 3, granted: true });
    assert_eq!(l.status().role, Role::Leader);
    let _ = l.ready();
    // Node 2 reports holding entry 2 (term 2): a majority holds it, but it is from term 2.
    l.step(2, Message::AppendResp { term: 3, index: 2, reject: false, hint_index: 0, hint_term: 0 });
    assert_eq!(l.status().commit_index, 1, "index 2 is not committed by counting");
    // Once the term-3 no-op at index 3 is on a majority, 2 and 3 commit together.
    l.step(2, Message::AppendResp { term: 3, index: 3, reject: false, hint_index: 0, hint_term: 0 });
    assert_eq!(l.status().commit_index, 3);
}

#[test]
fn a_new_leader_commits_a_no_op_at_the_start_of_its_term() {
    // §8: "Raft handles this by having each leader commit a blank no-op entry into the log at
    // the start of its term."
    let mut net = Net::new((1..=3).map(|i| new(i, 3)).collect());
    net.campaign(2);
    assert_eq!(net.leader(), Some(2));
    assert_eq!(net.applied[0].last().map(|e| &e.data), Some(&EntryData::Noop));
    assert_eq!(net.node(1).status().commit_index, 1);
}

#[test]
fn read_index_waits_for_a_quorum_heartbeat_round() {
    // Thesis §6.4: the leader "records its current commit index in a local variable
    // readIndex", "sends a new round of heartbeats, and waits for their acknowledgments from a
    // majority of the cluster. Once these acknowledgments are received, the leader knows that
    // there could not have existed a leader for a greater term at the moment it sent the
    // heartbeats."
    let mut net = Net::new((1..=3).map(|i| new(i, 3)).collect());
    net.campaign(1);
    net.isolate(1);
    net.node(1).read_index(42).unwrap();
    net.settle();
    assert!(net.reads[0].is_empty(), "no quorum answered, so the read must wait");
    net.heal();
    net.node(1).read_index(43).unwrap();
    let mut got = Vec::new();
    for _ in 0..5 {
        let rd = net.node(1).ready();
        got.extend(rd.read_states.iter().map(|r| r.id));
        for (to, m) in rd.messages {
            net.node(to).step(1, m);
            for (_, back) in net.node(to).ready().messages {
                net.node(1).step(to, back);
            }
        }
    }
    assert_eq!(got, vec![42, 43], "both released once a later round is acknowledged");
    assert!(matches!(new(2, 3).read_index(1), Err(ProposeError::NotLeader { .. })));
}

#[test]
fn prevote_keeps_a_rejoining_partitioned_node_from_disrupting_the_leader() {
    // Thesis §9.6: "a candidate would first ask other servers whether its log was up-to-date
    // enough to get their vote. Only if the candidate believed it could get votes from a
    // majority of the cluster would it increment its term and start a normal election."
    let mk = |i| {
        let mut c = cfg(i, 3);
        c.prevote = true;
        c.check_quorum = true;
        Raft::restore(c, None, Vec::new()).unwrap()
    };
    let mut net = Net::new((1..=3).map(mk).collect());
    net.campaign(1);
    let term = net.node(1).status().term;
    net.isolate(3);
    for _ in 0..200 {
        for i in 1..=3 {
            net.node(i).tick();
        }
        net.settle();
    }
    assert_eq!(net.node(3).status().term, term, "pre-votes never bump the term");
    net.heal();
    for _ in 0..50 {
        for i in 1..=3 {
            net.node(i).tick();
        }
        net.settle();
    }
    assert_eq!(net.leader(), Some(1));
    assert_eq!(net.node(1).status().term, term, "the leader was not deposed");
}

#[test]
fn check_quorum_makes_an_isolated_leader_step_down() {
    // Thesis §6.2: "a leader steps down if an election timeout elapses without a successful
    // round of heartbeats to a majority of its cluster".
    let mk = |i| {
        let mut c = cfg(i, 3);
        c.check_quorum = true;
        Raft::restore(c, None, Vec::new()).unwrap()
    };
    let mut net = Net::new((1..=3).map(mk).collect());
    net.campaign(1);
    net.isolate(1);
    for _ in 0..3 * cfg(1, 3).election_ticks_min {
        net.node(1).tick();
        net.settle();
    }
    assert_eq!(net.node(1).status().role, Role::Follower);
    assert!(net.node(1).propose(vec![b"x".to_vec()]).is_err());
}

#[test]
fn a_lagging_follower_receives_a_snapshot() {
    // §7: "the leader must occasionally send snapshots to followers that lag behind. This
    // happens when the leader has already discarded the next log entry that it needs to send
    // to a follower."
    let mut net = Net::new((1..=3).map(|i| new(i, 3)).collect());
    net.campaign(1);
    net.isolate(3);
    for i in 0..20u8 {
        net.node(1).propose(vec![vec![i]]).unwrap();
        net.settle();
    }
    let applied = net.node(1).status().applied_index;
    let term = net.node(1).status().term;
    net.node(1).compact(Snapshot { index: applied, term, data: b"state".to_vec() }).unwrap();
    assert!(net.node(1).compact(Snapshot { index: applied + 5, term, data: vec![] }).is_err(), "not applied yet");
    net.heal();
    let mut installed = None;
    for _ in 0..10 {
        net.node(1).tick();
        for _ in 0..20 {
            for i in [1, 2, 3] {
                let rd = net.node(i).ready();
                if i == 3 && rd.snapshot.is_some() {
                    installed = rd.snapshot.clone();
                }
                for (to, m) in rd.messages {
                    net.node(to).step(i, m);
                }
            }
        }
    }
    let s = installed.expect("follower 3 installs the snapshot");
    assert_eq!((s.index, s.data.as_slice()), (applied, &b"state"[..]));
    assert_eq!(net.node(3).status().commit_index, net.node(1).status().commit_index);
    // The follower's durable records restart it at the snapshot.
    let recs = net.node(3).durable_records();
    let back = Raft::restore(cfg(3, 3), Some(s), recs).unwrap();
    assert_eq!(back.status().snapshot_index, applied);
}

#[test]
fn leadership_transfer_hands_over_to_an_up_to_date_follower() {
    // Thesis §3.10: "The prior leader sends a TimeoutNow request to the target server. This
    // request has the same effect as the target server's election timer firing".
    let mut net = Net::new((1..=3).map(|i| new(i, 3)).collect());
    net.campaign(1);
    net.node(1).transfer_leader(3).unwrap();
    net.settle();
    assert_eq!(net.leader(), Some(3));
}

#[test]
fn a_dead_leader_named_only_by_peers_holds_no_lease() {
    // Thesis §9.6: a server refuses a vote "if it has heard from a current leader" within
    // the minimum election timeout. Hearing *of* the leader from another server (a refused
    // pre-vote naming it) is not hearing from it: with equal timeouts, followers that passed
    // a dead leader's name to each other refused every candidate for ever.
    let mk = |i| {
        let mut c = cfg(i, 5);
        c.prevote = true;
        c.check_quorum = true;
        c.election_ticks_min = 10;
        c.election_ticks_max = 10;
        Raft::restore(c, None, Vec::new()).unwrap()
    };
    let mut net = Net::new((1..=5).map(mk).collect());
    net.campaign(1);
    assert_eq!(net.leader(), Some(1));
    let term = net.node(1).status().term;
    net.crash(1);
    // The followers' timers run out one after another within a tick, as real clocks do.
    for _ in 0..20 * 10 {
        for i in 2..=5 {
            net.node(i).tick();
            net.settle();
        }
        if net.leader().is_some() {
            break;
        }
    }
    let leader = net.leader().expect("a new leader within 20 election timeouts");
    assert_ne!(leader, 1);
    assert!(net.node(leader).status().term > term);
}
