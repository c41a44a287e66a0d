//! Elle-style transactional isolation checking (Kingsbury & Alvaro, "Elle: Inferring
//! Isolation Anomalies from Experimental Observations", VLDB 2020).
//!
//! Transactions are `f = "txn"` ops whose value is a list of `[f, key, value]` micro-ops
//! (`r`, `w`, `append`). From what reads observed we infer write-write, write-read and
//! read-write dependencies between transactions, add real-time edges when the model asks
//! for them, and look for cycles: Tarjan's strongly connected components, then a shortest
//! cycle of each anomaly class inside every component. Each cycle is classified the way
//! Adya and Elle do (G0, G1c, G-single, G-nonadjacent, G2-item; `-realtime` or `-process`
//! when it needs a real-time or process-order edge) and every class rules out the
//! consistency models that proscribe it. Non-cyclic anomalies (aborted and intermediate reads, internal
//! inconsistency, duplicates, incompatible orders) are found directly.
//!
//! Soundness with indeterminate (`info`) transactions: their writes may or may not have
//! happened, so they only take part in the graph when a read observed one of their writes
//! (then they certainly committed); unobserved info writes add no edges.

mod graph;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::history::{Event, EventType};
use crate::registry::{CheckResult, Checker, Validity};
use graph::{Graph, PR, RT, RW, WR, WW};

/// Which dependency inference to use: the data model of the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataModel {
    ListAppend,
    RwRegister,
}

/// Consistency models, weakest first along the chains Elle draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Model {
    ReadUncommitted,
    ReadCommitted,
    RepeatableRead,
    SnapshotIsolation,
    /// Snapshot isolation in which each process also sees its own earlier transactions.
    StrongSessionSnapshotIsolation,
    /// Snapshot isolation in which every transaction sees all that completed before it began.
    StrongSnapshotIsolation,
    Serializable,
    /// Serializable, consistent with each process's order.
    StrongSessionSerializable,
    StrictSerializable,
}

pub const MODELS: &[Model] = &[
    Model::ReadUncommitted,
    Model::ReadCommitted,
    Model::RepeatableRead,
    Model::SnapshotIsolation,
    Model::StrongSessionSnapshotIsolation,
    Model::StrongSnapshotIsolation,
    Model::Serializable,
    Model::StrongSessionSerializable,
    Model::StrictSerializable,
];

/// The cycle classes, each with the weakest of the plain models that proscribes it.
const CYCLES: &[&str] = &["G0", "G1c", "G-single", "G-nonadjacent", "G2-item"];

