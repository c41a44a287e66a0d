//! The run index: every finished run, one row in `<store>/runs.sqlite`, so `faultline
//! runs` and `faultline trend` answer without reading every run directory.

use std::path::Path;

use anyhow::Context;
use rusqlite::{Connection, params};

use super::{ReportSummary, validity_word};

pub const INDEX_FILE: &str = "runs.sqlite";

/// Metrics `trend` can show: columns of the `runs` table.
pub const METRICS: &[&str] = &[
    "ok_per_s",
    "latency_ms_p50",
    "latency_ms_p99",
    "latency_ms_max",
    "unavailability_ms_p99",
    "unavailability_ms_max",
    "unrecovered",
    "elections",
    "faults",
    "ops_ok",
    "ops_fail",
    "ops_info",
];

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS runs (
    run_dir TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    started TEXT NOT NULL,
    db TEXT NOT NULL,
    workload TEXT NOT NULL,
    nemesis TEXT NOT NULL,
    seed TEXT,
    git_commit TEXT,
    verdict TEXT NOT NULL,
    ok_per_s REAL,
    latency_ms_p50 REAL,
    latency_ms_p99 REAL,
    latency_ms_max REAL,
    unavailability_ms_p99 REAL,
    unavailability_ms_max REAL,
    unrecovered INTEGER,
    elections INTEGER,
    faults INTEGER,
    ops_ok INTEGER,
    ops_fail INTEGER,
    ops_info INTEGER,
    panics INTEGER
);
CREATE INDEX IF NOT EXISTS runs_by_db ON runs (db, started);
CREATE INDEX IF NOT EXISTS runs_by_started ON runs (started);
CREATE INDEX IF NOT EXISTS runs_by_name ON runs (name, started);";

pub fn open(store: &Path) -> anyhow::Result<Connection> {
    std::fs::create_dir_all(store).with_context(|| format!("creating {}", store.display()))?;
    let path = store.join(INDEX_FILE);
    let conn = Connection::open(&path).with_context(|| format!("opening {}", path.display()))?;
    // Several runs (or a suite and a test) may finish at once.
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.execute_batch(SCHEMA)
        .with_context(|| format!("creating the schema in {}", path.display()))?;
    Ok(conn)
}

/// Records (or re-records) a run.
pub fn record(store: &Path, s: &ReportSummary) -> anyhow::Result<()> {
    let conn = open(store)?;
    let started = s
        .run_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let q = s.perf.ok_latency.as_ref();
    conn.execute(
        "INSERT OR REPLACE INTO runs VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22)",
        params![
            s.run_dir.display().to_string(),
            s.name,
            started,
            s.db,
            s.workload,
            s.nemesis,
            s.seed,
            s.commit,
            validity_word(s.valid).to_ascii_lowercase(),
            s.perf.ok_per_s,
            q.map(|q| q.p50_ms),
            q.map(|q| q.p99_ms),
            q.map(|q| q.max_ms),
            s.recovery.unavailability_ms_p99,
            s.recovery.unavailability_ms_max,
            s.recovery.windows.iter().filter(|w| !w.recovered).count() as i64,
            s.recovery.elections_total as i64,
            s.recovery.windows.len() as i64,
            s.perf.ops.ok as i64,
            s.perf.ops.fail as i64,
            s.perf.ops.info as i64,
            s.panics as i64,
        ],
    )
    .context("recording the run in the index")?;
    Ok(())
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub run_dir: String,
    pub name: String,
    pub started: String,
    pub db: String,
    pub workload: String,
    pub nemesis: String,
    pub seed: Option<String>,
    pub verdict: String,
    pub ok_per_s: Option<f64>,
    pub latency_ms_p99: Option<f64>,
    pub unavailability_ms_p99: Option<f64>,
    pub elections: Option<i64>,
}

const ROW_COLUMNS: &str = "run_dir, name, started, db, workload, nemesis, seed, verdict, ok_per_s,
    latency_ms_p99, unavailability_ms_p99, elections";

fn row_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        run_dir: r.get(0)?,
        name: r.get(1)?,
        started: r.get(2)?,
        db: r.get(3)?,
        workload: r.get(4)?,
        nemesis: r.get(5)?,
        seed: r.get(6)?,
        verdict: r.get(7)?,
        ok_per_s: r.get(8)?,
        latency_ms_p99: r.get(9)?,
        unavailability_ms_p99: r.get(10)?,
        elections: r.get(11)?,
    })
}

/// Columns the runs page may sort by (whitelisted: they are spliced into SQL).
pub const SORT_COLUMNS: &[&str] = &[
    "started",
    "name",
    "db",
    "workload",
    "nemesis",
    "verdict",
    "ok_per_s",
    "latency_ms_p99",
    "unavailability_ms_p99",
    "elections",
];

