//! Sequential specifications. A model says what one operation does to one object's state;
//! the search in [`super::search`] does the rest. Adding a model is a type implementing
//! [`Model`] plus a [`super::ModelKind`] variant.

use std::hash::Hash;

use serde_json::Value;

use crate::history::{CAS_MISMATCH, Event, EventType};

/// Whether an operation must appear in the linearization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Certainty {
    /// It completed (`ok`, or a `fail` that still observed state).
    Required,
    /// It may or may not have taken effect (`info`, or no completion at all).
    Optional,
}

/// What an operation does to the state, as far as the search may rely on it for pruning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect<S> {
    /// Never changes the state (a read).
    Keeps,
    /// Leaves exactly this state whenever it is possible (a write, a cas).
    Sets(S),
    /// Depends on the state (an append), or the model does not say.
    Unknown,
}

/// The sequential object every key of a history is checked against.
pub trait Model: Sync {
    type State: Clone + Eq + Hash + Send;
    /// `Eq + Hash`: a streamed check stores each distinct op once.
    type Op: Clone + Send + Sync + std::fmt::Debug + Eq + std::hash::Hash;

    fn name(&self) -> &'static str;
    fn init(&self) -> Self::State;
    /// The operation an invocation and its completion (`None`: never completed) describe,
    /// or `None` when it cannot have affected or observed the state (a failed write, a
    /// read that timed out). An `Err` names what is malformed.
    fn op(
        &self,
        invoke: &Event,
        completion: Option<&Event>,
    ) -> Result<Option<(Self::Op, Certainty)>, String>;
    /// The state after `op`, or `None` when `op` is impossible in `state`.
    fn step(&self, state: &Self::State, op: &Self::Op) -> Option<Self::State>;
    fn state_json(&self, state: &Self::State) -> Value;
    /// The one state in which `op` is possible, if there is exactly one. With
    /// [`Model::effect`] this lets the search refuse to leave a state that a pending
    /// operation still needs and nothing can recreate.
    fn needs(&self, _op: &Self::Op) -> Option<Self::State> {
        None
    }
    fn effect(&self, _op: &Self::Op) -> Effect<Self::State> {
        Effect::Unknown
    }
    /// Whether [`Model::reachable`] says anything; when false the search never asks.
    const HAS_REACHABLE: bool = false;
    /// Could `op` become possible from `state` if no op with an [`Effect::Sets`] effect
    /// comes between? (For strings under append: is `state` a prefix of what a get
    /// returned.) Lets the search drop an order as soon as a pending read rules it out.
    fn reachable(&self, _state: &Self::State, _op: &Self::Op) -> bool {
        true
    }
}

/// A register per key holding any JSON value, initially `null`: read, write, cas.
/// Values are compared by their compact JSON text.
#[derive(Debug, Clone, Copy, Default)]
pub struct CasRegister;

/// A register value. Integers, the common case, are held inline; anything else by its
/// compact JSON text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RegValue {
    /// The initial, never-written state (JSON `null`).
    Null,
    Int(i64),
    Json(std::sync::Arc<str>),
    /// Stands for every value nothing observes (see the register pre-pass).
    Unobserved,
}

