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
