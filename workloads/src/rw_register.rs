//! `rw-register`: transactions of reads and unique writes over a small, rotating pool of
//! keys, for Elle's register analysis (a unique write lets a read name its writer).

use crate::list_append::TxnGen;
use crate::{GenOpts, Generator, MopF, Op, Workload};

pub struct RwRegister {
    pub txn_length_max: usize,
    pub key_count: usize,
    pub writes_per_key_max: u64,
    pub read_fraction: f64,
}

impl Default for RwRegister {
    fn default() -> Self {
        RwRegister { txn_length_max: 4, key_count: 8, writes_per_key_max: 32, read_fraction: 0.5 }
    }
}

impl Workload for RwRegister {
    fn name(&self) -> &'static str {
        "rw-register"
    }

    fn checkers(&self) -> &'static [&'static str] {
        &["elle-rw-register"]
    }

    fn generator(&self, opts: &GenOpts, worker: usize) -> Box<dyn Generator> {
        Box::new(TxnGen::new(
            crate::rng(opts.seed, "rw-register", worker as u64),
            opts,
            worker,
            self.txn_length_max,
            self.key_count,
            self.writes_per_key_max,
            self.read_fraction,
            MopF::W,
        ))
    }

    fn final_reads(&self, _keys_touched: &std::collections::BTreeSet<String>) -> Vec<Op> {
        Vec::new()
    }
}
