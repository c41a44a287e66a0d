//! Histories of a simulated atomic register store, for tests and benchmarks.
//!
//! Every operation takes effect atomically at one instant between its invocation and
//! completion, so what [`generate`] produces is linearizable by construction — crashes
//! included: a crashed operation (`info`) took effect or not, and its process is retired.
//! [`plant_stale_read`] then adds one read that provably cannot be linearized.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::history::{CAS_MISMATCH, Event, EventType, Process};

#[derive(Debug, Clone)]
pub struct SynthOpts {
    pub seed: u64,
    /// Client invocations in total.
    pub ops: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// 1 gives a single register (no `key`).
    pub keys: usize,
    pub read_ratio: f64,
    /// Of the non-reads, the share that are cas (the rest are writes).
    pub cas_ratio: f64,
    /// Each write takes a fresh value; otherwise values are drawn from `0..value_range`.
    pub unique_values: bool,
    pub value_range: u64,
    /// Chance that a write or cas crashes (ends `info`), before or after taking effect.
    pub crash_ratio: f64,
}

impl Default for SynthOpts {
    fn default() -> Self {
        SynthOpts {
            seed: 0,
            ops: 1000,
            clients: 5,
            keys: 1,
            read_ratio: 0.5,
            cas_ratio: 0.0,
            unique_values: true,
            value_range: 5,
            crash_ratio: 0.0,
        }
    }
}

#[derive(Clone)]
enum Slot {
    Idle,
    /// Invoked; `Some(result)` once it took effect.
    Busy {
        f: &'static str,
        key: usize,
        arg: Value,
        result: Option<(EventType, Value)>,
    },
}

/// A linearizable history of `opts.ops` operations.
pub fn generate(opts: &SynthOpts) -> Vec<Event> {
    assert!(opts.clients > 0 && opts.keys > 0);
    let mut rng = SmallRng::seed_from_u64(opts.seed);
    let mut store: Vec<Value> = vec![Value::Null; opts.keys];
    let mut slots = vec![Slot::Idle; opts.clients];
    let mut process: Vec<u64> = (0..opts.clients as u64).collect();
    let mut next_value: u64 = 1;
    let mut invoked = 0usize;
    let mut busy = 0usize;
    let mut out: Vec<Event> = Vec::with_capacity(opts.ops * 2 + 16);
    let key_name = |k: usize| (opts.keys > 1).then(|| format!("k{k}"));
    let push = |out: &mut Vec<Event>,
                p: u64,
                kind: EventType,
                f: &str,
                key: Option<String>,
                value: Value,
                error: Option<&str>| {
        let n = out.len() as u64;
        out.push(Event {
            index: Some(n),
            time: n * 1000,
            process: Process::Client(p),
            kind,
            f: f.to_string(),
            key,
            value,
            error: error.map(str::to_string),
            node: None,
        });
    };

    while invoked < opts.ops || busy > 0 {
        let c = rng.random_range(0..opts.clients);
        match slots[c].clone() {
            Slot::Idle => {
                if invoked == opts.ops {
                    continue;
                }
                invoked += 1;
                busy += 1;
                let key = rng.random_range(0..opts.keys);
                let fresh = |rng: &mut SmallRng, next_value: &mut u64| {
                    if opts.unique_values {
                        *next_value += 1;
                        json!(*next_value - 1)
                    } else {
                        json!(rng.random_range(0..opts.value_range))
                    }
                };
                let (f, arg) = if rng.random_bool(opts.read_ratio) {
                    ("read", Value::Null)
                } else if rng.random_bool(opts.cas_ratio) {
                    let to = fresh(&mut rng, &mut next_value);
                    let from = if rng.random_bool(0.5) && !store[key].is_null() {
                        store[key].clone()
                    } else if opts.unique_values {
                        json!(rng.random_range(1..next_value.max(2)))
                    } else {
                        json!(rng.random_range(0..opts.value_range))
                    };
                    ("cas", json!([from, to]))
                } else {
                    ("write", fresh(&mut rng, &mut next_value))
                };
                push(
                    &mut out,
                    process[c],
                    EventType::Invoke,
                    f,
                    key_name(key),
                    arg.clone(),
                    None,
                );
                slots[c] = Slot::Busy {
                    f,
                    key,
                    arg,
                    result: None,
                };
            }
            Slot::Busy {
                f,
                key,
                arg,
                result,
            } => {
                let crash = f != "read" && rng.random_bool(opts.crash_ratio * 0.5);
                match result {
                    None if crash => {
                        // Crashed before taking effect.
                        push(
                            &mut out,
                            process[c],
                            EventType::Info,
                            f,
                            key_name(key),
                            arg,
                            Some("crashed"),
                        );
                        process[c] += opts.clients as u64;
                        slots[c] = Slot::Idle;
                        busy -= 1;
                    }
                    None => {
                        let r = match f {
                            "read" => (EventType::Ok, store[key].clone()),
                            "write" => {
                                store[key] = arg.clone();
                                (EventType::Ok, arg.clone())
                            }
                            _ => {
                                if store[key] == arg[0] {
                                    store[key] = arg[1].clone();
                                    (EventType::Ok, arg.clone())
                                } else {
                                    (EventType::Fail, arg.clone())
                                }
                            }
                        };
                        slots[c] = Slot::Busy {
                            f,
                            key,
                            arg,
                            result: Some(r),
                        };
                    }
                    Some(_) if crash => {
                        // Took effect, but the client never learned.
                        push(
                            &mut out,
                            process[c],
                            EventType::Info,
                            f,
                            key_name(key),
                            arg,
                            Some("crashed"),
                        );
                        process[c] += opts.clients as u64;
                        slots[c] = Slot::Idle;
                        busy -= 1;
                    }
                    Some((kind, value)) => {
                        let error = (kind == EventType::Fail).then_some(CAS_MISMATCH);
                        push(&mut out, process[c], kind, f, key_name(key), value, error);
                        slots[c] = Slot::Idle;
                        busy -= 1;
                    }
                }
            }
        }
    }
    out
}

