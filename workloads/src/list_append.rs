//! `list-append`: Jepsen's append test shape for Elle. Transactions of 1 to
//! `txn_length_max` micro-ops read or append to keys from a small pool; every appended value
//! is unique per key, so a read's list reveals the order of the appends it saw, and each key
//! is retired after at most `writes_per_key_max` appends so lists (and reads) stay short.

use rand::Rng;
use rand::rngs::StdRng;
use serde_json::Value;

use crate::{F, GenOpts, Generator, Mop, MopF, Op, Workload, mops_json};

pub struct ListAppend {
    pub txn_length_max: usize,
    /// Keys in use at any time.
    pub key_count: usize,
    pub writes_per_key_max: u64,
    pub read_fraction: f64,
}

impl Default for ListAppend {
    fn default() -> Self {
        ListAppend { txn_length_max: 4, key_count: 8, writes_per_key_max: 32, read_fraction: 0.5 }
    }
}

impl Workload for ListAppend {
    fn name(&self) -> &'static str {
        "list-append"
    }

    fn checkers(&self) -> &'static [&'static str] {
        &["elle-list-append"]
    }

    fn generator(&self, opts: &GenOpts, worker: usize) -> Box<dyn Generator> {
        Box::new(TxnGen::new(
            crate::rng(opts.seed, "list-append", worker as u64),
            opts,
            worker,
            self.txn_length_max,
            self.key_count,
            self.writes_per_key_max,
            self.read_fraction,
            MopF::Append,
        ))
    }

    /// Transactions name their keys inside `value`; there is no single key to read back.
    fn final_reads(&self, _keys_touched: &std::collections::BTreeSet<String>) -> Vec<Op> {
        Vec::new()
    }
}

/// Shared by list-append and rw-register. Key slots rotate to a fresh key once this worker
/// has written its share (`writes_per_key_max / workers`) of the current one, so no key gets
/// more than `writes_per_key_max` writes in total while workers still share keys.
pub(crate) struct TxnGen {
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
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        rng: StdRng,
        opts: &GenOpts,
        worker: usize,
        txn_length_max: usize,
        key_count: usize,
        writes_per_key_max: u64,
        read_fraction: f64,
        write: MopF,
    ) -> TxnGen {
        let workers = opts.concurrency.max(1) as u64;
        TxnGen {
            rng,
            txn_length_max: txn_length_max.max(1),
            key_count: key_count.max(1),
            slots: vec![(0, 0); key_count.max(1)],
            share: (writes_per_key_max / workers).max(1),
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

    #[test]
    fn appends_are_unique_and_bounded_per_key() {
        let w = ListAppend::default();
        let seqs = testutil::sequence(&w, &testutil::opts(3), 2000);
        let mut per_key: HashMap<String, Vec<Value>> = HashMap::new();
        for (_, op) in seqs.iter().flatten() {
            assert_eq!(op.f, F::Txn);
            let mops: Vec<Mop> = op.value.as_array().unwrap().iter().map(|m| Mop::from_json(m).unwrap()).collect();
            assert!((1..=w.txn_length_max).contains(&mops.len()));
            for m in mops.iter().filter(|m| m.f == MopF::Append) {
                per_key.entry(m.key.clone()).or_default().push(m.value.clone());
            }
        }
        assert!(per_key.len() > w.key_count, "keys are never retired");
        for (k, vs) in per_key {
            assert!(vs.len() as u64 <= w.writes_per_key_max, "key {k} got {} appends", vs.len());
            let mut d = vs.clone();
            d.sort_by_key(|v| v.as_u64());
            d.dedup();
            assert_eq!(d.len(), vs.len(), "duplicate append to key {k}");
        }
    }
}