impl Model {
    pub fn name(self) -> &'static str {
        match self {
            Model::ReadUncommitted => "read-uncommitted",
            Model::ReadCommitted => "read-committed",
            Model::RepeatableRead => "repeatable-read",
            Model::SnapshotIsolation => "snapshot-isolation",
            Model::StrongSessionSnapshotIsolation => "strong-session-snapshot-isolation",
            Model::StrongSnapshotIsolation => "strong-snapshot-isolation",
            Model::Serializable => "serializable",
            Model::StrongSessionSerializable => "strong-session-serializable",
            Model::StrictSerializable => "strict-serializable",
        }
    }

    /// Whether this model proscribes `anomaly` (Adya's and Elle's tables; the non-cyclic
    /// anomalies that no database may show are proscribed by every model).
    ///
    /// G-nonadjacent (two or more rw edges, no two adjacent) is G2 of Adya, and generalized
    /// snapshot isolation forbids it (Cerone and Gotsman; Elle's table): so snapshot
    /// isolation rules out G-single and G-nonadjacent but allows G2-item's adjacent rw
    /// edges (write skew). Our cycles are over items, so G-nonadjacent is also G2-item,
    /// which repeatable read forbids. A `-process` cycle needs process order, a
    /// `-realtime` one real-time order: the strong-session models forbid the first, the
    /// strong (real-time) models both.
    pub fn proscribes(self, anomaly: &str) -> bool {
        use Model::*;
        if let Some(base) = anomaly.strip_suffix("-realtime") {
            return CYCLES.contains(&base) && self.realtime() && self.base().proscribes(base);
        }
        if let Some(base) = anomaly.strip_suffix("-process") {
            return CYCLES.contains(&base) && self != self.base() && self.base().proscribes(base);
        }
        let m = self.base();
        match anomaly {
            "G0" | "internal" | "duplicate-elements" | "incompatible-order" | "garbage-read" => true,
            "G1a" | "G1b" | "G1c" => m != ReadUncommitted,
            "G-single" | "G-nonadjacent" => matches!(m, SnapshotIsolation | RepeatableRead | Serializable),
            "G2-item" => matches!(m, RepeatableRead | Serializable),
            // First-committer-wins forbids it under snapshot isolation.
            "lost-update" => matches!(m, SnapshotIsolation | RepeatableRead | Serializable),
            _ => false,
        }
    }

    /// The plain model a session or real-time variant strengthens.
    fn base(self) -> Model {
        use Model::*;
        match self {
            StrongSessionSnapshotIsolation | StrongSnapshotIsolation => SnapshotIsolation,
            StrongSessionSerializable | StrictSerializable => Serializable,
            other => other,
        }
    }

    fn realtime(self) -> bool {
        matches!(self, Model::StrictSerializable | Model::StrongSnapshotIsolation)
    }

    /// Session models order each process's transactions (real-time order implies it).
    fn process_order(self) -> bool {
        matches!(self, Model::StrongSessionSerializable | Model::StrongSessionSnapshotIsolation)
    }
}

impl std::str::FromStr for Model {
    type Err = UnknownModel;
    fn from_str(s: &str) -> Result<Model, UnknownModel> {
        MODELS.iter().copied().find(|m| m.name() == s).ok_or_else(|| UnknownModel(s.to_string()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown consistency model `{0}` (known: read-uncommitted, read-committed, repeatable-read, snapshot-isolation, serializable, strict-serializable)")]
pub struct UnknownModel(pub String);

/// A multiply-rotate hasher (FxHash's): keys here are small interned integers, for which
/// SipHash's flooding resistance buys nothing and costs most of the analysis time.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u32(&mut self, x: u32) {
        self.write_u64(u64::from(x));
    }
    fn write_i64(&mut self, x: i64) {
        self.write_u64(x as u64);
    }
    fn write_usize(&mut self, x: usize) {
        self.write_u64(x as u64);
    }
    fn write_u8(&mut self, x: u8) {
        self.write_u64(u64::from(x));
    }
    fn write_isize(&mut self, x: isize) {
        self.write_u64(x as u64);
    }
}

pub(crate) type Fx = std::hash::BuildHasherDefault<FxHasher>;
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, Fx>;
pub(crate) type HashSet<K> = std::collections::HashSet<K, Fx>;

/// Counted when a key got the same value appended twice: the inference then cannot tell
/// the appends apart, so a history that shows nothing else is `unknown`, not valid.
const NOT_UNIQUE: &str = "non-unique-appends";

/// How many explained instances of each anomaly are kept (all are counted).
pub const SHOWN_PER_ANOMALY: usize = 8;

#[derive(Debug, Clone)]
pub struct ElleChecker {
    pub data: DataModel,
    pub model: Model,
    /// Past this the answer is `unknown` rather than a guess.
    pub time_limit: Duration,
    /// For the dependency graph's edges, the part that grows fastest with the history;
    /// past it the answer is `unknown` (or `invalid` on a cycle already found), never an
    /// out-of-memory.
    pub memory_limit_bytes: usize,
}

impl ElleChecker {
    pub fn new(data: DataModel, model: Model) -> Self {
        ElleChecker { data, model, time_limit: Duration::from_secs(300), memory_limit_bytes: 2 << 30 }
    }
}

impl Checker for ElleChecker {
    fn name(&self) -> &'static str {
        match self.data {
            DataModel::ListAppend => "elle-list-append",
            DataModel::RwRegister => "elle-rw-register",
        }
    }

    fn check(&self, history: &[Event]) -> CheckResult {
        let edges_max = self.memory_limit_bytes / std::mem::size_of::<graph::Edge>().max(1);
        let r = analyze(history, self.data, self.model, Instant::now() + self.time_limit, edges_max);
        crate::registry::unless_nothing_checked(
            history,
            CheckResult { checker: self.name().to_string(), valid: r.valid, details: r.details },
        )
    }
}

/// A scalar key or value, interned so the analysis hashes small integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum V {
    I(i64),
    S(u32),
}

