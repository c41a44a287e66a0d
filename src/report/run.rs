//! A stored run as the report sees it: `test.json`, `history.jsonl`, `results.json`.
//!
//! The loader is lenient about which optional fields `test.json` holds (older runs may
//! lack some) and strict about the history: a line that does not parse names the file and
//! line, because a report over a silently truncated history would lie.
//!
//! The history is not held: a run keeps its [`Digest`] (one pass) and the file, which
//! each checker that needs more streams again, so judging an hour-long run costs memory in
//! proportion to its operations' digest rather than to its parsed events.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use faultline_checkers::{CheckResult, Event};
use faultline_checkers::history::digest::Digest;
use faultline_checkers::history::stream::HistoryFile;
use serde_json::Value;

pub struct RunData {
    pub dir: PathBuf,
    /// `test.json` as written by the runner; `Value::Null` when absent.
    pub test: Value,
    /// `history.jsonl`, to stream again.
    pub history: HistoryFile,
    pub digest: Digest,
    /// Checker results already in `results.json`, in file order.
    pub results: Vec<CheckResult>,
    /// `results.json` as read, to keep fields the report does not know about.
    pub results_raw: Value,
}

impl RunData {
    pub fn load(dir: &Path) -> anyhow::Result<RunData> {
        if !dir.is_dir() {
            bail!("{}: not a run directory", dir.display());
        }
        let history = HistoryFile::new(dir.join(crate::store::HISTORY_FILE));
        let digest = Digest::read(&history)?;
        let test = read_json_opt(&dir.join(crate::store::TEST_FILE))?.unwrap_or(Value::Null);
        let results_raw = read_json_opt(&dir.join(crate::store::RESULTS_FILE))?.unwrap_or(Value::Null);
        let results = parse_results(&results_raw)
            .with_context(|| format!("{}", dir.join(crate::store::RESULTS_FILE).display()))?;
        Ok(RunData {
            dir: dir.to_path_buf(),
            test,
            history,
            digest,
            results,
            results_raw,
        })
    }

    /// The test's name: `test.json`'s `name`, else the run directory's parent's name.
    pub fn name(&self) -> String {
        str_field(&self.test, &["name", "test_name", "test"]).unwrap_or_else(|| {
            self.dir
                .parent()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "run".to_string())
        })
    }

    pub fn field(&self, keys: &[&str]) -> Option<String> {
        str_field(&self.test, keys)
    }

    pub fn db(&self) -> String {
        self.field(&["db", "algo", "algorithm"])
            .unwrap_or_else(|| "?".into())
    }

    pub fn workload(&self) -> String {
        self.field(&["workload"]).unwrap_or_else(|| "?".into())
    }

    pub fn nemesis(&self) -> String {
        self.field(&["nemesis"]).unwrap_or_else(|| "none".into())
    }

    pub fn seed(&self) -> Option<String> {
        self.field(&["seed"])
    }

    pub fn commit(&self) -> Option<String> {
        self.field(&["git-commit", "commit", "git_commit"])
    }

    /// The smallest configured election timeout in milliseconds, from the resolved
    /// database configuration the runner writes into `test.json` (`db-config`), which
    /// holds every knob with defaults included; `None` for a run that did not record it.
    pub fn election_timeout_ms_min(&self) -> Option<f64> {
        let cfg = self.test.get("db-config")?;
        cfg.get("election_timeout_ms_min")
            .or_else(|| cfg.pointer("/knobs/election_timeout_ms_min"))
            .or_else(|| cfg.pointer("/knobs/election_timeout_ms"))
            .and_then(Value::as_f64)
    }

    /// Wall-clock start of the run in ns since the Unix epoch, if recorded.
    pub fn start_unix_ns(&self) -> Option<i128> {
        for key in ["started", "start_time", "started_at", "start"] {
            if let Some(s) = find_key(&self.test, key).and_then(Value::as_str)
                && let Some(ns) = parse_rfc3339_ns(s)
            {
                return Some(ns);
            }
        }
        if let Some(ms) = find_key(&self.test, "start_unix_ms").and_then(Value::as_i64) {
            return Some(ms as i128 * 1_000_000);
        }
        // The run directory is named after its UTC start: 20261127T054012Z or RFC 3339.
        let name = self.dir.file_name()?.to_string_lossy().into_owned();
        parse_rfc3339_ns(&name).or_else(|| parse_compact_ns(&name))
    }
}

