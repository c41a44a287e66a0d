//! The transaction dependency graph: edges carry their kind and the key and values that
//! justify them, so every reported cycle can be explained step by step.

use std::collections::VecDeque;
use std::time::Instant;

use serde_json::{Value, json};

use super::{Found, V};

pub const WW: u8 = 1;
pub const WR: u8 = 2;
pub const RW: u8 = 4;
pub const RT: u8 = 8;
/// Process order: a process's transaction before its next one (session models).
pub const PR: u8 = 16;

/// Start edges tried per component and anomaly class; bounds the work on huge components
/// while a shortest cycle through the first few candidates is still found.
const STARTS_PER_CLASS: usize = 64;

#[derive(Debug, Clone, Copy)]
pub struct Edge {
    pub to: u32,
    pub kind: u8,
    pub key: V,
    /// ww: the earlier and later element; wr: the value read; rw: the value read and the
    /// value that overwrote it (`V::I(i64::MIN)`: the initial state / unknown).
    pub a: V,
    pub b: V,
}

pub struct Graph {
    out: Vec<Vec<Edge>>,
    edges: usize,
    /// Past this many edges further ones are dropped and `overflowed` is set: every cycle
    /// still found is real (its edges are), but the absence of one proves nothing.
    edges_max: usize,
    overflowed: bool,
}

impl Graph {
    pub fn with_edges_max(n: usize, edges_max: usize) -> Graph {
        Graph { out: vec![Vec::new(); n], edges: 0, edges_max, overflowed: false }
    }

    pub fn add(&mut self, from: usize, to: usize, kind: u8, key: V, a: V, b: V) {
        if self.edges >= self.edges_max {
            self.overflowed = true;
            return;
        }
        self.out[from].push(Edge { to: to as u32, kind, key, a, b });
        self.edges += 1;
    }

    /// Whether edges were dropped for the memory budget.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    pub fn edge_count(&self) -> usize {
        self.edges
    }

    /// Every node with an edge in or out.
    pub fn touched(&self) -> Vec<bool> {
        let mut t: Vec<bool> = self.out.iter().map(|es| !es.is_empty()).collect();
        for es in &self.out {
            for e in es {
                t[e.to as usize] = true;
            }
        }
        t
    }
}

/// Iterative Tarjan: the component id of every node, and the components with two or more
/// nodes (a transaction never depends on itself, so singletons hold no cycle).
fn tarjan(g: &Graph, mask: u8) -> (Vec<u32>, Vec<Vec<u32>>) {
    let n = g.out.len();
    const NONE: u32 = u32::MAX;
    let mut index = vec![NONE; n];
    let mut low = vec![0u32; n];
    let mut on_stack = vec![false; n];
    let mut comp = vec![NONE; n];
    let mut stack: Vec<u32> = Vec::new();
    let mut comps: Vec<Vec<u32>> = Vec::new();
    let mut next = 0u32;
    let mut ncomp = 0u32;
    let mut call: Vec<(u32, usize)> = Vec::new();
    for root in 0..n {
        if index[root] != NONE || g.out[root].is_empty() {
            continue;
        }
        call.push((root as u32, 0));
        while let Some(&(v, start)) = call.last() {
            let vu = v as usize;
            if start == 0 && index[vu] == NONE {
                index[vu] = next;
                low[vu] = next;
                next += 1;
                stack.push(v);
                on_stack[vu] = true;
            }
            let mut ei = start;
            let mut descended = false;
            while ei < g.out[vu].len() {
                let e = g.out[vu][ei];
                ei += 1;
                if e.kind & mask == 0 {
                    continue;
                }
                let w = e.to as usize;
                if index[w] == NONE {
                    descended = true;
                    break;
                } else if on_stack[w] {
                    low[vu] = low[vu].min(index[w]);
                }
            }
            call.last_mut().expect("on the call stack").1 = ei;
            if descended {
                call.push((g.out[vu][ei - 1].to, 0));
                continue;
            }
            if descended {
                continue;
            }
            call.pop();
            if let Some(&(p, _)) = call.last() {
                low[p as usize] = low[p as usize].min(low[vu]);
            }
            if low[vu] == index[vu] {
                let mut members = Vec::new();
                loop {
                    let w = stack.pop().expect("tarjan stack holds the component");
                    on_stack[w as usize] = false;
                    comp[w as usize] = ncomp;
                    members.push(w);
                    if w == v {
                        break;
                    }
                }
                ncomp += 1;
                if members.len() > 1 {
                    comps.push(members);
                }
            }
        }
    }
    (comp, comps)
}

