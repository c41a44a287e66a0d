//! Pre-passes for registers, run before (and often instead of) the search.
//!
//! - A read (or successful cas) of a value no operation wrote is a violation at once.
//! - An indeterminate write (or cas) whose value nothing observes cannot matter: once it
//!   takes effect only writes can follow it, so it is dropped.
//! - An indeterminate write whose value only it produces, and which a completed op
//!   observed, must have happened before the earliest such observer returned: it becomes
//!   required with that deadline.
//! - When what is left is reads and writes of unique values, the history is decided in
//!   O(n log n) by Gibbons and Korach's zones: a value's cluster is its write and the
//!   reads of it; the zone runs from the cluster's earliest return to its latest call
//!   (forward when that is increasing). The history is linearizable iff no read returns
//!   before its write is called, no two forward zones overlap, and no backward zone lies
//!   inside a forward one.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use super::model::{RegOp, RegValue};
use super::search::IntHasher;
use super::{PreOp, Prepass};

const NO: u32 = u32::MAX;

/// One op's values as small integers (0 is the initial `null`): the value it needs the
/// register to hold (`NO`: none; for a mismatch, the value it must not hold) and the value
/// it leaves (`NO`: unchanged).
#[derive(Clone, Copy)]
struct Ids {
    need: u32,
    make: u32,
    mismatch: bool,
}

type ValueIds<'a> = HashMap<&'a RegValue, u32, BuildHasherDefault<IntHasher>>;

fn value_id<'a>(map: &mut ValueIds<'a>, v: &'a RegValue) -> u32 {
    match v {
        RegValue::Null => 0,
        other => {
            let next = map.len() as u32 + 1;
            *map.entry(other).or_insert(next)
        }
    }
}

fn intern_values(ops: &[PreOp<RegOp>]) -> (Vec<Ids>, usize) {
    let mut map = ValueIds::default();
    let mut id = |v| value_id(&mut map, v);
    let ids = ops
        .iter()
        .map(|o| match &o.op {
            RegOp::Read(v) => Ids {
                need: id(v),
                make: NO,
                mismatch: false,
            },
            RegOp::Write(v) => Ids {
                need: NO,
                make: id(v),
                mismatch: false,
            },
            RegOp::Cas(a, b) => Ids {
                need: id(a),
                make: id(b),
                mismatch: false,
            },
            RegOp::CasMismatch(a) => Ids {
                need: id(a),
                make: NO,
                mismatch: true,
            },
        })
        .collect();
    let n = map.len() + 1;
    (ids, n)
}

pub(super) fn prepass(ops: &mut Vec<PreOp<RegOp>>) -> Prepass {
    let (ids, values) = intern_values(ops);
    let mut writers = vec![0u32; values];
    let mut observers = vec![0u32; values];
    // The earliest return among the required ops that need each value.
    let mut need_by = vec![u64::MAX; values];
    let mut has_mismatch = false;
    for (o, x) in ops.iter().zip(&ids) {
        if x.make != NO {
            writers[x.make as usize] += 1;
        }
        if x.mismatch {
            has_mismatch = true;
        } else if x.need != NO {
            observers[x.need as usize] += 1;
            if !o.optional {
                need_by[x.need as usize] = need_by[x.need as usize].min(o.ret);
            }
        }
    }
    for (i, (o, x)) in ops.iter().zip(&ids).enumerate() {
        if !o.optional
            && !x.mismatch
            && x.need != NO
            && x.need != 0
            && writers[x.need as usize] == 0
        {
            let (what, v) = match &o.op {
                RegOp::Read(v) => ("read", v),
                RegOp::Cas(v, _) => ("cas succeeded from", v),
                _ => unreachable!("only reads and cas need a value"),
            };
            return Prepass::Invalid {
                op: i,
                reason: format!("{what} {v}, a value no operation wrote"),
                related: Vec::new(),
            };
        }
    }

    let mut keep = vec![true; ops.len()];
    for (i, x) in ids.iter().enumerate() {
        let o = &mut ops[i];
        if !o.optional || x.make == NO || x.make == 0 {
            continue;
        }
        let v = x.make as usize;
        if observers[v] == 0 && !has_mismatch {
            keep[i] = false;
        } else if writers[v] == 1 && need_by[v] != u64::MAX {
            o.optional = false;
            o.ret = need_by[v];
        }
    }
    let mut k = 0;
    ops.retain(|_| {
        k += 1;
        keep[k - 1]
    });
    let ids: Vec<Ids> = ids
        .into_iter()
        .zip(&keep)
        .filter(|(_, k)| **k)
        .map(|(x, _)| x)
        .collect();

    match zones(ops, &ids, values) {
        Prepass::Search => {
            merge_unobserved(ops, &ids, values);
            Prepass::Search
        }
        decided => decided,
    }
}

