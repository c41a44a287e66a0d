//! Checkers are looked up by name, like Maelstrom's: adding one is a file plus a line in
//! [`lookup`].

use serde::{Deserialize, Serialize};

use crate::history::{Event, EventType};

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

/// The reason every checker gives for `unknown` on a history without client operations.
pub const NO_CLIENT_OPS: &str = "the history holds no client operations";

/// Nothing checked is never valid: a history without a single client invocation (an empty
/// file, a text that is no history in the format it was read as, a run whose clients never
/// started) proves nothing, so `r` becomes `unknown` with [`NO_CLIENT_OPS`] as
/// `details.reason`. The rest of the details keep their checker-specific shape.
pub fn unless_nothing_checked(history: &[Event], mut r: CheckResult) -> CheckResult {
    let any_op = history
        .iter()
        .any(|e| e.kind == EventType::Invoke && e.client().is_some());
    if any_op {
        return r;
    }
    r.valid = Validity::Unknown;
    match &mut r.details {
        serde_json::Value::Object(m) => {
            m.insert("reason".into(), NO_CLIENT_OPS.into());
        }
        other => *other = serde_json::json!({ "reason": NO_CLIENT_OPS }),
    }
    r
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
    ("elle-list-append", || {
        Box::new(crate::elle::ElleChecker::new(crate::elle::DataModel::ListAppend, crate::elle::Model::StrictSerializable))
    }),
    ("elle-rw-register", || {
        Box::new(crate::elle::ElleChecker::new(crate::elle::DataModel::RwRegister, crate::elle::Model::StrictSerializable))
    }),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Process;

    fn assert_nothing_checked(history: &[Event], what: &str) {
        for name in names() {
            let r = lookup(name).unwrap().check(history);
            assert_eq!(r.valid, Validity::Unknown, "{name} on {what}: {}", r.details);
            assert_eq!(r.details["reason"], NO_CLIENT_OPS, "{name} on {what}");
        }
    }

    #[test]
    fn empty_history_is_unknown_not_valid_for_every_checker() {
        assert_nothing_checked(&[], "an empty history");
    }

    #[test]
    fn nemesis_only_history_is_unknown_not_valid_for_every_checker() {
        let mut kill = Event::op(0, EventType::Info, "kill", None, serde_json::Value::Null);
        kill.process = Process::nemesis();
        assert_nothing_checked(&[kill.clone(), kill], "a history of nemesis events only");
    }

    #[test]
    fn one_client_op_is_checked_not_reported_as_nothing_checked() {
        let h = [
            Event::op(1, EventType::Invoke, "read", Some("k"), serde_json::Value::Null),
            Event::op(1, EventType::Ok, "read", Some("k"), serde_json::Value::Null),
        ];
        for name in names() {
            let r = lookup(name).unwrap().check(&h);
            assert!(r.details.get("reason") != Some(&NO_CLIENT_OPS.into()), "{name}: {}", r.details);
        }
    }
}
