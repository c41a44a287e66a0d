//! The replicated state machine: a map from string keys to small values.
//!
//! Commands carry `(client, seq)` so a command that was retried after an indefinite outcome
//! (timeout, leader change) takes effect at most once: the state machine remembers each
//! client's latest sequence number and result. Everything here is deterministic, because every
//! replica must reach the same state from the same command sequence.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// Values are integers or small strings; `append` turns a key into a list.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Value {
    Int(i64),
    Str(String),
    List(Vec<Value>),
}

impl Value {
    /// The history's JSON form: integers and strings as themselves, lists as arrays.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Str(s) => serde_json::Value::from(s.clone()),
            Value::List(l) => serde_json::Value::Array(l.iter().map(Value::to_json).collect()),
        }
    }

    /// Inverse of [`Value::to_json`]; `None` for JSON that has no `Value` form.
    pub fn from_json(v: &serde_json::Value) -> Option<Value> {
        match v {
            serde_json::Value::Number(n) => n.as_i64().map(Value::Int),
            serde_json::Value::String(s) => Some(Value::Str(s.clone())),
            serde_json::Value::Array(a) => a.iter().map(Value::from_json).collect::<Option<Vec<_>>>().map(Value::List),
            _ => None,
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Str(v.to_string())
    }
}

/// Limits that keep one request from bloating the log or the state.
pub const MAX_KEY_BYTES: usize = 256;
pub const MAX_VALUE_BYTES: usize = 4096;
pub const MAX_LIST_LEN: usize = 100_000;
/// Sessions kept for deduplication; beyond this the least recently used are forgotten (a
/// forgotten client's retry of an old command is then refused rather than re-applied).
pub const MAX_SESSIONS: usize = 50_000;
/// Micro-ops in one transaction: enough for any isolation workload, small enough that one
/// transaction stays one modest log entry.
pub const MAX_TXN_OPS: usize = 256;

/// One step of a transaction. Jepsen's `[f, key, value]` triple with `f` one of `r`, `w`,
/// `append`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MicroOp {
    Read { key: String },
    Write { key: String, value: Value },
    Append { key: String, value: Value },
}

impl MicroOp {
    pub fn key(&self) -> &str {
        match self {
            MicroOp::Read { key } | MicroOp::Write { key, .. } | MicroOp::Append { key, .. } => key,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Read { key: String },
    Write { key: String, value: Value },
    Cas { key: String, from: Value, to: Value },
    Append { key: String, value: Value },
    /// Micro-ops over any keys, applied atomically as one log entry: either all take effect
    /// or (when one is rejected) none do, and a read sees the transaction's earlier writes.
    Txn { ops: Vec<MicroOp> },
}

impl Op {
    /// The key of a single-key operation; a transaction's first key (empty when it has none).
    pub fn key(&self) -> &str {
        match self {
            Op::Read { key } | Op::Write { key, .. } | Op::Cas { key, .. } | Op::Append { key, .. } => key,
            Op::Txn { ops } => ops.first().map_or("", MicroOp::key),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Op::Read { .. } => "read",
            Op::Write { .. } => "write",
            Op::Cas { .. } => "cas",
            Op::Append { .. } => "append",
            Op::Txn { .. } => "txn",
        }
    }

    /// Rejects requests that could never succeed, before they reach the log.
    pub fn validate(&self) -> Result<(), OpError> {
        let check_key = |k: &str| if k.len() > MAX_KEY_BYTES { Err(OpError::KeyTooLong) } else { Ok(()) };
        let check = |v: &Value| -> Result<(), OpError> {
            match v {
                Value::Str(s) if s.len() > MAX_VALUE_BYTES => Err(OpError::ValueTooLong),
                Value::List(_) => Err(OpError::ListValue),
                _ => Ok(()),
            }
        };
        check_key(self.key())?;
        match self {
            Op::Read { .. } => Ok(()),
            Op::Write { value, .. } | Op::Append { value, .. } => check(value),
            Op::Cas { from, to, .. } => check(from).and(check(to)),
            Op::Txn { ops } => {
                if ops.is_empty() {
                    return Err(OpError::EmptyTxn);
                }
                if ops.len() > MAX_TXN_OPS {
                    return Err(OpError::TxnTooLong);
                }
                ops.iter().try_for_each(|m| {
                    check_key(m.key())?;
                    match m {
                        MicroOp::Read { .. } => Ok(()),
                        MicroOp::Write { value, .. } | MicroOp::Append { value, .. } => check(value),
                    }
                })
            }
        }
    }
}

/// Why an operation can never succeed (the wire carries the message as text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    #[error("key longer than {MAX_KEY_BYTES} bytes")]
    KeyTooLong,
    #[error("value longer than {MAX_VALUE_BYTES} bytes")]
    ValueTooLong,
    #[error("list values cannot be written directly; use append")]
    ListValue,
    #[error("a transaction needs at least one micro-op")]
    EmptyTxn,
    #[error("a transaction has more than {MAX_TXN_OPS} micro-ops")]
    TxnTooLong,
}

/// A log entry's payload as the KV layer encodes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub client: u64,
    /// Per-client, strictly increasing; 0 means "do not deduplicate".
    pub seq: u64,
    pub op: Op,
}

