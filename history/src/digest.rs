//! A history reduced to what the run's analyses read, built in one pass.
//!
//! Latency, throughput, recovery and op statistics need every client operation, but only
//! its times, process, function, key and outcome: about forty bytes, against several
//! hundred for a parsed [`Event`]. Nemesis events (the fault schedule) are few and kept
//! whole; the monitor's status samples are kept as `(time, term)`. Pairing is
//! [`crate::pairing::pair`]'s, run incrementally, so every figure computed from a digest is
//! the one computed from the events.

use std::collections::HashMap;

use crate::pairing::{Outcome, PairingError};
use crate::stream::{HistoryFile, StreamError};
use crate::{Event, EventType, Process};

/// A completed client operation, compactly. Strings are ids into the [`Digest`]'s tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpRecord {
    pub invoke_ns: u64,
    /// Never before `invoke_ns`.
    pub complete_ns: u64,
    /// Position of the invocation in the history.
    pub invoke_pos: u64,
    /// Position of the completion, relative to the invocation's.
    pub complete_delta: u32,
    /// Id into [`Digest::processes`].
    pub process: u32,
    /// Id into [`Digest::keys`].
    pub key: u32,
    /// Id into [`Digest::fs`].
    pub f: u16,
    pub outcome: Outcome,
    /// A `fail` whose error is the data model's answer (see [`is_refusal`]).
    pub refusal: bool,
}

impl OpRecord {
    pub fn latency_ns(&self) -> u64 {
        self.complete_ns.saturating_sub(self.invoke_ns)
    }

    pub fn invoke_pos(&self) -> usize {
        self.invoke_pos as usize
    }

    pub fn complete_pos(&self) -> usize {
        (self.invoke_pos + self.complete_delta as u64) as usize
    }
}

/// The first event that breaks the one-operation-at-a-time rule, with what an error
/// message about it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairingBreak {
    pub error: PairingError,
    /// The event's `index`.
    pub index: u64,
    pub process: String,
}

/// See the module documentation.
#[derive(Debug, Clone, Default)]
pub struct Digest {
    /// Completed client operations in completion order (as [`crate::pairing::completed_ops`]).
    pub ops: Vec<OpRecord>,
    pub fs: Vec<String>,
    /// `None` is the single register of a history without keys.
    pub keys: Vec<Option<String>>,
    pub processes: Vec<u64>,
    /// Position of the last event of each key's operations (invocations and completions),
    /// by key id: where a per-key checker has seen all of a key.
    pub key_last: Vec<u64>,
    /// Invocations of each key's operations, by key id: what a per-key checker reserves.
    pub key_invokes: Vec<u32>,
    /// Invocations still open when the history ends.
    pub pending: usize,
    pub events: u64,
    /// Client invocations, completed or not.
    pub client_invokes: u64,
    /// Client events of any type.
    pub client_events: u64,
    /// The last timestamp in the history.
    pub end_ns: u64,
    /// Every nemesis event, verbatim and in order.
    pub nemesis: Vec<Event>,
    /// The monitor's `status` samples that carry a term: `(time, term)`, in order.
    pub terms: Vec<(u64, u64)>,
    pub first_break: Option<PairingBreak>,
}

/// A definite failure that is the data model's answer (a cas whose expected value did
/// not match, a transfer from an empty account) rather than the cluster's failure to
/// answer: the cluster was available to say no.
pub fn is_refusal(error: Option<&str>) -> bool {
    let Some(e) = error else { return false };
    let e = e.to_ascii_lowercase();
    [
        "mismatch",
        "insufficient",
        "no such",
        "absent",
        "not found",
        "precondition",
    ]
    .iter()
    .any(|w| e.contains(w))
}

/// An open invocation: (position, time, f id, key id).
type Open = (u64, u64, u16, u32);

/// Builds a [`Digest`] one event at a time, in history order.
#[derive(Default)]
pub struct DigestBuilder {
    d: Digest,
    f_ids: HashMap<String, u16>,
    key_ids: HashMap<Option<String>, u32>,
    process_ids: HashMap<u64, u32>,
    open: HashMap<u64, Open>,
    pos: u64,
}

