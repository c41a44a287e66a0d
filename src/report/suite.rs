//! `faultline suite`: the nightly matrix (Jepsen's test-all). Every combination of db ×
//! workload × nemesis, `--test-count` times each with consecutive seeds, one after the
//! other on the same cluster; a summary of successes / invalid / unknown / crashed, JUnit
//! XML for CI, and a non-zero exit when any run was invalid or crashed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, Table};
use faultline_checkers::Validity;
use tokio_util::sync::CancellationToken;

use super::junit::{self, Case, CaseResult};
use super::summary::verdict_cell;
use crate::test_cmd::TestArgs;

/// Runs in one suite at most: a typo in a list must not start a week of tests.
const SUITE_RUNS_MAX: usize = 10_000;

#[derive(clap::Args, Debug)]
pub struct SuiteArgs {
    /// Write JUnit XML here, one test case per run.
    #[arg(long)]
    pub junit: Option<PathBuf>,
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

struct Row {
    db: String,
    workload: String,
    nemesis: String,
    seed: u64,
    seconds: f64,
    result: CaseResult,
    run_dir: String,
}

pub fn run(mut args: SuiteArgs) -> anyhow::Result<ExitCode> {
    let dbs = list(&args.test.db);
    let workloads = list(&args.test.workload);
    let nemeses = list(&args.test.nemesis.nemesis);
    let nemesis_axis = args.test.nemesis.clone();
    let count = args.test.test_count;
    let base_seed = args.test.seed.unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        t.as_nanos() as u64
    });
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
    // Validate every combination before the first run touches a host.
    let mut plan = Vec::new();
    for w in &workloads {
        for n in &nemeses {
            for d in &dbs {
                for i in 0..count {
                    args.test.db = d.clone();
                    args.test.workload = w.clone();
                    args.test.nemesis = nemesis_axis.for_suite_cell(n)?;
                    args.test.test_count = 1;
                    args.test.seed = Some(base_seed.wrapping_add(u64::from(i)));
                    let cfg = args.test.validate()?;
                    plan.push((d.clone(), w.clone(), n.clone(), cfg));
                }
            }
        }
    }
    crate::test_cmd::init_tracing();
    println!("suite: {} runs, base seed {base_seed}", plan.len());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let interrupt = CancellationToken::new();
    let rows = rt.block_on(async {
        let watcher = {
            let interrupt = interrupt.clone();
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    eprintln!("\nfaultline: interrupted; finishing the current run's teardown");
                    interrupt.cancel();
                }
            })
        };
        let mut rows = Vec::new();
        for (k, (db, workload, nemesis, cfg)) in plan.into_iter().enumerate() {
            if interrupt.is_cancelled() {
                break;
            }
            println!(
                "[{}/{total}] {db} {workload} {nemesis} seed {}",
                k + 1,
                cfg.seed
            );
            let t = Instant::now();
            let (result, run_dir) = match crate::runner::run_test(&cfg, interrupt.clone()).await {
                Ok(o) => {
                    if let Some(r) = &o.report {
                        super::print_summary(r);
                    }
                    let dir = o.run_dir.display().to_string();
                    let res = match (&o.harness_error, o.valid) {
                        (_, Validity::Invalid) => {
                            CaseResult::Invalid(format!("invalid; see {dir}/report.html"))
                        }
                        (Some(e), _) => CaseResult::Crashed(e.clone()),
                        (None, Validity::Unknown) => CaseResult::Unknown(if o.interrupted {
                            "interrupted".into()
                        } else {
                            "a checker could not decide".into()
                        }),
                        (None, Validity::Valid) => CaseResult::Valid,
                    };
                    (res, dir)
                }
                Err(e) => (CaseResult::Crashed(format!("{e:#}")), String::new()),
            };
            rows.push(Row {
                db,
                workload,
                nemesis,
                seed: cfg.seed,
                seconds: t.elapsed().as_secs_f64(),
                result,
                run_dir,
            });
        }
        watcher.abort();
        rows
    });

    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "db", "workload", "nemesis", "seed", "result", "seconds", "run",
    ]);
    let (mut ok, mut invalid, mut unknown, mut crashed) = (0, 0, 0, 0);
    for r in &rows {
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
        t.add_row(vec![
            Cell::new(&r.db),
            Cell::new(&r.workload),
            Cell::new(&r.nemesis),
            Cell::new(r.seed),
            cell,
            Cell::new(format!("{:.0}", r.seconds)),
            Cell::new(&r.run_dir),
        ]);
    }
    println!("{t}");
    println!(
        "{ok} valid, {invalid} invalid, {unknown} unknown, {crashed} crashed, {} not run",
        total - rows.len()
    );
    if let Some(path) = &args.junit {
        let cases: Vec<Case> = rows
            .iter()
            .map(|r| Case {
                class: format!("{}.{}", r.db, r.workload),
                name: format!("{} seed {}", r.nemesis, r.seed),
                seconds: r.seconds,
                result: r.result.clone(),
                output: r.run_dir.clone(),
            })
            .collect();
        super::write_atomic(path, junit::render("faultline-suite", &cases).as_bytes())?;
        println!("junit: {}", path.display());
    }
    Ok(ExitCode::from(if invalid > 0 {
        crate::exit::INVALID
    } else if crashed > 0 || rows.len() < total {
        crate::exit::HARNESS
    } else {
        crate::exit::VALID
    }))
}
