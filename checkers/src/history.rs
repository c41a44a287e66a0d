//! The history format: JSON Lines, one event per line, Jepsen semantics.
//! See `checkers/HISTORY.md` for the full description.

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
