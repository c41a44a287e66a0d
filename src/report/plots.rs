//! Inline SVG plots (plotters' SVG backend; text is emitted as `<text>` elements, so no
//! fonts are needed to render them) with fault windows shaded.

use std::fmt::Write as _;

use faultline_checkers::history::digest::OpRecord;
use faultline_checkers::perf::Outcome;
use faultline_checkers::recovery::FaultWindow;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

/// A plot that could not be drawn; the page shows the message in the plot's place.
#[derive(Debug, thiserror::Error)]
#[error("plot: {0}")]
pub struct PlotError(String);

impl PlotError {
    fn new(e: impl std::fmt::Display) -> PlotError {
        PlotError(e.to_string())
    }
}

/// The scatter's budget, by kind of op, so the page stays a few megabytes (one SVG circle is
/// about 100 bytes) however long the run: a browser struggles with a million circles, and
/// an hour at 1,000 ops/s is 3.6 million ops. Ok ops are thinned first, failed and
/// indeterminate ops far from any fault next; those near a fault keep their own budget, and
/// the ops a counterexample names are always drawn. The full data stays in `history.jsonl`.
pub const SCATTER_OK_MAX: usize = 20_000;
pub const SCATTER_NEAR_FAULT_MAX: usize = 12_000;
pub const SCATTER_FAR_MAX: usize = 4_000;
/// An op is near a fault from this long before its window opens...
const NEAR_BEFORE_NS: u64 = 1_000_000_000;
/// ...until this long after it heals (a fault's aftermath is where failures cluster).
const NEAR_AFTER_NS: u64 = 10_000_000_000;
const WIDTH: u32 = 960;
const HEIGHT: u32 = 320;

/// Shading colour of a fault family: the nemesis package's own plot colour, so every
/// report draws a family alike; a family no package knows (an older run's) gets one from
/// a palette by name.
pub fn family_color(family: &str) -> RGBColor {
    if let Some(meta) = faultline_nemesis::registry::plot_for_f(&format!("start-{family}")) {
        let (r, g, b) = meta.rgb;
        return RGBColor(r, g, b);
    }
    const PALETTE: [RGBColor; 5] = [
        RGBColor(127, 140, 141),
        RGBColor(22, 160, 133),
        RGBColor(211, 84, 0),
        RGBColor(44, 62, 80),
        RGBColor(243, 156, 18),
    ];
    let h = family
        .bytes()
        .fold(0usize, |a, b| a.wrapping_mul(31).wrapping_add(b as usize));
    PALETTE[h % PALETTE.len()]
}

/// The legend label of a fault family.
pub fn family_label(family: &str) -> String {
    faultline_nemesis::registry::plot_for_f(&format!("start-{family}"))
        .map(|m| m.label.to_string())
        .unwrap_or_else(|| family.to_string())
}

pub fn css_color(c: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

fn outcome_color(o: Outcome) -> RGBColor {
    match o {
        Outcome::Ok => RGBColor(52, 101, 164),
        Outcome::Fail => RGBColor(204, 0, 0),
        Outcome::Info => RGBColor(245, 121, 0),
    }
}

fn shade<DB: DrawingBackend, X, Y>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<X, Y>>,
    windows: &[FaultWindow],
    end_s: f64,
    y: (Y::ValueType, Y::ValueType),
) -> Result<(), PlotError>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged,
    Y::ValueType: Clone + 'static,
{
    let rects = windows.iter().map(|w| {
        let s = w.start_ns as f64 / 1e9;
        let e = w.end_ns.map(|e| e as f64 / 1e9).unwrap_or(end_s);
        Rectangle::new(
            [(s, y.0.clone()), (e.max(s), y.1.clone())],
            family_color(&w.family).mix(0.18).filled(),
        )
    });
    chart.draw_series(rects).map_err(PlotError::new)?;
    Ok(())
}

/// The frame every time plot shares: title, a time axis from 0 to `end_s`, light grid,
/// and the fault windows shaded over `y_span`.
fn time_chart<'a, 'b, Y>(
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    caption: &str,
    y_desc: &str,
    end_s: f64,
    y_range: impl AsRangedCoord<CoordDescType = Y, Value = f64>,
    y_span: (f64, f64),
    windows: &[FaultWindow],
) -> Result<ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, Y>>, PlotError>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(root)
        .caption(caption, ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(34)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..end_s, y_range)
        .map_err(PlotError::new)?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc(y_desc)
        .light_line_style(WHITE)
        .draw()
        .map_err(PlotError::new)?;
    shade(&mut chart, windows, end_s, y_span)?;
    Ok(chart)
}

