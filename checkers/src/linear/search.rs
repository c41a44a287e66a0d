//! Just-in-time linearization (Wing & Gong, Lowe) with memoized configurations.
//!
//! Operations of one key sit in a doubly linked list of call and return entries ordered by
//! time. The search walks the list: at a call entry it tries to linearize that operation
//! next; at a return entry every operation still pending must already have been placed, so
//! it backtracks. A configuration — the set of linearized operations and the state they
//! lead to — is explored at most once.
//!
//! What makes it fast:
//! - The set is stored relative to its frontier `f` (every operation before `f` in call
//!   order is linearized): the key is `(state, f, the bitset words from f's word to the
//!   highest linearized operation's word)` — usually three 64-bit words — kept in one
//!   arena behind an open-addressing table, instead of an n-bit set copied per entry.
//! - States are interned to `u32` and every `(state, op)` transition is computed once.
//! - Optional (indeterminate) operations have no return entry, so they never force a
//!   backtrack, and the search ends as soon as every required operation is placed.
//!   Identical optional operations are interchangeable: the earliest pending one is always
//!   tried first, which removes their permutations.
//! - Time, memory and a cancel flag are checked every few thousand steps, so a hard
//!   history yields `Unknown` instead of exhausting the machine.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use super::model::{Effect, Model};

pub(super) const NONE: u32 = u32::MAX;

/// Multiply-xorshift hashing for integer keys: the memo tables hash nothing else.
#[derive(Default, Clone, Copy)]
pub(super) struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        let x = self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^ (x >> 29)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01B3);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(23);
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
}

pub(super) type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;

/// States interned to `u32`, with every transition computed once.
pub(super) struct Interned<'m, M: Model> {
    pub model: &'m M,
    pub ops: Vec<M::Op>,
    pub states: Vec<M::State>,
    ids: HashMap<M::State, u32, BuildHasherDefault<IntHasher>>,
    memo: IntMap<u64, u32>,
    reach: IntMap<u64, bool>,
}

impl<'m, M: Model> Interned<'m, M> {
    pub fn new(model: &'m M, ops: Vec<M::Op>) -> Self {
        let n = ops.len();
        let mut s = Interned {
            model,
            ops,
            states: Vec::new(),
            ids: HashMap::default(),
            memo: IntMap::with_capacity_and_hasher(n * 2, Default::default()),
            reach: IntMap::default(),
        };
        s.intern(model.init());
        s
    }

    pub fn intern(&mut self, st: M::State) -> u32 {
        if let Some(&id) = self.ids.get(&st) {
            return id;
        }
        let id = self.states.len() as u32;
        self.states.push(st.clone());
        self.ids.insert(st, id);
        id
    }

    #[inline]
    pub fn step(&mut self, state: u32, op: u32) -> Option<u32> {
        let k = (u64::from(state) << 32) | u64::from(op);
        if let Some(&r) = self.memo.get(&k) {
            return (r != NONE).then_some(r);
        }
        let next = self
            .model
            .step(&self.states[state as usize], &self.ops[op as usize]);
        let r = match next {
            Some(ns) => self.intern(ns),
            None => NONE,
        };
        self.memo.insert(k, r);
        (r != NONE).then_some(r)
    }

    #[inline]
    pub fn reachable(&mut self, state: u32, op: u32) -> bool {
        let k = (u64::from(state) << 32) | u64::from(op);
        if let Some(&r) = self.reach.get(&k) {
            return r;
        }
        let r = self
            .model
            .reachable(&self.states[state as usize], &self.ops[op as usize]);
        self.reach.insert(k, r);
        r
    }

    pub fn approx_bytes(&self) -> usize {
        (self.memo.capacity() + self.reach.capacity()) * 24
            + self.states.capacity() * (std::mem::size_of::<M::State>() * 2 + 16)
    }
}

/// Explored configurations: `(state, frontier, window words)` in one arena, found through
/// an open-addressing table of arena offsets with 32-bit hash tags.
struct ConfigCache {
    slots: Vec<u32>,
    tags: Vec<u32>,
    arena: Vec<u64>,
    len: usize,
}

impl ConfigCache {
    fn new() -> Self {
        ConfigCache {
            slots: vec![NONE; 1024],
            tags: vec![0; 1024],
            arena: Vec::with_capacity(4096),
            len: 0,
        }
    }

