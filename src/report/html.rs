//! `report.html`: one self-contained page per run (inline CSS and SVG, no scripts, no
//! network), readable straight from the store directory or through `faultline serve`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use faultline_checkers::history::digest::{Digest, OpRecord};
use faultline_checkers::history::stream::StreamError;
use faultline_checkers::perf::LatencyRow;
use faultline_checkers::recovery::fault_windows;
use faultline_checkers::{CheckResult, Event, Validity};
use serde_json::Value;

use maud::{Markup, PreEscaped, html};

use super::compare::{self, RunFigures};
use super::logs::LogScan;
use super::templates;
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


pub fn banner_class(v: Validity) -> &'static str {
    match v {
        Validity::Valid => "valid",
        Validity::Invalid => "invalid",
        Validity::Unknown => "unknown",
    }
}

fn verdict_cell(v: Validity) -> Markup {
    let c = match v {
        Validity::Valid => "v-true",
        Validity::Invalid => "v-false",
        Validity::Unknown => "v-unknown",
    };
    html! { td class=(c) { (validity_word(v)) } }
}

fn latency_table(rows: &[LatencyRow]) -> Markup {
    html! {
        table {
            tr { th { "op" } th { "outcome" } th { "count" } th { "mean" } th { "p50" } th { "p90" } th { "p99" } th { "p99.9" } th { "max" } }
            @for r in rows {
                @let q = &r.quantiles;
                tr {
                    td { (r.f) } td { (r.outcome.as_str()) } td { (q.count) }
                    td { (fmt_ms(q.mean_ms)) } td { (fmt_ms(q.p50_ms)) } td { (fmt_ms(q.p90_ms)) }
                    td { (fmt_ms(q.p99_ms)) } td { (fmt_ms(q.p999_ms)) } td { (fmt_ms(q.max_ms)) }
                }
            }
        }
    }
}

