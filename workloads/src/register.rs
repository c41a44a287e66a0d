//! `register`: independent keys, each a compare-and-set register, checked for
//! linearizability key by key.
//!
//! Linearizability checking is exponential in the worst case, so each key receives a
//! bounded number of operations: keys rotate on the scheduled arrival time, every worker
//! moving to the next key at the same moment, which keeps ops on one key concurrent
//! (that is where anomalies show) while bounding each key's history.

use rand::Rng;
use rand::rngs::StdRng;
use serde_json::json;

use crate::{F, GenOpts, Generator, Op, Workload, key_period_ns};

pub struct Register {
    /// Target ops per key over all workers.
    pub ops_per_key: u64,
    /// Values are drawn from `0..values`; a small domain makes cas succeed often.
    pub values: u64,
}

impl Default for Register {
    fn default() -> Self {
        Register {
            ops_per_key: 40,
            values: 5,
        }
    }
}

impl Workload for Register {
    fn name(&self) -> &'static str {
        "register"
    }

    fn checkers(&self) -> &'static [&'static str] {
        &["linearizable"]
    }

    fn generator(&self, opts: &GenOpts, worker: usize) -> Box<dyn Generator> {
        Box::new(RegisterGen {
            rng: crate::rng(opts.seed, "register", worker as u64),
            period_ns: key_period_ns(opts, self.ops_per_key),
            values: self.values.max(1),
        })
    }
}

struct RegisterGen {
    rng: StdRng,
    period_ns: u64,
    values: u64,
}

impl Generator for RegisterGen {
    fn next(&mut self, arrival_ns: u64) -> Op {
        let key = format!("r{}", arrival_ns / self.period_ns);
        let roll: f64 = self.rng.random();
        let v = |rng: &mut StdRng, n: u64| rng.random_range(0..n);
        if roll < 0.5 {
            Op::read(key)
        } else if roll < 0.75 {
            Op {
                f: F::Write,
                key,
                value: json!(v(&mut self.rng, self.values)),
            }
        } else {
            let from = v(&mut self.rng, self.values);
            let to = v(&mut self.rng, self.values);
            Op {
                f: F::Cas,
                key,
                value: json!([from, to]),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::testutil;

    #[test]
    fn keys_rotate_with_bounded_ops_shared_by_all_workers() {
        let opts = GenOpts {
            seed: 11,
            concurrency: 5,
            rate_per_s: 200.0,
        };
        let seqs = testutil::sequence(&Register::default(), &opts, 2000);
        let mut per_key: BTreeMap<String, (u64, BTreeSet<usize>)> = BTreeMap::new();
        for (w, seq) in seqs.iter().enumerate() {
            for (_, op) in seq {
                let e = per_key.entry(op.key.clone()).or_default();
                e.0 += 1;
                e.1.insert(w);
            }
        }
        // Only keys fully inside every worker's horizon (the first 40 s).
        let full: Vec<_> = per_key
            .iter()
            .filter(|(k, _)| k[1..].parse::<u64>().unwrap() < 180)
            .collect();
        assert!(full.len() > 100);
        let max = full.iter().map(|(_, (n, _))| *n).max().unwrap();
        let mean = full.iter().map(|(_, (n, _))| *n).sum::<u64>() as f64 / full.len() as f64;
        assert!((mean - 40.0).abs() < 4.0, "mean ops per key {mean}");
        assert!(max < 80, "a key got {max} ops");
        let shared = full.iter().filter(|(_, (_, ws))| ws.len() == 5).count();
        assert!(
            shared * 10 >= full.len() * 9,
            "keys seen by all workers: {shared}/{}",
            full.len()
        );
    }

    #[test]
    fn mix_of_reads_writes_and_cas() {
        let seqs = testutil::sequence(&Register::default(), &testutil::opts(1), 1000);
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for op in seqs.iter().flatten().map(|(_, op)| op) {
            *counts.entry(op.f.name()).or_default() += 1;
            match op.f {
                F::Read => assert!(op.value.is_null()),
                F::Write => assert!(op.value.as_u64().unwrap() < 5),
                F::Cas => assert_eq!(op.value.as_array().unwrap().len(), 2),
                _ => panic!("unexpected op {op:?}"),
            }
        }
        assert!(counts["read"] > 1800 && counts["read"] < 2200, "{counts:?}");
        assert!(counts["write"] > 850 && counts["cas"] > 850, "{counts:?}");
    }
}
