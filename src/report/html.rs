//! `report.html`: one self-contained page per run (inline CSS and SVG, no scripts, no
//! network), readable straight from the store directory or through `faultline serve`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use faultline_checkers::perf::{CompletedOp, LatencyRow, completed_ops, history_end_ns};
use faultline_checkers::recovery::fault_windows;
use faultline_checkers::{Event, Validity};
use serde_json::Value;

use super::logs::LogScan;
use super::plots::{self, TimelineOp};
use super::run::RunData;
use super::{ReportSummary, fmt_ms, fmt_opt_ms, fmt_unavailability, validity_word};

/// Ops drawn on a counterexample timeline.
const TIMELINE_OPS_MAX: usize = 40;

pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

pub const CSS: &str = "body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1000px;color:#222}\
table{border-collapse:collapse;margin:.5em 0 1.2em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;font-size:13px}\
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}\
.banner{padding:.8em 1em;font-size:1.4em;font-weight:bold;border-radius:4px;color:#fff}\
.valid{background:#2e7d32}.invalid{background:#c62828}.unknown{background:#ef6c00}\
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:12px}\
.legend span{display:inline-block;padding:1px 8px;margin-right:6px;border-radius:3px}\
.v-true{color:#2e7d32}.v-false{color:#c62828;font-weight:bold}.v-unknown{color:#ef6c00}";

pub fn banner_class(v: Validity) -> &'static str {
    match v {
        Validity::Valid => "valid",
        Validity::Invalid => "invalid",
        Validity::Unknown => "unknown",
    }
}

fn verdict_cell(v: Validity) -> String {
    let c = match v {
        Validity::Valid => "v-true",
        Validity::Invalid => "v-false",
        Validity::Unknown => "v-unknown",
    };
    format!(r#"<td class="{c}">{}</td>"#, validity_word(v))
}

fn latency_table(out: &mut String, rows: &[LatencyRow]) {
    out.push_str("<table><tr><th>op</th><th>outcome</th><th>count</th><th>mean</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>");
    for r in rows {
        let q = &r.quantiles;
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.f),
            r.outcome.as_str(),
            q.count,
            fmt_ms(q.mean_ms),
            fmt_ms(q.p50_ms),
            fmt_ms(q.p90_ms),
            fmt_ms(q.p99_ms),
            fmt_ms(q.p999_ms),
            fmt_ms(q.max_ms)
        );
    }
    out.push_str("</table>");
}

