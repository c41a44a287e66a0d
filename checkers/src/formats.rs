//! Reading histories: faultline's own JSON Lines and two foreign formats, so that histories
//! recorded by Jepsen (or shipped with other checkers) can be checked too.
//!
//! Every reader reports errors as `file:line: message`; none of them guesses silently.

use std::path::Path;

use serde_json::{Map, Number, Value};

use crate::history::{CAS_MISMATCH, Event, EventType, Process};

/// Which reader to use; `Auto` looks at the first meaningful line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Auto,
    /// faultline's `history.jsonl`.
    Jsonl,
    /// Jepsen's textual log: `INFO  jepsen.util - 3\t:invoke\t:cas\t[1 2]`.
    JepsenLog,
    /// Jepsen EDN op maps, one or more a line, or one vector of them.
    JepsenEdn,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Format::Auto),
            "jsonl" => Ok(Format::Jsonl),
            "jepsen-log" => Ok(Format::JepsenLog),
            "jepsen-edn" | "edn" => Ok(Format::JepsenEdn),
            other => Err(format!(
                "unknown history format {other:?} (expected auto, jsonl, jepsen-log or jepsen-edn)"
            )),
        }
    }
}

/// A history that cannot be read, with the place that made it so.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    // The I/O error is part of the message, not a `source`: error chains print it once.
    #[error("{path}: {error}")]
    Io {
        path: String,
        error: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Parse {
        path: String,
        line: usize,
        message: String,
    },
}

/// Reads and parses a history file.
pub fn load(path: &Path, format: Format) -> Result<Vec<Event>, ReadError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| ReadError::Io {
        path: name.clone(),
        error,
    })?;
    parse(&text, &name, format)
}

/// Parses a history held in memory; `path` only names it in errors.
pub fn parse(text: &str, path: &str, format: Format) -> Result<Vec<Event>, ReadError> {
    let format = if format == Format::Auto {
        detect(text)
    } else {
        format
    };
    let err = |line: usize, message: String| ReadError::Parse {
        path: path.to_string(),
        line,
        message,
    };
    let mut events = match format {
        Format::Jsonl | Format::Auto => parse_jsonl(text).map_err(|(l, m)| err(l, m))?,
        Format::JepsenLog => parse_jepsen_log(text).map_err(|(l, m)| err(l, m))?,
        Format::JepsenEdn => parse_edn_ops(text).map_err(|(l, m)| err(l, m))?,
    };
    for (i, e) in events.iter_mut().enumerate() {
        if e.index.is_none() {
            e.index = Some(i as u64);
        }
    }
    Ok(events)
}

/// Guesses the format from the first non-blank line.
pub fn detect(text: &str) -> Format {
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    if first.contains("jepsen.util") || first.starts_with("INFO") {
        Format::JepsenLog
    } else if first.starts_with("{:") || first.starts_with("[{:") || first.starts_with('[') {
        Format::JepsenEdn
    } else if first.starts_with('{') && serde_json::from_str::<Value>(first).is_ok() {
        Format::Jsonl
    } else if first.starts_with('{') {
        Format::JepsenEdn
    } else {
        Format::Jsonl
    }
}

type LineResult<T> = Result<T, (usize, String)>;

fn parse_jsonl(text: &str) -> LineResult<Vec<Event>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let e: Event =
            serde_json::from_str(line).map_err(|e| (i + 1, format!("not a history event: {e}")))?;
        out.push(e);
    }
    Ok(out)
}

