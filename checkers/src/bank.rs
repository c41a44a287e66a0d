//! The `bank` checker: every ok read must show the same total over the same accounts, and
//! no negative balance (Jepsen's bank checker with `:negative-balances?` false).
//!
//! The total is taken from the history itself so a stored run re-checks without knowing
//! the workload's options: faultline's bank workload writes the initial balances (a list)
//! first, and that write sets the total; a Jepsen history has no such write, and, as in
//! Jepsen, the first ok read sets the total and (for balances keyed by account) the
//! accounts. A read is then wrong when it shows an account the reference did not
//! (`unexpected-key`), a balance of nil (`nil-balance`), another total (`wrong-total`) or
//! a balance below zero (`negative-balance`).

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

/// One read's balances: by position (faultline's list) or by account (Jepsen's map), each
/// `None` when nil.
struct Accounts {
    named: Option<Vec<String>>,
    balances: Vec<Option<i64>>,
}

/// Lists as faultline stores them (see [`balances`]), or Jepsen's `{account balance}` maps.
fn accounts(v: &Value) -> Option<Accounts> {
    if let Some(b) = balances(v) {
        return Some(Accounts { named: None, balances: b.into_iter().map(Some).collect() });
    }
    let m = v.as_object()?;
    let mut named = Vec::with_capacity(m.len());
    let mut balances = Vec::with_capacity(m.len());
    for (k, b) in m {
        named.push(k.clone());
        balances.push(match b {
            Value::Null => None,
            b => Some(b.as_i64()?),
        });
    }
    Some(Accounts { named: Some(named), balances })
}

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
        let ok = |f: &'static str| ops.iter().filter(move |o| o.invoke.f == f && o.kind() == Some(EventType::Ok));
        let reference = ok("write")
            .find_map(|o| balances(&o.invoke.value))
            .map(|b| (b.iter().sum::<i64>(), None))
            .or_else(|| {
                ok("read").find_map(|o| accounts(&o.complete?.value)).map(|a| {
                    (a.balances.iter().flatten().sum::<i64>(), a.named.map(|n| n.into_iter().collect::<std::collections::BTreeSet<_>>()))
                })
            });
        let Some((total, known_accounts)) = reference else {
            return CheckResult {
                checker: "bank".into(),
                valid: Validity::Unknown,
                details: json!({"error": "neither an acknowledged initial write of the balances nor an ok read of them"}),
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
            let problem = match accounts(&c.value) {
                None => Some("not a list or map of balances"),
                Some(a) if a.named.as_ref().zip(known_accounts.as_ref()).is_some_and(|(n, k)| n.iter().any(|x| !k.contains(x))) => {
                    Some("unexpected-key")
                }
                Some(a) if a.balances.iter().any(Option::is_none) => Some("nil-balance"),
                Some(a) if a.balances.iter().flatten().sum::<i64>() != total => Some("wrong-total"),
                Some(a) if a.balances.iter().flatten().any(|x| *x < 0) => Some("negative-balance"),
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
    fn no_setup_write_and_no_read_is_unknown() {
        let r = check(vec![op(0, 0, 1, Ok, "transfer", "bank", json!({"from":0,"to":1,"amount":2}), json!(null))]);
        assert_eq!(r.valid, Validity::Unknown);
    }

    #[test]
    fn jepsen_reads_of_account_maps_take_the_total_from_the_first_read() {
        let ok = check(vec![
            op(0, 0, 1, Ok, "read", "", Value::Null, json!({"0": 10, "1": 10})),
            op(0, 2, 3, Ok, "read", "", Value::Null, json!({"0": 15, "1": 5})),
        ]);
        assert_eq!(ok.valid, Validity::Valid, "{}", ok.details);
        assert_eq!(ok.details["total"], 20);
        // Conserved total, but a negative balance: Jepsen's default forbids it.
        let neg = check(vec![
            op(0, 0, 1, Ok, "read", "", Value::Null, json!({"0": 10, "1": 10})),
            op(0, 2, 3, Ok, "read", "", Value::Null, json!({"0": 21, "1": -1})),
        ]);
        assert_eq!(neg.valid, Validity::Invalid);
        assert_eq!(neg.details["bad-reads"][0]["type"], "negative-balance");
        let odd = check(vec![
            op(0, 0, 1, Ok, "read", "", Value::Null, json!({"0": 10, "1": 10})),
            op(0, 2, 3, Ok, "read", "", Value::Null, json!({"0": 10, "2": 10})),
            op(0, 4, 5, Ok, "read", "", Value::Null, json!({"0": 20, "1": null})),
        ]);
        assert_eq!(odd.details["bad-reads"][0]["type"], "unexpected-key");
        assert_eq!(odd.details["bad-reads"][1]["type"], "nil-balance");
    }
}