pub fn run_page(run: &RunData, s: &ReportSummary, scan: &LogScan) -> String {
    let results = &s.results;
    let mut o = String::new();
    let title = format!(
        "{} — {}",
        s.name,
        run.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    let _ = write!(
        o,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{}</title><style>{CSS}</style></head><body>",
        esc(&title)
    );
    let _ = write!(
        o,
        r#"<div class="banner {}">{}: {}</div>"#,
        banner_class(s.valid),
        esc(&s.name),
        validity_word(s.valid)
    );

    // Run header.
    o.push_str("<h2>Run</h2><table>");
    let mut row = |k: &str, v: &str| {
        let _ = write!(
            o,
            "<tr><td>{}</td><td style=\"text-align:left\">{}</td></tr>",
            esc(k),
            esc(v)
        );
    };
    row("directory", &run.dir.display().to_string());
    row("db", &s.db);
    row("workload", &s.workload);
    row("nemesis", &s.nemesis);
    row("seed", s.seed.as_deref().unwrap_or("—"));
    row("commit", s.commit.as_deref().unwrap_or("—"));
    row(
        "version",
        &run.field(&["faultline-version", "version"])
            .unwrap_or_else(|| "—".into()),
    );
    row("duration", &fmt_ms(s.perf.duration_ms));
    row(
        "client ops",
        &format!(
            "{} ok, {} fail, {} info, {} pending; {:.1} ok/s",
            s.perf.ops.ok, s.perf.ops.fail, s.perf.ops.info, s.perf.ops.pending, s.perf.ok_per_s
        ),
    );
    o.push_str("</table>");

    // Verdicts.
    o.push_str("<h2>Checkers</h2><table><tr><th>checker</th><th>verdict</th><th>details</th></tr>");
    for r in results {
        let details = serde_json::to_string_pretty(&r.details).unwrap_or_default();
        let shown: String = details.chars().take(20_000).collect();
        let _ = write!(
            o,
            "<tr><td>{}</td>{}<td style=\"text-align:left\"><details><summary>{} bytes</summary><pre>{}</pre></details></td></tr>",
            esc(&r.checker),
            verdict_cell(r.valid),
            details.len(),
            esc(&shown)
        );
    }
    o.push_str("</table>");

    // Counterexamples.
    for r in results.iter().filter(|r| r.valid == Validity::Invalid) {
        if let Some(svg) = counterexample_svg(&run.history, &r.details) {
            let reason = super::run::find_key(&r.details, "reason")
                .and_then(Value::as_str)
                .map(|why| format!("<p><b>{}</b></p>", esc(why)))
                .unwrap_or_default();
            let _ = write!(
                o,
                "<h2>Counterexample: {}</h2>{reason}<p>Ops around the violation on the same keys; the op the checker blames is outlined in red.</p>{svg}",
                esc(&r.checker)
            );
        }
    }

    // Plots.
    let (ops, _) = completed_ops(&run.history);
    let end = history_end_ns(&run.history);
    let windows = fault_windows(&run.history);
    o.push_str("<h2>Latency and throughput</h2>");
    let families: BTreeSet<&str> = windows.iter().map(|w| w.family.as_str()).collect();
    if !families.is_empty() {
        o.push_str(r#"<p class="legend">Shaded: "#);
        for f in &families {
            let _ = write!(
                o,
                r#"<span style="background:{}33">{}</span>"#,
                plots::css_color(plots::family_color(f)),
                esc(&plots::family_label(f))
            );
        }
        o.push_str("</p>");
    }
    for svg in [
        plots::latency_scatter(&ops, &windows, end),
        plots::latency_quantiles(&ops, &windows, end),
        plots::throughput(&s.perf.throughput, &windows, end),
    ] {
        match svg {
            Ok(svg) => {
                let _ = write!(o, "<div>{svg}</div>");
            }
            Err(e) => {
                let _ = write!(o, "<p>plot failed: {}</p>", esc(&e.to_string()));
            }
        }
    }

    // Recovery.
    let _ = write!(o, "<h2>Recovery per fault</h2>");
    if s.recovery.windows.is_empty() {
        o.push_str("<p>No faults in this run.</p>");
    } else {
        let et = s.recovery.election_timeout_ms_min;
        let _ = write!(
            o,
            "<p>Minimum election timeout: {}. Unavailability is the longest gap between successful writes overlapping the fault; ≥ marks a fault the cluster had not recovered from when the next fault or the run's end came.</p>",
            fmt_opt_ms(et)
        );
        o.push_str(RECOVERY_HEADER);
        for w in &s.recovery.windows {
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                w.n,
                esc(&w.family),
                w.start_ms / 1000.0,
                w.end_ms
                    .map(|e| format!("{:.2}", e / 1000.0))
                    .unwrap_or_else(|| "never".into()),
                esc(&describe(&w.value)),
                fmt_unavailability(w),
                w.unavailability_election_timeouts
                    .map(|x| format!("{x:.1}×"))
                    .unwrap_or_else(|| "—".into()),
                fmt_opt_ms(w.first_error_ms),
                fmt_opt_ms(w.first_write_after_start_ms),
                fmt_opt_ms(w.first_write_after_heal_ms),
                w.dip_ratio
                    .map(|d| format!("{:.0}%", d * 100.0))
                    .unwrap_or_else(|| "—".into()),
                fmt_opt_ms(w.back_to_90pct_ms),
                w.ops_lost
                    .map(|x| format!("{x:.0}"))
                    .unwrap_or_else(|| "—".into()),
                w.elections
            );
        }
        o.push_str("</table>");
    }

    // Latency tables.
    o.push_str("<h2>Latency, whole run</h2>");
    latency_table(&mut o, &s.perf.latency);
    o.push_str("<h2>Latency per phase</h2>");
    for p in &s.perf.phases {
        let _ = write!(
            o,
            "<h3>{} ({:.2} s – {:.2} s, {:.1} ok/s)</h3>",
            esc(&p.name),
            p.start_ms / 1000.0,
            p.end_ms / 1000.0,
            p.ok_per_s
        );
        latency_table(&mut o, &p.latency);
    }

    // Node logs.
    o.push_str("<h2>Node logs</h2>");
    if scan.nodes.is_empty() {
        o.push_str("<p>No node logs in this run directory.</p>");
    } else {
        let _ = write!(
            o,
            "<p>{} files from {} nodes; {} panics.</p>",
            scan.files,
            scan.nodes.len(),
            scan.panics_total
        );
        for p in &scan.panics {
            let _ = write!(
                o,
                "<pre>{}:{}: {}</pre>",
                esc(&p.file),
                p.line,
                esc(&p.text)
            );
        }
        for e in &scan.excerpts {
            let _ = write!(
                o,
                "<h3>fault {} {} — {}</h3><pre>{}</pre>",
                e.window,
                e.edge,
                esc(&e.node),
                esc(&e.lines.join("\n"))
            );
        }
    }

    // Options.
    let _ = write!(
        o,
        "<h2>Options</h2><details><summary>test.json</summary><pre>{}</pre></details>",
        esc(&serde_json::to_string_pretty(&run.test).unwrap_or_default())
    );
    o.push_str("</body></html>\n");
    o
}

pub const RECOVERY_HEADER: &str = "<table class=\"recovery\"><tr><th>#</th><th>fault</th><th>start (s)</th><th>heal (s)</th><th>what</th><th>unavailable</th><th>× election timeout</th><th>first error</th><th>first write after start</th><th>first write after heal</th><th>lowest throughput</th><th>back to 90%</th><th>ops lost</th><th>elections</th></tr>";

/// A one-line description of a fault from the nemesis's value.
pub fn describe(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Object(m) => {
            let mut parts = Vec::new();
            for k in ["shape", "target", "targets", "signal"] {
                if let Some(x) = m.get(k) {
                    let t = match x {
                        Value::String(s) => s.clone(),
                        Value::Array(a) => a
                            .iter()
                            .map(|e| {
                                e.as_str()
                                    .map(str::to_string)
                                    .unwrap_or_else(|| e.to_string())
                            })
                            .collect::<Vec<_>>()
                            .join(","),
                        other => other.to_string(),
                    };
                    parts.push(format!("{k}={t}"));
                }
            }
            if parts.is_empty() {
                v.to_string().chars().take(80).collect()
            } else {
                parts.join(" ")
            }
        }
        other => other.to_string().chars().take(80).collect(),
    }
}

