//! `bank`: transfers between accounts; the total must be conserved and no balance may
//! go negative in any read.
//!
//! The node offers single-key operations only, so the accounts live in one key, and a
//! transfer is a read followed by a compare-and-set of all balances at once. That makes
//! every transfer atomic if and only if the store's cas is. The balances are stored as the
//! JSON text of a list (`"[10,10,...]"`): the node's values are integers, strings, or
//! lists built by append only.

use rand::Rng;
use rand::rngs::StdRng;
use serde_json::{Value, json};

use crate::{F, GenOpts, Generator, Kv, KvError, Op, Outcome, Workload};

/// The key holding the list of balances.
pub const KEY: &str = "bank";

pub struct Bank {
    pub accounts: usize,
    pub initial_balance: u64,
    pub max_transfer: u64,
    pub read_fraction: f64,
}

impl Default for Bank {
    fn default() -> Self {
        Bank {
            accounts: 8,
            initial_balance: 10,
            max_transfer: 5,
            read_fraction: 0.3,
        }
    }
}

impl Workload for Bank {
    fn name(&self) -> &'static str {
        "bank"
    }

    fn checkers(&self) -> &'static [&'static str] {
        &["bank"]
    }

    fn setup(&self) -> Vec<Op> {
        let balances = vec![self.initial_balance; self.accounts];
        vec![Op {
            f: F::Write,
            key: KEY.into(),
            value: encode(&balances),
        }]
    }

    fn generator(&self, opts: &GenOpts, worker: usize) -> Box<dyn Generator> {
        Box::new(BankGen {
            rng: crate::rng(opts.seed, "bank", worker as u64),
            accounts: self.accounts.max(2),
            max_transfer: self.max_transfer.max(1),
            read_fraction: self.read_fraction,
        })
    }
}

struct BankGen {
    rng: StdRng,
    accounts: usize,
    max_transfer: u64,
    read_fraction: f64,
}

impl Generator for BankGen {
    fn next(&mut self, _arrival_ns: u64) -> Op {
        if self.rng.random::<f64>() < self.read_fraction {
            return Op::read(KEY);
        }
        let from = self.rng.random_range(0..self.accounts);
        let mut to = self.rng.random_range(0..self.accounts - 1);
        if to >= from {
            to += 1;
        }
        let amount = self.rng.random_range(1..=self.max_transfer);
        Op {
            f: F::Transfer,
            key: KEY.into(),
            value: json!({"from": from, "to": to, "amount": amount}),
        }
    }
}

/// The stored form of the balances: the JSON text of the list.
pub fn encode<T: serde::Serialize>(balances: &[T]) -> Value {
    Value::String(serde_json::to_string(balances).expect("integers serialize"))
}

/// Balances from their stored form: the bank checker's reading of it.
pub use faultline_history::values::bank_balances as decode;

/// Read the balances, then cas them to the transferred ones. Only the cas can change
/// anything, so any error before it (even a timeout) is a definite failure.
pub(crate) async fn transfer(op: &Op, kv: &mut dyn Kv) -> Outcome {
    let field = |name: &str| op.value.get(name).and_then(Value::as_u64);
    let (Some(from), Some(to), Some(amount)) = (field("from"), field("to"), field("amount")) else {
        return Outcome::Fail(format!("malformed transfer {}", op.value));
    };
    let current = match kv.read(&op.key).await {
        Ok(v) => v,
        Err(e) => return Outcome::Fail(format!("read before transfer: {e}")),
    };
    let Some(mut balances) = decode(&current) else {
        return Outcome::Fail(format!("bank holds {current}, not a list of balances"));
    };
    let (from, to) = (from as usize, to as usize);
    if from >= balances.len() || to >= balances.len() {
        return Outcome::Fail(format!("no such account in {}", op.value));
    }
    if balances[from] < amount as i64 {
        return Outcome::Fail("insufficient funds".into());
    }
    balances[from] -= amount as i64;
    balances[to] += amount as i64;
    match kv.cas(&op.key, current, encode(&balances)).await {
        Ok(()) => Outcome::Ok(op.value.clone()),
        Err(KvError::Definite(e)) => Outcome::Fail(e),
        Err(KvError::Indefinite(e)) => Outcome::Info(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::execute;
    use crate::mem::MemKv;
    use crate::testutil;

    #[tokio::test]
    async fn transfers_conserve_the_total_on_a_correct_store() {
        let bank = Bank::default();
        let mut kv = MemKv::new();
        for op in bank.setup() {
            assert_eq!(execute(&op, &mut kv).await, Outcome::Ok(op.value.clone()));
        }
        let seqs = testutil::sequence(&bank, &testutil::opts(9), 300);
        let (mut oks, mut insufficient) = (0, 0);
        for (_, op) in seqs.iter().flatten() {
            match execute(op, &mut kv).await {
                Outcome::Ok(v) if op.f == F::Read => {
                    let b = decode(&v).unwrap();
                    assert_eq!(b.iter().sum::<i64>(), 80);
                    assert!(b.iter().all(|x| *x >= 0));
                }
                Outcome::Ok(_) => oks += 1,
                Outcome::Fail(e) if e == "insufficient funds" => insufficient += 1,
                other => panic!("{op:?} -> {other:?}"),
            }
        }
        assert!(oks > 500, "only {oks} transfers succeeded");
        assert!(insufficient > 0, "no transfer ever hit an empty account");
    }

    #[tokio::test]
    async fn transfer_before_setup_fails_definitely() {
        let op = Op {
            f: F::Transfer,
            key: KEY.into(),
            value: json!({"from":0,"to":1,"amount":1}),
        };
        let mut kv = MemKv::new();
        assert!(matches!(execute(&op, &mut kv).await, Outcome::Fail(_)));
    }
}
