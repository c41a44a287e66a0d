//! Inline SVG plots (plotters' SVG backend; text is emitted as `<text>` elements, so no
//! fonts are needed to render them) with fault windows shaded.

use std::fmt::Write as _;

use faultline_checkers::perf::{CompletedOp, Outcome};
use faultline_checkers::recovery::FaultWindow;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

/// A scatter plot with more points than this is thinned (every op that did not succeed
/// is always kept): a browser struggles with an SVG of a million circles.

/// A plot that could not be drawn; the page shows the message in the plot's place.
#[derive(Debug, thiserror::Error)]
#[error("plot: {0}")]
pub struct PlotError(String);

impl PlotError {
    fn new(e: impl std::fmt::Display) -> PlotError {
        PlotError(e.to_string())
    }
}

const SCATTER_POINTS_MAX: usize = 20_000;
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

/// Latency of every op against its invocation time, log scale, coloured by outcome.
pub fn latency_scatter(
    ops: &[CompletedOp],
    windows: &[FaultWindow],
    end_ns: u64,
) -> Result<String, PlotError> {
    let end_s = (end_ns as f64 / 1e9).max(1.0);
    let lat_ms = |o: &CompletedOp| (o.latency_ns() as f64 / 1e6).max(0.01);
    let y_max = ops.iter().map(lat_ms).fold(1.0f64, f64::max) * 1.5;
    let stride =
        (ops.iter().filter(|o| o.outcome == Outcome::Ok).count() / SCATTER_POINTS_MAX).max(1);
    render(|root| {
        let mut chart = time_chart(
            root,
            "Latency by invocation time",
            "latency (ms)",
            end_s,
            (0.01f64..y_max).log_scale(),
            (0.01, y_max),
            windows,
        )?;
        for outcome in [Outcome::Ok, Outcome::Info, Outcome::Fail] {
            let color = outcome_color(outcome);
            let mut n = 0usize;
            let pts = ops.iter().filter(|o| o.outcome == outcome).filter(|_| {
                n += 1;
                outcome != Outcome::Ok || n.is_multiple_of(stride)
            });
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
    ops: &[CompletedOp],
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
