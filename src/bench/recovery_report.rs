//! The figures of `bench recovery`: per-trial measurements, their summaries (quantiles and
//! a bootstrap confidence interval of the median, with censored trials kept as "at least
//! the window"), a CDF per scenario as SVG, a self-contained HTML page, JSON and a terminal
//! table.
//!
//! A censored trial (no recovery within its window) has an unknown figure that is at least
//! the window, which is larger than every uncensored figure. Order statistics therefore
//! stay exact: the trial sorts last, and a quantile that lands on it is reported as
//! "≥ window". The mean cannot be computed that way, so it is taken over the uncensored
//! trials only and the count of censored trials is always shown beside it.

use std::fmt::Write as _;

use plotters::prelude::*;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// Bootstrap resamples for the confidence interval of the median.
pub const BOOTSTRAP_RESAMPLES: usize = 2000;
/// The bootstrap's seed: the same trials always give the same interval.
pub const BOOTSTRAP_SEED: u64 = 0x5eed_f16;

/// One trial's measurements.
#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    pub n: usize,
    /// Nodes the fault acted on.
    pub victims: Vec<String>,
    pub leader_before: String,
    pub term_before: u64,
    /// Delay from "stable" to the fault, uniform within one heartbeat interval.
    pub offset_ms: f64,
    /// Longest stretch without a successful write that overlaps the fault; `None` when
    /// censored.
    pub unavailability_ms: Option<f64>,
    /// Fault (completion of its start) to the first status sample in which a majority of
    /// the nodes name the same leader in the same term; `None` when censored.
    pub leader_ms: Option<f64>,
    pub leader_after: Option<String>,
    /// Terms (ballots) the recovery used: the agreed term after it minus the one before.
    /// For Raft every candidacy costs one. For Multi-Paxos the figure is the ballot round,
    /// and rounds belong to one proposer each (round mod n is the proposer's position), so
    /// a single election moves it by 1 to n: count elections with [`Trial::elections`].
    pub terms_used: Option<u64>,
    /// Elections won from the stable leadership before the fault until the end of the
    /// measurement, from the nodes' own counters (the victims of a kill excluded).
    pub elections: Option<u64>,
    pub failed: u64,
    pub indeterminate: u64,
    /// Censored: not recovered (or, for a replacement, not caught up) within the window.
    pub censored: bool,
    /// A replacement's catch-up and the throughput meanwhile (scenario replace-node).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<CatchUp>,
    /// Leadership did not settle before this trial until the nodes that were down were
    /// started again.
    pub restarted_before: bool,
    /// Where the trial's wall time went: waiting for stability (for a kill or a pause, at
    /// the same time as the previous trial's heal), applying the fault, measuring, healing
    /// (which overlaps the next trial's stability wait for a kill or a pause).
    pub phases_ms: [f64; 4],
    /// The apply split at the host's clock reading after its work: invocation to done on
    /// the host (SSH channel, remote shell, the fault itself), and done to the SSH call's
    /// return. `None` when the host printed no clock.
    pub apply_ms: Option<[f64; 2]>,
}

/// A replacement's catch-up: the Omni-Paxos paper's reconfiguration figures.
#[derive(Debug, Clone, Serialize)]
pub struct CatchUp {
    /// The leader's applied index when the replacement began: what the fresh node must hold.
    pub target_index: u64,
    /// The old process's last answer to the first status sample in which the fresh one is a
    /// voter in the leader's configuration and its own, holding `target_index`; `None` when
    /// censored.
    pub caught_up_ms: Option<f64>,
    /// `None` when no write succeeded before the replacement, so there is no baseline.
    pub dip: Option<Dip>,
}

/// Successful writes per second during a replacement against the second before it, in
/// bins (see `throughput_dip` in the bench).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dip {
    pub baseline_writes_per_s: f64,
    /// The worst bin's shortfall against the baseline (0 when no bin fell short).
    pub depth_pct: f64,
    /// From the first bin below the threshold to the end of the last one (0 when none).
    pub duration_ms: f64,
}

