//! `faultline test`, as a library: [`run_test`] takes a validated [`TestConfig`] through
//! the whole lifecycle and returns a [`RunOutcome`]. The CLI (`test_cmd`), `suite` and
//! `compare` all call it.
//!
//! Lifecycle, each step timed and logged:
//! 1. connect to every host; pre-flight (sudo, tools, the node image's architecture and
//!    glibc), before anything on a host is touched;
//! 2. heal faults and stop a node left by an earlier run; check the node's ports are free;
//! 3. deploy: install the node image, write configs, start nodes, wait for a leader;
//! 4. run: client workers, the nemesis and the status monitor, for the time limit;
//! 5. heal, wait the recovery period, read every touched key on every node;
//! 6. collect node logs, stop the nodes, check the history, write `results.json`.

pub mod clients;
pub mod history;
pub mod monitor;
pub mod nodedb;
pub mod progress;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use faultline_checkers::{CheckResult, Validity};
use faultline_workloads::{GenOpts, Outcome};
use serde::Serialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::control::{Control, ControlOptions};
use crate::deploy;
use crate::nemesis_remote::InventoryCluster;
use crate::store::{self, RunDir};
use history::Recorder;

pub use crate::db::Db;

/// Everything a run needs, validated (see `test_cmd` for the flags).
#[derive(Debug, Clone)]
pub struct TestConfig {
    pub name: String,
    /// The inventory argument as given (a path or a local cluster's name).
    pub inventory: String,
    /// The inventory it names, read and checked up front.
    pub hosts: crate::inventory::Inventory,
    /// The database(s), knobs validated; `run_test` runs `dbs[0]`, callers loop for
    /// comparisons.
    pub dbs: Vec<crate::db::DbSettings>,
    pub workload: String,
    /// The transactions' shape; `Some` exactly for a transactional workload.
    pub txn: Option<faultline_workloads::txn::TxnOpts>,
    /// Nemesis families; empty for none.
    pub nemesis: Vec<String>,
    pub nemesis_interval_s: f64,
    pub nemesis_targets: Option<String>,
    pub nemesis_shapes: Option<String>,
    /// The validated nemesis schedule with every family option; `None` for no nemesis.
    pub nemesis_config: Option<faultline_nemesis::NemesisConfig>,
    pub concurrency: usize,
    pub rate_per_s: f64,
    pub time_limit: Duration,
    pub recovery: Duration,
    pub op_timeout: Duration,
    pub seed: u64,
    pub test_count: u32,
    pub leave_db_running: bool,
    /// Objectives that fail the run when breached (see `slo`).
    pub slos: Vec<crate::slo::Slo>,
    /// The regression gate against earlier runs (see `baseline`).
    pub baseline: Option<crate::baseline::Baseline>,
    pub store: PathBuf,
}

impl TestConfig {
    /// The same test against one database.
    pub fn for_db(&self, db: &crate::db::DbSettings) -> TestConfig {
        TestConfig {
            dbs: vec![db.clone()],
            ..self.clone()
        }
    }

    /// The database's registry name.
    pub fn db(&self) -> &str {
        self.dbs.first().map(|d| d.db).unwrap_or("raft")
    }

    /// The options as `test.json` records them: every value resolved, units in the names.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "inventory": self.inventory,
            "dbs": self.dbs.iter().map(|d| d.db).collect::<Vec<_>>(),
            "db-settings": self.dbs.first(),
            "workload": self.workload,
            "txn": self.txn,
            "nemesis": self.nemesis,
            "nemesis_interval_s": self.nemesis_interval_s,
            "nemesis_targets": self.nemesis_targets,
            "nemesis_shapes": self.nemesis_shapes,
            "concurrency": self.concurrency,
            "rate_per_s": self.rate_per_s,
            "time_limit_s": self.time_limit.as_secs_f64(),
            "recovery_s": self.recovery.as_secs_f64(),
            "op_timeout_ms": self.op_timeout.as_millis() as u64,
            "seed": self.seed,
            "test_count": self.test_count,
            "leave_db_running": self.leave_db_running,
            "store": self.store,
        })
    }

    fn gen_opts(&self) -> GenOpts {
        GenOpts {
            seed: self.seed,
            concurrency: self.concurrency,
            rate_per_s: self.rate_per_s,
        }
    }
}

