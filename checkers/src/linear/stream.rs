//! Checking a history file key by key without holding it.
//!
//! Keys are independent, so a key can be judged as soon as the history holds nothing more
//! of it: the [`Digest`] knows where each key's last event is. One pass converts each
//! operation when it completes, buffers it with its key's, checks the key at its last
//! event and frees it; only the key's model ops are held, never its events. A violation's
//! counterexample names ops by position, and one more pass reads just those events to
//! show them. The result is the in-memory check's: positions are the same, each key is
//! checked with the same limits (probed first when there are several keys, and a key
//! the probe cannot decide waits until every other key has been checked, largest
//! first), and the keys' results are combined in the same order.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::Instant;

use faultline_history::digest::Digest;
use faultline_history::stream::{HistoryFile, StreamError};
use serde_json::Value;

use super::search::Limits;
use super::{
    Budget, Certainty, Counterexample, HistoryError, KeyResult, LinReport, ModelKind, OpView,
    PROBE_CONFIGS, PreOp, Prepasses, ViewFn, check_key, combine, view_of,
};
use crate::history::Event;
use crate::registry::Validity;

/// [`super::check`] over a history file.
pub fn check_stream(
    file: &HistoryFile,
    digest: &Digest,
    model: ModelKind,
    budget: &Budget,
) -> Result<Result<LinReport, HistoryError>, StreamError> {
    use super::{CasRegister, Kv, MultiRegister, model::Mutex};
    match model {
        ModelKind::CasRegister => check_model_stream(&CasRegister, file, digest, budget),
        ModelKind::Kv => check_model_stream(&Kv, file, digest, budget),
        ModelKind::Mutex => check_model_stream(&Mutex, file, digest, budget),
        ModelKind::MultiRegister => check_model_stream(&MultiRegister, file, digest, budget),
    }
}

/// A key checked, ranked as the in-memory check ranks it.
struct Ranked {
    len: usize,
    key: Option<String>,
    result: KeyResult,
}

/// [`super::check_model`] over a history file, with `digest` read from the same file.
/// The outer error is the file's; the inner one the history's.
pub fn check_model_stream<M: Prepasses>(
    model: &M,
    file: &HistoryFile,
    digest: &Digest,
    budget: &Budget,
) -> Result<Result<LinReport, HistoryError>, StreamError> {
    check_with_table(model, file, digest, budget, SHARED_OPS_MAX)
}

