//! Every history shipped with Porcupine gets the verdict Porcupine computes for it.
//! The data lives in `shared/bench/porcupine-test-data` beside the repository.

use std::path::PathBuf;
use std::time::Duration;

use faultline_checkers::Validity;
use faultline_checkers::formats::{self, Format};
use faultline_checkers::linear::{self, Budget, ModelKind};

fn data_dir() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = root.join("../shared/bench/porcupine-test-data");
    assert!(
        dir.join("expected.txt").is_file(),
        "benchmark data missing: expected {} (a copy of shared/ beside the repository)",
        dir.display()
    );
    dir
}

#[test]
fn porcupine_histories_get_their_expected_verdicts() {
    let dir = data_dir();
    let expected = std::fs::read_to_string(dir.join("expected.txt")).unwrap();
    let budget = Budget {
        time_limit: Some(Duration::from_secs(60)),
        ..Budget::default()
    };
    let mut checked = 0;
    let mut wrong = Vec::new();
    for line in expected.lines().filter(|l| !l.trim().is_empty()) {
        let (file, verdict) = line.split_once(' ').expect("`<file> <true|false>`");
        let want = match verdict.trim() {
            "true" => Validity::Valid,
            "false" => Validity::Invalid,
            other => panic!("bad verdict {other:?} in expected.txt"),
        };
        let events = formats::load(&dir.join(file), Format::Auto).unwrap();
        let model = if file.starts_with("kv/") {
            ModelKind::Kv
        } else {
            ModelKind::CasRegister
        };
        let report = linear::check(&events, model, &budget).unwrap();
        if report.valid != want {
            wrong.push(format!(
                "{file}: expected {want:?}, got {:?}\n{report}",
                report.valid
            ));
        }
        if want == Validity::Invalid {
            let c = report
                .counterexample
                .as_ref()
                .expect("an invalid verdict carries a counterexample");
            assert!(!c.reason.is_empty());
        }
        checked += 1;
    }
    assert!(
        wrong.is_empty(),
        "{} of {checked} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert_eq!(
        checked, 108,
        "102 etcd logs with a verdict and 6 kv histories"
    );
}

#[test]
fn the_empty_etcd_log_is_unknown_not_valid() {
    let events = formats::load(&data_dir().join("jepsen/etcd_095.log"), Format::Auto).unwrap();
    assert!(events.is_empty());
    let report = linear::check(&events, ModelKind::CasRegister, &Budget::default()).unwrap();
    assert_eq!(report.valid, Validity::Unknown);
    assert_eq!(
        report.unknown_reason.as_deref(),
        Some(faultline_checkers::registry::NO_CLIENT_OPS)
    );
}