    fn bytes(&self) -> usize {
        self.arena.capacity() * 8 + self.slots.capacity() * 8
    }

    #[inline]
    fn hash(head: u64, words: &[u64]) -> u64 {
        let mut h = head;
        for &w in words {
            h = (h ^ (h >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ w;
        }
        // splitmix64's finalizer: every input bit reaches every output bit.
        h ^= h >> 30;
        h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h ^= h >> 27;
        h = h.wrapping_mul(0x94D0_49BB_1331_11EB);
        h ^ (h >> 31)
    }

    #[inline]
    fn matches(&self, off: u32, head: u64, words: &[u64]) -> bool {
        let o = off as usize;
        self.arena[o] == head
            && self.arena[o + 1] as usize == words.len()
            && &self.arena[o + 2..o + 2 + words.len()] == words
    }

    /// Inserts the configuration; false when it was already there.
    fn insert(&mut self, state: u32, f: u32, words: &[u64]) -> bool {
        let head = (u64::from(state) << 32) | u64::from(f);
        let h = Self::hash(head, words);
        let tag = (h >> 32) as u32;
        let mask = self.slots.len() - 1;
        let mut i = h as usize & mask;
        loop {
            let off = self.slots[i];
            if off == NONE {
                break;
            }
            if self.tags[i] == tag && self.matches(off, head, words) {
                return false;
            }
            i = (i + 1) & mask;
        }
        let off = self.arena.len() as u32;
        self.arena.push(head);
        self.arena.push(words.len() as u64);
        self.arena.extend_from_slice(words);
        self.slots[i] = off;
        self.tags[i] = tag;
        self.len += 1;
        if self.len * 10 > self.slots.len() * 7 {
            self.grow();
        }
        true
    }

    fn grow(&mut self) {
        let cap = self.slots.len() * 2;
        let mut slots = vec![NONE; cap];
        let mut tags = vec![0u32; cap];
        let mask = cap - 1;
        for (&off, _) in self
            .slots
            .iter()
            .zip(&self.tags)
            .filter(|(o, _)| **o != NONE)
        {
            let o = off as usize;
            let len = self.arena[o + 1] as usize;
            let h = Self::hash(self.arena[o], &self.arena[o + 2..o + 2 + len]);
            let mut i = h as usize & mask;
            while slots[i] != NONE {
                i = (i + 1) & mask;
            }
            slots[i] = off;
            tags[i] = (h >> 32) as u32;
        }
        self.slots = slots;
        self.tags = tags;
    }
}

/// One key's operations, structure-of-arrays, sorted by call time.
pub(super) struct Ops {
    pub call: Vec<u64>,
    /// `u64::MAX` for optional operations.
    pub ret: Vec<u64>,
    pub optional: Vec<bool>,
    /// For an optional op, the previous optional op equal to it (or `NONE`).
    pub prev_same: Vec<u32>,
}

/// Limits shared by every key of one check.
pub(super) struct Limits<'a> {
    pub deadline: Option<Instant>,
    pub memory_bytes_max: usize,
    pub memory_used: &'a AtomicUsize,
    pub cancel: &'a AtomicBool,
    /// Give up (as `Unknown`) after this many configurations: used to probe every key
    /// briefly before spending the budget on any one.
    pub configs_max: u64,
}

/// The deepest dead end reached: the longest partial linearization and what blocked it.
pub(super) struct Deepest {
    pub depth: usize,
    /// The required op whose return came before it could be placed.
    pub blocked: u32,
    /// The last linearized ops with the state after each, oldest first.
    pub tail: Vec<(u32, u32)>,
    pub state: u32,
    /// Linearized set: everything below `f`, plus `window` bits from word `f / 64` on.
    pub f: u32,
    pub window: Vec<u64>,
}

impl Deepest {
    pub fn is_linearized(&self, op: u32) -> bool {
        if op < self.f {
            return true;
        }
        let w = (op >> 6) as usize - (self.f >> 6) as usize;
        self.window
            .get(w)
            .is_some_and(|word| word & (1 << (op & 63)) != 0)
    }
}

pub(super) enum Outcome {
    Valid,
    Invalid(Deepest),
    Unknown(String),
}

pub(super) struct SearchStats {
    pub configs: u64,
    pub peak_bytes: usize,
}

/// How many ops of the longest prefix a counterexample shows.
const TAIL_MAX: usize = 32;
/// Budget checks happen once per this many loop iterations.
const CHECK_EVERY: u64 = 4096;
/// Marks a stack entry linearized without branching (see `search`).
const FORCED: u32 = 1 << 31;

/// Which state each op needs and sets, and how many pending ops still need or can set
/// each state. A state that pending required ops need and no pending op can set again
/// must not be left.
struct Pins {
    needs: Vec<u32>,
    sets: Vec<u32>,
    /// Pending required ops needing each state.
    need_left: Vec<u32>,
    /// Pending ops (required or not) that can set each state.
    set_left: Vec<u32>,
}

impl Pins {
    fn build<M: Model>(ops: &Ops, st: &mut Interned<'_, M>) -> Option<Pins> {
        let n = ops.call.len();
        let mut needs = vec![NONE; n];
        let mut sets = vec![NONE; n];
        for i in 0..n {
            let op = st.ops[i].clone();
            match st.model.effect(&op) {
                Effect::Unknown => return None,
                Effect::Keeps => {}
                Effect::Sets(s) => sets[i] = st.intern(s),
            }
            if let Some(s) = st.model.needs(&op) {
                needs[i] = st.intern(s);
            }
        }
        let mut need_left = vec![0u32; st.states.len()];
        let mut set_left = vec![0u32; st.states.len()];
        for i in 0..n {
            if needs[i] != NONE && !ops.optional[i] {
                need_left[needs[i] as usize] += 1;
            }
            if sets[i] != NONE {
                set_left[sets[i] as usize] += 1;
            }
        }
        Some(Pins {
            needs,
            sets,
            need_left,
            set_left,
        })
    }

