//! A suite result's files: `suite.json` (the data; what merge and compare read),
//! `junit.xml` (one test case per case x seed x repetition) and `suite.html` (one page,
//! with a plot of the rates against a baseline's).

use std::fmt::Write;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::html;
use super::result::{CaseResult, CaseVerdict, RunRecord, RunVerdict, SuiteResult, FORMAT};
use super::spec::Expect;
use crate::report::escape::escape;

/// The data file.
pub const SUITE_JSON: &str = "suite.json";
/// The JUnit file.
pub const JUNIT_XML: &str = "junit.xml";
/// The page.
pub const SUITE_HTML: &str = "suite.html";

/// UTC now as `20261202T071500.123Z` (the store's run-directory stamp).
pub fn stamp() -> String {
    time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second].[subsecond digits:3]Z"
        ))
        .unwrap_or_default()
}

/// `target` relative to directory `base` (both made absolute, no symlinks followed);
/// `target` itself (absolute) when they share no root.
pub fn relative(base: &Path, target: &Path) -> PathBuf {
    let (Ok(b), Ok(t)) = (std::path::absolute(base), std::path::absolute(target)) else {
        return target.to_path_buf();
    };
    let (b, t) = (lexical(&b), lexical(&t));
    let common = b.iter().zip(&t).take_while(|(x, y)| x == y).count();
    if common == 0 {
        return t.iter().collect();
    }
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c);
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// The components of `p` with `.` dropped and `dir/..` folded (no symlinks followed).
fn lexical(p: &Path) -> Vec<Component<'_>> {
    let mut v: Vec<Component<'_>> = Vec::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(v.last(), Some(Component::Normal(_))) => {
                v.pop();
            }
            c => v.push(c),
        }
    }
    v
}

/// Reads `suite.json` (the file, or a directory holding it).
///
/// # Errors
/// If it is missing, unreadable or not a suite result.
pub fn read(path: &Path) -> Result<(SuiteResult, PathBuf)> {
    let file = if path.is_dir() {
        path.join(SUITE_JSON)
    } else {
        path.to_path_buf()
    };
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let result: SuiteResult = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a faultline suite result", file.display()))?;
    if result.format != FORMAT {
        bail!(
            "{}: format {:?}, this faultline reads {FORMAT:?}",
            file.display(),
            result.format
        );
    }
    let dir = file.parent().unwrap_or(Path::new(".")).to_path_buf();
    Ok((result, dir))
}

/// Writes suite.json, junit.xml and suite.html into `out` (created if needed).
///
/// # Errors
/// If a file cannot be written.
pub fn write_all(out: &Path, result: &SuiteResult, baseline: Option<&SuiteResult>) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let put = |name: &str, bytes: &[u8]| {
        std::fs::write(out.join(name), bytes)
            .with_context(|| format!("writing {}", out.join(name).display()))
    };
    put(
        SUITE_JSON,
        &serde_json::to_vec_pretty(result).context("encoding suite.json")?,
    )?;
    put(JUNIT_XML, junit(result).as_bytes())?;
    put(SUITE_HTML, html::render(result, baseline).as_bytes())?;
    Ok(())
}

/// How one repetition stands against its case's expectation, for JUnit.
enum Outcome {
    Passed,
    /// Passed, but something a person may want to see (a canary miss in a passing case).
    PassedWithNote(String),
    Failed(String),
    Skipped(String),
    Error(String),
}

fn outcome(case: &CaseResult, run: &RunRecord) -> Outcome {
    if run.verdict == RunVerdict::Error {
        return Outcome::Error(run.error.clone().unwrap_or_else(|| "harness error".into()));
    }
    let found = |names: Vec<String>| names.join(", ");
    match &case.expect {
        Expect::Valid => match run.verdict {
            RunVerdict::Invalid => {
                Outcome::Failed(format!("found: {}", found(run.unexpected(&case.expect))))
            }
            RunVerdict::Unknown => Outcome::Skipped("unknown: a checker could not decide".into()),
            _ => Outcome::Passed,
        },
        Expect::Invalid { .. } => {
            if run.detected(&case.expect) {
                Outcome::Passed
            } else if case.verdict == CaseVerdict::Fail {
                Outcome::Failed(format!("not detected; case: {}", case.reason))
            } else {
                Outcome::PassedWithNote(format!(
                    "not detected in this repetition; case: {}",
                    case.reason
                ))
            }
        }
        Expect::Known { .. } => {
            let extra = run.unexpected(&case.expect);
            if extra.is_empty() {
                Outcome::Passed
            } else {
                Outcome::Failed(format!("found beyond the known finding: {}", found(extra)))
            }
        }
    }
}