fn str_field(v: &Value, keys: &[&str]) -> Option<String> {
    for k in keys {
        let found = v.get(k).or_else(|| v.get("options").and_then(|o| o.get(k)));
        match found {
            Some(Value::String(s)) => return Some(s.clone()),
            Some(Value::Number(n)) => return Some(n.to_string()),
            Some(Value::Array(a)) if !a.is_empty() => {
                return Some(
                    a.iter()
                        .map(|x| {
                            x.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| x.to_string())
                        })
                        .collect::<Vec<_>>()
                        .join(","),
                );
            }
            Some(Value::Object(o)) if o.contains_key("name") => {
                return o["name"].as_str().map(str::to_string);
            }
            _ => {}
        }
    }
    None
}

/// Depth-first search for a key anywhere in a JSON document (bounded depth).
pub fn find_key<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    fn go<'a>(v: &'a Value, key: &str, depth: u32) -> Option<&'a Value> {
        if depth > 8 {
            return None;
        }
        match v {
            Value::Object(m) => {
                if let Some(x) = m.get(key) {
                    return Some(x);
                }
                m.values().find_map(|c| go(c, key, depth + 1))
            }
            Value::Array(a) => a.iter().find_map(|c| go(c, key, depth + 1)),
            _ => None,
        }
    }
    go(v, key, 0)
}

fn read_json_opt(path: &Path) -> anyhow::Result<Option<Value>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("{}: not valid JSON", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The whole history in memory, for what needs every event at once (small histories).
pub fn read_history(path: &Path) -> anyhow::Result<Vec<Event>> {
    Ok(HistoryFile::new(path).read_all()?)
}

/// `results.json` is `{"valid": .., "results": {name: result}}` (what the report writes);
/// a list of results or a bare map of them is accepted too.
fn parse_results(v: &Value) -> anyhow::Result<Vec<CheckResult>> {
    let inner = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Object(m) if m.contains_key("results") => &m["results"],
        other => other,
    };
    let one = |name: Option<&str>, r: &Value| -> anyhow::Result<CheckResult> {
        let mut r = r.clone();
        if let (Some(n), Some(o)) = (name, r.as_object_mut()) {
            o.entry("checker")
                .or_insert_with(|| Value::String(n.to_string()));
        }
        Ok(serde_json::from_value(r)?)
    };
    match inner {
        Value::Array(a) => a.iter().map(|r| one(None, r)).collect(),
        Value::Object(m) => m
            .iter()
            .filter(|(_, r)| r.get("valid").is_some())
            .map(|(k, r)| one(Some(k), r).with_context(|| format!("result {k:?}")))
            .collect(),
        _ => bail!("expected an object or a list of checker results"),
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// `2026-11-27T05:40:12.123Z` (or `+00:00`) → ns since the epoch. UTC only.
pub fn parse_rfc3339_ns(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u32>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut frac_ns: i128 = 0;
    let mut rest = &s[19..];
    if let Some(r) = rest.strip_prefix('.') {
        let digits: String = r.chars().take_while(|c| c.is_ascii_digit()).collect();
        let mut scale = 100_000_000i128;
        for c in digits.chars().take(9) {
            frac_ns += (c as i128 - '0' as i128) * scale;
            scale /= 10;
        }
        rest = &r[digits.len()..];
    }
    if !(rest.is_empty() || rest.starts_with('Z') || rest.starts_with("+00:00")) {
        return None;
    }
    civil_ns(y as i64, mo, d, h, mi, se).map(|ns| ns + frac_ns)
}

fn civil_ns(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Option<i128> {
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(y, mo, d) as i128;
    Some(((days * 86400) + (h * 3600 + mi * 60 + s) as i128) * 1_000_000_000)
}

/// `20261127T054012Z` or `20261127T054012.123Z` → ns since the epoch.
fn parse_compact_ns(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    if b.len() < 15 || b[8] != b'T' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u32>().ok();
    civil_ns(
        num(0..4)? as i64,
        num(4..6)?,
        num(6..8)?,
        num(9..11)?,
        num(11..13)?,
        num(13..15)?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_parses_to_epoch_ns() {
        assert_eq!(
            parse_rfc3339_ns("1970-01-01T00:00:01Z"),
            Some(1_000_000_000)
        );
        assert_eq!(
            parse_rfc3339_ns("2000-03-01T00:00:00.5Z"),
            Some(951_868_800_000_000_000 + 500_000_000)
        );
        assert_eq!(
            parse_compact_ns("20000301T000000Z"),
            Some(951_868_800_000_000_000)
        );
        assert_eq!(parse_rfc3339_ns("not a time"), None);
    }
}