/// Lines other than `... jepsen.util - <process> :<type> :<f> <value>` are log noise and
/// are skipped; a line with the marker that does not fit is an error.
fn parse_jepsen_log(text: &str) -> LineResult<Vec<Event>> {
    const MARKER: &str = "jepsen.util - ";
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        let Some(at) = line.find(MARKER) else {
            continue;
        };
        let rest = line[at + MARKER.len()..].trim();
        let take = |s: &str| {
            let s = s.trim_start();
            let end = s.find(char::is_whitespace).unwrap_or(s.len());
            (s[..end].to_string(), s[end..].to_string())
        };
        let (process, r) = take(rest);
        let (kind, r) = take(&r);
        let (f, r) = take(&r);
        if f.is_empty() {
            return Err((
                lineno,
                "expected `<process> :<type> :<f> <value>` after `jepsen.util -`".into(),
            ));
        }
        let value_text = r.trim();
        let (process, kind, f) = (process.as_str(), kind.as_str(), f.as_str());
        let process = parse_process(process).map_err(|m| (lineno, m))?;
        let kind = parse_type(kind.trim_start_matches(':')).map_err(|m| (lineno, m))?;
        let f = f.trim_start_matches(':').to_string();
        let mut value = if value_text.is_empty() {
            Value::Null
        } else {
            match read_edn_all(value_text, lineno) {
                Ok(mut forms) if forms.len() == 1 => forms.pop().unwrap().0,
                _ if matches!(process, Process::Named(_)) => Value::String(value_text.to_string()),
                Ok(_) => return Err((lineno, format!("expected one value, got {value_text:?}"))),
                Err((_, m)) => return Err((lineno, m)),
            }
        };
        let mut error = None;
        // A keyword in a completion (`:timed-out`) is Jepsen's error, not a value.
        if kind != EventType::Invoke && value_text.starts_with(':') {
            error = value.as_str().map(str::to_string);
            value = Value::Null;
        }
        // In these logs a failed cas means the compare ran and saw another value.
        if kind == EventType::Fail && f == "cas" && error.is_none() {
            error = Some(CAS_MISMATCH.to_string());
        }
        out.push(Event {
            index: None,
            time: 0,
            process,
            kind,
            f,
            key: None,
            value,
            error,
            node: None,
        });
    }
    Ok(out)
}

fn parse_process(s: &str) -> Result<Process, String> {
    if let Ok(n) = s.parse::<u64>() {
        Ok(Process::Client(n))
    } else if let Some(name) = s.strip_prefix(':') {
        Ok(Process::Named(name.to_string()))
    } else {
        Err(format!("process {s:?} is neither a number nor a keyword"))
    }
}

fn parse_type(s: &str) -> Result<EventType, String> {
    match s {
        "invoke" => Ok(EventType::Invoke),
        "ok" => Ok(EventType::Ok),
        "fail" => Ok(EventType::Fail),
        "info" => Ok(EventType::Info),
        other => Err(format!(
            "unknown op type {other:?} (expected invoke, ok, fail or info)"
        )),
    }
}

fn parse_edn_ops(text: &str) -> LineResult<Vec<Event>> {
    let mut forms = read_edn_all(text, 1)?;
    // A whole history may be one vector of op maps.
    if forms.len() == 1 && forms[0].0.is_array() {
        let (v, line) = forms.pop().unwrap();
        forms = v
            .as_array()
            .unwrap()
            .iter()
            .map(|x| (x.clone(), line))
            .collect();
    }
    let mut out = Vec::with_capacity(forms.len());
    for (form, line) in forms {
        out.push(edn_map_to_event(form).map_err(|m| (line, m))?);
    }
    Ok(out)
}

fn edn_map_to_event(form: Value) -> Result<Event, String> {
    let Value::Object(mut m) = form else {
        return Err(format!("expected an op map, got {form}"));
    };
    let process = match m.remove("process") {
        Some(Value::Number(n)) => {
            Process::Client(n.as_u64().ok_or("process must be a non-negative integer")?)
        }
        Some(Value::String(s)) => Process::Named(s),
        Some(other) => return Err(format!("bad :process {other}")),
        None => return Err("op map without :process".into()),
    };
    let kind = match m.remove("type") {
        Some(Value::String(s)) => parse_type(&s)?,
        _ => return Err("op map without a keyword :type".into()),
    };
    let f = match m.remove("f") {
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
        None => return Err("op map without :f".into()),
    };
    let key = match m.remove("key") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    };
    let num = |v: Option<Value>| v.and_then(|v| v.as_u64());
    Ok(Event {
        index: num(m.remove("index")),
        time: num(m.remove("time")).unwrap_or(0),
        process,
        kind,
        f,
        key,
        value: m.remove("value").unwrap_or(Value::Null),
        error: m.remove("error").map(|e| match e {
            Value::String(s) => s,
            other => other.to_string(),
        }),
        node: m.remove("node"),
    })
}

