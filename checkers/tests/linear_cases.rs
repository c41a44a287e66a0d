//! Hand-written histories whose verdicts and counterexamples are known exactly.

use std::time::Duration;

use faultline_checkers::linear::synth::{self, SynthOpts};
use faultline_checkers::linear::{self, Budget, ModelKind};
use faultline_checkers::{Event, EventType, Process, Validity};
use serde_json::{Value, json};

/// `(process, type, f, value)` rows, with an optional key for all of them.
fn history(key: Option<&str>, rows: &[(u64, &str, &str, Value)]) -> Vec<Event> {
    rows.iter()
        .enumerate()
        .map(|(i, (p, t, f, v))| {
            let kind = match *t {
                "invoke" => EventType::Invoke,
                "ok" => EventType::Ok,
                "fail" => EventType::Fail,
                _ => EventType::Info,
            };
            let mut e = Event::op(*p, kind, f, key, v.clone());
            e.index = Some(i as u64);
            e
        })
        .collect()
}

fn check(h: &[Event]) -> linear::LinReport {
    linear::check(h, ModelKind::CasRegister, &Budget::default()).unwrap()
}

#[test]
fn stale_read_names_the_read_and_the_prefix_before_it() {
    let h = history(
        None,
        &[
            (0, "invoke", "write", json!(1)),
            (0, "ok", "write", json!(1)),
            (1, "invoke", "write", json!(2)),
            (1, "ok", "write", json!(2)),
            (2, "invoke", "read", Value::Null),
            (2, "ok", "read", json!(1)),
        ],
    );
    let r = check(&h);
    assert_eq!(r.valid, Validity::Invalid);
    let c = r.counterexample.unwrap();
    let op = c.op.unwrap();
    assert_eq!(
        (op.process, op.f.as_str(), &op.value),
        (2, "read", &json!(1))
    );
    assert_eq!(c.prefix_len, 2);
    let states: Vec<&Value> = c.prefix_tail.iter().map(|s| &s.state_after).collect();
    assert_eq!(states, [&json!(1), &json!(2)]);
    assert_eq!(c.final_state, json!(2));
}

#[test]
fn concurrent_write_makes_the_same_read_legal() {
    let h = history(
        None,
        &[
            (0, "invoke", "write", json!(1)),
            (0, "ok", "write", json!(1)),
            (1, "invoke", "write", json!(2)),
            (2, "invoke", "read", Value::Null),
            (2, "ok", "read", json!(1)),
            (1, "ok", "write", json!(2)),
        ],
    );
    assert_eq!(check(&h).valid, Validity::Valid);
}

#[test]
fn a_crashed_write_may_take_effect_late_or_never() {
    let rows = |read: i64| {
        vec![
            (0, "invoke", "write", json!(1)),
            (0, "info", "write", json!(1)),
            (1, "invoke", "read", Value::Null),
            (1, "ok", "read", Value::Null),
            (2, "invoke", "read", Value::Null),
            (2, "ok", "read", json!(read)),
        ]
    };
    assert_eq!(check(&history(None, &rows(1))).valid, Validity::Valid);
    let r = check(&history(None, &rows(7)));
    assert_eq!(r.valid, Validity::Invalid);
    assert!(
        r.counterexample
            .unwrap()
            .reason
            .contains("no operation wrote")
    );
}

#[test]
fn a_cas_mismatch_observes_another_value_and_a_plain_fail_does_not() {
    let mut h = history(
        None,
        &[
            (0, "invoke", "write", json!(1)),
            (0, "ok", "write", json!(1)),
            (1, "invoke", "cas", json!([1, 2])),
            (1, "fail", "cas", json!([1, 2])),
        ],
    );
    assert_eq!(
        check(&h).valid,
        Validity::Valid,
        "a failed cas did not happen"
    );
    h[3].error = Some(faultline_checkers::history::CAS_MISMATCH.into());
    assert_eq!(
        check(&h).valid,
        Validity::Invalid,
        "the register held 1, the compare cannot have failed"
    );
}

#[test]
fn keys_are_independent_and_the_bad_one_is_named() {
    let mut h = history(
        Some("a"),
        &[
            (0, "invoke", "write", json!(1)),
            (0, "ok", "write", json!(1)),
        ],
    );
    h.extend(history(
        Some("b"),
        &[
            (1, "invoke", "read", Value::Null),
            (1, "ok", "read", json!(1)),
        ],
    ));
    // Nemesis and monitor events are not client operations.
    let mut nemesis = Event::op(
        0,
        EventType::Invoke,
        "start-partition",
        None,
        json!({"shape": "halves"}),
    );
    nemesis.process = Process::nemesis();
    h.insert(1, nemesis);
    for (i, e) in h.iter_mut().enumerate() {
        e.index = Some(i as u64);
    }
    let r = check(&h);
    assert_eq!((r.valid, r.keys, r.ops), (Validity::Invalid, 2, 2));
    assert_eq!(r.counterexample.unwrap().key.as_deref(), Some("b"));
}

#[test]
fn malformed_histories_are_errors_not_verdicts() {
    let h = history(
        None,
        &[
            (0, "invoke", "read", Value::Null),
            (0, "invoke", "read", Value::Null),
        ],
    );
    let e = linear::check(&h, ModelKind::CasRegister, &Budget::default()).unwrap_err();
    assert_eq!(e.position, 1);
    assert!(e.message.contains("has not completed"), "{e}");
    let h = history(
        None,
        &[
            (0, "invoke", "append", json!(1)),
            (0, "ok", "append", json!(1)),
        ],
    );
    let e = linear::check(&h, ModelKind::CasRegister, &Budget::default()).unwrap_err();
    assert!(e.message.contains("no operation \"append\""), "{e}");
}

#[test]
fn exhausted_budgets_answer_unknown() {
    let h = synth::generate(&SynthOpts {
        seed: 9,
        ops: 20_000,
        clients: 20,
        read_ratio: 0.3,
        cas_ratio: 0.5,
        unique_values: false,
        ..SynthOpts::default()
    });
    let tight = Budget {
        time_limit: Some(Duration::ZERO),
        memory_limit_bytes: 1 << 30,
        threads: 1,
    };
    let r = linear::check(&h, ModelKind::CasRegister, &tight).unwrap();
    assert_eq!(r.valid, Validity::Unknown);
    assert!(r.unknown_reason.unwrap().contains("time limit"));
    let small = Budget {
        time_limit: None,
        memory_limit_bytes: 1,
        threads: 1,
    };
    let r = linear::check(&h, ModelKind::CasRegister, &small).unwrap();
    assert_eq!(r.valid, Validity::Unknown);
    assert!(r.unknown_reason.unwrap().contains("memory limit"));
    // With room, the same history is valid.
    let r = linear::check(&h, ModelKind::CasRegister, &Budget::default()).unwrap();
    assert_eq!(r.valid, Validity::Valid);
}