/// The series legend, top right.
fn legend<'a, 'b: 'a, Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, Y>>,
) -> Result<(), PlotError> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(PlotError::new)
}

fn render(
    draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Result<(), PlotError>,
) -> Result<String, PlotError> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(PlotError::new)?;
        draw(&root)?;
        root.present().map_err(PlotError::new)?;
    }
    Ok(buf)
}

/// The ops the latency scatter draws, in input order: deterministic (strides, no sampling),
/// so two reports of one run draw the same points.
///
/// Every op whose position is in `keep` (the ops a counterexample names) is drawn. Failed
/// and indeterminate ops near a fault window are all drawn while they fit
/// [`SCATTER_NEAR_FAULT_MAX`]; past it each window keeps an equal share, evenly spread, so a
/// long run's first windows do not use up the budget of its last. The rest are thinned by
/// an even stride to their budgets.
pub fn scatter_points<'a>(
    ops: &'a [OpRecord],
    windows: &[FaultWindow],
    end_ns: u64,
    keep: &std::collections::BTreeSet<usize>,
) -> Vec<&'a OpRecord> {
    // The neighbourhood of each window, by window number.
    let spans: Vec<(u64, u64)> = windows
        .iter()
        .map(|w| {
            let end = w.end_ns.unwrap_or(end_ns).max(w.start_ns);
            (w.start_ns.saturating_sub(NEAR_BEFORE_NS), end.saturating_add(NEAR_AFTER_NS))
        })
        .collect();
    // The first span holding `t`, without a scan of every span per op: when starts are
    // sorted (windows from `fault_windows` are), the candidates are a prefix, and the first of
    // them reaching `t` is where the running maximum of their ends first does.
    let reach: Vec<u64> = spans
        .iter()
        .scan(0u64, |m, &(_, b)| {
            *m = (*m).max(b);
            Some(*m)
        })
        .collect();
    let sorted = spans.is_sorted_by_key(|&(a, _)| a);
    let near = |t: u64| {
        if !sorted {
            return spans.iter().position(|&(a, b)| a <= t && t <= b);
        }
        let started = spans.partition_point(|&(a, _)| a <= t);
        let first = reach[..started].partition_point(|&m| m < t);
        (first < started).then_some(first)
    };
    #[derive(Clone, Copy, PartialEq)]
    enum Class {
        Keep,
        Ok,
        Near(usize),
        Far,
    }
    let class: Vec<Class> = ops
        .iter()
        .map(|o| {
            if keep.contains(&o.invoke_pos()) || keep.contains(&o.complete_pos()) {
                Class::Keep
            } else if o.outcome == Outcome::Ok {
                Class::Ok
            } else if let Some(w) = near(o.invoke_ns) {
                Class::Near(w)
            } else {
                Class::Far
            }
        })
        .collect();
    let stride = |n: usize, max: usize| n.div_ceil(max.max(1)).max(1);
    let ok_stride = stride(class.iter().filter(|c| **c == Class::Ok).count(), SCATTER_OK_MAX);
    let far_stride = stride(class.iter().filter(|c| **c == Class::Far).count(), SCATTER_FAR_MAX);
    let mut per_window = vec![0usize; spans.len()];
    for c in &class {
        if let Class::Near(w) = c {
            per_window[*w] += 1;
        }
    }
    let near_total: usize = per_window.iter().sum();
    let share = SCATTER_NEAR_FAULT_MAX / spans.len().max(1);
    let window_stride: Vec<usize> = per_window
        .iter()
        .map(|&n| if near_total <= SCATTER_NEAR_FAULT_MAX { 1 } else { stride(n, share) })
        .collect();
    let (mut seen_ok, mut seen_far) = (0usize, 0usize);
    let mut seen_window = vec![0usize; spans.len()];
    let mut out = Vec::new();
    for (o, c) in ops.iter().zip(&class) {
        let take = match *c {
            Class::Keep => true,
            Class::Ok => {
                seen_ok += 1;
                (seen_ok - 1).is_multiple_of(ok_stride)
            }
            Class::Far => {
                seen_far += 1;
                (seen_far - 1).is_multiple_of(far_stride)
            }
            Class::Near(w) => {
                seen_window[w] += 1;
                (seen_window[w] - 1).is_multiple_of(window_stride[w])
            }
        };
        if take {
            out.push(o);
        }
    }
    out
}

