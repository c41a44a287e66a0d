//! Checkers are looked up by name, like Maelstrom's: adding one is a file plus a line in
//! [`lookup`].

use serde::{Deserialize, Serialize};

use crate::history::{Event, EventType};
use faultline_history::digest::Digest;
use faultline_history::stream::{HistoryFile, StreamError};

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
pub fn unless_nothing_checked(history: &[Event], r: CheckResult) -> CheckResult {
    let any_op = history
        .iter()
        .any(|e| e.kind == EventType::Invoke && e.client().is_some());
    nothing_checked_unless(any_op, r)
}

/// [`unless_nothing_checked`] for a history known by its digest.
pub fn unless_nothing_checked_in(digest: &Digest, r: CheckResult) -> CheckResult {
    nothing_checked_unless(digest.any_client_op(), r)
}

fn nothing_checked_unless(any_op: bool, mut r: CheckResult) -> CheckResult {
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

/// What a caller may choose about a checker beyond the history: only the transactional
/// checkers take anything (the consistency model to judge against).
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// `None`: the checker's default (strict serializability for Elle).
    pub consistency_model: Option<crate::elle::Model>,
}

/// Builds a checker from its options.
pub type Constructor = fn(&Options) -> Box<dyn Checker>;

/// Checks a history file without reading it into memory whole, given the file's
/// [`Digest`]. Its result must be the one [`Checker::check`] gives on the same events.
pub type StreamCheck = fn(&Options, &HistoryFile, &Digest) -> Result<CheckResult, StreamError>;

/// One registered checker.
pub struct Entry {
    pub name: &'static str,
    pub make: Constructor,
    /// Whether [`Options::consistency_model`] means anything to it.
    pub takes_consistency_model: bool,
    /// For checkers whose memory need not grow with the history (per-key checkers judge
    /// one key at a time); the others read the history whole.
    pub check_stream: Option<StreamCheck>,
}

const fn plain(name: &'static str, make: Constructor) -> Entry {
    Entry { name, make, takes_consistency_model: false, check_stream: None }
}

const fn per_key(name: &'static str, make: Constructor, stream: StreamCheck) -> Entry {
    Entry { name, make, takes_consistency_model: false, check_stream: Some(stream) }
}

fn linear_file(
    model: crate::linear::ModelKind,
    file: &HistoryFile,
    digest: &Digest,
) -> Result<CheckResult, StreamError> {
    crate::linear::LinearizableChecker::new(model).check_file(file, digest)
}

impl Entry {
    /// Checks the history in `file` (whose digest is `digest`): streamed when the checker
    /// can, else read whole.
    pub fn check_file(
        &self,
        options: &Options,
        file: &HistoryFile,
        digest: &Digest,
    ) -> Result<CheckResult, StreamError> {
        match self.check_stream {
            Some(stream) => stream(options, file, digest),
            None => Ok((self.make)(options).check(&file.read_all()?)),
        }
    }
}

fn elle(data: crate::elle::DataModel, o: &Options) -> Box<dyn Checker> {
    let model = o.consistency_model.unwrap_or(crate::elle::Model::StrictSerializable);
    Box::new(crate::elle::ElleChecker::new(data, model))
}

fn linear(model: crate::linear::ModelKind) -> Box<dyn Checker> {
    Box::new(crate::linear::LinearizableChecker::new(model))
}

/// The registry: one line per checker. Names are what workloads and `--checker` use.
const REGISTRY: &[Entry] = &[
    plain("set", |_| Box::new(crate::set::SetChecker)),
    plain("bank", |_| Box::new(crate::bank::BankChecker)),
    plain("append", |_| Box::new(crate::append::AppendChecker)),
    per_key("linearizable", |_| linear(crate::linear::ModelKind::CasRegister), |_, f, d| {
        linear_file(crate::linear::ModelKind::CasRegister, f, d)
    }),
    per_key("linearizable-kv", |_| linear(crate::linear::ModelKind::Kv), |_, f, d| {
        linear_file(crate::linear::ModelKind::Kv, f, d)
    }),
    per_key("linearizable-mutex", |_| linear(crate::linear::ModelKind::Mutex), |_, f, d| {
        linear_file(crate::linear::ModelKind::Mutex, f, d)
    }),
    per_key(
        "linearizable-multi-register",
        |_| linear(crate::linear::ModelKind::MultiRegister),
        |_, f, d| linear_file(crate::linear::ModelKind::MultiRegister, f, d),
    ),
    plain("counter", |_| Box::new(crate::counter::CounterChecker)),
    plain("set-full", |_| Box::new(crate::set_full::SetFullChecker)),
    plain("set-final", |_| Box::new(crate::set_final::SetFinalChecker)),
    plain("long-fork", |_| Box::new(crate::long_fork::LongForkChecker)),
    plain("perf", |_| Box::new(crate::perf::PerfChecker)),
    plain("recovery", |_| Box::new(crate::recovery::RecoveryChecker(Default::default()))),
    plain("stats", |_| Box::new(crate::stats::StatsChecker)),
    Entry { name: "elle-list-append", make: |o| elle(crate::elle::DataModel::ListAppend, o), takes_consistency_model: true, check_stream: None },
    Entry { name: "elle-rw-register", make: |o| elle(crate::elle::DataModel::RwRegister, o), takes_consistency_model: true, check_stream: None },
];

/// The models `faultline check --model` offers for foreign histories, each the registered
/// checker that judges it: `(model or alias, checker)`. Names follow the projects the
/// histories come from (Knossos, Jepsen, Elle).
pub const MODELS: &[(&str, &str)] = &[
    ("cas-register", "linearizable"),
    ("register", "linearizable"),
    ("kv", "linearizable-kv"),
    ("mutex", "linearizable-mutex"),
    ("multi-register", "linearizable-multi-register"),
    ("counter", "counter"),
    ("set", "set-final"),
    ("set-full", "set-full"),
    ("bank", "bank"),
    ("long-fork", "long-fork"),
    ("list-append", "elle-list-append"),
    ("elle-list-append", "elle-list-append"),
    ("rw-register", "elle-rw-register"),
    ("elle-rw-register", "elle-rw-register"),
];

/// The checker registered for a `--model` name.
pub fn for_model(model: &str) -> Option<&'static str> {
    MODELS.iter().find(|(m, _)| *m == model).map(|(_, c)| *c)
}

/// The registered entry of that name.
pub fn entry(name: &str) -> Option<&'static Entry> {
    REGISTRY.iter().find(|e| e.name == name)
}

/// Finds a checker by its registered name, with its default options.
pub fn lookup(name: &str) -> Option<Box<dyn Checker>> {
    lookup_with(name, &Options::default())
}

/// Finds a checker by its registered name and builds it with `options`.
pub fn lookup_with(name: &str, options: &Options) -> Option<Box<dyn Checker>> {
    entry(name).map(|e| (e.make)(options))
}

/// Every registered name, for `--help` texts and error messages.
pub fn names() -> &'static [&'static str] {
    static NAMES: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| REGISTRY.iter().map(|e| e.name).collect())
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
    fn every_model_names_a_registered_checker() {
        for (model, checker) in MODELS {
            assert!(lookup(checker).is_some(), "--model {model} names {checker}, which is not registered");
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
