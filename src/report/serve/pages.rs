//! The pages: runs (from the index), one run (its report, files, archive, live progress
//! while it runs), comparisons, directory listings.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{Markup, PreEscaped, html};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{App, Refused, resolve, url_path, url_segment};
use crate::report::index::{self, RunQuery, RunRow};
use crate::report::templates::{page, verdict_word_class};
use crate::report::{compare, html as report_html};

/// Rows on one page of the runs table.
pub const RUNS_PER_PAGE: usize = 50;
/// A run without `results.json` whose history or log changed this recently is running;
/// older, it is shown as unfinished (the controller died or was killed).
const RUNNING_QUIET_MAX: Duration = Duration::from_secs(300);
/// Files listed on a run page (node logs can be many).
const FILES_LISTED_MAX: usize = 2000;
/// How often a running run's page asks for fresh counts.
const LIVE_REFRESH_MS: u64 = 2000;

pub fn internal(e: anyhow::Error) -> Response {
    tracing::warn!(error = %format!("{e:#}"), "page");
    (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")).into_response()
}

/// A usage error (a bad filter or sort) is the client's: 400; anything else is 500.
fn failed(e: anyhow::Error) -> Response {
    if let Some(u) = e.downcast_ref::<crate::exit::UsageError>() {
        return bad_request(&u.0);
    }
    internal(e)
}

fn bad_request(msg: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Html(
            page(
                "faultline: bad request",
                true,
                html! { h1 { "Bad request" } p { (msg) } },
            )
            .into_string(),
        ),
    )
        .into_response()
}

/// Runs blocking work (SQLite, run directories) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| anyhow::anyhow!("page task: {e}"))?
}

/// Query parameters in order, repeats kept (`run=a&run=b`).
pub fn params(q: &Option<String>) -> Vec<(String, String)> {
    q.as_deref()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default()
}

fn param<'a>(ps: &'a [(String, String)], key: &str) -> Option<&'a str> {
    ps.iter()
        .find(|(k, v)| k == key && !v.trim().is_empty())
        .map(|(_, v)| v.trim())
}

/// `test/stamp` of a run directory: its last two components.
pub fn run_id(run_dir: &str) -> String {
    let p = Path::new(run_dir);
    let stamp = p
        .file_name()
        .map(|s| s.to_string_lossy())
        .unwrap_or_default();
    let test = p
        .parent()
        .and_then(|t| t.file_name())
        .map(|s| s.to_string_lossy())
        .unwrap_or_default();
    format!("{test}/{stamp}")
}

fn run_href(id: &str) -> String {
    let (test, stamp) = id.split_once('/').unwrap_or((id, ""));
    format!("/-/run/{}/{}", url_segment(test), url_segment(stamp))
}

fn file_href(id: &str, file: &str) -> String {
    format!("{}/{}", url_path(Path::new(id)), url_segment(file))
}

/// `2026-11-27` (a date input) or `20261127` → the stamp prefix `20261127`.
fn date_prefix(s: &str) -> String {
    s.chars().filter(|c| *c != '-').collect()
}

fn fmt_opt(x: Option<f64>, unit: &str) -> String {
    x.map(|v| format!("{v:.1}{unit}"))
        .unwrap_or_else(|| "—".into())
}

/// What a run's page and the runs page show of a run still going.
#[derive(Debug, Clone, Serialize)]
pub struct LiveStatus {
    /// Still being written to (see [`RUNNING_QUIET_MAX`]); false once it has results or
    /// has gone quiet.
    pub running: bool,
    pub finished: bool,
    /// The lifecycle phase the controller's log names last.
    pub phase: Option<String>,
    pub invoked: u64,
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
    pub nemesis_events: u64,
    pub history_bytes: u64,
}

#[derive(Deserialize)]
struct HistoryLine {
    #[serde(rename = "type")]
    kind: Option<String>,
    process: Option<Value>,
}

fn modified_within(p: &Path, d: Duration) -> bool {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age <= d)
}