    /// May `op` move the state from `from` to another state?
    #[inline]
    fn may_leave(&self, from: u32, op: usize, required: bool) -> bool {
        let f = from as usize;
        if f >= self.need_left.len() {
            return true;
        }
        let own = u32::from(required && self.needs[op] == from);
        self.need_left[f] - own == 0 || self.set_left[f] > 0
    }

    #[inline]
    fn take(&mut self, op: usize, required: bool) {
        if required && self.needs[op] != NONE {
            self.need_left[self.needs[op] as usize] -= 1;
        }
        if self.sets[op] != NONE {
            self.set_left[self.sets[op] as usize] -= 1;
        }
    }

    #[inline]
    fn untake(&mut self, op: usize, required: bool) {
        if required && self.needs[op] != NONE {
            self.need_left[self.needs[op] as usize] += 1;
        }
        if self.sets[op] != NONE {
            self.set_left[self.sets[op] as usize] += 1;
        }
    }
}

/// The mutable position of the search: linearized set, state and list.
struct Walk<'o> {
    ops: &'o Ops,
    n: u32,
    bits: Vec<u64>,
    f: u32,
    /// One past the highest linearized op (0: none).
    top: u32,
    state: u32,
    next: Vec<u32>,
    prev: Vec<u32>,
    /// (op | FORCED, state before, f before, top before)
    stack: Vec<(u32, u32, u32, u32)>,
    required_left: usize,
    pins: Option<Pins>,
    /// Ops that set the state outright; `pending_resets` counts the pending ones by op
    /// index (a Fenwick tree), so "could a reset still come before op j returns" is a
    /// prefix sum up to `reset_horizon[j]`.
    resets: Vec<bool>,
    pending_resets: Fenwick,
    reset_horizon: Vec<u32>,
}

/// Prefix sums with O(log n) point updates.
struct Fenwick(Vec<i32>);

impl Fenwick {
    fn add(&mut self, i: usize, d: i32) {
        let mut i = i + 1;
        while i < self.0.len() {
            self.0[i] += d;
            i += i & i.wrapping_neg();
        }
    }

    /// Sum over indices `0..k`.
    fn sum(&self, k: usize) -> i32 {
        let mut i = k;
        let mut s = 0;
        while i > 0 {
            s += self.0[i];
            i -= i & i.wrapping_neg();
        }
        s
    }
}