/// One JUnit file: a test suite per case, a test case per seed x repetition, with the
/// seed, the reproduce command and the run directory as properties. A canary repetition
/// that missed in a passing case is a `<flakyFailure>` (as nextest and Surefire write a
/// test that passed on retry); a repetition that needed a harness retry carries
/// `<flakyError>`.
pub fn junit(result: &SuiteResult) -> String {
    let mut body = String::new();
    let (mut tests, mut failures, mut errors, mut skipped) = (0, 0, 0, 0);
    for case in &result.cases {
        let (mut t, mut f, mut e, mut s) = (0, 0, 0, 0);
        let mut cases = String::new();
        for run in &case.runs {
            t += 1;
            let _ =
                write!(
                cases,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\">\n      <properties>\n",
                escape(&format!("faultline.suite.{}.{}", result.suite, case.id)),
                escape(&format!("{} seed={} rep={}", case.id, run.seed, run.repetition)),
                run.seconds
            );
            let mut props = vec![
                ("seed", run.seed.to_string()),
                ("repetition", run.repetition.to_string()),
                ("target", case.target.clone()),
                ("expect", case.expect.describe()),
                ("verdict", format!("{:?}", run.verdict).to_lowercase()),
                ("reproduce", run.reproduce.clone()),
            ];
            if let Some(v) = &run.version {
                props.push(("version", v.clone()));
            }
            if let Some(d) = &run.run_dir {
                props.push(("run_dir", d.clone()));
            }
            if run.flaky_infra {
                props.push(("flaky_infra", "true".into()));
            }
            for (k, v) in props {
                let _ = writeln!(
                    cases,
                    "        <property name=\"{k}\" value=\"{}\"/>",
                    escape(&v)
                );
            }
            cases.push_str("      </properties>\n");
            if run.flaky_infra {
                let _ = writeln!(
                    cases,
                    "      <flakyError message=\"{}\" type=\"harness\"/>",
                    escape(
                        run.error
                            .as_deref()
                            .unwrap_or("harness error, passed on retry")
                    )
                );
            }
            match outcome(case, run) {
                Outcome::Passed => {}
                Outcome::PassedWithNote(m) => {
                    let _ = writeln!(
                        cases,
                        "      <flakyFailure message=\"{}\" type=\"not-detected\"/>",
                        escape(&m)
                    );
                }
                Outcome::Failed(m) => {
                    f += 1;
                    let _ = writeln!(
                        cases,
                        "      <failure message=\"{}\" type=\"{}\"/>",
                        escape(&m),
                        case.verdict.as_str()
                    );
                }
                Outcome::Skipped(m) => {
                    s += 1;
                    let _ = writeln!(cases, "      <skipped message=\"{}\"/>", escape(&m));
                }
                Outcome::Error(m) => {
                    e += 1;
                    let _ = writeln!(
                        cases,
                        "      <error message=\"{}\" type=\"harness\"/>",
                        escape(&m)
                    );
                }
            }
            cases.push_str("    </testcase>\n");
        }
        let _ = write!(
            body,
            "  <testsuite name=\"{}\" tests=\"{t}\" failures=\"{f}\" errors=\"{e}\" skipped=\"{s}\">\n    <properties>\n      <property name=\"verdict\" value=\"{}\"/>\n      <property name=\"reason\" value=\"{}\"/>\n    </properties>\n{cases}  </testsuite>\n",
            escape(&format!("faultline.suite.{}.{}", result.suite, case.id)),
            case.verdict.as_str(),
            escape(&case.reason),
        );
        tests += t;
        failures += f;
        errors += e;
        skipped += s;
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{:.3}\">\n{body}</testsuites>\n",
        escape(&format!("faultline.suite.{}", result.suite)),
        result.seconds
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::result::tests::{canary, case, error_run, run};

    #[test]
    fn relative_paths_climb_out_of_the_base() {
        assert_eq!(
            relative(Path::new("/a/b/out"), Path::new("/a/b/store/x/1")),
            Path::new("../store/x/1")
        );
        assert_eq!(
            relative(Path::new("/a/out"), Path::new("/a/out/store/r")),
            Path::new("store/r")
        );
        assert_eq!(
            relative(Path::new("out/m"), Path::new("shards/1/store/r")),
            Path::new("../../shards/1/store/r")
        );
    }

    #[test]
    fn junit_has_a_case_per_repetition_with_seed_and_reproduce() {
        let found = &[("replication-loop", "invalid")][..];
        let clean = &[("replication-loop", "valid")][..];
        let mut missed = run(3, 1, clean);
        missed.flaky_infra = true;
        let r = SuiteResult {
            format: FORMAT.into(),
            suite: "canary".into(),
            file: "suites/canary.yaml".into(),
            listed: vec![],
            partitions: vec![],
            repeat: 3,
            seconds: 10.0,
            interrupted: false,
            cases: vec![
                case(
                    "seed@redis",
                    canary(0.0),
                    vec![run(1, 1, found), run(2, 1, found), missed],
                ),
                case(
                    "smoke@redis",
                    Expect::Valid,
                    vec![run(4, 1, found), error_run(5)],
                ),
            ],
        };
        let xml = junit(&r);
        assert_eq!(xml.matches("<testcase ").count(), 5);
        assert!(
            xml.contains("tests=\"5\" failures=\"1\" errors=\"1\" skipped=\"0\""),
            "{xml}"
        );
        assert!(xml.contains("<property name=\"seed\" value=\"3\"/>"));
        assert!(xml.contains("<property name=\"reproduce\" value=\"faultline suite s.yaml --case x --seed 4 --repeat 1\"/>"));
        assert_eq!(xml.matches("<flakyFailure ").count(), 1);
        assert_eq!(xml.matches("<flakyError ").count(), 1);
        assert!(
            xml.contains("<failure message=\"found: replication-loop\" type=\"fail\"/>"),
            "{xml}"
        );
    }
}
