//! `suite.json`: what a suite run (or a merge of shard runs) found, case by case, and the
//! judgement of each case against its expectation. Judging is pure: a merge recomputes
//! every rate and verdict from the runs alone.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::rate::Rate;
use super::spec::Expect;
use crate::exit;

/// The file's format tag; readers refuse others.
pub const FORMAT: &str = "faultline-suite/1";

/// How one repetition ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunVerdict {
    /// Every checker said valid.
    Valid,
    /// Some checker found an anomaly.
    Invalid,
    /// Some checker could not decide, none found anything.
    Unknown,
    /// The harness failed (after the one retry).
    Error,
}

/// One repetition of one seed of a case: one run directory in the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The seed.
    pub seed: u64,
    /// 1-based repetition of that seed.
    pub repetition: u32,
    /// UTC start, `20261202T071500.123Z`.
    pub started: String,
    /// Wall-clock seconds (both attempts, when retried).
    pub seconds: f64,
    /// The run's overall verdict.
    pub verdict: RunVerdict,
    /// Each checker's verdict (`valid` / `invalid` / `unknown`).
    #[serde(default)]
    pub checkers: BTreeMap<String, String>,
    /// The server version that ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The run directory, relative to the directory holding this suite.json (or absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_dir: Option<String>,
    /// The first attempt failed in the harness (exit 255) and the retry completed.
    #[serde(default)]
    pub flaky_infra: bool,
    /// The harness error (of the attempt that failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The command that runs this case with this seed again.
    pub reproduce: String,
}

impl RunRecord {
    /// Whether `checker` said invalid in this run.
    fn found(&self, checker: &str) -> bool {
        self.checkers.get(checker).is_some_and(|v| v == "invalid")
    }

    /// Whether the run counts as a detection for `expect`: one of its checkers said
    /// invalid (any checker for a correctness case).
    pub fn detected(&self, expect: &Expect) -> bool {
        match expect.checkers() {
            Some(names) => names.iter().any(|n| self.found(n)),
            None => self.verdict == RunVerdict::Invalid,
        }
    }

    /// Checkers that said invalid and are not the expected ones (every finding of a
    /// correctness case).
    pub fn unexpected(&self, expect: &Expect) -> Vec<String> {
        let listed = expect.checkers().unwrap_or(&[]);
        self.checkers
            .iter()
            .filter(|(n, v)| *v == "invalid" && !listed.contains(n))
            .map(|(n, _)| n.clone())
            .collect()
    }
}

/// What became of a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaseVerdict {
    /// The expectation holds.
    Pass,
    /// A correctness case could not be decided (unknown, no finding).
    Unknown,
    /// Some repetition failed in the harness twice, or no shard ran the case.
    Error,
    /// A correctness case found something, a canary's bound fell below its bar, or a
    /// known case found something beyond its known finding.
    Fail,
}

impl CaseVerdict {
    /// The word in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            CaseVerdict::Pass => "pass",
            CaseVerdict::Unknown => "unknown",
            CaseVerdict::Error => "error",
            CaseVerdict::Fail => "fail",
        }
    }
}

/// One case: its runs and their judgement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseResult {
    /// `<scenario>@<target>`.
    pub id: String,
    /// The scenario's name.
    pub scenario: String,
    /// The scenario file as the suite named it.
    pub scenario_file: String,
    /// The target as written.
    pub target: String,
    /// What it expects.
    pub expect: Expect,
    /// Every repetition, in the order run.
    pub runs: Vec<RunRecord>,
    /// Judged from `runs` by [`CaseResult::judge`].
    #[serde(default = "default_verdict")]
    pub verdict: CaseVerdict,
    /// Why, in a sentence.
    #[serde(default)]
    pub reason: String,
    /// Detections (canary, known) or findings (correctness) of n completed repetitions.
    #[serde(default = "empty_rate")]
    pub rate: Rate,
    /// Per checker: invalid in k of the n completed repetitions that ran it.
    #[serde(default)]
    pub checkers: BTreeMap<String, Rate>,
    /// A known finding whose stated rate is outside the observed interval.
    #[serde(default)]
    pub rate_changed: bool,
}

fn default_verdict() -> CaseVerdict {
    CaseVerdict::Error
}

fn empty_rate() -> Rate {
    Rate::new(0, 0)
}

