//! Checkers are looked up by name, like Maelstrom's: adding one is a file plus a line in
//! [`lookup`].

use serde::{Deserialize, Serialize};

use crate::history::Event;

/// Three-valued, because a checker that ran out of time or memory must not claim either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Validity {
    Valid,
    Invalid,
    Unknown,
}

impl Validity {
    /// Combining verdicts: any invalid wins, then any unknown.
    pub fn and(self, other: Validity) -> Validity {
        use Validity::*;
        match (self, other) {
            (Invalid, _) | (_, Invalid) => Invalid,
            (Unknown, _) | (_, Unknown) => Unknown,
            _ => Valid,
        }
    }
}

/// Serialized as Jepsen does: `true`, `false` or `"unknown"`.
impl Serialize for Validity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Validity::Valid => s.serialize_bool(true),
            Validity::Invalid => s.serialize_bool(false),
            Validity::Unknown => s.serialize_str("unknown"),
        }
    }
}

impl<'de> Deserialize<'de> for Validity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Bool(true) => Ok(Validity::Valid),
            serde_json::Value::Bool(false) => Ok(Validity::Invalid),
            serde_json::Value::String(s) if s == "unknown" => Ok(Validity::Unknown),
            other => Err(serde::de::Error::custom(format!(
                "expected true, false or \"unknown\", got {other}"
            ))),
        }
    }
}

/// What one checker says of one history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckResult {
    pub checker: String,
    pub valid: Validity,
    /// Checker-specific figures and counterexamples.
    #[serde(default)]
    pub details: serde_json::Value,
}

pub trait Checker: Send + Sync {
    fn name(&self) -> &'static str;
    fn check(&self, history: &[Event]) -> CheckResult;
}

/// Builds a checker with its default options.
pub type Constructor = fn() -> Box<dyn Checker>;

/// The registry: one line per checker. Names are what workloads and `--checker` use.
const REGISTRY: &[(&str, Constructor)] = &[
    ("set", || Box::new(crate::set::SetChecker)),
    ("bank", || Box::new(crate::bank::BankChecker)),
    ("append", || Box::new(crate::append::AppendChecker)),
    ("linearizable", || Box::new(crate::linear::LinearizableChecker::new(crate::linear::ModelKind::CasRegister))),
    ("linearizable-kv", || Box::new(crate::linear::LinearizableChecker::new(crate::linear::ModelKind::Kv))),
    ("perf", || Box::new(crate::perf::PerfChecker)),
    ("recovery", || Box::new(crate::recovery::RecoveryChecker(Default::default()))),
    ("stats", || Box::new(crate::stats::StatsChecker)),
];

/// Finds a checker by its registered name.
pub fn lookup(name: &str) -> Option<Box<dyn Checker>> {
    REGISTRY.iter().find(|(n, _)| *n == name).map(|(_, make)| make())
}

/// Every registered name, for `--help` texts and error messages.
pub fn names() -> &'static [&'static str] {
    static NAMES: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| REGISTRY.iter().map(|(n, _)| *n).collect())
}