/// The last phase the controller began, from `faultline.log` (`begin phase=…` lines).
fn last_phase(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().rev().find_map(|l| {
        if !l.contains("begin") {
            return None;
        }
        let rest = &l[l.find("phase=")? + "phase=".len()..];
        let v = rest
            .trim_start_matches('"')
            .split(['"', ' '])
            .next()
            .unwrap_or("");
        (!v.is_empty()).then(|| v.to_string())
    })
}

pub fn live_status(dir: &Path) -> LiveStatus {
    let history = dir.join(crate::store::HISTORY_FILE);
    let log = dir.join(crate::store::LOG_FILE);
    let finished = dir.join(crate::store::RESULTS_FILE).is_file();
    let running = !finished
        && (modified_within(&history, RUNNING_QUIET_MAX)
            || modified_within(&log, RUNNING_QUIET_MAX));
    let mut s = LiveStatus {
        running,
        finished,
        phase: last_phase(&log),
        invoked: 0,
        ok: 0,
        fail: 0,
        info: 0,
        nemesis_events: 0,
        history_bytes: std::fs::metadata(&history).map(|m| m.len()).unwrap_or(0),
    };
    if let Ok(f) = std::fs::File::open(&history) {
        use std::io::BufRead;
        // The last line may be half written: lines that do not parse are skipped.
        for line in std::io::BufReader::new(f).lines().map_while(Result::ok) {
            let Ok(h) = serde_json::from_str::<HistoryLine>(&line) else {
                continue;
            };
            let client = h.process.as_ref().is_some_and(Value::is_u64);
            if !client {
                if h.process.as_ref().and_then(Value::as_str) == Some("nemesis") {
                    s.nemesis_events += 1;
                }
                continue;
            }
            match h.kind.as_deref() {
                Some("invoke") => s.invoked += 1,
                Some("ok") => s.ok += 1,
                Some("fail") => s.fail += 1,
                Some("info") => s.info += 1,
                _ => {}
            }
        }
    }
    s
}

/// Each test's newest run that has no results yet (the runner's `latest` links): a test
/// in progress is always its test's newest run, so no run directory is scanned.
fn unfinished_runs(store: &Path) -> Vec<(String, LiveStatus)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(store) else {
        return out;
    };
    for t in rd.filter_map(Result::ok) {
        let tp = t.path();
        if tp.is_symlink() || !tp.is_dir() {
            continue;
        }
        let Ok(real) = tp.join("latest").canonicalize() else {
            continue;
        };
        if !real.starts_with(store)
            || !real.join(crate::store::HISTORY_FILE).is_file()
            || real.join(crate::store::RESULTS_FILE).is_file()
        {
            continue;
        }
        let s = live_status(&real);
        out.push((run_id(&real.to_string_lossy()), s));
    }
    out.sort_by(|a, b| b.0.cmp(&a.0));
    out
}

fn query_of(ps: &[(String, String)]) -> RunQuery {
    let owned = |k: &str| param(ps, k).map(str::to_string);
    let page_n: usize = param(ps, "page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    RunQuery {
        name: owned("name"),
        db: owned("db"),
        workload: owned("workload"),
        nemesis: owned("nemesis"),
        verdict: owned("verdict"),
        since: param(ps, "since").map(date_prefix),
        until: param(ps, "until").map(date_prefix),
        sort: owned("sort"),
        ascending: param(ps, "order") == Some("asc"),
        offset: (page_n - 1) * RUNS_PER_PAGE,
        limit: RUNS_PER_PAGE,
    }
}

/// The runs page's URL with some parameters replaced (empty values dropped).
fn with_params(ps: &[(String, String)], set: &[(&str, String)]) -> String {
    let mut kept: Vec<(String, String)> = ps
        .iter()
        .filter(|(k, v)| !v.is_empty() && !set.iter().any(|(s, _)| s == k))
        .cloned()
        .collect();
    kept.extend(
        set.iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.to_string(), v.clone())),
    );
    match serde_urlencoded::to_string(&kept) {
        Ok(q) if !q.is_empty() => format!("/?{q}"),
        _ => "/".into(),
    }
}

struct RunsData {
    page: index::RunPage,
    dbs: Vec<String>,
    workloads: Vec<String>,
    verdicts: Vec<String>,
    unfinished: Vec<(String, LiveStatus)>,
}

