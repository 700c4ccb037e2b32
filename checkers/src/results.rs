//! `results.json`: every checker's verdict and the run's overall one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{CheckerResult, Validity};

/// The outcome of checking one run; serialized, it is `results.json`:
/// `{"valid": true|false|"unknown", "checkers": {"<name>": {"valid": ..., ...}}}`.
///
/// Build it with [`Results::new`] (or [`crate::check`]) so `valid` is always the
/// combination of the checkers' verdicts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// The worst checker verdict; unknown when no checker ran, because a run nobody
    /// checked must never gate a release as valid. Decides the exit code.
    pub valid: Validity,
    /// Each checker's result under its name, sorted so the file diffs cleanly.
    #[serde(default)]
    pub checkers: BTreeMap<String, CheckerResult>,
    /// How the inputs were read (torn lines and the like), so a reader of the results
    /// knows what the verdict is based on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Results {
    /// Combines checker results: the overall verdict is the worst of them, or unknown if
    /// there are none.
    pub fn new(checkers: BTreeMap<String, CheckerResult>, notes: Vec<String>) -> Results {
        let valid = if checkers.is_empty() {
            Validity::Unknown
        } else {
            Validity::combine(checkers.values().map(|c| c.valid))
        };
        Results {
            valid,
            checkers,
            notes,
        }
    }

    /// A few lines for a terminal: one per checker (name, verdict and its headline, see
    /// [`CheckerResult::headline`]), one per note, and the overall verdict last. No
    /// trailing newline.
    pub fn summary(&self) -> String {
        let width = self.checkers.keys().map(String::len).max().unwrap_or(0);
        let mut lines = Vec::new();
        if self.checkers.is_empty() {
            lines.push("no checkers ran: nothing was checked".to_string());
        }
        for (name, result) in &self.checkers {
            let headline = result.headline();
            let mut line = format!("{name:<width$}  {:<7}", result.valid.as_str());
            if !headline.is_empty() {
                line.push_str("  ");
                line.push_str(&headline);
            }
            lines.push(line.trim_end().to_string());
        }
        for note in &self.notes {
            lines.push(format!("note: {note}"));
        }
        lines.push(format!("overall: {}", self.valid));
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn results(verdicts: &[(&str, Validity)]) -> Results {
        let checkers = verdicts
            .iter()
            .map(|(n, v)| (n.to_string(), CheckerResult::new(*v)))
            .collect();
        Results::new(checkers, Vec::new())
    }

    #[test]
    fn worst_checker_wins_and_no_checkers_is_unknown() {
        use Validity::*;
        assert_eq!(results(&[]).valid, Unknown);
        assert_eq!(results(&[("a", Valid)]).valid, Valid);
        assert_eq!(results(&[("a", Valid), ("b", Unknown)]).valid, Unknown);
        assert_eq!(
            results(&[("a", Invalid), ("b", Unknown), ("c", Valid)]).valid,
            Invalid
        );
    }

    #[test]
    fn results_json_round_trips_in_the_design_format() {
        let mut checkers = BTreeMap::new();
        checkers.insert(
            "lost-writes".to_string(),
            CheckerResult::new(Validity::Invalid)
                .with("lost_count", 2)
                .with("lost", json!([{"key": "s1", "element": 7}])),
        );
        checkers.insert(
            "other".to_string(),
            CheckerResult::unknown("no topology.jsonl"),
        );
        let r = Results::new(checkers, vec!["history.jsonl:9: torn".to_string()]);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            json!({
                "valid": false,
                "checkers": {
                    "lost-writes": {"valid": false, "lost_count": 2,
                                    "lost": [{"key": "s1", "element": 7}]},
                    "other": {"valid": "unknown", "reason": "no topology.jsonl"}
                },
                "notes": ["history.jsonl:9: torn"]
            })
        );
        let text = serde_json::to_string_pretty(&r).unwrap();
        assert_eq!(serde_json::from_str::<Results>(&text).unwrap(), r);
    }

    #[test]
    fn empty_notes_are_left_out_and_a_minimal_file_parses() {
        let r = results(&[("a", Validity::Valid)]);
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(text, r#"{"valid":true,"checkers":{"a":{"valid":true}}}"#);
        let r: Results = serde_json::from_str(r#"{"valid":"unknown"}"#).unwrap();
        assert_eq!(r.valid, Validity::Unknown);
        assert!(r.checkers.is_empty() && r.notes.is_empty());
    }

    #[test]
    fn summary_has_a_line_per_checker_and_the_overall_verdict() {
        let mut checkers = BTreeMap::new();
        checkers.insert(
            "lost-writes".to_string(),
            CheckerResult::new(Validity::Invalid).with("summary", "3 of 10 lost"),
        );
        checkers.insert("x".to_string(), CheckerResult::unknown("no data"));
        let r = Results::new(checkers, vec!["torn".to_string()]);
        let s = r.summary();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 4, "{s}");
        assert!(lines[0].starts_with("lost-writes  invalid"), "{s}");
        assert!(lines[0].ends_with("3 of 10 lost"), "{s}");
        assert!(lines[1].starts_with("x            unknown"), "{s}");
        assert_eq!(lines[2], "note: torn");
        assert_eq!(lines[3], "overall: invalid");
        assert!(results(&[]).summary().contains("nothing was checked"));
    }
}