/// What one run produced.
#[derive(Debug, Clone, Serialize)]
pub struct RunOutcome {
    pub run_dir: PathBuf,
    pub valid: Validity,
    pub results: Vec<CheckResult>,
    /// Set when the run could not complete (SSH, setup); the verdict is then `Unknown`.
    pub harness_error: Option<String>,
    pub interrupted: bool,
    /// Counts and figures of the run (ops, skipped arrivals, response times, phases).
    pub stats: Value,
    /// The run's report (perf, recovery, node logs), when it could be written; `valid` and
    /// `results` above are then the report's.
    #[serde(skip)]
    pub report: Option<crate::report::ReportSummary>,
}

impl RunOutcome {
    /// 0 valid, 1 invalid, 2 unknown, 3 harness error.
    pub fn exit_code(&self) -> u8 {
        if self.harness_error.is_some() && self.valid != Validity::Invalid {
            crate::exit::HARNESS
        } else {
            crate::exit::code(self.valid)
        }
    }
}

/// Timed lifecycle steps, for the log and `results.json`.
#[derive(Default)]
struct Phases {
    done: Vec<(String, f64)>,
}

impl Phases {
    async fn time<T, F: std::future::Future<Output = T>>(&mut self, name: &str, f: F) -> T {
        progress::phase(name);
        tracing::info!(phase = name, "begin");
        let t = Instant::now();
        let out = f.await;
        let s = t.elapsed().as_secs_f64();
        tracing::info!(phase = name, seconds = s, "end");
        self.done.push((name.to_string(), s));
        out
    }

    fn json(&self) -> Value {
        Value::Array(
            self.done
                .iter()
                .map(|(n, s)| json!({"phase": n, "seconds": s}))
                .collect(),
        )
    }
}