/// A cell's catch-up figures over its trials. The dip's depth is a share, not a time, so it
/// is summarised apart from the [`Summary`] of durations.
#[derive(Debug, Clone, Serialize)]
pub struct CatchUpSummary {
    pub caught_up: Summary,
    pub dip_duration: Summary,
    pub dip_depth_median_pct: Option<f64>,
    pub dip_depth_median_ci95_pct: Option<(f64, f64)>,
    pub dip_depth_max_pct: Option<f64>,
    /// Trials without a baseline (no write succeeded in the second before), left out of
    /// the dip figures.
    pub no_baseline: usize,
}

impl CatchUpSummary {
    fn of(trials: &[Trial], window_ms: f64) -> Option<CatchUpSummary> {
        let c: Vec<&CatchUp> = trials.iter().filter_map(|t| t.catch_up.as_ref()).collect();
        if c.is_empty() {
            return None;
        }
        let caught: Vec<Option<f64>> = c.iter().map(|c| c.caught_up_ms).collect();
        let dips: Vec<&Dip> = c.iter().filter_map(|c| c.dip.as_ref()).collect();
        let depth: Vec<Option<f64>> = dips.iter().map(|d| Some(d.depth_pct)).collect();
        let duration: Vec<Option<f64>> = dips.iter().map(|d| Some(d.duration_ms)).collect();
        let d = summarize(&depth, 100.0);
        Some(CatchUpSummary {
            caught_up: summarize(&caught, window_ms),
            dip_duration: summarize(&duration, window_ms),
            dip_depth_median_pct: d.median_ms,
            dip_depth_median_ci95_pct: d.median_ci95_ms.and_then(|(lo, hi)| Some((lo, hi?))),
            dip_depth_max_pct: d.max_ms,
            no_baseline: c.len() - dips.len(),
        })
    }
}

/// Summary of one figure over the trials of one cell. Quantiles are nearest-rank over all
/// trials with censored ones sorted last; `None` means the quantile is a censored trial
/// ("≥ window").
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub trials: usize,
    pub censored: usize,
    pub window_ms: f64,
    pub min_ms: Option<f64>,
    pub median_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// Over uncensored trials only.
    pub mean_uncensored_ms: Option<f64>,
    /// 95% percentile-bootstrap interval of the median (upper end `None` = "≥ window").
    pub median_ci95_ms: Option<(f64, Option<f64>)>,
}

/// Nearest-rank quantile of values sorted ascending, `None` (censored) sorting last: the
/// smallest value with at least a share `q` of the trials at or below it.
pub fn quantile(sorted: &[Option<f64>], q: f64) -> Option<f64> {
    sorted[faultline_checkers::recovery::nearest_rank(sorted.len(), q)?]
}

