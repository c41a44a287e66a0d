//! Every row of `shared/bench/third-party/expected.tsv` — knossos, elle and elle-cli
//! histories with the verdict their own projects assert — gets that verdict from the
//! checker `faultline check --model <model>` uses (`registry::for_model`), for every model.
//! A row whose file cannot be read, whose model faultline does not know, or whose verdict
//! differs fails the test.
//!
//! The data lives beside the repository (`../shared`); `FAULTLINE_SHARED` names another
//! place. Without it the test prints a note and passes: it cannot check anything there.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use faultline_checkers::formats::{self, Format};
use faultline_checkers::registry::{self, Options};
use faultline_checkers::{Validity, elle};

fn third_party_dir() -> Option<PathBuf> {
    common::third_party_dir("third-party verdicts")
}

/// `elle-list-append(serializable)` -> (`elle-list-append`, serializable).
fn model_and_options(s: &str) -> Result<(&str, Options), String> {
    match s.split_once('(') {
        None => Ok((s, Options::default())),
        Some((m, cm)) => {
            let cm: elle::Model = cm.trim_end_matches(')').parse().map_err(|e| format!("{e}"))?;
            Ok((m, Options { consistency_model: Some(cm) }))
        }
    }
}

#[test]
fn every_third_party_history_gets_its_projects_verdict_for_every_model() {
    let Some(dir) = third_party_dir() else { return };
    let tsv = std::fs::read_to_string(dir.join("expected.tsv")).expect("expected.tsv");
    let (mut rows, mut agree) = (0usize, 0usize);
    let mut per_model: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut wrong = Vec::new();
    for (lineno, line) in tsv.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        rows += 1;
        let cols: Vec<&str> = line.split('\t').collect();
        let [file, model, verdict, ..] = cols.as_slice() else {
            wrong.push(format!("expected.tsv:{}: not path, model, verdict", lineno + 1));
            continue;
        };
        let want = match *verdict {
            "true" => Validity::Valid,
            "false" => Validity::Invalid,
            other => panic!("expected.tsv:{}: bad verdict {other:?}", lineno + 1),
        };
        let tally = per_model.entry(model.to_string()).or_default();
        tally.0 += 1;
        let (name, options) = match model_and_options(model) {
            Ok(x) => x,
            Err(e) => {
                wrong.push(format!("{file}: model {model}: {e}"));
                continue;
            }
        };
        let Some(checker) = registry::for_model(name).and_then(|c| registry::lookup_with(c, &options)) else {
            wrong.push(format!("{file}: no checker for model {model}"));
            continue;
        };
        let history = match formats::load(&dir.join(file), Format::Auto) {
            Ok(h) => h,
            Err(e) => {
                wrong.push(format!("{file}: cannot be read: {e}"));
                continue;
            }
        };
        let r = checker.check(&history);
        if r.valid == want {
            agree += 1;
            tally.1 += 1;
        } else {
            let mut d = r.details.to_string();
            d.truncate(600);
            wrong.push(format!("{file} ({model}, {}): expected {want:?}, got {:?}: {d}", r.checker, r.valid));
        }
    }
    eprintln!("third-party agreement: {agree} of {rows} rows");
    for (model, (n, ok)) in &per_model {
        eprintln!("  {model:<40} {ok}/{n}");
    }
    assert!(wrong.is_empty(), "{} of {rows} rows disagree:\n{}", wrong.len(), wrong.join("\n"));
    assert_eq!(rows, 150, "expected.tsv should list 150 histories");
}
