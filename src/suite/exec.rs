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
            let (outcome, first_error) = with_one_retry(
                || attempt(case, seed, o, &run_args),
                |e| {
                    eprintln!(
                        "faultline: suite: {} seed {seed}: harness error ({e}); retrying once",
                        case.id
                    );
                },
            )
            .await;
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

/// Runs `attempt`; when it fails in the harness (exit 255), says so through `retrying`
/// and runs it once more. Returns the last outcome and the first attempt's error if there
/// was a retry. A verdict (invalid included) and bad input (254) are never retried.
async fn with_one_retry<T, F, Fut>(
    mut attempt: F,
    retrying: impl FnOnce(&str),
) -> (Result<T, Failure>, Option<String>)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    match attempt().await {
        Err(f) if f.code == exit::HARNESS_ERROR => {
            let first = format!("{:#}", f.error);
            retrying(&first);
            (attempt().await, Some(first))
        }
        other => (other, None),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs [`with_one_retry`] over a list of canned outcomes; returns the outcome, the
    /// first error and how many attempts were made.
    fn retry(outcomes: Vec<Result<u8, u8>>) -> (Result<u8, u8>, Option<String>, usize) {
        let mut left = outcomes.into_iter();
        let mut calls = 0;
        let (out, first) = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(with_one_retry(
                || {
                    calls += 1;
                    let next = left.next().expect("no more attempts expected");
                    async move {
                        next.map_err(|code| Failure {
                            code,
                            error: anyhow::anyhow!("attempt failed with {code}"),
                        })
                    }
                },
                |_| {},
            ));
        (out.map_err(|f| f.code), first, calls)
    }

    #[test]
    fn only_a_harness_error_is_retried_and_only_once() {
        // An invalid verdict is an Ok outcome: never retried.
        assert_eq!(retry(vec![Ok(exit::INVALID)]), (Ok(1), None, 1));
        assert_eq!(retry(vec![Ok(exit::VALID)]), (Ok(0), None, 1));
        // Bad input is not the infrastructure's fault: not retried.
        assert_eq!(retry(vec![Err(exit::BAD_INPUT)]).2, 1);
        // 255 then a verdict: flaky infrastructure, the first error kept.
        let (out, first, calls) = retry(vec![Err(exit::HARNESS_ERROR), Ok(exit::VALID)]);
        assert_eq!((out, calls), (Ok(0), 2));
        assert_eq!(first.as_deref(), Some("attempt failed with 255"));
        // 255 twice: an error, no third attempt.
        let (out, _, calls) = retry(vec![Err(exit::HARNESS_ERROR), Err(exit::HARNESS_ERROR)]);
        assert_eq!((out, calls), (Err(255), 2));
    }
}
