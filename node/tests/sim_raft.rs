//! Raft under the deterministic simulator: many seeds of drops, duplicates, delays,
//! partitions and crashes, checking the Raft safety properties (Figure 3 of the paper) after
//! every tick and the client history for linearizability at the end.

mod common;

use std::collections::BTreeMap;

use faultline_node::raft::Raft;
use faultline_node::replica::{EntryData, Replica, Role};
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
    let mut sim = Sim::<Raft>::new(cfg)?;
    let mut lc = LeaderCompleteness { commit_by_term: BTreeMap::new() };
    sim.run_with(|s| {
        log_matching(s)?;
        lc.check(s)
    })?;
    Ok(sim)
}

#[test]
fn raft_sim_many_seeds_is_safe_and_linearizable() {
    let seeds: u64 = std::env::var("SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(40);
    let mut totals = (0u64, 0u64, 0u64, 0u64, 0u64);
    for seed in 0..seeds {
        let mut cfg = SimConfig::new(seed);
        cfg.nodes = if seed % 4 == 3 { 5 } else { 3 };
        let sim = run_seed(cfg).unwrap_or_else(|e| panic!("{e}"));
        common::check_linearizable(sim.history()).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let s = &sim.stats;
        totals.0 += s.ok;
        totals.1 += s.crashes;
        totals.2 += s.partitions;
        totals.3 += s.snapshots_installed;
        totals.4 += s.leaders_seen;
    }
    // The faults must actually have been exercised, or the run proves nothing.
    assert!(totals.0 > seeds * 100, "too few ok ops: {totals:?}");
    assert!(totals.1 > 0 && totals.2 > 0, "no crashes or partitions: {totals:?}");
    assert!(totals.3 > 0, "no snapshot was ever installed: {totals:?}");
    assert!(totals.4 > seeds, "no re-elections: {totals:?}");
}

#[test]
fn raft_sim_without_prevote_or_check_quorum_is_still_safe() {
    for seed in 100..110 {
        let mut cfg = SimConfig::new(seed);
        cfg.tweak = |rc| {
            rc.prevote = false;
            rc.check_quorum = false;
        };
        let sim = run_seed(cfg).unwrap_or_else(|e| panic!("{e}"));
        common::check_linearizable(sim.history()).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}

#[test]
fn raft_sim_heavy_loss_small_batches() {
    for seed in 200..210 {
        let mut cfg = SimConfig::new(seed);
        cfg.drop_prob = 0.25;
        cfg.dup_prob = 0.1;
        cfg.compact_every = 10;
        cfg.tweak = |rc| {
            rc.batch_max = 2;
            rc.max_inflight_msgs = 2;
        };
        let sim = run_seed(cfg).unwrap_or_else(|e| panic!("{e}"));
        common::check_linearizable(sim.history()).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}

#[test]
fn raft_sim_single_node_cluster_works() {
    let mut cfg = SimConfig::new(7);
    cfg.nodes = 1;
    cfg.partition_prob = 0.0;
    let sim = run_seed(cfg).unwrap_or_else(|e| panic!("{e}"));
    assert!(sim.stats.ok > 100);
    common::check_linearizable(sim.history()).unwrap();
}

/// A replica that corrupts the command it hands out at one index on one node: the harness
/// must report it (guards against a harness that cannot fail).
struct Tampered(Raft);

impl Replica for Tampered {
    type Message = <Raft as Replica>::Message;
    type Record = <Raft as Replica>::Record;
    const ALGO: &'static str = "tampered";

    fn restore(
        cfg: faultline_node::replica::ReplicaConfig,
        snapshot: Option<faultline_node::replica::Snapshot>,
        records: Vec<Self::Record>,
    ) -> Result<Self, faultline_node::replica::ReplicaError> {
        Raft::restore(cfg, snapshot, records).map(Tampered)
    }
    fn tick(&mut self) {
        self.0.tick()
    }
    fn step(&mut self, from: u64, msg: Self::Message) {
        self.0.step(from, msg)
    }
    fn propose(&mut self, c: Vec<Vec<u8>>) -> Result<(), faultline_node::replica::ProposeError> {
        self.0.propose(c)
    }
    fn read_index(&mut self, id: u64) -> Result<(), faultline_node::replica::ProposeError> {
        self.0.read_index(id)
    }
    fn has_ready(&self) -> bool {
        self.0.has_ready()
    }
    fn ready(&mut self) -> faultline_node::replica::Ready<Self::Message, Self::Record> {
        let mut rd = self.0.ready();
        if self.0.status().id == 2 {
            for e in &mut rd.committed {
                if e.index == 30 {
                    e.data = EntryData::Noop;
                }
            }
        }
        rd
    }
    fn status(&self) -> faultline_node::replica::Status {
        self.0.status()
    }
    fn compact(&mut self, s: faultline_node::replica::Snapshot) -> Result<(), faultline_node::replica::ReplicaError> {
        self.0.compact(s)
    }
    fn durable_records(&self) -> Vec<Self::Record> {
        self.0.durable_records()
    }
}

#[test]
fn sim_detects_divergent_state_machines() {
    let mut cfg = SimConfig::new(3);
    cfg.crash_prob = 0.0;
    let err = Sim::<Tampered>::new(cfg).unwrap().run().expect_err("the tampered node must be caught");
    assert!(err.contains("at 30"), "{err}");
}

/// Reads answered from local state without a quorum round (what `unsafe_local_reads` does):
/// the history checker must flag at least one seed, or it could not catch the real bug.
struct LocalReads {
    raft: Raft,
    reads: Vec<u64>,
}

impl Replica for LocalReads {
    type Message = <Raft as Replica>::Message;
    type Record = <Raft as Replica>::Record;
    const ALGO: &'static str = "local-reads";

    fn restore(
        cfg: faultline_node::replica::ReplicaConfig,
        snapshot: Option<faultline_node::replica::Snapshot>,
        records: Vec<Self::Record>,
    ) -> Result<Self, faultline_node::replica::ReplicaError> {
        Raft::restore(cfg, snapshot, records).map(|raft| LocalReads { raft, reads: Vec::new() })
    }
    fn tick(&mut self) {
        self.raft.tick()
    }
    fn step(&mut self, from: u64, msg: Self::Message) {
        self.raft.step(from, msg)
    }
    fn propose(&mut self, c: Vec<Vec<u8>>) -> Result<(), faultline_node::replica::ProposeError> {
        self.raft.propose(c)
    }
    fn read_index(&mut self, id: u64) -> Result<(), faultline_node::replica::ProposeError> {
        self.reads.push(id);
        Ok(())
    }
    fn has_ready(&self) -> bool {
        self.raft.has_ready() || !self.reads.is_empty()
    }
    fn ready(&mut self) -> faultline_node::replica::Ready<Self::Message, Self::Record> {
        let mut rd = self.raft.ready();
        for id in self.reads.drain(..) {
            rd.read_states.push(faultline_node::replica::ReadState { id, index: 0 });
        }
        rd
    }
    fn status(&self) -> faultline_node::replica::Status {
        self.raft.status()
    }
    fn compact(&mut self, s: faultline_node::replica::Snapshot) -> Result<(), faultline_node::replica::ReplicaError> {
        self.raft.compact(s)
    }
    fn durable_records(&self) -> Vec<Self::Record> {
        self.raft.durable_records()
    }
}

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

/// Pauses (a stopped node's inbox delivered in one burst of old terms when it resumes) and
/// partial partitions (bridges, rings, stars), five nodes. After the faults heal the cluster
/// must settle on one leader with every replica applied to the same point within 200 ticks,
/// ten maximum election timeouts — not merely eventually.
#[test]
fn raft_sim_pauses_and_partial_partitions_converge_within_a_few_election_timeouts() {
    let seeds: u64 = std::env::var("SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(12);
    let (mut pauses, mut partial, mut ok) = (0, 0, 0);
    for seed in 0..seeds {
        let mut cfg = SimConfig::new(1000 + seed);
        cfg.nodes = 5;
        cfg.pause_prob = 0.006;
        cfg.pause_ticks_max = 200;
        cfg.partition_prob = 0.006;
        cfg.partial_partition_prob = 0.6;
        cfg.crash_prob = 0.001;
        cfg.quiesce_ticks = 200;
        let sim = run_seed(cfg).unwrap_or_else(|e| panic!("{e}"));
        common::check_linearizable(sim.history()).unwrap_or_else(|e| panic!("seed {}: {e}", 1000 + seed));
        pauses += sim.stats.pauses;
        partial += sim.stats.partial_partitions;
        ok += sim.stats.ok;
    }
    assert!(
        pauses > seeds && partial > seeds / 2,
        "faults not exercised: {pauses} pauses, {partial} partial partitions"
    );
    assert!(ok > seeds * 50, "too few ok ops: {ok}");
}
