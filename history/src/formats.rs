//! Reading histories: faultline's own JSON Lines and Jepsen's formats (its textual log, EDN
//! op maps and the JSON form of the same maps), so that histories recorded by Jepsen (or
//! shipped with other checkers) can be checked too.
//!
//! Every reader reports errors as `file:line: message`; none of them guesses silently. The
//! line-oriented formats (JSON Lines, the Jepsen log, Jepsen JSON one op a line) are read
//! line by line, so loading costs the events and one line, not the whole text besides.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use serde_json::{Map, Number, Value};

use crate::{CAS_MISMATCH, Event, EventType, Process};

/// Which reader to use; `Auto` looks at the start of the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Auto,
    /// faultline's `history.jsonl`.
    Jsonl,
    /// Jepsen's textual log: `INFO  jepsen.util - 3\t:invoke\t:cas\t[1 2]`.
    JepsenLog,
    /// Jepsen EDN op maps, one or more a line, or one vector (or list) of them.
    JepsenEdn,
    /// Jepsen's JSON history: op objects (`"type":"invoke"`, `"f"`, `"value"`, `"process"`,
    /// ...) one a line, or one JSON array of them.
    JepsenJson,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::Jsonl => "jsonl",
            Format::JepsenLog => "jepsen-log",
            Format::JepsenEdn => "jepsen-edn",
            Format::JepsenJson => "jepsen-json",
        }
    }
}

/// A `--format` name that is none of the known ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown history format {0:?} (expected auto, jsonl, jepsen-log, jepsen-edn or jepsen-json)"
)]
pub struct UnknownFormat(pub String);

impl From<UnknownFormat> for String {
    fn from(e: UnknownFormat) -> String {
        e.to_string()
    }
}

impl std::str::FromStr for Format {
    type Err = UnknownFormat;
    fn from_str(s: &str) -> Result<Self, UnknownFormat> {
        match s {
            "auto" => Ok(Format::Auto),
            "jsonl" => Ok(Format::Jsonl),
            "jepsen-log" => Ok(Format::JepsenLog),
            "jepsen-edn" | "edn" => Ok(Format::JepsenEdn),
            "jepsen-json" => Ok(Format::JepsenJson),
            other => Err(UnknownFormat(other.to_string())),
        }
    }
}

/// A history that cannot be read, with the place that made it so.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    // The I/O error is part of the message, not a `source`: error chains print it once.
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("{path}:{line}: {problem}")]
    Parse {
        path: String,
        line: usize,
        problem: Problem,
    },
}

