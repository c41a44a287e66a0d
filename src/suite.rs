//! `faultline suite`: the nightly matrix (Jepsen's test-all). Every combination of db ×
//! workload × nemesis, `--test-count` times each with consecutive seeds, one after the
//! other on the same cluster; a summary of successes / invalid / unknown / crashed, JUnit
//! XML for CI, and a non-zero exit when any run was invalid or crashed.

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
    let base_seed = args.test.seed.unwrap_or_else(crate::run_loop::clock_seed);
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
    outln!("suite: {} runs, base seed {base_seed}", plan.len());
    let labels: Vec<(String, String, String)> =
        plan.iter().map(|(d, w, n, _)| (d.clone(), w.clone(), n.clone())).collect();
    let rounds: Vec<Vec<crate::runner::TestConfig>> =
        plan.into_iter().map(|(_, _, _, cfg)| vec![cfg]).collect();
    let finished = crate::run_loop::run(
        rounds,
        |k, total, cfg| {
            let (db, workload, nemesis) = &labels[k];
            outln!("[{}/{total}] {db} {workload} {nemesis} seed {}", k + 1, cfg.seed);
        },
        |f| {
            if let Ok(o) = &f.outcome
                && let Some(r) = &o.report
            {
                crate::report::print_summary(r);
            }
        },
        |_| {},
    )?;
    let rows: Vec<Row> = finished
        .iter()
        .zip(&labels)
        .map(|(f, (db, workload, nemesis))| {
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
                db: db.clone(),
                workload: workload.clone(),
                nemesis: nemesis.clone(),
                seed: f.cfg.seed,
                seconds: f.seconds,
                result,
                run_dir,
            }
        })
        .collect();

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
                name: format!("{} seed {}", r.nemesis, r.seed),
                seconds: r.seconds,
                result: r.result.clone(),
                output: r.run_dir.clone(),
            })
            .collect();
        crate::store::write_atomic(path, junit::render("faultline-suite", &cases).as_bytes())?;
        outln!("junit: {}", path.display());
    }
    // The same mapping as `test`: a run that was not run (interrupted) is not valid.
    let mut code = crate::run_loop::exit_code(&finished);
    if rows.len() < total {
        code = crate::exit::worst([code, crate::exit::UNKNOWN]).unwrap_or(code);
    }
    Ok(ExitCode::from(code))
}
