//! How some workloads store their values in a history, read back the same way by the
//! workload that writes them and the checker that judges them.

use serde_json::Value;

/// A bank's balances from their stored form: a JSON list, or the JSON text of one (the form
/// a string-valued store keeps). `None` when the value is not a list of integers.
pub fn bank_balances(v: &Value) -> Option<Vec<i64>> {
    let parsed;
    let list = match v {
        Value::String(s) => {
            parsed = serde_json::from_str::<Value>(s).ok()?;
            &parsed
        }
        other => other,
    };
    list.as_array()?.iter().map(Value::as_i64).collect()
}