impl CaseResult {
    /// Recomputes `rate`, `checkers`, `verdict`, `reason` and `rate_changed` from `runs`.
    pub fn judge(&mut self) {
        let done: Vec<&RunRecord> = self
            .runs
            .iter()
            .filter(|r| r.verdict != RunVerdict::Error)
            .collect();
        let n = done.len() as u32;
        let errors = self.runs.len() - done.len();
        let k = done.iter().filter(|r| r.detected(&self.expect)).count() as u32;
        self.rate = Rate::new(k, n);
        self.checkers.clear();
        let mut counts: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
        for r in &done {
            for (name, v) in &r.checkers {
                let c = counts.entry(name).or_default();
                c.1 += 1;
                c.0 += u32::from(v == "invalid");
            }
        }
        for (name, (k, n)) in counts {
            self.checkers.insert(name.to_string(), Rate::new(k, n));
        }
        self.rate_changed = false;
        let error_note = if errors > 0 {
            format!("; {errors} repetition(s) failed in the harness twice")
        } else {
            String::new()
        };
        let (verdict, reason) = if self.runs.is_empty() {
            (
                CaseVerdict::Error,
                "no repetition ran (a missing shard?)".to_string(),
            )
        } else if n == 0 {
            (
                CaseVerdict::Error,
                format!("every repetition failed in the harness{error_note}"),
            )
        } else {
            match &self.expect {
                Expect::Valid => {
                    let unknown = done
                        .iter()
                        .filter(|r| r.verdict == RunVerdict::Unknown)
                        .count();
                    if k > 0 {
                        (
                            CaseVerdict::Fail,
                            format!(
                                "found something in {k} of {n} repetitions: {}",
                                self.found_names()
                            ),
                        )
                    } else if errors > 0 {
                        (
                            CaseVerdict::Error,
                            format!("nothing found in {n} repetitions{error_note}"),
                        )
                    } else if unknown > 0 {
                        (CaseVerdict::Unknown, format!("nothing found, but {unknown} of {n} repetitions could not be decided"))
                    } else {
                        (
                            CaseVerdict::Pass,
                            format!("nothing found in {n} repetitions"),
                        )
                    }
                }
                Expect::Invalid { min_rate, .. } => {
                    let r = self.rate;
                    if r.low < *min_rate {
                        (
                            CaseVerdict::Fail,
                            format!(
                                "detected {}: lower bound {:.2} is below {min_rate:.2}{error_note}",
                                r.describe(),
                                r.low
                            ),
                        )
                    } else if errors > 0 {
                        (
                            CaseVerdict::Error,
                            format!("detected {}{error_note}", r.describe()),
                        )
                    } else {
                        (
                            CaseVerdict::Pass,
                            format!(
                                "detected {}: lower bound {:.2} >= {min_rate:.2}",
                                r.describe(),
                                r.low
                            ),
                        )
                    }
                }
                Expect::Known { rate, .. } => {
                    let extra: Vec<&RunRecord> = done
                        .iter()
                        .copied()
                        .filter(|r| !r.unexpected(&self.expect).is_empty())
                        .collect();
                    self.rate_changed = *rate < self.rate.low || *rate > self.rate.high;
                    let changed = if self.rate_changed {
                        format!("; the known rate {rate:.2} is outside the interval: rate changed")
                    } else {
                        String::new()
                    };
                    if !extra.is_empty() {
                        let names: std::collections::BTreeSet<String> = extra
                            .iter()
                            .flat_map(|r| r.unexpected(&self.expect))
                            .collect();
                        (
                            CaseVerdict::Fail,
                            format!(
                                "found beyond the known finding in {} of {n} repetitions: {}",
                                extra.len(),
                                names.into_iter().collect::<Vec<_>>().join(", ")
                            ),
                        )
                    } else if errors > 0 {
                        (
                            CaseVerdict::Error,
                            format!(
                                "known finding {}{changed}{error_note}",
                                self.rate.describe()
                            ),
                        )
                    } else {
                        (
                            CaseVerdict::Pass,
                            format!("known finding {}{changed}", self.rate.describe()),
                        )
                    }
                }
            }
        };
        self.verdict = verdict;
        self.reason = reason;
    }

    /// Checkers that said invalid anywhere in the case, with counts.
    fn found_names(&self) -> String {
        self.checkers
            .iter()
            .filter(|(_, r)| r.k > 0)
            .map(|(n, r)| format!("{n} {}/{}", r.k, r.n))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Some repetitions found it and some did not, or the harness needed a retry.
    pub fn mixed(&self) -> bool {
        (self.rate.k > 0 && self.rate.k < self.rate.n) || self.runs.iter().any(|r| r.flaky_infra)
    }

    /// Newest start among the runs (for ordering), empty if none.
    pub fn newest(&self) -> &str {
        self.runs
            .iter()
            .map(|r| r.started.as_str())
            .max()
            .unwrap_or("")
    }
}

/// A case as `--list --format json` prints it and suite.json lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListedCase {
    /// `<scenario>@<target>`.
    pub id: String,
    /// The scenario's name.
    pub scenario: String,
    /// The scenario file as the suite names it.
    pub scenario_file: String,
    /// The target as written.
    pub target: String,
    /// Seeds given in the suite (absent: one per repetition, drawn from the id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seeds: Option<Vec<u64>>,
    /// What it expects.
    pub expect: Expect,
}