impl DigestBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    fn f_id(&mut self, f: &str) -> u16 {
        if let Some(&id) = self.f_ids.get(f) {
            return id;
        }
        // Beyond 65,535 distinct functions the history is no workload's; the rest share
        // the last id, whose name is empty.
        let id = u16::try_from(self.d.fs.len()).unwrap_or(u16::MAX);
        if id < u16::MAX {
            self.d.fs.push(f.to_string());
        }
        self.f_ids.insert(f.to_string(), id);
        id
    }

    fn key_id(&mut self, key: &Option<String>) -> u32 {
        if let Some(&id) = self.key_ids.get(key) {
            return id;
        }
        let id = self.d.keys.len() as u32;
        self.d.keys.push(key.clone());
        self.d.key_last.push(0);
        self.d.key_invokes.push(0);
        self.key_ids.insert(key.clone(), id);
        id
    }

    fn process_id(&mut self, p: u64) -> u32 {
        let n = self.d.processes.len() as u32;
        *self.process_ids.entry(p).or_insert_with(|| {
            self.d.processes.push(p);
            n
        })
    }

    fn note(&mut self, error: PairingError, e: &Event) {
        if self.d.first_break.is_none() {
            self.d.first_break = Some(PairingBreak {
                error,
                index: e.index.unwrap_or(self.pos),
                process: e.process.to_string(),
            });
        }
    }

    /// The next event of the history.
    pub fn push(&mut self, e: &Event) {
        let pos = self.pos;
        self.d.events += 1;
        self.d.end_ns = self.d.end_ns.max(e.time);
        match &e.process {
            Process::Client(p) => self.push_client(*p, pos, e),
            Process::Named(n) if n == Process::NEMESIS => self.d.nemesis.push(e.clone()),
            Process::Named(n) if n == "monitor" && e.f == "status" => {
                if let Some(t) = e.value.get("term").and_then(|t| t.as_u64()) {
                    self.d.terms.push((e.time, t));
                }
            }
            Process::Named(_) => {}
        }
        self.pos += 1;
    }

    fn push_client(&mut self, p: u64, pos: u64, e: &Event) {
        self.d.client_events += 1;
        if e.kind == EventType::Invoke {
            self.d.client_invokes += 1;
            if let Some(&(previous, ..)) = self.open.get(&p) {
                self.note(
                    PairingError::Reinvoked {
                        position: pos as usize,
                        previous: previous as usize,
                    },
                    e,
                );
            }
            let f = self.f_id(&e.f);
            let key = self.key_id(&e.key);
            self.d.key_last[key as usize] = pos;
            let n = &mut self.d.key_invokes[key as usize];
            *n = n.saturating_add(1);
            self.open.insert(p, (pos, e.time, f, key));
            return;
        }
        let Some((inv, inv_time, f, key)) = self.open.remove(&p) else {
            self.note(
                PairingError::Unmatched {
                    position: pos as usize,
                    kind: e.kind,
                },
                e,
            );
            return;
        };
        if self.d.fs.get(f as usize).map(String::as_str) != Some(e.f.as_str()) {
            let invoked = self.d.fs.get(f as usize).cloned().unwrap_or_default();
            self.note(
                PairingError::FunctionMismatch {
                    position: pos as usize,
                    invoke: inv as usize,
                    completed: e.f.clone(),
                    invoked,
                },
                e,
            );
        } else if e.key.is_some() && self.d.keys[key as usize] != e.key {
            let invoked = self.d.keys[key as usize].clone();
            self.note(
                PairingError::KeyMismatch {
                    position: pos as usize,
                    completed: e.key.clone(),
                    invoked,
                },
                e,
            );
        }
        self.d.key_last[key as usize] = pos;
        let outcome = match e.kind {
            EventType::Ok => Outcome::Ok,
            EventType::Fail => Outcome::Fail,
            _ => Outcome::Info,
        };
        let process = self.process_id(p);
        self.d.ops.push(OpRecord {
            invoke_ns: inv_time,
            complete_ns: e.time.max(inv_time),
            invoke_pos: inv,
            complete_delta: u32::try_from(pos - inv).unwrap_or(u32::MAX),
            process,
            key,
            f,
            outcome,
            refusal: outcome == Outcome::Fail && is_refusal(e.error.as_deref()),
        });
    }

    pub fn finish(mut self) -> Digest {
        self.d.pending = self.open.len();
        self.d.ops.shrink_to_fit();
        self.d
    }
}

