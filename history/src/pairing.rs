//! Pairing each client invocation with its completion: the one reading of "which events form
//! an operation" that every checker shares, so that they cannot disagree about it.
//!
//! A client process runs one operation at a time, so an invocation is completed by the next
//! `ok`, `fail` or `info` of the same process. Events of named processes (the nemesis, the
//! monitor) are not client operations and are skipped. Histories that break the
//! one-at-a-time rule are still paired (lenient checkers such as `set` and `perf` judge what
//! they can), and the first break is kept for the checkers that must refuse them.

use std::collections::HashMap;

use crate::{Event, EventType};

/// One client operation: where its invocation and its completion sit in the history slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair {
    pub invoke: usize,
    /// `None` while still open at the end of the history, or when a later invocation of the
    /// same process superseded it.
    pub complete: Option<usize>,
}

/// An event that no client running one operation at a time could have produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairingError {
    #[error("invoked while its invocation at event {previous} has not completed")]
    Reinvoked { position: usize, previous: usize },
    #[error("{kind} without an invocation", kind = kind.as_str())]
    Unmatched { position: usize, kind: EventType },
    #[error("completes {completed:?} but the invocation at event {invoke} was {invoked:?}")]
    FunctionMismatch {
        position: usize,
        invoke: usize,
        completed: String,
        invoked: String,
    },
    #[error("completes key {completed:?} but the invocation was for {invoked:?}")]
    KeyMismatch {
        position: usize,
        completed: Option<String>,
        invoked: Option<String>,
    },
}

impl PairingError {
    /// Position in the history slice of the event at fault.
    pub fn position(&self) -> usize {
        match self {
            PairingError::Reinvoked { position, .. }
            | PairingError::Unmatched { position, .. }
            | PairingError::FunctionMismatch { position, .. }
            | PairingError::KeyMismatch { position, .. } => *position,
        }
    }
}

/// The operations of a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pairing {
    /// In invocation order.
    pub ops: Vec<Pair>,
    /// Invocations still open when the history ends (superseded ones not counted).
    pub pending: usize,
    /// The first event breaking the one-operation-at-a-time rule, if any.
    pub first_error: Option<PairingError>,
}

impl Pairing {
    /// The operations, or the first reason the history is not one of sequential clients.
    pub fn strict(self) -> Result<Vec<Pair>, PairingError> {
        match self.first_error {
            Some(e) => Err(e),
            None => Ok(self.ops),
        }
    }
}

/// Pairs every client invocation with its process's next completion.
pub fn pair(history: &[Event]) -> Pairing {
    // Process -> (invocation position, its slot in `ops`).
    let mut open: HashMap<u64, (usize, usize)> = HashMap::new();
    let mut ops: Vec<Pair> = Vec::with_capacity(history.len() / 2 + 1);
    let mut first_error = None;
    let mut note = |e: PairingError| {
        if first_error.is_none() {
            first_error = Some(e);
        }
    };
    for (pos, e) in history.iter().enumerate() {
        let Some(p) = e.client() else { continue };
        if e.kind == EventType::Invoke {
            if let Some(&(previous, _)) = open.get(&p) {
                note(PairingError::Reinvoked {
                    position: pos,
                    previous,
                });
            }
            open.insert(p, (pos, ops.len()));
            ops.push(Pair {
                invoke: pos,
                complete: None,
            });
            continue;
        }
        let Some((inv, slot)) = open.remove(&p) else {
            note(PairingError::Unmatched {
                position: pos,
                kind: e.kind,
            });
            continue;
        };
        let invoked = &history[inv];
        if invoked.f != e.f {
            note(PairingError::FunctionMismatch {
                position: pos,
                invoke: inv,
                completed: e.f.clone(),
                invoked: invoked.f.clone(),
            });
        } else if e.key.is_some() && invoked.key != e.key {
            note(PairingError::KeyMismatch {
                position: pos,
                completed: e.key.clone(),
                invoked: invoked.key.clone(),
            });
        }
        ops[slot].complete = Some(pos);
    }
    Pairing {
        ops,
        pending: open.len(),
        first_error,
    }
}

/// How a client operation ended.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Fail,
    /// Indeterminate: the client cannot know whether it took effect.
    Info,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Info => "info",
        }
    }
}

