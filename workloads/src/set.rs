//! `set`: clients add unique elements to a few set keys (with the node's `append`) and
//! occasionally read them; after the faults heal, every set is read on every node.
//! The `set` checker reports elements lost, stale, unexpected or duplicated.

use rand::Rng;
use rand::rngs::StdRng;
use serde_json::json;

use crate::{F, GenOpts, Generator, Op, Workload};

pub struct Set {
    /// Number of set keys the elements are spread over (smaller reads).
    pub keys: u64,
    /// Fraction of ops that are reads.
    pub read_fraction: f64,
}

impl Default for Set {
    fn default() -> Self {
        Set {
            keys: 4,
            read_fraction: 0.1,
        }
    }
}

impl Workload for Set {
    fn name(&self) -> &'static str {
        "set"
    }

    fn checkers(&self) -> &'static [&'static str] {
        &["set"]
    }

    fn generator(&self, opts: &GenOpts, worker: usize) -> Box<dyn Generator> {
        Box::new(SetGen {
            rng: crate::rng(opts.seed, "set", worker as u64),
            next_elem: worker as u64,
            stride: opts.concurrency.max(1) as u64,
            keys: self.keys.max(1),
            read_fraction: self.read_fraction,
        })
    }
}

struct SetGen {
    rng: StdRng,
    /// Elements are `worker + k * concurrency`: unique across workers without coordination.
    next_elem: u64,
    stride: u64,
    keys: u64,
    read_fraction: f64,
}

impl Generator for SetGen {
    fn next(&mut self, _arrival_ns: u64) -> Op {
        if self.rng.random::<f64>() < self.read_fraction {
            return Op::read(format!("s{}", self.rng.random_range(0..self.keys)));
        }
        let e = self.next_elem;
        self.next_elem += self.stride;
        Op {
            f: F::Add,
            key: format!("s{}", e % self.keys),
            value: json!(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::testutil;

    #[test]
    fn elements_are_unique_across_workers() {
        let seqs = testutil::sequence(&Set::default(), &testutil::opts(5), 500);
        let mut seen = BTreeSet::new();
        let mut adds = 0;
        for (_, op) in seqs.iter().flatten() {
            if op.f == F::Add {
                adds += 1;
                assert!(
                    seen.insert(op.value.as_u64().unwrap()),
                    "duplicate element {op:?}"
                );
            }
        }
        assert!(adds > 1700, "only {adds} adds of 2000 ops");
    }
}