/// `GET /`: the runs, filtered, sorted and paginated by the index.
pub async fn runs(State(app): State<Arc<App>>, RawQuery(raw): RawQuery) -> Response {
    let ps = params(&raw);
    let q = query_of(&ps);
    let store = app.store.clone();
    let q2 = q.clone();
    let data = blocking(move || {
        Ok(RunsData {
            page: index::query(&store, &q2)?,
            dbs: index::distinct(&store, "db")?,
            workloads: index::distinct(&store, "workload")?,
            verdicts: index::distinct(&store, "verdict")?,
            unfinished: unfinished_runs(&store),
        })
    })
    .await;
    match data {
        Ok(d) => Html(runs_page(&ps, &q, &d).into_string()).into_response(),
        Err(e) => failed(e),
    }
}

fn select(name: &str, label: &str, options: &[String], chosen: Option<&str>) -> Markup {
    html! {
        label { (label)
            select name=(name) {
                option value="" { "any" }
                @for o in options {
                    option value=(o) selected[chosen == Some(o.as_str())] { (o) }
                }
            }
        }
    }
}

fn runs_page(ps: &[(String, String)], q: &RunQuery, d: &RunsData) -> Markup {
    let sort = q.sort.as_deref().unwrap_or("started");
    let page_n = q.offset / RUNS_PER_PAGE + 1;
    let pages = d.page.total.div_ceil(RUNS_PER_PAGE).max(1);
    let header = |col: &str, label: &str| {
        let next = if sort == col && !q.ascending {
            "asc"
        } else {
            "desc"
        };
        let href = with_params(
            ps,
            &[
                ("sort", col.into()),
                ("order", next.into()),
                ("page", String::new()),
            ],
        );
        html! { th { a.sorted[sort == col] href=(href) data-sort=(col) { (label) } } }
    };
    let body = html! {
        h1 { "Runs" }
        @if !d.unfinished.is_empty() {
            h2 { "In progress" }
            table #unfinished {
                tr { th { "run" } th { "state" } th { "phase" } th { "ops invoked" } th { "ok" } th { "fail" } th { "info" } }
                @for (id, s) in &d.unfinished {
                    tr data-run=(id) {
                        td { a href=(run_href(id)) { (id) } }
                        td { @if s.running { "running" } @else { "unfinished (quiet)" } }
                        td { (s.phase.as_deref().unwrap_or("—")) }
                        td { (s.invoked) } td { (s.ok) } td { (s.fail) } td { (s.info) }
                    }
                }
            }
        }
        form.filters #filters method="get" action="/" {
            label { "test" input type="text" name="name" value=(q.name.as_deref().unwrap_or("")) placeholder="substring"; }
            (select("db", "db", &d.dbs, q.db.as_deref()))
            (select("workload", "workload", &d.workloads, q.workload.as_deref()))
            label { "nemesis" input type="text" name="nemesis" value=(q.nemesis.as_deref().unwrap_or("")) placeholder="substring"; }
            (select("verdict", "verdict", &d.verdicts, q.verdict.as_deref()))
            label { "from" input type="date" name="since" value=(param(ps, "since").unwrap_or("")); }
            label { "to" input type="date" name="until" value=(param(ps, "until").unwrap_or("")); }
            @if let Some(s) = q.sort.as_deref() { input type="hidden" name="sort" value=(s); }
            @if q.ascending { input type="hidden" name="order" value="asc"; }
            button type="submit" #apply { "Filter" }
            a href="/" { "clear" }
        }
        form #compare method="get" action="/-/compare" {
            p.pager {
                span #total { (d.page.total) " runs" }
                span { "page " (page_n) " of " (pages) }
                @if page_n > 1 {
                    a #prev href=(with_params(ps, &[("page", (page_n - 1).to_string())])) { "← newer" }
                }
                @if page_n < pages {
                    a #next href=(with_params(ps, &[("page", (page_n + 1).to_string())])) { "older →" }
                }
                button type="submit" #compare-selected { "Compare selected" }
            }
            table #runs {
                tr {
                    th { "" }
                    (header("started", "started"))
                    (header("name", "test"))
                    (header("db", "db"))
                    (header("workload", "workload"))
                    (header("nemesis", "nemesis"))
                    (header("verdict", "verdict"))
                    (header("ok_per_s", "ok/s"))
                    (header("latency_ms_p99", "p99"))
                    (header("unavailability_ms_p99", "unavail p99"))
                    (header("elections", "elections"))
                    th { "" }
                }
                @for r in &d.page.rows {
                    (run_row(r))
                }
            }
        }
        @if d.page.rows.is_empty() { p.muted { "No runs match." } }
    };
    page("faultline runs", true, body)
}

