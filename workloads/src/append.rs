//! `append`: list-append on rotating keys, with reads returning whole lists.
//!
//! Every append is a unique element, so a read reveals the order the store applied them
//! in. The `append` checker requires reads of a key to be prefixes of one another (one
//! total order), free of duplicates and unknown elements, and to include every append
//! acknowledged before the read began.

use rand::Rng;
use rand::rngs::StdRng;
use serde_json::json;

use crate::{F, GenOpts, Generator, Op, Workload, key_period_ns};

pub struct Append {
    pub ops_per_key: u64,
    pub read_fraction: f64,
}

impl Default for Append {
    fn default() -> Self {
        Append {
            ops_per_key: 60,
            read_fraction: 0.5,
        }
    }
}

impl Workload for Append {
    fn name(&self) -> &'static str {
        "append"
    }

    fn checkers(&self) -> &'static [&'static str] {
        &["append"]
    }

    fn generator(&self, opts: &GenOpts, worker: usize) -> Box<dyn Generator> {
        Box::new(AppendGen {
            rng: crate::rng(opts.seed, "append", worker as u64),
            period_ns: key_period_ns(opts, self.ops_per_key),
            next_elem: worker as u64,
            stride: opts.concurrency.max(1) as u64,
            read_fraction: self.read_fraction,
        })
    }
}

struct AppendGen {
    rng: StdRng,
    period_ns: u64,
    next_elem: u64,
    stride: u64,
    read_fraction: f64,
}

impl Generator for AppendGen {
    fn next(&mut self, arrival_ns: u64) -> Op {
        let key = format!("a{}", arrival_ns / self.period_ns);
        if self.rng.random::<f64>() < self.read_fraction {
            return Op::read(key);
        }
        let e = self.next_elem;
        self.next_elem += self.stride;
        Op {
            f: F::Append,
            key,
            value: json!(e),
        }
    }
}
