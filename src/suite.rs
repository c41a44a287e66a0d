//! `faultline suite`: the nightly matrix (Jepsen's test-all). Every combination of db ×
//! workload × nemesis, `--test-count` times each with consecutive seeds, one after the
//! other on the same cluster; a summary of successes / invalid / unknown / crashed, JUnit
//! XML for CI, and a non-zero exit when any run was invalid or crashed.
//!
//! `-i a,b,c` shards the matrix over several clusters: each inventory runs one test at a
//! time, the clusters run in parallel, and every run lands in the same store and index.
//! Each run is a child `faultline suite` process limited to one cell of the same plan (the
//! hidden `--shard-*` flags), so runs on different clusters keep their own log, signal
//! handling and failure; the parent only schedules, relays output and collects the rows.

use std::path::PathBuf;
use std::process::ExitCode;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, Table};
use faultline_checkers::Validity;

use crate::report::junit::{self, Case, CaseResult};
use crate::report::summary::verdict_cell;
use crate::test_cmd::TestArgs;

/// Runs in one suite at most: a typo in a list must not start a week of tests.
const SUITE_RUNS_MAX: usize = 10_000;

#[derive(clap::Args, Debug)]
pub struct SuiteArgs {
    /// Write JUnit XML here, one test case per run.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// A sharded suite's child: run only this cell of the plan.
    #[arg(long, hide = true, requires_all = ["shard_inventory", "shard_base_seed", "shard_row_out"])]
    pub shard_cell: Option<usize>,
    /// A sharded suite's child: the one inventory of its shard.
    #[arg(long, hide = true)]
    pub shard_inventory: Option<String>,
    /// A sharded suite's child: the parent's base seed, so seeds match an unsharded suite.
    #[arg(long, hide = true)]
    pub shard_base_seed: Option<u64>,
    /// A sharded suite's child: where to write its row (JSON).
    #[arg(long, hide = true)]
    pub shard_row_out: Option<PathBuf>,
    /// `--db`, `--workload` and `--nemesis` take comma lists here: every combination runs.
    #[command(flatten)]
    pub test: TestArgs,
}

fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|x| x.trim().to_string())
        .filter(|x| !x.is_empty())
        .collect()
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Row {
    /// The inventory the run used (shown when the suite is sharded).
    cluster: String,
    db: String,
    workload: String,
    nemesis: String,
    seed: u64,
    seconds: f64,
    #[serde(with = "case_result")]
    result: CaseResult,
    run_dir: String,
    /// The run's exit code (0 valid, 1 invalid, 2 unknown, 3 harness error).
    exit: u8,
}

/// `CaseResult` as `{"kind": "invalid", "message": ...}` for the child-to-parent row file.
mod case_result {
    use crate::report::junit::CaseResult;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Repr {
        kind: String,
        message: String,
    }