impl Command {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("commands always serialize")
    }

    pub fn decode(bytes: &[u8]) -> Result<Command, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

/// The outcome of applying one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpResult {
    /// `None`: the key was never written.
    Read(Option<Value>),
    Written,
    /// Compare-and-set did not match: a DEFINITE failure, nothing changed.
    CasMismatch { current: Option<Value> },
    /// Append to a key that holds a non-list value, or past the list limit.
    Rejected(String),
    /// A retry of a command older than the client's latest: it was already applied, but its
    /// result is no longer known.
    Stale,
    /// A transaction committed; one entry per micro-op: what a read saw (`None`: never
    /// written), `None` for writes and appends.
    Txn(Vec<Option<Value>>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Session {
    seq: u64,
    result: OpResult,
    /// Apply index of the last command, for deterministic least-recently-used eviction.
    last_index: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kv {
    data: BTreeMap<String, Value>,
    sessions: HashMap<u64, Session>,
}

impl Kv {
    pub fn new() -> Self {
        Kv::default()
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.data.get(key)
    }

    /// The key-value data without dedup sessions, e.g. to compare replicas.
    pub fn dump(&self) -> &BTreeMap<String, Value> {
        &self.data
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Applies a committed command at log position `index`.
    pub fn apply(&mut self, index: u64, cmd: &Command) -> OpResult {
        if cmd.seq != 0
            && let Some(s) = self.sessions.get(&cmd.client)
        {
            if cmd.seq == s.seq {
                return s.result.clone();
            }
            if cmd.seq < s.seq {
                return OpResult::Stale;
            }
        }
        let result = self.execute(&cmd.op);
        if cmd.seq != 0 {
            self.sessions.insert(cmd.client, Session { seq: cmd.seq, result: result.clone(), last_index: index });
            if self.sessions.len() > MAX_SESSIONS {
                self.evict_sessions();
            }
        }
        result
    }

    /// Reads are served from applied state after a read-index confirmation, never logged.
    pub fn read(&self, key: &str) -> OpResult {
        OpResult::Read(self.data.get(key).cloned())
    }

    fn execute(&mut self, op: &Op) -> OpResult {
        if let Err(e) = op.validate() {
            return OpResult::Rejected(e.to_string());
        }
        match op {
            Op::Read { key } => self.read(key),
            Op::Write { key, value } => {
                self.data.insert(key.clone(), value.clone());
                OpResult::Written
            }
            Op::Cas { key, from, to } => {
                let current = self.data.get(key);
                if current == Some(from) {
                    self.data.insert(key.clone(), to.clone());
                    OpResult::Written
                } else {
                    OpResult::CasMismatch { current: current.cloned() }
                }
            }
            Op::Append { key, value } => match append_to(self.data.get_mut(key), value) {
                Ok(Some(new)) => {
                    self.data.insert(key.clone(), new);
                    OpResult::Written
                }
                Ok(None) => OpResult::Written,
                Err(why) => OpResult::Rejected(why),
            },
            Op::Txn { ops } => self.execute_txn(ops),
        }
    }

    /// Runs the micro-ops against a private overlay of the touched keys and installs the
    /// overlay only when every one succeeded, so a rejected append leaves nothing behind.
    fn execute_txn(&mut self, ops: &[MicroOp]) -> OpResult {
        let mut overlay: BTreeMap<&str, Option<Value>> = BTreeMap::new();
        let mut results = Vec::with_capacity(ops.len());
        for m in ops {
            let key = m.key();
            let slot = overlay.entry(key).or_insert_with(|| self.data.get(key).cloned());
            match m {
                MicroOp::Read { .. } => results.push(slot.clone()),
                MicroOp::Write { value, .. } => {
                    *slot = Some(value.clone());
                    results.push(None);
                }
                MicroOp::Append { value, .. } => {
                    match append_to(slot.as_mut(), value) {
                        Ok(Some(new)) => *slot = Some(new),
                        Ok(None) => {}
                        Err(why) => return OpResult::Rejected(why),
                    }
                    results.push(None);
                }
            }
        }
        for (key, v) in overlay {
            match v {
                Some(v) => {
                    self.data.insert(key.to_string(), v);
                }
                None => {
                    self.data.remove(key);
                }
            }
        }
        OpResult::Txn(results)
    }

    fn evict_sessions(&mut self) {
        // Drop the oldest tenth in one go so eviction is amortized, ties broken by client id
        // so every replica evicts the same sessions.
        let mut ages: Vec<(u64, u64)> = self.sessions.iter().map(|(c, s)| (s.last_index, *c)).collect();
        ages.sort_unstable();
        for (_, c) in ages.iter().take(MAX_SESSIONS / 10) {
            self.sessions.remove(c);
        }
    }

    pub fn snapshot(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("state machine always serializes")
    }

    pub fn restore(bytes: &[u8]) -> Result<Kv, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}

/// Appends in place; `Ok(Some(list))` when the key was absent and a new list is needed.
fn append_to(current: Option<&mut Value>, value: &Value) -> Result<Option<Value>, String> {
    match current {
        None => Ok(Some(Value::List(vec![value.clone()]))),
        Some(Value::List(l)) if l.len() < MAX_LIST_LEN => {
            l.push(value.clone());
            Ok(None)
        }
        Some(Value::List(_)) => Err(format!("list longer than {MAX_LIST_LEN}")),
        Some(_) => Err("append to a key that does not hold a list".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(client: u64, seq: u64, op: Op) -> Command {
        Command { client, seq, op }
    }

    #[test]
    fn cas_compares_and_retries_are_deduplicated() {
        let mut kv = Kv::new();
        let w = cmd(1, 1, Op::Write { key: "k".into(), value: 1.into() });
        assert_eq!(kv.apply(1, &w), OpResult::Written);
        let c = cmd(1, 2, Op::Cas { key: "k".into(), from: 1.into(), to: 2.into() });
        assert_eq!(kv.apply(2, &c), OpResult::Written);
        // The same command again (a client retry) must not apply twice: it returns the first result.
        assert_eq!(kv.apply(3, &c), OpResult::Written);
        assert_eq!(kv.get("k"), Some(&Value::Int(2)));
        assert_eq!(kv.apply(4, &w), OpResult::Stale);
        assert_eq!(kv.get("k"), Some(&Value::Int(2)));
        let bad = cmd(2, 1, Op::Cas { key: "k".into(), from: 1.into(), to: 3.into() });
        assert_eq!(kv.apply(5, &bad), OpResult::CasMismatch { current: Some(Value::Int(2)) });
    }

    #[test]
    fn append_builds_a_list_and_snapshot_round_trips() {
        let mut kv = Kv::new();
        for (i, x) in [3, 1, 2].into_iter().enumerate() {
            kv.apply(i as u64 + 1, &cmd(0, 0, Op::Append { key: "l".into(), value: x.into() }));
        }
        assert_eq!(kv.read("l"), OpResult::Read(Some(Value::List(vec![3.into(), 1.into(), 2.into()]))));
        let back = Kv::restore(&kv.snapshot()).unwrap();
        assert_eq!(back, kv);
        assert!(matches!(kv.apply(9, &cmd(0, 0, Op::Write { key: "l".into(), value: Value::List(vec![]) })), OpResult::Rejected(_)));
    }

    fn r(k: &str) -> MicroOp {
        MicroOp::Read { key: k.into() }
    }
    fn w(k: &str, v: i64) -> MicroOp {
        MicroOp::Write { key: k.into(), value: v.into() }
    }
    fn a(k: &str, v: i64) -> MicroOp {
        MicroOp::Append { key: k.into(), value: v.into() }
    }

    #[test]
    fn txn_reads_its_own_writes_and_applies_every_micro_op() {
        let mut kv = Kv::new();
        let t = Op::Txn { ops: vec![r("x"), w("x", 1), r("x"), a("l", 5), a("l", 6), r("l"), r("y")] };
        let got = kv.apply(1, &cmd(1, 1, t));
        let l = Value::List(vec![5.into(), 6.into()]);
        assert_eq!(got, OpResult::Txn(vec![None, None, Some(1.into()), None, None, Some(l.clone()), None]));
        assert_eq!(kv.get("x"), Some(&Value::Int(1)));
        assert_eq!(kv.get("l"), Some(&l));
        assert!(kv.get("y").is_none(), "a read must not create the key");
    }

    #[test]
    fn rejected_micro_op_leaves_no_trace_of_the_txn() {
        let mut kv = Kv::new();
        kv.apply(1, &cmd(0, 0, Op::Write { key: "n".into(), value: 7.into() }));
        // The write to x comes first, the append to a non-list fails: x must stay unwritten.
        let t = Op::Txn { ops: vec![w("x", 1), a("l", 1), a("n", 2)] };
        assert!(matches!(kv.apply(2, &cmd(1, 1, t)), OpResult::Rejected(_)));
        assert!(kv.get("x").is_none());
        assert!(kv.get("l").is_none());
        assert_eq!(kv.get("n"), Some(&Value::Int(7)));
    }

    #[test]
    fn empty_or_oversized_txn_is_refused_up_front() {
        assert_eq!(Op::Txn { ops: vec![] }.validate(), Err(OpError::EmptyTxn));
        assert_eq!(Op::Txn { ops: vec![r("k"); MAX_TXN_OPS + 1] }.validate(), Err(OpError::TxnTooLong));
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        assert_eq!(Op::Txn { ops: vec![r("a"), r(&long)] }.validate(), Err(OpError::KeyTooLong));
    }
}