impl std::fmt::Display for RegValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegValue::Null => f.write_str("null"),
            RegValue::Int(i) => write!(f, "{i}"),
            RegValue::Json(s) => f.write_str(s),
            RegValue::Unobserved => f.write_str("<a value nothing reads>"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RegOp {
    Read(RegValue),
    Write(RegValue),
    Cas(RegValue, RegValue),
    /// A cas whose compare ran and failed: the register held something other than `from`.
    CasMismatch(RegValue),
}

fn reg_value(v: &Value) -> RegValue {
    match v {
        Value::Null => RegValue::Null,
        Value::Number(n) if n.is_i64() => RegValue::Int(n.as_i64().unwrap_or(0)),
        other => RegValue::Json(other.to_string().into()),
    }
}

fn cas_args(v: &Value) -> Result<(RegValue, RegValue), String> {
    match v.as_array().map(Vec::as_slice) {
        Some([from, to]) => Ok((reg_value(from), reg_value(to))),
        _ => Err(format!("cas value must be [from, to], got {v}")),
    }
}

impl Model for CasRegister {
    type State = RegValue;
    type Op = RegOp;

    fn name(&self) -> &'static str {
        "cas-register"
    }

    fn init(&self) -> RegValue {
        RegValue::Null
    }

    fn op(
        &self,
        invoke: &Event,
        completion: Option<&Event>,
    ) -> Result<Option<(RegOp, Certainty)>, String> {
        let kind = completion.map_or(EventType::Info, |c| c.kind);
        let certainty = match kind {
            EventType::Ok => Certainty::Required,
            EventType::Info | EventType::Invoke => Certainty::Optional,
            EventType::Fail => {
                let observed = invoke.f == "cas"
                    && completion.and_then(|c| c.error.as_deref()) == Some(CAS_MISMATCH);
                if !observed {
                    return Ok(None);
                }
                let (from, _) = cas_args(&invoke.value)?;
                return Ok(Some((RegOp::CasMismatch(from), Certainty::Required)));
            }
        };
        let op = match invoke.f.as_str() {
            "read" => match (kind, completion) {
                (EventType::Ok, Some(c)) => RegOp::Read(reg_value(&c.value)),
                _ => return Ok(None),
            },
            "write" => RegOp::Write(reg_value(&invoke.value)),
            "cas" => {
                let (from, to) = cas_args(&invoke.value)?;
                RegOp::Cas(from, to)
            }
            other => {
                return Err(format!(
                    "the cas-register model has no operation {other:?} (expected read, write or cas)"
                ));
            }
        };
        Ok(Some((op, certainty)))
    }

    fn step(&self, state: &RegValue, op: &RegOp) -> Option<RegValue> {
        match op {
            RegOp::Read(v) => (v == state).then(|| state.clone()),
            RegOp::Write(v) => Some(v.clone()),
            RegOp::Cas(from, to) => (from == state).then(|| to.clone()),
            RegOp::CasMismatch(from) => (from != state).then(|| state.clone()),
        }
    }

    fn state_json(&self, state: &RegValue) -> Value {
        match state {
            RegValue::Null => Value::Null,
            RegValue::Int(i) => Value::from(*i),
            RegValue::Json(s) => {
                serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string()))
            }
            RegValue::Unobserved => Value::String(state.to_string()),
        }
    }

    fn needs(&self, op: &RegOp) -> Option<RegValue> {
        match op {
            RegOp::Read(v) | RegOp::Cas(v, _) => Some(v.clone()),
            _ => None,
        }
    }

    fn effect(&self, op: &RegOp) -> Effect<RegValue> {
        match op {
            RegOp::Read(_) | RegOp::CasMismatch(_) => Effect::Keeps,
            RegOp::Write(v) | RegOp::Cas(_, v) => Effect::Sets(v.clone()),
        }
    }
}

/// A string per key, initially empty: get (read), put (write), append (concatenate).
///
/// States are not strings but fingerprints of them — two independent polynomial hashes
/// modulo 2^61 - 1, plus the length — with the text kept as a shared chain of appended
/// pieces for display. Appending is then O(piece) instead of O(string), and comparing
/// O(1); two different strings share a fingerprint with probability below 2^-90 for
/// strings under a megabyte.
#[derive(Debug, Clone, Copy, Default)]
pub struct Kv;

const MOD: u64 = (1 << 61) - 1;
const BASES: [u64; 2] = [0x1d8e_4e27_c47d_124f % MOD, 0x0b3d_91f0_7a6c_2e95 % MOD];

#[inline]
fn mulmod(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    let x = ((r as u64) & MOD) + ((r >> 61) as u64);
    if x >= MOD { x - MOD } else { x }
}

#[inline]
fn addmod(a: u64, b: u64) -> u64 {
    let x = a + b;
    if x >= MOD { x - MOD } else { x }
}

/// A string with its fingerprint and `BASES^len`, precomputed once per operation.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KvText {
    hash: [u64; 2],
    pow: [u64; 2],
    len: u64,
    text: std::sync::Arc<str>,
    /// Fingerprints of every prefix, by length (for values read).
    prefixes: std::sync::Arc<[[u64; 2]]>,
}

impl KvText {
    fn new(s: &str, with_prefixes: bool) -> KvText {
        let mut hash = [0u64; 2];
        let mut pow = [1u64; 2];
        let mut prefixes = Vec::with_capacity(if with_prefixes { s.len() + 1 } else { 0 });
        for &b in s.as_bytes() {
            if with_prefixes {
                prefixes.push(hash);
            }
            for k in 0..2 {
                hash[k] = addmod(mulmod(hash[k], BASES[k]), u64::from(b) + 1);
                pow[k] = mulmod(pow[k], BASES[k]);
            }
        }
        if with_prefixes {
            prefixes.push(hash);
        }
        KvText {
            hash,
            pow,
            len: s.len() as u64,
            text: s.into(),
            prefixes: prefixes.into(),
        }
    }
}

