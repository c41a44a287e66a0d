//! An in-memory [`Kv`]: the model a correct cluster must be indistinguishable from.
//! Used to test workloads and the runner without a cluster, and with `stale_reads`
//! to show the checkers catch a store that serves old data.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use serde_json::Value;

use crate::{Kv, KvError, Mop, MopF};

#[derive(Clone, Default)]
pub struct MemKv {
    state: Arc<Mutex<State>>,
    /// Serve reads from a snapshot taken every `n`th write instead of the current state.
    stale_every: Option<u64>,
}

#[derive(Default)]
struct State {
    map: BTreeMap<String, Value>,
    snapshot: BTreeMap<String, Value>,
    writes: u64,
}

impl MemKv {
    pub fn new() -> MemKv {
        MemKv::default()
    }

    /// A store whose reads lag: they see the state as of the last multiple of `n` writes.
    pub fn stale_reads(n: u64) -> MemKv {
        MemKv {
            stale_every: Some(n.max(1)),
            ..MemKv::default()
        }
    }

    fn wrote(&self, st: &mut State) {
        st.writes += 1;
        if let Some(n) = self.stale_every
            && st.writes % n == 0
        {
            st.snapshot = st.map.clone();
        }
    }
}

impl Kv for MemKv {
    fn read<'a>(&'a mut self, key: &'a str) -> BoxFuture<'a, Result<Value, KvError>> {
        Box::pin(async move {
            let st = self.state.lock().unwrap();
            let m = if self.stale_every.is_some() {
                &st.snapshot
            } else {
                &st.map
            };
            Ok(m.get(key).cloned().unwrap_or(Value::Null))
        })
    }

    fn write<'a>(&'a mut self, key: &'a str, value: Value) -> BoxFuture<'a, Result<(), KvError>> {
        Box::pin(async move {
            let mut st = self.state.lock().unwrap();
            st.map.insert(key.to_string(), value);
            self.wrote(&mut st);
            Ok(())
        })
    }

    fn cas<'a>(
        &'a mut self,
        key: &'a str,
        from: Value,
        to: Value,
    ) -> BoxFuture<'a, Result<(), KvError>> {
        Box::pin(async move {
            let mut st = self.state.lock().unwrap();
            match st.map.get(key) {
                Some(cur) if *cur == from => {
                    st.map.insert(key.to_string(), to);
                    self.wrote(&mut st);
                    Ok(())
                }
                Some(cur) => Err(KvError::Definite(format!("cas mismatch: current {cur}"))),
                None => Err(KvError::Definite("cas on absent key".into())),
            }
        })
    }

    fn append<'a>(&'a mut self, key: &'a str, elem: Value) -> BoxFuture<'a, Result<(), KvError>> {
        Box::pin(async move {
            let mut st = self.state.lock().unwrap();
            let entry = st
                .map
                .entry(key.to_string())
                .or_insert_with(|| Value::Array(vec![]));
            match entry {
                Value::Array(v) => v.push(elem),
                other => return Err(KvError::Definite(format!("append to non-list {other}"))),
            }
            self.wrote(&mut st);
            Ok(())
        })
    }

    /// Atomic under the store's lock, like a serializable database.
    fn txn<'a>(&'a mut self, ops: Vec<Mop>) -> BoxFuture<'a, Result<Vec<Mop>, KvError>> {
        Box::pin(async move {
            let mut st = self.state.lock().unwrap();
            let mut next = st.map.clone();
            let mut done = Vec::with_capacity(ops.len());
            for mut m in ops {
                match m.f {
                    MopF::R => m.value = next.get(&m.key).cloned().unwrap_or(Value::Null),
                    MopF::W => {
                        next.insert(m.key.clone(), m.value.clone());
                    }
                    MopF::Append => match next.entry(m.key.clone()).or_insert_with(|| Value::Array(vec![])) {
                        Value::Array(v) => v.push(m.value.clone()),
                        other => return Err(KvError::Definite(format!("append to non-list {other}"))),
                    },
                }
                done.push(m);
            }
            st.map = next;
            self.wrote(&mut st);
            Ok(done)
        })
    }
}