fn run_row(r: &RunRow) -> Markup {
    let id = run_id(&r.run_dir);
    html! {
        tr.run data-run=(id) {
            td { input type="checkbox" name="run" value=(id); }
            td { a.open href=(run_href(&id)) { (r.started) } }
            td { (r.name) }
            td { (r.db) }
            td { (r.workload) }
            td { (r.nemesis) }
            td class=(format!("v-{}", verdict_word_class(&r.verdict))) { (r.verdict) }
            td { (fmt_opt(r.ok_per_s, "")) }
            td { (fmt_opt(r.latency_ms_p99, " ms")) }
            td { (fmt_opt(r.unavailability_ms_p99, " ms")) }
            td { (r.elections.map(|e| e.to_string()).unwrap_or_default()) }
            td { a href=(file_href(&id, crate::report::REPORT_HTML)) { "report" } }
        }
    }
}

fn run_dir_of(app: &App, test: &str, stamp: &str) -> Result<PathBuf, Refused> {
    let dir = resolve(
        &app.store,
        &format!("/{}/{}", url_segment(test), url_segment(stamp)),
    )?;
    if dir.join(crate::store::HISTORY_FILE).is_file() {
        Ok(dir)
    } else {
        Err(Refused::NotFound)
    }
}

fn json_str(v: &Value, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| match v.get(*k)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    })
}

/// Every file under `dir` (relative paths, sizes), bounded.
fn files_of(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(dir.join(&rel)) else {
            continue;
        };
        for e in rd.filter_map(Result::ok) {
            let r = rel.join(e.file_name());
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(r),
                Ok(t) if t.is_file() => {
                    let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                    out.push((r.to_string_lossy().into_owned(), len));
                }
                _ => {}
            }
            if out.len() >= FILES_LISTED_MAX {
                return out;
            }
        }
    }
    out.sort();
    out
}

fn fmt_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// `GET /-/run/<test>/<stamp>`.
pub async fn run(
    State(app): State<Arc<App>>,
    UrlPath((test, stamp)): UrlPath<(String, String)>,
) -> Response {
    let dir = match run_dir_of(&app, &test, &stamp) {
        Ok(d) => d,
        Err(r) => return r.into_response(),
    };
    let id = format!("{test}/{stamp}");
    let r = blocking(move || Ok(run_page(&id, &dir))).await;
    match r {
        Ok(m) => Html(m.into_string()).into_response(),
        Err(e) => failed(e),
    }
}

