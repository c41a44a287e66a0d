//! Workloads: what the clients do during a test, and how to judge it afterwards.
//!
//! A workload is a seeded generator of operations, the names of the checkers that judge
//! its history, and the final reads issued after the faults heal. Workloads are looked up
//! by name ([`lookup`]), Maelstrom style: adding one is a file plus a line in `REGISTRY`.
//!
//! Workloads never see the network. They talk to the cluster through [`Kv`], a handful of
//! single-key primitives the runner implements on top of the node's client library; this
//! keeps every workload testable against an in-memory model ([`mem::MemKv`]).

pub mod append;
pub mod arrivals;
pub mod bank;
pub mod mem;
pub mod register;
pub mod set;
pub mod txn;

use std::collections::BTreeSet;

use futures::future::BoxFuture;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use arrivals::Arrivals;

/// The function an operation invokes; its name is the history's `f`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum F {
    Read,
    Write,
    Cas,
    Append,
    /// Set workload: add a unique element (stored with the node's `append`).
    Add,
    /// Bank workload: move `amount` between two accounts (read, then cas of the bank key).
    Transfer,
    /// A transaction: `value` is a list of `[f, key, value]` micro-ops (see [`Mop`]).
    Txn,
}

impl F {
    pub fn name(self) -> &'static str {
        match self {
            F::Read => "read",
            F::Write => "write",
            F::Cas => "cas",
            F::Append => "append",
            F::Add => "add",
            F::Transfer => "transfer",
            F::Txn => "txn",
        }
    }
}

/// One operation as a client invokes it; `value` follows the history conventions
/// (read: null, write: the value, cas: `[from, to]`, append/add: the element).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op {
    pub f: F,
    pub key: String,
    pub value: Value,
}

impl Op {
    pub fn read(key: impl Into<String>) -> Op {
        Op {
            f: F::Read,
            key: key.into(),
            value: Value::Null,
        }
    }
}

/// How an operation ended, in Jepsen's terms.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// It happened; the value is what the history's `ok` carries.
    Ok(Value),
    /// It certainly did not happen.
    Fail(String),
    /// It may or may not have happened (timeout, lost connection after sending).
    Info(String),
}

/// A single-key primitive's error, split the way the history needs it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KvError {
    /// The operation certainly did not take effect (refused before sending, not leader,
    /// cas mismatch, key absent for cas).
    #[error("{0}")]
    Definite(String),
    /// The operation may have taken effect; the client must not reuse its process.
    #[error("{0}")]
    Indefinite(String),
}

/// A micro-op's function, Jepsen's names: `r`, `w`, `append`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MopF {
    R,
    W,
    Append,
}

impl MopF {
    pub fn name(self) -> &'static str {
        match self {
            MopF::R => "r",
            MopF::W => "w",
            MopF::Append => "append",
        }
    }
}

/// One micro-op of a transaction. `value` is what a write or append puts; for a read it is
/// null on invocation and what was read on completion (null: never written).
#[derive(Debug, Clone, PartialEq)]
pub struct Mop {
    pub f: MopF,
    pub key: String,
    pub value: Value,
}

impl Mop {
    /// The history form `[f, key, value]`; keys that are decimal integers are written as
    /// integers, as Elle's histories do.
    pub fn to_json(&self) -> Value {
        let key = self.key.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::from(self.key.clone()));
        Value::Array(vec![Value::from(self.f.name()), key, self.value.clone()])
    }

    /// Inverse of [`Mop::to_json`]; `None` when `v` is not a `[f, key, value]` triple.
    pub fn from_json(v: &Value) -> Option<Mop> {
        let [f, key, value] = v.as_array()?.as_slice() else { return None };
        let f = match f.as_str()? {
            "r" => MopF::R,
            "w" => MopF::W,
            "append" => MopF::Append,
            _ => return None,
        };
        let key = match key {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return None,
        };
        Some(Mop { f, key, value: value.clone() })
    }
}

/// The history form of a transaction's micro-ops.
pub fn mops_json(mops: &[Mop]) -> Value {
    Value::Array(mops.iter().map(Mop::to_json).collect())
}

