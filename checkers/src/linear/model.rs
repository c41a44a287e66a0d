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
    type Op: Clone + Send + Sync + std::fmt::Debug;

    fn name(&self) -> &'static str;
    fn init(&self) -> Self::State;
    /// The operation an invocation and its completion (`None`: never completed) describe,
    /// or `None` when it cannot have affected or observed the state (a failed write, a
    /// read that timed out). An `Err` names what is malformed.
    fn op(&self, invoke: &Event, completion: Option<&Event>) -> Result<Option<(Self::Op, Certainty)>, String>;
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
}

/// A register per key holding any JSON value, initially `null`: read, write, cas.
/// Values are compared by their compact JSON text.
#[derive(Debug, Clone, Copy, Default)]
pub struct CasRegister;

/// Register values by their JSON text; `None` is the initial, never-written state.
pub type RegValue = Option<std::sync::Arc<str>>;

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
        Value::Null => None,
        other => Some(other.to_string().into()),
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
        None
    }

    fn op(&self, invoke: &Event, completion: Option<&Event>) -> Result<Option<(RegOp, Certainty)>, String> {
        let kind = completion.map_or(EventType::Info, |c| c.kind);
        let certainty = match kind {
            EventType::Ok => Certainty::Required,
            EventType::Info | EventType::Invoke => Certainty::Optional,
            EventType::Fail => {
                let observed = invoke.f == "cas" && completion.and_then(|c| c.error.as_deref()) == Some(CAS_MISMATCH);
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
            other => return Err(format!("the cas-register model has no operation {other:?} (expected read, write or cas)")),
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
            None => Value::Null,
            Some(s) if &**s == super::register::UNOBSERVED => Value::String("<a value nothing reads>".into()),
            Some(s) => serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string())),
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
#[derive(Debug, Clone, Copy, Default)]
pub struct Kv;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KvOp {
    Get(String),
    Put(String),
    Append(String),
}

fn kv_string(v: &Value) -> Result<String, String> {
    match v {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        other => Err(format!("the kv model holds strings, got {other}")),
    }
}

impl Model for Kv {
    type State = String;
    type Op = KvOp;

    fn name(&self) -> &'static str {
        "kv"
    }

    fn init(&self) -> String {
        String::new()
    }

    fn op(&self, invoke: &Event, completion: Option<&Event>) -> Result<Option<(KvOp, Certainty)>, String> {
        let kind = completion.map_or(EventType::Info, |c| c.kind);
        let certainty = match kind {
            EventType::Ok => Certainty::Required,
            EventType::Fail => return Ok(None),
            EventType::Info | EventType::Invoke => Certainty::Optional,
        };
        let op = match invoke.f.as_str() {
            "get" | "read" => match (kind, completion) {
                (EventType::Ok, Some(c)) => KvOp::Get(kv_string(&c.value)?),
                _ => return Ok(None),
            },
            "put" | "write" => KvOp::Put(kv_string(&invoke.value)?),
            "append" => KvOp::Append(kv_string(&invoke.value)?),
            other => return Err(format!("the kv model has no operation {other:?} (expected get, put or append)")),
        };
        Ok(Some((op, certainty)))
    }

    fn step(&self, state: &String, op: &KvOp) -> Option<String> {
        match op {
            KvOp::Get(v) => (v == state).then(|| state.clone()),
            KvOp::Put(v) => Some(v.clone()),
            KvOp::Append(v) => Some(format!("{state}{v}")),
        }
    }

    fn state_json(&self, state: &String) -> Value {
        Value::String(state.clone())
    }

    fn needs(&self, op: &KvOp) -> Option<String> {
        match op {
            KvOp::Get(v) => Some(v.clone()),
            _ => None,
        }
    }

    fn effect(&self, op: &KvOp) -> Effect<String> {
        match op {
            KvOp::Get(_) => Effect::Keeps,
            KvOp::Put(v) => Effect::Sets(v.clone()),
            KvOp::Append(_) => Effect::Unknown,
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
    fn op(&self, invoke: &Event, completion: Option<&Event>) -> Result<Option<(M::Op, Certainty)>, String> {
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
}
