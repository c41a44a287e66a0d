//! Raft under the deterministic simulator: many seeds of drops, duplicates, delays,
//! partitions and crashes, checking the Raft safety properties (Figure 3 of the paper) after
//! every tick and the client history for linearizability at the end.

mod common;

use std::collections::BTreeMap;

use common::{Fault, Faulty};
use faultline_node::raft::{Message, Raft, Record};
use faultline_node::replica::{EntryData, ProposeError, ReadState, Ready, Replica, Role};
use faultline_node::sim::{Sim, SimConfig};

/// "Log Matching: if two logs contain an entry with the same index and term, then the logs
/// are identical in all entries up through the given index." Checked inductively: equal
/// (index, term) implies equal data and equal terms at index - 1.
fn log_matching(sim: &Sim<Raft>) -> Result<(), String> {
    let live: Vec<&Raft> = (0..sim.node_count()).filter_map(|i| sim.replica(i)).collect();
    for (a, ra) in live.iter().enumerate() {
        for rb in live.iter().skip(a + 1) {
            let lo = ra.first_index().max(rb.first_index());
            let hi = ra.status().last_index.min(rb.status().last_index);
            for e in ra.log().iter().filter(|e| e.index >= lo && e.index <= hi) {
                let other = &rb.log()[(e.index - rb.first_index()) as usize];
                if other.term != e.term {
                    continue;
                }
                if other.data != e.data {
                    return Err(format!("log matching: index {} term {} holds different data", e.index, e.term));
                }
                if e.index > lo && ra.term_at(e.index - 1) != rb.term_at(e.index - 1) {
                    return Err(format!("log matching: logs agree at {} but not at {}", e.index, e.index - 1));
                }
            }
        }
    }
    Ok(())
}

/// "Leader Completeness: if a log entry is committed in a given term, then that entry will be
/// present in the logs of the leaders for all higher-numbered terms."
struct LeaderCompleteness {
    /// term -> highest commit index a leader of that term reached.
    commit_by_term: BTreeMap<u64, u64>,
}

impl LeaderCompleteness {
    fn check(&mut self, sim: &Sim<Raft>) -> Result<(), String> {
        for i in 0..sim.node_count() {
            let Some(r) = sim.replica(i) else { continue };
            let st = r.status();
            if st.role != Role::Leader {
                continue;
            }
            let c = self.commit_by_term.entry(st.term).or_insert(0);
            *c = (*c).max(st.commit_index);
            let required = self.commit_by_term.range(..st.term).map(|(_, &c)| c).max().unwrap_or(0);
            for index in r.first_index()..=required {
                let Some(chosen) = sim.chosen().get(&index) else { continue };
                let Some(e) = r.log().get((index - r.first_index()) as usize) else {
                    return Err(format!("leader {} of term {} lacks committed index {index}", st.id, st.term));
                };
                if &e.data != chosen {
                    return Err(format!(
                        "leader {} of term {} has a different entry at committed {index}",
                        st.id, st.term
                    ));
                }
            }
        }
        Ok(())
    }
}

fn run_seed(cfg: SimConfig) -> Result<Sim<Raft>, String> {
    let mut sim = Sim::<Raft>::new(cfg).map_err(|e| e.to_string())?;
    let mut lc = LeaderCompleteness { commit_by_term: BTreeMap::new() };
    sim.run_with(|s| {
        log_matching(s)?;
        Ok(lc.check(s)?)
    })
    .map_err(|e| e.to_string())?;
    Ok(sim)
}

#[test]
fn raft_sim_many_seeds_is_safe_and_linearizable() {
    common::many_seeds_are_safe_and_linearizable(run_seed, 40);
}

#[test]
fn raft_sim_without_prevote_or_check_quorum_is_still_safe() {
    common::safe_without_prevote_or_check_quorum(run_seed);
}

#[test]
fn raft_sim_heavy_loss_small_batches() {
    common::safe_under_heavy_loss_and_small_batches(run_seed);
}

#[test]
fn raft_sim_single_node_cluster_works() {
    common::single_node_cluster_works(run_seed);
}

/// A replica that corrupts the command it hands out at one index on one node: the harness
/// must report it (guards against a harness that cannot fail).
#[derive(Default)]
struct CorruptsIndex30OnNode2;

impl Fault<Raft> for CorruptsIndex30OnNode2 {
    const ALGO: &'static str = "tampered";

    fn ready(&mut self, core: &mut Raft) -> Ready<Message, Record> {
        let mut rd = core.ready();
        if core.status().id == 2 {
            for e in &mut rd.committed {
                if e.index == 30 {
                    e.data = EntryData::Noop;
                }
            }
        }
        rd
    }
}

type Tampered = Faulty<Raft, CorruptsIndex30OnNode2>;

#[test]
fn sim_detects_divergent_state_machines() {
    let mut cfg = SimConfig::new(3);
    cfg.crash_prob = 0.0;
    let err = Sim::<Tampered>::new(cfg).unwrap().run().expect_err("the tampered node must be caught").to_string();
    assert!(err.contains("at 30"), "{err}");
}

/// Reads answered from local state without a quorum round (what `unsafe_local_reads` does):
/// the history checker must flag at least one seed, or it could not catch the real bug.
#[derive(Default)]
struct ReadsWithoutQuorum {
    reads: Vec<u64>,
}

impl Fault<Raft> for ReadsWithoutQuorum {
    const ALGO: &'static str = "local-reads";

    fn read_index(&mut self, _core: &mut Raft, id: u64) -> Result<(), ProposeError> {
        self.reads.push(id);
        Ok(())
    }
    fn has_ready(&self, core: &Raft) -> bool {
        core.has_ready() || !self.reads.is_empty()
    }
    fn ready(&mut self, core: &mut Raft) -> Ready<Message, Record> {
        let mut rd = core.ready();
        for id in self.reads.drain(..) {
            rd.read_states.push(ReadState { id, index: 0 });
        }
        rd
    }
}

type LocalReads = Faulty<Raft, ReadsWithoutQuorum>;

#[test]
fn sim_history_check_catches_stale_local_reads() {
    let mut caught = 0;
    for seed in 0..12 {
        let mut cfg = SimConfig::new(seed);
        cfg.partition_prob = 0.02;
        cfg.drop_prob = 0.2;
        let mut sim = Sim::<LocalReads>::new(cfg).unwrap();
        sim.run().unwrap();
        if common::check_linearizable(sim.history()).is_err() {
            caught += 1;
        }
    }
    assert!(caught > 0, "stale reads went unnoticed on every seed");
}

#[test]
fn raft_sim_pauses_and_partial_partitions_converge_within_a_few_election_timeouts() {
    common::pauses_and_partial_partitions_converge(run_seed);
}