impl std::fmt::Debug for KvText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", &*self.text)
    }
}

/// One piece of a string state: its text follows the text of `prev`.
struct Piece {
    prev: Option<std::sync::Arc<Piece>>,
    text: std::sync::Arc<str>,
}

impl Drop for Piece {
    // Long chains would otherwise be dropped recursively, one stack frame per append.
    fn drop(&mut self) {
        let mut next = self.prev.take();
        while let Some(p) = next {
            match std::sync::Arc::try_unwrap(p) {
                Ok(mut piece) => next = piece.prev.take(),
                Err(_) => break,
            }
        }
    }
}

/// A string state: equal and hashed by fingerprint; `pieces` only spell it out.
#[derive(Clone)]
pub struct KvState {
    hash: [u64; 2],
    len: u64,
    pieces: Option<std::sync::Arc<Piece>>,
}

impl PartialEq for KvState {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.len == other.len
    }
}
impl Eq for KvState {}
impl std::hash::Hash for KvState {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.hash.hash(h);
        self.len.hash(h);
    }
}

impl KvState {
    fn of(t: &KvText) -> KvState {
        let pieces = (t.len > 0).then(|| {
            std::sync::Arc::new(Piece {
                prev: None,
                text: t.text.clone(),
            })
        });
        KvState {
            hash: t.hash,
            len: t.len,
            pieces,
        }
    }

    fn holds(&self, t: &KvText) -> bool {
        self.hash == t.hash && self.len == t.len
    }

    fn append(&self, t: &KvText) -> KvState {
        if t.len == 0 {
            return self.clone();
        }
        let hash = [0, 1].map(|k| addmod(mulmod(self.hash[k], t.pow[k]), t.hash[k]));
        let pieces = Some(std::sync::Arc::new(Piece {
            prev: self.pieces.clone(),
            text: t.text.clone(),
        }));
        KvState {
            hash,
            len: self.len + t.len,
            pieces,
        }
    }

    pub fn text(&self) -> String {
        let mut parts = Vec::new();
        let mut p = self.pieces.as_deref();
        while let Some(piece) = p {
            parts.push(&*piece.text);
            p = piece.prev.as_deref();
        }
        parts.iter().rev().copied().collect()
    }
}

impl std::fmt::Debug for KvState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.text())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KvOp {
    Get(KvText),
    Put(KvText),
    Append(KvText),
}

fn kv_text(v: &Value, read: bool) -> Result<KvText, String> {
    match v {
        Value::Null => Ok(KvText::new("", read)),
        Value::String(s) => Ok(KvText::new(s, read)),
        other => Err(format!("the kv model holds strings, got {other}")),
    }
}

impl Model for Kv {
    type State = KvState;
    type Op = KvOp;

    fn name(&self) -> &'static str {
        "kv"
    }

    fn init(&self) -> KvState {
        KvState::of(&KvText::new("", false))
    }

    fn op(
        &self,
        invoke: &Event,
        completion: Option<&Event>,
    ) -> Result<Option<(KvOp, Certainty)>, String> {
        let kind = completion.map_or(EventType::Info, |c| c.kind);
        let certainty = match kind {
            EventType::Ok => Certainty::Required,
            EventType::Fail => return Ok(None),
            EventType::Info | EventType::Invoke => Certainty::Optional,
        };
        let op = match invoke.f.as_str() {
            "get" | "read" => match (kind, completion) {
                (EventType::Ok, Some(c)) => KvOp::Get(kv_text(&c.value, true)?),
                _ => return Ok(None),
            },
            "put" | "write" => KvOp::Put(kv_text(&invoke.value, false)?),
            "append" => KvOp::Append(kv_text(&invoke.value, false)?),
            other => {
                return Err(format!(
                    "the kv model has no operation {other:?} (expected get, put or append)"
                ));
            }
        };
        Ok(Some((op, certainty)))
    }

    fn step(&self, state: &KvState, op: &KvOp) -> Option<KvState> {
        match op {
            KvOp::Get(v) => state.holds(v).then(|| state.clone()),
            KvOp::Put(v) => Some(KvState::of(v)),
            KvOp::Append(v) => Some(state.append(v)),
        }
    }

    fn state_json(&self, state: &KvState) -> Value {
        Value::String(state.text())
    }

    fn needs(&self, op: &KvOp) -> Option<KvState> {
        match op {
            KvOp::Get(v) => Some(KvState::of(v)),
            _ => None,
        }
    }

    fn effect(&self, op: &KvOp) -> Effect<KvState> {
        match op {
            KvOp::Get(_) => Effect::Keeps,
            KvOp::Put(v) => Effect::Sets(KvState::of(v)),
            KvOp::Append(_) => Effect::Unknown,
        }
    }

    const HAS_REACHABLE: bool = true;

    fn reachable(&self, state: &KvState, op: &KvOp) -> bool {
        match op {
            KvOp::Get(v) => v
                .prefixes
                .get(state.len as usize)
                .is_some_and(|h| *h == state.hash),
            _ => true,
        }
    }
}