/// Runs one test against `cfg.db()`. Errors only when the run directory itself cannot be
/// made; any later failure is reported in the outcome with what was kept.
pub async fn run_test(cfg: &TestConfig, interrupt: CancellationToken) -> anyhow::Result<RunOutcome> {
    let workload = faultline_workloads::lookup_with(&cfg.workload, cfg.txn.as_ref())
        .ok_or_else(|| crate::exit::usage(format!("unknown workload {:?}", cfg.workload)))?;
    let inventory = cfg.hosts.clone();
    let settings = cfg
        .dbs
        .first()
        .ok_or_else(|| crate::exit::usage("no database to test"))?;
    let entry = crate::db::lookup(settings.db)
        .ok_or_else(|| crate::exit::usage(format!("unknown database {:?}", settings.db)))?;
    let db = (entry.open)(
        settings,
        &inventory,
        &crate::db::OpenOptions {
            op_timeout: cfg.op_timeout,
        },
    );
    let run = RunDir::create(&cfg.store, &cfg.name)?;
    // History time counts from here until the cluster is ready (see `reset_epoch`);
    // `started` in test.json is always the same instant as history time zero.
    let start = Instant::now();
    let started_wall = store::rfc3339(std::time::SystemTime::now());
    crate::logging::log_to(Some(&run.file(store::LOG_FILE)));
    let test_json = json!({
        "name": cfg.name,
        "started": started_wall,
        "nemesis": if cfg.nemesis.is_empty() { "none".to_string() } else { cfg.nemesis.join(",") },
        "faultline-version": store::VERSION,
        "git-commit": store::GIT_COMMIT,
        "seed": cfg.seed,
        "db": cfg.db(),
        "workload": cfg.workload,
        "checkers": workload.checkers(),
        "db-config": db.describe(),
        "nodes": inventory.node_names(),
        "inventory": inventory.path.display().to_string(),
        "inventory-digest": store::digest_file(&inventory.path).unwrap_or_else(|e| format!("unavailable: {e}")),
        "options": cfg.to_json(),
        "slos": cfg.slos.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "baseline": cfg.baseline,
    });
    run.write_json(store::TEST_FILE, &test_json)?;
    tracing::info!(dir = %run.path.display(), seed = cfg.seed, db = cfg.db(), "run begins");
    progress::note(&format!("run {} (seed {})", run.path.display(), cfg.seed));

    let (rec, writer) = Recorder::open(&run.file(store::HISTORY_FILE), start).await?;
    let mut phases = Phases::default();
    let mut stats = serde_json::Map::new();
    let result = lifecycle(
        cfg,
        &*workload,
        &inventory,
        db.clone(),
        &run,
        &rec,
        &interrupt,
        &mut phases,
        &mut stats,
    )
    .await;
    let (harness_error, control) = match result {
        Ok(c) => (None, Some(c)),
        Err((e, c)) => {
            tracing::error!(error = %format!("{e:#}"), "run aborted");
            (Some(format!("{e:#}")), c)
        }
    };

    // Teardown happens whatever went wrong above.
    if let Some(control) = &control {
        let errs = phases
            .time("collect-logs", deploy::collect_logs(control, db.layout(), &run))
            .await;
        for e in errs {
            tracing::warn!(error = %e, "log collection");
        }
        if !cfg.leave_db_running {
            match phases.time("stop-nodes", deploy::stop(control, db.layout())).await {
                Ok(notes) => tracing::info!(?notes, "nodes stopped"),
                Err(e) => tracing::error!(error = %format!("{e:#}"), "stopping nodes"),
            }
            // With the nodes stopped, a fixture's removal restarts nothing. A run whose
            // families have none set none up (the start's heal removed any an earlier run
            // left), so it skips the round trip to every host.
            let fixtures = cfg.nemesis_config.as_ref().is_some_and(|n| {
                n.families
                    .iter()
                    .any(|f| faultline_nemesis::lookup(f).is_ok_and(|p| p.fixture.is_some()))
            });
            if fixtures {
                let cx = InventoryCluster {
                    control: control.clone(),
                    db: db.clone(),
                    start_command: None,
                };
                let report = phases.time("remove-fixtures", faultline_nemesis::heal_fixtures(&cx)).await;
                for e in &report.errors {
                    tracing::error!(error = %e, "removing fixtures");
                }
            }
        }
        control.close().await;
    }
    rec.close().await;
    let events = writer.finish().await?;
    stats.insert("history-events".into(), json!(events));

    let interrupted = interrupt.is_cancelled();
    stats.insert("phases".into(), phases.json());
    let stats = Value::Object(stats);
    let facts = crate::verdict::RunFacts {
        harness_error: harness_error.clone(),
        interrupted,
        unfinished: false,
    };
    // Judged once, here; the report only draws what this found.
    let data = crate::report::RunData::load(&run.path)?;
    let analysis = crate::verdict::analyze(&data, None, &facts)?;
    crate::verdict::write_results(&run.path, &analysis, &facts, &stats)?;
    let mut outcome = RunOutcome {
        run_dir: run.path.clone(),
        valid: analysis.valid,
        results: analysis.results.clone(),
        harness_error,
        interrupted,
        stats,
        report: None,
    };
    match crate::report::write_report(&data, analysis) {
        Ok(summary) => outcome.report = Some(summary),
        Err(e) => tracing::error!(error = %format!("{e:#}"), "writing the run report"),
    }
    crate::logging::log_to(None);
    Ok(outcome)
}

type Failure = (anyhow::Error, Option<Control>);

/// How long past the run's planned end a fixture may outlive a controller that died.
const FIXTURE_EXPIRY_SLACK: Duration = Duration::from_secs(600);

