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

use super::model::{RegOp, RegValue};
use super::{PreOp, Prepass};

pub(super) fn prepass(ops: &mut Vec<PreOp<RegOp>>) -> Prepass {
    // Who can produce each value.
    let mut writers: HashMap<RegValue, Vec<usize>> = HashMap::new();
    let mut has_mismatch = false;
    for (i, o) in ops.iter().enumerate() {
        match &o.op {
            RegOp::Write(v) | RegOp::Cas(_, v) => writers.entry(v.clone()).or_default().push(i),
            RegOp::CasMismatch(_) => has_mismatch = true,
            RegOp::Read(_) => {}
        }
    }
    for (i, o) in ops.iter().enumerate() {
        if o.optional {
            continue;
        }
        let needs = match &o.op {
            RegOp::Read(Some(v)) | RegOp::Cas(Some(v), _) => Some(v),
            _ => None,
        };
        if let Some(v) = needs
            && !writers.contains_key(&Some(v.clone()))
        {
            let what = if matches!(o.op, RegOp::Read(_)) { "read" } else { "cas succeeded from" };
            return Prepass::Invalid { op: i, reason: format!("{what} {v}, a value no operation wrote"), related: Vec::new() };
        }
    }

    // Observers of each value: reads and cas-from, by certainty.
    let mut observed_by: HashMap<RegValue, Vec<usize>> = HashMap::new();
    for (i, o) in ops.iter().enumerate() {
        if let RegOp::Read(v) | RegOp::Cas(v, _) = &o.op {
            observed_by.entry(v.clone()).or_default().push(i);
        }
    }
    let mut drop = vec![false; ops.len()];
    for (i, o) in ops.iter().enumerate() {
        if !o.optional {
            continue;
        }
        let produced = match &o.op {
            RegOp::Write(v) | RegOp::Cas(_, v) => v.clone(),
            _ => continue,
        };
        if produced.is_none() {
            continue;
        }
        let observers = observed_by.get(&produced).map(Vec::as_slice).unwrap_or(&[]);
        if observers.is_empty() && !has_mismatch {
            drop[i] = true;
        }
    }
    let mut promote: Vec<(usize, u64)> = Vec::new();
    for (i, o) in ops.iter().enumerate() {
        if !o.optional || drop[i] {
            continue;
        }
        let produced = match &o.op {
            RegOp::Write(v) | RegOp::Cas(_, v) => v.clone(),
            _ => continue,
        };
        if produced.is_none() || writers.get(&produced).map(Vec::len) != Some(1) {
            continue;
        }
        let deadline = observed_by
            .get(&produced)
            .into_iter()
            .flatten()
            .filter(|&&j| !ops[j].optional)
            .map(|&j| ops[j].ret)
            .min();
        if let Some(d) = deadline {
            promote.push((i, d));
        }
    }
    for (i, d) in promote {
        ops[i].optional = false;
        ops[i].ret = d;
    }
    let mut k = 0;
    ops.retain(|_| {
        k += 1;
        !drop[k - 1]
    });

    match zones(ops) {
        Prepass::Search => {
            merge_unobserved(ops);
            Prepass::Search
        }
        decided => decided,
    }
}

/// Stands for every value that nothing reads, compares against or cas-es from. Not JSON
/// text, so it cannot equal a real value.
pub(super) const UNOBSERVED: &str = "#unobserved";

/// Values nothing observes are interchangeable: from any of them reads and cas fail and
/// every mismatch succeeds. Writing them all as one value merges states and makes the
/// crashed writes of such values identical, which the search then orders instead of
/// trying every subset.
fn merge_unobserved(ops: &mut [PreOp<RegOp>]) {
    let mut observed: std::collections::HashSet<RegValue> = std::collections::HashSet::new();
    for o in ops.iter() {
        match &o.op {
            RegOp::Read(v) | RegOp::Cas(v, _) | RegOp::CasMismatch(v) => {
                observed.insert(v.clone());
            }
            RegOp::Write(_) => {}
        }
    }
    let merged: RegValue = Some(UNOBSERVED.into());
    for o in ops.iter_mut() {
        if let RegOp::Write(v) | RegOp::Cas(_, v) = &mut o.op
            && v.is_some()
            && !observed.contains(v)
        {
            *v = merged.clone();
        }
    }
}

/// Gibbons–Korach on reads and unique-valued writes; `Search` when the history has
/// anything else.
fn zones(ops: &[PreOp<RegOp>]) -> Prepass {
    let mut cluster_of: HashMap<RegValue, usize> = HashMap::new();
    // Cluster 0 is the initial value, written before everything (time 0).
    cluster_of.insert(None, 0);
    let mut writer: Vec<Option<usize>> = vec![None];
    for (i, o) in ops.iter().enumerate() {
        match &o.op {
            RegOp::Write(v) if !o.optional => {
                if cluster_of.contains_key(v) {
                    return Prepass::Search;
                }
                cluster_of.insert(v.clone(), writer.len());
                writer.push(Some(i));
            }
            RegOp::Read(_) if !o.optional => {}
            _ => return Prepass::Search,
        }
    }
    // (earliest return, latest call, op with the latest call, op with the earliest return)
    let mut zone: Vec<(u64, u64, Option<usize>, Option<usize>)> = writer
        .iter()
        .map(|w| match w {
            None => (0, 0, None, None),
            Some(i) => (ops[*i].ret, ops[*i].call, Some(*i), Some(*i)),
        })
        .collect();
    for (i, o) in ops.iter().enumerate() {
        let RegOp::Read(v) = &o.op else { continue };
        let Some(&c) = cluster_of.get(v) else {
            return Prepass::Invalid { op: i, reason: "read a value no operation wrote".into(), related: Vec::new() };
        };
        if let Some(w) = writer[c]
            && o.ret < ops[w].call
        {
            return Prepass::Invalid {
                op: i,
                reason: "read a value whose only write began after the read returned".into(),
                related: vec![w],
            };
        }
        let z = &mut zone[c];
        if o.ret < z.0 {
            z.0 = o.ret;
            z.3 = Some(i);
        }
        if o.call > z.1 {
            z.1 = o.call;
            z.2 = Some(i);
        }
    }
    let mut forward: Vec<usize> = (0..zone.len()).filter(|&c| zone[c].0 < zone[c].1).collect();
    forward.sort_unstable_by_key(|&c| zone[c].0);
    let related = |a: usize, b: usize| -> Vec<usize> {
        [writer[a], zone[a].3, writer[b], zone[b].3].into_iter().flatten().collect()
    };
    for pair in forward.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if zone[b].0 < zone[a].1 {
            // Both values were read after both writes completed: one of those reads is stale.
            return Prepass::Invalid {
                op: zone[a].2.unwrap_or(0),
                reason: "read a value after a later write had completed (overlapping forward zones)".into(),
                related: related(a, b),
            };
        }
    }
    for c in 0..zone.len() {
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
                op: zone[fz].2.unwrap_or(0),
                reason: "read a value after another write had overwritten it (backward zone inside a forward zone)".into(),
                related: related(fz, c),
            };
        }
    }
    Prepass::Valid
}