/// Reads every top-level EDN form in `text` as JSON, with the line each starts on.
/// Keywords and symbols become strings without their colon; sets and lists become arrays;
/// tagged literals (`#inst "..."`) become their value.
fn read_edn_all(text: &str, first_line: usize) -> LineResult<Vec<(Value, usize)>> {
    let mut r = EdnReader {
        s: text.as_bytes(),
        pos: 0,
        line: first_line,
        depth: 0,
    };
    let mut out = Vec::new();
    loop {
        r.skip_ws();
        if r.pos >= r.s.len() {
            return Ok(out);
        }
        let line = r.line;
        let v = r.form()?;
        out.push((v, line));
    }
}

struct EdnReader<'a> {
    s: &'a [u8],
    pos: usize,
    line: usize,
    depth: usize,
}

/// Nesting deeper than this is not an op history; refusing it bounds the recursion.
const EDN_DEPTH_MAX: usize = 256;

impl EdnReader<'_> {
    fn err<T>(&self, m: impl Into<String>) -> LineResult<T> {
        Err((self.line, m.into()))
    }

    fn skip_ws(&mut self) {
        while let Some(&c) = self.s.get(self.pos) {
            match c {
                b'\n' => {
                    self.line += 1;
                    self.pos += 1;
                }
                b' ' | b'\t' | b'\r' | b',' => self.pos += 1,
                b';' => {
                    while self.s.get(self.pos).is_some_and(|&c| c != b'\n') {
                        self.pos += 1;
                    }
                }
                _ => break,
            }
        }
    }

    fn form(&mut self) -> LineResult<Value> {
        self.skip_ws();
        let Some(&c) = self.s.get(self.pos) else {
            return self.err("unexpected end of input");
        };
        match c {
            b'{' => {
                self.pos += 1;
                let items = self.seq(b'}')?;
                if items.len() % 2 != 0 {
                    return self.err("map with an odd number of forms");
                }
                let mut m = Map::new();
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    let k = match k {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    m.insert(k, v);
                }
                Ok(Value::Object(m))
            }
            b'[' | b'(' => {
                self.pos += 1;
                Ok(Value::Array(self.seq(if c == b'[' {
                    b']'
                } else {
                    b')'
                })?))
            }
            b'#' => {
                self.pos += 1;
                if self.s.get(self.pos) == Some(&b'{') {
                    self.pos += 1;
                    return Ok(Value::Array(self.seq(b'}')?));
                }
                // A tagged literal: skip the tag, keep the value.
                self.token();
                self.form()
            }
            b'"' => self.string(),
            b'}' | b']' | b')' => self.err(format!("unexpected {:?}", c as char)),
            b'\\' => {
                self.pos += 1;
                let t = self.token();
                Ok(Value::String(t))
            }
            _ => {
                let t = self.token();
                Ok(atom(&t))
            }
        }
    }

    fn seq(&mut self, close: u8) -> LineResult<Vec<Value>> {
        self.depth += 1;
        if self.depth > EDN_DEPTH_MAX {
            return self.err("EDN nested too deeply");
        }
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            match self.s.get(self.pos) {
                None => return self.err(format!("missing closing {:?}", close as char)),
                Some(&c) if c == close => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(items);
                }
                _ => items.push(self.form()?),
            }
        }
    }

    fn token(&mut self) -> String {
        let start = self.pos;
        while let Some(&c) = self.s.get(self.pos) {
            if c.is_ascii_whitespace()
                || matches!(
                    c,
                    b',' | b'{' | b'}' | b'[' | b']' | b'(' | b')' | b'"' | b';'
                )
            {
                break;
            }
            self.pos += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.pos]).into_owned()
    }

    fn string(&mut self) -> LineResult<Value> {
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.pos) else {
                return self.err("unterminated string");
            };
            self.pos += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.s.get(self.pos) else {
                        return self.err("unterminated string");
                    };
                    self.pos += 1;
                    out.push(match e {
                        b'n' => b'\n',
                        b't' => b'\t',
                        b'r' => b'\r',
                        other => other,
                    });
                }
                b'\n' => {
                    self.line += 1;
                    out.push(c);
                }
                _ => out.push(c),
            }
        }
        Ok(Value::String(String::from_utf8_lossy(&out).into_owned()))
    }
}

