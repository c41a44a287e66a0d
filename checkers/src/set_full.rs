//! `set-full`: Jepsen's `set-full` checker. Ops `add` one element and `read` the whole set.
//! For every element whose add was invoked, the reads that complete afterwards show it
//! present or absent; by history position (not clock), an element is
//! - **stable** when some read observed it and no read invoked later missed it;
//! - **lost** when it was known (its add acknowledged, or a read showed it) and a read
//!   invoked after that, and after the last read that showed it, missed it;
//! - **never read** otherwise.
//!
//! Stable elements missing from a read invoked after the add was known are **stale**
//! (counted, not an error: the set need not be linearizable). Valid iff nothing is lost
//! and no read shows an element twice; `unknown` when no element is stable (nothing was
//! confirmed). Elements are whole values compared as JSON: a keyed (`[k v]`) add is the
//! element `[k v]`, as in Jepsen without `independent`.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::history::{Event, EventType};
use crate::registry::{CheckResult, Checker, Validity};

const EXAMPLES_MAX: usize = 10;

/// Registered as `set-full`.
pub struct SetFullChecker;

impl Checker for SetFullChecker {
    fn name(&self) -> &'static str {
        "set-full"
    }

    fn check(&self, history: &[Event]) -> CheckResult {
        crate::registry::unless_nothing_checked(history, check_ops(history))
    }
}

/// One element's timeline, by history positions.
struct Element {
    value: Value,
    /// When it was first known to be in the set: its add's ok, or a read showing it.
    known: Option<usize>,
    /// Invocation of the latest-invoked read that showed it / that missed it.
    last_present: Option<usize>,
    last_absent: Option<usize>,
    known_ns: u64,
}