/// Inserts a read that returns a value provably overwritten before it began: the value's
/// write completed, then a write of another value began and completed, then the read ran,
/// and nothing else that could write the old value again overlaps. Returns the planted
/// read's invocation position, or `None` when the history has no such spot.
pub fn plant_stale_read(history: &mut Vec<Event>, seed: u64) -> Option<usize> {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed);
    // Completed writes: (key, value, invoke position, completion position).
    let mut inv_at: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
    let mut producers: Vec<(Option<String>, Value, usize, usize, EventType)> = Vec::new();
    for (pos, e) in history.iter().enumerate() {
        let Some(p) = e.client() else { continue };
        if e.kind == EventType::Invoke {
            inv_at.insert(p, pos);
            continue;
        }
        let Some(inv) = inv_at.remove(&p) else {
            continue;
        };
        let produced = match e.f.as_str() {
            "write" => history[inv].value.clone(),
            "cas" => history[inv].value[1].clone(),
            _ => continue,
        };
        // An indeterminate op may take effect at any time after its invocation.
        match e.kind {
            EventType::Fail => {}
            EventType::Info => producers.push((e.key.clone(), produced, inv, usize::MAX, e.kind)),
            _ => producers.push((e.key.clone(), produced, inv, pos, e.kind)),
        }
    }
    // Never-completed producers also count: they may take effect at any time.
    for (_, inv) in inv_at {
        let e = &history[inv];
        let produced = match e.f.as_str() {
            "write" => e.value.clone(),
            "cas" => e.value[1].clone(),
            _ => continue,
        };
        producers.push((e.key.clone(), produced, inv, usize::MAX, EventType::Info));
    }
    let done: Vec<usize> = (0..producers.len())
        .filter(|&i| producers[i].4 == EventType::Ok)
        .collect();
    if done.len() < 2 {
        return None;
    }
    let max_process = history.iter().filter_map(Event::client).max().unwrap_or(0);
    for _ in 0..1000 {
        let w2 = done[rng.random_range(0..done.len())];
        let (key2, v2, call2, ret2, _) = producers[w2].clone();
        // The most recent earlier completed write of another value on the same key.
        let Some(w1) = done
            .iter()
            .copied()
            .filter(|&w| {
                producers[w].0 == key2
                    && producers[w].3 < call2
                    && producers[w].1 != v2
                    && !producers[w].1.is_null()
            })
            .max_by_key(|&w| producers[w].3)
        else {
            continue;
        };
        let v1 = producers[w1].1.clone();
        // The read sits between ret2 and ret2 + 1: any producer of v1 overlapping
        // (call2, read) could make it legal.
        let rescued = producers
            .iter()
            .enumerate()
            .any(|(j, p)| j != w1 && p.0 == key2 && p.1 == v1 && p.3 > call2 && p.2 <= ret2);
        if rescued {
            continue;
        }
        let p = max_process + 1;
        let mk = |kind: EventType, value: Value| Event {
            index: None,
            time: history[ret2].time,
            process: Process::Client(p),
            kind,
            f: "read".into(),
            key: key2.clone(),
            value,
            error: None,
            node: None,
        };
        let (a, b) = (mk(EventType::Invoke, Value::Null), mk(EventType::Ok, v1));
        history.insert(ret2 + 1, b);
        history.insert(ret2 + 1, a);
        for (i, e) in history.iter_mut().enumerate() {
            e.index = Some(i as u64);
        }
        return Some(ret2 + 1);
    }
    None
}