/// Latency of each op (see [`scatter_points`] for which) against its invocation time, log
/// scale, coloured by outcome.
pub fn latency_scatter(
    ops: &[OpRecord],
    windows: &[FaultWindow],
    end_ns: u64,
    keep: &std::collections::BTreeSet<usize>,
) -> Result<String, PlotError> {
    let end_s = (end_ns as f64 / 1e9).max(1.0);
    let lat_ms = |o: &OpRecord| (o.latency_ns() as f64 / 1e6).max(0.01);
    let y_max = ops.iter().map(lat_ms).fold(1.0f64, f64::max) * 1.5;
    let points = scatter_points(ops, windows, end_ns, keep);
    let drawn = points.len();
    let caption = if drawn < ops.len() {
        format!("Latency by invocation time ({drawn} of {} ops drawn)", ops.len())
    } else {
        "Latency by invocation time".to_string()
    };
    render(|root| {
        let mut chart = time_chart(
            root,
            &caption,
            "latency (ms)",
            end_s,
            (0.01f64..y_max).log_scale(),
            (0.01, y_max),
            windows,
        )?;
        for outcome in [Outcome::Ok, Outcome::Info, Outcome::Fail] {
            let color = outcome_color(outcome);
            let pts = points.iter().filter(|o| o.outcome == outcome);
            chart
                .draw_series(pts.map(|o| {
                    Circle::new(
                        (o.invoke_ns as f64 / 1e9, lat_ms(o)),
                        2,
                        color.mix(0.6).filled(),
                    )
                }))
                .map_err(PlotError::new)?
                .label(outcome.as_str())
                .legend(move |(x, y)| Circle::new((x + 5, y), 3, color.filled()));
        }
        legend(&mut chart)?;
        Ok(())
    })
}

/// p50 / p99 / max of successful ops per time bucket (at most ~300 buckets).
pub fn latency_quantiles(
    ops: &[OpRecord],
    windows: &[FaultWindow],
    end_ns: u64,
) -> Result<String, PlotError> {
    let end_s = (end_ns as f64 / 1e9).max(1.0);
    let bucket_s = (end_s / 300.0).ceil().max(1.0);
    let n = (end_s / bucket_s).ceil() as usize + 1;
    let mut per: Vec<Vec<f64>> = vec![Vec::new(); n];
    for o in ops.iter().filter(|o| o.outcome == Outcome::Ok) {
        let i = ((o.complete_ns as f64 / 1e9 / bucket_s) as usize).min(n - 1);
        per[i].push((o.latency_ns() as f64 / 1e6).max(0.01));
    }
    let mut lines: [Vec<(f64, f64)>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for (i, v) in per.iter_mut().enumerate() {
        if v.is_empty() {
            continue;
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let x = (i as f64 + 0.5) * bucket_s;
        let q = |q: f64| v[(((q * v.len() as f64).ceil() as usize).max(1) - 1).min(v.len() - 1)];
        lines[0].push((x, q(0.5)));
        lines[1].push((x, q(0.99)));
        lines[2].push((x, *v.last().expect("not empty")));
    }
    let y_max = lines[2].iter().map(|p| p.1).fold(1.0f64, f64::max) * 1.5;
    render(|root| {
        let mut chart = time_chart(
            root,
            &format!("Latency quantiles of ok ops ({bucket_s} s buckets)"),
            "latency (ms)",
            end_s,
            (0.01f64..y_max).log_scale(),
            (0.01, y_max),
            windows,
        )?;
        let styles = [
            ("p50", RGBColor(52, 101, 164)),
            ("p99", RGBColor(245, 121, 0)),
            ("max", RGBColor(204, 0, 0)),
        ];
        for (line, (name, color)) in lines.iter().zip(styles) {
            chart
                .draw_series(LineSeries::new(line.iter().copied(), color.stroke_width(2)))
                .map_err(PlotError::new)?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 14, y)], color.stroke_width(2))
                });
        }
        legend(&mut chart)?;
        Ok(())
    })
}

