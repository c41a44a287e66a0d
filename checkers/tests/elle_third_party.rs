//! What Elle's own tests say about single histories in `shared/bench/third-party`, beyond
//! the verdict (every row's verdict is `third_party_verdicts.rs`'s): which anomalies and
//! which models a history rules out.

mod common;

use std::path::PathBuf;

use faultline_checkers::elle::{DataModel, ElleChecker, Model};
use faultline_checkers::formats::{self, Format};
use faultline_checkers::Checker;

fn third_party_dir() -> Option<PathBuf> {
    common::third_party_dir("Elle histories")
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