/// A completed client operation, with what latency and timeline views need.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletedOp {
    pub process: u64,
    pub f: String,
    pub key: Option<String>,
    pub invoke_ns: u64,
    pub complete_ns: u64,
    pub outcome: Outcome,
    /// Position of the invocation in the history slice.
    pub invoke_pos: usize,
    /// Position of the completion in the history slice.
    pub complete_pos: usize,
}

impl CompletedOp {
    pub fn latency_ns(&self) -> u64 {
        self.complete_ns.saturating_sub(self.invoke_ns)
    }
}

/// The completed operations of [`pair`], in completion order. Invocations still open when
/// the history ends are left out (they have no latency); their count is returned alongside.
pub fn completed_ops(history: &[Event]) -> (Vec<CompletedOp>, usize) {
    let pairing = pair(history);
    let mut done: Vec<(usize, usize)> = pairing
        .ops
        .iter()
        .filter_map(|p| Some((p.complete?, p.invoke)))
        .collect();
    done.sort_unstable();
    let ops = done
        .into_iter()
        .map(|(cpos, ipos)| {
            let (inv, e) = (&history[ipos], &history[cpos]);
            CompletedOp {
                process: inv.client().expect("pairs are of client events"),
                f: inv.f.clone(),
                key: inv.key.clone(),
                invoke_ns: inv.time,
                complete_ns: e.time.max(inv.time),
                outcome: match e.kind {
                    EventType::Ok => Outcome::Ok,
                    EventType::Fail => Outcome::Fail,
                    _ => Outcome::Info,
                },
                invoke_pos: ipos,
                complete_pos: cpos,
            }
        })
        .collect();
    (ops, pairing.pending)
}

/// The last timestamp in the history: the end of the observed run.
pub fn history_end_ns(history: &[Event]) -> u64 {
    history.iter().map(|e| e.time).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Event, EventType::*, Process};
    use serde_json::Value;

    fn ev(p: u64, kind: EventType, f: &str, t: u64) -> Event {
        let mut e = Event::op(p, kind, f, None, Value::Null);
        e.time = t;
        e
    }

    #[test]
    fn pairs_per_process_in_invocation_order_and_skips_the_nemesis() {
        let mut nem = ev(0, Info, "kill", 2);
        nem.process = Process::nemesis();
        let h = vec![
            ev(1, Invoke, "read", 0),
            ev(2, Invoke, "write", 1),
            nem,
            ev(2, Ok, "write", 3),
            ev(1, Info, "read", 4),
            ev(3, Invoke, "read", 5),
        ];
        let p = pair(&h);
        assert_eq!(p.first_error, None);
        assert_eq!(p.pending, 1);
        let got: Vec<(usize, Option<usize>)> =
            p.ops.iter().map(|o| (o.invoke, o.complete)).collect();
        assert_eq!(got, vec![(0, Some(4)), (1, Some(3)), (5, None)]);
        let (done, pending) = completed_ops(&h);
        assert_eq!(pending, 1);
        // Completion order, not invocation order.
        assert_eq!(
            done.iter().map(|o| o.invoke_pos).collect::<Vec<_>>(),
            vec![1, 0]
        );
        assert_eq!(done[1].outcome, Outcome::Info);
    }

    #[test]
    fn a_reinvocation_supersedes_the_open_op_and_is_the_first_error() {
        let h = vec![
            ev(1, Invoke, "read", 0),
            ev(1, Invoke, "write", 1),
            ev(1, Ok, "write", 2),
            ev(2, Ok, "read", 3),
        ];
        let p = pair(&h);
        assert_eq!(p.pending, 0, "the superseded invocation is not pending");
        assert_eq!(
            p.ops,
            vec![
                Pair {
                    invoke: 0,
                    complete: None
                },
                Pair {
                    invoke: 1,
                    complete: Some(2)
                }
            ]
        );
        assert_eq!(
            p.clone().strict(),
            Err(PairingError::Reinvoked {
                position: 1,
                previous: 0
            })
        );
        assert_eq!(p.first_error.unwrap().position(), 1);
    }

    #[test]
    fn a_completion_of_another_function_is_refused_by_strict_pairing_only() {
        let h = vec![ev(1, Invoke, "read", 0), ev(1, Ok, "write", 1)];
        let p = pair(&h);
        assert_eq!(p.ops[0].complete, Some(1));
        let e = p.strict().unwrap_err();
        assert_eq!(
            e.to_string(),
            "completes \"write\" but the invocation at event 0 was \"read\""
        );
    }
}