/// The run's `report.html`: self-contained (inline CSS and SVG, no scripts, no links
/// out), so it reads the same from disk as through `faultline serve`.
pub fn run_page(run: &RunData, s: &ReportSummary, scan: &LogScan) -> String {
    let title = format!(
        "{} — {}",
        s.name,
        run.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    let d = &run.digest;
    let ops = &d.ops;
    let end = d.end_ns;
    let windows = fault_windows(&d.nemesis);
    let families: BTreeSet<&str> = windows.iter().map(|w| w.family.as_str()).collect();
    let timelines = match Timelines::read(run, &s.results) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "reading the ops the counterexamples name");
            Timelines::default()
        }
    };
    // The ops a counterexample names are drawn exactly, whatever the scatter thins.
    let keep: BTreeSet<usize> = timelines.named.keys().copied().collect();
    let plots = [
        plots::latency_scatter(ops, &windows, end, &keep),
        plots::latency_quantiles(ops, &windows, end),
        plots::throughput(&s.perf.throughput, &windows, end),
    ];
    let left = "text-align:left";
    let version = run
        .field(&["faultline-version", "version"])
        .unwrap_or_else(|| "—".into());
    let ops_line = format!(
        "{} ok, {} fail, {} info, {} pending; {:.1} ok/s",
        s.perf.ops.ok, s.perf.ops.fail, s.perf.ops.info, s.perf.ops.pending, s.perf.ok_per_s
    );
    let header: Vec<(&str, String)> = vec![
        ("directory", run.dir.display().to_string()),
        ("db", s.db.clone()),
        ("workload", s.workload.clone()),
        ("nemesis", s.nemesis.clone()),
        ("seed", s.seed.clone().unwrap_or_else(|| "—".into())),
        ("commit", s.commit.clone().unwrap_or_else(|| "—".into())),
        ("version", version),
        ("duration", fmt_ms(s.perf.duration_ms)),
        ("client ops", ops_line),
    ];
    let body = html! {
        div class=(format!("banner {}", banner_class(s.valid))) { (s.name) ": " (validity_word(s.valid)) }

        h2 { "Run" }
        table {
            @for (k, v) in &header {
                tr { td { (k) } td style=(left) { (v) } }
            }
        }

        h2 { "Checkers" }
        table {
            tr { th { "checker" } th { "verdict" } th { "details" } }
            @for r in &s.results {
                @let details = serde_json::to_string_pretty(&r.details).unwrap_or_default();
                tr {
                    td { (r.checker) }
                    (verdict_cell(r.valid))
                    td style=(left) {
                        details {
                            summary { (details.len()) " bytes" }
                            pre { (details.chars().take(20_000).collect::<String>()) }
                        }
                    }
                }
            }
        }

        @for r in s.results.iter().filter(|r| r.valid == Validity::Invalid) {
            @if let Some(svg) = timelines.svg(d, &r.details) {
                h2 { "Counterexample: " (r.checker) }
                @if let Some(why) = super::run::find_key(&r.details, "reason").and_then(Value::as_str) {
                    p { b { (why) } }
                }
                p { "Ops around the violation on the same keys; the op the checker blames is outlined in red." }
                (PreEscaped(svg))
            }
        }

        @for r in s.results.iter().filter(|r| r.valid != Validity::Valid) {
            @let (drawn, not_drawn) = super::cycles::anomalies(&r.details);
            @if !drawn.is_empty() {
                h2 { "Anomalies: " (r.checker) }
                p {
                    "Each cycle: transactions on a circle, each arrow an order the history forces "
                    "(ww, wr, rw dependencies on a key; rt real time; pr process order)."
                    @if not_drawn > 0 { " " (not_drawn) " more found, not drawn; every one is counted in the details." }
                }
                @for d in &drawn {
                    div.anomaly {
                        h3 { (d.kind) }
                        p { (d.explanation) }
                        (PreEscaped(&d.svg))
                    }
                }
            }
        }

        h2 { "Latency and throughput" }
        @if !families.is_empty() {
            p.legend {
                "Shaded: "
                @for f in &families {
                    span style=(format!("background:{}33", plots::css_color(plots::family_color(f)))) { (plots::family_label(f)) }
                }
            }
        }
        @for svg in &plots {
            @match svg {
                Ok(svg) => div { (PreEscaped(svg.as_str())) },
                Err(e) => p { "plot failed: " (e.to_string()) },
            }
        }

        h2 { "Recovery per fault" }
        @if s.recovery.windows.is_empty() {
            p { "No faults in this run." }
        } @else {
            p {
                "Minimum election timeout: " (fmt_opt_ms(s.recovery.election_timeout_ms_min))
                ". Unavailability is the longest gap between successful writes overlapping the fault; ≥ marks a fault the cluster had not recovered from when the next fault or the run's end came."
            }
            table.recovery {
                tr {
                    @for h in RECOVERY_COLUMNS { th { (h) } }
                }
                @for w in &s.recovery.windows {
                    tr {
                        td { (w.n) }
                        td { (w.family) }
                        td { (format!("{:.2}", w.start_ms / 1000.0)) }
                        td { (w.end_ms.map(|e| format!("{:.2}", e / 1000.0)).unwrap_or_else(|| "never".into())) }
                        td { (describe(&w.value)) }
                        td { (fmt_unavailability(w)) }
                        td { (w.unavailability_election_timeouts.map(|x| format!("{x:.1}×")).unwrap_or_else(|| "—".into())) }
                        td { (fmt_opt_ms(w.first_error_ms)) }
                        td { (fmt_opt_ms(w.first_write_after_start_ms)) }
                        td { (fmt_opt_ms(w.first_write_after_heal_ms)) }
                        td { (w.dip_ratio.map(|d| format!("{:.0}%", d * 100.0)).unwrap_or_else(|| "—".into())) }
                        td { (fmt_opt_ms(w.back_to_90pct_ms)) }
                        td { (w.ops_lost.map(|x| format!("{x:.0}")).unwrap_or_else(|| "—".into())) }
                        td { (w.elections) }
                    }
                }
            }
        }

        h2 { "Latency, whole run" }
        (latency_table(&s.perf.latency))
        h2 { "Latency per phase" }
        @for p in &s.perf.phases {
            h3 { (p.name) " (" (format!("{:.2} s – {:.2} s, {:.1} ok/s", p.start_ms / 1000.0, p.end_ms / 1000.0, p.ok_per_s)) ")" }
            (latency_table(&p.latency))
        }

        h2 { "Node logs" }
        @if scan.nodes.is_empty() {
            p { "No node logs in this run directory." }
        } @else {
            p { (scan.files) " files from " (scan.nodes.len()) " nodes; " (scan.panics_total) " panics." }
            @for p in &scan.panics {
                pre { (p.file) ":" (p.line) ": " (p.text) }
            }
            @for e in &scan.excerpts {
                h3 { "fault " (e.window) " " (e.edge) " — " (e.node) }
                pre { (e.lines.join("\n")) }
            }
        }

        h2 { "Options" }
        details {
            summary { "test.json" }
            pre { (serde_json::to_string_pretty(&run.test).unwrap_or_default()) }
        }
    };
    templates::page(&title, false, body).into_string() + "\n"
}

/// Columns of the recovery table.
pub const RECOVERY_COLUMNS: &[&str] = &[
    "#",
    "fault",
    "start (s)",
    "heal (s)",
    "what",
    "unavailable",
    "× election timeout",
    "first error",
    "first write after start",
    "first write after heal",
    "lowest throughput",
    "back to 90%",
    "ops lost",
    "elections",
];

/// The comparison `faultline compare` writes, as a self-contained file.
pub fn compare_page(runs: &[RunFigures]) -> String {
    templates::page("faultline comparison", false, compare_body(runs)).into_string() + "\n"
}

