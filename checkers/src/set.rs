//! The `set` checker: unique elements added to set keys, read back as lists.
//!
//! An element becomes *known* when its add is acknowledged or a read first shows it.
//! Every read that begins after an element is known must contain it:
//! - **lost**: the latest read of the key (normally a final read) lacks it;
//! - **stale**: some read lacked it, but a later one has it again;
//! - **unexpected**: a read shows an element nobody added (or whose add failed);
//! - **duplicated**: a read shows an element more than once.
//!
//! Adds whose outcome is unknown (`info`) may or may not appear; those that do are
//! counted as recovered. The element helpers are shared with the `append` checker.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{Value, json};

use crate::history::{Event, EventType};
use crate::registry::{CheckResult, Checker, Validity};

/// Examples kept per anomaly kind in the details.
const EXAMPLES_MAX: usize = 10;

/// A client op with invocation and completion paired.
#[derive(Debug, Clone)]
pub(crate) struct Paired<'a> {
    pub invoke: &'a Event,
    /// `None` while still open at the end of the history.
    pub complete: Option<&'a Event>,
}

impl Paired<'_> {
    pub fn kind(&self) -> Option<EventType> {
        self.complete.map(|c| c.kind)
    }
    pub fn invoke_ns(&self) -> u64 {
        self.invoke.time
    }
    pub fn complete_ns(&self) -> u64 {
        self.complete.map_or(u64::MAX, |c| c.time)
    }
}

/// Pairs every client invocation with its process's next completion (leniently: see
/// [`faultline_history::pairing`]).
pub(crate) fn pair(history: &[Event]) -> Vec<Paired<'_>> {
    faultline_history::pairing::pair(history)
        .ops
        .into_iter()
        .map(|p| Paired {
            invoke: &history[p.invoke],
            complete: p.complete.map(|c| &history[c]),
        })
        .collect()
}

/// One ok read of a key: when it ran and what it returned.
pub(crate) struct Read {
    pub invoke_ns: u64,
    pub complete_ns: u64,
    pub elems: Vec<Value>,
}

/// One add (or append) attempt.
pub(crate) struct Add {
    pub elem: Value,
    pub kind: Option<EventType>,
    pub complete_ns: u64,
}

/// Adds and ok reads, grouped by key; `add_fs` names the functions that add elements.
pub(crate) fn group<'a>(
    ops: &[Paired<'a>],
    add_fs: &[&str],
) -> BTreeMap<String, (Vec<Add>, Vec<Read>)> {
    let mut keys: BTreeMap<String, (Vec<Add>, Vec<Read>)> = BTreeMap::new();
    for op in ops {
        let key = op.invoke.key.clone().unwrap_or_default();
        if add_fs.contains(&op.invoke.f.as_str()) {
            keys.entry(key).or_default().0.push(Add {
                elem: op.invoke.value.clone(),
                kind: op.kind(),
                complete_ns: op.complete_ns(),
            });
        } else if op.invoke.f == "read" && op.kind() == Some(EventType::Ok) {
            let value = &op.complete.expect("ok has a completion").value;
            let elems = match value {
                Value::Array(a) => a.clone(),
                // A set or list never written reads as null: empty.
                _ => Vec::new(),
            };
            keys.entry(key).or_default().1.push(Read {
                invoke_ns: op.invoke_ns(),
                complete_ns: op.complete_ns(),
                elems,
            });
        }
    }
    keys
}

/// What the element analysis found, over all keys.
#[derive(Default)]
pub(crate) struct ElementReport {
    pub attempted: usize,
    pub acknowledged: usize,
    pub recovered: usize,
    pub reads: usize,
    pub lost: Vec<Value>,
    pub stale: Vec<Value>,
    pub unexpected: Vec<Value>,
    pub duplicated: Vec<Value>,
    /// Acknowledged elements that no read began after: nothing can be said of them.
    pub never_read: usize,
}

impl ElementReport {
    pub fn validity(&self) -> Validity {
        if !(self.lost.is_empty()
            && self.stale.is_empty()
            && self.unexpected.is_empty()
            && self.duplicated.is_empty())
        {
            Validity::Invalid
        } else if self.never_read > 0 || (self.acknowledged > 0 && self.reads == 0) {
            Validity::Unknown
        } else {
            Validity::Valid
        }
    }

