//! Checkers: functions from a recorded history to a verdict.
//!
//! A checker sees the history and nothing else — no SSH, no node internals — so that a
//! stored run can be re-checked years later with `faultline check <run dir>`.

pub mod append;
pub mod bank;
pub mod formats;
pub mod history;
pub mod linear;
pub mod perf;
pub mod recovery;
pub mod stats;
pub mod registry;
pub mod set;

pub use history::{Event, EventType, Process};
pub use registry::{CheckResult, Checker, Validity};