impl Walk<'_> {
    #[inline]
    fn linearized(&self, op: u32) -> bool {
        self.bits[(op >> 6) as usize] & (1 << (op & 63)) != 0
    }

    /// Tries to linearize `op` next, leading to state `ns`: true when that configuration
    /// is new (and is now the current one).
    #[inline]
    fn try_push(&mut self, op: u32, ns: u32, forced: bool, cache: &mut ConfigCache) -> bool {
        let i = op as usize;
        let (old_f, old_top) = (self.f, self.top);
        self.bits[i >> 6] |= 1 << (op & 63);
        if op == self.f {
            self.f = advance(&self.bits, self.f, self.n);
        }
        self.top = self.top.max(op + 1);
        let fw = (self.f >> 6) as usize;
        let tw = (((self.top - 1) >> 6) as usize).max(fw);
        if cache.insert(ns, self.f, &self.bits[fw..=tw]) {
            self.stack.push((
                op | if forced { FORCED } else { 0 },
                self.state,
                old_f,
                old_top,
            ));
            let c = 2 * i;
            unlink(c, &mut self.next, &mut self.prev);
            let required = !self.ops.optional[i];
            if required {
                unlink(c + 1, &mut self.next, &mut self.prev);
                self.required_left -= 1;
            }
            if let Some(p) = &mut self.pins {
                p.take(i, required);
            }
            if self.resets[i] {
                self.pending_resets.add(i, -1);
            }
            self.state = ns;
            true
        } else {
            self.bits[i >> 6] &= !(1 << (op & 63));
            self.f = old_f;
            self.top = old_top;
            false
        }
    }

    /// Pops until an op that was a choice, and returns the entry after its call where the
    /// walk resumes; `None` when nothing is left to try.
    fn backtrack(&mut self) -> Option<u32> {
        while let Some((tagged, prev_state, old_f, old_top)) = self.stack.pop() {
            let op = tagged & !FORCED;
            let i = op as usize;
            self.bits[i >> 6] &= !(1 << (op & 63));
            self.f = old_f;
            self.top = old_top;
            self.state = prev_state;
            let c = 2 * i;
            let required = !self.ops.optional[i];
            if required {
                relink(c + 1, &mut self.next, &mut self.prev);
                self.required_left += 1;
            }
            relink(c, &mut self.next, &mut self.prev);
            if let Some(p) = &mut self.pins {
                p.untake(i, required);
            }
            if self.resets[i] {
                self.pending_resets.add(i, 1);
            }
            if tagged & FORCED == 0 {
                return Some(self.next[c]);
            }
            // A forced op failing means its parent configuration fails too.
        }
        None
    }

    /// May `op` be tried now? Equal optional ops go in call order.
    #[inline]
    fn allowed(&self, op: u32) -> bool {
        let i = op as usize;
        let p = self.ops.prev_same[i];
        !(self.ops.optional[i] && p != NONE && !self.linearized(p))
    }
}

