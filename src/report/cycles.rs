//! Small SVG diagrams of the dependency cycles the Elle-style checkers report, so a reader
//! of `report.html` sees at a glance which transactions form the cycle and which edge
//! forces which order; the words beside each diagram say why.
//!
//! The input is the checker's own details (`anomalies`: type → list of `{cycle, explanation}`,
//! already capped by the checker), so the report invents nothing the checker did not say.

use std::fmt::Write as _;

use serde_json::Value;

use super::html::esc;

/// Anomalies drawn per type; the rest are counted, not drawn.
pub const DRAWN_PER_TYPE_MAX: usize = 2;
/// Anomaly types drawn per checker.
pub const TYPES_MAX: usize = 12;

/// One anomaly to show: its type, its explanation in words, and its diagram.
pub struct Drawn {
    pub kind: String,
    pub explanation: String,
    pub svg: String,
}

/// Every anomaly worth drawing in a checker's details, with the counts of those left out.
pub fn anomalies(details: &Value) -> (Vec<Drawn>, u64) {
    let mut out = Vec::new();
    let total: u64 = details["anomaly-counts"]
        .as_object()
        .map(|m| m.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    let Some(shown) = details["anomalies"].as_object() else {
        return (out, total);
    };
    for (kind, list) in shown.iter().take(TYPES_MAX) {
        for a in list.as_array().into_iter().flatten().take(DRAWN_PER_TYPE_MAX) {
            let Some(steps) = a["cycle"].as_array().filter(|s| !s.is_empty()) else {
                continue;
            };
            out.push(Drawn {
                kind: kind.clone(),
                explanation: a["explanation"].as_str().unwrap_or_default().to_string(),
                svg: cycle_svg(steps),
            });
        }
    }
    let drawn = out.len() as u64;
    (out, total.saturating_sub(drawn))
}

/// The transactions of a cycle on a circle, each step an arrow labelled with its edge type
/// and key (`ww x`, `rw 3`, `rt`).
pub fn cycle_svg(steps: &[Value]) -> String {
    let names: Vec<String> = steps.iter().map(|s| s["from"].as_str().unwrap_or("?").to_string()).collect();
    let n = names.len().max(1);
    let (w, h) = (420.0f64, if n <= 2 { 170.0 } else { 300.0 });
    let (cx, cy) = (w / 2.0, h / 2.0);
    let r = if n <= 2 { 60.0 } else { 105.0 };
    let at = |i: usize| {
        let a = std::f64::consts::TAU * i as f64 / n as f64 - std::f64::consts::FRAC_PI_2;
        if n == 2 {
            // Side by side reads better than one above the other.
            (cx + if i == 0 { -1.7 } else { 1.7 } * r, cy)
        } else {
            (cx + r * a.cos(), cy + r * a.sin())
        }
    };
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" class="cycle"><defs><marker id="ah" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>"##
    );
    let node_r = 26.0;
    for (i, step) in steps.iter().enumerate() {
        let (x1, y1) = at(i);
        let (x2, y2) = at((i + 1) % n);
        let kind = step["type"].as_str().unwrap_or("?");
        let label = match step["key"].as_str().map(str::to_string).or_else(|| {
            step["key"].as_i64().map(|k| k.to_string())
        }) {
            Some(k) => format!("{kind} {k}"),
            None => kind.to_string(),
        };
        let color = match kind {
            "rw" => "#c0392b",
            "wr" => "#2471a3",
            "ww" => "#1e8449",
            _ => "#7f8c8d",
        };
        // Bend each arrow outwards so the two arrows of a two-cycle do not overlap.
        let (mx, my) = ((x1 + x2) / 2.0, (y1 + y2) / 2.0);
        let (dx, dy) = (x2 - x1, y2 - y1);
        let len = (dx * dx + dy * dy).sqrt().max(1.0);
        let bend = if n == 2 { 45.0 } else { 22.0 };
        let (qx, qy) = (mx + dy / len * bend, my - dx / len * bend);
        // Start and end at the node circles' edges, along the curve's end tangents.
        let trim = |(px, py): (f64, f64), (tx, ty): (f64, f64)| {
            let (ux, uy) = (tx - px, ty - py);
            let l = (ux * ux + uy * uy).sqrt().max(1.0);
            (px + ux / l * node_r, py + uy / l * node_r)
        };
        let (sx, sy) = trim((x1, y1), (qx, qy));
        let (ex, ey) = trim((x2, y2), (qx, qy));
        let _ = write!(
            s,
            r##"<path d="M{sx:.1},{sy:.1} Q{qx:.1},{qy:.1} {ex:.1},{ey:.1}" fill="none" stroke="{color}" stroke-width="2" marker-end="url(#ah)"/><text x="{qx:.1}" y="{qy:.1}" font-size="12" text-anchor="middle" fill="{color}" font-family="sans-serif">{}</text>"##,
            esc(&label)
        );
    }
    for (i, name) in names.iter().enumerate() {
        let (x, y) = at(i);
        // "T5711 (process 0)": the transaction on the circle, its process below.
        let (t, p) = match name.split_once(' ') {
            Some((t, p)) => (t, p),
            None => (name.as_str(), ""),
        };
        let _ = write!(
            s,
            r##"<circle cx="{x:.1}" cy="{y:.1}" r="{node_r}" fill="#fdfefe" stroke="#34495e" stroke-width="1.5"/><text x="{x:.1}" y="{:.1}" font-size="12" text-anchor="middle" font-family="sans-serif">{}</text><text x="{x:.1}" y="{:.1}" font-size="9" text-anchor="middle" fill="#555" font-family="sans-serif">{}</text>"##,
            y + 2.0,
            esc(t),
            y + 14.0,
            esc(p)
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_g_single_cycle_draws_both_transactions_and_both_labelled_edges() {
        let details = json!({
            "anomaly-counts": {"G-single": 3, "G0": 1},
            "anomalies": {"G-single": [{
                "cycle": [
                    {"from": "T1 (process 0)", "to": "T2 (process 1)", "type": "rw", "key": "x", "explanation": "T1 read 1 of key x, and T2 wrote 2 after it"},
                    {"from": "T2 (process 1)", "to": "T1 (process 0)", "type": "wr", "key": "y", "explanation": "T1 read 5 of key y, written by T2"}
                ],
                "explanation": "T1 read 1 of key x, and T2 wrote 2 after it; T1 read 5 of key y, written by T2; so each transaction must come before the next, back to T1 (process 0)"
            }]}
        });
        let (drawn, not_drawn) = anomalies(&details);
        assert_eq!(drawn.len(), 1);
        assert_eq!(not_drawn, 3, "4 counted, 1 drawn");
        let d = &drawn[0];
        assert_eq!(d.kind, "G-single");
        assert!(d.explanation.contains("back to T1"));
        assert_eq!(d.svg.matches("<circle").count(), 2, "{}", d.svg);
        assert_eq!(d.svg.matches("marker-end=").count(), 2, "{}", d.svg);
        assert!(d.svg.contains(">rw x<") && d.svg.contains(">wr y<"), "{}", d.svg);
        assert!(d.svg.contains(">T1<") && d.svg.contains(">(process 0)<"), "{}", d.svg);
    }

    #[test]
    fn names_and_keys_from_a_foreign_history_are_escaped() {
        let steps = vec![
            json!({"from": "T<1>", "to": "T&2", "type": "ww", "key": "a\"<b"}),
            json!({"from": "T&2", "to": "T<1>", "type": "rt", "key": null}),
        ];
        let svg = cycle_svg(&steps);
        assert!(!svg.contains("T<1>") && svg.contains("T&lt;1&gt;"), "{svg}");
        assert!(svg.contains("ww a&quot;&lt;b") && svg.contains(">rt<"), "{svg}");
    }

    #[test]
    fn details_without_cycles_draw_nothing() {
        let (drawn, not_drawn) = anomalies(&json!({"anomaly-counts": {"internal": 2}, "anomalies": {"internal": [{"explanation": "x"}]}}));
        assert!(drawn.is_empty());
        assert_eq!(not_drawn, 2);
    }
}
