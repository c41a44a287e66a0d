//! What the third-party history tests share: where the histories are.

use std::path::PathBuf;

/// `shared/bench/third-party` (from `FAULTLINE_SHARED`, or `../shared` beside the
/// checkout), or `None` with a note saying what is not checked.
pub fn third_party_dir(what: &str) -> Option<PathBuf> {
    let shared = match std::env::var_os("FAULTLINE_SHARED") {
        Some(s) => PathBuf::from(s),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    };
    let dir = shared.join("bench/third-party");
    if dir.join("expected.tsv").is_file() {
        Some(dir)
    } else {
        eprintln!("note: {} not found (set FAULTLINE_SHARED); {what} not checked", dir.display());
        None
    }
}
