//! `faultline suite compare --baseline BASELINE.json`: every case classified against a
//! baseline (last night's suite.json), with Markdown for a CI step summary.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use super::rate::Rate;
use super::result::{CaseResult, CaseVerdict, SuiteResult};

/// How a case moved since the baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// Fails now; passed (or was absent) in the baseline.
    NewFailure,
    /// The harness failed on it now (no verdict).
    Error,
    /// Fails now and failed in the baseline.
    StillFailing,
    /// Passes now, failed in the baseline.
    Fixed,
    /// Passes both times, but the rate's 95% intervals do not overlap (or a known
    /// finding's stated rate is outside the interval).
    RateChanged,
    /// Passes, with mixed results: some repetitions found it and some did not, or the
    /// harness needed a retry.
    Flaky,
    /// Passes; not in the baseline.
    New,
    /// Passes both times alike.
    Unchanged,
    /// In the baseline, not run now.
    Removed,
}

impl Class {
    /// The words in the summary.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::NewFailure => "new failure",
            Class::Error => "error",
            Class::StillFailing => "still failing",
            Class::Fixed => "fixed",
            Class::RateChanged => "rate changed",
            Class::Flaky => "flaky",
            Class::New => "new",
            Class::Unchanged => "unchanged",
            Class::Removed => "removed",
        }
    }
}

/// One case's standing.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The case id.
    pub id: String,
    /// Its class.
    pub class: Class,
    /// Verdict now (`-` when removed).
    pub verdict: String,
    /// Rate now.
    pub rate: Option<Rate>,
    /// Verdict in the baseline (`-` when new).
    pub baseline_verdict: String,
    /// Rate in the baseline.
    pub baseline_rate: Option<Rate>,
    /// Why, now.
    pub reason: String,
}

/// Classifies one case; `None` for either side means it is absent there.
pub fn classify(now: Option<&CaseResult>, before: Option<&CaseResult>) -> Class {
    let Some(now) = now else {
        return Class::Removed;
    };
    let failed_before = before.is_some_and(|b| b.verdict == CaseVerdict::Fail);
    match now.verdict {
        CaseVerdict::Fail if failed_before => Class::StillFailing,
        CaseVerdict::Fail => Class::NewFailure,
        CaseVerdict::Error => Class::Error,
        _ if failed_before => Class::Fixed,
        _ if now.rate_changed || before.is_some_and(|b| b.rate.disjoint(&now.rate)) => {
            Class::RateChanged
        }
        _ if now.mixed() => Class::Flaky,
        _ if before.is_none() => Class::New,
        _ => Class::Unchanged,
    }
}

/// Every case of either result, classified, worst class first.
pub fn compare(now: &SuiteResult, baseline: &SuiteResult) -> Vec<Row> {
    let before: BTreeMap<&str, &CaseResult> =
        baseline.cases.iter().map(|c| (c.id.as_str(), c)).collect();
    let mut rows: Vec<Row> = now
        .cases
        .iter()
        .map(|c| {
            let b = before.get(c.id.as_str()).copied();
            Row {
                id: c.id.clone(),
                class: classify(Some(c), b),
                verdict: c.verdict.as_str().into(),
                rate: Some(c.rate),
                baseline_verdict: b.map_or("-".into(), |b| b.verdict.as_str().into()),
                baseline_rate: b.map(|b| b.rate),
                reason: c.reason.clone(),
            }
        })
        .collect();
    for b in &baseline.cases {
        if !now.cases.iter().any(|c| c.id == b.id) {
            rows.push(Row {
                id: b.id.clone(),
                class: Class::Removed,
                verdict: "-".into(),
                rate: None,
                baseline_verdict: b.verdict.as_str().into(),
                baseline_rate: Some(b.rate),
                reason: "not in this run".into(),
            });
        }
    }
    rows.sort_by(|a, b| a.class.cmp(&b.class).then(a.id.cmp(&b.id)));
    rows
}