fn check_with_table<M: Prepasses>(
    model: &M,
    file: &HistoryFile,
    digest: &Digest,
    budget: &Budget,
    shared_ops_max: usize,
) -> Result<Result<LinReport, HistoryError>, StreamError> {
    let start = Instant::now();
    if let Some(b) = &digest.first_break {
        return Ok(Err(HistoryError {
            position: b.error.position(),
            index: b.index,
            process: b.process.clone(),
            message: b.error.to_string(),
        }));
    }
    let ops_total = digest.client_invokes as usize;
    if ops_total == 0 {
        return Ok(Ok(LinReport {
            valid: Validity::Unknown,
            model: model.name().to_string(),
            ops: 0,
            keys: 0,
            elapsed_ms: start.elapsed().as_secs_f64() * 1e3,
            configs: 0,
            keys_without_search: 0,
            search_peak_bytes: 0,
            unknown_reason: Some(crate::registry::NO_CLIENT_OPS.to_string()),
            counterexample: None,
        }));
    }
    let key_ids: HashMap<Option<&str>, u32> = digest
        .keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_deref(), i as u32))
        .collect();
    let several_keys = digest.keys.len() > 1;

    let deadline = budget.time_limit.map(|t| start + t);
    let memory_used = AtomicUsize::new(0);
    let cancel = AtomicBool::new(false);
    let limits = Limits {
        deadline,
        memory_bytes_max: budget.memory_limit_bytes,
        memory_used: &memory_used,
        cancel: &cancel,
        configs_max: u64::MAX,
    };
    let probe_limits = Limits {
        configs_max: PROBE_CONFIGS,
        ..limits
    };
    // Positions only; filled in from the events once the checking is done.
    let placeholder: ViewFn<'_, M::Op> = &|p| OpView {
        process: 0,
        kind: String::new(),
        f: String::new(),
        value: Value::Null,
        invoke_index: p.invoke as u64,
        complete_index: p.complete.map(|c| c as u64),
    };

    // Open invocations by process: (position, key id, the event).
    let mut open: HashMap<u64, (usize, u32, Event)> = HashMap::new();
    let mut open_per_key: Vec<u32> = vec![0; digest.keys.len()];
    let mut table: OpTable<M::Op> = OpTable::new(shared_ops_max);
    let mut buffered: HashMap<u32, KeyBuf<M::Op>> = HashMap::new();
    let mut first_error: Option<HistoryError> = None;
    let mut keys = 0usize;
    let mut ranked: Vec<Ranked> = Vec::new();
    let mut deferred: Vec<(Option<String>, Vec<PreOp<M::Op>>)> = Vec::new();
    let mut invalid_seen = false;

    let convert = |inv_pos: usize,
                   inv: &Event,
                   comp: Option<(usize, &Event)>,
                   key: u32,
                   buffered: &mut HashMap<u32, KeyBuf<M::Op>>,
                   table: &mut OpTable<M::Op>,
                   first_error: &mut Option<HistoryError>| {
        match model.op(inv, comp.map(|(_, c)| c)) {
            Err(message) => {
                // The in-memory check names the first malformed op in invocation order.
                if first_error.as_ref().is_none_or(|e| inv_pos < e.position) {
                    *first_error = Some(HistoryError {
                        position: inv_pos,
                        index: inv.index.unwrap_or(inv_pos as u64),
                        process: inv.process.to_string(),
                        message,
                    });
                }
            }
            Ok(None) => {}
            Ok(Some((op, certainty))) => {
                let buf = buffered.entry(key).or_insert_with(|| {
                    let n = digest.key_invokes.get(key as usize).copied().unwrap_or(0);
                    KeyBuf::with_capacity(n as usize)
                });
                buf.push(
                    table,
                    op,
                    certainty == Certainty::Optional,
                    inv_pos,
                    comp.map(|(c, _)| c),
                );
            }
        }
    };

    file.for_each(|pos, e| {
        let Some(p) = e.client() else { return Ok::<_, StreamError>(()) };
        let key = if e.kind == crate::history::EventType::Invoke {
            let Some(&k) = key_ids.get(&e.key.as_deref()) else {
                return Ok(());
            };
            open_per_key[k as usize] += 1;
            open.insert(p, (pos, k, e));
            k
        } else {
            // Strict pairing held (the digest found no break): every completion has its
            // invocation open.
            let Some((inv_pos, k, inv)) = open.remove(&p) else {
                return Ok(());
            };
            open_per_key[k as usize] -= 1;
            convert(inv_pos, &inv, Some((pos, &e)), k, &mut buffered, &mut table, &mut first_error);
            k
        };
        if digest.key_last.get(key as usize) != Some(&(pos as u64)) {
            return Ok(());
        }
        // The key's last event: what is still open never completes.
        if open_per_key[key as usize] > 0 {
            let procs: Vec<u64> = open
                .iter()
                .filter(|(_, (_, k, _))| *k == key)
                .map(|(p, _)| *p)
                .collect();
            let mut pend: Vec<(usize, Event)> = procs
                .into_iter()
                .filter_map(|p| open.remove(&p))
                .map(|(pos, _, e)| (pos, e))
                .collect();
            pend.sort_by_key(|(pos, _)| *pos);
            for (inv_pos, inv) in pend {
                convert(inv_pos, &inv, None, key, &mut buffered, &mut table, &mut first_error);
            }
            open_per_key[key as usize] = 0;
        }
        let Some(buf) = buffered.remove(&key) else {
            return Ok(());
        };
        keys += 1;
        if first_error.is_some() || invalid_seen {
            // The verdict is already the error or a violation: nothing more to learn.
            return Ok(());
        }
        let mut ops = buf.unpack(&table);
        ops.sort_by_key(|o| o.call);
        let name = digest.keys[key as usize].clone();
        let len = ops.len();
        let r = if several_keys {
            let r = check_key(model, placeholder, name.clone(), ops.clone(), &probe_limits);
            if r.probe_exhausted {
                deferred.push((name, ops));
                return Ok(());
            }
            r
        } else {
            check_key(model, placeholder, name.clone(), ops, &limits)
        };
        invalid_seen |= r.valid == Validity::Invalid;
        ranked.push(Ranked { len, key: name, result: r });
        Ok(())
    })?;
    if let Some(e) = first_error {
        return Ok(Err(e));
    }
    deferred.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then_with(|| a.0.cmp(&b.0)));
    for (name, ops) in deferred {
        if invalid_seen {
            break;
        }
        let len = ops.len();
        let r = check_key(model, placeholder, name.clone(), ops, &limits);
        invalid_seen |= r.valid == Validity::Invalid;
        ranked.push(Ranked { len, key: name, result: r });
    }
    ranked.sort_by(|a, b| b.len.cmp(&a.len).then_with(|| a.key.cmp(&b.key)));
    let mut report = combine(
        model.name(),
        ops_total,
        keys,
        ranked.into_iter().map(|r| r.result).collect(),
    );
    if let Some(c) = &mut report.counterexample {
        fill_views(file, c)?;
    }
    report.elapsed_ms = start.elapsed().as_secs_f64() * 1e3;
    Ok(Ok(report))
}

