//! Every checker faultline runs, and running them.
//!
//! Adding a checker is one file (a type implementing [`Checker`]) and one line in [`all`].

use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};

use crate::{Checker, CheckerResult, LostWrites, Results, RunData};

/// Every checker, in the order they run. `faultline run` and `faultline analyze` both use
/// this list, so a stored run is re-checked exactly as a live one.
pub fn all() -> Vec<Box<dyn Checker>> {
    vec![Box::new(LostWrites)]
}

/// Runs `checkers` over `run` and combines their verdicts into [`Results`], carrying the
/// run's loading notes along.
///
/// A checker that panics is a bug in faultline, not evidence about the server: as in
/// Jepsen's `check-safe`, it is reported as unknown with the panic message under `error`,
/// and the other checkers still run.
pub fn check(run: &RunData, checkers: &[Box<dyn Checker>]) -> Results {
    let mut out = BTreeMap::new();
    for checker in checkers {
        let result = panic::catch_unwind(AssertUnwindSafe(|| checker.check(run))).unwrap_or_else(
            |payload| {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_string());
                CheckerResult::unknown("the checker crashed")
                    .with("error", format!("checker panicked: {message}"))
            },
        );
        out.insert(checker.name().to_string(), result);
    }
    Results::new(out, run.notes.clone())
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
        assert!(names.contains(&"lost-writes"));
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
}