/// `prune`: use the state pins. They cut the search but also move the dead end earlier, so
/// a search that only explains a violation already proven turns them off: its
/// counterexample then ends at the operation a reader would blame.
pub(super) fn search<M: Model>(
    ops: &Ops,
    st: &mut Interned<'_, M>,
    limits: &Limits<'_>,
    prune: bool,
) -> (Outcome, SearchStats) {
    let n = ops.call.len();
    assert!(n < (FORCED as usize) / 2, "too many operations for one key");
    let required_left = ops.optional.iter().filter(|o| !**o).count();
    let mut stats = SearchStats {
        configs: 0,
        peak_bytes: 0,
    };
    if required_left == 0 {
        return (Outcome::Valid, stats);
    }

    // Entries: 2i is op i's call, 2i+1 its return; HEAD is the sentinel.
    let head = (2 * n) as u32;
    let mut order: Vec<(u64, u32)> = Vec::with_capacity(2 * n);
    for i in 0..n {
        order.push((ops.call[i], (2 * i) as u32));
        if !ops.optional[i] {
            order.push((ops.ret[i], (2 * i + 1) as u32));
        }
    }
    order.sort_unstable();
    let mut next = vec![NONE; 2 * n + 1];
    let mut prev = vec![NONE; 2 * n + 1];
    let mut last = head;
    for &(_, e) in &order {
        next[last as usize] = e;
        prev[e as usize] = last;
        last = e;
    }
    drop(order);

    let pins = if prune { Pins::build(ops, st) } else { None };
    let keeps: Vec<bool> = st
        .ops
        .iter()
        .map(|op| st.model.effect(op) == Effect::Keeps)
        .collect();
    let resets: Vec<bool> = st
        .ops
        .iter()
        .map(|op| matches!(st.model.effect(op), Effect::Sets(_)))
        .collect();
    let mut pending_resets = Fenwick(vec![0; n + 1]);
    let mut reset_horizon = vec![0u32; n];
    if M::HAS_REACHABLE {
        for (i, _) in resets.iter().enumerate().filter(|(_, r)| **r) {
            pending_resets.add(i, 1);
        }
        for (j, h) in reset_horizon.iter_mut().enumerate() {
            *h = ops.call.partition_point(|&c| c < ops.ret[j]) as u32;
        }
    }
    let mut w = Walk {
        ops,
        n: n as u32,
        bits: vec![0u64; n / 64 + 2],
        f: 0,
        top: 0,
        state: 0,
        next,
        prev,
        stack: Vec::with_capacity(n.min(1 << 20)),
        required_left,
        pins,
        resets,
        pending_resets,
        reset_horizon,
    };
    let mut cache = ConfigCache::new();
    let mut deepest: Option<Deepest> = None;
    let mut entry = NONE;
    let mut fresh = true;
    let mut iterations: u64 = 0;
    let mut charged: usize = 0;

    let outcome = 'search: loop {
        iterations += 1;
        if iterations.is_multiple_of(CHECK_EVERY) {
            let bytes = cache.bytes()
                + st.approx_bytes()
                + w.stack.capacity() * 16
                + (w.next.len() + w.prev.len()) * 4;
            stats.peak_bytes = stats.peak_bytes.max(bytes);
            if bytes > charged {
                limits
                    .memory_used
                    .fetch_add(bytes - charged, Ordering::Relaxed);
            } else {
                limits
                    .memory_used
                    .fetch_sub(charged - bytes, Ordering::Relaxed);
            }
            charged = bytes;
            if limits.cancel.load(Ordering::Relaxed) {
                break Outcome::Unknown("cancelled: another key already failed".into());
            }
            if cache.len as u64 >= limits.configs_max {
                break Outcome::Unknown(format!(
                    "probe limit of {} configurations reached",
                    limits.configs_max
                ));
            }
            if limits.memory_used.load(Ordering::Relaxed) > limits.memory_bytes_max {
                break Outcome::Unknown(format!(
                    "memory limit of {} MB reached after {} configurations",
                    limits.memory_bytes_max >> 20,
                    cache.len
                ));
            }
            if limits.deadline.is_some_and(|d| Instant::now() >= d) {
                break Outcome::Unknown(format!(
                    "time limit reached after {} configurations",
                    cache.len
                ));
            }
        }

        if fresh {
            // Partial-order reduction: a pending op that never changes the state (a read)
            // and is possible now can be linearized at once — any linearization placing
            // it later stays valid with it moved here, since it is already called and
            // nothing pending had to precede it — so it is taken without branching, and
            // if that fails the configuration fails.
            fresh = false;
            let mut dead = false;
            let mut e = w.next[head as usize];
            while e != NONE && e & 1 == 0 {
                let op = e >> 1;
                if keeps[op as usize] && w.allowed(op) && st.step(w.state, op) == Some(w.state) {
                    if w.try_push(op, w.state, true, &mut cache) {
                        stats.configs += 1;
                        if w.required_left == 0 {
                            break 'search Outcome::Valid;
                        }
                        fresh = true;
                    } else {
                        // Explored before, and failed: so does this configuration.
                        dead = true;
                    }
                    break;
                }
                e = w.next[e as usize];
            }
            if fresh {
                continue;
            }
            entry = if dead {
                match w.backtrack() {
                    Some(resume) => resume,
                    None => break invalid(&w, &mut deepest, NONE),
                }
            } else {
                w.next[head as usize]
            };
            continue;
        }

        if entry == NONE {
            // Only optional calls were left and none fits: a dead end like a return.
            entry = match w.backtrack() {
                Some(resume) => resume,
                None => break invalid(&w, &mut deepest, NONE),
            };
            continue;
        }
        let op = entry >> 1;
        if entry & 1 == 0 {
            if !w.allowed(op) {
                entry = w.next[entry as usize];
                continue;
            }
            match st.step(w.state, op) {
                Some(ns) => {
                    let required = !ops.optional[op as usize];
                    let mut pinned = ns != w.state
                        && w.pins
                            .as_ref()
                            .is_some_and(|p| !p.may_leave(w.state, op as usize, required));
                    if M::HAS_REACHABLE && !pinned && ns != w.state {
                        // A pending read the new state cannot grow into, with no reset
                        // able to come before the read returns, rules this step out.
                        let own = op as usize;
                        let mut e = w.next[head as usize];
                        while e != NONE && e & 1 == 0 {
                            let j = e >> 1;
                            if j != op && !ops.optional[j as usize] && !st.reachable(ns, j) {
                                let horizon = w.reset_horizon[j as usize] as usize;
                                let mine = i32::from(w.resets[own] && own < horizon);
                                if w.pending_resets.sum(horizon) - mine == 0 {
                                    pinned = true;
                                    break;
                                }
                            }
                            e = w.next[e as usize];
                        }
                    }
                    if !pinned && w.try_push(op, ns, false, &mut cache) {
                        stats.configs += 1;
                        if w.required_left == 0 {
                            break Outcome::Valid;
                        }
                        fresh = true;
                    } else {
                        entry = w.next[entry as usize];
                    }
                }
                None => entry = w.next[entry as usize],
            }
        } else {
            // A return entry: `op` had to be placed by now.
            if deepest.as_ref().is_none_or(|d| w.stack.len() > d.depth) {
                deepest = Some(snapshot(&w.stack, w.state, w.f, &w.bits, w.top, op));
            }
            entry = match w.backtrack() {
                Some(resume) => resume,
                None => break invalid(&w, &mut deepest, op),
            };
        }
    };
    limits.memory_used.fetch_sub(charged, Ordering::Relaxed);
    stats.peak_bytes = stats.peak_bytes.max(cache.bytes() + st.approx_bytes());
    (outcome, stats)
}

