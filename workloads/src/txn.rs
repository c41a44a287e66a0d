//! The transactional workloads, in Jepsen's shape for Elle: transactions of 1 to
//! `txn_length_max` micro-ops over a small, rotating pool of keys. `list-append` appends
//! unique values (a read's list reveals the order of the appends it saw); `rw-register`
//! writes unique values (a read names its writer). Each key is retired after at most
//! `writes_per_key_max` writes so lists (and reads) stay short and version orders small.

use rand::Rng;
use rand::rngs::StdRng;
use serde::Serialize;
use serde_json::Value;

use crate::{F, GenOpts, Generator, Mop, MopF, Op, Workload, mops_json};

/// Which of the two transactional workloads: they differ only in their write micro-op and
/// the checker that judges them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnKind {
    ListAppend,
    RwRegister,
}

impl TxnKind {
    /// The registry name, also the name of the generator's RNG stream.
    pub fn name(self) -> &'static str {
        match self {
            TxnKind::ListAppend => "list-append",
            TxnKind::RwRegister => "rw-register",
        }
    }

    fn checkers(self) -> &'static [&'static str] {
        match self {
            TxnKind::ListAppend => &["elle-list-append"],
            TxnKind::RwRegister => &["elle-rw-register"],
        }
    }

    fn write(self) -> MopF {
        match self {
            TxnKind::ListAppend => MopF::Append,
            TxnKind::RwRegister => MopF::W,
        }
    }
}

/// The transactional workload registered as `name`, if it is one.
pub fn kind(name: &str) -> Option<TxnKind> {
    [TxnKind::ListAppend, TxnKind::RwRegister]
        .into_iter()
        .find(|k| k.name() == name)
}

/// The shape of the transactions (Jepsen's `max-txn-length`, `key-count`,
/// `max-writes-per-key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TxnOpts {
    pub txn_length_max: usize,
    /// Keys in use at any time.
    pub key_count: usize,
    pub writes_per_key_max: u64,
}

impl TxnOpts {
    /// Bounds on `--txn-length-max`: the node takes at most 256 micro-ops per transaction.
    pub const TXN_LENGTH_MAX: usize = 256;
    /// Bounds on `--key-count`: beyond this, keys are hardly ever shared and nothing is
    /// left for the checker to order.
    pub const KEY_COUNT_MAX: usize = 10_000;
    /// Bounds on `--writes-per-key-max`: every read returns a list key whole, so lists
    /// much longer than this would make each read a large frame.
    pub const WRITES_PER_KEY_MAX: u64 = 10_000;
}

impl Default for TxnOpts {
    fn default() -> Self {
        TxnOpts {
            txn_length_max: 4,
            key_count: 8,
            writes_per_key_max: 32,
        }
    }
}

pub struct TxnWorkload {
    pub kind: TxnKind,
    pub opts: TxnOpts,
    pub read_fraction: f64,
}

impl TxnWorkload {
    pub fn new(kind: TxnKind, opts: TxnOpts) -> TxnWorkload {
        TxnWorkload {
            kind,
            opts,
            read_fraction: 0.5,
        }
    }
}

impl Workload for TxnWorkload {
    fn name(&self) -> &'static str {
        self.kind.name()
    }

    fn checkers(&self) -> &'static [&'static str] {
        self.kind.checkers()
    }

    fn generator(&self, opts: &GenOpts, worker: usize) -> Box<dyn Generator> {
        Box::new(TxnGen::new(
            crate::rng(opts.seed, self.kind.name(), worker as u64),
            opts,
            worker,
            &self.opts,
            self.read_fraction,
            self.kind.write(),
        ))
    }

    /// Transactions name their keys inside `value`; there is no single key to read back.
    fn final_reads(&self, _keys_touched: &std::collections::BTreeSet<String>) -> Vec<Op> {
        Vec::new()
    }
}

/// Key slots rotate to a fresh key once this worker has written its share
/// (`writes_per_key_max / workers`) of the current one, so no key gets more than
/// `writes_per_key_max` writes in total while workers still share keys.
struct TxnGen {
    rng: StdRng,
    txn_length_max: usize,
    key_count: usize,
    /// Per slot: the key generation and this worker's writes to it.
    slots: Vec<(u64, u64)>,
    share: u64,
    next_value: u64,
    stride: u64,
    read_fraction: f64,
    write: MopF,
}

impl TxnGen {
    fn new(rng: StdRng, opts: &GenOpts, worker: usize, txn: &TxnOpts, read_fraction: f64, write: MopF) -> TxnGen {
        let workers = opts.concurrency.max(1) as u64;
        TxnGen {
            rng,
            txn_length_max: txn.txn_length_max.max(1),
            key_count: txn.key_count.max(1),
            slots: vec![(0, 0); txn.key_count.max(1)],
            share: (txn.writes_per_key_max / workers).max(1),
            next_value: worker as u64 + 1,
            stride: workers,
            read_fraction,
            write,
        }
    }
}

impl Generator for TxnGen {
    fn next(&mut self, _arrival_ns: u64) -> Op {
        let n = self.rng.random_range(1..=self.txn_length_max);
        let mut mops = Vec::with_capacity(n);
        for _ in 0..n {
            let slot = self.rng.random_range(0..self.key_count);
            let key = (self.slots[slot].0 * self.key_count as u64 + slot as u64).to_string();
            if self.rng.random::<f64>() < self.read_fraction {
                mops.push(Mop { f: MopF::R, key, value: Value::Null });
                continue;
            }
            let v = self.next_value;
            self.next_value += self.stride;
            mops.push(Mop { f: self.write, key, value: Value::from(v) });
            let s = &mut self.slots[slot];
            s.1 += 1;
            if s.1 >= self.share {
                *s = (s.0 + 1, 0);
            }
        }
        Op { f: F::Txn, key: String::new(), value: mops_json(&mops) }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::testutil;

    fn writes_per_key(w: &TxnWorkload, n: usize) -> HashMap<String, Vec<Value>> {
        let seqs = testutil::sequence(w, &testutil::opts(3), n);
        let mut per_key: HashMap<String, Vec<Value>> = HashMap::new();
        for (_, op) in seqs.iter().flatten() {
            assert_eq!(op.f, F::Txn);
            let mops: Vec<Mop> = op.value.as_array().unwrap().iter().map(|m| Mop::from_json(m).unwrap()).collect();
            assert!((1..=w.opts.txn_length_max).contains(&mops.len()));
            for m in &mops {
                assert!(m.f == MopF::R || m.f == w.kind.write(), "{m:?} in {}", w.kind.name());
            }
            for m in mops.iter().filter(|m| m.f != MopF::R) {
                per_key.entry(m.key.clone()).or_default().push(m.value.clone());
            }
        }
        per_key
    }

    #[test]
    fn appends_are_unique_and_bounded_per_key() {
        for kind in [TxnKind::ListAppend, TxnKind::RwRegister] {
            let w = TxnWorkload::new(kind, TxnOpts::default());
            let per_key = writes_per_key(&w, 2000);
            assert!(per_key.len() > w.opts.key_count, "keys are never retired");
            for (k, vs) in per_key {
                assert!(vs.len() as u64 <= w.opts.writes_per_key_max, "key {k} got {} writes", vs.len());
                let mut d = vs.clone();
                d.sort_by_key(|v| v.as_u64());
                d.dedup();
                assert_eq!(d.len(), vs.len(), "duplicate write to key {k}");
            }
        }
    }
}
