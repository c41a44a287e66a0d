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
}

impl Graph {
    pub fn new(n: usize) -> Graph {
        Graph { out: vec![Vec::new(); n], edges: 0 }
    }

    pub fn add(&mut self, from: usize, to: usize, kind: u8, key: V, a: V, b: V) {
        self.out[from].push(Edge { to: to as u32, kind, key, a, b });
        self.edges += 1;
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

fn kind_name(k: u8) -> &'static str {
    match k {
        WW => "ww",
        WR => "wr",
        RW => "rw",
        _ => "realtime",
    }
}

/// Finds and classifies cycles; false when the deadline cut the search short.
pub fn cycles(
    g: &Graph,
    found: &mut Found,
    name: &dyn Fn(usize) -> String,
    show: &dyn Fn(V) -> String,
    deadline: Instant,
) -> bool {
    let deps = WW | WR | RW;
    let mut seen = vec![0u32; g.out.len()];
    let mut stamp = 0u32;
    // Pass 1: dependency edges only; pass 2 adds real-time edges and reports only cycles
    // that need one (the `-realtime` variants).
    for (pass, all) in [(0, deps), (1, deps | RT)] {
        if pass == 1 && !g.out.iter().any(|es| es.iter().any(|e| e.kind == RT)) {
            break;
        }
        let (comp, comps) = tarjan(g, all);
        for members in &comps {
            if Instant::now() > deadline {
                return false;
            }
            let c = comp[members[0] as usize];
            let order = if pass == 0 { 0 } else { RT };
            // (class, edge kind to start through, mask for the rest of the cycle)
            let classes: [(&str, u8, u8); 4] = [
                ("G0", WW, WW | order),
                ("G1c", WR, WW | WR | order),
                ("G-single", RW, WW | WR | order),
                ("G2-item", RW, deps | order),
            ];
            let mut reported = false;
            for (class, start, mask) in classes {
                if class == "G2-item" && reported {
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
                        if let Some(mut path) = bfs(g, &comp, c, e.to, v, mask, &mut seen, stamp) {
                            path.insert(0, (v, *e));
                            if best.as_ref().is_none_or(|b| path.len() < b.len()) {
                                best = Some(path);
                            }
                        }
                    }
                }
                let Some(cycle) = best else { continue };
                let uses_rt = cycle.iter().any(|(_, e)| e.kind == RT);
                if pass == 1 && !uses_rt {
                    continue;
                }
                // G1c found through ww edges only is the G0 already reported.
                if class == "G1c" && !cycle.iter().any(|(_, e)| e.kind == WR) {
                    continue;
                }
                reported = true;
                let label = if pass == 1 { format!("{class}-realtime") } else { class.to_string() };
                found.add(&label, || explain(&cycle, name, show));
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
                _ => format!("{a} completed before {b} was invoked"),
            };
            json!({"from": a, "to": b, "type": kind_name(e.kind), "key": if e.kind == RT { Value::Null } else { json!(k) }, "explanation": why})
        })
        .collect();
    let text = steps.iter().map(|s| s["explanation"].as_str().unwrap_or("").to_string()).collect::<Vec<_>>().join("; ");
    json!({"cycle": steps, "explanation": format!("{text}; so each transaction must come before the next, back to {}", name(cycle[0].0 as usize))})
}
