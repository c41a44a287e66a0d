//! `GET /-/trends`: figures across nightly runs per db, from the same index query as
//! `faultline trend`, drawn as inline SVG, with each run's verdict as a coloured cell.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::{Html, IntoResponse, Response};
use maud::{Markup, html};

use super::App;
use super::pages::params;
use crate::report::index::{self, METRICS, TrendPoint};
use crate::report::templates::{page, verdict_word_class};

/// Shown when no metric is chosen.
pub const DEFAULT_METRICS: &[&str] = &["unavailability_ms_p99", "ok_per_s", "latency_ms_p99"];
const LAST_DEFAULT: usize = 50;
const LAST_MAX: usize = 1000;

const W: f64 = 900.0;
const H: f64 = 160.0;
const PAD_L: f64 = 60.0;
const PAD_R: f64 = 10.0;
const PAD_T: f64 = 10.0;
const PAD_B: f64 = 20.0;

struct DbTrends {
    db: String,
    /// (metric, points oldest first).
    series: Vec<(String, Vec<TrendPoint>)>,
}

pub async fn trends(State(app): State<Arc<App>>, RawQuery(raw): RawQuery) -> Response {
    let ps = params(&raw);
    let get = |k: &str| {
        ps.iter()
            .find(|(key, v)| key == k && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    let metric = get("metric");
    let only_db = get("db");
    let last = get("last")
        .and_then(|l| l.parse().ok())
        .unwrap_or(LAST_DEFAULT)
        .clamp(1, LAST_MAX);
    let metrics: Vec<String> = match &metric {
        Some(m) => vec![m.clone()],
        None => DEFAULT_METRICS.iter().map(|m| m.to_string()).collect(),
    };
    let store = app.store.clone();
    let only = only_db.clone();
    let r = tokio::task::spawn_blocking(move || -> anyhow::Result<(Vec<String>, Vec<DbTrends>)> {
        let all_dbs = index::distinct(&store, "db")?;
        let dbs: Vec<String> = match only {
            Some(d) => vec![d],
            None => all_dbs.clone(),
        };
        let mut out = Vec::new();
        for db in dbs {
            let mut series = Vec::new();
            for m in &metrics {
                series.push((m.clone(), index::trend(&store, m, Some(&db), last)?));
            }
            out.push(DbTrends { db, series });
        }
        Ok((all_dbs, out))
    })
    .await;
    let (all_dbs, data) = match r {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            if let Some(u) = e.downcast_ref::<crate::exit::UsageError>() {
                return (axum::http::StatusCode::BAD_REQUEST, format!("{}\n", u.0)).into_response();
            }
            return super::pages::internal(e);
        }
        Err(e) => return super::pages::internal(anyhow::anyhow!("trends: {e}")),
    };
    let body = html! {
        h1 { "Trends" }
        form.filters #trend-form method="get" action="/-/trends" {
            label { "metric"
                select name="metric" {
                    option value="" { "unavailability p99, throughput, latency p99" }
                    @for m in METRICS { option value=(m) selected[metric.as_deref() == Some(*m)] { (m) } }
                }
            }
            label { "db"
                select name="db" {
                    option value="" { "every db" }
                    @for d in &all_dbs { option value=(d) selected[only_db.as_deref() == Some(d.as_str())] { (d) } }
                }
            }
            label { "last runs" input type="number" name="last" min="1" max=(LAST_MAX) value=(last); }
            button type="submit" { "Show" }
        }
        @if data.is_empty() { p.muted { "No runs in the index yet." } }
        @for t in &data {
            section.db-trend data-db=(t.db) {
                h2 { (t.db) }
                @if let Some((_, pts)) = t.series.first() {
                    h3 { "verdicts" }
                    (verdict_strip(pts))
                }
                @for (m, pts) in &t.series {
                    h3 { (m) }
                    (line_chart(&t.db, m, pts))
                }
            }
        }
    };
    Html(page("faultline trends", true, body).into_string()).into_response()
}

/// One cell per run, oldest left, coloured by verdict.
fn verdict_strip(pts: &[TrendPoint]) -> Markup {
    let cell = 14.0;
    let w = (pts.len() as f64 * cell).max(cell);
    html! {
        svg.strip xmlns="http://www.w3.org/2000/svg" width=(w) height=(cell + 2.0) viewBox=(format!("0 0 {w} {}", cell + 2.0)) {
            @for (i, (started, _, verdict, _)) in pts.iter().enumerate() {
                rect class=(verdict_word_class(verdict)) x=(i as f64 * cell) y="1" width=(cell - 2.0) height=(cell) {
                    title { (started) ": " (verdict) }
                }
            }
        }
    }
}

/// A metric over runs: a polyline through the runs that have a value, a dot per run.
fn line_chart(db: &str, metric: &str, pts: &[TrendPoint]) -> Markup {
    let vals: Vec<(usize, f64)> = pts
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.3.map(|v| (i, v)))
        .collect();
    let max = vals.iter().map(|v| v.1).fold(0.0f64, f64::max);
    let top = if max > 0.0 { max * 1.1 } else { 1.0 };
    let n = pts.len().max(2) as f64;
    let x = |i: usize| PAD_L + (W - PAD_L - PAD_R) * i as f64 / (n - 1.0);
    let y = |v: f64| PAD_T + (H - PAD_T - PAD_B) * (1.0 - v / top);
    let line: String = vals
        .iter()
        .map(|(i, v)| format!("{:.1},{:.1}", x(*i), y(*v)))
        .collect::<Vec<_>>()
        .join(" ");
    html! {
        svg.trend xmlns="http://www.w3.org/2000/svg" width=(W) height=(H) viewBox=(format!("0 0 {W} {H}")) data-db=(db) data-metric=(metric) data-points=(vals.len()) {
            line x1=(PAD_L) y1=(H - PAD_B) x2=(W - PAD_R) y2=(H - PAD_B) stroke="#999" {}
            line x1=(PAD_L) y1=(PAD_T) x2=(PAD_L) y2=(H - PAD_B) stroke="#999" {}
            text x=(PAD_L - 4.0) y=(PAD_T + 10.0) text-anchor="end" font-size="11" { (format!("{top:.0}")) }
            text x=(PAD_L - 4.0) y=(H - PAD_B) text-anchor="end" font-size="11" { "0" }
            @if let (Some(first), Some(last)) = (pts.first(), pts.last()) {
                text x=(PAD_L) y=(H - 4.0) font-size="11" { (first.0) }
                text x=(W - PAD_R) y=(H - 4.0) text-anchor="end" font-size="11" { (last.0) }
            }
            @if vals.is_empty() {
                text x=(W / 2.0) y=(H / 2.0) text-anchor="middle" font-size="13" fill="#777" { "no values recorded" }
            } @else {
                polyline points=(line) fill="none" stroke="#1565c0" stroke-width="1.5" {}
                @for (i, v) in &vals {
                    circle class=(format!("point {}", verdict_word_class(&pts[*i].2))) cx=(format!("{:.1}", x(*i))) cy=(format!("{:.1}", y(*v))) r="3"
                        fill=(match verdict_word_class(&pts[*i].2) { "valid" => "#2e7d32", "invalid" => "#c62828", _ => "#ef6c00" }) {
                        title { (pts[*i].0) ": " (format!("{v:.1}")) }
                    }
                }
            }
        }
    }
}