impl CaseResult {
    /// A case with no runs yet (judged: an error until runs are added).
    pub fn empty(listed: &ListedCase) -> CaseResult {
        let mut c = CaseResult {
            id: listed.id.clone(),
            scenario: listed.scenario.clone(),
            scenario_file: listed.scenario_file.clone(),
            target: listed.target.clone(),
            expect: listed.expect.clone(),
            runs: Vec::new(),
            verdict: CaseVerdict::Error,
            reason: String::new(),
            rate: Rate::new(0, 0),
            checkers: BTreeMap::new(),
            rate_changed: false,
        };
        c.judge();
        c
    }
}

/// `suite.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuiteResult {
    /// [`FORMAT`].
    pub format: String,
    /// The suite's name.
    pub suite: String,
    /// The suite file as given.
    pub file: String,
    /// Every case of the suite (all shards), so a merge can tell a shard is missing.
    pub listed: Vec<ListedCase>,
    /// The shards this result holds (`hash:1/4`; empty for an unsharded run).
    #[serde(default)]
    pub partitions: Vec<String>,
    /// Repetitions asked for.
    pub repeat: u32,
    /// Seconds of wall clock (summed over shards after a merge).
    pub seconds: f64,
    /// A Ctrl-C cut the run short.
    #[serde(default)]
    pub interrupted: bool,
    /// The cases this result ran (a shard's own; every one after a merge).
    pub cases: Vec<CaseResult>,
}

impl SuiteResult {
    /// The exit code: 1 if a case failed, else 255 if the harness failed (or the run was
    /// interrupted), else 2 if a correctness case could not be decided, else 0 (also for
    /// a shard that holds no case: a hash partition of a few cases may leave one empty).
    pub fn exit_code(&self) -> u8 {
        let worst = self.cases.iter().map(|c| c.verdict).max();
        match worst {
            Some(CaseVerdict::Fail) => exit::INVALID,
            _ if self.interrupted => exit::HARNESS_ERROR,
            Some(CaseVerdict::Error) => exit::HARNESS_ERROR,
            Some(CaseVerdict::Unknown) => exit::UNKNOWN,
            Some(CaseVerdict::Pass) | None => exit::VALID,
        }
    }