fn check_ops(history: &[Event]) -> CheckResult {
    let mut invocation: Vec<Option<usize>> = vec![None; history.len()];
    for p in faultline_history::pairing::pair(history).ops {
        if let Some(c) = p.complete {
            invocation[c] = Some(p.invoke);
        }
    }
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut elements: Vec<Element> = Vec::new();
    let mut duplicated: Vec<Value> = Vec::new();
    let mut reads = 0usize;
    for (pos, e) in history.iter().enumerate() {
        if e.client().is_none() {
            continue;
        }
        match (e.f.as_str(), e.kind) {
            ("add", EventType::Invoke) => {
                let fresh = Element { value: e.value.clone(), known: None, last_present: None, last_absent: None, known_ns: 0 };
                // A second add of the same element starts its timeline over, as in Jepsen.
                match ids.get(&e.value.to_string()) {
                    Some(&i) => elements[i] = fresh,
                    None => {
                        ids.insert(e.value.to_string(), elements.len());
                        elements.push(fresh);
                    }
                }
            }
            ("add", EventType::Ok) => {
                if let Some(&i) = ids.get(&e.value.to_string())
                    && elements[i].known.is_none()
                {
                    elements[i].known = Some(pos);
                    elements[i].known_ns = e.time;
                }
            }
            ("read", EventType::Ok) => {
                let Some(inv) = invocation[pos] else { continue };
                reads += 1;
                let seen: Vec<String> = match &e.value {
                    Value::Array(a) => a.iter().map(Value::to_string).collect(),
                    _ => Vec::new(),
                };
                let mut present = vec![false; elements.len()];
                for s in &seen {
                    if let Some(&i) = ids.get(s) {
                        if present[i] && duplicated.len() < EXAMPLES_MAX {
                            duplicated.push(elements[i].value.clone());
                        }
                        present[i] = true;
                    }
                }
                for (el, here) in elements.iter_mut().zip(present) {
                    if here {
                        if el.known.is_none() {
                            el.known = Some(pos);
                            el.known_ns = e.time;
                        }
                        if el.last_present.is_none_or(|p| p < inv) {
                            el.last_present = Some(inv);
                        }
                    } else if el.last_absent.is_none_or(|a| a < inv) {
                        el.last_absent = Some(inv);
                    }
                }
            }
            _ => {}
        }
    }
    let before = |a: Option<usize>, b: Option<usize>| a.map_or(-1, |x| x as i64) < b.map_or(-1, |x| x as i64);
    let (mut stable, mut lost, mut never_read, mut stale) = (0usize, Vec::new(), 0usize, Vec::new());
    for el in &elements {
        let is_stable = el.last_present.is_some() && before(el.last_absent, el.last_present);
        let is_lost = el.known.is_some()
            && el.last_absent.is_some()
            && before(el.last_present, el.last_absent)
            && before(el.known, el.last_absent);
        if is_stable {
            stable += 1;
            // Missed by some read invoked after it was known: it took a while to appear.
            if let (Some(k), Some(a)) = (el.known, el.last_absent)
                && a > k
            {
                stale.push(el.value.clone());
            }
        } else if is_lost {
            lost.push(el.value.clone());
        } else {
            never_read += 1;
        }
    }
    let valid = if !lost.is_empty() || !duplicated.is_empty() {
        Validity::Invalid
    } else if stable == 0 {
        Validity::Unknown
    } else {
        Validity::Valid
    };
    let ex = |v: &[Value]| v.iter().take(EXAMPLES_MAX).cloned().collect::<Vec<_>>();
    let mut details = json!({
        "attempt-count": elements.len(),
        "read-count": reads,
        "stable-count": stable,
        "lost-count": lost.len(), "lost": ex(&lost),
        "never-read-count": never_read,
        "stale-count": stale.len(), "stale": ex(&stale),
        "duplicated": duplicated,
    });
    if valid == Validity::Unknown {
        details["reason"] = json!("no element was ever stable: nothing was confirmed");
    }
    CheckResult { checker: "set-full".into(), valid, details }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::set::tests::op;
    use EventType::{Info, Ok};

    fn check(h: Vec<[Event; 2]>) -> CheckResult {
        let mut h: Vec<Event> = h.into_iter().flatten().collect();
        h.sort_by_key(|e| e.time);
        SetFullChecker.check(&h)
    }

    #[test]
    fn elements_read_after_their_adds_are_stable_and_valid() {
        let r = check(vec![
            op(0, 0, 10, Ok, "add", "", json!(1), json!(1)),
            op(1, 5, 30, Info, "add", "", json!(2), json!(2)),
            op(2, 12, 20, Ok, "read", "", Value::Null, json!([1])),
            op(2, 40, 50, Ok, "read", "", Value::Null, json!([1, 2])),
        ]);
        assert_eq!(r.valid, Validity::Valid, "{}", r.details);
        assert_eq!(r.details["stable-count"], 2);
    }

    #[test]
    fn acknowledged_element_missing_from_every_later_read_is_lost() {
        let r = check(vec![
            op(0, 0, 10, Ok, "add", "", json!(1), json!(1)),
            op(0, 11, 12, Ok, "add", "", json!(2), json!(2)),
            op(2, 20, 30, Ok, "read", "", Value::Null, json!([1, 2])),
            op(2, 40, 50, Ok, "read", "", Value::Null, json!([2])),
        ]);
        assert_eq!(r.valid, Validity::Invalid, "{}", r.details);
        assert_eq!(r.details["lost"], json!([1]));
    }

    #[test]
    fn keyed_adds_are_whole_elements_not_split_by_key() {
        // Jepsen's checker without `independent`: the element is `[0 1]`, not `1`.
        let r = check(vec![
            op(0, 0, 10, Ok, "add", "", json!([0, 1]), json!([0, 1])),
            op(2, 20, 30, Ok, "read", "", json!([0, null]), json!([1])),
        ]);
        assert_eq!(r.valid, Validity::Invalid, "{}", r.details);
    }

    #[test]
    fn nothing_confirmed_is_unknown() {
        let r = check(vec![op(0, 0, 10, Info, "add", "", json!(1), json!(1))]);
        assert_eq!(r.valid, Validity::Unknown, "{}", r.details);
    }
}
