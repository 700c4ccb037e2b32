//! `junit.xml`: one test case per checker, for CI systems that show JUnit results.
//!
//! invalid is a `<failure>` whose message is the checker's summary; unknown is
//! `<skipped>` with the reason (a CI system then shows it as neither passed nor failed,
//! which is what unknown means; the exit code, 2, still keeps the run from passing).

use std::fmt::Write;

use faultline_checkers::{Results, Validity};

use super::escape::escape;

/// The JUnit XML for `results` of a run of `scenario`.
pub fn render(scenario: &str, results: &Results, seconds: f64) -> String {
    let failures = results
        .checkers
        .values()
        .filter(|c| c.valid == Validity::Invalid)
        .count();
    let skipped = results
        .checkers
        .values()
        .filter(|c| c.valid == Validity::Unknown)
        .count();
    let suite = escape(&format!("faultline.{scenario}"));
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"faultline\" tests=\"{n}\" failures=\"{failures}\" skipped=\"{skipped}\" errors=\"0\" time=\"{seconds:.3}\">\n  <testsuite name=\"{suite}\" tests=\"{n}\" failures=\"{failures}\" skipped=\"{skipped}\" errors=\"0\" time=\"{seconds:.3}\">",
        n = results.checkers.len()
    );
    for (name, result) in &results.checkers {
        let _ = write!(
            out,
            "    <testcase classname=\"{suite}\" name=\"{}\" time=\"0\"",
            escape(name)
        );
        let headline = escape(&result.headline());
        match result.valid {
            Validity::Valid => out.push_str("/>\n"),
            Validity::Invalid => {
                let body = serde_json::to_string_pretty(&result.details).unwrap_or_default();
                let _ = write!(
                    out,
                    ">\n      <failure message=\"{headline}\" type=\"invalid\">{}</failure>\n    </testcase>\n",
                    escape(&body)
                );
            }
            Validity::Unknown => {
                let _ = write!(
                    out,
                    ">\n      <skipped message=\"unknown: {headline}\"/>\n    </testcase>\n"
                );
            }
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_checkers::CheckerResult;

    #[test]
    fn one_case_per_checker_failure_carries_the_summary_escaped() {
        let mut checkers = std::collections::BTreeMap::new();
        checkers.insert("a".into(), CheckerResult::new(Validity::Valid));
        checkers.insert(
            "b".into(),
            CheckerResult::new(Validity::Invalid).with("summary", "lost <3> & \"more\""),
        );
        checkers.insert("c".into(), CheckerResult::unknown("no views"));
        let xml = render("smoke", &Results::new(checkers, Vec::new()), 1.5);
        assert_eq!(xml.matches("<testcase ").count(), 3);
        assert!(xml.contains("failures=\"1\" skipped=\"1\""));
        assert!(xml.contains(
            "<failure message=\"lost &lt;3&gt; &amp; &quot;more&quot;\" type=\"invalid\">"
        ));
        assert!(xml.contains("<skipped message=\"unknown: no views\"/>"));
    }
}