/// What is wrong at one line of a history.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("not a history event: {0}")]
    NotAnEvent(serde_json::Error),
    #[error("not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("expected `<process> :<type> :<f> <value>` after `jepsen.util -`")]
    LogLineShape,
    #[error("process {0:?} is neither a number nor a keyword")]
    BadProcess(String),
    #[error("unknown op type {0:?} (expected invoke, ok, fail or info)")]
    UnknownType(String),
    #[error("expected one value, got {0:?}")]
    NotOneValue(String),
    #[error("expected an op map, got {0}")]
    NotAnOp(String),
    #[error("op without {0}")]
    MissingField(&'static str),
    #[error("bad {field}: {value}")]
    BadField { field: &'static str, value: String },
    #[error("{0}")]
    Edn(EdnProblem),
    #[error("{0}")]
    JsonArray(&'static str),
}

/// Why text is not EDN this reader accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EdnProblem {
    #[error("unexpected end of input")]
    Eof,
    #[error("map with an odd number of forms")]
    OddMap,
    #[error("unexpected {0:?}")]
    Unexpected(char),
    #[error("EDN nested too deeply")]
    TooDeep,
    #[error("missing closing {0:?}")]
    Unclosed(char),
    #[error("unterminated string")]
    UnterminatedString,
}

/// A failure inside a reader, before it is given the file's name.
enum Fail {
    Io(std::io::Error),
    At(usize, Problem),
}

impl From<std::io::Error> for Fail {
    fn from(e: std::io::Error) -> Self {
        Fail::Io(e)
    }
}

type ReadResult<T> = Result<T, Fail>;

/// Bytes `load` looks at to recognise the format.
const DETECT_BYTES: u64 = 64 * 1024;

/// Reads and parses a history file.
///
/// Line-oriented formats stream through a buffered reader. EDN, and Jepsen JSON given as
/// one array, are read whole first: a form may span lines, so the text stays in memory
/// while it is parsed (peak about the text plus its events).
pub fn load(path: &Path, format: Format) -> Result<Vec<Event>, ReadError> {
    let name = path.display().to_string();
    let io = |error| ReadError::Io {
        path: name.clone(),
        error,
    };
    let mut file = File::open(path).map_err(io)?;
    let format = if format == Format::Auto {
        let mut head = Vec::new();
        (&mut file)
            .take(DETECT_BYTES)
            .read_to_end(&mut head)
            .map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        // A multi-byte character cut at the end of the sample does not change the verdict.
        detect(&String::from_utf8_lossy(&head))
    } else {
        format
    };
    finish(read(BufReader::new(file), format), &name)
}

/// Parses a history held in memory; `path` only names it in errors.
pub fn parse(text: &str, path: &str, format: Format) -> Result<Vec<Event>, ReadError> {
    let format = if format == Format::Auto {
        detect(text)
    } else {
        format
    };
    finish(read(text.as_bytes(), format), path)
}

fn read(r: impl BufRead, format: Format) -> ReadResult<Vec<Event>> {
    match format {
        Format::Jsonl | Format::Auto => read_jsonl(r),
        Format::JepsenLog => read_jepsen_log(r),
        Format::JepsenEdn => {
            let text = read_all(r)?;
            parse_edn_ops(&text).map_err(|(l, p)| Fail::At(l, p))
        }
        Format::JepsenJson => read_jepsen_json(r),
    }
}

fn finish(r: ReadResult<Vec<Event>>, path: &str) -> Result<Vec<Event>, ReadError> {
    let mut events = r.map_err(|f| match f {
        Fail::Io(error) => ReadError::Io {
            path: path.to_string(),
            error,
        },
        Fail::At(line, problem) => ReadError::Parse {
            path: path.to_string(),
            line,
            problem,
        },
    })?;
    for (i, e) in events.iter_mut().enumerate() {
        if e.index.is_none() {
            e.index = Some(i as u64);
        }
    }
    // Growth by doubling leaves up to half the vector unused for the whole check.
    events.shrink_to_fit();
    Ok(events)
}

fn read_all(mut r: impl BufRead) -> ReadResult<String> {
    let mut text = String::new();
    r.read_to_string(&mut text)?;
    Ok(text)
}

/// Calls `each(line number, line)` for every line, reusing one buffer.
fn for_each_line(
    mut r: impl BufRead,
    mut each: impl FnMut(usize, &str) -> ReadResult<bool>,
) -> ReadResult<()> {
    let mut line = String::new();
    let mut lineno = 0;
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        lineno += 1;
        if !each(lineno, line.trim_end_matches(['\n', '\r']))? {
            return Ok(());
        }
    }
}