/// A shortest path from `from` to `to` over edges in `mask`, inside component `c`.
fn bfs(g: &Graph, comp: &[u32], c: u32, from: u32, to: u32, mask: u8, seen: &mut Vec<u32>, stamp: u32) -> Option<Vec<(u32, Edge)>> {
    let mut prev: super::HashMap<u32, (u32, Edge)> = super::HashMap::default();
    let mut q = VecDeque::new();
    q.push_back(from);
    seen[from as usize] = stamp;
    while let Some(v) = q.pop_front() {
        if v == to {
            let mut path = Vec::new();
            let mut x = to;
            while x != from {
                let (p, e) = prev[&x];
                path.push((p, e));
                x = p;
            }
            path.reverse();
            return Some(path);
        }
        for e in &g.out[v as usize] {
            let w = e.to;
            if e.kind & mask == 0 || comp[w as usize] != c || seen[w as usize] == stamp {
                continue;
            }
            seen[w as usize] = stamp;
            prev.insert(w, (v, *e));
            q.push_back(w);
        }
    }
    None
}

/// A shortest path from `from` to `to` over edges in `mask`, inside component `c`, that
/// closes a G-nonadjacent cycle begun by an rw edge into `from`: no two rw edges in a row
/// (the first edge and the last must not be rw either, as the cycle wraps around to the
/// rw edge it began with), and at least one rw edge besides the first. Searched over
/// (transaction, last edge rw?, second rw seen?) states.
#[allow(clippy::too_many_arguments)]
fn bfs_nonadjacent(g: &Graph, comp: &[u32], c: u32, from: u32, to: u32, mask: u8, seen: &mut [u32], stamp: u32) -> Option<Vec<(u32, Edge)>> {
    type State = (u32, bool, bool);
    let slot = |s: State| s.0 as usize * 4 + usize::from(s.1) * 2 + usize::from(s.2);
    let mut prev: super::HashMap<State, (State, Edge)> = super::HashMap::default();
    let start: State = (from, true, false);
    let goal: State = (to, false, true);
    let mut q = VecDeque::new();
    q.push_back(start);
    seen[slot(start)] = stamp;
    while let Some(s) = q.pop_front() {
        if s == goal {
            let mut path = Vec::new();
            let mut x = goal;
            while x != start {
                let (p, e) = prev[&x];
                path.push((p.0, e));
                x = p;
            }
            path.reverse();
            return Some(path);
        }
        let (v, last_rw, twice) = s;
        for e in &g.out[v as usize] {
            let rw = e.kind == RW;
            if e.kind & mask == 0 || comp[e.to as usize] != c || (rw && last_rw) {
                continue;
            }
            let next: State = (e.to, rw, twice || rw);
            // The goal is only reached through its own state; passing `to` early is fine.
            if seen[slot(next)] != stamp {
                seen[slot(next)] = stamp;
                prev.insert(next, (s, *e));
                q.push_back(next);
            }
        }
    }
    None
}

fn kind_name(k: u8) -> &'static str {
    match k {
        WW => "ww",
        WR => "wr",
        RW => "rw",
        PR => "process",
        _ => "realtime",
    }
}

/// Elle's classification of a cycle by its edges: how many rw edges, whether two are
/// adjacent (cyclically), then wr and ww; with `-realtime` or `-process` when it needs
/// such an edge.
pub fn classify(cycle: &[(u32, Edge)]) -> String {
    let kinds: Vec<u8> = cycle.iter().map(|(_, e)| e.kind).collect();
    let rw = kinds.iter().filter(|k| **k == RW).count();
    let adjacent = (0..kinds.len()).any(|i| kinds[i] == RW && kinds[(i + 1) % kinds.len()] == RW);
    let base = match rw {
        1 => "G-single",
        n if n > 1 && adjacent => "G2-item",
        n if n > 1 => "G-nonadjacent",
        _ if kinds.contains(&WR) => "G1c",
        _ => "G0",
    };
    let suffix = if kinds.contains(&RT) {
        "-realtime"
    } else if kinds.contains(&PR) {
        "-process"
    } else {
        ""
    };
    format!("{base}{suffix}")
}