fn invalid(w: &Walk<'_>, deepest: &mut Option<Deepest>, blocked: u32) -> Outcome {
    let d = snapshot(&w.stack, w.state, w.f, &w.bits, w.top, blocked);
    Outcome::Invalid(match deepest.take() {
        Some(best) if best.depth >= d.depth => best,
        _ => d,
    })
}

#[inline]
fn advance(bits: &[u64], mut f: u32, n: u32) -> u32 {
    while f < n {
        let w = bits[(f >> 6) as usize] >> (f & 63);
        if w == u64::MAX >> (f & 63) {
            // The rest of this word is all ones.
            f = (f | 63) + 1;
            continue;
        }
        f += (!w).trailing_zeros();
        break;
    }
    f.min(n)
}

#[inline]
fn unlink(e: usize, next: &mut [u32], prev: &mut [u32]) {
    let (p, nx) = (prev[e], next[e]);
    next[p as usize] = nx;
    if nx != NONE {
        prev[nx as usize] = p;
    }
}

#[inline]
fn relink(e: usize, next: &mut [u32], prev: &mut [u32]) {
    let (p, nx) = (prev[e], next[e]);
    next[p as usize] = e as u32;
    if nx != NONE {
        prev[nx as usize] = e as u32;
    }
}

fn snapshot(
    stack: &[(u32, u32, u32, u32)],
    state: u32,
    f: u32,
    bits: &[u64],
    top: u32,
    blocked: u32,
) -> Deepest {
    let from = stack.len().saturating_sub(TAIL_MAX);
    let tail = (from..stack.len())
        .map(|k| {
            let after = stack.get(k + 1).map_or(state, |e| e.1);
            (stack[k].0 & !FORCED, after)
        })
        .collect();
    let fw = (f >> 6) as usize;
    let tw = if top == 0 {
        fw
    } else {
        (((top - 1) >> 6) as usize).max(fw)
    };
    Deepest {
        depth: stack.len(),
        blocked,
        tail,
        state,
        f,
        window: bits[fw..=tw].to_vec(),
    }
}