/// Gibbons–Korach on reads and unique-valued writes; `Search` when the history has
/// anything else.
fn zones(ops: &[PreOp<RegOp>], ids: &[Ids], values: usize) -> Prepass {
    // Cluster per value; value 0 (null) is written before everything, at time 0.
    let mut writer = vec![NO; values];
    for (i, (o, x)) in ops.iter().zip(ids).enumerate() {
        match &o.op {
            RegOp::Write(_) if !o.optional && x.make != 0 => {
                if writer[x.make as usize] != NO {
                    return Prepass::Search;
                }
                writer[x.make as usize] = i as u32;
            }
            RegOp::Read(_) if !o.optional => {}
            _ => return Prepass::Search,
        }
    }
    // (earliest return, latest call, op with the latest call, op with the earliest return)
    let mut zone: Vec<(u64, u64, u32, u32)> = writer
        .iter()
        .map(|&w| {
            if w == NO {
                (0, 0, NO, NO)
            } else {
                (ops[w as usize].ret, ops[w as usize].call, w, w)
            }
        })
        .collect();
    for (i, (o, x)) in ops.iter().zip(ids).enumerate() {
        if !matches!(o.op, RegOp::Read(_)) {
            continue;
        }
        let c = x.need as usize;
        let w = writer[c];
        if c != 0 && w == NO {
            return Prepass::Invalid {
                op: i,
                reason: "read a value no operation wrote".into(),
                related: Vec::new(),
            };
        }
        if w != NO && o.ret < ops[w as usize].call {
            return Prepass::Invalid {
                op: i,
                reason: "read a value whose only write began after the read returned".into(),
                related: vec![w as usize],
            };
        }
        let z = &mut zone[c];
        if o.ret < z.0 || z.3 == NO {
            z.0 = z.0.min(o.ret);
            z.3 = i as u32;
        }
        if o.call > z.1 {
            z.1 = o.call;
            z.2 = i as u32;
        }
    }
    // Values nobody wrote or read have no cluster.
    let live = |c: usize| writer[c] != NO || zone[c].2 != NO || c == 0;
    let mut forward: Vec<usize> = (0..values)
        .filter(|&c| live(c) && zone[c].0 < zone[c].1)
        .collect();
    forward.sort_unstable_by_key(|&c| zone[c].0);
    let related = |a: usize, b: usize| -> Vec<usize> {
        [writer[a], zone[a].3, writer[b], zone[b].3]
            .into_iter()
            .filter(|&x| x != NO)
            .map(|x| x as usize)
            .collect()
    };
    for pair in forward.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if zone[b].0 < zone[a].1 {
            // Both values were read after both writes completed: one of those reads is stale.
            return Prepass::Invalid {
                op: zone[a].2 as usize,
                reason:
                    "read a value after a later write had completed (overlapping forward zones)"
                        .into(),
                related: related(a, b),
            };
        }
    }
    for c in (0..values).filter(|&c| live(c)) {
        let (zf, zs, _, _) = zone[c];
        if zf < zs {
            continue;
        }
        // Backward zone [zs, zf]: find the forward zone starting last before zs.
        let p = forward.partition_point(|&x| zone[x].0 < zs);
        if p == 0 {
            continue;
        }
        let fz = forward[p - 1];
        if zf < zone[fz].1 {
            return Prepass::Invalid {
                op: zone[fz].2 as usize,
                reason: "read a value after another write had overwritten it (backward zone inside a forward zone)".into(),
                related: related(fz, c),
            };
        }
    }
    Prepass::Valid
}

/// Values nothing observes are interchangeable: from any of them reads and cas fail and
/// every mismatch succeeds. Writing them all as one value merges states and makes the
/// crashed writes of such values identical, which the search then orders instead of
/// trying every subset.
fn merge_unobserved(ops: &mut [PreOp<RegOp>], ids: &[Ids], values: usize) {
    let mut observed = vec![false; values];
    for x in ids {
        if x.need != NO {
            observed[x.need as usize] = true;
        }
    }
    let merged = RegValue::Unobserved;
    for (o, x) in ops.iter_mut().zip(ids) {
        if x.make != NO && x.make != 0 && !observed[x.make as usize] {
            match &mut o.op {
                RegOp::Write(v) | RegOp::Cas(_, v) => *v = merged.clone(),
                _ => {}
            }
        }
    }
}