/// Sorts figures ascending with censored trials last.
pub fn sort_censored(values: &[Option<f64>]) -> Vec<Option<f64>> {
    let mut v = values.to_vec();
    v.sort_by(|a, b| match (a, b) {
        (Some(x), Some(y)) => x.total_cmp(y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    v
}

/// 95% percentile-bootstrap interval of the median, with a fixed seed. A resample's median
/// may be censored; it then sorts above every finite median.
pub fn median_ci95(values: &[Option<f64>], seed: u64) -> Option<(f64, Option<f64>)> {
    if values.is_empty() {
        return None;
    }
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let mut medians = Vec::with_capacity(BOOTSTRAP_RESAMPLES);
    let mut sample = vec![None; values.len()];
    for _ in 0..BOOTSTRAP_RESAMPLES {
        for s in sample.iter_mut() {
            *s = values[rng.random_range(0..values.len())];
        }
        medians.push(quantile(&sort_censored(&sample), 0.5));
    }
    let medians = sort_censored(&medians);
    let lo = quantile(&medians, 0.025)?;
    Some((lo, quantile(&medians, 0.975)))
}

pub fn summarize(values: &[Option<f64>], window_ms: f64) -> Summary {
    let sorted = sort_censored(values);
    let finite: Vec<f64> = sorted.iter().flatten().copied().collect();
    Summary {
        trials: values.len(),
        censored: values.len() - finite.len(),
        window_ms,
        min_ms: sorted.first().copied().flatten(),
        median_ms: quantile(&sorted, 0.5),
        p90_ms: quantile(&sorted, 0.9),
        p99_ms: quantile(&sorted, 0.99),
        max_ms: sorted.last().copied().flatten(),
        mean_uncensored_ms: (!finite.is_empty()).then(|| finite.iter().sum::<f64>() / finite.len() as f64),
        median_ci95_ms: median_ci95(values, BOOTSTRAP_SEED),
    }
}

/// The empirical CDF as steps: (value, share of *all* trials at or below it). Censored
/// trials never arrive, so the curve ends below 1 by their share.
pub fn cdf(values: &[Option<f64>]) -> Vec<(f64, f64)> {
    let n = values.len() as f64;
    let finite: Vec<f64> = sort_censored(values).into_iter().flatten().collect();
    finite
        .iter()
        .enumerate()
        .map(|(i, v)| (*v, (i + 1) as f64 / n))
        .collect()
}

/// One database × knob setting × scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub db: String,
    /// The knob setting, e.g. `election_timeout_ms=150-300 heartbeat_ms=75`.
    pub setting: String,
    pub scenario: String,
    pub window_ms: f64,
    pub unavailability: Summary,
    pub leader: Summary,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<CatchUpSummary>,
    pub failed: u64,
    pub indeterminate: u64,
    pub wall_s: f64,
    /// Trials run but not counted: leadership moved on its own before the fault struck.
    pub void_trials: usize,
    pub trials: Vec<Trial>,
}

impl Cell {
    pub fn new(db: &str, setting: &str, scenario: &str, window_ms: f64, trials: Vec<Trial>, wall_s: f64) -> Cell {
        let unav: Vec<Option<f64>> = trials.iter().map(|t| t.unavailability_ms).collect();
        let lead: Vec<Option<f64>> = trials.iter().map(|t| t.leader_ms).collect();
        Cell {
            db: db.to_string(),
            setting: setting.to_string(),
            scenario: scenario.to_string(),
            window_ms,
            unavailability: summarize(&unav, window_ms),
            leader: summarize(&lead, window_ms),
            catch_up: CatchUpSummary::of(&trials, window_ms),
            failed: trials.iter().map(|t| t.failed).sum(),
            indeterminate: trials.iter().map(|t| t.indeterminate).sum(),
            wall_s,
            void_trials: 0,
            trials,
        }
    }

    /// The label of this cell's curve in a CDF.
    pub fn label(&self) -> String {
        format!("{} {}", self.db, self.setting)
    }
}

/// A figure for a table: milliseconds, or "≥ window" for a censored quantile.
pub fn fmt_ms(v: Option<f64>, window_ms: f64) -> String {
    match v {
        Some(v) => format!("{v:.1}"),
        None => format!("≥{window_ms:.0}"),
    }
}

fn fmt_ci(s: &Summary) -> String {
    match s.median_ci95_ms {
        Some((lo, hi)) => format!("{lo:.1}–{}", fmt_ms(hi, s.window_ms)),
        None => "—".into(),
    }
}

/// The summary table's rows, for the terminal and the page alike (their headers differ
/// only in how much room a column name may take).
fn summary_rows(cells: &[Cell]) -> Vec<Vec<String>> {
    cells
        .iter()
        .map(|c| {
            let u = &c.unavailability;
            vec![
                c.db.clone(),
                c.setting.clone(),
                c.scenario.clone(),
                u.trials.to_string(),
                u.censored.to_string(),
                u.min_ms.map_or("—".into(), |m| format!("{m:.1}")),
                fmt_ms(u.median_ms, u.window_ms),
                fmt_ci(u),
                fmt_ms(u.p90_ms, u.window_ms),
                fmt_ms(u.p99_ms, u.window_ms),
                fmt_ms(u.max_ms, u.window_ms),
                u.mean_uncensored_ms.map_or("—".into(), |m| format!("{m:.1}")),
                fmt_ms(c.leader.median_ms, c.window_ms),
                fmt_ci(&c.leader),
                c.failed.to_string(),
                c.indeterminate.to_string(),
            ]
        })
        .collect()
}

fn terminal_table(header: Vec<&str>, rows: Vec<Vec<String>>) -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED).set_header(header);
    for r in rows {
        t.add_row(r);
    }
    t
}