    pub fn details(&self) -> Value {
        let ex = |v: &Vec<Value>| v.iter().take(EXAMPLES_MAX).cloned().collect::<Vec<_>>();
        json!({
            "attempt-count": self.attempted,
            "ok-count": self.acknowledged,
            "recovered-count": self.recovered,
            "read-count": self.reads,
            "never-read-count": self.never_read,
            "lost-count": self.lost.len(), "lost": ex(&self.lost),
            "stale-count": self.stale.len(), "stale": ex(&self.stale),
            "unexpected-count": self.unexpected.len(), "unexpected": ex(&self.unexpected),
            "duplicated-count": self.duplicated.len(), "duplicated": ex(&self.duplicated),
        })
    }
}

/// Elements are compared by their JSON text so any JSON value can be an element.
fn id(v: &Value) -> String {
    v.to_string()
}

pub(crate) fn analyze_key(key: &str, adds: &[Add], reads: &mut [Read], r: &mut ElementReport) {
    reads.sort_by_key(|rd| rd.invoke_ns);
    r.reads += reads.len();
    let mut addable: HashSet<String> = HashSet::new();
    let mut indeterminate: HashSet<String> = HashSet::new();
    // Earliest instant each element is known to be in the set, and whether its add was
    // acknowledged (only those count as never read when no read follows).
    let mut known: HashMap<String, (u64, Value, bool)> = HashMap::new();
    for a in adds {
        r.attempted += 1;
        let k = id(&a.elem);
        match a.kind {
            Some(EventType::Fail) => {}
            Some(EventType::Ok) => {
                r.acknowledged += 1;
                known.insert(k.clone(), (a.complete_ns, a.elem.clone(), true));
                addable.insert(k);
            }
            _ => {
                indeterminate.insert(k.clone());
                addable.insert(k);
            }
        }
    }
    let mut reported: HashSet<String> = HashSet::new();
    let mut contents: Vec<HashSet<String>> = Vec::with_capacity(reads.len());
    for rd in reads.iter() {
        let mut here = HashSet::new();
        for e in &rd.elems {
            let k = id(e);
            if !here.insert(k.clone()) {
                r.duplicated.push(json!({"key": key, "element": e}));
            }
            if !addable.contains(&k) && reported.insert(k.clone()) {
                r.unexpected.push(json!({"key": key, "element": e}));
            }
            let entry = known
                .entry(k.clone())
                .or_insert((rd.complete_ns, e.clone(), false));
            entry.0 = entry.0.min(rd.complete_ns);
            if indeterminate.remove(&k) {
                r.recovered += 1;
            }
        }
        contents.push(here);
    }
    let mut known: Vec<_> = known.into_iter().collect();
    known.sort_by(|a, b| (a.1.0, &a.0).cmp(&(b.1.0, &b.0)));
    for (k, (at, elem, acknowledged)) in known {
        // Reads that began after the element was known, in invocation order.
        let start = reads.partition_point(|rd| rd.invoke_ns <= at);
        if start == reads.len() {
            if acknowledged {
                r.never_read += 1;
            }
            continue;
        }
        let absent: Vec<usize> = (start..reads.len())
            .filter(|i| !contents[*i].contains(&k))
            .collect();
        if absent.last() == Some(&(reads.len() - 1)) {
            r.lost
                .push(json!({"key": key, "element": elem, "known-ns": at}));
        } else if let Some(first) = absent.first() {
            r.stale.push(json!({
                "key": key, "element": elem, "known-ns": at,
                "absent-from-read-invoked-ns": reads[*first].invoke_ns,
            }));
        }
    }
}

/// Registered as `set`.
pub struct SetChecker;

impl Checker for SetChecker {
    fn name(&self) -> &'static str {
        "set"
    }

    fn check(&self, history: &[Event]) -> CheckResult {
        crate::registry::unless_nothing_checked(history, self.check_ops(history))
    }
}

