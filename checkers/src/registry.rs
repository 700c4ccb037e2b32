//! Every checker faultline runs, and running them.
//!
//! Adding a checker is one file (a type implementing [`Checker`]) and one line in [`all`].

use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};

use crate::stream::HistoryFile;
use crate::{
    BouncingRedirects, Checker, CheckerResult, ClientErrors, Convergence, CounterChecker,
    FailoverOutcomes, Linearizable, ListAppend, LoadError, LogPattern, LostWrites, ReplicationLoop,
    Results, RunData, SlotCoverage, SplitBrain, StuckMigration,
};

/// Every checker, in the order they run. `faultline run` and `faultline analyze` both use
/// this list, so a stored run is re-checked exactly as a live one.
pub fn all() -> Vec<Box<dyn Checker>> {
    vec![
        Box::new(LostWrites),
        Box::new(ReplicationLoop),
        Box::new(SlotCoverage),
        Box::new(SplitBrain),
        Box::new(Convergence),
        Box::new(FailoverOutcomes),
        Box::new(LogPattern),
        Box::new(BouncingRedirects),
        Box::new(ClientErrors),
        Box::new(CounterChecker),
        Box::new(ListAppend),
        Box::new(StuckMigration),
        Box::new(Linearizable::default()),
    ]
}

/// Runs `checkers` over `run` and combines their verdicts into [`Results`], carrying the
/// run's loading notes along.
///
/// A checker whose [`Checker::needs`] names an input the run does not have is skipped:
/// it is left out of the results and one note per missing input names the checkers it
/// kept from running. (So `faultline analyze` of a history recorded before topology
/// observation existed still gives the lost-writes verdict, rather than an unknown from
/// every topology checker; a run with no checker left is unknown, as always.)
///
/// A checker that panics is a bug in faultline, not evidence about the server: as in
/// Jepsen's `check-safe`, it is reported as unknown with the panic message under `error`,
/// and the other checkers still run.
///
/// A run loaded with [`crate::load_run_streaming`] should go through [`try_check`], which
/// reports a damaged history as an error; here that error leaves no checker and a note.
pub fn check(run: &RunData, checkers: &[Box<dyn Checker>]) -> Results {
    try_check(run, checkers).unwrap_or_else(|e| {
        let mut notes = run.notes.clone();
        notes.push(e.to_string());
        Results::new(BTreeMap::new(), notes)
    })
}

