//! Running a suite's cases: every (seed, repetition) of every case in the shard is one
//! normal run ([`crate::run::run_scenario`], into the normal store). An invalid verdict
//! is a result and is never retried; a harness failure (exit 255) is retried once, and a
//! retry that completes marks the repetition flaky-infra.

use std::path::{Path, PathBuf};

use crate::cli::RunArgs;
use crate::exit::{self, Failure};
use crate::kinds::BackendName;
use crate::run::RunOutcome;

use super::output::relative;
use super::result::{CaseResult, RunRecord, RunVerdict};
use super::spec::{Case, Suite};

/// What the command line adds to every run of the suite.
#[derive(Debug, Clone)]
pub struct Overrides {
    /// Repetitions of every seed.
    pub repeat: u32,
    /// One seed for every case (instead of the suite's).
    pub seed: Option<u64>,
    /// Where the nodes run.
    pub backend: Option<BackendName>,
    /// Seconds of workload.
    pub time_limit: Option<f64>,
    /// The store the runs go to.
    pub store: PathBuf,
}

/// Runs `cases` of `suite`; run directories are recorded relative to `out`.
///
/// Returns the cases' results and whether a Ctrl-C stopped the suite (the rest of its
/// runs are then not started).
pub async fn run_cases(
    suite: &Suite,
    cases: &[&Case],
    o: &Overrides,
    out: &Path,
) -> (Vec<CaseResult>, bool) {
    let run_args = RunArgs::store_only(o.store.clone());
    let total: usize = cases.iter().map(|c| plan(c, o).len()).sum();
    let mut done = 0;
    let mut results = Vec::new();
    let mut interrupted = false;
    for case in cases {
        let mut result = CaseResult::empty(&super::listed(case));
        for (seed, repetition) in plan(case, o) {
            if interrupted {
                break;
            }
            done += 1;
            eprintln!(
                "faultline: suite {}: [{done}/{total}] {} seed {seed} repetition {repetition}",
                suite.name, case.id
            );
            let started = super::output::stamp();
            let clock = std::time::Instant::now();
            let first = attempt(case, seed, o, &run_args).await;
            let (outcome, first_error) = match first {
                Err(f) if f.code == exit::HARNESS_ERROR => {
                    let first_error = format!("{:#}", f.error);
                    eprintln!(
                        "faultline: suite: {} seed {seed}: harness error ({first_error}); retrying once",
                        case.id
                    );
                    (attempt(case, seed, o, &run_args).await, Some(first_error))
                }
                other => (other, None),
            };
            let mut record = RunRecord {
                seed,
                repetition,
                started,
                seconds: clock.elapsed().as_secs_f64(),
                verdict: RunVerdict::Error,
                checkers: Default::default(),
                version: None,
                run_dir: None,
                flaky_infra: false,
                error: first_error.clone(),
                reproduce: reproduce(suite, case, seed, o),
            };
            match outcome {
                Ok(RunOutcome {
                    run_dir,
                    version,
                    results,
                    interrupted: cut,
                    ..
                }) => {
                    record.verdict = match results.valid {
                        faultline_checkers::Validity::Valid => RunVerdict::Valid,
                        faultline_checkers::Validity::Invalid => RunVerdict::Invalid,
                        faultline_checkers::Validity::Unknown => RunVerdict::Unknown,
                    };
                    record.checkers = results
                        .checkers
                        .iter()
                        .map(|(k, v)| (k.clone(), v.valid.as_str().to_string()))
                        .collect();
                    record.version = Some(version);
                    record.run_dir = Some(relative(out, &run_dir).display().to_string());
                    record.flaky_infra = first_error.is_some();
                    if cut {
                        interrupted = true;
                        record.verdict = RunVerdict::Error;
                        record.error = Some("interrupted (Ctrl-C)".into());
                    }
                }
                Err(f) => {
                    record.error = Some(match first_error {
                        Some(first) => format!("{:#} (first attempt: {first})", f.error),
                        None => format!("{:#}", f.error),
                    });
                }
            }
            result.runs.push(record);
        }
        result.judge();
        eprintln!(
            "faultline: suite {}: {} {}: {}",
            suite.name,
            case.id,
            result.verdict.as_str(),
            result.reason
        );
        results.push(result);
        if interrupted {
            break;
        }
    }
    (results, interrupted)
}

fn plan(case: &Case, o: &Overrides) -> Vec<(u64, u32)> {
    match o.seed {
        Some(seed) => (1..=o.repeat).map(|r| (seed, r)).collect(),
        None => case.plan(o.repeat),
    }
}

async fn attempt(
    case: &Case,
    seed: u64,
    o: &Overrides,
    run_args: &RunArgs,
) -> Result<RunOutcome, Failure> {
    let mut scenario = case.scenario_for(seed);
    if let Some(b) = o.backend {
        scenario.backend = b;
    }
    if let Some(t) = o.time_limit {
        scenario.time_limit.0 = t;
    }
    crate::run::run_scenario(scenario, run_args).await
}

/// `faultline suite FILE --case ID --seed S --repeat 1` (plus the overrides in force).
fn reproduce(suite: &Suite, case: &Case, seed: u64, o: &Overrides) -> String {
    let mut cmd = format!(
        "faultline suite {} --case {} --seed {seed} --repeat 1",
        shell_word(&suite.file.display().to_string()),
        shell_word(&case.id)
    );
    if let Some(b) = o.backend {
        cmd.push_str(&format!(" --backend {b}"));
    }
    if let Some(t) = o.time_limit {
        cmd.push_str(&format!(" --time-limit {t}"));
    }
    cmd
}

/// `text` as one shell word (single-quoted unless plainly safe).
pub fn shell_word(text: &str) -> String {
    let safe = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./-_".contains(c));
    if safe {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}