    pub fn serialize<S: Serializer>(r: &CaseResult, s: S) -> Result<S::Ok, S::Error> {
        let (kind, message) = match r {
            CaseResult::Valid => ("valid", String::new()),
            CaseResult::Invalid(m) => ("invalid", m.clone()),
            CaseResult::Unknown(m) => ("unknown", m.clone()),
            CaseResult::Crashed(m) => ("crashed", m.clone()),
        };
        Repr { kind: kind.into(), message }.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<CaseResult, D::Error> {
        let r = Repr::deserialize(d)?;
        Ok(match r.kind.as_str() {
            "valid" => CaseResult::Valid,
            "invalid" => CaseResult::Invalid(r.message),
            "unknown" => CaseResult::Unknown(r.message),
            "crashed" => CaseResult::Crashed(r.message),
            other => return Err(serde::de::Error::custom(format!("unknown result kind {other:?}"))),
        })
    }
}

/// One cell of the matrix: its labels and its validated configuration.
struct Cell_ {
    db: String,
    workload: String,
    nemesis: String,
    cfg: crate::runner::TestConfig,
}

/// Every combination, validated against `inventory` before the first run touches a host.
fn plan(args: &mut SuiteArgs, inventory: &str, base_seed: u64) -> anyhow::Result<Vec<Cell_>> {
    let dbs = list(&args.test.db);
    let workloads = list(&args.test.workload);
    let nemeses = list(&args.test.nemesis.nemesis);
    let nemesis_axis = args.test.nemesis.clone();
    let count = args.test.test_count;
    let total = dbs.len() * workloads.len() * nemeses.len().max(1) * count as usize;
    if total == 0 {
        return Err(crate::exit::usage(
            "the suite has no runs: --db, --workload and --nemesis must each name at least one",
        ));
    }
    if total > SUITE_RUNS_MAX {
        return Err(crate::exit::usage(format!(
            "the suite would make {total} runs, more than {SUITE_RUNS_MAX}"
        )));
    }
    let mut test = TestArgs { inventory: inventory.to_string(), ..args.test.clone() };
    let mut cells = Vec::with_capacity(total);
    for w in &workloads {
        for n in &nemeses {
            for d in &dbs {
                for i in 0..count {
                    test.db = d.clone();
                    test.workload = w.clone();
                    test.nemesis = nemesis_axis.for_suite_cell(n)?;
                    test.test_count = 1;
                    test.seed = Some(base_seed.wrapping_add(u64::from(i)));
                    let cfg = test.validate()?;
                    cells.push(Cell_ { db: d.clone(), workload: w.clone(), nemesis: n.clone(), cfg });
                }
            }
        }
    }
    Ok(cells)
}

pub fn run(mut args: SuiteArgs) -> anyhow::Result<ExitCode> {
    let inventories = list(&args.test.inventory);
    if inventories.is_empty() {
        return Err(crate::exit::usage("-i/--inventory names no inventory"));
    }
    if let Some(k) = args.shard_cell {
        return run_cell(args, k);
    }
    let base_seed = args.test.seed.unwrap_or_else(crate::run_loop::clock_seed);
    if inventories.len() > 1 {
        return run_sharded(args, inventories, base_seed);
    }
    let cells = plan(&mut args, &inventories[0], base_seed)?;
    outln!("suite: {} runs, base seed {base_seed}", cells.len());
    let total = cells.len();
    let labels: Vec<(String, String, String)> =
        cells.iter().map(|c| (c.db.clone(), c.workload.clone(), c.nemesis.clone())).collect();
    let rounds: Vec<Vec<crate::runner::TestConfig>> = cells.into_iter().map(|c| vec![c.cfg]).collect();
    let finished = crate::run_loop::run(
        rounds,
        |k, total, cfg| {
            let (db, workload, nemesis) = &labels[k];
            outln!("[{}/{total}] {db} {workload} {nemesis} seed {}", k + 1, cfg.seed);
        },
        print_run_summary,
        |_| {},
    )?;
    let rows: Vec<Row> = finished
        .iter()
        .zip(&labels)
        .map(|(f, l)| row_of(f, l, &inventories[0]))
        .collect();
    // The same mapping as `test`: a run that was not run (interrupted) is not valid.
    let code = crate::run_loop::exit_code(&finished);
    finish(&args, &rows, total, code, false)
}

fn print_run_summary(f: &crate::run_loop::Finished) {
    if let Ok(o) = &f.outcome
        && let Some(r) = &o.report
    {
        crate::report::print_summary(r);
    }
}

/// A sharded suite's child: one cell of the plan on one inventory, its row to a file.
fn run_cell(mut args: SuiteArgs, k: usize) -> anyhow::Result<ExitCode> {
    let (Some(inventory), Some(base_seed), Some(out)) = (
        args.shard_inventory.clone(),
        args.shard_base_seed,
        args.shard_row_out.clone(),
    ) else {
        return Err(crate::exit::usage("--shard-cell needs --shard-inventory, --shard-base-seed and --shard-row-out"));
    };
    let mut cells = plan(&mut args, &inventory, base_seed)?;
    let total = cells.len();
    if k >= total {
        return Err(crate::exit::usage(format!("--shard-cell {k}: the plan has {total} cells")));
    }
    let cell = cells.swap_remove(k);
    let label = (cell.db, cell.workload, cell.nemesis);
    outln!("[{}/{total}] {} {} {} seed {}", k + 1, label.0, label.1, label.2, cell.cfg.seed);
    let finished = crate::run_loop::run(vec![vec![cell.cfg]], |_, _, _| {}, print_run_summary, |_| {})?;
    let Some(f) = finished.first() else {
        // Interrupted before it started: no row, the parent counts it as not run.
        return Ok(ExitCode::from(crate::exit::UNKNOWN));
    };
    let row = row_of(f, &label, &inventory);
    crate::store::write_atomic(&out, serde_json::to_string(&row)?.as_bytes())?;
    Ok(ExitCode::from(row.exit))
}

fn row_of(f: &crate::run_loop::Finished, label: &(String, String, String), cluster: &str) -> Row {
    let (db, workload, nemesis) = label;
    let (result, run_dir) = match &f.outcome {
        Ok(o) => {
            let dir = o.run_dir.display().to_string();
            let res = match (&o.harness_error, o.valid) {
                (_, Validity::Invalid) => {
                    // Say which objective broke, when it was one.
                    let breached: Vec<String> = o
                        .results
                        .iter()
                        .filter(|r| r.checker == "slo" && r.valid == Validity::Invalid)
                        .flat_map(|r| r.details["breached"].as_array().cloned().unwrap_or_default())
                        .filter_map(|b| b.as_str().map(str::to_string))
                        .collect();
                    CaseResult::Invalid(if breached.is_empty() {
                        format!("invalid; see {dir}/report.html")
                    } else {
                        format!("objective breached: {}; see {dir}/report.html", breached.join("; "))
                    })
                }
                (Some(e), _) => CaseResult::Crashed(e.clone()),
                (None, Validity::Unknown) => CaseResult::Unknown(
                    o.report
                        .as_ref()
                        .filter(|r| !r.caps.is_empty())
                        .map(|r| r.caps.join("; "))
                        .unwrap_or_else(|| "a checker could not decide".into()),
                ),
                (None, Validity::Valid) => CaseResult::Valid,
            };
            (res, dir)
        }
        Err(e) => (CaseResult::Crashed(format!("{e:#}")), String::new()),
    };
    Row {
        cluster: cluster.to_string(),
        db: db.clone(),
        workload: workload.clone(),
        nemesis: nemesis.clone(),
        seed: f.cfg.seed,
        seconds: f.seconds,
        result,
        run_dir,
        exit: f.exit_code(),
    }
}

/// The summary table, the JUnit file and the exit code, for sharded and unsharded suites.
fn finish(args: &SuiteArgs, rows: &[Row], total: usize, code: u8, sharded: bool) -> anyhow::Result<ExitCode> {
    let mut t = Table::new();
    let mut header = vec!["db", "workload", "nemesis", "seed", "result", "seconds", "run"];
    if sharded {
        header.insert(0, "cluster");
    }
    t.load_preset(UTF8_FULL_CONDENSED).set_header(header);
    let (mut ok, mut invalid, mut unknown, mut crashed) = (0, 0, 0, 0);
    for r in rows {
        let cell = match &r.result {
            CaseResult::Valid => {
                ok += 1;
                verdict_cell(Validity::Valid)
            }
            CaseResult::Invalid(_) => {
                invalid += 1;
                verdict_cell(Validity::Invalid)
            }
            CaseResult::Unknown(_) => {
                unknown += 1;
                verdict_cell(Validity::Unknown)
            }
            CaseResult::Crashed(e) => {
                crashed += 1;
                Cell::new(format!(
                    "crashed: {}",
                    e.chars().take(60).collect::<String>()
                ))
                .fg(comfy_table::Color::Red)
            }
        };
        let mut cells = vec![
            Cell::new(&r.db),
            Cell::new(&r.workload),
            Cell::new(&r.nemesis),
            Cell::new(r.seed),
            cell,
            Cell::new(format!("{:.0}", r.seconds)),
            Cell::new(&r.run_dir),
        ];
        if sharded {
            cells.insert(0, Cell::new(&r.cluster));
        }
        t.add_row(cells);
    }
    outln!("{t}");
    outln!(
        "{ok} valid, {invalid} invalid, {unknown} unknown, {crashed} crashed, {} not run",
        total - rows.len()
    );
    if let Some(path) = &args.junit {
        let cases: Vec<Case> = rows
            .iter()
            .map(|r| Case {
                class: format!("{}.{}", r.db, r.workload),
                name: if sharded {
                    format!("{} seed {} on {}", r.nemesis, r.seed, r.cluster)
                } else {
                    format!("{} seed {}", r.nemesis, r.seed)
                },
                seconds: r.seconds,
                result: r.result.clone(),
                output: r.run_dir.clone(),
            })
            .collect();
        crate::store::write_atomic(path, junit::render("faultline-suite", &cases).as_bytes())?;
        outln!("junit: {}", path.display());
    }
    let mut code = code;
    if rows.len() < total {
        code = crate::exit::worst([code, crate::exit::UNKNOWN]).unwrap_or(code);
    }
    Ok(ExitCode::from(code))
}

/// Runs the plan over several inventories: one child process per run, at most one at a
/// time per inventory, the next cell going to whichever cluster frees up first.
fn run_sharded(mut args: SuiteArgs, inventories: Vec<String>, base_seed: u64) -> anyhow::Result<ExitCode> {
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = inventories.iter().find(|i| !seen.insert(i.as_str())) {
        return Err(crate::exit::usage(format!(
            "-i {dup} is given twice: two shards on one cluster would run tests on it at once"
        )));
    }
    // Every cell must be runnable on every cluster, since any cluster may draw it.
    let mut labels = Vec::new();
    for (n, inv) in inventories.iter().enumerate() {
        let cells = plan(&mut args, inv, base_seed)
            .map_err(|e| e.context(format!("shard -i {inv}")))?;
        if n == 0 {
            labels = cells.into_iter().map(|c| (c.db, c.workload, c.nemesis, c.cfg.seed)).collect();
        }
    }
    let total = labels.len();
    outln!(
        "suite: {total} runs over {} clusters ({}), base seed {base_seed}",
        inventories.len(),
        inventories.join(", ")
    );
    // The children's row files; the pid keeps concurrent suites apart.
    let tmp = std::env::temp_dir().join(format!("faultline-suite-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let argv: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let exe = std::env::current_exe()?;
    crate::logging::init();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let rows: anyhow::Result<Vec<(usize, Row)>> = rt.block_on(shards::run(shards::Plan {
        exe,
        argv,
        inventories,
        cells: total,
        base_seed,
        dir: tmp.clone(),
        labels: labels.clone(),
    }));
    let _ = std::fs::remove_dir_all(&tmp);
    let rows = rows?;
    let mut rows = rows;
    rows.sort_by_key(|(k, _)| *k);
    let rows: Vec<Row> = rows.into_iter().map(|(_, r)| r).collect();
    let code = crate::exit::worst(rows.iter().map(|r| r.exit)).unwrap_or(crate::exit::HARNESS);
    finish(&args, &rows, total, code, true)
}

mod shards {
    //! The sharded suite's scheduler: a queue of cells, one worker per cluster, each
    //! running its cells one at a time as child processes in their own process group (so
    //! a terminal's Ctrl-C reaches only the parent, which forwards exactly one SIGTERM).

    use std::collections::{HashSet, VecDeque};
    use std::ffi::OsString;
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio_util::sync::CancellationToken;

    use super::{CaseResult, Row};

    pub struct Plan {
        pub exe: PathBuf,
        pub argv: Vec<OsString>,
        pub inventories: Vec<String>,
        pub cells: usize,
        pub base_seed: u64,
        pub dir: PathBuf,
        /// db, workload, nemesis and seed of every cell, for rows of children that died.
        pub labels: Vec<(String, String, String, u64)>,
    }

    pub async fn run(plan: Plan) -> anyhow::Result<Vec<(usize, Row)>> {
        let plan = Arc::new(plan);
        let queue = Arc::new(Mutex::new((0..plan.cells).collect::<VecDeque<usize>>()));
        let children: Arc<Mutex<HashSet<u32>>> = Arc::default();
        let stop = CancellationToken::new();
        let watcher = tokio::spawn(watch_signals(stop.clone(), children.clone()));
        let mut workers = Vec::new();
        for inv in plan.inventories.clone() {
            let (plan, queue, children, stop) = (plan.clone(), queue.clone(), children.clone(), stop.clone());
            workers.push(tokio::spawn(async move {
                let mut rows = Vec::new();
                loop {
                    if stop.is_cancelled() {
                        break;
                    }
                    let Some(k) = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front() else {
                        break;
                    };
                    match run_child(&plan, &inv, k, &children, &stop).await {
                        Some(row) => rows.push((k, row)),
                        None => break,
                    }
                }
                rows
            }));
        }
        let mut rows = Vec::new();
        for w in workers {
            rows.extend(w.await?);
        }
        watcher.abort();
        Ok(rows)
    }

    /// One cell on one cluster; `None` when it was interrupted before leaving a row.
    async fn run_child(
        plan: &Plan,
        inv: &str,
        k: usize,
        children: &Mutex<HashSet<u32>>,
        stop: &CancellationToken,
    ) -> Option<Row> {
        let out = plan.dir.join(format!("row-{k}.json"));
        let mut cmd = tokio::process::Command::new(&plan.exe);
        cmd.args(&plan.argv)
            .arg("--shard-cell")
            .arg(k.to_string())
            .arg("--shard-inventory")
            .arg(inv)
            .arg("--shard-base-seed")
            .arg(plan.base_seed.to_string())
            .arg("--shard-row-out")
            .arg(&out)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(false);
        let (db, workload, nemesis, seed) = plan.labels[k].clone();
        let crashed = |msg: String| Row {
            cluster: inv.to_string(),
            db: db.clone(),
            workload: workload.clone(),
            nemesis: nemesis.clone(),
            seed,
            seconds: 0.0,
            result: CaseResult::Crashed(msg),
            run_dir: String::new(),
            exit: crate::exit::HARNESS,
        };
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return Some(crashed(format!("cannot start {}: {e}", plan.exe.display()))),
        };
        let pid = child.id();
        if let Some(p) = pid {
            children.lock().unwrap_or_else(|e| e.into_inner()).insert(p);
        }
        let relay_out = child.stdout.take().map(|s| tokio::spawn(relay(s, inv.to_string(), false)));
        let relay_err = child.stderr.take().map(|s| tokio::spawn(relay(s, inv.to_string(), true)));
        let status = child.wait().await;
        for r in [relay_out, relay_err].into_iter().flatten() {
            let _ = r.await;
        }
        if let Some(p) = pid {
            children.lock().unwrap_or_else(|e| e.into_inner()).remove(&p);
        }
        match std::fs::read(&out) {
            Ok(bytes) => match serde_json::from_slice::<Row>(&bytes) {
                Ok(row) => Some(row),
                Err(e) => Some(crashed(format!("unreadable row {}: {e}", out.display()))),
            },
            Err(_) if stop.is_cancelled() => None,
            Err(_) => Some(crashed(match status {
                Ok(s) => format!("the run's process ended ({s}) without a result"),
                Err(e) => format!("waiting for the run's process: {e}"),
            })),
        }
    }

    /// Copies a child's output line by line, prefixed with its cluster.
    async fn relay(r: impl tokio::io::AsyncRead + Unpin, cluster: String, stderr: bool) {
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if stderr {
                eprintln!("[{cluster}] {line}");
            } else {
                outln!("[{cluster}] {line}");
            }
        }
    }

    fn signal_all(children: &Mutex<HashSet<u32>>) {
        for &pid in children.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            // Only our own children, by pid.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
    }

    async fn watch_signals(stop: CancellationToken, children: Arc<Mutex<HashSet<u32>>>) {
        let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
            return;
        };
        for round in 0..2 {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            stop.cancel();
            signal_all(&children);
            if round == 0 {
                eprintln!("\nfaultline: stopping the suite; the running tests heal and save their histories (signal again to abort them)");
            }
        }
    }
}