/// Finds and classifies cycles; false when the deadline cut the search short.
///
/// Per strongly connected component and per class (G0, G1c, G-single, G-nonadjacent,
/// G2-item) a shortest cycle of that shape is sought from a bounded number of start
/// edges, then classified by [`classify`] (which has the last word: a cycle found while
/// looking for G1c through ww edges only is the G0 already reported). G2-item is reported
/// only when the component showed nothing worse.
pub fn cycles(
    g: &Graph,
    found: &mut Found,
    name: &dyn Fn(usize) -> String,
    show: &dyn Fn(V) -> String,
    deadline: Instant,
) -> bool {
    let deps = WW | WR | RW;
    let mut seen = vec![0u32; g.out.len()];
    let mut seen_states = vec![0u32; g.out.len() * 4];
    let mut stamp = 0u32;
    // Pass 1: dependency edges only; pass 2 adds real-time or process-order edges and
    // reports only cycles that need one (the `-realtime` and `-process` variants).
    for (pass, all) in [(0, deps), (1, deps | RT | PR)] {
        if pass == 1 && !g.out.iter().any(|es| es.iter().any(|e| e.kind & (RT | PR) != 0)) {
            break;
        }
        let (comp, comps) = tarjan(g, all);
        for members in &comps {
            if Instant::now() > deadline {
                return false;
            }
            let c = comp[members[0] as usize];
            let order = if pass == 0 { 0 } else { RT | PR };
            // (class, edge kind to start through, mask for the rest of the cycle)
            let classes: [(&str, u8, u8); 5] = [
                ("G0", WW, WW | order),
                ("G1c", WR, WW | WR | order),
                ("G-single", RW, WW | WR | order),
                ("G-nonadjacent", RW, deps | order),
                ("G2-item", RW, deps | order),
            ];
            let mut reported: Vec<String> = Vec::new();
            for (class, start, mask) in classes {
                if class == "G2-item" && !reported.is_empty() {
                    break;
                }
                let mut best: Option<Vec<(u32, Edge)>> = None;
                let mut tried = 0;
                'starts: for &v in members {
                    for e in g.out[v as usize].iter() {
                        if e.kind != start || comp[e.to as usize] != c {
                            continue;
                        }
                        tried += 1;
                        if tried > STARTS_PER_CLASS {
                            break 'starts;
                        }
                        stamp = stamp.wrapping_add(1);
                        let path = if class == "G-nonadjacent" {
                            bfs_nonadjacent(g, &comp, c, e.to, v, mask, &mut seen_states, stamp)
                        } else {
                            bfs(g, &comp, c, e.to, v, mask, &mut seen, stamp)
                        };
                        if let Some(mut path) = path {
                            path.insert(0, (v, *e));
                            if best.as_ref().is_none_or(|b| path.len() < b.len()) {
                                best = Some(path);
                            }
                        }
                    }
                }
                let Some(cycle) = best else { continue };
                if pass == 1 && !cycle.iter().any(|(_, e)| e.kind & (RT | PR) != 0) {
                    continue;
                }
                let label = classify(&cycle);
                if reported.contains(&label) {
                    continue;
                }
                found.add(&label, || explain(&cycle, name, show));
                reported.push(label);
            }
        }
    }
    true
}

fn explain(cycle: &[(u32, Edge)], name: &dyn Fn(usize) -> String, show: &dyn Fn(V) -> String) -> Value {
    let init = V::I(i64::MIN);
    let val = |v: V| if v == init { "nothing".to_string() } else { show(v) };
    let steps: Vec<Value> = cycle
        .iter()
        .map(|&(from, e)| {
            let (a, b) = (name(from as usize), name(e.to as usize));
            let k = show(e.key);
            let why = match e.kind {
                WW => format!("{a} wrote {} to key {k} before {b} wrote {}", val(e.a), if e.b == e.a { "later".to_string() } else { val(e.b) }),
                WR => format!("{b} read {} of key {k}, written by {a}", val(e.a)),
                RW => format!("{a} read {} of key {k}, and {b} wrote {} after it", val(e.a), if e.b == init || e.b == e.a { "a later version".to_string() } else { val(e.b) }),
                PR => format!("{a} came before {b} in the same process"),
                _ => format!("{a} completed before {b} was invoked"),
            };
            json!({"from": a, "to": b, "type": kind_name(e.kind), "key": if e.kind & (RT | PR) != 0 { Value::Null } else { json!(k) }, "explanation": why})
        })
        .collect();
    let text = steps.iter().map(|s| s["explanation"].as_str().unwrap_or("").to_string()).collect::<Vec<_>>().join("; ");
    json!({"cycle": steps, "explanation": format!("{text}; so each transaction must come before the next, back to {}", name(cycle[0].0 as usize))})
}