fn html_table(h: &mut String, header: &[&str], rows: Vec<Vec<String>>) {
    h.push_str("<table><tr>");
    for th in header {
        let _ = write!(h, "<th>{th}</th>");
    }
    h.push_str("</tr>");
    for r in rows {
        h.push_str("<tr>");
        for col in r {
            let _ = write!(h, "<td>{}</td>", escape(&col));
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
}

pub fn table(cells: &[Cell]) -> comfy_table::Table {
    let header = vec![
        "db", "setting", "scenario", "trials", "cens.", "unavail. min", "median", "95% CI", "p90", "p99",
        "max", "mean*", "leader median", "leader 95% CI", "fail", "info",
    ];
    terminal_table(header, summary_rows(cells))
}

fn fmt_pct(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{v:.0}%"))
}

/// The catch-up figures' header and rows, for the terminal and the page alike.
fn catch_up_rows(cells: &[Cell]) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let header = vec![
        "db", "setting", "scenario", "trials", "cens.", "caught up median", "95% CI", "p90", "max",
        "dip depth median", "95% CI", "max", "dip duration median", "95% CI", "max", "unavail. median",
    ];
    let rows = cells
        .iter()
        .filter_map(|c| {
            let k = c.catch_up.as_ref()?;
            let (cu, dd) = (&k.caught_up, &k.dip_duration);
            Some(vec![
                c.db.clone(),
                c.setting.clone(),
                c.scenario.clone(),
                cu.trials.to_string(),
                cu.censored.to_string(),
                fmt_ms(cu.median_ms, cu.window_ms),
                fmt_ci(cu),
                fmt_ms(cu.p90_ms, cu.window_ms),
                fmt_ms(cu.max_ms, cu.window_ms),
                fmt_pct(k.dip_depth_median_pct),
                k.dip_depth_median_ci95_pct.map_or("—".into(), |(lo, hi)| format!("{lo:.0}–{hi:.0}%")),
                fmt_pct(k.dip_depth_max_pct),
                fmt_ms(dd.median_ms, dd.window_ms),
                fmt_ci(dd),
                fmt_ms(dd.max_ms, dd.window_ms),
                fmt_ms(c.unavailability.median_ms, c.window_ms),
            ])
        })
        .collect();
    (header, rows)
}

/// Catch-up figures of the cells that replaced a node; `None` when none did.
pub fn catch_up_table(cells: &[Cell]) -> Option<comfy_table::Table> {
    let (header, rows) = catch_up_rows(cells);
    (!rows.is_empty()).then(|| terminal_table(header, rows))
}

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
];

/// Figure 16's form: x = unavailability (ms), y = cumulative share of trials, one curve per
/// database and setting of the scenario.
pub fn cdf_svg(scenario: &str, cells: &[&Cell]) -> Result<String, String> {
    let x_max = cells
        .iter()
        .flat_map(|c| c.trials.iter().filter_map(|t| t.unavailability_ms))
        .fold(1.0f64, f64::max)
        * 1.05;
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (960, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("{scenario}: client-observed unavailability"), ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..x_max, 0f64..1.0)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("longest stretch without a successful write (ms)")
            .y_desc("cumulative share of trials")
            .light_line_style(WHITE)
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, c) in cells.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let steps = cdf(&c.trials.iter().map(|t| t.unavailability_ms).collect::<Vec<_>>());
            let mut pts = vec![(0.0, 0.0)];
            let mut prev = 0.0;
            for (x, y) in steps {
                pts.push((x, prev));
                pts.push((x, y));
                prev = y;
            }
            pts.push((x_max, prev));
            let label = format!("{} (n={}, censored {})", c.label(), c.unavailability.trials, c.unavailability.censored);
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK.mix(0.3))
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(buf)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Scenarios in order of first appearance.
pub fn scenarios(cells: &[Cell]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in cells {
        if !out.contains(&c.scenario) {
            out.push(c.scenario.clone());
        }
    }
    out
}

