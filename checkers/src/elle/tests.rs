//! Hand-written histories for each anomaly (several from the Elle paper), judged by the
//! list-append and rw-register analyses.

use serde_json::{Value, json};

use super::*;
use crate::history::Event;

/// `(process, kind, mops)`, in history order.
fn history(ops: &[(u64, &str, Value)]) -> Vec<Event> {
    ops.iter()
        .enumerate()
        .map(|(i, (p, kind, v))| {
            let kind = match *kind {
                "invoke" => EventType::Invoke,
                "ok" => EventType::Ok,
                "fail" => EventType::Fail,
                _ => EventType::Info,
            };
            let mut e = Event::op(*p, kind, "txn", None, v.clone());
            e.index = Some(i as u64);
            e
        })
        .collect()
}

/// One transaction invoked and completed at once: invocation reads are null.
fn txn(p: u64, done: Value) -> Vec<(u64, &'static str, Value)> {
    let inv: Vec<Value> = done
        .as_array()
        .unwrap()
        .iter()
        .map(|m| if m[0] == "r" { json!([m[0], m[1], null]) } else { m.clone() })
        .collect();
    vec![(p, "invoke", Value::Array(inv)), (p, "ok", done)]
}

fn serial(txns: &[(u64, Value)]) -> Vec<Event> {
    let ops: Vec<_> = txns.iter().flat_map(|(p, v)| txn(*p, v.clone())).collect();
    history(&ops)
}

fn check(data: DataModel, model: Model, h: &[Event]) -> CheckResult {
    ElleChecker::new(data, model).check(h)
}

