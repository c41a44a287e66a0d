//! Multi-Paxos under the deterministic simulator: the same seeds, faults and client load as
//! Raft, checking the Paxos safety properties after every tick and the client history for
//! linearizability at the end.
//!
//! "Paxos Made Simple" §2.1: only a value that has been proposed may be chosen, only a single
//! value is chosen (per slot), and a process never learns that a value has been chosen unless
//! it actually has been. The simulator itself checks that replicas apply the same sequence.

mod common;

use std::collections::{BTreeMap, HashMap};

use faultline_node::paxos::{Ballot, Paxos};
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
    let mut sim = Sim::<Paxos>::new(cfg)?;
    let mut oracle = Oracle::default();
    sim.run_with(|s| oracle.check(s))?;
    if oracle.chosen.len() < 10 {
        return Err(format!("only {} slots were chosen", oracle.chosen.len()));
    }
    Ok(sim)
}

#[test]
fn paxos_sim_many_seeds_is_safe_and_linearizable() {
    let seeds: u64 = std::env::var("SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(50);
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
    eprintln!("ok ops, crashes, partitions, snapshots installed, leaders: {totals:?}");
    // The faults must actually have been exercised, or the run proves nothing.
    assert!(totals.0 > seeds * 100, "too few ok ops: {totals:?}");
    assert!(totals.1 > 0 && totals.2 > 0, "no crashes or partitions: {totals:?}");
    assert!(totals.3 > 0, "no snapshot was ever installed: {totals:?}");
    assert!(totals.4 > seeds, "no re-elections: {totals:?}");
}

#[test]
fn paxos_sim_without_prevote_or_check_quorum_is_still_safe() {
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
fn paxos_sim_heavy_loss_small_batches() {
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
fn paxos_sim_single_node_cluster_works() {
    let mut cfg = SimConfig::new(7);
    cfg.nodes = 1;
    cfg.partition_prob = 0.0;
    let sim = run_seed(cfg).unwrap_or_else(|e| panic!("{e}"));
    assert!(sim.stats.ok > 100);
    common::check_linearizable(sim.history()).unwrap();
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
struct Amnesiac(Paxos);

impl Replica for Amnesiac {
    type Message = <Paxos as Replica>::Message;
    type Record = <Paxos as Replica>::Record;
    const ALGO: &'static str = "amnesiac-paxos";

    fn restore(
        cfg: faultline_node::replica::ReplicaConfig,
        snapshot: Option<faultline_node::replica::Snapshot>,
        _records: Vec<Self::Record>,
    ) -> Result<Self, faultline_node::replica::ReplicaError> {
        Paxos::restore(cfg, snapshot, Vec::new()).map(Amnesiac)
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
        self.0.ready()
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

/// Pauses (a stopped node's inbox delivered in one burst of old terms when it resumes) and
/// partial partitions (bridges, rings, stars), five nodes. After the faults heal the cluster
/// must settle on one leader with every replica applied to the same point within 200 ticks,
/// ten maximum election timeouts — not merely eventually.
#[test]
fn paxos_sim_pauses_and_partial_partitions_converge_within_a_few_election_timeouts() {
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
