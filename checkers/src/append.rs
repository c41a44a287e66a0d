//! The `append` checker: list-append keys, read as whole lists.
//!
//! Short of a full Elle-style cycle search, it checks what single-key reads can prove:
//! all reads of a key are prefixes of one another (the store applied appends in one
//! order), and the element rules of the `set` checker (nothing lost, stale, unexpected or
//! duplicated) with a list for a set.

use serde_json::{Value, json};

use crate::history::Event;
use crate::registry::{CheckResult, Checker, Validity};
use crate::set::{ElementReport, analyze_key, group, pair};

const EXAMPLES_MAX: usize = 10;

/// Registered as `append`.
pub struct AppendChecker;

impl Checker for AppendChecker {
    fn name(&self) -> &'static str {
        "append"
    }

    fn check(&self, history: &[Event]) -> CheckResult {
        crate::registry::unless_nothing_checked(history, self.check_ops(history))
    }
}

impl AppendChecker {
    fn check_ops(&self, history: &[Event]) -> CheckResult {
        let ops = pair(history);
        let mut report = ElementReport::default();
        let mut incompatible: Vec<Value> = Vec::new();
        let mut incompatible_count = 0usize;
        for (key, (adds, mut reads)) in group(&ops, &["append"]) {
            // Sorted by length, each read must extend the previous one.
            let mut by_len: Vec<&Vec<Value>> = reads.iter().map(|r| &r.elems).collect();
            by_len.sort_by_key(|r| r.len());
            for w in by_len.windows(2) {
                if !w[1].starts_with(w[0]) {
                    incompatible_count += 1;
                    if incompatible.len() < EXAMPLES_MAX {
                        incompatible.push(json!({"key": key, "shorter": w[0], "longer": w[1]}));
                    }
                }
            }
            analyze_key(&key, &adds, &mut reads, &mut report);
        }
        let mut valid = report.validity();
        if incompatible_count > 0 {
            valid = Validity::Invalid;
        }
        let mut details = report.details();
        details["incompatible-order-count"] = json!(incompatible_count);
        details["incompatible-order"] = json!(incompatible);
        CheckResult {
            checker: "append".into(),
            valid,
            details,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::EventType::{Info, Ok};
    use crate::set::tests::op;

    fn check(h: Vec<[Event; 2]>) -> CheckResult {
        let mut h: Vec<Event> = h.into_iter().flatten().collect();
        h.sort_by_key(|e| e.time);
        AppendChecker.check(&h)
    }

    #[test]
    fn growing_prefixes_are_valid() {
        let r = check(vec![
            op(0, 0, 10, Ok, "append", "a", json!(1), json!(1)),
            op(1, 11, 12, Ok, "read", "a", Value::Null, json!([1])),
            op(0, 13, 20, Ok, "append", "a", json!(2), json!(2)),
            op(1, 21, 22, Ok, "read", "a", Value::Null, json!([1, 2])),
        ]);
        assert_eq!(r.valid, Validity::Valid, "{}", r.details);
    }

    #[test]
    fn reads_disagreeing_on_order_are_invalid() {
        let r = check(vec![
            op(0, 0, 10, Info, "append", "a", json!(1), json!(1)),
            op(2, 0, 10, Info, "append", "a", json!(2), json!(2)),
            op(1, 11, 12, Ok, "read", "a", Value::Null, json!([2, 1])),
            op(3, 11, 12, Ok, "read", "a", Value::Null, json!([1, 2])),
        ]);
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(r.details["incompatible-order-count"], 1);
    }

    #[test]
    fn acknowledged_append_missing_from_later_reads_is_lost() {
        let r = check(vec![
            op(0, 0, 10, Ok, "append", "a", json!(1), json!(1)),
            op(2, 0, 10, Ok, "append", "a", json!(2), json!(2)),
            op(1, 11, 12, Ok, "read", "a", Value::Null, json!([1])),
        ]);
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(r.details["lost-count"], 1);
    }
}
