//! Membership churn under the simulator, the same for every core: grow, shrink and replace
//! members (remove one, add a fresh empty one, promote it) one change at a time, while the
//! simulator drops, delays, duplicates, partitions and crashes — plus crashes aimed at the
//! moments right after a change was proposed.

use std::collections::VecDeque;

use faultline_node::replica::{
    EntryData, Membership, MembershipChange, MembershipError, NodeId, Replica, Role, SplitMix64,
};
use faultline_node::sim::{Sim, SimConfig, Violation};

/// One step of a plan; the ids are settled when the step is proposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Start a fresh, empty node and add it as a learner.
    AddFresh,
    Promote(NodeId),
    /// Remove a random voter (possibly the leader).
    RemoveVoter,
    Remove(NodeId),
}

#[derive(Debug, Clone)]
struct Pending {
    index: u64,
    expected: Membership,
    change: MembershipChange,
    step: Step,
    leader_removed: bool,
}

/// Drives membership changes through whichever node leads.
pub struct Churn {
    rng: SplitMix64,
    plan: VecDeque<Step>,
    pending: Option<Pending>,
    /// A started node not (yet) in the configuration: reused by the next try to add one.
    fresh: Option<NodeId>,
    next_try: u64,
    /// Nodes whose removal is chosen, to be decommissioned at the given tick.
    decommission: Vec<(u64, NodeId)>,
    /// `(tick, change)` for every change known to be chosen.
    pub completed: Vec<(u64, MembershipChange)>,
    /// Crash the leader (or the node concerned) right after a proposal with this chance.
    pub crash_after_propose: f64,
    /// Wait for this many more ok client ops after each change before starting the next.
    pub ops_between_changes: u64,
    ok_at_last_change: u64,
    pub max_voters: usize,
    pub min_voters: usize,
    /// Ticks to wait after a change before the next, uniform in `0..=pause_max`.
    pub pause_max: u64,
    /// Completed removals of the node that was leading when it proposed them.
    pub leaders_removed: u64,
    /// The first tick the driver saw after the faulty phase.
    quiet_since: Option<u64>,
}

impl Churn {
    pub fn new(seed: u64) -> Self {
        Churn {
            rng: SplitMix64::new(seed ^ 0x6d65_6d62),
            plan: VecDeque::new(),
            pending: None,
            fresh: None,
            next_try: 0,
            decommission: Vec::new(),
            completed: Vec::new(),
            crash_after_propose: 0.05,
            ops_between_changes: 0,
            ok_at_last_change: 0,
            max_voters: 5,
            min_voters: 3,
            pause_max: 40,
            leaders_removed: 0,
            quiet_since: None,
        }
    }

    fn leader<R: Replica>(sim: &Sim<R>) -> Option<(NodeId, faultline_node::replica::Status)> {
        // The highest-term leader: a deposed one may not know yet.
        sim.node_ids()
            .into_iter()
            .filter_map(|id| sim.replica((id - 1) as usize).map(|r| (id, r.status())))
            .filter(|(_, st)| st.role == Role::Leader)
            .max_by_key(|(_, st)| st.term)
    }

    fn plan_next(&mut self, voters: usize) {
        let grow = [Step::AddFresh, Step::Promote(0)];
        let shrink = [Step::RemoveVoter];
        let replace = [Step::RemoveVoter, Step::AddFresh, Step::Promote(0)];
        let pick: &[Step] = if voters < self.min_voters {
            &grow
        } else if voters >= self.max_voters {
            &shrink
        } else {
            match self.rng.next_u64() % 4 {
                0 => &grow,
                1 => &shrink,
                _ => &replace,
            }
        };
        self.plan.extend(pick.iter().copied());
    }