/// [`check`], for a run whose history may still be on disk
/// ([`RunData::history_file`]): the file is read once, every op handed to each checker
/// that streams ([`Checker::history_pass`]); the others get [`RunData::history`] read in
/// the same pass, and only if one of them [`Checker::reads_history`].
///
/// # Errors
/// [`LoadError::Read`] if the history cannot be read or has a malformed line before its
/// last (what [`crate::load_run`] would have refused).
pub fn try_check(run: &RunData, checkers: &[Box<dyn Checker>]) -> Result<Results, LoadError> {
    let mut out = BTreeMap::new();
    let mut skipped: BTreeMap<crate::Input, Vec<&'static str>> = BTreeMap::new();
    let mut applicable = Vec::new();
    for checker in checkers {
        match checker.needs().iter().find(|i| !i.present_in(run)) {
            Some(missing) => skipped.entry(*missing).or_default().push(checker.name()),
            None => applicable.push(checker.as_ref()),
        }
    }
    let mut notes = run.notes.clone();
    match (&run.history_file, run.history_present) {
        (Some(path), true) => {
            let mut passes = Vec::new();
            let mut rest = Vec::new();
            for checker in applicable {
                match guarded(|| checker.history_pass(run)) {
                    Ok(Some(pass)) => passes.push((checker.name(), Some(pass))),
                    Ok(None) => rest.push(checker),
                    Err(crashed) => {
                        out.insert(checker.name().to_string(), crashed);
                    }
                }
            }
            let collect = rest.iter().any(|c| c.reads_history());
            let mut history = Vec::new();
            let torn = faultline_history::for_each_op(path, |at, op| {
                for (name, slot) in passes.iter_mut() {
                    let Some(pass) = slot else { continue };
                    if let Err(crashed) = guarded(|| pass.op(at, op)) {
                        out.insert(name.to_string(), crashed);
                        *slot = None;
                    }
                }
                if collect {
                    history.push(op.clone());
                }
            })?;
            if let Some(torn) = torn {
                // Where load_run puts it: before the topology log's note.
                notes.insert(
                    0,
                    format!(
                        "{}:{}: torn last line skipped ({})",
                        crate::run_data::HISTORY_FILE,
                        torn.line,
                        torn.message
                    ),
                );
            }
            let file = HistoryFile(path.clone());
            for (name, slot) in passes {
                if let Some(pass) = slot {
                    let result = guarded(|| pass.finish(&file)).unwrap_or_else(|e| e);
                    out.insert(name.to_string(), result);
                }
            }
            if !rest.is_empty() {
                let full;
                let run = if collect {
                    full = RunData {
                        history,
                        history_file: None,
                        ..run.clone()
                    };
                    &full
                } else {
                    run
                };
                for checker in rest {
                    // What a checker needs of the history's content is known only now.
                    if let Some(missing) = checker.needs().iter().find(|i| !i.present_in(run)) {
                        skipped.entry(*missing).or_default().push(checker.name());
                        continue;
                    }
                    let result = guarded(|| checker.check(run)).unwrap_or_else(|e| e);
                    out.insert(checker.name().to_string(), result);
                }
            }
        }
        _ => {
            for checker in applicable {
                let result = guarded(|| checker.check(run)).unwrap_or_else(|e| e);
                out.insert(checker.name().to_string(), result);
            }
        }
    }
    for (input, names) in skipped {
        notes.push(format!(
            "skipped (no {} in the run): {}",
            input.file(),
            names.join(", ")
        ));
    }
    Ok(Results::new(out, notes))
}