#[allow(clippy::too_many_arguments)]
async fn lifecycle(
    cfg: &TestConfig,
    workload: &dyn faultline_workloads::Workload,
    inventory: &crate::inventory::Inventory,
    db: Arc<dyn crate::db::Database>,
    run: &RunDir,
    rec: &Recorder,
    interrupt: &CancellationToken,
    phases: &mut Phases,
    stats: &mut serde_json::Map<String, Value>,
) -> Result<Control, Failure> {
    let control = phases
        .time("connect", Control::connect(inventory, &ControlOptions::default()))
        .await
        .context("cannot connect to the cluster")
        .map_err(|e| (e, None))?;
    let c = control.clone();
    let fail = move |e: anyhow::Error| (e, Some(c.clone()));
    macro_rules! step {
        ($name:expr, $fut:expr) => {{
            if interrupt.is_cancelled() {
                return Err(fail(anyhow::anyhow!("interrupted before {}", $name)));
            }
            tokio::select! {
                r = phases.time($name, $fut) => r.map_err(|e| fail(e))?,
                _ = interrupt.cancelled() => return Err(fail(anyhow::anyhow!("interrupted during {}", $name))),
            }
        }};
    }

    let layout = db.layout();
    // A node the nemesis kills is restarted with this run's knobs.
    let nemesis_cluster: Arc<dyn faultline_nemesis::Cluster> = Arc::new(InventoryCluster {
        control: control.clone(),
        db: db.clone(),
        start_command: None,
    });
    // Pre-flight first: the heal below needs the same sudo and tools, and a broken sudo is
    // clearer from pre-flight, naming the host, than from a failed heal.
    let mut tools = db.tools();
    if let Some(n) = &cfg.nemesis_config {
        tools.extend(faultline_nemesis::registry::tools_for(n.families.iter().map(String::as_str)));
    }
    let image = db.upload_image().map_err(&fail)?;
    step!("preflight", deploy::preflight(&control, &tools, image.as_ref()));
    step!("heal-previous", async {
        let report = faultline_nemesis::heal(&*nemesis_cluster, false).await;
        for e in &report.errors {
            tracing::warn!(error = %e, "healing leftovers");
        }
        for (node, ids) in &report.healed {
            if !ids.is_empty() {
                tracing::info!(node = %node, healed = ?ids, "healed faults left by an earlier run");
            }
        }
        let notes = deploy::stop(&control, layout).await?;
        for (node, note) in notes {
            if note != "not running" {
                tracing::info!(node = %node, note = %note, "stopped a node left running");
            }
        }
        anyhow::Ok(())
    });
    step!("ports-free", deploy::ports_free(&control, layout));
    step!("install", db.install(&control));
    step!("configure", db.configure(&control));
    if let Some(n) = &cfg.nemesis_config {
        // Fixtures (lazyfs under the node's state) go on before the nodes start and stay
        // until they stop; journaled to expire a while after the run would have ended.
        let expiry = cfg.time_limit + cfg.recovery + FIXTURE_EXPIRY_SLACK;
        let families = n.families.clone();
        let cx = nemesis_cluster.clone();
        step!("fixtures", async move {
            let set_up = faultline_nemesis::setup_fixtures(&*cx, &families, expiry).await?;
            if !set_up.is_empty() {
                tracing::info!(fixtures = ?set_up, "fixtures set up on every host");
            }
            anyhow::Ok(())
        });
    }
    step!("start-nodes", deploy::start(&control, &*db));
    step!("wait-ready", nodedb::wait_ready(&*db, Duration::from_secs(30)));
    if rec.reset_epoch().await {
        let path = run.file(store::TEST_FILE);
        let restamp = || -> anyhow::Result<()> {
            let mut t: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
            t["started"] = json!(store::rfc3339(std::time::SystemTime::now()));
            run.write_json(store::TEST_FILE, &t)
        };
        restamp().map_err(&fail)?;
    }
    step!(
        "setup",
        setup(
            db.clone(),
            workload,
            rec.clone(),
            cfg.op_timeout
        )
    );

    // The run proper: clients, nemesis and monitor, until the time limit or an interrupt.
    let stop_nemesis = CancellationToken::new();
    let nemesis = nodedb::spawn_nemesis(cfg, nemesis_cluster.clone(), rec.clone(), stop_nemesis.clone())
        .map_err(&fail)?;
    let stop_monitor = CancellationToken::new();
    let monitor = tokio::spawn(monitor::run(db.clone(), rec.clone(), stop_monitor.clone()));
    let progress = progress::spawn(rec.clone(), cfg.time_limit.as_secs_f64());
    let client_cancel = interrupt.child_token();
    let report = phases
        .time(
            "run",
            clients::run(clients::ClientPhase {
                db: db.clone(),
                workload,
                gen_opts: cfg.gen_opts(),
                time_limit: cfg.time_limit,
                op_timeout: cfg.op_timeout,
                recorder: rec.clone(),
                cancel: client_cancel,
            }),
        )
        .await;
    stop_nemesis.cancel();
    if let Some(n) = nemesis {
        match phases.time("heal", n).await {
            Ok(summary) => {
                stats.insert("nemesis".into(), summary);
            }
            Err(e) => tracing::error!(error = %e, "nemesis task failed"),
        }
    }
    progress.abort();
    stats.insert("offered".into(), json!(report.offered));
    stats.insert("skipped".into(), json!(report.skipped));
    stats.insert("unsent".into(), json!(report.unsent));
    stats.insert("keys".into(), json!(report.keys.len()));
    let h = &report.response_us;
    stats.insert(
        "response-time-ms".into(),
        json!({
            "note": "from scheduled arrival to completion, queueing included",
            "count": h.len(),
            "p50": h.value_at_quantile(0.5) as f64 / 1000.0,
            "p99": h.value_at_quantile(0.99) as f64 / 1000.0,
            "max": h.max() as f64 / 1000.0,
        }),
    );

    if !interrupt.is_cancelled() {
        let recovery = cfg.recovery;
        phases
            .time("recover", async {
                tokio::select! { _ = tokio::time::sleep(recovery) => {}, _ = interrupt.cancelled() => {} }
            })
            .await;
        let ops = workload.final_reads(&report.keys);
        let reads = phases
            .time(
                "final-reads",
                clients::final_reads(
                    db.clone(),
                    ops,
                    rec.clone(),
                    report.max_process + 1,
                    cfg.op_timeout,
                    interrupt.clone(),
                ),
            )
            .await;
        let bad = clients::final_read_disagreements(&reads);
        stats.insert(
            "final-reads".into(),
            json!({"keys": report.keys.len(), "nodes": reads.len(), "disagreements": bad.len(), "examples": bad.iter().take(10).collect::<Vec<_>>()}),
        );
    }
    stop_monitor.cancel();
    if let Ok(samples) = monitor.await {
        stats.insert("monitor-samples".into(), json!(samples));
    }
    if interrupt.is_cancelled() {
        return Err(fail(anyhow::anyhow!("interrupted during the run")));
    }
    Ok(control)
}

/// Runs the workload's setup ops until each succeeds (bounded).
async fn setup(
    db: Arc<dyn Db>,
    workload: &dyn faultline_workloads::Workload,
    rec: Recorder,
    timeout: Duration,
) -> anyhow::Result<()> {
    let ops = workload.setup();
    if ops.is_empty() {
        return Ok(());
    }
    let nodes = db.nodes();
    // Setup uses process numbers far above the workers' so they never collide.
    let mut process = 1_000_000u64;
    let cancel = CancellationToken::new();
    for op in ops {
        let mut last = String::new();
        let mut done = false;
        for attempt in 0..20u64 {
            let node = &nodes[attempt as usize % nodes.len()];
            let mut kv = db.client(node, process);
            match clients::invoke_once(&rec, kv.as_mut(), process, &op, node, timeout, &cancel).await {
                Outcome::Ok(_) => {
                    done = true;
                    break;
                }
                Outcome::Fail(e) => last = e,
                Outcome::Info(e) => {
                    last = e;
                    process += 1;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        if !done {
            anyhow::bail!("setup op {} on {} never succeeded: {last}", op.f.name(), op.key);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