    /// One line per case, for the terminal and the log.
    pub fn table(&self) -> String {
        let w = self
            .cases
            .iter()
            .map(|c| c.id.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let e = self
            .cases
            .iter()
            .map(|c| c.expect.describe().len())
            .max()
            .unwrap_or(6)
            .max(6);
        let mut out = format!(
            "{:<w$}  {:<7}  {:<e$}  reason\n",
            "case", "verdict", "expect"
        );
        for c in &self.cases {
            out.push_str(&format!(
                "{:<w$}  {:<7}  {:<e$}  {}{}\n",
                c.id,
                c.verdict.as_str(),
                c.expect.describe(),
                c.reason,
                if c.runs.iter().any(|r| r.flaky_infra) {
                    " [flaky-infra]"
                } else {
                    ""
                }
            ));
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A run record with `checkers` (name, verdict) and the overall verdict they imply.
    pub(crate) fn run(seed: u64, rep: u32, checkers: &[(&str, &str)]) -> RunRecord {
        let verdict = if checkers.iter().any(|(_, v)| *v == "invalid") {
            RunVerdict::Invalid
        } else if checkers.iter().any(|(_, v)| *v == "unknown") {
            RunVerdict::Unknown
        } else {
            RunVerdict::Valid
        };
        RunRecord {
            seed,
            repetition: rep,
            started: format!("20261202T0000{:02}.000Z", seed % 60),
            seconds: 1.0,
            verdict,
            checkers: checkers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            version: Some("7.0.15".into()),
            run_dir: None,
            flaky_infra: false,
            error: None,
            reproduce: format!("faultline suite s.yaml --case x --seed {seed} --repeat 1"),
        }
    }

    pub(crate) fn error_run(seed: u64) -> RunRecord {
        RunRecord {
            verdict: RunVerdict::Error,
            checkers: BTreeMap::new(),
            error: Some("boom".into()),
            ..run(seed, 1, &[])
        }
    }

    pub(crate) fn case(id: &str, expect: Expect, runs: Vec<RunRecord>) -> CaseResult {
        let mut c = CaseResult::empty(&ListedCase {
            id: id.into(),
            scenario: id.split('@').next().unwrap_or(id).into(),
            scenario_file: "s.yaml".into(),
            target: "redis:7.0.15".into(),
            seeds: None,
            expect,
        });
        c.runs = runs;
        c.judge();
        c
    }

    pub(crate) fn canary(min_rate: f64) -> Expect {
        Expect::Invalid {
            checkers: vec!["replication-loop".into()],
            min_rate,
        }
    }

    const FOUND: &[(&str, &str)] = &[("replication-loop", "invalid"), ("lost-writes", "valid")];
    const CLEAN: &[(&str, &str)] = &[("replication-loop", "valid"), ("lost-writes", "valid")];

    #[test]
    fn correctness_cases_fail_on_any_finding_and_are_unknown_when_undecided() {
        let c = case(
            "a@r",
            Expect::Valid,
            vec![run(1, 1, CLEAN), run(2, 1, FOUND)],
        );
        assert_eq!(c.verdict, CaseVerdict::Fail);
        assert!(
            c.reason.contains("1 of 2") && c.reason.contains("replication-loop 1/2"),
            "{}",
            c.reason
        );
        let c = case(
            "a@r",
            Expect::Valid,
            vec![run(1, 1, CLEAN), run(2, 1, &[("lost-writes", "unknown")])],
        );
        assert_eq!(c.verdict, CaseVerdict::Unknown);
        let c = case("a@r", Expect::Valid, vec![run(1, 1, CLEAN), error_run(2)]);
        assert_eq!((c.verdict, c.rate.n), (CaseVerdict::Error, 1));
        let c = case("a@r", Expect::Valid, vec![run(1, 1, CLEAN)]);
        assert_eq!(c.verdict, CaseVerdict::Pass);
    }

    #[test]
    fn canaries_are_gated_on_the_lower_bound() {
        let all = |n: u64| (0..n).map(|s| run(s, 1, FOUND)).collect::<Vec<_>>();
        assert_eq!(case("c@r", canary(0.9), all(3)).verdict, CaseVerdict::Fail);
        assert_eq!(case("c@r", canary(0.7), all(10)).verdict, CaseVerdict::Pass);
        let mut nine = all(9);
        nine.push(run(99, 1, CLEAN));
        let c = case("c@r", canary(0.5), nine);
        assert_eq!((c.verdict, c.rate.k, c.rate.n), (CaseVerdict::Pass, 9, 10));
        assert!(c.mixed());
        // An undecided repetition is not a detection.
        let c = case(
            "c@r",
            canary(0.5),
            vec![
                run(1, 1, FOUND),
                run(2, 1, &[("replication-loop", "unknown")]),
            ],
        );
        assert_eq!(c.rate.k, 1);
    }

    #[test]
    fn known_findings_pass_flag_rate_changes_and_fail_on_anything_else() {
        let known = |rate: f64| Expect::Known {
            checkers: vec!["replication-loop".into()],
            rate,
            reason: "upstream".into(),
            tracked: None,
        };
        let runs = (0..10)
            .map(|s| run(s, 1, if s < 2 { FOUND } else { CLEAN }))
            .collect::<Vec<_>>();
        let c = case("k@r", known(0.2), runs.clone());
        assert_eq!((c.verdict, c.rate_changed), (CaseVerdict::Pass, false));
        let c = case("k@r", known(1.0), runs.clone());
        assert_eq!((c.verdict, c.rate_changed), (CaseVerdict::Pass, true));
        let mut more = runs;
        more.push(run(50, 1, &[("lost-writes", "invalid")]));
        let c = case("k@r", known(0.2), more);
        assert_eq!(c.verdict, CaseVerdict::Fail);
        assert!(c.reason.contains("lost-writes"), "{}", c.reason);
    }

    #[test]
    fn exit_codes_rank_fail_over_error_over_unknown() {
        let mut s = SuiteResult {
            format: FORMAT.into(),
            suite: "s".into(),
            file: "s.yaml".into(),
            listed: vec![],
            partitions: vec![],
            repeat: 1,
            seconds: 0.0,
            interrupted: false,
            cases: vec![],
        };
        assert_eq!(s.exit_code(), 0, "an empty shard");
        s.cases
            .push(case("a@r", Expect::Valid, vec![run(1, 1, CLEAN)]));
        assert_eq!(s.exit_code(), 0);
        s.cases.push(case(
            "b@r",
            Expect::Valid,
            vec![run(1, 1, &[("lost-writes", "unknown")])],
        ));
        assert_eq!(s.exit_code(), 2);
        s.cases.push(case("c@r", Expect::Valid, vec![error_run(1)]));
        assert_eq!(s.exit_code(), 255);
        s.cases
            .push(case("d@r", Expect::Valid, vec![run(1, 1, FOUND)]));
        assert_eq!(s.exit_code(), 1);
    }
}
