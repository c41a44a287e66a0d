//! The Elle and elle-cli histories in `shared/bench/third-party` get the verdicts their
//! projects assert (`expected.tsv` rows whose model is `elle-list-append` or
//! `elle-rw-register`, optionally with a consistency model in parentheses; elle-cli's
//! default is strict-serializable).

mod common;

use std::path::PathBuf;

use faultline_checkers::elle::{DataModel, ElleChecker, Model};
use faultline_checkers::formats::{self, Format};
use faultline_checkers::{Checker, Validity};

fn third_party_dir() -> Option<PathBuf> {
    common::third_party_dir("Elle histories")
}

/// `elle-list-append(serializable)` -> (list-append, serializable).
fn parse_model(s: &str) -> Option<(DataModel, Model)> {
    let (data, model) = match s.split_once('(') {
        Some((d, m)) => (d, m.trim_end_matches(')').parse().ok()?),
        None => (s, Model::StrictSerializable),
    };
    let data = match data {
        "elle-list-append" => DataModel::ListAppend,
        "elle-rw-register" => DataModel::RwRegister,
        _ => return None,
    };
    Some((data, model))
}

#[test]
fn elle_histories_get_their_projects_verdicts() {
    let Some(dir) = third_party_dir() else { return };
    let tsv = std::fs::read_to_string(dir.join("expected.tsv")).unwrap();
    let (mut rows, mut agree) = (0, 0);
    let mut wrong = Vec::new();
    for line in tsv.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let cols: Vec<&str> = line.split('\t').collect();
        let Some((data, model)) = parse_model(cols[1]) else { continue };
        rows += 1;
        let path = dir.join(cols[0]);
        let history = formats::load(&path, Format::Auto).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let r = ElleChecker::new(data, model).check(&history);
        let want = if cols[2] == "true" { Validity::Valid } else { Validity::Invalid };
        if r.valid == want {
            agree += 1;
        } else {
            wrong.push(format!("{} ({}): want {want:?}, got {:?}: {}", cols[0], cols[1], r.valid, r.details));
        }
    }
    eprintln!("elle third-party agreement: {agree}/{rows}");
    assert!(rows > 0, "expected.tsv lists no Elle rows");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Elle's own test says this history's anomaly is G2-item and it is `:not #{:repeatable-read}`
/// only: its rw edges are adjacent (write skew), so snapshot isolation stays possible and
/// no G-nonadjacent (which would rule SI out) may be reported.
#[test]
fn si_without_g_single_is_g2_item_and_rules_out_repeatable_read_not_si() {
    let Some(dir) = third_party_dir() else { return };
    let path = dir.join("elle/histories/si-without-g-single.edn");
    let history = formats::load(&path, Format::Auto).unwrap();
    let r = ElleChecker::new(DataModel::ListAppend, Model::Serializable).check(&history);
    let types: Vec<&str> = r.details["anomaly-types"].as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
    assert_eq!(types, ["G2-item"], "{}", r.details);
    let not: Vec<&str> = r.details["not"].as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
    assert!(not.contains(&"repeatable-read") && !not.contains(&"snapshot-isolation"), "{not:?}");
}