impl SetChecker {
    fn check_ops(&self, history: &[Event]) -> CheckResult {
        let ops = pair(history);
        let mut report = ElementReport::default();
        for (key, (adds, mut reads)) in group(&ops, &["add"]) {
            analyze_key(&key, &adds, &mut reads, &mut report);
        }
        CheckResult {
            checker: "set".into(),
            valid: report.validity(),
            details: report.details(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn ev(p: u64, t: u64, kind: EventType, f: &str, key: &str, value: Value) -> Event {
        let mut e = Event::op(p, kind, f, Some(key), value);
        e.time = t;
        e
    }

    /// An op from invoke at `t0` to completion at `t1`.
    pub fn op(
        p: u64,
        t0: u64,
        t1: u64,
        kind: EventType,
        f: &str,
        key: &str,
        inv: Value,
        out: Value,
    ) -> [Event; 2] {
        [
            ev(p, t0, EventType::Invoke, f, key, inv),
            ev(p, t1, kind, f, key, out),
        ]
    }

    fn check(h: Vec<[Event; 2]>) -> CheckResult {
        let mut h: Vec<Event> = h.into_iter().flatten().collect();
        h.sort_by_key(|e| e.time);
        SetChecker.check(&h)
    }

    use EventType::{Fail, Info, Ok};

    #[test]
    fn all_acknowledged_adds_read_back_is_valid() {
        let r = check(vec![
            op(0, 0, 10, Ok, "add", "s", json!(1), json!(1)),
            op(1, 5, 15, Ok, "add", "s", json!(2), json!(2)),
            op(2, 20, 30, Ok, "read", "s", Value::Null, json!([2, 1])),
        ]);
        assert_eq!(r.valid, Validity::Valid, "{}", r.details);
        assert_eq!(r.details["ok-count"], 2);
    }

    #[test]
    fn acknowledged_add_missing_from_final_read_is_lost() {
        let r = check(vec![
            op(0, 0, 10, Ok, "add", "s", json!(1), json!(1)),
            op(1, 5, 15, Ok, "add", "s", json!(2), json!(2)),
            op(2, 20, 30, Ok, "read", "s", Value::Null, json!([1])),
        ]);
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(r.details["lost-count"], 1);
        assert_eq!(r.details["lost"][0]["element"], 2);
    }

    #[test]
    fn element_missing_then_reappearing_is_stale() {
        let r = check(vec![
            op(0, 0, 10, Ok, "add", "s", json!(1), json!(1)),
            op(2, 20, 30, Ok, "read", "s", Value::Null, json!([])),
            op(2, 40, 50, Ok, "read", "s", Value::Null, json!([1])),
        ]);
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(r.details["stale-count"], 1);
        assert_eq!(r.details["lost-count"], 0);
    }

    #[test]
    fn concurrent_read_may_miss_an_add() {
        // The read began before the add was acknowledged: not seeing it is fine.
        let r = check(vec![
            op(0, 0, 25, Ok, "add", "s", json!(1), json!(1)),
            op(2, 20, 30, Ok, "read", "s", Value::Null, json!([])),
            op(2, 40, 50, Ok, "read", "s", Value::Null, json!([1])),
        ]);
        assert_eq!(r.valid, Validity::Valid, "{}", r.details);
    }

    #[test]
    fn unexpected_duplicated_and_failed_elements_are_invalid() {
        let r = check(vec![
            op(0, 0, 10, Fail, "add", "s", json!(1), json!(1)),
            op(1, 0, 10, Ok, "add", "s", json!(2), json!(2)),
            op(2, 20, 30, Ok, "read", "s", Value::Null, json!([1, 2, 2, 9])),
        ]);
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(r.details["unexpected-count"], 2);
        assert_eq!(r.details["duplicated-count"], 1);
    }

    #[test]
    fn indeterminate_adds_may_go_either_way() {
        let r = check(vec![
            op(0, 0, 10, Info, "add", "s", json!(1), json!(1)),
            op(1, 0, 10, Info, "add", "s", json!(2), json!(2)),
            op(2, 20, 30, Ok, "read", "s", Value::Null, json!([1])),
        ]);
        assert_eq!(r.valid, Validity::Valid, "{}", r.details);
        assert_eq!(r.details["recovered-count"], 1);
    }

    #[test]
    fn acknowledged_adds_without_any_later_read_are_unknown() {
        let r = check(vec![op(0, 0, 10, Ok, "add", "s", json!(1), json!(1))]);
        assert_eq!(r.valid, Validity::Unknown);
    }
}
