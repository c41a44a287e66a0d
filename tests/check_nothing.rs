//! `faultline check` on a history that holds no operation: nothing checked is never valid.

use std::path::PathBuf;
use std::process::{Command, Output};

const REASON: &str = "the history holds no client operations";

fn check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_faultline"))
        .arg("check")
        .args(args)
        .output()
        .expect("run faultline")
}

/// A file holding `text`, removed when the returned guard drops.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str, text: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!(
            "faultline-check-nothing-{}-{name}",
            std::process::id()
        ));
        std::fs::write(&p, text).unwrap();
        Scratch(p)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn assert_unknown_with_reason(out: &Output, what: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{what}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(REASON), "{what}: {stdout}");
}

#[test]
fn empty_history_is_unknown_not_valid() {
    let p = Scratch::new("empty.jsonl", "");
    assert_unknown_with_reason(&check(&[p.path()]), "an empty file");
    let out = check(&["--json", p.path()]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], "unknown");
    assert_eq!(v["unknown_reason"], REASON);
}

#[test]
fn blank_lines_only_history_is_unknown_not_valid() {
    let p = Scratch::new("blank.jsonl", "\n   \n\t\n");
    assert_unknown_with_reason(&check(&[p.path()]), "blank lines");
}

#[test]
fn readme_as_jepsen_log_is_not_valid() {
    let readme = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let out = check(&["--format", "jepsen-log", readme.to_str().unwrap()]);
    assert_unknown_with_reason(&out, "README.md as a Jepsen log");
}
