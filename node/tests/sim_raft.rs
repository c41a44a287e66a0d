//! Raft under the deterministic simulator: many seeds of drops, duplicates, delays,
//! partitions and crashes, checking the Raft safety properties (Figure 3 of the paper) after
//! every tick and the client history for linearizability at the end.

mod common;

use common::raft_checks::{LeaderCompleteness, log_matching};
use common::{Fault, Faulty};
use faultline_node::raft::{Message, Raft, Record};
use faultline_node::replica::{EntryData, ProposeError, ReadState, Ready, Replica};
use faultline_node::sim::{Sim, SimConfig};

fn run_seed(cfg: SimConfig) -> Result<Sim<Raft>, String> {
    let mut sim = Sim::<Raft>::new(cfg).map_err(|e| e.to_string())?;
    let mut lc = LeaderCompleteness::default();
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
