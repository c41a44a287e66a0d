//! JUnit XML for CI systems: one test case per run of the suite.

use std::fmt::Write as _;

use super::html::esc;

#[derive(Debug, Clone)]
pub enum CaseResult {
    Valid,
    Invalid(String),
    Unknown(String),
    /// The harness failed (SSH, setup, a panic): no verdict.
    Crashed(String),
}

#[derive(Debug, Clone)]
pub struct Case {
    /// `<db>.<workload>`, the class CI groups by.
    pub class: String,
    pub name: String,
    pub seconds: f64,
    pub result: CaseResult,
    /// The run directory, shown as the case's output.
    pub output: String,
}

pub fn render(suite: &str, cases: &[Case]) -> String {
    let failures = cases
        .iter()
        .filter(|c| matches!(c.result, CaseResult::Invalid(_)))
        .count();
    let errors = cases
        .iter()
        .filter(|c| matches!(c.result, CaseResult::Crashed(_)))
        .count();
    let skipped = cases
        .iter()
        .filter(|c| matches!(c.result, CaseResult::Unknown(_)))
        .count();
    let total: f64 = cases.iter().map(|c| c.seconds).sum();
    let mut o = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        o,
        r#"<testsuites name="{0}" tests="{1}" failures="{failures}" errors="{errors}" skipped="{skipped}" time="{total:.3}"><testsuite name="{0}" tests="{1}" failures="{failures}" errors="{errors}" skipped="{skipped}" time="{total:.3}">"#,
        esc(suite),
        cases.len()
    );
    for c in cases {
        let _ = write!(
            o,
            r#"  <testcase classname="{}" name="{}" time="{:.3}">"#,
            esc(&c.class),
            esc(&c.name),
            c.seconds
        );
        match &c.result {
            CaseResult::Valid => {}
            CaseResult::Invalid(m) => {
                let _ = write!(
                    o,
                    r#"<failure message="invalid" type="invalid">{}</failure>"#,
                    esc(m)
                );
            }
            CaseResult::Unknown(m) => {
                let _ = write!(o, r#"<skipped message="verdict unknown: {}"/>"#, esc(m));
            }
            CaseResult::Crashed(m) => {
                let _ = write!(
                    o,
                    r#"<error message="harness error" type="crashed">{}</error>"#,
                    esc(m)
                );
            }
        }
        let _ = writeln!(o, "<system-out>{}</system-out></testcase>", esc(&c.output));
    }
    o.push_str("</testsuite></testsuites>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junit_counts_outcomes_and_escapes_text() {
        let case = |result| Case {
            class: "raft.register".into(),
            name: "kill seed 1".into(),
            seconds: 1.5,
            result,
            output: "store/a&b".into(),
        };
        let xml = render(
            "suite",
            &[
                case(CaseResult::Valid),
                case(CaseResult::Invalid("lost <write>".into())),
                case(CaseResult::Unknown("timeout".into())),
                case(CaseResult::Crashed("ssh".into())),
            ],
        );
        assert!(
            xml.contains(r#"tests="4" failures="1" errors="1" skipped="1""#),
            "{xml}"
        );
        assert!(xml.contains("lost &lt;write&gt;") && xml.contains("store/a&amp;b"));
        let mut reader = quick_xml::Reader::from_str(&xml);
        let mut cases = 0;
        loop {
            match reader.read_event().expect("well-formed XML") {
                quick_xml::events::Event::Start(e) if e.name().0 == "testcase" => cases += 1,
                quick_xml::events::Event::Eof => break,
                _ => {}
            }
        }
        assert_eq!(cases, 4);
    }
}