/// The Markdown for a CI step summary.
pub fn markdown(now: &SuiteResult, baseline_label: &str, rows: &[Row]) -> String {
    let mut counts: BTreeMap<Class, usize> = BTreeMap::new();
    for r in rows {
        *counts.entry(r.class).or_default() += 1;
    }
    let mut out = format!(
        "## faultline suite `{}` against `{}`\n\n",
        now.suite,
        baseline_label.replace('`', "'")
    );
    out.push_str(
        &counts
            .iter()
            .map(|(c, n)| format!("**{n}** {}", c.as_str()))
            .collect::<Vec<_>>()
            .join(" · "),
    );
    let _ = write!(
        out,
        "\n\nExit code of this run: {}; {} repetitions per seed.\n\n| | case | now | rate now (95%) | baseline | rate before (95%) | why |\n|---|---|---|---|---|---|---|\n",
        now.exit_code(),
        now.repeat
    );
    let cell = |r: &Option<Rate>| r.map_or("-".to_string(), |r| r.describe());
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | `{}` | {} | {} | {} | {} | {} |",
            r.class.as_str(),
            r.id.replace('|', "\\|"),
            r.verdict,
            cell(&r.rate),
            r.baseline_verdict,
            cell(&r.baseline_rate),
            r.reason.replace('|', "\\|")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::result::tests::{canary, case, error_run, run};
    use crate::suite::result::FORMAT;
    use crate::suite::spec::Expect;

    const FOUND: &[(&str, &str)] = &[("replication-loop", "invalid")];
    const CLEAN: &[(&str, &str)] = &[("replication-loop", "valid")];

    fn times(n: u64, found: u64) -> Vec<crate::suite::result::RunRecord> {
        (0..n)
            .map(|s| run(s, 1, if s < found { FOUND } else { CLEAN }))
            .collect()
    }

    fn suite(cases: Vec<CaseResult>) -> SuiteResult {
        SuiteResult {
            format: FORMAT.into(),
            suite: "nightly".into(),
            file: "suites/nightly.yaml".into(),
            listed: vec![],
            partitions: vec![],
            repeat: 10,
            seconds: 1.0,
            interrupted: false,
            cases,
        }
    }

    #[test]
    fn every_class_on_hand_made_baselines() {
        let v = || Expect::Valid;
        let before = suite(vec![
            case("clean@a", v(), times(10, 0)),
            case("broke@a", v(), times(10, 0)),
            case("fixed@a", v(), times(10, 3)),
            case("still@a", v(), times(10, 1)),
            case("drop@a", canary(0.0), times(10, 10)),
            case("mixed@a", canary(0.2), times(10, 6)),
            case("gone@a", v(), times(10, 0)),
            case("infra@a", v(), times(10, 0)),
        ]);
        let now = suite(vec![
            case("clean@a", v(), times(10, 0)),
            case("broke@a", v(), times(10, 1)),
            case("fixed@a", v(), times(10, 0)),
            case("still@a", v(), times(10, 2)),
            case("drop@a", canary(0.0), times(10, 2)),
            case("mixed@a", canary(0.2), times(10, 7)),
            case("fresh@a", v(), times(10, 0)),
            case("infra@a", v(), vec![error_run(1)]),
        ]);
        let rows = compare(&now, &before);
        let class = |id: &str| rows.iter().find(|r| r.id == id).unwrap().class;
        assert_eq!(class("clean@a"), Class::Unchanged);
        assert_eq!(class("broke@a"), Class::NewFailure);
        assert_eq!(class("fixed@a"), Class::Fixed);
        assert_eq!(class("still@a"), Class::StillFailing);
        assert_eq!(
            class("drop@a"),
            Class::RateChanged,
            "10/10 -> 2/10: intervals apart"
        );
        assert_eq!(
            class("mixed@a"),
            Class::Flaky,
            "6/10 -> 7/10: same rate, mixed"
        );
        assert_eq!(class("fresh@a"), Class::New);
        assert_eq!(class("gone@a"), Class::Removed);
        assert_eq!(class("infra@a"), Class::Error);
        assert_eq!(rows[0].class, Class::NewFailure, "worst first");
        let md = markdown(&now, "baseline.json", &rows);
        assert!(
            md.contains("| new failure | `broke@a` | fail | 1/10"),
            "{md}"
        );
        assert!(md.contains("| rate changed | `drop@a` | pass | 2/10 (0.20, 95% 0.06-0.51) | pass | 10/10 (1.00, 95% 0.72-1.00)"), "{md}");
        // A brand-new failing case is a new failure too.
        assert_eq!(
            classify(Some(&case("x@a", v(), times(2, 1))), None),
            Class::NewFailure
        );
    }
}