impl Digest {
    pub fn of(history: &[Event]) -> Digest {
        let mut b = DigestBuilder::new();
        for e in history {
            b.push(e);
        }
        b.finish()
    }

    /// One pass over a history file.
    pub fn read(file: &HistoryFile) -> Result<Digest, StreamError> {
        let mut b = DigestBuilder::new();
        file.for_each(|_, e| {
            b.push(&e);
            Ok::<_, StreamError>(())
        })?;
        Ok(b.finish())
    }

    pub fn f(&self, op: &OpRecord) -> &str {
        self.fs.get(op.f as usize).map_or("", String::as_str)
    }

    pub fn key(&self, op: &OpRecord) -> Option<&str> {
        self.keys.get(op.key as usize).and_then(|k| k.as_deref())
    }

    pub fn process(&self, op: &OpRecord) -> u64 {
        self.processes[op.process as usize]
    }

    /// Whether any client operation was invoked: a history without one proves nothing.
    pub fn any_client_op(&self) -> bool {
        self.client_invokes > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pairing::{completed_ops, pair};
    use serde_json::Value;

    fn ev(p: u64, kind: EventType, f: &str, key: Option<&str>, t: u64) -> Event {
        let mut e = Event::op(p, kind, f, key, Value::Null);
        e.time = t;
        e
    }

    fn same_as_pairing(h: &[Event]) {
        let d = Digest::of(h);
        let (ops, pending) = completed_ops(h);
        assert_eq!(d.pending, pending);
        assert_eq!(d.ops.len(), ops.len());
        for (r, o) in d.ops.iter().zip(&ops) {
            assert_eq!(
                (d.process(r), d.f(r), d.key(r), r.invoke_ns, r.complete_ns, r.outcome),
                (o.process, o.f.as_str(), o.key.as_deref(), o.invoke_ns, o.complete_ns, o.outcome)
            );
            assert_eq!((r.invoke_pos(), r.complete_pos()), (o.invoke_pos, o.complete_pos));
        }
        assert_eq!(d.first_break.map(|b| b.error), pair(h).first_error);
    }

    #[test]
    fn a_digest_pairs_as_the_events_do() {
        let mut nem = ev(0, EventType::Info, "start-kill", None, 2);
        nem.process = Process::nemesis();
        let mut refused = ev(3, EventType::Fail, "cas", Some("b"), 9);
        refused.error = Some("cas-mismatch".into());
        let h = vec![
            ev(1, EventType::Invoke, "read", Some("a"), 0),
            ev(2, EventType::Invoke, "write", Some("b"), 1),
            nem,
            ev(2, EventType::Ok, "write", Some("b"), 3),
            ev(1, EventType::Info, "read", None, 4),
            ev(3, EventType::Invoke, "cas", Some("b"), 5),
            ev(4, EventType::Invoke, "read", Some("a"), 6),
            refused,
        ];
        same_as_pairing(&h);
        let d = Digest::of(&h);
        assert_eq!(d.nemesis.len(), 1);
        assert_eq!((d.client_invokes, d.end_ns, d.pending), (4, 9, 1));
        assert!(d.ops.last().unwrap().refusal);
        let b = d.keys.iter().position(|k| k.as_deref() == Some("b")).unwrap();
        assert_eq!(d.key_last[b], 7);
        let a = d.keys.iter().position(|k| k.as_deref() == Some("a")).unwrap();
        assert_eq!((d.key_invokes[a], d.key_invokes[b]), (2, 2));
    }

    #[test]
    fn the_first_break_is_the_one_pairing_names() {
        let h = vec![
            ev(1, EventType::Invoke, "read", None, 0),
            ev(1, EventType::Invoke, "write", None, 1),
            ev(1, EventType::Ok, "write", None, 2),
            ev(2, EventType::Ok, "read", None, 3),
        ];
        same_as_pairing(&h);
        let h = vec![ev(1, EventType::Invoke, "read", None, 0), ev(1, EventType::Ok, "write", None, 1)];
        same_as_pairing(&h);
        let h = vec![
            ev(1, EventType::Invoke, "read", Some("a"), 0),
            ev(1, EventType::Ok, "read", Some("b"), 1),
        ];
        same_as_pairing(&h);
    }
}
