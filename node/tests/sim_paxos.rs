//! Multi-Paxos under the deterministic simulator: the same seeds, faults and client load as
//! Raft, checking the Paxos safety properties after every tick and the client history for
//! linearizability at the end.
//!
//! "Paxos Made Simple" §2.1: only a value that has been proposed may be chosen, only a single
//! value is chosen (per slot), and a process never learns that a value has been chosen unless
//! it actually has been. The simulator itself checks that replicas apply the same sequence.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::{Fault, Faulty};
use faultline_node::paxos::{Ballot, Paxos, Record};
use faultline_node::replica::{EntryData, Replica};
use faultline_node::sim::{Sim, SimConfig};

/// Everything ever observed to be chosen, and every value ever proposed.
#[derive(Default)]
struct Oracle {
    chosen: HashMap<u64, EntryData>,
    /// (slot, ballot) -> the one value proposed under that ballot for that slot.
    proposals: HashMap<(u64, Ballot), EntryData>,
    /// Per node, the commit index at the previous check: slots at or below it are chosen,
    /// were checked when they became chosen, and the core never changes them.
    floor: Vec<u64>,
    /// Applied indexes below this were compared already.
    applied_checked: u64,
}

impl Oracle {
    fn check(&mut self, sim: &Sim<Paxos>) -> Result<(), String> {
        let quorum = sim.node_count() / 2 + 1;
        // (slot, ballot) -> acceptors currently holding that accepted value.
        let mut votes: BTreeMap<(u64, Ballot), (usize, EntryData)> = BTreeMap::new();
        self.floor.resize(sim.node_count(), 0);
        for i in 0..sim.node_count() {
            let Some(p) = sim.replica(i) else { continue };
            let commit = p.status().commit_index;
            let floor = self.floor[i].min(commit);
            self.floor[i] = commit;
            for (slot, ballot, data, known_chosen) in p.accepted_from(floor + 1) {
                if ballot > p.promised() && !known_chosen {
                    return Err(format!("node {} accepted {ballot:?} above its promise {:?}", i + 1, p.promised()));
                }
                // One proposer per ballot proposes one value per slot.
                if !known_chosen {
                    match self.proposals.get(&(slot, ballot)) {
                        Some(d) if d != data => {
                            return Err(format!("two values proposed at slot {slot} under {ballot:?}"));
                        }
                        Some(_) => {}
                        None => {
                            self.proposals.insert((slot, ballot), data.clone());
                        }
                    }
                    let v = votes.entry((slot, ballot)).or_insert((0, data.clone()));
                    v.0 += 1;
                }
                if known_chosen {
                    self.chose(slot, data, &format!("node {} learned", i + 1))?;
                }
            }
        }
        for ((slot, ballot), (n, data)) in votes {
            if n >= quorum {
                self.chose(slot, &data, &format!("a quorum accepted under {ballot:?}"))?;
            }
        }
        while let Some(data) = sim.chosen().get(&(self.applied_checked + 1)) {
            self.applied_checked += 1;
            self.chose(self.applied_checked, data, "a state machine applied")?;
        }
        Ok(())
    }

    fn chose(&mut self, slot: u64, data: &EntryData, how: &str) -> Result<(), String> {
        match self.chosen.get(&slot) {
            Some(d) if d != data => Err(format!("slot {slot}: {how} {data:?} but {d:?} was chosen before")),
            Some(_) => Ok(()),
            None => {
                self.chosen.insert(slot, data.clone());
                Ok(())
            }
        }
    }
}

fn run_seed(cfg: SimConfig) -> Result<Sim<Paxos>, String> {
    let mut sim = Sim::<Paxos>::new(cfg).map_err(|e| e.to_string())?;
    let mut oracle = Oracle::default();
    sim.run_with(|s| Ok(oracle.check(s)?)).map_err(|e| e.to_string())?;
    if oracle.chosen.len() < 10 {
        return Err(format!("only {} slots were chosen", oracle.chosen.len()));
    }
    Ok(sim)
}

#[test]
fn paxos_sim_many_seeds_is_safe_and_linearizable() {
    common::many_seeds_are_safe_and_linearizable(run_seed, 50);
}

#[test]
fn paxos_sim_without_prevote_or_check_quorum_is_still_safe() {
    common::safe_without_prevote_or_check_quorum(run_seed);
}

#[test]
fn paxos_sim_heavy_loss_small_batches() {
    common::safe_under_heavy_loss_and_small_batches(run_seed);
}

#[test]
fn paxos_sim_single_node_cluster_works() {
    common::single_node_cluster_works(run_seed);
}

/// The oracle must be able to fail: two acceptors of a three-node cluster holding different
/// values under one ballot at one slot is exactly what it exists to catch.
#[test]
fn paxos_oracle_flags_two_values_under_one_ballot() {
    let mut o = Oracle::default();
    o.chose(4, &EntryData::Command(b"a".to_vec()), "test").unwrap();
    let err = o.chose(4, &EntryData::Command(b"b".to_vec()), "test").unwrap_err();
    assert!(err.contains("slot 4"), "{err}");
}

/// An acceptor that forgets what it promised and accepted when it restarts (its WAL records
/// are ignored): the textbook way to break Paxos. Crash-restarts must then let a chosen
/// value be lost or replaced, and the simulator must notice on some seed.
#[derive(Default)]
struct ForgetsWal;

impl Fault<Paxos> for ForgetsWal {
    const ALGO: &'static str = "amnesiac-paxos";

    fn restore_records(_records: Vec<Record>) -> Vec<Record> {
        Vec::new()
    }
}

type Amnesiac = Faulty<Paxos, ForgetsWal>;

#[test]
fn paxos_sim_catches_an_acceptor_that_forgets_its_state_on_restart() {
    let mut caught = 0;
    for seed in 0..12 {
        let mut cfg = SimConfig::new(seed);
        cfg.crash_prob = 0.01;
        cfg.compact_every = 1000;
        // Rounds may repeat after amnesia; the oracle of interest is the simulator's own
        // state-machine safety and the history check.
        cfg.check_one_leader_per_term = false;
        let mut sim = Sim::<Amnesiac>::new(cfg).unwrap();
        let bad = match sim.run() {
            Err(_) => true,
            Ok(()) => common::check_linearizable(sim.history()).is_err(),
        };
        if bad {
            caught += 1;
        }
    }
    eprintln!("amnesiac acceptors caught on {caught} of 12 seeds");
    assert!(caught > 0, "forgotten promises and accepted values went unnoticed on every seed");
}

#[test]
fn paxos_sim_pauses_and_partial_partitions_converge_within_a_few_election_timeouts() {
    common::pauses_and_partial_partitions_converge(run_seed);
}