/// Recognises the format from the start of the text (its first 64 KiB is enough).
///
/// EDN may open with `;` comments, `(` or `[` of op maps with keyword keys; Jepsen JSON is an
/// array of objects, or objects one a line that faultline's own event shape does not fit;
/// a Jepsen log has its `jepsen.util` marker. Anything else is read as JSON Lines, whose
/// reader then names the first line that is not an event.
pub fn detect(text: &str) -> Format {
    let text = text.trim_start_matches('\u{feff}');
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    if first.starts_with(';') || first.starts_with('(') {
        return Format::JepsenEdn;
    }
    if first.starts_with('[') {
        // The first character inside the array, then inside its first element.
        let mut inner = text.trim_start()[1..].trim_start().chars();
        return match (inner.next(), inner.as_str().trim_start().chars().next()) {
            (Some('{'), Some('"')) | (Some(']'), _) => Format::JepsenJson,
            _ => Format::JepsenEdn,
        };
    }
    if let Some(inside) = first.strip_prefix('{') {
        let object = first.trim_end_matches(',');
        // faultline writes no commas between events; Jepsen's JSON form may.
        if object.len() == first.len() && serde_json::from_str::<Event>(object).is_ok() {
            return Format::Jsonl;
        }
        return match serde_json::from_str::<Value>(object) {
            Ok(Value::Object(m)) if m.contains_key("type") => Format::JepsenJson,
            Ok(_) => Format::Jsonl,
            Err(_) if inside.trim_start().starts_with('"') => Format::Jsonl,
            Err(_) => Format::JepsenEdn,
        };
    }
    let head: String = text.lines().take(64).collect::<Vec<_>>().join("\n");
    if head.contains("jepsen.util - ") || first.starts_with("INFO") {
        Format::JepsenLog
    } else {
        Format::Jsonl
    }
}

fn read_jsonl(r: impl BufRead) -> ReadResult<Vec<Event>> {
    let mut out = Vec::new();
    for_each_line(r, |lineno, line| {
        if line.trim().is_empty() {
            return Ok(true);
        }
        let e: Event =
            serde_json::from_str(line).map_err(|e| Fail::At(lineno, Problem::NotAnEvent(e)))?;
        out.push(e);
        Ok(true)
    })?;
    Ok(out)
}

/// Jepsen JSON: either one array of op objects (read whole, as it may be one line), or op
/// objects one a line, each optionally followed by a comma.
fn read_jepsen_json(mut r: impl BufRead) -> ReadResult<Vec<Event>> {
    let mut out = Vec::new();
    let mut array_start: Option<(usize, String)> = None;
    for_each_line(&mut r, |lineno, line| {
        let t = line.trim();
        if t.is_empty() {
            return Ok(true);
        }
        if out.is_empty() && t.starts_with('[') {
            array_start = Some((lineno, line.to_string()));
            return Ok(false);
        }
        let v: Value = serde_json::from_str(t.trim_end_matches(','))
            .map_err(|e| Fail::At(lineno, Problem::NotJson(e)))?;
        out.push(map_to_event(v).map_err(|p| Fail::At(lineno, p))?);
        Ok(true)
    })?;
    let Some((first_line, mut text)) = array_start else {
        return Ok(out);
    };
    text.push('\n');
    r.read_to_string(&mut text)?;
    parse_json_array(&text, first_line).map_err(|(l, p)| Fail::At(l, p))
}

type LineResult<T> = Result<T, (usize, Problem)>;

/// One JSON array of op objects, element by element so that each error names its line.
fn parse_json_array(text: &str, first_line: usize) -> LineResult<Vec<Event>> {
    let b = text.as_bytes();
    let mut pos = 0;
    let mut line = first_line;
    let skip_ws = |pos: &mut usize, line: &mut usize| {
        while let Some(&c) = b.get(*pos) {
            match c {
                b'\n' => *line += 1,
                b' ' | b'\t' | b'\r' => {}
                _ => break,
            }
            *pos += 1;
        }
    };
    skip_ws(&mut pos, &mut line);
    if b.get(pos) != Some(&b'[') {
        return Err((
            line,
            Problem::JsonArray("expected a JSON array of op objects"),
        ));
    }
    pos += 1;
    let mut out = Vec::new();
    skip_ws(&mut pos, &mut line);
    if b.get(pos) == Some(&b']') {
        pos += 1;
    } else {
        loop {
            skip_ws(&mut pos, &mut line);
            let op_line = line;
            let mut values = serde_json::Deserializer::from_str(&text[pos..]).into_iter::<Value>();
            let v = match values.next() {
                Some(Ok(v)) => v,
                Some(Err(e)) => {
                    return Err((line + e.line().saturating_sub(1), Problem::NotJson(e)));
                }
                None => return Err((line, Problem::JsonArray("missing the closing ']'"))),
            };
            let end = pos + values.byte_offset();
            line += b[pos..end].iter().filter(|&&c| c == b'\n').count();
            pos = end;
            out.push(map_to_event(v).map_err(|p| (op_line, p))?);
            skip_ws(&mut pos, &mut line);
            match b.get(pos) {
                Some(b',') => pos += 1,
                Some(b']') => {
                    pos += 1;
                    break;
                }
                Some(_) => {
                    return Err((line, Problem::JsonArray("expected ',' or ']' after an op")));
                }
                None => return Err((line, Problem::JsonArray("missing the closing ']'"))),
            }
        }
    }
    skip_ws(&mut pos, &mut line);
    if pos < b.len() {
        return Err((
            line,
            Problem::JsonArray("text after the array's closing ']'"),
        ));
    }
    Ok(out)
}

