//! Helpers shared by the node's integration tests.
#![allow(dead_code)]

use faultline_checkers::{Event, Validity};

/// Runs the project's linearizability checker (one CAS register per key) over a simulated
/// history, failing with the checker's explanation.
pub fn check_linearizable(history: &[serde_json::Value]) -> Result<(), String> {
    let events: Vec<Event> = history
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut e: Event = serde_json::from_value(v.clone()).map_err(|e| format!("history event {i}: {e}"))?;
            e.index = Some(i as u64);
            Ok(e)
        })
        .collect::<Result<_, String>>()?;
    let checker = faultline_checkers::registry::lookup("linearizable").ok_or("no linearizable checker registered")?;
    let result = checker.check(&events);
    match result.valid {
        Validity::Valid => Ok(()),
        other => Err(format!("history is {other:?} ({} events): {}", events.len(), result.details)),
    }
}

use faultline_node::replica::{
    MembershipChange, MembershipError, NodeId, ProposeError, Ready, Replica, ReplicaConfig, ReplicaError, Snapshot,
    Status,
};
use faultline_node::sim::{Sim, SimConfig};

/// One core's simulator run with that protocol's own invariant checks; the scenarios below
/// are the same for every core, so Raft and Multi-Paxos face identical fault schedules.
pub type RunSeed<R> = fn(SimConfig) -> Result<Sim<R>, String>;

/// `SIM_SEEDS` from the environment (for longer soak runs), else `default`.
pub fn seeds(default: u64) -> u64 {
    std::env::var("SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

fn run_linearizable<R: Replica>(run_seed: RunSeed<R>, cfg: SimConfig) -> Sim<R> {
    let seed = cfg.seed;
    let sim = run_seed(cfg).unwrap_or_else(|e| panic!("{e}"));
    check_linearizable(sim.history()).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    sim
}

/// Three- and five-node clusters under every fault; the faults must actually have been
/// exercised, or the run proves nothing.
pub fn many_seeds_are_safe_and_linearizable<R: Replica>(run_seed: RunSeed<R>, default_seeds: u64) {
    let seeds = seeds(default_seeds);
    let mut totals = (0u64, 0u64, 0u64, 0u64, 0u64);
    for seed in 0..seeds {
        let mut cfg = SimConfig::new(seed);
        cfg.nodes = if seed % 4 == 3 { 5 } else { 3 };
        let sim = run_linearizable(run_seed, cfg);
        let s = &sim.stats;
        totals.0 += s.ok;
        totals.1 += s.crashes;
        totals.2 += s.partitions;
        totals.3 += s.snapshots_installed;
        totals.4 += s.leaders_seen;
    }
    eprintln!("ok ops, crashes, partitions, snapshots installed, leaders: {totals:?}");
    assert!(totals.0 > seeds * 100, "too few ok ops: {totals:?}");
    assert!(totals.1 > 0 && totals.2 > 0, "no crashes or partitions: {totals:?}");
    assert!(totals.3 > 0, "no snapshot was ever installed: {totals:?}");
    assert!(totals.4 > seeds, "no re-elections: {totals:?}");
}

pub fn safe_without_prevote_or_check_quorum<R: Replica>(run_seed: RunSeed<R>) {
    for seed in 100..110 {
        let mut cfg = SimConfig::new(seed);
        cfg.tweak = |rc| {
            rc.prevote = false;
            rc.check_quorum = false;
        };
        run_linearizable(run_seed, cfg);
    }
}

pub fn safe_under_heavy_loss_and_small_batches<R: Replica>(run_seed: RunSeed<R>) {
    for seed in 200..210 {
        let mut cfg = SimConfig::new(seed);
        cfg.drop_prob = 0.25;
        cfg.dup_prob = 0.1;
        cfg.compact_every = 10;
        cfg.tweak = |rc| {
            rc.batch_max = 2;
            rc.max_inflight_msgs = 2;
        };
        run_linearizable(run_seed, cfg);
    }
}

pub fn single_node_cluster_works<R: Replica>(run_seed: RunSeed<R>) {
    let mut cfg = SimConfig::new(7);
    cfg.nodes = 1;
    cfg.partition_prob = 0.0;
    let sim = run_linearizable(run_seed, cfg);
    assert!(sim.stats.ok > 100, "too few ok ops: {}", sim.stats.ok);
}

/// Pauses (a stopped node's inbox delivered in one burst of old terms when it resumes) and
/// partial partitions (bridges, rings, stars), five nodes. After the faults heal the cluster
/// must settle on one leader with every replica applied to the same point within 200 ticks,
/// ten maximum election timeouts — not merely eventually.
pub fn pauses_and_partial_partitions_converge<R: Replica>(run_seed: RunSeed<R>) {
    let seeds = seeds(12);
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
        let sim = run_linearizable(run_seed, cfg);
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

/// A bug planted into a real core, to show that a harness check can fail. Every hook
/// defaults to the honest core.
pub trait Fault<R: Replica>: Default + Send + 'static {
    const ALGO: &'static str;
    /// What the core gets back of its WAL on restart.
    fn restore_records(records: Vec<R::Record>) -> Vec<R::Record> {
        records
    }
    fn read_index(&mut self, core: &mut R, id: u64) -> Result<(), ProposeError> {
        core.read_index(id)
    }
    fn has_ready(&self, core: &R) -> bool {
        core.has_ready()
    }
    fn ready(&mut self, core: &mut R) -> Ready<R::Message, R::Record> {
        core.ready()
    }
}

/// The core `R` with the fault `F` planted.
pub struct Faulty<R, F> {
    core: R,
    fault: F,
}

impl<R: Replica, F: Fault<R>> Replica for Faulty<R, F> {
    type Message = R::Message;
    type Record = R::Record;
    const ALGO: &'static str = F::ALGO;

    fn restore(cfg: ReplicaConfig, snapshot: Option<Snapshot>, records: Vec<R::Record>) -> Result<Self, ReplicaError> {
        let core = R::restore(cfg, snapshot, F::restore_records(records))?;
        Ok(Faulty { core, fault: F::default() })
    }
    fn tick(&mut self) {
        self.core.tick()
    }
    fn step(&mut self, from: NodeId, msg: R::Message) {
        self.core.step(from, msg)
    }
    fn propose(&mut self, c: Vec<Vec<u8>>) -> Result<(), ProposeError> {
        self.core.propose(c)
    }
    fn propose_membership(&mut self, change: MembershipChange) -> Result<u64, MembershipError> {
        self.core.propose_membership(change)
    }
    fn read_index(&mut self, id: u64) -> Result<(), ProposeError> {
        self.fault.read_index(&mut self.core, id)
    }
    fn has_ready(&self) -> bool {
        self.fault.has_ready(&self.core)
    }
    fn ready(&mut self) -> Ready<R::Message, R::Record> {
        self.fault.ready(&mut self.core)
    }
    fn status(&self) -> Status {
        self.core.status()
    }
    fn compact(&mut self, s: Snapshot) -> Result<(), ReplicaError> {
        self.core.compact(s)
    }
    fn durable_records(&self) -> Vec<R::Record> {
        self.core.durable_records()
    }
    fn transfer_leader(&mut self, to: NodeId) -> Result<(), ProposeError> {
        self.core.transfer_leader(to)
    }
}

pub mod membership;
pub mod raft_checks;