/// History indices mentioned anywhere in a checker's details: `index` fields, and
/// `*-index` / `*_index` fields. Returns (all mentioned, highlighted): ops under keys
/// naming the culprit (`op`, `bad-op`, `failed`, `culprit`, …) are highlighted; when there
/// are none, every mentioned op is.
fn mentioned_indices(details: &Value) -> (BTreeSet<u64>, BTreeSet<u64>) {
    // `hot`: under a culprit key; `listed`: inside an array, where an `op` key names one
    // of many (concurrent ops, a prefix), not the culprit.
    fn go(
        v: &Value,
        hot: bool,
        listed: bool,
        depth: u32,
        all: &mut BTreeSet<u64>,
        high: &mut BTreeSet<u64>,
    ) {
        if depth > 12 || all.len() > 10_000 {
            return;
        }
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    let kl = k.to_ascii_lowercase();
                    if (kl == "index" || kl.ends_with("-index") || kl.ends_with("_index"))
                        && let Some(i) = x.as_u64()
                    {
                        all.insert(i);
                        if hot {
                            high.insert(i);
                        }
                    }
                    let culprit = matches!(
                        kl.as_str(),
                        "op" | "bad-op"
                            | "bad_op"
                            | "failed"
                            | "failed-op"
                            | "culprit"
                            | "invalid-op"
                            | "last-op"
                    );
                    go(x, hot || (culprit && !listed), listed, depth + 1, all, high);
                }
            }
            Value::Array(a) => a
                .iter()
                .for_each(|x| go(x, hot, true, depth + 1, all, high)),
            _ => {}
        }
    }
    let (mut all, mut high) = (BTreeSet::new(), BTreeSet::new());
    go(details, false, false, 0, &mut all, &mut high);
    if high.is_empty() {
        high = all.clone();
    }
    (all, high)
}