/// Completions per second by outcome.
pub fn throughput(
    buckets: &[faultline_checkers::perf::Bucket],
    windows: &[FaultWindow],
    end_ns: u64,
) -> Result<String, PlotError> {
    let end_s = (end_ns as f64 / 1e9).max(1.0);
    // A burst (the final reads after the load, a backlog draining) would flatten the rest
    // of the plot: the scale stops at twice the 95th-percentile bucket and taller buckets
    // are drawn at the top edge.
    let mut peaks: Vec<u64> = buckets
        .iter()
        .map(|b| b.ok.max(b.fail).max(b.info))
        .collect();
    peaks.sort_unstable();
    let top = peaks.last().copied().unwrap_or(1).max(1) as f64;
    let p95 = peaks
        .get(peaks.len() * 95 / 100)
        .copied()
        .unwrap_or(1)
        .max(1) as f64;
    let y_max = top.min(p95 * 2.0) * 1.15;
    render(|root| {
        let mut chart = time_chart(
            root,
            "Throughput (completions per second)",
            "ops/s",
            end_s,
            0f64..y_max,
            (0.0, y_max),
            windows,
        )?;
        type Pick = fn(&faultline_checkers::perf::Bucket) -> u64;
        let series: [(Outcome, Pick); 3] = [
            (Outcome::Ok, |b| b.ok),
            (Outcome::Info, |b| b.info),
            (Outcome::Fail, |b| b.fail),
        ];
        for (outcome, pick) in series {
            let color = outcome_color(outcome);
            // Plotted at the bucket's middle; the last bucket is usually partial.
            let pts = buckets
                .iter()
                .map(|b| (b.t_s as f64 + 0.5, (pick(b) as f64).min(y_max)));
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                .map_err(PlotError::new)?
                .label(outcome.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 14, y)], color.stroke_width(2))
                });
        }
        legend(&mut chart)?;
        Ok(())
    })
}

/// Cuts a label to what fits in `width` pixels of 11 px sans-serif (the whole label stays
/// in the bar's tooltip).
fn fit(label: &str, width: f64) -> String {
    let chars = ((width - 6.0) / 6.2).max(0.0) as usize;
    if label.chars().count() <= chars {
        label.to_string()
    } else if chars >= 2 {
        label
            .chars()
            .take(chars - 1)
            .chain(std::iter::once('…'))
            .collect()
    } else {
        String::new()
    }
}

/// One op on the counterexample timeline.
pub struct TimelineOp {
    pub process: u64,
    pub start_ns: u64,
    pub end_ns: Option<u64>,
    pub label: String,
    pub outcome: Option<Outcome>,
    pub highlighted: bool,
}

