//! The terminal summary printed when a run ends: verdicts, latency quantiles, recovery
//! per fault.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, Color, Table};
use faultline_checkers::Validity;

use super::{ReportSummary, fmt_ms, fmt_opt_ms, fmt_unavailability, validity_word};

pub fn verdict_cell(v: Validity) -> Cell {
    let c = Cell::new(validity_word(v));
    match v {
        Validity::Valid => c.fg(Color::Green),
        Validity::Invalid => c.fg(Color::Red),
        Validity::Unknown => c.fg(Color::Yellow),
    }
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_header(header.iter().copied());
    t
}

/// The three tables as text (what [`print_summary`] prints).
pub fn render_summary(s: &ReportSummary) -> String {
    let mut out = String::new();
    let mut v = table(&["checker", "verdict"]);
    for c in &s.results {
        v.add_row(vec![Cell::new(&c.checker), verdict_cell(c.valid)]);
    }
    out.push_str(&format!(
        "{} [{} / {} / {}] seed {}: {}\n{v}\n",
        s.name,
        s.db,
        s.workload,
        s.nemesis,
        s.seed.as_deref().unwrap_or("?"),
        validity_word(s.valid)
    ));

    let mut l = table(&[
        "op", "outcome", "count", "p50", "p90", "p99", "p99.9", "max",
    ]);
    for r in &s.perf.latency {
        let q = &r.quantiles;
        l.add_row(vec![
            r.f.clone(),
            r.outcome.as_str().to_string(),
            q.count.to_string(),
            fmt_ms(q.p50_ms),
            fmt_ms(q.p90_ms),
            fmt_ms(q.p99_ms),
            fmt_ms(q.p999_ms),
            fmt_ms(q.max_ms),
        ]);
    }
    out.push_str(&format!(
        "{} ok, {} fail, {} info over {} ({:.1} ok/s)\n{l}\n",
        s.perf.ops.ok,
        s.perf.ops.fail,
        s.perf.ops.info,
        fmt_ms(s.perf.duration_ms),
        s.perf.ok_per_s
    ));

    if !s.recovery.windows.is_empty() {
        let mut r = table(&[
            "#",
            "fault",
            "start",
            "unavailable",
            "× ET",
            "first error",
            "write after heal",
            "lowest",
            "back to 90%",
            "elections",
        ]);
        for w in &s.recovery.windows {
            r.add_row(vec![
                w.n.to_string(),
                w.family.clone(),
                format!("{:.1} s", w.start_ms / 1000.0),
                fmt_unavailability(w),
                w.unavailability_election_timeouts
                    .map(|x| format!("{x:.1}"))
                    .unwrap_or_else(|| "—".into()),
                fmt_opt_ms(w.first_error_ms),
                fmt_opt_ms(w.first_write_after_heal_ms),
                w.dip_ratio
                    .map(|d| format!("{:.0}%", d * 100.0))
                    .unwrap_or_else(|| "—".into()),
                fmt_opt_ms(w.back_to_90pct_ms),
                w.elections.to_string(),
            ]);
        }
        out.push_str(&format!("{r}\n"));
    }
    if s.panics > 0 {
        out.push_str(&format!("{} panics in node logs\n", s.panics));
    }
    out.push_str(&format!("report: {}\n", s.report_html.display()));
    out
}

pub fn print_summary(s: &ReportSummary) {
    out!("{}", render_summary(s));
}