/// The single-key operations a workload may use. Values are JSON; the runner's adapter
/// maps them onto the node's wire types. A missing key reads as `Value::Null`.
pub trait Kv: Send {
    fn read<'a>(&'a mut self, key: &'a str) -> BoxFuture<'a, Result<Value, KvError>>;
    fn write<'a>(&'a mut self, key: &'a str, value: Value) -> BoxFuture<'a, Result<(), KvError>>;
    /// Fails definitely when the current value is not `from` (or the key is absent).
    fn cas<'a>(
        &'a mut self,
        key: &'a str,
        from: Value,
        to: Value,
    ) -> BoxFuture<'a, Result<(), KvError>>;
    /// Appends one element to the list stored at `key` (created empty when absent).
    fn append<'a>(&'a mut self, key: &'a str, elem: Value) -> BoxFuture<'a, Result<(), KvError>>;
    /// Runs micro-ops atomically and returns them completed (reads carry what they saw).
    /// Stores without transactions refuse definitely, so nothing is recorded as possibly
    /// applied.
    fn txn<'a>(&'a mut self, ops: Vec<Mop>) -> BoxFuture<'a, Result<Vec<Mop>, KvError>> {
        let _ = ops;
        Box::pin(async { Err(KvError::Definite("txn-unsupported: this store has no transactions".into())) })
    }
}

fn outcome<T>(r: Result<T, KvError>, ok: impl FnOnce(T) -> Value) -> Outcome {
    match r {
        Ok(v) => Outcome::Ok(ok(v)),
        Err(KvError::Definite(e)) => Outcome::Fail(e),
        Err(KvError::Indefinite(e)) => Outcome::Info(e),
    }
}

/// Runs one operation against the cluster. Multi-step operations (bank transfers) are
/// recorded as one op: a definite failure of any step before the final write fails the
/// whole op, and an indefinite error of the final write makes it `info`.
pub async fn execute(op: &Op, kv: &mut dyn Kv) -> Outcome {
    let key = op.key.as_str();
    match op.f {
        F::Read => outcome(kv.read(key).await, |v| v),
        F::Write => outcome(kv.write(key, op.value.clone()).await, |_| op.value.clone()),
        F::Cas => {
            let (from, to) = match op.value.as_array().map(|a| a.as_slice()) {
                Some([from, to]) => (from.clone(), to.clone()),
                _ => return Outcome::Fail(format!("malformed cas value {}", op.value)),
            };
            outcome(kv.cas(key, from, to).await, |_| op.value.clone())
        }
        F::Append | F::Add => outcome(kv.append(key, op.value.clone()).await, |_| op.value.clone()),
        F::Transfer => bank::transfer(op, kv).await,
        F::Txn => {
            let mops: Option<Vec<Mop>> = op.value.as_array().map(|a| a.iter().map(Mop::from_json).collect()).unwrap_or(None);
            match mops {
                Some(m) => outcome(kv.txn(m).await, |done| mops_json(&done)),
                None => Outcome::Fail(format!("malformed txn value {}", op.value)),
            }
        }
    }
}

/// Options every generator receives; the runner fills them from the test config.
#[derive(Debug, Clone)]
pub struct GenOpts {
    pub seed: u64,
    /// Number of client workers.
    pub concurrency: usize,
    /// Offered load over all workers, ops per second.
    pub rate_per_s: f64,
}

/// Produces one worker's operations. `arrival_ns` is the op's scheduled arrival time
/// (from [`Arrivals`]), so generators may rotate keys by time and stay deterministic.
pub trait Generator: Send {
    fn next(&mut self, arrival_ns: u64) -> Op;
}

/// A workload, as found in the registry.
pub trait Workload: Send + Sync {
    fn name(&self) -> &'static str;
    /// Checkers (by registry name in `faultline_checkers`) that judge this workload.
    fn checkers(&self) -> &'static [&'static str];
    /// Operations that must succeed before the clients start (e.g. initial balances).
    fn setup(&self) -> Vec<Op> {
        Vec::new()
    }
    /// Worker `worker`'s generator; the same seed and worker give the same sequence.
    fn generator(&self, opts: &GenOpts, worker: usize) -> Box<dyn Generator>;
    /// The reads issued on every node once the faults heal.
    fn final_reads(&self, keys_touched: &BTreeSet<String>) -> Vec<Op> {
        keys_touched.iter().map(|k| Op::read(k.clone())).collect()
    }
}

