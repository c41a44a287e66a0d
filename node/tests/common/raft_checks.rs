//! Raft's safety properties (Figure 3 of the paper), checked on a simulated cluster after
//! every tick.

use std::collections::BTreeMap;

use faultline_node::raft::Raft;
use faultline_node::replica::{Replica, Role};
use faultline_node::sim::Sim;

/// "Log Matching: if two logs contain an entry with the same index and term, then the logs
/// are identical in all entries up through the given index." Checked inductively: equal
/// (index, term) implies equal data and equal terms at index - 1.
pub fn log_matching(sim: &Sim<Raft>) -> Result<(), String> {
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
#[derive(Default)]
pub struct LeaderCompleteness {
    /// term -> highest commit index a leader of that term reached.
    commit_by_term: BTreeMap<u64, u64>,
}

impl LeaderCompleteness {
    pub fn check(&mut self, sim: &Sim<Raft>) -> Result<(), String> {
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