#[derive(Default)]
struct Interner {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    fn scalar(&mut self, v: &Value) -> V {
        if let Some(i) = v.as_i64() {
            return V::I(i);
        }
        let s = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if let Some(&id) = self.ids.get(&s) {
            return V::S(id);
        }
        let id = self.names.len() as u32;
        self.names.push(s.clone());
        self.ids.insert(s, id);
        V::S(id)
    }

    fn show(&self, v: V) -> String {
        match v {
            V::I(i) => i.to_string(),
            V::S(id) => self.names[id as usize].clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mf {
    R,
    W,
    Append,
}

#[derive(Debug, Clone)]
enum Rv {
    /// Not read (an invocation) or read nothing.
    Nil,
    One(V),
    List(Vec<V>),
}

#[derive(Debug, Clone)]
struct Mop {
    f: Mf,
    key: V,
    /// Writes and appends: the value; reads: [`Rv`] in `read`.
    val: Option<V>,
    read: Rv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    Info,
    Fail,
}

struct Txn {
    process: u64,
    /// History positions of the invocation and completion (usize::MAX: never completed).
    invoke: usize,
    complete: usize,
    index: u64,
    status: Status,
    mops: Vec<Mop>,
}

struct Outcome {
    valid: Validity,
    details: Value,
}

/// Collected anomalies: every instance counted, the first few explained.
#[derive(Default)]
struct Found {
    counts: std::collections::BTreeMap<String, u64>,
    shown: std::collections::BTreeMap<String, Vec<Value>>,
}

impl Found {
    fn add(&mut self, kind: &str, explain: impl FnOnce() -> Value) {
        *self.counts.entry(kind.to_string()).or_default() += 1;
        let v = self.shown.entry(kind.to_string()).or_default();
        if v.len() < SHOWN_PER_ANOMALY {
            v.push(explain());
        }
    }
}

fn parse_mops(v: &Value, int: &mut Interner) -> Option<Vec<Mop>> {
    let arr = v.as_array()?;
    let mut out = Vec::with_capacity(arr.len());
    for m in arr {
        let [f, k, x] = m.as_array()?.as_slice() else { return None };
        let f = match f.as_str()?.trim_start_matches(':') {
            "r" => Mf::R,
            "w" => Mf::W,
            "append" => Mf::Append,
            _ => return None,
        };
        let key = int.scalar(k);
        let (val, read) = match f {
            Mf::R => (
                None,
                match x {
                    Value::Null => Rv::Nil,
                    Value::Array(a) => Rv::List(a.iter().map(|e| int.scalar(e)).collect()),
                    s => Rv::One(int.scalar(s)),
                },
            ),
            _ => (Some(int.scalar(x)), Rv::Nil),
        };
        out.push(Mop { f, key, val, read });
    }
    Some(out)
}

/// Pairs invocations with completions per process; unanswered invocations become `info`.
fn collect(history: &[Event], int: &mut Interner, bad: &mut Vec<String>) -> Vec<Txn> {
    let mut open: HashMap<u64, usize> = HashMap::default();
    let mut txns: Vec<Txn> = Vec::new();
    for (pos, e) in history.iter().enumerate() {
        let Some(p) = e.client() else { continue };
        if e.f != "txn" {
            continue;
        }
        let index = e.index.unwrap_or(pos as u64);
        let Some(mops) = parse_mops(&e.value, int) else {
            if bad.len() < 5 {
                bad.push(format!("event {index}: value {} is not a list of [f, key, value] micro-ops", e.value));
            }
            continue;
        };
        match e.kind {
            EventType::Invoke => {
                open.insert(p, txns.len());
                txns.push(Txn { process: p, invoke: pos, complete: usize::MAX, index, status: Status::Info, mops });
            }
            kind => {
                let Some(t) = open.remove(&p) else { continue };
                let t = &mut txns[t];
                t.complete = pos;
                t.index = index;
                t.status = match kind {
                    EventType::Ok => Status::Ok,
                    EventType::Fail => Status::Fail,
                    _ => Status::Info,
                };
                // The completion carries what was read; an info keeps the invocation's writes.
                if kind == EventType::Ok && mops.len() == t.mops.len() {
                    t.mops = mops;
                }
            }
        }
    }
    txns
}

fn analyze(history: &[Event], data: DataModel, model: Model, deadline: Instant, edges_max: usize) -> Outcome {
    let mut int = Interner::default();
    let mut bad = Vec::new();
    let txns = collect(history, &mut int, &mut bad);
    let mut found = Found::default();
    let mut g = Graph::with_edges_max(txns.len(), edges_max);
    match data {
        DataModel::ListAppend => list_append(&txns, &int, &mut g, &mut found),
        DataModel::RwRegister => rw_register(&txns, &int, &mut g, &mut found),
    }
    if model.realtime() {
        realtime_edges(&txns, &mut g);
    } else if model.process_order() {
        process_edges(&txns, &mut g);
    }
    let name = |t: usize| txn_name(&txns[t]);
    let complete = graph::cycles(&g, &mut found, &name, &int_show(&int), deadline);
    let mut ruled_out: Vec<&str> = Vec::new();
    for m in MODELS {
        if found.counts.keys().any(|a| m.proscribes(a)) {
            ruled_out.push(m.name());
        }
    }
    let possible: Vec<&str> = MODELS.iter().map(|m| m.name()).filter(|m| !ruled_out.contains(m)).collect();
    let invalid = found.counts.keys().any(|a| model.proscribes(a));
    let valid = if invalid {
        Validity::Invalid
    } else if !complete || g.overflowed() || !bad.is_empty() || found.counts.contains_key(NOT_UNIQUE) {
        Validity::Unknown
    } else {
        Validity::Valid
    };
    let mut details = json!({
        "consistency-model": model.name(),
        "txns": txns.len(),
        "ok": txns.iter().filter(|t| t.status == Status::Ok).count(),
        "info": txns.iter().filter(|t| t.status == Status::Info).count(),
        "edges": g.edge_count(),
        "anomaly-types": found.counts.keys().collect::<Vec<_>>(),
        "anomaly-counts": found.counts,
        "anomalies": found.shown,
        "not": ruled_out,
        "also-possible": possible,
    });
    if !complete {
        details["reason"] = json!("cycle search ran out of its time budget");
    }
    if g.overflowed() {
        details["reason"] = json!(format!(
            "the dependency graph outgrew its memory budget ({edges_max} edges); cycles among the edges kept are real, but none found proves nothing"
        ));
    }
    if found.counts.contains_key(NOT_UNIQUE) && !invalid {
        details["reason"] = json!("some key got the same value appended twice; dependencies cannot be inferred soundly");
    }
    if !bad.is_empty() {
        details["malformed"] = json!(bad);
        details["reason"] = json!("some transactions could not be read");
    }
    if model.realtime() {
        details["realtime-edges"] = json!(true);
    }
    if model.process_order() {
        details["process-edges"] = json!(true);
    }
    Outcome { valid, details }
}

fn int_show(int: &Interner) -> impl Fn(V) -> String + '_ {
    move |v| int.show(v)
}

fn txn_name(t: &Txn) -> String {
    format!("T{} (process {})", t.index, t.process)
}

fn mops_text(t: &Txn, int: &Interner) -> String {
    let parts: Vec<String> = t
        .mops
        .iter()
        .map(|m| match m.f {
            Mf::R => format!(
                "r {} {}",
                int.show(m.key),
                match &m.read {
                    Rv::Nil => "nil".to_string(),
                    Rv::One(v) => int.show(*v),
                    Rv::List(l) => format!("[{}]", l.iter().map(|v| int.show(*v)).collect::<Vec<_>>().join(" ")),
                }
            ),
            Mf::W => format!("w {} {}", int.show(m.key), int.show(m.val.expect("writes carry a value"))),
            Mf::Append => format!("append {} {}", int.show(m.key), int.show(m.val.expect("appends carry a value"))),
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

/// Whether a transaction's effects are known to have happened (ok), may have (info), or not.
fn committed(t: &Txn) -> bool {
    t.status == Status::Ok
}

fn list_append(txns: &[Txn], int: &Interner, g: &mut Graph, found: &mut Found) {
    // Who appended what: (key, element) -> (txn, position among that txn's appends to key).
    let mut writer: HashMap<(V, V), (usize, bool)> = HashMap::default();
    let mut dup_appends = 0u64;
    for (i, t) in txns.iter().enumerate() {
        let mut last_of_key: HashMap<V, V> = HashMap::default();
        for m in t.mops.iter().filter(|m| m.f == Mf::Append) {
            last_of_key.insert(m.key, m.val.expect("appends carry a value"));
        }
        for m in t.mops.iter().filter(|m| m.f == Mf::Append) {
            let v = m.val.expect("appends carry a value");
            let is_last = last_of_key.get(&m.key) == Some(&v);
            if writer.insert((m.key, v), (i, is_last)).is_some() {
                dup_appends += 1;
            }
        }
    }
    if dup_appends > 0 {
        // Elle's inference needs every appended value unique per key.
        *found.counts.entry(NOT_UNIQUE.into()).or_default() += dup_appends;
    }
    // Internal consistency, duplicates, and the external reads of every ok transaction.
    let mut reads: Vec<(usize, V, &[V])> = Vec::new();
    for (i, t) in txns.iter().enumerate().filter(|(_, t)| committed(t)) {
        let mut known: HashMap<V, (Option<Vec<V>>, Vec<V>)> = HashMap::default();
        for (j, m) in t.mops.iter().enumerate() {
            match m.f {
                Mf::Append => known.entry(m.key).or_default().1.push(m.val.expect("appends carry a value")),
                Mf::W => {}
                Mf::R => {
                    let list: &[V] = match &m.read {
                        Rv::Nil => &[],
                        Rv::List(l) => l,
                        Rv::One(v) => std::slice::from_ref(v),
                    };
                    let mut seen = HashSet::default();
                    if list.len() > 1
                        && let Some(d) = list.iter().find(|v| !seen.insert(**v))
                    {
                        found.add("duplicate-elements", || {
                            json!({"txn": txn_name(t), "key": int.show(m.key), "element": int.show(*d),
                                   "explanation": format!("{} read key {} as {} with {} twice", txn_name(t), int.show(m.key), mops_text(t, int), int.show(*d))})
                        });
                    }
                    let entry = known.entry(m.key).or_default();
                    let consistent = match &entry.0 {
                        Some(prev) => prev.len() + entry.1.len() == list.len()
                            && list.starts_with(prev)
                            && list[prev.len()..] == entry.1[..],
                        None => list.ends_with(&entry.1),
                    };
                    // A read that already holds what the transaction appends only later:
                    // no serial order can explain it, whatever other transactions did.
                    let future = t.mops[j + 1..].iter().find(|later| {
                        later.f == Mf::Append && later.key == m.key && later.val.is_some_and(|v| list.contains(&v))
                    });
                    if let Some(later) = future {
                        found.add("internal", || {
                            json!({"txn": txn_name(t), "key": int.show(m.key),
                                   "explanation": format!("{} {}: the read of key {} already holds {}, which the transaction appends only after it", txn_name(t), mops_text(t, int), int.show(m.key), int.show(later.val.expect("checked")))})
                        });
                    } else if !consistent {
                        found.add("internal", || {
                            json!({"txn": txn_name(t), "key": int.show(m.key),
                                   "explanation": format!("{} {}: the read of key {} does not reflect the transaction's own earlier reads and appends", txn_name(t), mops_text(t, int), int.show(m.key))})
                        });
                    }
                    let external = entry.0.is_none() && entry.1.is_empty();
                    *entry = (Some(list.to_vec()), Vec::new());
                    if external {
                        reads.push((i, m.key, list));
                    }
                }
            }
        }
    }
    // Version order per key: the longest read; every other read must be its prefix.
    let mut longest: HashMap<V, &[V]> = HashMap::default();
    for &(_, k, l) in &reads {
        let e = longest.entry(k).or_insert(l);
        if l.len() > e.len() {
            *e = l;
        }
    }
    for &(i, k, l) in &reads {
        let full = longest[&k];
        if !full.starts_with(l) {
            found.add("incompatible-order", || {
                let show = |x: &[V]| format!("[{}]", x.iter().map(|v| int.show(*v)).collect::<Vec<_>>().join(" "));
                json!({"key": int.show(k), "explanation": format!("{} read key {} as {}, which is not a prefix of another read {}", txn_name(&txns[i]), int.show(k), show(l), show(full))})
            });
        }
    }
    // Unobserved appends by committed transactions follow every observed element.
    let mut unobserved: HashMap<V, Vec<usize>> = HashMap::default();
    let mut observed: HashSet<(V, V)> = HashSet::default();
    for (k, l) in &longest {
        for v in l.iter() {
            observed.insert((*k, *v));
        }
    }
    for (&(k, v), &(w, _)) in &writer {
        if !observed.contains(&(k, v)) && committed(&txns[w]) {
            unobserved.entry(k).or_default().push(w);
        }
    }
    for ws in unobserved.values_mut() {
        ws.sort_unstable();
        ws.dedup();
    }
    // ww along each version order, and from its last writer to the unobserved appenders.
    for (&k, &l) in &longest {
        let mut prev: Option<(usize, V)> = None;
        for &v in l {
            let Some(&(w, _)) = writer.get(&(k, v)) else {
                found.add("garbage-read", || json!({"key": int.show(k), "element": int.show(v),
                    "explanation": format!("key {} holds element {}, which no transaction appended", int.show(k), int.show(v))}));
                continue;
            };
            if txns[w].status == Status::Fail {
                continue;
            }
            if let Some((p, pv)) = prev
                && p != w
            {
                g.add(p, w, WW, k, pv, v);
            }
            prev = Some((w, v));
        }
        if let (Some((p, pv)), Some(ws)) = (prev, unobserved.get(&k)) {
            for &w in ws {
                if w != p {
                    g.add(p, w, WW, k, pv, pv);
                }
            }
        }
    }
    // wr, rw, G1a, G1b from every external read.
    for &(r, k, l) in &reads {
        let full = longest[&k];
        for &v in l {
            if let Some(&(w, _)) = writer.get(&(k, v))
                && txns[w].status == Status::Fail
            {
                found.add("G1a", || json!({"key": int.show(k), "element": int.show(v),
                    "explanation": format!("{} read element {} of key {}, appended by {} {}, which failed", txn_name(&txns[r]), int.show(v), int.show(k), txn_name(&txns[w]), mops_text(&txns[w], int))}));
            }
        }
        if let Some(&last) = l.last()
            && let Some(&(w, is_last)) = writer.get(&(k, last))
        {
            if !is_last && w != r && txns[w].status != Status::Fail {
                found.add("G1b", || json!({"key": int.show(k), "element": int.show(last),
                    "explanation": format!("{} read key {} ending in {}, an intermediate append of {} {}, which appended to the key again", txn_name(&txns[r]), int.show(k), int.show(last), txn_name(&txns[w]), mops_text(&txns[w], int))}));
            }
            if w != r && txns[w].status != Status::Fail {
                g.add(w, r, WR, k, last, last);
            }
        }
        if full.starts_with(l) {
            if l.len() < full.len() {
                if let Some(&(w, _)) = writer.get(&(k, full[l.len()]))
                    && w != r
                    && txns[w].status != Status::Fail
                {
                    g.add(r, w, RW, k, l.last().copied().unwrap_or(V::I(i64::MIN)), full[l.len()]);
                }
            } else if let Some(ws) = unobserved.get(&k) {
                for &w in ws {
                    if w != r {
                        g.add(r, w, RW, k, l.last().copied().unwrap_or(V::I(i64::MIN)), V::I(i64::MIN));
                    }
                }
            }
        }
    }
}

fn rw_register(txns: &[Txn], int: &Interner, g: &mut Graph, found: &mut Found) {
    // Unique writes: (key, value) -> (txn, whether it is the txn's final write of key).
    let mut writer: HashMap<(V, V), (usize, bool)> = HashMap::default();
    let mut writers_of: HashMap<V, Vec<usize>> = HashMap::default();
    for (i, t) in txns.iter().enumerate() {
        let mut last: HashMap<V, V> = HashMap::default();
        for m in t.mops.iter().filter(|m| m.f == Mf::W) {
            last.insert(m.key, m.val.expect("writes carry a value"));
        }
        for m in t.mops.iter().filter(|m| m.f == Mf::W) {
            let v = m.val.expect("writes carry a value");
            writer.insert((m.key, v), (i, last.get(&m.key) == Some(&v)));
        }
        if committed(t) {
            for k in last.keys() {
                writers_of.entry(*k).or_default().push(i);
            }
        }
    }
    // External reads, internal consistency, and (from per-transaction order) the write a
    // transaction overwrote: it read `v` of `k` before writing `k` itself.
    let mut ext_reads: Vec<(usize, V, Option<V>)> = Vec::new();
    let mut overwrote: HashMap<(V, Option<V>), Vec<usize>> = HashMap::default();
    for (i, t) in txns.iter().enumerate().filter(|(_, t)| committed(t)) {
        let mut state: HashMap<V, Option<V>> = HashMap::default();
        let mut first_read: HashMap<V, Option<V>> = HashMap::default();
        let mut wrote: HashSet<V> = HashSet::default();
        for m in &t.mops {
            match m.f {
                Mf::W | Mf::Append => {
                    if m.f == Mf::W
                        && !wrote.contains(&m.key)
                        && let Some(seen) = first_read.get(&m.key)
                    {
                        overwrote.entry((m.key, *seen)).or_default().push(i);
                    }
                    wrote.insert(m.key);
                    state.insert(m.key, m.val);
                }
                Mf::R => {
                    let got = match &m.read {
                        Rv::Nil => None,
                        Rv::One(v) => Some(*v),
                        Rv::List(_) => None,
                    };
                    if let Some(prev) = state.get(&m.key) {
                        if *prev != got {
                            found.add("internal", || json!({"txn": txn_name(t), "key": int.show(m.key),
                                "explanation": format!("{} {}: the read of key {} does not see the transaction's own earlier read or write", txn_name(t), mops_text(t, int), int.show(m.key))}));
                        }
                        continue;
                    }
                    state.insert(m.key, got);
                    first_read.insert(m.key, got);
                    ext_reads.push((i, m.key, got));
                }
            }
        }
    }
    for (&(k, seen), ts) in &overwrote {
        if ts.len() > 1 {
            found.add("lost-update", || {
                let who: Vec<String> = ts.iter().map(|&t| txn_name(&txns[t])).collect();
                json!({"key": int.show(k), "explanation": format!("{} all read {} of key {} and wrote over it", who.join(", "), seen.map_or("nothing".into(), |v| int.show(v)), int.show(k))})
            });
        }
        if let Some(v) = seen
            && let Some(&(w, _)) = writer.get(&(k, v))
        {
            for &t in ts {
                if t != w && txns[w].status != Status::Fail {
                    g.add(w, t, WW, k, v, v);
                }
            }
        }
    }
    for &(r, k, got) in &ext_reads {
        match got {
            None => {
                // The initial state precedes every committed write of the key.
                for &w in writers_of.get(&k).map_or(&[][..], |v| v) {
                    if w != r {
                        g.add(r, w, RW, k, V::I(i64::MIN), V::I(i64::MIN));
                    }
                }
            }
            Some(v) => {
                let Some(&(w, is_last)) = writer.get(&(k, v)) else {
                    // Elle draws no edge for a value nobody wrote and asserts nothing about it;
                    // it is reported but proscribed only for list-append (see below).
                    *found.counts.entry("garbage-read-unverified".into()).or_default() += 1;
                    continue;
                };
                if w == r {
                    continue;
                }
                if txns[w].status == Status::Fail {
                    found.add("G1a", || json!({"key": int.show(k), "value": int.show(v),
                        "explanation": format!("{} read {} of key {}, written by {} {}, which failed", txn_name(&txns[r]), int.show(v), int.show(k), txn_name(&txns[w]), mops_text(&txns[w], int))}));
                    continue;
                }
                if !is_last {
                    found.add("G1b", || json!({"key": int.show(k), "value": int.show(v),
                        "explanation": format!("{} read {} of key {}, an intermediate write of {} {}", txn_name(&txns[r]), int.show(v), int.show(k), txn_name(&txns[w]), mops_text(&txns[w], int))}));
                }
                g.add(w, r, WR, k, v, v);
                for &t in overwrote.get(&(k, Some(v))).map_or(&[][..], |v| v) {
                    if t != r {
                        g.add(r, t, RW, k, v, v);
                    }
                }
            }
        }
    }
}

/// Process order: each process's transaction before its next one. A process whose
/// transaction is indeterminate runs nothing after it (Jepsen gives it a new process), so
/// only committed transactions, and info ones a read observed, take part.
fn process_edges(txns: &[Txn], g: &mut Graph) {
    let touched = g.touched();
    let mut last: HashMap<u64, usize> = HashMap::default();
    let mut order: Vec<usize> = (0..txns.len()).collect();
    order.sort_by_key(|&i| txns[i].invoke);
    for i in order {
        let t = &txns[i];
        if !(committed(t) || (t.status == Status::Info && touched[i])) {
            continue;
        }
        if let Some(&p) = last.get(&t.process) {
            g.add(p, i, PR, V::I(0), V::I(0), V::I(0));
        }
        last.insert(t.process, i);
    }
}

/// Real-time order, transitively reduced: T1 -> T2 when T1 completed before T2 was invoked,
/// kept only for T1 on the "frontier" (not already followed by a later completion).
fn realtime_edges(txns: &[Txn], g: &mut Graph) {
    let mut events: Vec<(usize, bool, usize)> = Vec::with_capacity(txns.len() * 2);
    let touched = g.touched();
    for (i, t) in txns.iter().enumerate() {
        let in_graph = committed(t) || (t.status == Status::Info && touched[i]);
        if !in_graph {
            continue;
        }
        events.push((t.invoke, true, i));
        if t.complete != usize::MAX && t.status == Status::Ok {
            events.push((t.complete, false, i));
        }
    }
    events.sort_unstable();
    let mut frontier: Vec<usize> = Vec::new();
    let mut at_invoke: HashMap<usize, Vec<usize>> = HashMap::default();
    for (_, invoke, i) in events {
        if invoke {
            for &f in &frontier {
                g.add(f, i, RT, V::I(0), V::I(0), V::I(0));
            }
            at_invoke.insert(i, frontier.clone());
        } else {
            let before = at_invoke.remove(&i).unwrap_or_default();
            frontier.retain(|f| !before.contains(f));
            frontier.push(i);
        }
    }
}

#[cfg(test)]
mod tests;