    /// Called after every tick.
    pub fn drive<R: Replica>(&mut self, sim: &mut Sim<R>) -> Result<(), Violation> {
        let now = sim.now();
        // Decommission removed nodes: at once after the faulty phase, so that the end-of-run
        // convergence check sees only members.
        let due: Vec<NodeId> = self
            .decommission
            .iter()
            .filter(|(at, _)| *at <= now || !sim.in_fault_phase())
            .map(|(_, id)| *id)
            .collect();
        self.decommission.retain(|(at, _)| *at > now && sim.in_fault_phase());
        for id in due {
            sim.remove_node(id);
        }

        if let Some(p) = self.pending.clone() {
            match sim.chosen().get(&p.index) {
                None if !sim.in_fault_phase() && now >= self.quiet_since.get_or_insert(now).saturating_add(200) => {
                    // A stale leader's proposal past the end of the live log: with no more
                    // client load nothing will ever be chosen there. If the live leader does
                    // not know the node by now, the addition is dead.
                    self.pending = None;
                    if let (MembershipChange::AddLearner(id), Some((_, st))) = (p.change, Self::leader(sim))
                        && !st.learners.contains(&id)
                        && !st.voters.contains(&id)
                    {
                        sim.remove_node(id);
                        self.fresh = None;
                    }
                    return Ok(());
                }
                None => return Ok(()),
                Some(EntryData::Config(m)) if *m == p.expected => {
                    self.pending = None;
                    self.completed.push((now, p.change));
                    self.ok_at_last_change = sim.stats.ok;
                    self.next_try = now + self.rng.range_inclusive(0, self.pause_max);
                    if p.leader_removed {
                        self.leaders_removed += 1;
                    }
                    match p.change {
                        MembershipChange::AddLearner(id) => {
                            self.fresh = None;
                            if let Some(Step::Promote(0)) = self.plan.front() {
                                self.plan[0] = Step::Promote(id);
                            }
                        }
                        MembershipChange::Remove(id) => {
                            let at = now + self.rng.range_inclusive(0, 60);
                            self.decommission.push((at, id));
                        }
                        MembershipChange::Promote(_) => {}
                    }
                }
                Some(_) => {
                    // Another leader's entry won that index: ours is gone for good. Retry.
                    self.pending = None;
                    self.plan.push_front(p.step);
                }
            }
        }
        if !sim.in_fault_phase() {
            if self.pending.is_none()
                && let Some(id) = self.fresh.take()
            {
                sim.remove_node(id);
            }
            return Ok(());
        }
        if now < self.next_try {
            return Ok(());
        }
        if sim.stats.ok < self.ok_at_last_change + self.ops_between_changes {
            return Ok(());
        }
        let Some((leader, st)) = Self::leader(sim) else { return Ok(()) };
        if self.plan.is_empty() {
            self.plan_next(st.voters.len());
        }
        let step = *self.plan.front().expect("planned");
        let current =
            Membership { voters: st.voters.iter().copied().collect(), learners: st.learners.iter().copied().collect() };
        let change = match step {
            Step::AddFresh => {
                let id = match self.fresh {
                    Some(id) => id,
                    None => sim.add_node(st.voters.clone()).map_err(|e| Violation(e.to_string()))?,
                };
                self.fresh = Some(id);
                MembershipChange::AddLearner(id)
            }
            Step::Promote(0) => {
                // The learner's addition was lost track of (it never got chosen): add anew.
                self.plan.pop_front();
                return Ok(());
            }
            Step::Promote(id) => MembershipChange::Promote(id),
            Step::RemoveVoter => {
                let v = &st.voters;
                MembershipChange::Remove(v[(self.rng.next_u64() % v.len() as u64) as usize])
            }
            Step::Remove(id) => MembershipChange::Remove(id),
        };
        let Some(r) = sim.replica_mut(leader) else { return Ok(()) };
        match r.propose_membership(change) {
            Ok(index) => {
                let expected = current.apply(change).map_err(|e| Violation(format!("{change:?} accepted but {e}")))?;
                self.plan.pop_front();
                let step = match (step, change) {
                    (Step::AddFresh, _) => Step::AddFresh,
                    (_, MembershipChange::Remove(id)) => Step::Remove(id),
                    _ => step,
                };
                let leader_removed = change == MembershipChange::Remove(leader);
                self.pending = Some(Pending { index, expected, change, step, leader_removed });
                if self.rng.chance(self.crash_after_propose) {
                    let victim = match (self.rng.next_u64() % 2, change) {
                        (0, MembershipChange::AddLearner(id) | MembershipChange::Promote(id)) => id,
                        _ => leader,
                    };
                    let down = self.rng.range_inclusive(1, 80);
                    sim.crash_node(victim, down);
                }
            }
            Err(MembershipError::LastVoter) => {
                self.plan.pop_front();
            }
            // Busy, not caught up, a change in progress, or a stale leader that does not know
            // the latest configuration yet: try again shortly.
            Err(_) => self.next_try = now + 1,
        }
        Ok(())
    }
}