fn types(r: &CheckResult) -> Vec<String> {
    r.details["anomaly-types"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
}

#[test]
fn serial_list_append_history_is_valid_under_strict_serializability() {
    let h = serial(&[
        (0, json!([["append", 1, 1], ["r", 1, [1]]])),
        (1, json!([["r", 1, [1]], ["append", 2, 5]])),
        (0, json!([["r", 2, [5]], ["append", 1, 2], ["r", 1, [1, 2]]])),
    ]);
    let r = check(DataModel::ListAppend, Model::StrictSerializable, &h);
    assert_eq!(r.valid, Validity::Valid, "{}", r.details);
}

#[test]
fn g0_write_cycle_is_found() {
    // T1 appends 1 to x and y, T2 appends 2 to both; reads show x = [1 2] but y = [2 1].
    let h = serial(&[
        (0, json!([["append", "x", 1], ["append", "y", 1]])),
        (1, json!([["append", "x", 2], ["append", "y", 2]])),
        (2, json!([["r", "x", [1, 2]], ["r", "y", [2, 1]]])),
    ]);
    let r = check(DataModel::ListAppend, Model::Serializable, &h);
    assert_eq!(r.valid, Validity::Invalid);
    assert!(types(&r).contains(&"G0".to_string()), "{}", r.details);
    let not = r.details["not"].as_array().unwrap();
    assert!(not.contains(&json!("read-uncommitted")));
}

#[test]
fn g1c_circular_information_flow_is_found() {
    // T1 reads T2's append and T2 reads T1's: wr both ways.
    let h = serial(&[
        (0, json!([["append", "x", 1], ["r", "y", [1]]])),
        (1, json!([["append", "y", 1], ["r", "x", [1]]])),
    ]);
    let r = check(DataModel::ListAppend, Model::Serializable, &h);
    assert!(types(&r).contains(&"G1c".to_string()), "{}", r.details);
    assert!(r.details["also-possible"].as_array().unwrap().contains(&json!("read-uncommitted")));
}

#[test]
fn g_single_read_skew_is_found_and_si_is_ruled_out() {
    // T1 writes x and y; T2 sees y's new value but x's old one.
    let h = serial(&[
        (0, json!([["append", "x", 1]])),
        (0, json!([["append", "y", 1]])),
        (1, json!([["append", "x", 2], ["append", "y", 2]])),
        (2, json!([["r", "x", [1]], ["r", "y", [1, 2]]])),
        (2, json!([["r", "x", [1, 2]]])),
    ]);
    let r = check(DataModel::ListAppend, Model::Serializable, &h);
    assert!(types(&r).contains(&"G-single".to_string()), "{}", r.details);
    let not = r.details["not"].as_array().unwrap();
    assert!(not.contains(&json!("snapshot-isolation")) && !not.contains(&json!("read-committed")), "{}", r.details);
}

#[test]
fn g2_item_write_skew_is_valid_under_si_but_not_serializable() {
    // Both read the empty lists, each appends to the key the other read.
    let h = serial(&[
        (0, json!([["r", "x", null], ["append", "y", 1]])),
        (1, json!([["r", "y", null], ["append", "x", 1]])),
        (2, json!([["r", "x", [1]], ["r", "y", [1]]])),
    ]);
    let r = check(DataModel::ListAppend, Model::SnapshotIsolation, &h);
    assert_eq!(r.valid, Validity::Valid, "{}", r.details);
    assert_eq!(types(&r), vec!["G2-item".to_string()]);
    let r = check(DataModel::ListAppend, Model::Serializable, &h);
    assert_eq!(r.valid, Validity::Invalid);
}

#[test]
fn aborted_and_intermediate_reads_are_found() {
    let mut ops = vec![(0, "invoke", json!([["append", "x", 1]])), (0, "fail", json!([["append", "x", 1]]))];
    ops.extend(txn(1, json!([["append", "y", 1], ["append", "y", 2]])));
    ops.extend(txn(2, json!([["r", "x", [1]], ["r", "y", [1]]])));
    let r = check(DataModel::ListAppend, Model::ReadCommitted, &history(&ops));
    let t = types(&r);
    assert!(t.contains(&"G1a".to_string()) && t.contains(&"G1b".to_string()), "{}", r.details);
    assert_eq!(r.valid, Validity::Invalid);
}

#[test]
fn internal_inconsistency_duplicates_and_incompatible_orders_are_found() {
    let h = serial(&[
        (0, json!([["append", "x", 1], ["r", "x", []]])),
        (1, json!([["append", "y", 1], ["append", "y", 2]])),
        (2, json!([["r", "y", [1, 1]]])),
        (2, json!([["r", "y", [2, 1]]])),
    ]);
    let t = types(&check(DataModel::ListAppend, Model::ReadUncommitted, &h));
    for a in ["internal", "duplicate-elements", "incompatible-order"] {
        assert!(t.contains(&a.to_string()), "{a} missing from {t:?}");
    }
}

#[test]
fn stale_read_is_only_a_realtime_anomaly() {
    // T1 appends, completes; T2 starts afterwards and does not see it.
    let h = serial(&[(0, json!([["append", "x", 1]])), (1, json!([["r", "x", null]]))]);
    let r = check(DataModel::ListAppend, Model::Serializable, &h);
    assert_eq!(r.valid, Validity::Valid, "{}", r.details);
    let r = check(DataModel::ListAppend, Model::StrictSerializable, &h);
    assert_eq!(r.valid, Validity::Invalid, "{}", r.details);
    assert!(types(&r).iter().any(|t| t.ends_with("-realtime")), "{}", r.details);
    assert!(r.details["anomalies"].to_string().contains("completed before"));
}

#[test]
fn indeterminate_unobserved_append_adds_no_edge() {
    // The info append of 2 may never have happened: T3's read without it proves nothing.
    let mut ops = txn(0, json!([["append", "x", 1]]));
    ops.push((1, "invoke", json!([["append", "x", 2]])));
    ops.push((1, "info", json!([["append", "x", 2]])));
    ops.extend(txn(2, json!([["r", "x", [1]]])));
    let r = check(DataModel::ListAppend, Model::StrictSerializable, &history(&ops));
    assert_eq!(r.valid, Validity::Valid, "{}", r.details);
}

#[test]
fn rw_register_write_skew_and_read_of_failed_write() {
    let h = serial(&[
        (0, json!([["r", "x", null], ["w", "y", 1]])),
        (1, json!([["r", "y", null], ["w", "x", 1]])),
    ]);
    let r = check(DataModel::RwRegister, Model::Serializable, &h);
    assert_eq!(types(&r), vec!["G2-item".to_string()], "{}", r.details);
    let mut ops = vec![(0, "invoke", json!([["w", "x", 5]])), (0, "fail", json!([["w", "x", 5]]))];
    ops.extend(txn(1, json!([["r", "x", 5]])));
    let r = check(DataModel::RwRegister, Model::ReadCommitted, &history(&ops));
    assert!(types(&r).contains(&"G1a".to_string()), "{}", r.details);
}

#[test]
fn rw_register_lost_update_is_g_single_or_worse() {
    // Both read x = 1 and write over it: each read-then-write is ordered after the other.
    let h = serial(&[
        (0, json!([["w", "x", 1]])),
        (1, json!([["r", "x", 1], ["w", "x", 2]])),
        (2, json!([["r", "x", 1], ["w", "x", 3]])),
    ]);
    let r = check(DataModel::RwRegister, Model::SnapshotIsolation, &h);
    assert_eq!(r.valid, Validity::Invalid, "{}", r.details);
}

#[test]
fn model_names_round_trip() {
    for m in MODELS {
        assert_eq!(m.name().parse::<Model>().unwrap(), *m);
    }
    assert!("linearizable".parse::<Model>().is_err());
}

#[test]
fn repeated_append_value_makes_an_otherwise_clean_history_unknown() {
    let h = serial(&[(0, json!([["append", "x", 1]])), (1, json!([["append", "x", 1]])), (2, json!([["r", "x", [1, 1]]]))]);
    // The duplicate read is proscribed anyway; without it the history is merely unknown.
    assert_eq!(check(DataModel::ListAppend, Model::Serializable, &h).valid, Validity::Invalid);
    let h = serial(&[(0, json!([["append", "x", 1]])), (1, json!([["append", "x", 1]])), (2, json!([["r", "x", [1]]]))]);
    let r = check(DataModel::ListAppend, Model::Serializable, &h);
    assert_eq!(r.valid, Validity::Unknown, "{}", r.details);
}

#[test]
fn g_nonadjacent_cycle_rules_out_snapshot_isolation_but_not_read_committed() {
    // T1 -rw(a)-> T2 -wr(b)-> T3 -rw(c)-> T4 -wr(d)-> T1: two rw edges, never adjacent.
    // No cycle has a single rw edge, so this is not G-single; the rw edges are not
    // adjacent, so it is not mere write skew (G2-item), which snapshot isolation allows.
    let h = serial(&[
        (0, json!([["r", "a", []], ["r", "d", [4]]])),
        (1, json!([["append", "a", 2], ["append", "b", 2]])),
        (2, json!([["r", "b", [2]], ["r", "c", []]])),
        (3, json!([["append", "c", 4], ["append", "d", 4]])),
    ]);
    let r = check(DataModel::ListAppend, Model::SnapshotIsolation, &h);
    assert_eq!(r.valid, Validity::Invalid, "{}", r.details);
    assert_eq!(types(&r), vec!["G-nonadjacent".to_string()], "{}", r.details);
    let cycle = &r.details["anomalies"]["G-nonadjacent"][0]["cycle"];
    let kinds: Vec<&str> = cycle.as_array().unwrap().iter().map(|s| s["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "rw").count(), 2, "{kinds:?}");
    let not = r.details["not"].as_array().unwrap();
    for m in ["snapshot-isolation", "repeatable-read", "serializable"] {
        assert!(not.contains(&json!(m)), "{m} not ruled out: {}", r.details);
    }
    assert!(!not.contains(&json!("read-committed")), "{}", r.details);
    assert_eq!(check(DataModel::ListAppend, Model::ReadCommitted, &h).valid, Validity::Valid);
}

#[test]
fn adjacent_rw_edges_are_g2_item_not_g_nonadjacent() {
    let h = serial(&[
        (0, json!([["r", "x", null], ["append", "y", 1]])),
        (1, json!([["r", "y", null], ["append", "x", 1]])),
        (2, json!([["r", "x", [1]], ["r", "y", [1]]])),
    ]);
    let r = check(DataModel::ListAppend, Model::Serializable, &h);
    assert_eq!(types(&r), vec!["G2-item".to_string()], "{}", r.details);
    let not = r.details["not"].as_array().unwrap();
    assert!(!not.contains(&json!("snapshot-isolation")), "{}", r.details);
}

#[test]
fn g_nonadjacent_through_process_order_is_a_session_anomaly() {
    // Process 0 runs T4 then T1, process 1 runs T2 then T3; T1 misses T2's append and T3
    // misses T4's: T1 -rw-> T2 -process-> T3 -rw-> T4 -process-> T1.
    let h = serial(&[
        (0, json!([["append", "b", 4]])),
        (1, json!([["append", "a", 2]])),
        (0, json!([["r", "a", []]])),
        (1, json!([["r", "b", []]])),
    ]);
    let r = check(DataModel::ListAppend, Model::SnapshotIsolation, &h);
    assert_eq!(r.valid, Validity::Valid, "{}", r.details);
    let r = check(DataModel::ListAppend, Model::StrongSessionSnapshotIsolation, &h);
    assert_eq!(r.valid, Validity::Invalid, "{}", r.details);
    assert!(types(&r).contains(&"G-nonadjacent-process".to_string()), "{}", r.details);
    // Under real-time order (strong SI) the same cycle is a -realtime one.
    let r = check(DataModel::ListAppend, Model::StrongSnapshotIsolation, &h);
    assert_eq!(r.valid, Validity::Invalid, "{}", r.details);
    assert!(types(&r).iter().any(|t| t.ends_with("-realtime")), "{}", r.details);
}

#[test]
fn cycles_are_classified_by_their_rw_edges_and_order_edges() {
    use super::graph::{Edge, PR, RT, RW, WR, WW, classify};
    let c = |kinds: &[u8]| -> String {
        let cycle: Vec<(u32, Edge)> = kinds
            .iter()
            .enumerate()
            .map(|(i, &kind)| (i as u32, Edge { to: ((i + 1) % kinds.len()) as u32, kind, key: V::I(0), a: V::I(0), b: V::I(0) }))
            .collect();
        classify(&cycle)
    };
    assert_eq!(c(&[WW, WW]), "G0");
    assert_eq!(c(&[WW, WR]), "G1c");
    assert_eq!(c(&[RW, WR]), "G-single");
    assert_eq!(c(&[RW, WR, RW, WW]), "G-nonadjacent");
    // The last edge wraps around to the first: rw, rw adjacent.
    assert_eq!(c(&[RW, WR, RW]), "G2-item");
    assert_eq!(c(&[RW, RW, WR]), "G2-item");
    assert_eq!(c(&[RW, PR, RW, WR]), "G-nonadjacent-process");
    assert_eq!(c(&[RW, RT, RW, PR]), "G-nonadjacent-realtime");
}

#[test]
fn session_and_strong_models_proscribe_their_variants_only() {
    use Model::*;
    assert!(SnapshotIsolation.proscribes("G-nonadjacent") && !SnapshotIsolation.proscribes("G2-item"));
    assert!(RepeatableRead.proscribes("G-nonadjacent") && !ReadCommitted.proscribes("G-nonadjacent"));
    assert!(!SnapshotIsolation.proscribes("G-nonadjacent-process"));
    assert!(StrongSessionSnapshotIsolation.proscribes("G-nonadjacent-process"));
    assert!(!StrongSessionSnapshotIsolation.proscribes("G-nonadjacent-realtime"));
    assert!(!StrongSessionSnapshotIsolation.proscribes("G2-item-process"));
    assert!(StrongSnapshotIsolation.proscribes("G-single-realtime") && StrongSnapshotIsolation.proscribes("G0-process"));
    assert!(StrongSessionSerializable.proscribes("G2-item-process") && !StrongSessionSerializable.proscribes("G2-item-realtime"));
    assert!(StrictSerializable.proscribes("G2-item-realtime") && StrictSerializable.proscribes("G-nonadjacent-process"));
    assert!(!Serializable.proscribes("G1c-realtime"));
}

#[test]
fn a_graph_past_its_memory_budget_is_unknown_not_valid() {
    // Serial appends and reads: valid with room, but with room for one edge the checker
    // cannot tell, so it must say unknown and why.
    let h = serial(&[
        (0, json!([["append", "x", 1]])),
        (1, json!([["r", "x", [1]], ["append", "x", 2]])),
        (0, json!([["r", "x", [1, 2]], ["append", "y", 1]])),
        (1, json!([["r", "y", [1]], ["r", "x", [1, 2]]])),
    ]);
    let roomy = ElleChecker::new(DataModel::ListAppend, Model::Serializable);
    assert_eq!(roomy.check(&h).valid, Validity::Valid);
    let tight = ElleChecker {
        memory_limit_bytes: std::mem::size_of::<graph::Edge>(),
        ..ElleChecker::new(DataModel::ListAppend, Model::Serializable)
    };
    let r = tight.check(&h);
    assert_eq!(r.valid, Validity::Unknown, "{}", r.details);
    assert!(r.details["reason"].as_str().unwrap().contains("memory budget"), "{}", r.details);
}