/// A model with its pre-passes turned off, so tests can hold the search alone against
/// the full checker.
#[derive(Debug, Clone, Copy, Default)]
pub struct Plain<M>(pub M);

impl<M: Model> Model for Plain<M> {
    type State = M::State;
    type Op = M::Op;

    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn init(&self) -> M::State {
        self.0.init()
    }
    fn op(
        &self,
        invoke: &Event,
        completion: Option<&Event>,
    ) -> Result<Option<(M::Op, Certainty)>, String> {
        self.0.op(invoke, completion)
    }
    fn step(&self, state: &M::State, op: &M::Op) -> Option<M::State> {
        self.0.step(state, op)
    }
    fn state_json(&self, state: &M::State) -> Value {
        self.0.state_json(state)
    }
    fn needs(&self, op: &M::Op) -> Option<M::State> {
        self.0.needs(op)
    }
    fn effect(&self, op: &M::Op) -> Effect<M::State> {
        self.0.effect(op)
    }
    const HAS_REACHABLE: bool = M::HAS_REACHABLE;
    fn reachable(&self, state: &M::State, op: &M::Op) -> bool {
        self.0.reachable(state, op)
    }
}

/// Knossos' `mutex`: one lock, initially free; `acquire` takes it, `release` frees it.
/// Neither is possible in the other's state. The lock has no owner: like Knossos, the
/// model asks only whether some order of the operations alternates acquire and release.
/// A failed operation (`fail`, e.g. `:not-held`) did not happen.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MutexOp {
    Acquire,
    Release,
}

impl Model for Mutex {
    /// Whether the lock is held.
    type State = bool;
    type Op = MutexOp;

    fn name(&self) -> &'static str {
        "mutex"
    }

    fn init(&self) -> bool {
        false
    }

    fn op(
        &self,
        invoke: &Event,
        completion: Option<&Event>,
    ) -> Result<Option<(MutexOp, Certainty)>, String> {
        let certainty = match completion.map_or(EventType::Info, |c| c.kind) {
            EventType::Ok => Certainty::Required,
            EventType::Fail => return Ok(None),
            EventType::Info | EventType::Invoke => Certainty::Optional,
        };
        let op = match invoke.f.as_str() {
            "acquire" => MutexOp::Acquire,
            "release" => MutexOp::Release,
            other => {
                return Err(format!(
                    "the mutex model has no operation {other:?} (expected acquire or release)"
                ));
            }
        };
        Ok(Some((op, certainty)))
    }

    fn step(&self, held: &bool, op: &MutexOp) -> Option<bool> {
        match op {
            MutexOp::Acquire => (!held).then_some(true),
            MutexOp::Release => held.then_some(false),
        }
    }

    fn state_json(&self, held: &bool) -> Value {
        Value::String(if *held { "held" } else { "free" }.to_string())
    }

    fn needs(&self, op: &MutexOp) -> Option<bool> {
        Some(*op == MutexOp::Release)
    }

    fn effect(&self, op: &MutexOp) -> Effect<bool> {
        Effect::Sets(*op == MutexOp::Acquire)
    }
}

