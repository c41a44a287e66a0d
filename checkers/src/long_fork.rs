//! `long-fork`: Jepsen's long-fork checker (parallel snapshot isolation allows the anomaly,
//! snapshot isolation does not). Write transactions insert one key once (`[[w k v]]`);
//! read transactions read a group of keys (`[[r k v] ...]`). Two ok reads of the same
//! group are comparable when one saw every insert the other saw; a pair in which each
//! saw an insert the other missed observed the inserts in incompatible orders: a fork.
//!
//! Jepsen is told the group size; here the groups are the key sets the reads cover, and
//! reads of groups of different sizes make the history unknown (as they make Jepsen's
//! checker throw). A key written twice, or read with two different values, breaks the
//! checker's assumptions: unknown too.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Value, json};

use crate::history::{Event, EventType};
use crate::registry::{CheckResult, Checker, Validity};

const EXAMPLES_MAX: usize = 10;

/// Registered as `long-fork`.
pub struct LongForkChecker;

impl Checker for LongForkChecker {
    fn name(&self) -> &'static str {
        "long-fork"
    }

    fn check(&self, history: &[Event]) -> CheckResult {
        crate::registry::unless_nothing_checked(history, check_ops(history))
    }
}

/// `[f, k, v]` micro-ops of a transaction, if its value is one.
fn mops(v: &Value) -> Option<Vec<(&str, String, &Value)>> {
    v.as_array()?
        .iter()
        .map(|m| match m.as_array().map(Vec::as_slice) {
            Some([f, k, x]) => Some((f.as_str()?, k.to_string(), x)),
            _ => None,
        })
        .collect()
}

/// A read: its history index and the value it saw of each key of its group.
struct Read<'a> {
    index: u64,
    seen: BTreeMap<String, &'a Value>,
}

/// -1: `a` saw more, 1: `b` saw more, 0: the same, `None`: incomparable (a fork);
/// `Err` when a key has two different non-nil values.
fn compare(a: &Read, b: &Read) -> Result<Option<i8>, String> {
    let mut res = 0i8;
    for (k, va) in &a.seen {
        let vb = b.seen[k];
        if *va == vb {
            continue;
        }
        let step = match (va.is_null(), vb.is_null()) {
            (false, true) => -1,
            (true, false) => 1,
            _ => {
                return Err(format!(
                    "reads at events {} and {} saw key {k} as {va} and {vb}: a key is inserted once",
                    a.index, b.index
                ));
            }
        };
        if res == -step {
            return Ok(None);
        }
        res = step;
    }
    Ok(Some(res))
}

fn check_ops(history: &[Event]) -> CheckResult {
    let result = |valid, details| CheckResult { checker: "long-fork".into(), valid, details };
    let clients = || history.iter().enumerate().filter(|(_, e)| e.client().is_some());
    // Every key inserted once.
    let mut written: HashSet<String> = HashSet::new();
    for (pos, e) in clients().filter(|(_, e)| e.kind == EventType::Invoke) {
        if let Some(m) = mops(&e.value)
            && let [("w", k, _)] = m.as_slice()
            && !written.insert(k.clone())
        {
            return result(Validity::Unknown, json!({"error": format!("event {}: key {k} is written more than once", e.index.unwrap_or(pos as u64))}));
        }
    }
    let mut groups: BTreeMap<Vec<String>, Vec<Read>> = BTreeMap::new();
    let (mut early, mut late) = (0usize, 0usize);
    for (pos, e) in clients().filter(|(_, e)| e.kind == EventType::Ok) {
        let Some(m) = mops(&e.value) else { continue };
        if m.is_empty() || !m.iter().all(|(f, _, _)| *f == "r") {
            continue;
        }
        early += usize::from(m.iter().all(|(_, _, v)| v.is_null()));
        late += usize::from(m.iter().all(|(_, _, v)| !v.is_null()));
        let seen: BTreeMap<String, &Value> = m.iter().map(|(_, k, v)| (k.clone(), *v)).collect();
        groups
            .entry(seen.keys().cloned().collect())
            .or_default()
            .push(Read { index: e.index.unwrap_or(pos as u64), seen });
    }
    let reads: usize = groups.values().map(Vec::len).sum();
    let sizes: std::collections::BTreeSet<usize> = groups.keys().map(Vec::len).collect();
    if sizes.len() > 1 {
        return result(Validity::Unknown, json!({"error": format!("reads cover groups of {sizes:?} keys; every read should read one whole group of the same size"), "read-count": reads}));
    }
    let mut forks: Vec<Value> = Vec::new();
    let mut fork_count = 0usize;
    let mut compared = 0usize;
    for (keys, rs) in &groups {
        for i in 0..rs.len() {
            for j in i + 1..rs.len() {
                compared += 1;
                match compare(&rs[i], &rs[j]) {
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        fork_count += 1;
                        if forks.len() < EXAMPLES_MAX {
                            forks.push(json!({"keys": keys, "reads": [
                                {"index": rs[i].index, "seen": rs[i].seen},
                                {"index": rs[j].index, "seen": rs[j].seen}]}));
                        }
                    }
                    Err(error) => return result(Validity::Unknown, json!({ "error": error, "read-count": reads })),
                }
            }
        }
    }
    let valid = if fork_count > 0 {
        Validity::Invalid
    } else if compared == 0 {
        Validity::Unknown
    } else {
        Validity::Valid
    };
    let mut details = json!({
        "read-count": reads, "early-read-count": early, "late-read-count": late,
        "fork-count": fork_count, "forks": forks,
    });
    if compared == 0 {
        details["reason"] = json!("no two reads of the same group to compare");
    }
    result(valid, details)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(ops: &[(u64, EventType, Value)]) -> Vec<Event> {
        ops.iter()
            .map(|(p, k, v)| Event::op(*p, *k, if v[0][0] == "w" { "write" } else { "read" }, None, v.clone()))
            .collect()
    }
    use EventType::{Invoke, Ok};

    #[test]
    fn reads_seeing_inserts_in_opposite_orders_are_a_fork() {
        let r = LongForkChecker.check(&h(&[
            (0, Invoke, json!([["r", 0, null], ["r", 1, null]])),
            (0, Ok, json!([["r", 0, 1], ["r", 1, null]])),
            (1, Invoke, json!([["r", 1, null], ["r", 0, null]])),
            (1, Ok, json!([["r", 1, 1], ["r", 0, null]])),
        ]));
        assert_eq!(r.valid, Validity::Invalid, "{}", r.details);
        assert_eq!(r.details["fork-count"], 1);
    }

    #[test]
    fn reads_in_one_order_of_inserts_are_valid() {
        let r = LongForkChecker.check(&h(&[
            (2, Invoke, json!([["w", 0, 1]])),
            (2, Ok, json!([["w", 0, 1]])),
            (0, Invoke, json!([["r", 0, null], ["r", 1, null]])),
            (0, Ok, json!([["r", 0, 1], ["r", 1, null]])),
            (1, Invoke, json!([["r", 1, null], ["r", 0, null]])),
            (1, Ok, json!([["r", 1, 1], ["r", 0, 1]])),
        ]));
        assert_eq!(r.valid, Validity::Valid, "{}", r.details);
    }

    #[test]
    fn key_written_twice_is_unknown() {
        let r = LongForkChecker.check(&h(&[
            (2, Invoke, json!([["w", 0, 1]])),
            (3, Invoke, json!([["w", 0, 2]])),
            (0, Invoke, json!([["r", 0, null]])),
            (0, Ok, json!([["r", 0, 1]])),
        ]));
        assert_eq!(r.valid, Validity::Unknown, "{}", r.details);
    }
}