/// A filtered, sorted page of the index. Text filters are exact except `name` and
/// `nemesis`, which match a substring (a nemesis is recorded as a list like
/// `partition,kill`). Dates compare against the run directory's UTC stamp
/// (`20261127T050000.000Z`), so `since`/`until` take `YYYYMMDD` or any prefix of a stamp;
/// `until` is inclusive of the whole day (or prefix) it names.
#[derive(Debug, Clone, Default)]
pub struct RunQuery {
    pub name: Option<String>,
    pub db: Option<String>,
    pub workload: Option<String>,
    pub nemesis: Option<String>,
    pub verdict: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    /// One of [`SORT_COLUMNS`]; `started` when `None`.
    pub sort: Option<String>,
    pub ascending: bool,
    pub offset: usize,
    pub limit: usize,
}

/// One page of runs and how many match in all.
#[derive(Debug, Clone)]
pub struct RunPage {
    pub rows: Vec<RunRow>,
    pub total: usize,
}

/// Runs matching `q`, for the web app's runs page.
pub fn query(store: &Path, q: &RunQuery) -> anyhow::Result<RunPage> {
    let sort = q.sort.as_deref().unwrap_or("started");
    if !SORT_COLUMNS.contains(&sort) {
        return Err(crate::exit::usage(format!(
            "unknown sort column {sort:?}; known: {}",
            SORT_COLUMNS.join(", ")
        )));
    }
    let conn = open(store)?;
    let like = |s: &Option<String>| {
        s.as_ref().map(|s| {
            format!(
                "%{}%",
                s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
            )
        })
    };
    // `until` names a day or prefix: everything starting with it is still included.
    let until = q.until.as_ref().map(|u| format!("{u}\u{10ffff}"));
    let filter = "WHERE (?1 IS NULL OR name LIKE ?1 ESCAPE '\\')
        AND (?2 IS NULL OR db = ?2)
        AND (?3 IS NULL OR workload = ?3)
        AND (?4 IS NULL OR nemesis LIKE ?4 ESCAPE '\\')
        AND (?5 IS NULL OR verdict = ?5)
        AND (?6 IS NULL OR started >= ?6)
        AND (?7 IS NULL OR started <= ?7)";
    let (name, nemesis) = (like(&q.name), like(&q.nemesis));
    let args = params![name, q.db, q.workload, nemesis, q.verdict, q.since, until];
    let total: i64 = conn
        .query_row(&format!("SELECT COUNT(*) FROM runs {filter}"), args, |r| {
            r.get(0)
        })
        .context("counting runs in the index")?;
    let dir = if q.ascending { "ASC" } else { "DESC" };
    // `sort` is one of SORT_COLUMNS; ties broken by stamp then directory for stable pages.
    let sql = format!(
        "SELECT {ROW_COLUMNS} FROM runs {filter}
         ORDER BY {sort} IS NULL, {sort} {dir}, started {dir}, run_dir {dir} LIMIT ?8 OFFSET ?9"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(
        params![
            name,
            q.db,
            q.workload,
            nemesis,
            q.verdict,
            q.since,
            until,
            q.limit as i64,
            q.offset as i64
        ],
        row_of,
    )?;
    Ok(RunPage {
        rows: rows.collect::<Result<_, _>>()?,
        total: total as usize,
    })
}

/// The values a column takes, for the filter menus. `column` must be one of
/// [`SORT_COLUMNS`].
pub fn distinct(store: &Path, column: &str) -> anyhow::Result<Vec<String>> {
    if !SORT_COLUMNS.contains(&column) {
        return Err(crate::exit::usage(format!("unknown column {column:?}")));
    }
    let conn = open(store)?;
    let mut stmt = conn.prepare(&format!(
        "SELECT DISTINCT CAST({column} AS TEXT) FROM runs WHERE {column} IS NOT NULL ORDER BY 1"
    ))?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The newest `last` runs (optionally of one db), newest first.
pub fn list(store: &Path, last: usize, db: Option<&str>) -> anyhow::Result<Vec<RunRow>> {
    let conn = open(store)?;
    let mut stmt = conn.prepare(&format!(
        "SELECT {ROW_COLUMNS} FROM runs WHERE (?1 IS NULL OR db = ?1) ORDER BY started DESC LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![db, last as i64], row_of)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// (started, db, verdict, value).
pub type TrendPoint = (String, String, String, Option<f64>);

/// One metric across runs, oldest first.
pub fn trend(
    store: &Path,
    metric: &str,
    db: Option<&str>,
    last: usize,
) -> anyhow::Result<Vec<TrendPoint>> {
    if !METRICS.contains(&metric) {
        return Err(crate::exit::usage(format!(
            "unknown metric {metric:?}; known: {}",
            METRICS.join(", ")
        )));
    }
    let conn = open(store)?;
    // `metric` is one of METRICS, so splicing it into the query is safe.
    let sql = format!(
        "SELECT started, db, verdict, CAST({metric} AS REAL) FROM
           (SELECT * FROM runs WHERE (?1 IS NULL OR db = ?1) ORDER BY started DESC LIMIT ?2)
         ORDER BY started ASC"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params![db, last as i64], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