/// A self-contained page: the experiment, the summary table, one CDF per scenario.
pub fn html(cells: &[Cell], experiment: &serde_json::Value, svgs: &[(String, String)]) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>faultline bench recovery</title>\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}th{{background:#eee}}\
         pre{{background:#f6f6f6;padding:1em}}</style></head><body><h1>Recovery experiment</h1>\
         <pre>{}</pre><p>Unavailability: the longest stretch with no successful write that \
         overlaps the fault. Leader: fault to the first status sample (every node polled every \
         ≤10 ms) in which a majority names one leader in one term. Quantiles are nearest-rank \
         with censored trials (no recovery within the window) sorted last, shown as \
         “≥ window”; the mean is over uncensored trials only. 95% CI: percentile bootstrap of \
         the median, {BOOTSTRAP_RESAMPLES} resamples, fixed seed.</p>",
        escape(&serde_json::to_string_pretty(experiment).unwrap_or_default())
    );
    let header = [
        "db", "setting", "scenario", "trials", "censored", "min", "median", "95% CI", "p90", "p99", "max",
        "mean (uncensored)", "leader median", "leader 95% CI", "failed", "indeterminate",
    ];
    html_table(&mut h, &header, summary_rows(cells));
    let (header, rows) = catch_up_rows(cells);
    if !rows.is_empty() {
        let _ = write!(
            h,
            "<h2>Replacement catch-up</h2><p>Caught up: the old process's last status answer to \
             the first sample in which the fresh node is a voter in the leader's configuration and \
             its own and has applied what the leader had when the replacement began. Dip: successful writes \
             per {bin} ms bin from the replacement's start (its removal included) to {tail} s \
             after the catch-up, against their rate over the {base} s before; depth is the \
             worst bin's shortfall, duration spans the bins below {thr:.0}% of the baseline.\
             </p>",
            bin = super::recovery::DIP_BIN.as_millis(),
            tail = super::recovery::CATCH_UP_TAIL.as_secs_f64(),
            base = super::recovery::DIP_BASELINE.as_secs_f64(),
            thr = super::recovery::DIP_THRESHOLD * 100.0,
        );
        html_table(&mut h, &header, rows);
    }
    for (scenario, svg) in svgs {
        let _ = write!(h, "<h2>{}</h2>{svg}", escape(scenario));
    }
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn censored_trials_sort_last_and_never_enter_the_mean() {
        let v = [Some(30.0), None, Some(10.0), Some(20.0)];
        let s = summarize(&v, 1000.0);
        assert_eq!((s.trials, s.censored), (4, 1));
        assert_eq!(s.min_ms, Some(10.0));
        assert_eq!(s.median_ms, Some(20.0));
        // The largest trial is censored: the maximum is only known to be ≥ the window.
        assert_eq!(s.max_ms, None);
        assert_eq!(s.p90_ms, None);
        assert_eq!(s.mean_uncensored_ms, Some(20.0));
    }

    #[test]
    fn median_is_censored_when_half_the_trials_are() {
        let v = [Some(5.0), None, None, Some(1.0)];
        assert_eq!(summarize(&v, 100.0).median_ms, Some(5.0));
        let v = [Some(5.0), None, None, None];
        assert_eq!(summarize(&v, 100.0).median_ms, None);
    }

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<Option<f64>> = (1..=100).map(|i| Some(i as f64)).collect();
        assert_eq!(quantile(&v, 0.5), Some(50.0));
        assert_eq!(quantile(&v, 0.9), Some(90.0));
        assert_eq!(quantile(&v, 0.99), Some(99.0));
        assert_eq!(quantile(&v, 0.0), Some(1.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn bootstrap_interval_is_reproducible_and_brackets_the_median() {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let v: Vec<Option<f64>> = (0..200).map(|_| Some(rng.random_range(100.0..300.0))).collect();
        let (lo, hi) = median_ci95(&v, BOOTSTRAP_SEED).unwrap();
        let hi = hi.unwrap();
        let med = quantile(&sort_censored(&v), 0.5).unwrap();
        assert!(lo <= med && med <= hi, "{lo} <= {med} <= {hi}");
        // Uniform on 200 ms, n = 200: the median's standard error is about 7 ms.
        assert!(hi - lo > 5.0 && hi - lo < 60.0, "width {}", hi - lo);
        assert_eq!(median_ci95(&v, BOOTSTRAP_SEED), Some((lo, Some(hi))));
    }

    #[test]
    fn bootstrap_interval_is_open_above_when_censoring_reaches_the_median() {
        let v: Vec<Option<f64>> = (0..20).map(|i| if i % 2 == 0 { None } else { Some(i as f64) }).collect();
        let (_, hi) = median_ci95(&v, BOOTSTRAP_SEED).unwrap();
        assert_eq!(hi, None);
    }

    #[test]
    fn cdf_ends_below_one_by_the_censored_share() {
        let c = cdf(&[Some(2.0), None, Some(1.0), Some(3.0)]);
        assert_eq!(c, vec![(1.0, 0.25), (2.0, 0.5), (3.0, 0.75)]);
    }

    #[test]
    fn cdf_svg_draws_every_cell() {
        let t = |n, u| Trial {
            n,
            victims: vec!["n1".into()],
            leader_before: "n1".into(),
            term_before: 1,
            offset_ms: 0.0,
            unavailability_ms: u,
            leader_ms: u,
            leader_after: Some("n2".into()),
            terms_used: Some(1),
            failed: 0,
            indeterminate: 0,
            censored: u.is_none(),
            restarted_before: false,
            phases_ms: [0.0; 4],
            apply_ms: None,
            elections: None,
            catch_up: None,
        };
        let mut r = t(3, Some(20.0));
        r.catch_up = Some(CatchUp {
            target_index: 10,
            caught_up_ms: Some(1500.0),
            dip: Some(Dip { baseline_writes_per_s: 180.0, depth_pct: 40.0, duration_ms: 750.0 }),
        });
        let mut censored = t(4, Some(30.0));
        censored.catch_up = Some(CatchUp { target_index: 10, caught_up_ms: None, dip: None });
        let m = Cell::new("paxos", "defaults", "replace-node", 1000.0, vec![r, censored], 1.0);
        let k = m.catch_up.as_ref().unwrap();
        assert_eq!((k.caught_up.trials, k.caught_up.censored, k.caught_up.min_ms), (2, 1, Some(1500.0)));
        // The trial without a baseline is out of the dip figures, and counted as such.
        assert_eq!((k.dip_duration.trials, k.no_baseline, k.dip_depth_max_pct), (1, 1, Some(40.0)));
        assert_eq!(catch_up_rows(std::slice::from_ref(&m)).1[0][9], "40%");
        let a = Cell::new("raft", "et=150-300", "kill-leader", 1000.0, vec![t(1, Some(200.0)), t(2, None)], 1.0);
        assert!(a.catch_up.is_none() && catch_up_table(std::slice::from_ref(&a)).is_none());
        let b = Cell::new("paxos", "et=150-300", "kill-leader", 1000.0, vec![t(1, Some(250.0))], 1.0);
        let svg = cdf_svg("kill-leader", &[&a, &b]).unwrap();
        assert!(svg.contains("raft et=150-300 (n=2, censored 1)"));
        assert!(svg.contains("paxos et=150-300"));
        let page = html(&[a, b], &serde_json::json!({"x": "<y>"}), &[("kill-leader".into(), svg)]);
        assert!(page.contains("&lt;y&gt;") && page.contains("<svg"));
    }
}