/// A core's simulator run with its own invariant checks and a membership driver.
pub type RunChurn<R> = fn(SimConfig, &mut Churn) -> Result<Sim<R>, String>;

/// Runs `sim` with `churn` and `check` after every tick.
pub fn run_churn<R: Replica>(
    sim: &mut Sim<R>,
    churn: &mut Churn,
    mut check: impl FnMut(&Sim<R>) -> Result<(), String>,
) -> Result<(), String> {
    sim.run_driven(|s| {
        churn.drive(s)?;
        Ok(check(s)?)
    })
    .map_err(|e| {
        let nodes: Vec<String> = sim
            .node_ids()
            .into_iter()
            .map(|id| match sim.replica((id - 1) as usize) {
                Some(r) => format!("{:?}", r.status()),
                None => format!("{id}: down"),
            })
            .collect();
        format!("{e}\nchanges: {:?}\nnodes:\n{}", churn.completed, nodes.join("\n"))
    })
}

/// Randomized churn under every fault; every run must also keep a linearizable history and
/// converge after healing (the simulator's end-of-run checks).
pub fn churn_under_faults_is_safe<R: Replica>(run: RunChurn<R>, seeds: u64) {
    let seeds = super::seeds(seeds);
    let (mut changes, mut removed_leaders, mut ok, mut crashes) = (0usize, 0u64, 0u64, 0u64);
    for seed in 0..seeds {
        let mut cfg = SimConfig::new(5000 + seed);
        cfg.ticks = 2500;
        cfg.partition_prob = 0.003;
        cfg.crash_prob = 0.003;
        let mut churn = Churn::new(seed);
        let sim = run(cfg, &mut churn).unwrap_or_else(|e| panic!("{e}"));
        super::check_linearizable(sim.history()).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        changes += churn.completed.len();
        removed_leaders += churn.leaders_removed;
        ok += sim.stats.ok;
        crashes += sim.stats.crashes;
    }
    eprintln!("membership changes: {changes}, leaders removed: {removed_leaders}, ok ops: {ok}, crashes: {crashes}");
    assert!(changes as u64 >= seeds * 10, "too few membership changes completed: {changes}");
    assert!(removed_leaders > 0, "no leader ever removed itself");
    assert!(ok > seeds * 50, "too few ok ops: {ok}");
}

/// Healthy network: each change must complete, and client writes must keep committing
/// after it, within `max_gap` ticks — the cluster never gets stuck on a configuration.
pub fn churn_on_a_healthy_network_keeps_making_progress<R: Replica>(run: RunChurn<R>, seeds: u64, max_gap: u64) {
    for seed in 0..super::seeds(seeds) {
        let mut cfg = SimConfig::new(7000 + seed);
        cfg.ticks = 3000;
        cfg.quiesce_ticks = 300;
        cfg.drop_prob = 0.0;
        cfg.dup_prob = 0.0;
        cfg.partition_prob = 0.0;
        cfg.crash_prob = 0.0;
        let mut churn = Churn::new(seed);
        churn.crash_after_propose = 0.0;
        churn.ops_between_changes = 5;
        let sim = run(cfg, &mut churn).unwrap_or_else(|e| panic!("{e}"));
        super::check_linearizable(sim.history()).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        eprintln!("seed {seed}: {} changes, {} ok ops", churn.completed.len(), sim.stats.ok);
        let ticks: Vec<u64> = churn.completed.iter().map(|(t, _)| *t).collect();
        assert!(ticks.len() >= 15, "seed {seed}: only {} changes completed: {:?}", ticks.len(), churn.completed);
        let gaps = ticks.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
        assert!(gaps < max_gap, "seed {seed}: {gaps} ticks between two changes: {:?}", churn.completed);
        let removes = churn.completed.iter().filter(|(_, c)| matches!(c, MembershipChange::Remove(_))).count();
        let promotes = churn.completed.iter().filter(|(_, c)| matches!(c, MembershipChange::Promote(_))).count();
        assert!(removes >= 3 && promotes >= 3, "seed {seed}: {:?}", churn.completed);
    }
}
