//! `faultline suite merge DIRS...`: shard outputs joined into one result. Runs of a case
//! found in several directories are concatenated (so repeated shards add repetitions),
//! every rate and verdict is recomputed from the runs, run directories are re-pointed
//! relative to the merged output, and a case the suite lists but no shard ran is an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::output::relative;
use super::result::{CaseResult, SuiteResult};

/// Merges the results read from `inputs` (each with the directory its suite.json was in)
/// into one result whose run directories are relative to `out`.
///
/// # Errors
/// If the inputs are of different suites, or there are none.
pub fn merge(inputs: Vec<(SuiteResult, PathBuf)>, out: &Path) -> Result<SuiteResult> {
    let Some((first, _)) = inputs.first() else {
        bail!("nothing to merge: give one or more shard output directories");
    };
    let mut merged = SuiteResult {
        format: first.format.clone(),
        suite: first.suite.clone(),
        file: first.file.clone(),
        listed: Vec::new(),
        partitions: Vec::new(),
        repeat: 0,
        seconds: 0.0,
        interrupted: false,
        cases: Vec::new(),
    };
    let mut cases: BTreeMap<String, CaseResult> = BTreeMap::new();
    for (result, dir) in inputs {
        if result.suite != merged.suite {
            bail!(
                "{}: suite {:?}, but {:?} came first; merge one suite at a time",
                dir.display(),
                result.suite,
                merged.suite
            );
        }
        for l in result.listed {
            if !merged.listed.iter().any(|m| m.id == l.id) {
                merged.listed.push(l);
            }
        }
        merged.partitions.extend(result.partitions);
        merged.repeat = merged.repeat.max(result.repeat);
        merged.seconds += result.seconds;
        merged.interrupted |= result.interrupted;
        for mut case in result.cases {
            for run in &mut case.runs {
                if let Some(d) = &run.run_dir {
                    let p = Path::new(d);
                    if p.is_relative() {
                        run.run_dir = Some(relative(out, &dir.join(p)).display().to_string());
                    }
                }
            }
            match cases.get_mut(&case.id) {
                Some(c) => c.runs.append(&mut case.runs),
                None => {
                    cases.insert(case.id.clone(), case);
                }
            }
        }
    }
    // In the suite's order; cases no listing names (an older suite file) at the end.
    for l in &merged.listed {
        let mut c = cases.remove(&l.id).unwrap_or_else(|| CaseResult::empty(l));
        c.judge();
        merged.cases.push(c);
    }
    for (_, mut c) in cases {
        c.judge();
        merged.cases.push(c);
    }
    merged.partitions.sort();
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::result::tests::{canary, case, run};
    use crate::suite::result::{CaseVerdict, ListedCase, FORMAT};
    use crate::suite::spec::Expect;

    fn listed(id: &str, expect: Expect) -> ListedCase {
        ListedCase {
            id: id.into(),
            scenario: id.split('@').next().unwrap().into(),
            scenario_file: "s.yaml".into(),
            target: "redis:7.0.15".into(),
            seeds: None,
            expect,
        }
    }

    fn shard(part: &str, cases: Vec<CaseResult>) -> SuiteResult {
        SuiteResult {
            format: FORMAT.into(),
            suite: "canary".into(),
            file: "suites/canary.yaml".into(),
            listed: vec![
                listed("a@r", canary(0.3)),
                listed("b@r", Expect::Valid),
                listed("c@r", Expect::Valid),
            ],
            partitions: vec![part.into()],
            repeat: 2,
            seconds: 5.0,
            interrupted: false,
            cases,
        }
    }

    #[test]
    fn shards_merge_into_one_result_and_a_missing_case_is_an_error() {
        let found = &[("replication-loop", "invalid")][..];
        let clean = &[("replication-loop", "valid")][..];
        let mut a1 = run(1, 1, found);
        a1.run_dir = Some("store/seed/1".into());
        let s1 = shard(
            "hash:1/3",
            vec![case("a@r", canary(0.3), vec![a1, run(2, 2, found)])],
        );
        let s2 = shard(
            "hash:2/3",
            vec![case(
                "b@r",
                Expect::Valid,
                vec![run(3, 1, clean), run(4, 2, clean)],
            )],
        );
        let out = Path::new("/ci/merged");
        let m = merge(
            vec![(s2, "/ci/shards/2".into()), (s1, "/ci/shards/1".into())],
            out,
        )
        .unwrap();
        let ids: Vec<_> = m.cases.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["a@r", "b@r", "c@r"]);
        assert_eq!(m.partitions, ["hash:1/3", "hash:2/3"]);
        assert_eq!(m.seconds, 10.0);
        assert_eq!(
            m.cases[0].runs[0].run_dir.as_deref(),
            Some("../shards/1/store/seed/1")
        );
        assert_eq!(
            (m.cases[0].verdict, m.cases[0].rate.k),
            (CaseVerdict::Pass, 2)
        );
        assert_eq!(m.cases[1].verdict, CaseVerdict::Pass);
        assert_eq!(
            m.cases[2].verdict,
            CaseVerdict::Error,
            "shard 3 never ran c"
        );
        assert_eq!(m.exit_code(), 255);
    }

    #[test]
    fn repeated_shards_add_repetitions_and_other_suites_are_refused() {
        let found = &[("replication-loop", "invalid")][..];
        let clean = &[("replication-loop", "valid")][..];
        let one = shard(
            "slice:1/1",
            vec![case("a@r", canary(0.3), vec![run(1, 1, found)])],
        );
        let two = shard(
            "slice:1/1",
            vec![case("a@r", canary(0.3), vec![run(2, 1, clean)])],
        );
        let m = merge(
            vec![(one.clone(), ".".into()), (two, ".".into())],
            Path::new("."),
        )
        .unwrap();
        assert_eq!((m.cases[0].rate.k, m.cases[0].rate.n), (1, 2));
        let mut other = one.clone();
        other.suite = "nightly".into();
        assert!(merge(vec![(one, ".".into()), (other, ".".into())], Path::new(".")).is_err());
    }
}
