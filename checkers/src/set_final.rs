//! `set-final`: Jepsen's `set` checker. Ops `add` elements; the last ok `read` of the
//! history is the final read, and it alone decides: every acknowledged add must be in it
//! (else **lost**) and it may hold only elements whose add was attempted (else
//! **unexpected**). Adds of unknown outcome that it shows are **recovered**. Unlike
//! faultline's own `set` checker it neither splits by key nor looks at earlier reads, so
//! it answers exactly Jepsen's question.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::history::{Event, EventType};
use crate::registry::{CheckResult, Checker, Validity};

const EXAMPLES_MAX: usize = 10;

/// Registered as `set-final`; `faultline check --model set` uses it.
pub struct SetFinalChecker;

impl Checker for SetFinalChecker {
    fn name(&self) -> &'static str {
        "set-final"
    }

    fn check(&self, history: &[Event]) -> CheckResult {
        crate::registry::unless_nothing_checked(history, check_ops(history))
    }
}

fn check_ops(history: &[Event]) -> CheckResult {
    let client = || history.iter().filter(|e| e.client().is_some());
    let of = |kind: EventType, f: &'static str| {
        client().filter(move |e| e.kind == kind && e.f == f).map(|e| e.value.to_string()).collect::<BTreeSet<String>>()
    };
    let attempts = of(EventType::Invoke, "add");
    let adds = of(EventType::Ok, "add");
    let Some(last) = client().filter(|e| e.kind == EventType::Ok && e.f == "read").last() else {
        return CheckResult {
            checker: "set-final".into(),
            valid: Validity::Unknown,
            details: json!({"reason": "the set was never read", "attempt-count": attempts.len()}),
        };
    };
    let Value::Array(elems) = &last.value else {
        return CheckResult {
            checker: "set-final".into(),
            valid: Validity::Unknown,
            details: json!({"error": format!("event {}: the final read returned {}, not a list of elements", last.index.unwrap_or(0), last.value)}),
        };
    };
    let read: BTreeSet<String> = elems.iter().map(Value::to_string).collect();
    let lost: Vec<&String> = adds.difference(&read).collect();
    let unexpected: Vec<&String> = read.difference(&attempts).collect();
    let recovered = read.iter().filter(|e| attempts.contains(*e) && !adds.contains(*e)).count();
    let valid = if lost.is_empty() && unexpected.is_empty() { Validity::Valid } else { Validity::Invalid };
    let ex = |v: &[&String]| -> Vec<Value> {
        v.iter().take(EXAMPLES_MAX).map(|s| serde_json::from_str(s).unwrap_or(Value::Null)).collect()
    };
    CheckResult {
        checker: "set-final".into(),
        valid,
        details: json!({
            "attempt-count": attempts.len(),
            "acknowledged-count": adds.len(),
            "ok-count": read.intersection(&attempts).count(),
            "lost-count": lost.len(), "lost": ex(&lost),
            "unexpected-count": unexpected.len(), "unexpected": ex(&unexpected),
            "recovered-count": recovered,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::set::tests::op;
    use EventType::{Info, Ok};

    fn check(h: Vec<[Event; 2]>) -> CheckResult {
        let mut h: Vec<Event> = h.into_iter().flatten().collect();
        h.sort_by_key(|e| e.time);
        SetFinalChecker.check(&h)
    }

    #[test]
    fn final_read_with_every_acknowledged_add_is_valid_even_after_a_stale_read() {
        let r = check(vec![
            op(0, 0, 10, Ok, "add", "", json!(1), json!(1)),
            op(1, 0, 10, Info, "add", "", json!(2), json!(2)),
            op(2, 20, 30, Ok, "read", "", Value::Null, json!([])),
            op(2, 40, 50, Ok, "read", "", Value::Null, json!([1, 2])),
        ]);
        assert_eq!(r.valid, Validity::Valid, "{}", r.details);
        assert_eq!(r.details["recovered-count"], 1);
    }

    #[test]
    fn lost_and_unexpected_elements_in_the_final_read_are_invalid() {
        let r = check(vec![
            op(0, 0, 10, Ok, "add", "", json!(1), json!(1)),
            op(2, 40, 50, Ok, "read", "", Value::Null, json!([7])),
        ]);
        assert_eq!(r.valid, Validity::Invalid, "{}", r.details);
        assert_eq!(r.details["lost"], json!([1]));
        assert_eq!(r.details["unexpected"], json!([7]));
    }

    #[test]
    fn set_never_read_is_unknown() {
        let r = check(vec![op(0, 0, 10, Ok, "add", "", json!(1), json!(1))]);
        assert_eq!(r.valid, Validity::Unknown);
    }
}
