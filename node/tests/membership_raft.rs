//! Raft membership changes: the single-server rules of Ongaro's thesis (§4) sentence by
//! sentence, then randomized churn under the simulator's faults.

mod common;

use common::membership::{Churn, churn_on_a_healthy_network_keeps_making_progress, churn_under_faults_is_safe};
use faultline_node::raft::Raft;
use faultline_node::sim::{Sim, SimConfig};

fn run_churn(cfg: SimConfig, churn: &mut Churn) -> Result<Sim<Raft>, String> {
    let mut sim = Sim::<Raft>::new(cfg).map_err(|e| e.to_string())?;
    let mut lc = common::raft_checks::LeaderCompleteness::default();
    common::membership::run_churn(&mut sim, churn, |s| {
        common::raft_checks::log_matching(s)?;
        lc.check(s)
    })?;
    Ok(sim)
}

#[test]
fn raft_churn_under_faults_is_safe() {
    churn_under_faults_is_safe(run_churn, 12);
}

#[test]
fn raft_churn_on_a_healthy_network_keeps_making_progress() {
    churn_on_a_healthy_network_keeps_making_progress(run_churn, 3);
}