/// Distinct ops stored once, so that a buffered op costs its positions only: a register
/// history has a few dozen distinct ops (reads, writes and cas of a handful of values),
/// and an hour of it is millions of ops all held until the final reads, which end every
/// key at once. Sharing stops at [`SHARED_OPS_MAX`] distinct ops (a history of unique
/// values gains nothing from it); later ones stay with their key and are freed with it.
struct OpTable<O> {
    ops: Vec<O>,
    ids: HashMap<O, u32>,
    shared_max: usize,
}

const SHARED_OPS_MAX: usize = 1 << 16;
/// Marks an id as an index into the key's own ops rather than the shared table.
const OWN: u32 = 1 << 31;

impl<O: Clone + Eq + std::hash::Hash> OpTable<O> {
    fn new(shared_max: usize) -> Self {
        OpTable { ops: Vec::new(), ids: HashMap::new(), shared_max: shared_max.min(OWN as usize) }
    }
}

/// A buffered op in 24 bytes, rebuilt into a [`PreOp`] when its key is checked.
#[derive(Clone, Copy)]
struct Packed {
    invoke: u64,
    /// `u64::MAX`: never completed.
    complete: u64,
    /// An [`OpTable`] id, or with [`OWN`] set an index into [`KeyBuf::own`].
    op: u32,
    optional: bool,
}

/// One key's ops while the pass waits for the key's last event.
struct KeyBuf<O> {
    packed: Vec<Packed>,
    own: Vec<O>,
}

impl<O: Clone + Eq + std::hash::Hash> KeyBuf<O> {
    /// Reserves the key's invocations as the digest counted them, so a key's buffer never
    /// doubles past what it holds.
    fn with_capacity(n: usize) -> Self {
        KeyBuf { packed: Vec::with_capacity(n), own: Vec::new() }
    }

    fn push(&mut self, table: &mut OpTable<O>, op: O, optional: bool, invoke: usize, complete: Option<usize>) {
        let id = match table.ids.get(&op) {
            Some(&id) => id,
            None if table.ops.len() < table.shared_max => {
                let id = table.ops.len() as u32;
                table.ops.push(op.clone());
                table.ids.insert(op, id);
                id
            }
            None => {
                // 2^31 unshared ops of one key would be over a hundred gigabytes of them
                // in memory already.
                let i = self.own.len() as u32;
                assert!(i < OWN, "more than 2^31 distinct ops in one key");
                self.own.push(op);
                OWN | i
            }
        };
        self.packed.push(Packed {
            invoke: invoke as u64,
            complete: complete.map_or(u64::MAX, |c| c as u64),
            op: id,
            optional,
        });
    }

    /// The key's ops as the in-memory check builds them.
    fn unpack(self, table: &OpTable<O>) -> Vec<PreOp<O>> {
        self.packed
            .iter()
            .map(|p| {
                let op = if p.op & OWN != 0 {
                    self.own[(p.op & !OWN) as usize].clone()
                } else {
                    table.ops[p.op as usize].clone()
                };
                let complete = (p.complete != u64::MAX).then_some(p.complete as usize);
                PreOp {
                    op,
                    optional: p.optional,
                    call: p.invoke + 1,
                    ret: match complete {
                        Some(c) if !p.optional => c as u64 + 1,
                        _ => u64::MAX,
                    },
                    invoke: p.invoke as usize,
                    complete,
                }
            })
            .collect()
    }
}

fn views_mut(c: &mut Counterexample) -> impl Iterator<Item = &mut OpView> {
    c.op.iter_mut()
        .chain(c.concurrent.iter_mut().map(|x| &mut x.op))
        .chain(c.prefix_tail.iter_mut().map(|s| &mut s.op))
        .chain(c.related.iter_mut())
}

