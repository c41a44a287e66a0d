//! Runs side by side: throughput, latency quantiles, recovery per fault kind (median / p99
//! / max over that kind's windows), elections, verdicts. The Paxos-vs-Raft question is
//! answered by running the same seed and schedule against both and comparing here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, Table};
use faultline_checkers::Validity;
use faultline_checkers::perf::{self, PerfReport};
use faultline_checkers::recovery::{
    self, FamilySummary, RecoveryOptions, RecoveryReport, fault_windows,
};

use super::run::RunData;
use super::{fmt_ms, fmt_opt_ms, plots, validity_word};

/// One run's figures for comparison.
pub struct RunFigures {
    pub dir: PathBuf,
    pub label: String,
    pub db: String,
    pub seed: Option<String>,
    pub valid: Validity,
    pub perf: PerfReport,
    pub recovery: RecoveryReport,
    /// The throughput plot, for the HTML comparison.
    pub throughput_svg: Option<String>,
}

/// Loads and analyses each run. The verdict is `results.json`'s when present (the
/// checkers' word), else unknown: comparing does not re-run the correctness checkers.
pub fn load(dirs: &[PathBuf]) -> anyhow::Result<Vec<RunFigures>> {
    let mut out = Vec::new();
    for dir in dirs {
        let run = RunData::load(dir)?;
        let opts = RecoveryOptions {
            election_timeout_ms_min: run.election_timeout_ms_min(),
            ..Default::default()
        };
        let perf_r = perf::analyze_digest(&run.digest);
        let rec = recovery::analyze_digest(&run.digest, &opts);
        let valid = run
            .results_raw
            .get("valid")
            .and_then(|v| serde_json::from_value::<Validity>(v.clone()).ok())
            .unwrap_or_else(|| {
                if run.results.is_empty() {
                    Validity::Unknown
                } else {
                    run.results
                        .iter()
                        .fold(Validity::Valid, |v, r| v.and(r.valid))
                }
            });
        let svg = plots::throughput(
            &perf_r.throughput,
            &fault_windows(&run.digest.nemesis),
            run.digest.end_ns,
        )
        .ok();
        let stamp = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push(RunFigures {
            label: format!("{} {}", run.db(), stamp),
            db: run.db(),
            seed: run.seed(),
            dir: dir.clone(),
            valid,
            perf: perf_r,
            recovery: rec,
            throughput_svg: svg,
        });
    }
    Ok(out)
}

