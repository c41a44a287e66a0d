//! Checkers: functions from a recorded history to a verdict.
//!
//! A checker sees the history and nothing else — no SSH, no node internals — so that a
//! stored run can be re-checked years later with `faultline check <run dir>`.

pub mod append;
pub mod bank;
pub mod counter;
pub mod elle;
pub mod linear;
pub mod long_fork;
pub mod perf;
pub mod recovery;
pub mod stats;
pub mod registry;
pub mod set;
pub mod set_final;
pub mod set_full;

// The history types and readers live in `faultline-history`; these keep the paths that
// callers have always used (`faultline_checkers::formats`, `faultline_checkers::history`).
pub use faultline_history as history;
pub use faultline_history::formats;
pub use faultline_history::{Event, EventType, Process};
pub use registry::{CheckResult, Checker, Validity};