/// Replaces the placeholder views of `c` by the events they name, read in one pass.
fn fill_views(file: &HistoryFile, c: &mut Counterexample) -> Result<(), StreamError> {
    let wanted: HashSet<usize> = views_mut(c)
        .flat_map(|v| std::iter::once(v.invoke_index as usize).chain(v.complete_index.map(|i| i as usize)))
        .collect();
    let mut events: HashMap<usize, Event> = HashMap::with_capacity(wanted.len());
    file.for_each(|pos, e| {
        if wanted.contains(&pos) {
            events.insert(pos, e);
        }
        Ok::<_, StreamError>(())
    })?;
    for v in views_mut(c) {
        let inv_pos = v.invoke_index as usize;
        let comp_pos = v.complete_index.map(|i| i as usize);
        // The file is the one the digest was read from; a file changed in between is
        // shown as far as it still holds the ops.
        let Some(inv) = events.get(&inv_pos) else { continue };
        let comp = comp_pos.and_then(|c| events.get(&c).map(|e| (e, c)));
        *v = view_of(inv, inv_pos, comp);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::history::{EventType, Process};
    use crate::linear::synth::{SynthOpts, generate, plant_stale_read};
    use crate::linear::{CasRegister, check_model};

    fn budget() -> Budget {
        Budget {
            time_limit: Some(Duration::from_secs(120)),
            memory_limit_bytes: 1 << 30,
            threads: 1,
        }
    }

    fn file_of(name: &str, h: &[Event]) -> HistoryFile {
        let dir = std::env::temp_dir().join(format!("faultline-linstream-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("history.jsonl");
        let mut text = String::new();
        for e in h {
            text.push_str(&serde_json::to_string(e).unwrap());
            text.push('\n');
        }
        std::fs::write(&path, text).unwrap();
        HistoryFile::new(path)
    }

    /// Both checks of `h`, as JSON without the wall time; a history error as its message.
    fn both(name: &str, h: &[Event]) -> (Value, Value) {
        let file = file_of(name, h);
        let digest = Digest::read(&file).unwrap();
        let json = |r: Result<LinReport, HistoryError>| match r {
            Ok(r) => {
                let mut v = serde_json::to_value(&r).unwrap();
                v.as_object_mut().unwrap().remove("elapsed_ms");
                v
            }
            Err(e) => Value::String(e.to_string()),
        };
        let memory = json(check_model(&CasRegister, &file.read_all().unwrap(), &budget()));
        let streamed = json(check_model_stream(&CasRegister, &file, &digest, &budget()).unwrap());
        std::fs::remove_dir_all(file.path().parent().unwrap()).unwrap();
        (memory, streamed)
    }

    /// How much search a check spent depends on which keys it reached before a violation
    /// stopped it; everything else must agree.
    fn without_effort(mut v: Value) -> Value {
        if let Some(o) = v.as_object_mut() {
            for k in ["configs", "keys_without_search", "search_peak_bytes"] {
                o.remove(k);
            }
        }
        v
    }

    fn synth(seed: u64, keys: usize, ops: usize, crash_ratio: f64) -> Vec<Event> {
        let mut h = generate(&SynthOpts {
            seed,
            ops,
            clients: 6,
            keys,
            cas_ratio: 0.3,
            unique_values: false,
            crash_ratio,
            ..SynthOpts::default()
        });
        for (i, e) in h.iter_mut().enumerate() {
            e.index = Some(i as u64);
        }
        h
    }

    /// `late` after `early`, its keys renamed and processes moved so that nothing is shared.
    fn then(early: Vec<Event>, late: Vec<Event>) -> Vec<Event> {
        let shift = early.iter().filter_map(Event::client).max().unwrap_or(0) + 1;
        let t0 = early.iter().map(|e| e.time).max().unwrap_or(0) + 1;
        let mut h = early;
        h.extend(late.into_iter().map(|mut e| {
            e.key = e.key.map(|k| format!("late-{k}"));
            e.process = Process::Client(e.client().unwrap() + shift);
            e.time += t0;
            e
        }));
        for (i, e) in h.iter_mut().enumerate() {
            e.index = Some(i as u64);
        }
        h
    }

    #[test]
    fn streamed_and_in_memory_checks_agree_on_valid_histories() {
        for (name, h) in [
            ("one-register", synth(1, 1, 800, 0.05)),
            ("interleaved-keys", synth(2, 7, 3000, 0.05)),
            ("keys-one-after-another", then(synth(3, 3, 900, 0.0), synth(4, 4, 900, 0.1))),
        ] {
            let (memory, streamed) = both(name, &h);
            assert_eq!(memory["valid"], true, "{name}: {memory}");
            assert!(memory["keys"].as_u64().unwrap() >= 1, "{name}");
            assert_eq!(streamed, memory, "{name}");
        }
    }

    #[test]
    fn ops_past_the_shared_table_are_kept_with_their_key_and_checked_the_same() {
        // Two distinct ops fit in the table; every other one is kept with its key.
        for (name, mut h, valid) in [
            ("own-valid", synth(11, 5, 2000, 0.05), true),
            ("own-invalid", synth(12, 3, 1500, 0.0), false),
        ] {
            if !valid {
                plant_stale_read(&mut h, 12).expect("a spot for a stale read");
            }
            let file = file_of(name, &h);
            let digest = Digest::read(&file).unwrap();
            let memory = check_model(&CasRegister, &file.read_all().unwrap(), &budget()).unwrap();
            let streamed = check_with_table(&CasRegister, &file, &digest, &budget(), 2).unwrap().unwrap();
            std::fs::remove_dir_all(file.path().parent().unwrap()).unwrap();
            assert_eq!(memory.valid == Validity::Valid, valid, "{name}: {memory:?}");
            let json = |r: &LinReport| {
                let mut v = serde_json::to_value(r).unwrap();
                v.as_object_mut().unwrap().remove("elapsed_ms");
                without_effort(v)
            };
            assert_eq!(json(&streamed), json(&memory), "{name}");
        }
    }

    #[test]
    fn a_key_left_pending_at_its_end_is_checked_with_its_open_ops() {
        let mut h = synth(5, 4, 1200, 0.0);
        // Drop three processes' last completions: those ops stay open to the end.
        let mut last: HashMap<u64, usize> = HashMap::new();
        for (i, e) in h.iter().enumerate() {
            if let (Some(p), false) = (e.client(), e.kind == EventType::Invoke) {
                last.insert(p, i);
            }
        }
        let mut drop: Vec<usize> = last.into_values().collect();
        drop.sort_unstable();
        drop.truncate(3);
        for i in drop.iter().rev() {
            h.remove(*i);
        }
        let d = Digest::of(&h);
        assert_eq!((d.pending, d.first_break.clone()), (3, None));
        let (memory, streamed) = both("pending", &h);
        assert_eq!(memory["valid"], true, "{memory}");
        assert_eq!(streamed, memory);
    }

    #[test]
    fn a_violation_in_a_key_in_the_middle_gives_the_same_counterexample() {
        let mut early = synth(6, 3, 1500, 0.02);
        let planted = plant_stale_read(&mut early, 6).expect("a spot for a stale read");
        let bad_key = early[planted].key.clone();
        let h = then(early, synth(7, 5, 3000, 0.02));
        let (memory, streamed) = both("invalid-middle", &h);
        assert_eq!(memory["valid"], false, "{memory}");
        let c = &memory["counterexample"];
        assert_eq!(c["key"], serde_json::json!(bad_key), "{c}");
        // The culprit is a real op, shown with its events, not a placeholder.
        assert_eq!(streamed["counterexample"]["op"]["f"], "read", "{streamed}");
        assert_eq!(without_effort(streamed), without_effort(memory));
    }

    #[test]
    fn a_violation_in_a_single_register_is_found_identically() {
        let mut h = synth(8, 1, 1000, 0.0);
        plant_stale_read(&mut h, 8).expect("a spot for a stale read");
        let (memory, streamed) = both("invalid-one", &h);
        assert_eq!(memory["valid"], false, "{memory}");
        assert_eq!(streamed, memory);
    }

    #[test]
    fn malformed_histories_are_refused_with_the_same_error() {
        // A client invoking twice at once: the pairing error.
        let mut h = synth(9, 2, 200, 0.0);
        let p = h[0].client().unwrap();
        let mut again = h[0].clone();
        again.index = None;
        let second = h.iter().position(|e| e.client() == Some(p) && e.kind != EventType::Invoke).unwrap();
        h.insert(second, again);
        for (i, e) in h.iter_mut().enumerate() {
            e.index = Some(i as u64);
        }
        let (memory, streamed) = both("reinvoked", &h);
        assert!(memory.as_str().unwrap().contains("invoked while"), "{memory}");
        assert_eq!(streamed, memory);

        // Two ops the model cannot read; the earlier-invoked one is named, though the
        // later one completes first.
        let mut h = synth(10, 3, 300, 0.0);
        let invokes: Vec<usize> = (0..h.len()).filter(|&i| h[i].kind == EventType::Invoke).collect();
        for &i in &[invokes[100], invokes[101]] {
            h[i].f = "cas".into();
            h[i].value = serde_json::json!("not a pair");
            let p = h[i].client();
            let c = (i + 1..h.len()).find(|&j| h[j].client() == p).unwrap();
            h[c].f = "cas".into();
        }
        let (memory, streamed) = both("malformed-op", &h);
        assert!(memory.is_string(), "{memory}");
        assert!(memory.as_str().unwrap().contains(&format!("event {}", invokes[100])), "{memory}");
        assert_eq!(streamed, memory);
    }
}