fn run_page(id: &str, dir: &Path) -> Markup {
    let read = |f: &str| {
        std::fs::read(dir.join(f))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .unwrap_or(Value::Null)
    };
    let test = read(crate::store::TEST_FILE);
    let results = read(crate::store::RESULTS_FILE);
    let live = live_status(dir);
    let verdict = match results.get("valid") {
        Some(Value::Bool(true)) => "valid".to_string(),
        Some(Value::Bool(false)) => "invalid".to_string(),
        Some(Value::String(s)) => s.to_ascii_lowercase(),
        _ if live.running => "running".to_string(),
        _ if live.finished => "unknown".to_string(),
        _ => "unfinished".to_string(),
    };
    let banner = match verdict.as_str() {
        "running" => "running",
        v => verdict_word_class(v),
    };
    let nemesis = test
        .pointer("/options/nemesis")
        .map(|n| match n {
            Value::Array(a) => a
                .iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| x.to_string())
                })
                .collect::<Vec<_>>()
                .join(","),
            other => other
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| other.to_string()),
        })
        .or_else(|| json_str(&test, &["nemesis"]))
        .unwrap_or_else(|| "—".into());
    let files = files_of(dir);
    let has_report = dir.join(crate::report::REPORT_HTML).is_file();
    let (test_name, stamp) = id.split_once('/').unwrap_or((id, ""));
    let archive = format!(
        "/-/archive/{}/{}.tar.gz",
        url_segment(test_name),
        url_segment(stamp)
    );
    let live_url = format!("/-/live/{}/{}", url_segment(test_name), url_segment(stamp));
    let body = html! {
        div #verdict class=(format!("banner {banner}")) { (json_str(&test, &["name"]).unwrap_or_else(|| test_name.to_string())) ": " (verdict) }
        table #meta {
            tr { td { "run" } td style="text-align:left" { (id) } }
            @for (k, keys) in [("db", &["db"][..]), ("workload", &["workload"][..]), ("seed", &["seed"][..]), ("commit", &["git-commit", "commit"][..]), ("started", &["started"][..])] {
                tr { td { (k) } td style="text-align:left" { (json_str(&test, keys).unwrap_or_else(|| "—".into())) } }
            }
            tr { td { "nemesis" } td style="text-align:left" { (nemesis) } }
        }
        p {
            @if has_report { a #report href=(file_href(id, crate::report::REPORT_HTML)) { "Open the report" } " · " }
            a #download href=(archive) download { "Download the run (.tar.gz)" }
            " · " a href=(format!("{}/", url_path(Path::new(id)))) { "Browse files" }
        }
        @if !live.finished {
            h2 { "Progress" }
            table #live data-url=(live_url) {
                tr { th { "state" } th { "phase" } th { "ops invoked" } th { "ok" } th { "fail" } th { "info" } th { "nemesis events" } th { "history" } }
                tr {
                    td #live-state { @if live.running { "running" } @else { "unfinished (quiet)" } }
                    td #live-phase { (live.phase.as_deref().unwrap_or("—")) }
                    td #live-invoked { (live.invoked) }
                    td #live-ok { (live.ok) }
                    td #live-fail { (live.fail) }
                    td #live-info { (live.info) }
                    td #live-nemesis { (live.nemesis_events) }
                    td #live-bytes { (fmt_bytes(live.history_bytes)) }
                }
            }
            p.muted { "Refreshed every " (LIVE_REFRESH_MS / 1000) " s while the run goes on." }
            script { (PreEscaped(live_script())) }
        }
        h2 { "Files" }
        table #files {
            tr { th { "file" } th { "size" } }
            @for (f, len) in &files {
                tr { td { a href=(format!("{}/{}", url_path(Path::new(id)), url_path(Path::new(f)).trim_start_matches('/'))) { (f) } } td { (fmt_bytes(*len)) } }
            }
        }
        @if has_report {
            h2 { "Report" }
            iframe #report-frame src=(file_href(id, crate::report::REPORT_HTML)) style="width:100%;height:70vh;border:1px solid #ccc" {}
        }
    };
    page(&format!("faultline: {id}"), true, body)
}

/// Polls the live endpoint and updates the progress table; reloads once the run has
/// finished so the verdict and report appear.
fn live_script() -> String {
    format!(
        r#"(function(){{
var t=document.getElementById('live');if(!t)return;var url=t.dataset.url;
function kib(n){{return n>=1048576?(n/1048576).toFixed(1)+' MiB':n>=1024?(n/1024).toFixed(1)+' KiB':n+' B';}}
function tick(){{fetch(url,{{cache:'no-store'}}).then(function(r){{return r.json();}}).then(function(s){{
if(s.finished){{location.reload();return;}}
document.getElementById('live-state').textContent=s.running?'running':'unfinished (quiet)';
document.getElementById('live-phase').textContent=s.phase||'—';
['invoked','ok','fail','info'].forEach(function(k){{document.getElementById('live-'+k).textContent=s[k];}});
document.getElementById('live-nemesis').textContent=s.nemesis_events;
document.getElementById('live-bytes').textContent=kib(s.history_bytes);
}}).catch(function(){{}}).finally(function(){{setTimeout(tick,{LIVE_REFRESH_MS});}});}}
setTimeout(tick,{LIVE_REFRESH_MS});}})();"#
    )
}