/// Knossos' `multi-register`: registers named by keys, read and written by transactions
/// (`f = "txn"`, value `[[f, key, value], ...]` with `f` one of `read`/`r`, `write`/`w`),
/// applied in order. As in Knossos a `nil` read constrains nothing (the value is unknown).
///
/// Knossos is handed the registers' initial values (`(multi-register {:x 0 :y 0})`); a
/// history does not carry them, so here they are unknown: until a register is written, the
/// first read of it says what it held, and every later read must agree. This answers
/// "linearizable for some initial values", which is weaker than Knossos' question when its
/// initial values differ from what the history's first reads show.
#[derive(Debug, Clone, Copy, Default)]
pub struct MultiRegister;

/// The registers written so far, sorted by key (compact JSON text of the key).
pub type Registers = std::sync::Arc<Vec<(std::sync::Arc<str>, RegValue)>>;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MicroOp {
    /// A read of a value (nil reads are dropped: they constrain nothing).
    Read(std::sync::Arc<str>, RegValue),
    Write(std::sync::Arc<str>, RegValue),
}

fn key_text(k: &Value) -> std::sync::Arc<str> {
    match k {
        Value::String(s) => s.as_str().into(),
        other => other.to_string().into(),
    }
}

fn micro_ops(v: &Value) -> Result<Vec<MicroOp>, String> {
    let Some(list) = v.as_array() else {
        return Err(format!("a multi-register txn is a list of [f, key, value], got {v}"));
    };
    let mut out = Vec::with_capacity(list.len());
    for m in list {
        let Some([f, k, x]) = m.as_array().map(Vec::as_slice) else {
            return Err(format!("a micro-op is [f, key, value], got {m}"));
        };
        match f.as_str() {
            Some("read" | "r") if x.is_null() => {}
            Some("read" | "r") => out.push(MicroOp::Read(key_text(k), reg_value(x))),
            Some("write" | "w") => out.push(MicroOp::Write(key_text(k), reg_value(x))),
            _ => return Err(format!("the multi-register model has no micro-op {f} (expected read or write)")),
        }
    }
    Ok(out)
}

impl Model for MultiRegister {
    type State = Registers;
    type Op = std::sync::Arc<[MicroOp]>;

    fn name(&self) -> &'static str {
        "multi-register"
    }

    fn init(&self) -> Registers {
        Registers::default()
    }

    fn op(
        &self,
        invoke: &Event,
        completion: Option<&Event>,
    ) -> Result<Option<(Self::Op, Certainty)>, String> {
        if invoke.f != "txn" {
            return Err(format!(
                "the multi-register model has no operation {:?} (expected txn)",
                invoke.f
            ));
        }
        // An ok completion says what was read; otherwise only the writes are known.
        let (value, certainty) = match completion {
            Some(c) if c.kind == EventType::Ok => (&c.value, Certainty::Required),
            Some(c) if c.kind == EventType::Fail => return Ok(None),
            _ => (&invoke.value, Certainty::Optional),
        };
        Ok(Some((micro_ops(value)?.into(), certainty)))
    }

    fn step(&self, state: &Registers, op: &Self::Op) -> Option<Registers> {
        let find = |regs: &[(std::sync::Arc<str>, RegValue)], k: &str| {
            regs.binary_search_by(|(x, _)| (**x).cmp(k))
        };
        let mut next: Option<Vec<(std::sync::Arc<str>, RegValue)>> = None;
        for m in op.iter() {
            let regs = next.as_deref().unwrap_or(state);
            match m {
                MicroOp::Read(k, v) => match find(regs, k) {
                    Ok(i) if regs[i].1 == *v => {}
                    Ok(_) => return None,
                    // Not written yet: the read tells the initial value.
                    Err(i) => next.get_or_insert_with(|| state.to_vec()).insert(i, (k.clone(), v.clone())),
                },
                MicroOp::Write(k, v) => {
                    let regs = next.get_or_insert_with(|| state.to_vec());
                    match find(regs, k) {
                        Ok(i) => regs[i].1 = v.clone(),
                        Err(i) => regs.insert(i, (k.clone(), v.clone())),
                    }
                }
            }
        }
        Some(next.map_or_else(|| state.clone(), std::sync::Arc::new))
    }

    fn state_json(&self, state: &Registers) -> Value {
        let mut m = serde_json::Map::new();
        for (k, v) in state.iter() {
            m.insert(k.to_string(), CasRegister.state_json(v));
        }
        Value::Object(m)
    }

    // A read may fix an initial value, so no transaction surely keeps the state: the
    // default `Effect::Unknown` is the truth.
}
