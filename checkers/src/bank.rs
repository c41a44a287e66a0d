//! The `bank` checker: every ok read of the bank key must show the total that was
//! deposited at setup, and no negative balance.
//!
//! The total is taken from the history itself (the first acknowledged write of the key),
//! so a stored run re-checks without knowing the workload's options.

use serde_json::{Value, json};

use crate::history::{Event, EventType};
use crate::registry::{CheckResult, Checker, Validity};
use crate::set::pair;

const EXAMPLES_MAX: usize = 10;

/// Balances are stored as the JSON text of a list (the node has no writable list values);
/// a plain JSON list is accepted too. The bank workload decodes its reads with this same
/// function (it lives with the history so the workload need not depend on the checkers), so
/// writer and checker cannot drift apart.
pub use faultline_history::values::bank_balances as balances;

/// Registered as `bank`.
pub struct BankChecker;

impl Checker for BankChecker {
    fn name(&self) -> &'static str {
        "bank"
    }

    fn check(&self, history: &[Event]) -> CheckResult {
        crate::registry::unless_nothing_checked(history, self.check_ops(history))
    }
}

impl BankChecker {
    fn check_ops(&self, history: &[Event]) -> CheckResult {
        let ops = pair(history);
        let total = ops
            .iter()
            .filter(|o| o.invoke.f == "write" && o.kind() == Some(EventType::Ok))
            .find_map(|o| balances(&o.invoke.value))
            .map(|b| b.iter().sum::<i64>());
        let Some(total) = total else {
            return CheckResult {
                checker: "bank".into(),
                valid: Validity::Unknown,
                details: json!({"error": "no acknowledged initial write of the balances"}),
            };
        };
        let (mut reads, mut transfers_ok) = (0usize, 0usize);
        let mut bad: Vec<Value> = Vec::new();
        let mut bad_count = 0usize;
        for o in &ops {
            if o.invoke.f == "transfer" && o.kind() == Some(EventType::Ok) {
                transfers_ok += 1;
            }
            if o.invoke.f != "read" || o.kind() != Some(EventType::Ok) {
                continue;
            }
            let c = o.complete.expect("ok has a completion");
            reads += 1;
            let problem = match balances(&c.value) {
                None => Some("not a list of balances"),
                Some(b) if b.iter().sum::<i64>() != total => Some("wrong-total"),
                Some(b) if b.iter().any(|x| *x < 0) => Some("negative-balance"),
                Some(_) => None,
            };
            if let Some(p) = problem {
                bad_count += 1;
                if bad.len() < EXAMPLES_MAX {
                    bad.push(
                        json!({"type": p, "time": c.time, "process": c.process, "value": c.value}),
                    );
                }
            }
        }
        let valid = if bad_count > 0 {
            Validity::Invalid
        } else if reads == 0 {
            Validity::Unknown
        } else {
            Validity::Valid
        };
        CheckResult {
            checker: "bank".into(),
            valid,
            details: json!({
                "total": total, "read-count": reads, "transfer-ok-count": transfers_ok,
                "bad-read-count": bad_count, "bad-reads": bad,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::set::tests::op;
    use EventType::Ok;

    fn check(h: Vec<[Event; 2]>) -> CheckResult {
        let mut h: Vec<Event> = h.into_iter().flatten().collect();
        h.sort_by_key(|e| e.time);
        BankChecker.check(&h)
    }

    #[test]
    fn conserved_total_is_valid() {
        let r = check(vec![
            op(0, 0, 1, Ok, "write", "bank", json!([5, 5]), json!([5, 5])),
            op(
                0,
                2,
                3,
                Ok,
                "transfer",
                "bank",
                json!({"from":0,"to":1,"amount":2}),
                json!(null),
            ),
            op(1, 4, 5, Ok, "read", "bank", Value::Null, json!([3, 7])),
        ]);
        assert_eq!(r.valid, Validity::Valid, "{}", r.details);
        assert_eq!(r.details["total"], 10);
    }

    #[test]
    fn wrong_total_and_negative_balances_are_invalid() {
        let r = check(vec![
            op(0, 0, 1, Ok, "write", "bank", json!([5, 5]), json!([5, 5])),
            op(1, 4, 5, Ok, "read", "bank", Value::Null, json!([3, 5])),
            op(1, 6, 7, Ok, "read", "bank", Value::Null, json!([-1, 11])),
        ]);
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(r.details["bad-read-count"], 2);
        assert_eq!(r.details["bad-reads"][0]["type"], "wrong-total");
        assert_eq!(r.details["bad-reads"][1]["type"], "negative-balance");
    }

    #[test]
    fn no_setup_write_is_unknown() {
        let r = check(vec![op(
            1,
            4,
            5,
            Ok,
            "read",
            "bank",
            Value::Null,
            json!([3, 5]),
        )]);
        assert_eq!(r.valid, Validity::Unknown);
    }
}
