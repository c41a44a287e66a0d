//! Every history shipped by knossos, elle and elle-cli (in `shared/bench/third-party`) is
//! recognised by `--format auto` and read, and the cas-register ones get the verdict their
//! own project asserts (`expected.tsv`).
//!
//! The data lives beside the repository (`../shared`); `FAULTLINE_SHARED` names another
//! place. Without it the tests print a note and pass: they cannot check anything there.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use faultline_checkers::Validity;
use faultline_checkers::formats::{self, Format};
use faultline_checkers::linear::{self, Budget, ModelKind};

fn third_party_dir() -> Option<PathBuf> {
    common::third_party_dir("third-party histories")
}

fn histories(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            histories(&p, out);
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("edn" | "json")) {
            out.push(p);
        }
    }
}

/// Files faultline cannot read, each with the part of the error that says why. (Jepsen's
/// long-fork example, whose ops carry no `:process` at all, reads as one process.)
const UNREADABLE: &[(&str, &str)] = &[];

#[test]
fn every_third_party_history_is_detected_and_read() {
    let Some(dir) = third_party_dir() else { return };
    let mut files = Vec::new();
    histories(&dir, &mut files);
    assert!(
        files.len() >= 267,
        "only {} histories found under {}",
        files.len(),
        dir.display()
    );
    let mut wrong = Vec::new();
    for path in &files {
        let rel = path
            .strip_prefix(&dir)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let result = formats::load(path, Format::Auto);
        match (UNREADABLE.iter().find(|(f, _)| *f == rel), result) {
            (None, Ok(events)) if !events.is_empty() => {}
            (None, Ok(_)) => wrong.push(format!("{rel}: read no events")),
            (None, Err(e)) => wrong.push(format!("{rel}: {e}")),
            (Some((_, why)), Err(e)) if e.to_string().contains(why) => {}
            (Some((_, why)), r) => {
                wrong.push(format!("{rel}: expected an error with {why:?}, got {r:?}"))
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} wrong:\n{}",
        wrong.len(),
        files.len(),
        wrong.join("\n")
    );
}

#[test]
fn third_party_json_and_edn_copies_read_the_same_ops() {
    let Some(dir) = third_party_dir() else { return };
    for stem in [
        "elle-cli/histories/jepsen/bank",
        "elle-cli/histories/jepsen/counter",
        "elle-cli/histories/elle/rw-register",
    ] {
        let edn = formats::load(&dir.join(format!("{stem}.edn")), Format::Auto).unwrap();
        let json = formats::load(&dir.join(format!("{stem}.json")), Format::JepsenJson).unwrap();
        assert_eq!(edn.len(), json.len(), "{stem}");
        for (a, b) in edn.iter().zip(&json) {
            assert_eq!(
                (&a.process, a.kind, &a.f, a.index, a.time),
                (&b.process, b.kind, &b.f, b.index, b.time),
                "{stem}"
            );
        }
    }
}

#[test]
fn third_party_cas_register_histories_get_their_projects_verdicts() {
    let Some(dir) = third_party_dir() else { return };
    let expected = std::fs::read_to_string(dir.join("expected.tsv")).unwrap();
    let budget = Budget {
        time_limit: Some(Duration::from_secs(60)),
        ..Budget::default()
    };
    let mut wrong = Vec::new();
    let mut checked: BTreeMap<&str, usize> = BTreeMap::new();
    for line in expected
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let cols: Vec<&str> = line.split('\t').collect();
        let (file, model, verdict) = (cols[0], cols[1], cols[2]);
        // Only the models faultline's linearizability checker claims.
        let Ok(kind) = model.parse::<ModelKind>() else {
            continue;
        };
        let want = match verdict {
            "true" => Validity::Valid,
            "false" => Validity::Invalid,
            other => panic!("bad verdict {other:?} in expected.tsv"),
        };
        let events = formats::load(&dir.join(file), Format::Auto).unwrap();
        let report = linear::check(&events, kind, &budget).unwrap();
        if report.valid != want {
            wrong.push(format!(
                "{file}: expected {want:?}, got {:?}\n{report}",
                report.valid
            ));
        }
        *checked.entry(kind.name()).or_default() += 1;
    }
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert_eq!(checked.get("cas-register"), Some(&131), "{checked:?}");
}