/// Rows of the comparison: a metric name and one cell per run.
pub fn rows(runs: &[RunFigures]) -> Vec<(String, Vec<String>)> {
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let mut add = |name: &str, f: &dyn Fn(&RunFigures) -> String| {
        rows.push((name.to_string(), runs.iter().map(f).collect()));
    };
    add("db", &|r| r.db.clone());
    add("seed", &|r| r.seed.clone().unwrap_or_else(|| "?".into()));
    add("verdict", &|r| validity_word(r.valid).to_string());
    add("duration", &|r| fmt_ms(r.perf.duration_ms));
    add("ok ops", &|r| r.perf.ops.ok.to_string());
    add("fail / info", &|r| {
        format!("{} / {}", r.perf.ops.fail, r.perf.ops.info)
    });
    add("throughput", &|r| format!("{:.1} ok/s", r.perf.ok_per_s));
    for (name, pick) in [
        (
            "latency p50",
            (|q: &perf::Quantiles| q.p50_ms) as fn(&perf::Quantiles) -> f64,
        ),
        ("latency p90", |q| q.p90_ms),
        ("latency p99", |q| q.p99_ms),
        ("latency p99.9", |q| q.p999_ms),
        ("latency max", |q| q.max_ms),
    ] {
        add(name, &|r| {
            r.perf
                .ok_latency
                .as_ref()
                .map(|q| fmt_ms(pick(q)))
                .unwrap_or_else(|| "—".into())
        });
    }
    add("fault windows", &|r| r.recovery.windows.len().to_string());
    add("elections", &|r| r.recovery.elections_total.to_string());
    let families: BTreeSet<String> = runs
        .iter()
        .flat_map(|r| r.recovery.families.iter().map(|f| f.family.clone()))
        .collect();
    for fam in families {
        let get = |r: &RunFigures| -> Option<FamilySummary> {
            r.recovery
                .families
                .iter()
                .find(|f| f.family == fam)
                .cloned()
        };
        add(&format!("{fam}: windows (unrecovered)"), &|r| {
            get(r)
                .map(|f| format!("{} ({})", f.windows, f.unrecovered))
                .unwrap_or_else(|| "—".into())
        });
        add(&format!("{fam}: unavailable median"), &|r| {
            get(r)
                .map(|f| fmt_opt_ms(f.unavailability_ms_median))
                .unwrap_or_else(|| "—".into())
        });
        add(&format!("{fam}: unavailable p99"), &|r| {
            get(r)
                .map(|f| fmt_opt_ms(f.unavailability_ms_p99))
                .unwrap_or_else(|| "—".into())
        });
        add(&format!("{fam}: unavailable max"), &|r| {
            get(r)
                .map(|f| fmt_opt_ms(f.unavailability_ms_max))
                .unwrap_or_else(|| "—".into())
        });
        add(
            &format!("{fam}: unavailable median × election timeout"),
            &|r| match (
                get(r).and_then(|f| f.unavailability_ms_median),
                r.recovery.election_timeout_ms_min,
            ) {
                (Some(u), Some(et)) if et > 0.0 => format!("{:.1}×", u / et),
                _ => "—".into(),
            },
        );
        add(&format!("{fam}: elections"), &|r| {
            get(r)
                .map(|f| f.elections_total.to_string())
                .unwrap_or_else(|| "—".into())
        });
        add(&format!("{fam}: first write after heal (median)"), &|r| {
            let v: Vec<f64> = r
                .recovery
                .windows
                .iter()
                .filter(|w| w.family == fam)
                .filter_map(|w| w.first_write_after_heal_ms)
                .collect();
            fmt_opt_ms(recovery::quantile(&v, 0.5))
        });
    }
    rows
}

pub fn render_table(runs: &[RunFigures]) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    let mut header = vec![Cell::new("")];
    header.extend(runs.iter().map(|r| Cell::new(&r.label)));
    t.set_header(header);
    for (name, cells) in rows(runs) {
        let mut row = vec![Cell::new(name)];
        row.extend(cells.into_iter().map(Cell::new));
        t.add_row(row);
    }
    t.to_string()
}

pub fn render_html(runs: &[RunFigures]) -> String {
    super::html::compare_page(runs)
}

/// Prints the comparison and writes it as HTML to `html_out`.
pub fn compare(dirs: &[PathBuf], html_out: &Path) -> anyhow::Result<Vec<RunFigures>> {
    let runs = load(dirs)?;
    outln!("{}", render_table(&runs));
    super::write_atomic(html_out, render_html(&runs).as_bytes())?;
    outln!("comparison: {}", html_out.display());
    Ok(runs)
}

/// The end of `faultline test --db raft,paxos`: compares the runs just made (same seed,
/// same schedule) and writes `<store>/<test>/compare-<UTC stamp>.html`. A comparison that
/// fails is reported, not fatal: the runs and their verdicts stand on their own.
pub fn after_test(store: &Path, name: &str, dirs: &[PathBuf]) {
    if dirs.len() < 2 {
        return;
    }
    let stamp = dirs
        .iter()
        .filter_map(|d| d.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .max()
        .unwrap_or_default();
    let out = store.join(name).join(format!("compare-{stamp}.html"));
    outln!();
    if let Err(e) = compare(dirs, &out) {
        eprintln!("faultline: comparing the runs failed: {e:#}");
    }
}