/// The ops around a linearizability violation drawn as a timeline: one row per process,
/// one bar per op from invocation to completion, the offending ops in red. Drawn by hand
/// because it is a Gantt chart with text on the bars, not a plot.
pub fn timeline(ops: &[TimelineOp]) -> String {
    let mut procs: Vec<u64> = ops.iter().map(|o| o.process).collect();
    procs.sort_unstable();
    procs.dedup();
    let t0 = ops.iter().map(|o| o.start_ns).min().unwrap_or(0);
    let t1 = ops
        .iter()
        .map(|o| o.end_ns.unwrap_or(o.start_ns))
        .max()
        .unwrap_or(0)
        .max(t0 + 1);
    let (left, row_h, width) = (90.0, 34.0, WIDTH as f64);
    let height = 40.0 + row_h * procs.len() as f64;
    let x = |t: u64| left + (t - t0) as f64 / (t1 - t0) as f64 * (width - left - 20.0);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(
        s,
        r#"<text x="{left}" y="16">{:.3} ms … {:.3} ms since the run began</text>"#,
        t0 as f64 / 1e6,
        t1 as f64 / 1e6
    );
    for (row, p) in procs.iter().enumerate() {
        let y = 28.0 + row_h * row as f64;
        let _ = write!(
            s,
            r#"<text x="4" y="{:.1}">process {p}</text>"#,
            y + row_h / 2.0
        );
        let _ = write!(
            s,
            r##"<line x1="{left}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#ddd"/>"##,
            width - 20.0,
            y + row_h - 2.0,
            y + row_h - 2.0
        );
        for o in ops.iter().filter(|o| o.process == *p) {
            let (x0, x1) = (x(o.start_ns), o.end_ns.map(x).unwrap_or(width - 20.0));
            let fill = if o.highlighted {
                "#f4cccc"
            } else {
                match o.outcome {
                    Some(Outcome::Ok) => "#d9e6f5",
                    Some(Outcome::Fail) => "#eeeeee",
                    _ => "#fde3c8",
                }
            };
            let stroke = if o.highlighted { "#cc0000" } else { "#7f8c8d" };
            let sw = if o.highlighted { 2 } else { 1 };
            let _ = write!(
                s,
                r#"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{fill}" stroke="{stroke}" stroke-width="{sw}"><title>{}</title></rect>"#,
                y + 4.0,
                (x1 - x0).max(2.0),
                row_h - 10.0,
                super::html::esc(&o.label)
            );
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
                x0 + 3.0,
                y + row_h / 2.0 + 3.0,
                super::html::esc(&fit(&o.label, x1 - x0))
            );
        }
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn op(pos: usize, t_ms: u64, outcome: Outcome) -> OpRecord {
        OpRecord {
            process: (pos % 10) as u32,
            f: 0,
            key: (pos / 40) as u32,
            invoke_ns: t_ms * 1_000_000,
            complete_ns: t_ms * 1_000_000 + 2_000_000,
            outcome,
            invoke_pos: 2 * pos as u64,
            complete_delta: 1,
            refusal: false,
        }
    }

    fn window(start_s: u64, end_s: u64) -> FaultWindow {
        FaultWindow {
            family: "partition".into(),
            start_ns: start_s * 1_000_000_000,
            end_ns: Some(end_s * 1_000_000_000),
            value: serde_json::Value::Null,
        }
    }

    /// An hour at 1,000 ops/s with a fault every 10 s and 5% of ops failing draws no more
    /// than the budgets, and every window keeps failures of its own.
    #[test]
    fn an_hours_scatter_stays_within_its_budget_and_every_window_keeps_its_failures() {
        let n = 3_600_000usize;
        let ops: Vec<OpRecord> = (0..n)
            .map(|i| op(i, i as u64, if i % 20 == 0 { Outcome::Fail } else { Outcome::Ok }))
            .collect();
        let windows: Vec<FaultWindow> = (1..360).map(|k| window(k * 10, k * 10 + 5)).collect();
        let pts = scatter_points(&ops, &windows, n as u64 * 1_000_000, &BTreeSet::new());
        let budget = SCATTER_OK_MAX + SCATTER_NEAR_FAULT_MAX + SCATTER_FAR_MAX;
        assert!(pts.len() <= budget + windows.len(), "{} points", pts.len());
        assert!(pts.len() > budget / 2, "{} points: thinned too far", pts.len());
        for w in &windows {
            let fails = pts
                .iter()
                .filter(|o| o.outcome == Outcome::Fail)
                .filter(|o| o.invoke_ns >= w.start_ns && o.invoke_ns <= w.end_ns.unwrap())
                .count();
            assert!(fails >= 5, "window at {} s drew {fails} failures", w.start_ns / 1_000_000_000);
        }
        // Deterministic: the same input draws the same points.
        let again = scatter_points(&ops, &windows, n as u64 * 1_000_000, &BTreeSet::new());
        assert!(pts.iter().zip(&again).all(|(a, b)| a.invoke_pos == b.invoke_pos));
    }

    #[test]
    fn a_short_runs_failures_near_a_fault_are_all_drawn_and_named_ops_always() {
        let ops: Vec<OpRecord> = (0..200_000usize)
            .map(|i| op(i, i as u64, if i % 50 == 0 { Outcome::Info } else { Outcome::Ok }))
            .collect();
        let windows = vec![window(20, 25)];
        // Ok ops a counterexample names, which the stride would skip.
        let keep: BTreeSet<usize> = [2 * 12_345 + 1, 2 * 54_321].into_iter().collect();
        let pts = scatter_points(&ops, &windows, 200_000_000_000, &keep);
        let near = |o: &OpRecord| o.invoke_ns >= 19_000_000_000 && o.invoke_ns <= 35_000_000_000;
        let want = ops.iter().filter(|o| o.outcome == Outcome::Info && near(o)).count();
        let got = pts.iter().filter(|o| o.outcome == Outcome::Info && near(o)).count();
        assert_eq!(got, want);
        for p in [12_345usize, 54_321] {
            assert!(pts.iter().any(|o| o.invoke_pos() == 2 * p), "op {p} was not drawn");
        }
        assert!(pts.iter().filter(|o| o.outcome == Outcome::Ok).count() <= SCATTER_OK_MAX + 2);
    }
}