/// Lines other than `... jepsen.util - <process> :<type> :<f> <value>` are log noise and
/// are skipped, so a text that is no Jepsen log at all yields no events (which checkers
/// answer `unknown`); a line with the marker that does not fit is an error.
fn read_jepsen_log(r: impl BufRead) -> ReadResult<Vec<Event>> {
    let mut out = Vec::new();
    for_each_line(r, |lineno, line| {
        if let Some(e) = jepsen_log_line(line, lineno).map_err(|p| Fail::At(lineno, p))? {
            out.push(e);
        }
        Ok(true)
    })?;
    Ok(out)
}

fn jepsen_log_line(line: &str, lineno: usize) -> Result<Option<Event>, Problem> {
    const MARKER: &str = "jepsen.util - ";
    let Some(at) = line.find(MARKER) else {
        return Ok(None);
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
        return Err(Problem::LogLineShape);
    }
    let value_text = r.trim();
    let process = parse_process(&process)?;
    let kind = parse_type(kind.trim_start_matches(':'))?;
    let f = f.trim_start_matches(':').to_string();
    let mut value = if value_text.is_empty() {
        Value::Null
    } else {
        match read_edn_all(value_text, lineno) {
            Ok(mut forms) if forms.len() == 1 => forms.pop().expect("one form").0,
            _ if matches!(process, Process::Named(_)) => Value::String(value_text.to_string()),
            Ok(_) => return Err(Problem::NotOneValue(value_text.to_string())),
            Err((_, p)) => return Err(p),
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
    Ok(Some(Event {
        index: None,
        time: 0,
        process,
        kind,
        f,
        key: None,
        value,
        error,
        node: None,
    }))
}

fn parse_process(s: &str) -> Result<Process, Problem> {
    if let Ok(n) = s.parse::<u64>() {
        Ok(Process::Client(n))
    } else if let Some(name) = s.strip_prefix(':') {
        Ok(Process::Named(name.to_string()))
    } else {
        Err(Problem::BadProcess(s.to_string()))
    }
}

fn parse_type(s: &str) -> Result<EventType, Problem> {
    match s {
        "invoke" => Ok(EventType::Invoke),
        "ok" => Ok(EventType::Ok),
        "fail" => Ok(EventType::Fail),
        "info" => Ok(EventType::Info),
        other => Err(Problem::UnknownType(other.to_string())),
    }
}

fn parse_edn_ops(text: &str) -> LineResult<Vec<Event>> {
    let mut forms = read_edn_all(text, 1)?;
    // A whole history may be one vector (or list) of op maps.
    if forms.len() == 1 && forms[0].0.is_array() {
        let (v, line) = forms.pop().expect("one form");
        let Value::Array(items) = v else {
            unreachable!("checked to be an array")
        };
        forms = items.into_iter().map(|x| (x, line)).collect();
    }
    // Jepsen's own examples (its long-fork test) may leave `:process` out of every op: Jepsen
    // then reads them as one process (`nil`), sequential, and so does this reader, as client
    // process 0. A history where only some ops lack it is still an error at the first.
    if !forms.is_empty()
        && forms
            .iter()
            .all(|(f, _)| f.as_object().is_some_and(|m| !m.contains_key("process")))
    {
        for (f, _) in &mut forms {
            if let Value::Object(m) = f {
                m.insert("process".into(), Value::from(0));
            }
        }
    }
    let mut out = Vec::with_capacity(forms.len());
    for (form, line) in forms {
        out.push(map_to_event(form).map_err(|p| (line, p))?);
    }
    Ok(out)
}

/// Is this value a transaction: a list of micro-ops like `[:append 3 1]` or `[:r 3 nil]`?
fn is_txn(v: Option<&Value>) -> bool {
    v.and_then(Value::as_array).is_some_and(|ops| {
        !ops.is_empty()
            && ops.iter().all(|m| {
                m.as_array()
                    .is_some_and(|m| m.len() == 3 && m[0].is_string())
            })
    })
}

/// An op map, from EDN or JSON alike (both arrive as JSON values).
fn map_to_event(form: Value) -> Result<Event, Problem> {
    let Value::Object(mut m) = form else {
        let mut shown = form.to_string();
        if shown.len() > 80 {
            let cut = (0..=80)
                .rev()
                .find(|&i| shown.is_char_boundary(i))
                .unwrap_or(0);
            shown.truncate(cut);
            shown.push_str("...");
        }
        return Err(Problem::NotAnOp(shown));
    };
    let process = match m.remove("process") {
        Some(Value::Number(n)) => Process::Client(n.as_u64().ok_or_else(|| Problem::BadField {
            field: "process",
            value: format!("{n} (a client process is a non-negative integer)"),
        })?),
        Some(Value::String(s)) => Process::Named(s),
        Some(other) => {
            return Err(Problem::BadField {
                field: "process",
                value: other.to_string(),
            });
        }
        None => return Err(Problem::MissingField("process")),
    };
    let kind = match m.remove("type") {
        Some(Value::String(s)) => parse_type(&s)?,
        Some(other) => {
            return Err(Problem::BadField {
                field: "type",
                value: other.to_string(),
            });
        }
        None => return Err(Problem::MissingField("type")),
    };
    let f = match m.remove("f") {
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
        // Elle's transactional histories leave `:f` out: every op there is a transaction.
        None if is_txn(m.get("value")) => "txn".to_string(),
        None => return Err(Problem::MissingField("f")),
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
    fn err<T>(&self, p: EdnProblem) -> LineResult<T> {
        Err((self.line, Problem::Edn(p)))
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
            return self.err(EdnProblem::Eof);
        };
        match c {
            b'{' => {
                self.pos += 1;
                let items = self.seq(b'}')?;
                if items.len() % 2 != 0 {
                    return self.err(EdnProblem::OddMap);
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
            b'}' | b']' | b')' => self.err(EdnProblem::Unexpected(c as char)),
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
            return self.err(EdnProblem::TooDeep);
        }
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            match self.s.get(self.pos) {
                None => return self.err(EdnProblem::Unclosed(close as char)),
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
                return self.err(EdnProblem::UnterminatedString);
            };
            self.pos += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.s.get(self.pos) else {
                        return self.err(EdnProblem::UnterminatedString);
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
    fn edn_history_without_any_process_reads_as_one_client() {
        let text = "[{:type :invoke, :f :read, :value [[:r 0 nil]]},\n{:type :ok, :f :read, :value [[:r 0 1]]}]";
        let ev = parse(text, "lf.edn", Format::Auto).unwrap();
        assert_eq!(ev.len(), 2);
        assert!(ev.iter().all(|e| e.client() == Some(0)), "{ev:?}");
        // Only some ops without a process: no guess, an error naming the line.
        let text = "{:type :invoke, :f :read, :process 1}\n{:type :ok, :f :read}";
        let e = parse(text, "h.edn", Format::Auto).unwrap_err().to_string();
        assert_eq!(e, "h.edn:2: op without process");
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

    /// Each sample is detected as `want` and reads to at least one event.
    fn assert_detects(want: Format, samples: &[&str]) {
        for text in samples {
            assert_eq!(detect(text), want, "{text:?}");
            let ev =
                parse(text, "sample", Format::Auto).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert!(!ev.is_empty(), "{text:?}");
        }
    }

    #[test]
    fn auto_detects_faultline_jsonl() {
        assert_detects(
            Format::Jsonl,
            &[
                "{\"process\":1,\"type\":\"invoke\",\"f\":\"read\",\"value\":null}\n",
                "\n\n{\"index\":0,\"time\":5,\"process\":\"nemesis\",\"type\":\"info\",\"f\":\"kill\"}\n",
            ],
        );
    }

    #[test]
    fn auto_detects_a_jepsen_log() {
        assert_detects(
            Format::JepsenLog,
            &[
                "INFO  jepsen.util - 3\t:invoke\t:cas\t[1 2]\n",
                "INFO jepsen.core - starting\nINFO  jepsen.util - 3\t:invoke\t:read\tnil\n",
            ],
        );
    }

    #[test]
    fn auto_detects_edn_opening_with_a_map_vector_list_comment_or_blank() {
        assert_detects(
            Format::JepsenEdn,
            &[
                "{:process 0, :type :invoke, :f :read, :value nil}\n",
                "[{:process 0, :type :invoke, :f :read, :value nil}\n {:process 0 :type :ok :f :read :value 1}]",
                "({:type :invoke, :f :write, :value 0, :process 0}\n {:type :ok, :f :write, :value 0, :process 0})",
                "; a comment first\n[{:process 4, :type :invoke, :f :write, :value 2}]",
                "  \n\t{:index 1 :type :invoke :process 2 :value [[:append 4 2]]}",
            ],
        );
    }

    #[test]
    fn auto_detects_jepsen_json_not_misreading_it_as_edn() {
        assert_detects(
            Format::JepsenJson,
            &[
                "[{\"type\":\"invoke\",\"f\":\"read\",\"process\":0,\"index\":0},\n{\"type\":\"ok\",\"f\":\"read\",\"process\":0,\"value\":1,\"index\":1}]",
                "[\n  {\"process\":94,\"type\":\"invoke\",\"f\":\"read\",\"value\":null}]",
                "{\"type\":\"invoke\",\"f\":\"release\",\"process\":1,\"time\":3,\"index\":0},\n",
                "{\"type\":\"fail\",\"f\":\"release\",\"process\":3,\"error\":[\"not-found\",\"lease\"]}\n",
                "{\"index\":0,\"process\":1,\"type\":\"invoke\",\"value\":[[\"append\",253,1]]}\n",
            ],
        );
    }

    #[test]
    fn edn_transactions_with_and_without_f_read_as_txn() {
        // Elle's own histories leave out `:f`, use integer keys and read lists.
        let text = "{:index 0 :process 1 :type :invoke, :value [[:append 255 8] [:r 253 nil]]}\n\
                    {:index 1 :process 1 :type :ok, :value [[:append 255 8] [:r 253 [1 3 4]]]}\n\
                    {:type :ok, :f :txn :value [[:w :x 2] [:r :x 2]], :process 0}\n";
        let ev = parse(text, "h.edn", Format::JepsenEdn).unwrap();
        assert!(ev.iter().all(|e| e.f == "txn"), "{ev:?}");
        assert_eq!(ev[1].value, serde_json::json!([["append", 255, 8], ["r", 253, [1, 3, 4]]]));
        assert_eq!(ev[2].value, serde_json::json!([["w", "x", 2], ["r", "x", 2]]));
    }

    #[test]
    fn jepsen_json_reads_nemesis_errors_and_elle_transactions() {
        let text = "[{\"type\":\"invoke\",\"f\":\"acquire\",\"process\":3,\"time\":371,\"index\":2},\
                    {\"type\":\"info\",\"f\":\"start\",\"process\":\"nemesis\",\"time\":400,\"index\":3},\n\
                    {\"type\":\"fail\",\"f\":\"acquire\",\"process\":3,\"time\":500,\"error\":[\"not-found\",\"x\"],\"index\":4},\n\
                    {\"index\":5,\"process\":1,\"type\":\"invoke\",\"value\":[[\"r\",253,null]]}]\n";
        let ev = parse(text, "h.json", Format::JepsenJson).unwrap();
        assert_eq!(ev.len(), 4);
        assert_eq!(ev[0].client(), Some(3));
        assert_eq!(ev[0].time, 371);
        assert!(ev[1].process.is_nemesis());
        assert_eq!(ev[2].error.as_deref(), Some("[\"not-found\",\"x\"]"));
        assert_eq!(ev[3].f, "txn");
        // The same ops one a line read the same.
        let lines: String = ev
            .iter()
            .map(|e| serde_json::to_string(e).unwrap() + ",\n")
            .collect();
        assert_eq!(
            parse(&lines, "h.json", Format::JepsenJson).unwrap().len(),
            4
        );
    }

    #[test]
    fn jepsen_json_errors_name_the_line_of_the_op() {
        let text = "[{\"type\":\"invoke\",\"f\":\"read\",\"process\":0},\n{\"type\":\"invoke\",\"f\":\"read\"},\n{}]";
        let e = parse(text, "h.json", Format::Auto).unwrap_err().to_string();
        assert_eq!(e, "h.json:2: op without process");
        let e = parse(
            "[{\"type\":\"ok\",\"f\":\"read\",\"process\":0}\n{\"type\"",
            "h.json",
            Format::Auto,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(e, "h.json:2: expected ',' or ']' after an op");
        let e = parse(
            "{\"type\":\"ok\",\"process\":0,\"value\":3}\n",
            "h.json",
            Format::JepsenJson,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(e, "h.json:1: op without f");
    }

    #[test]
    fn empty_or_blank_text_reads_as_no_events_in_every_format() {
        for format in [
            Format::Auto,
            Format::Jsonl,
            Format::JepsenLog,
            Format::JepsenEdn,
            Format::JepsenJson,
        ] {
            for text in ["", "\n\n  \n"] {
                let ev = parse(text, "empty", format).unwrap_or_else(|e| panic!("{format:?}: {e}"));
                assert!(ev.is_empty(), "{format:?}");
            }
        }
    }

    #[test]
    fn readme_as_jepsen_log_yields_no_invented_ops() {
        let readme = "# faultline\n\nA Jepsen-style harness. Histories are checked with\n\
                      `faultline check`; see jepsen.util for the log format.\n\n- one\n- two\n";
        assert_eq!(
            parse(readme, "README.md", Format::JepsenLog).unwrap(),
            Vec::new()
        );
        // Read as JSON Lines (what `auto` picks for prose) it is an error at its first line.
        let e = parse(readme, "README.md", Format::Auto)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("README.md:1: not a history event"), "{e}");
    }

    #[test]
    fn loading_a_file_streams_jsonl_and_names_the_file_in_errors() {
        let dir =
            std::env::temp_dir().join(format!("faultline-history-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("h.jsonl");
        let line = "{\"process\":1,\"type\":\"invoke\",\"f\":\"read\"}\n{\"process\":1,\"type\":\"ok\",\"f\":\"read\",\"value\":2}\n";
        std::fs::write(&good, line.repeat(3)).unwrap();
        let ev = load(&good, Format::Auto).unwrap();
        assert_eq!(ev.len(), 6);
        assert_eq!(ev[5].index, Some(5));
        let bad = dir.join("bad.jsonl");
        std::fs::write(&bad, format!("{line}{{\"process\":1}}\n")).unwrap();
        let e = load(&bad, Format::Auto).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}:3: not a history event", bad.display())),
            "{e}"
        );
        let e = load(&dir.join("absent.jsonl"), Format::Auto)
            .unwrap_err()
            .to_string();
        assert!(e.contains("absent.jsonl: "), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