/// Finds a workload by its registered name.
pub fn lookup(name: &str) -> Option<Box<dyn Workload>> {
    REGISTRY.iter().find(|(n, _)| *n == name).map(|(_, make)| make())
}

/// Like [`lookup`], with the transactions' shape `txn` for a transactional workload
/// ([`txn::kind`]); `txn` is ignored for the others.
pub fn lookup_with(name: &str, txn: Option<&txn::TxnOpts>) -> Option<Box<dyn Workload>> {
    match (txn::kind(name), txn) {
        (Some(kind), Some(opts)) => Some(Box::new(txn::TxnWorkload::new(kind, *opts))),
        _ => lookup(name),
    }
}

/// Builds a workload with its default options.
pub type Constructor = fn() -> Box<dyn Workload>;

/// The registry: one line per workload, by the name `--workload` takes.
const REGISTRY: &[(&str, Constructor)] = &[
    ("register", || Box::new(register::Register::default())),
    ("set", || Box::new(set::Set::default())),
    ("bank", || Box::new(bank::Bank::default())),
    ("append", || Box::new(append::Append::default())),
    ("list-append", || Box::new(txn::TxnWorkload::new(txn::TxnKind::ListAppend, txn::TxnOpts::default()))),
    ("rw-register", || Box::new(txn::TxnWorkload::new(txn::TxnKind::RwRegister, txn::TxnOpts::default()))),
];

/// Every registered workload name, in registry order.
pub fn names() -> Vec<&'static str> {
    REGISTRY.iter().map(|(n, _)| *n).collect()
}

/// The RNG for one stream of one run. Streams are separated by a tag so that adding a
/// consumer of randomness never shifts another's sequence.
pub fn rng(seed: u64, stream: &str, index: u64) -> StdRng {
    // FNV-1a over the tag, mixed with seed and index by splitmix64 steps.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in stream.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let x = splitmix(splitmix(seed ^ h) ^ index);
    StdRng::seed_from_u64(x)
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Key-rotation period for workloads that bound ops per key: all workers move to a new
/// key at the same (scheduled) time, so each key sees concurrent ops from every worker
/// and roughly `ops_per_key` of them in total.
pub(crate) fn key_period_ns(opts: &GenOpts, ops_per_key: u64) -> u64 {
    let rate = opts.rate_per_s.max(0.001);
    ((ops_per_key as f64 / rate) * 1e9).max(1e6) as u64
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;

    /// The first `n` ops of every worker, with their arrival times.
    pub fn sequence(w: &dyn Workload, opts: &GenOpts, n: usize) -> Vec<Vec<(u64, Op)>> {
        (0..opts.concurrency)
            .map(|i| {
                let mut arr = Arrivals::new(opts, i);
                let mut g = w.generator(opts, i);
                (0..n)
                    .map(|_| {
                        let t = arr.next_ns();
                        (t, g.next(t))
                    })
                    .collect()
            })
            .collect()
    }

    pub fn opts(seed: u64) -> GenOpts {
        GenOpts {
            seed,
            concurrency: 4,
            rate_per_s: 100.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_for_every_workload() {
        for name in names() {
            let w = lookup(name).unwrap();
            let a = testutil::sequence(w.as_ref(), &testutil::opts(7), 300);
            let b = testutil::sequence(w.as_ref(), &testutil::opts(7), 300);
            assert_eq!(a, b, "workload {name} is not deterministic");
            let c = testutil::sequence(w.as_ref(), &testutil::opts(8), 300);
            assert_ne!(a, c, "workload {name} ignores the seed");
        }
    }

    #[test]
    fn every_workload_names_registered_checkers_only_by_string() {
        for name in names() {
            let w = lookup(name).unwrap();
            assert_eq!(w.name(), name);
            assert!(!w.checkers().is_empty(), "{name} has no checker");
        }
        assert!(lookup("nope").is_none());
    }

    #[test]
    fn rng_streams_are_independent() {
        use rand::Rng;
        let a: u64 = rng(1, "arrivals", 0).random();
        let b: u64 = rng(1, "ops", 0).random();
        let c: u64 = rng(1, "arrivals", 1).random();
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, rng(1, "arrivals", 0).random::<u64>());
    }
}
