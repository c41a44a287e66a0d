//! `counter`: Jepsen's counter checker. The counter starts at 0 and only grows; `add` adds
//! its (non-negative) value, `read` returns the present value. Each ok read must lie
//! between the sum of the adds acknowledged before it was invoked and the sum of the adds
//! attempted (not known to have failed) before it completed. With no read at all the
//! answer is valid, as Jepsen's: nothing observed contradicts the adds.

use serde_json::{Value, json};

use crate::history::{Event, EventType};
use crate::registry::{CheckResult, Checker, Validity};

const EXAMPLES_MAX: usize = 10;

/// Registered as `counter`.
pub struct CounterChecker;

impl Checker for CounterChecker {
    fn name(&self) -> &'static str {
        "counter"
    }

    fn check(&self, history: &[Event]) -> CheckResult {
        crate::registry::unless_nothing_checked(history, check_ops(history))
    }
}

/// A read's bounds and value: `[lower, read, upper]` as Jepsen prints them.
type Bounds = [i64; 3];

fn check_ops(history: &[Event]) -> CheckResult {
    let result = |valid, details| CheckResult { checker: "counter".into(), valid, details };
    let mut completion: Vec<Option<usize>> = vec![None; history.len()];
    for p in faultline_history::pairing::pair(history).ops {
        completion[p.invoke] = p.complete;
    }
    let (mut lower, mut upper) = (0i64, 0i64);
    // Per process: the lower bound when its read was invoked, and what it will return.
    let mut pending: std::collections::HashMap<u64, (i64, i64)> = Default::default();
    let mut reads: Vec<Bounds> = Vec::new();
    for (pos, e) in history.iter().enumerate() {
        let Some(p) = e.client() else { continue };
        let done = completion[pos].map(|c| &history[c]);
        let amount = |v: &Value| -> Result<i64, String> {
            v.as_i64().filter(|n| *n >= 0).ok_or_else(|| {
                format!("event {}: an add's value must be a non-negative integer, got {v}", e.index.unwrap_or(pos as u64))
            })
        };
        match (e.kind, e.f.as_str()) {
            (EventType::Invoke, "read") => {
                if let Some(c) = done.filter(|c| c.kind == EventType::Ok) {
                    let Some(v) = c.value.as_i64() else {
                        let at = c.index.unwrap_or(0);
                        return result(Validity::Unknown, json!({"error": format!("event {at}: a read must return an integer, got {}", c.value)}));
                    };
                    pending.insert(p, (lower, v));
                }
            }
            (EventType::Ok, "read") => {
                if let Some((lo, v)) = pending.remove(&p) {
                    reads.push([lo, v, upper]);
                }
            }
            (EventType::Invoke, "add") => {
                let n = match amount(&e.value) {
                    Ok(n) => n,
                    Err(error) => return result(Validity::Unknown, json!({ "error": error })),
                };
                if done.is_none_or(|c| c.kind != EventType::Fail) {
                    upper = upper.saturating_add(n);
                }
            }
            (EventType::Ok, "add") => {
                let n = match amount(&e.value) {
                    Ok(n) => n,
                    Err(error) => return result(Validity::Unknown, json!({ "error": error })),
                };
                lower = lower.saturating_add(n);
            }
            _ => {}
        }
    }
    let errors: Vec<&Bounds> = reads.iter().filter(|[lo, v, up]| !(lo <= v && v <= up)).collect();
    // As in Jepsen, a counter never read is valid: no observation contradicts the adds
    // (elle-cli's `counter.edn`, adds only, is expected `true`).
    let valid = if errors.is_empty() { Validity::Valid } else { Validity::Invalid };
    let mut details = json!({
        "read-count": reads.len(),
        "error-count": errors.len(),
        "errors": errors.iter().take(EXAMPLES_MAX).collect::<Vec<_>>(),
        "final-bounds": [lower, upper],
    });
    if reads.is_empty() {
        details["note"] = json!("no read completed: nothing bounds the counter");
    }
    result(valid, details)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::set::tests::op;
    use EventType::{Fail, Info, Ok};

    fn check(h: Vec<[Event; 2]>) -> CheckResult {
        let mut h: Vec<Event> = h.into_iter().flatten().collect();
        h.sort_by_key(|e| e.time);
        for e in &mut h {
            e.key = None;
        }
        CounterChecker.check(&h)
    }

    #[test]
    fn reads_within_acknowledged_and_attempted_adds_are_valid() {
        let r = check(vec![
            op(0, 0, 10, Ok, "add", "", json!(1), json!(1)),
            op(1, 5, 30, Info, "add", "", json!(2), json!(2)),
            op(2, 12, 20, Ok, "read", "", Value::Null, json!(3)),
            op(0, 21, 22, Ok, "read", "", Value::Null, json!(1)),
        ]);
        assert_eq!(r.valid, Validity::Valid, "{}", r.details);
    }

    #[test]
    fn read_above_attempted_adds_or_below_acknowledged_is_invalid() {
        let r = check(vec![
            op(0, 0, 10, Ok, "add", "", json!(1), json!(1)),
            op(1, 0, 5, Fail, "add", "", json!(5), json!(5)),
            op(2, 12, 20, Ok, "read", "", Value::Null, json!(6)),
            op(2, 21, 22, Ok, "read", "", Value::Null, json!(0)),
        ]);
        assert_eq!(r.valid, Validity::Invalid, "{}", r.details);
        assert_eq!(r.details["errors"], json!([[1, 6, 1], [1, 0, 1]]));
    }

    #[test]
    fn counter_never_read_is_valid_as_in_jepsen() {
        let r = check(vec![op(0, 0, 10, Ok, "add", "", json!(1), json!(1))]);
        assert_eq!(r.valid, Validity::Valid);
        assert!(r.details["note"].is_string(), "{}", r.details);
    }
}