/// The comparison's content, for the file and for the web app's Compare page.
pub fn compare_body(runs: &[RunFigures]) -> Markup {
    html! {
        h1 { "Comparison" }
        table #comparison {
            tr {
                th {}
                @for r in runs { th { (r.label) } }
            }
            @for (name, cells) in compare::rows(runs) {
                tr {
                    td { (name) }
                    @for c in cells { td { (c) } }
                }
            }
        }
        p { "Unavailability: the longest gap between successful writes overlapping a fault. Windows the cluster never recovered from within their span are counted as unrecovered and left out of the median / p99 / max." }
        @for r in runs {
            section.compared-run {
                h2 { (r.label) }
                p { (r.dir.display().to_string()) }
                @if let Some(svg) = &r.throughput_svg { (PreEscaped(svg.as_str())) }
            }
        }
    }
}


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

fn op_label(d: &Digest, inv: &Event, done: &Event, op: &OpRecord) -> String {
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
    format!("{}{key}{val} → {}", d.f(op), op.outcome.as_str())
}

/// The events the counterexample timelines draw, read back from the history by position:
/// a handful, so the report need not hold the history to label them.
#[derive(Default)]
struct Timelines {
    /// Position → index of every event an invalid result names.
    named: BTreeMap<usize, u64>,
    /// The events of the ops the timelines draw, by position.
    events: HashMap<usize, Event>,
}

impl Timelines {
    /// Two passes over the history, and only for a run with a violation.
    fn read(run: &RunData, results: &[CheckResult]) -> Result<Timelines, StreamError> {
        let indices: BTreeSet<u64> = results
            .iter()
            .filter(|r| r.valid == Validity::Invalid)
            .flat_map(|r| mentioned_indices(&r.details).0)
            .collect();
        let mut t = Timelines::default();
        if indices.is_empty() {
            return Ok(t);
        }
        run.history.for_each(|pos, e| {
            let index = e.index.unwrap_or(pos as u64);
            if indices.contains(&index) {
                t.named.insert(pos, index);
            }
            Ok::<_, StreamError>(())
        })?;
        let mut wanted: HashSet<usize> = HashSet::new();
        for r in results.iter().filter(|r| r.valid == Validity::Invalid) {
            let (all, _) = mentioned_indices(&r.details);
            for o in t.chosen(&run.digest, &all).unwrap_or_default() {
                wanted.insert(o.invoke_pos());
                wanted.insert(o.complete_pos());
            }
        }
        let mut events = HashMap::with_capacity(wanted.len());
        run.history.for_each(|pos, e| {
            if wanted.contains(&pos) {
                events.insert(pos, e);
            }
            Ok::<_, StreamError>(())
        })?;
        t.events = events;
        Ok(t)
    }

    fn index_of(&self, pos: usize) -> Option<u64> {
        self.named.get(&pos).copied()
    }

    /// The ops a timeline of `all` draws: the named ones, then ops concurrent with them on
    /// the same keys, up to the limit; by invocation position.
    fn chosen<'d>(&self, d: &'d Digest, all: &BTreeSet<u64>) -> Option<Vec<&'d OpRecord>> {
        let named = |pos: usize| self.index_of(pos).is_some_and(|i| all.contains(&i));
        let involved: Vec<&OpRecord> = d
            .ops
            .iter()
            .filter(|o| named(o.invoke_pos()) || named(o.complete_pos()))
            .collect();
        if involved.is_empty() {
            return None;
        }
        let lo = involved.iter().map(|o| o.invoke_ns).min()?;
        let hi = involved.iter().map(|o| o.complete_ns).max()?;
        let mut chosen: BTreeMap<usize, &OpRecord> = involved
            .iter()
            .take(TIMELINE_OPS_MAX)
            .map(|o| (o.invoke_pos(), *o))
            .collect();
        // Concurrent ops on the keys involved tell the story; others are noise.
        let keys: BTreeSet<u32> = involved.iter().map(|o| o.key).collect();
        for o in d
            .ops
            .iter()
            .filter(|o| o.invoke_ns <= hi && o.complete_ns >= lo && keys.contains(&o.key))
        {
            if chosen.len() >= TIMELINE_OPS_MAX {
                break;
            }
            chosen.entry(o.invoke_pos()).or_insert(o);
        }
        Some(chosen.into_values().collect())
    }

    /// The timeline of a counterexample, or `None` when the details name no history op.
    fn svg(&self, d: &Digest, details: &Value) -> Option<String> {
        let (all, high) = mentioned_indices(details);
        if all.is_empty() {
            return None;
        }
        let highlighted = |pos: usize| self.index_of(pos).is_some_and(|i| high.contains(&i));
        let tl: Vec<TimelineOp> = self
            .chosen(d, &all)?
            .into_iter()
            .map(|o| TimelineOp {
                process: d.process(o),
                start_ns: o.invoke_ns,
                end_ns: Some(o.complete_ns),
                label: match (self.events.get(&o.invoke_pos()), self.events.get(&o.complete_pos())) {
                    (Some(inv), Some(done)) => op_label(d, inv, done, o),
                    _ => format!("{} → {}", d.f(o), o.outcome.as_str()),
                },
                outcome: Some(o.outcome),
                highlighted: highlighted(o.invoke_pos()) || highlighted(o.complete_pos()),
            })
            .collect();
        Some(plots::timeline(&tl))
    }
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