fn atom(t: &str) -> Value {
    match t {
        "nil" => return Value::Null,
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        _ => {}
    }
    if let Some(k) = t.strip_prefix(':') {
        return Value::String(k.to_string());
    }
    let digits = t.trim_end_matches(['N', 'M']);
    if let Ok(i) = digits.parse::<i64>() {
        return Value::Number(i.into());
    }
    if let Ok(u) = digits.parse::<u64>() {
        return Value::Number(u.into());
    }
    if let Some(n) = digits.parse::<f64>().ok().and_then(Number::from_f64) {
        return Value::Number(n);
    }
    Value::String(t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jepsen_log_lines_with_tabs_or_spaces_and_errors() {
        let text = "INFO  jepsen.util - 4\t:invoke\t:cas\t[2 4]\n\
                    INFO  jepsen.util - 4   :fail   :cas    [2 4]\n\
                    INFO jepsen.core - unrelated noise\n\
                    INFO  jepsen.util - 1\t:info\t:write\t:timed-out\n";
        let ev = parse(text, "t.log", Format::Auto).unwrap();
        assert_eq!(ev.len(), 3);
        assert_eq!(ev[0].value, serde_json::json!([2, 4]));
        assert_eq!(ev[1].kind, EventType::Fail);
        assert_eq!(ev[1].error.as_deref(), Some(CAS_MISMATCH));
        assert_eq!(ev[2].error.as_deref(), Some("timed-out"));
        assert_eq!(ev[2].value, Value::Null);
        assert_eq!(ev[2].index, Some(2));
    }

    #[test]
    fn edn_maps_and_vectors() {
        let text = "{:process 9, :type :invoke, :f :append, :key \"0\", :value \"x 9 0 y\"}\n\
                    [{:process :nemesis :type :info :f :start :value #{:n1}} {:process 1 :type :ok :f :read :value nil :time 17}]";
        assert_eq!(detect(text), Format::JepsenEdn);
        let ev = parse(text, "t.edn", Format::Auto);
        // Two top-level forms of different shapes: the second is a vector, not an op map.
        assert!(ev.is_err());
        let ev = parse(text.lines().next().unwrap(), "t.edn", Format::Auto).unwrap();
        assert_eq!(ev[0].key.as_deref(), Some("0"));
        assert_eq!(ev[0].value, serde_json::json!("x 9 0 y"));
        let ev = parse(text.lines().nth(1).unwrap(), "t.edn", Format::Auto).unwrap();
        assert!(ev[0].process.is_nemesis());
        assert_eq!(ev[1].time, 17);
    }

    #[test]
    fn errors_name_the_line() {
        let text = "{\"process\":1,\"type\":\"invoke\",\"f\":\"read\"}\n{\"process\":1,\"type\":\"okay\",\"f\":\"read\"}\n";
        let e = parse(text, "h.jsonl", Format::Auto)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("h.jsonl:2: "), "{e}");
        let e = parse(
            "{:process 1 :type :ok\n :f :read",
            "h.edn",
            Format::JepsenEdn,
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("h.edn:2: "), "{e}");
        let e = parse(
            "INFO  jepsen.util - x\t:ok\t:read\t1",
            "h.log",
            Format::Auto,
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("h.log:1: "), "{e}");
    }
}
