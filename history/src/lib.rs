//! Histories: what a run recorded, as events with Jepsen semantics, and the readers of
//! every format a history may come in (faultline's JSON Lines, Jepsen's log, EDN and JSON).
//! See `checkers/HISTORY.md` for the full description of faultline's own format.
//!
//! A crate of its own so that what records histories (nemesis, workloads, the runner) does
//! not depend on what judges them (the checkers).

pub mod digest;
pub mod formats;
pub mod pairing;
pub mod stream;
pub mod values;

use serde::{Deserialize, Serialize};

/// One line of `history.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the history; assigned in order when absent on input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    /// Nanoseconds since the run began.
    #[serde(default)]
    pub time: u64,
    pub process: Process,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub f: String,
    /// Absent means the history is of a single register.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default)]
    pub value: serde_json::Value,
    /// Why an op failed or is indeterminate; for nemesis events, a description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The node a client op was sent to, or the nodes a fault targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<serde_json::Value>,
}

/// Clients are numbered; the nemesis is the string `"nemesis"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Process {
    Client(u64),
    Named(String),
}

impl Process {
    pub const NEMESIS: &'static str = "nemesis";

    pub fn nemesis() -> Self {
        Process::Named(Self::NEMESIS.to_string())
    }

    pub fn is_nemesis(&self) -> bool {
        matches!(self, Process::Named(n) if n == Self::NEMESIS)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Invoke,
    Ok,
    Fail,
    Info,
}

impl Event {
    /// The client process number, or `None` for the nemesis, the monitor and other named
    /// processes, whose events checkers of client operations skip.
    pub fn client(&self) -> Option<u64> {
        match self.process {
            Process::Client(p) => Some(p),
            Process::Named(_) => None,
        }
    }

    /// An event of a client process, with `index` and `time` left for the caller to set.
    pub fn op(
        process: u64,
        kind: EventType,
        f: &str,
        key: Option<&str>,
        value: serde_json::Value,
    ) -> Self {
        Event {
            index: None,
            time: 0,
            process: Process::Client(process),
            kind,
            f: f.to_string(),
            key: key.map(str::to_string),
            value,
            error: None,
            node: None,
        }
    }
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Invoke => "invoke",
            EventType::Ok => "ok",
            EventType::Fail => "fail",
            EventType::Info => "info",
        }
    }
}

impl std::fmt::Display for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Process::Client(p) => write!(f, "{p}"),
            Process::Named(n) => f.write_str(n),
        }
    }
}

/// The `error` a `fail` cas carries when the compare was executed and found another value.
/// Such a cas is not dropped: it tells the checker the register held something other than
/// `from` at some instant within the operation (see HISTORY.md).
pub const CAS_MISMATCH: &str = "cas-mismatch";