/// `GET /-/live/<test>/<stamp>`: a run's progress as JSON.
pub async fn live(
    State(app): State<Arc<App>>,
    UrlPath((test, stamp)): UrlPath<(String, String)>,
) -> Response {
    let dir = match run_dir_of(&app, &test, &stamp) {
        Ok(d) => d,
        Err(r) => return r.into_response(),
    };
    match blocking(move || Ok(live_status(&dir))).await {
        Ok(s) => Json(s).into_response(),
        Err(e) => failed(e),
    }
}

/// `GET /-/compare?run=<test>/<stamp>&run=…`: what `faultline compare` writes.
pub async fn compare(State(app): State<Arc<App>>, RawQuery(raw): RawQuery) -> Response {
    let ps = params(&raw);
    let ids: Vec<&str> = ps
        .iter()
        .filter(|(k, _)| k == "run")
        .map(|(_, v)| v.as_str())
        .collect();
    if ids.len() < 2 {
        return bad_request(
            "Pick two or more runs to compare (tick their boxes on the runs page).",
        );
    }
    let mut dirs = Vec::new();
    for id in &ids {
        let Some((test, stamp)) = id.split_once('/') else {
            return bad_request(&format!("{id:?} is no run (expected <test>/<stamp>)"));
        };
        match run_dir_of(&app, test, stamp) {
            Ok(d) => dirs.push(d),
            Err(r) => return r.into_response(),
        }
    }
    match blocking(move || compare::load(&dirs)).await {
        Ok(figs) => Html(
            page(
                "faultline comparison",
                true,
                report_html::compare_body(&figs),
            )
            .into_string(),
        )
        .into_response(),
        Err(e) => failed(e),
    }
}

/// A directory inside the store.
pub fn dir_listing(store: &Path, rel: &Path) -> Response {
    let mut names: Vec<(String, bool)> = std::fs::read_dir(store.join(rel))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| {
                    let dir = e.path().is_dir();
                    (e.file_name().to_string_lossy().into_owned(), dir)
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let base = url_path(rel);
    let base = base.trim_end_matches('/');
    let title = format!("/{}", rel.display());
    let body = html! {
        h1 { (title) }
        ul #listing {
            @if !rel.as_os_str().is_empty() { li { a href=(format!("{base}/..")) { ".." } } }
            @for (n, dir) in names.iter().take(10_000) {
                li { a href=(format!("{base}/{}{}", url_segment(n), if *dir { "/" } else { "" })) { (n) @if *dir { "/" } } }
            }
        }
    };
    Html(page(&title, true, body).into_string()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_the_last_two_components() {
        assert_eq!(
            run_id("/s/reg/20261127T050000.000Z"),
            "reg/20261127T050000.000Z"
        );
        assert_eq!(run_id("store/reg/x/"), "reg/x");
    }

    #[test]
    fn paging_links_keep_the_filters() {
        let ps = vec![
            ("db".to_string(), "raft".to_string()),
            ("page".to_string(), "2".to_string()),
            ("name".to_string(), String::new()),
        ];
        assert_eq!(
            with_params(&ps, &[("page", "3".into())]),
            "/?db=raft&page=3"
        );
        let q = query_of(&ps);
        assert_eq!(
            (q.db.as_deref(), q.offset, q.name),
            (Some("raft"), RUNS_PER_PAGE, None)
        );
        assert_eq!(date_prefix("2026-11-27"), "20261127");
    }

    #[test]
    fn the_phase_is_the_last_one_begun() {
        let d = std::env::temp_dir().join(format!("faultline-phase-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let log = d.join("faultline.log");
        std::fs::write(
            &log,
            "2026 INFO faultline::runner: begin phase=\"setup\"\n2026 INFO faultline::runner: end phase=\"setup\" seconds=1.0\n2026 INFO faultline::runner: begin phase=\"clients\"\n",
        )
        .unwrap();
        assert_eq!(last_phase(&log).as_deref(), Some("clients"));
        let _ = std::fs::remove_dir_all(&d);
    }
}