/// `f()`, or the unknown verdict of a checker that panicked.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, CheckerResult> {
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        CheckerResult::unknown("the checker crashed")
            .with("error", format!("checker panicked: {message}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Validity;
    use std::collections::HashSet;

    struct Fixed(&'static str, Validity);
    impl Checker for Fixed {
        fn name(&self) -> &'static str {
            self.0
        }
        fn check(&self, _: &RunData) -> CheckerResult {
            CheckerResult::new(self.1)
        }
    }

    struct Panics;
    impl Checker for Panics {
        fn name(&self) -> &'static str {
            "panics"
        }
        fn check(&self, _: &RunData) -> CheckerResult {
            panic!("boom")
        }
    }

    #[test]
    fn names_are_unique() {
        let names: Vec<_> = all().iter().map(|c| c.name()).collect();
        let unique: HashSet<_> = names.iter().collect();
        assert_eq!(names.len(), unique.len(), "{names:?}");
        for name in [
            "lost-writes",
            "replication-loop",
            "slot-coverage",
            "split-brain",
            "convergence",
            "failover",
            "log-pattern",
            "bouncing-redirects",
            "counter",
            "list-append",
            "stuck-migration",
            "linearizable",
        ] {
            assert!(names.contains(&name), "{name} missing from {names:?}");
        }
    }

    #[test]
    fn worst_checker_wins_and_empty_registry_is_unknown() {
        let run = RunData {
            notes: vec!["a note".into()],
            ..RunData::default()
        };
        let r = check(&run, &[]);
        assert_eq!(r.valid, Validity::Unknown);
        assert_eq!(r.notes, vec!["a note".to_string()]);

        let checkers: Vec<Box<dyn Checker>> = vec![
            Box::new(Fixed("a", Validity::Valid)),
            Box::new(Fixed("b", Validity::Unknown)),
        ];
        assert_eq!(check(&run, &checkers).valid, Validity::Unknown);
        let checkers: Vec<Box<dyn Checker>> = vec![
            Box::new(Fixed("a", Validity::Valid)),
            Box::new(Fixed("b", Validity::Invalid)),
            Box::new(Fixed("c", Validity::Unknown)),
        ];
        let r = check(&run, &checkers);
        assert_eq!(r.valid, Validity::Invalid);
        assert_eq!(r.checkers.len(), 3);
    }

    #[test]
    fn a_panicking_checker_is_unknown_and_the_rest_still_run() {
        let checkers: Vec<Box<dyn Checker>> =
            vec![Box::new(Panics), Box::new(Fixed("a", Validity::Valid))];
        let r = check(&RunData::default(), &checkers);
        assert_eq!(r.valid, Validity::Unknown);
        let p = &r.checkers["panics"];
        assert_eq!(p.valid, Validity::Unknown);
        assert!(p.details["error"].as_str().unwrap().contains("boom"));
        assert_eq!(r.checkers["a"].valid, Validity::Valid);
    }

    struct NeedsTopology;
    impl Checker for NeedsTopology {
        fn name(&self) -> &'static str {
            "needs-topology"
        }
        fn needs(&self) -> &'static [crate::Input] {
            &[crate::Input::Topology]
        }
        fn check(&self, _: &RunData) -> CheckerResult {
            CheckerResult::unknown("would make every history-only run unknown")
        }
    }

    #[test]
    fn a_checker_whose_input_is_absent_is_skipped_with_a_note() {
        let checkers: Vec<Box<dyn Checker>> = vec![
            Box::new(NeedsTopology),
            Box::new(Fixed("a", Validity::Valid)),
        ];
        let r = check(&RunData::from_history(Vec::new()), &checkers);
        assert_eq!(r.valid, Validity::Valid);
        assert!(!r.checkers.contains_key("needs-topology"));
        assert_eq!(
            r.notes,
            vec!["skipped (no topology.jsonl in the run): needs-topology".to_string()]
        );
        let r = check(&RunData::from_topology(Vec::new()), &checkers);
        assert_eq!(r.valid, Validity::Unknown);
        assert!(r.notes.is_empty());
        // Every registered checker skipped: nothing was checked, so unknown.
        let r = check(&RunData::default(), &all());
        assert!(r.checkers.is_empty());
        assert_eq!(r.valid, Validity::Unknown);
        assert_eq!(r.notes.len(), 3, "{:?}", r.notes);
    }

    #[test]
    fn a_history_only_run_keeps_its_lost_writes_verdict() {
        let line = |s: &str| serde_json::from_str::<faultline_history::Op>(s).unwrap();
        let history = vec![
            line(
                r#"{"index":0,"time_ns":1,"process":0,"type":"invoke","f":"add","key":"s","value":1}"#,
            ),
            line(
                r#"{"index":1,"time_ns":2,"process":0,"type":"ok","f":"add","key":"s","value":1}"#,
            ),
            line(r#"{"index":2,"time_ns":3,"process":0,"type":"invoke","f":"read","key":"s"}"#),
            line(
                r#"{"index":3,"time_ns":4,"process":0,"type":"ok","f":"read","key":"s","value":[1]}"#,
            ),
        ];
        // A run's workload picks its own checkers (`src/analyze.rs::checkers_for`): the
        // other workloads' checkers do not judge a set history.
        let checkers: Vec<Box<dyn Checker>> = all()
            .into_iter()
            .filter(|c| !["counter", "list-append"].contains(&c.name()))
            .collect();
        let r = check(&RunData::from_history(history), &checkers);
        assert_eq!(r.valid, Validity::Valid, "{}", r.summary());
        let names: Vec<&str> = r.checkers.keys().map(String::as_str).collect();
        assert_eq!(names, ["bouncing-redirects", "failover", "lost-writes"]);
    }
}