fn op_label(h: &[Event], op: &CompletedOp) -> String {
    let inv = &h[op.invoke_pos];
    let done = &h[op.complete_pos];
    let key = inv
        .key
        .as_deref()
        .map(|k| format!(" {k}"))
        .unwrap_or_default();
    let v = if done.value.is_null() {
        &inv.value
    } else {
        &done.value
    };
    let val = if v.is_null() {
        String::new()
    } else {
        format!(" {v}")
    };
    format!("{}{key}{val} → {}", op.f, op.outcome.as_str())
}

/// The timeline of a counterexample, or `None` when the details name no history op.
pub fn counterexample_svg(history: &[Event], details: &Value) -> Option<String> {
    let (all, high) = mentioned_indices(details);
    if all.is_empty() {
        return None;
    }
    let (ops, _) = completed_ops(history);
    let index_of = |pos: usize| history[pos].index.unwrap_or(pos as u64);
    let involved: Vec<&CompletedOp> = ops
        .iter()
        .filter(|o| {
            all.contains(&index_of(o.invoke_pos)) || all.contains(&index_of(o.complete_pos))
        })
        .collect();
    if involved.is_empty() {
        return None;
    }
    let lo = involved.iter().map(|o| o.invoke_ns).min()?;
    let hi = involved.iter().map(|o| o.complete_ns).max()?;
    // The named ops, then ops concurrent with them, up to the limit.
    let mut chosen: BTreeMap<usize, &CompletedOp> = involved
        .iter()
        .take(TIMELINE_OPS_MAX)
        .map(|o| (o.invoke_pos, *o))
        .collect();
    // Concurrent ops on the keys involved tell the story; others are noise.
    let keys: BTreeSet<Option<&str>> = involved.iter().map(|o| o.key.as_deref()).collect();
    for o in ops
        .iter()
        .filter(|o| o.invoke_ns <= hi && o.complete_ns >= lo && keys.contains(&o.key.as_deref()))
    {
        if chosen.len() >= TIMELINE_OPS_MAX {
            break;
        }
        chosen.entry(o.invoke_pos).or_insert(o);
    }
    let tl: Vec<TimelineOp> = chosen
        .values()
        .map(|o| TimelineOp {
            process: o.process,
            start_ns: o.invoke_ns,
            end_ns: Some(o.complete_ns),
            label: op_label(history, o),
            outcome: Some(o.outcome),
            highlighted: high.contains(&index_of(o.invoke_pos))
                || high.contains(&index_of(o.complete_pos)),
        })
        .collect();
    Some(plots::timeline(&tl))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_culprit_op_is_highlighted_and_listed_ops_are_not() {
        let d = json!({"counterexample": {
            "op": {"invoke_index": 10, "complete_index": 14},
            "concurrent": [{"op": {"invoke_index": 11, "complete_index": 12}}],
            "related": [{"invoke_index": 3, "complete_index": null}],
        }});
        let (all, high) = mentioned_indices(&d);
        assert_eq!(all.into_iter().collect::<Vec<_>>(), vec![3, 10, 11, 12, 14]);
        assert_eq!(high.into_iter().collect::<Vec<_>>(), vec![10, 14]);
        let (_, high) = mentioned_indices(&json!({"lost": [{"index": 5}]}));
        assert_eq!(
            high.into_iter().collect::<Vec<_>>(),
            vec![5],
            "with no culprit named, every mentioned op is"
        );
    }

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            esc(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
