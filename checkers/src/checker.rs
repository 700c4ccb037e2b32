//! The interface every checker implements, and what it returns.

use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::stream::HistoryPass;
use crate::{RunData, Validity};

/// One property checked over a run's history and topology.
///
/// Checkers are pure: they read [`RunData`] and return a verdict, with no I/O, so
/// `faultline analyze` on a stored run gives the same answer as the run itself did.
/// `Send + Sync` so the orchestrator may run them off its async threads.
pub trait Checker: Send + Sync {
    /// The name under `"checkers"` in `results.json` (kebab-case, e.g. `lost-writes`).
    /// Unique across the registry.
    fn name(&self) -> &'static str;

    /// The inputs the checker cannot work without. When one of them is absent from the
    /// run (its file was never written, as in a history recorded before topology
    /// observation existed), [`crate::check`] skips the checker and says so in a note,
    /// rather than letting an absent file turn every such run unknown.
    fn needs(&self) -> &'static [Input] {
        &[]
    }

    /// Checks `run`.
    ///
    /// # Returns
    /// The verdict and details. A checker whose inputs are present but say too little to
    /// decide answers [`Validity::Unknown`] with a `reason`, never valid.
    fn check(&self, run: &RunData) -> CheckerResult;

    /// Whether [`Checker::check`] reads [`RunData::history`]. When a run is checked
    /// streaming ([`crate::run_data::load_run_streaming`]), the history is held in memory
    /// only for checkers that read it and do not stream; the default (true) keeps a new
    /// checker correct. A checker that reads only topology or logs says false.
    fn reads_history(&self) -> bool {
        true
    }

    /// Opt-in streaming: the checker's state for one pass over the history, given the
    /// run's other inputs (its [`RunData::history`] is empty then). `None`, the default,
    /// means the checker reads [`RunData::history`] in [`Checker::check`] as always. A
    /// checker that returns a pass should implement `check` as
    /// [`crate::stream::run_in_memory`] over it, so both paths agree.
    fn history_pass<'r>(&self, _run: &'r RunData) -> Option<Box<dyn HistoryPass + 'r>> {
        None
    }
}

/// One of a run's input files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Input {
    /// `history.jsonl`.
    History,
    /// `topology.jsonl`.
    Topology,
    /// `CLUSTER NODES` views in `topology.jsonl`: absent from a `mode: standalone` run,
    /// whose lines are `INFO replication`, so slot checkers are skipped rather than
    /// calling a run with no slots valid.
    ClusterViews,
    /// `logs/<node>/server.log`.
    NodeLogs,
    /// Register or kv ops (write, cas, get, put, append) in `history.jsonl`: absent from
    /// a set-workload run, whose reads are not a register's.
    RegisterOps,
}

impl Input {
    /// The file as a person would look for it.
    pub fn file(self) -> &'static str {
        match self {
            Input::History => "history.jsonl",
            Input::Topology => "topology.jsonl",
            Input::ClusterViews => "CLUSTER NODES view in topology.jsonl (a standalone run)",
            Input::NodeLogs => "logs/<node>/server.log",
            Input::RegisterOps => "register or kv ops in history.jsonl",
        }
    }

    /// Whether `run` has this input.
    pub fn present_in(self, run: &RunData) -> bool {
        match self {
            Input::History => run.history_present,
            Input::Topology => run.topology_present,
            Input::ClusterViews => run.topology_present && !run.views().is_standalone(),
            Input::NodeLogs => run.logs_present,
            // A streamed run's history is not in memory yet: decided again once it is read
            // (`registry::try_check`).
            Input::RegisterOps => {
                (run.history_file.is_some() && run.history.is_empty() && run.history_present)
                    || crate::linearizable::has_register_ops(&run.history)
            }
        }
    }
}

/// One checker's verdict and the evidence behind it.
///
/// Serialized flat, as `results.json` wants it: `{"valid": ..., <details>...}`. By
/// convention, `summary` (a one-line string) or `reason` (why the verdict is unknown) in
/// the details is what [`crate::Results::summary`] prints for the checker.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CheckerResult {
    /// The verdict.
    pub valid: Validity,
    /// Counts, examples and anything else a person needs to act on the verdict. A
    /// `valid` key here is ignored when writing, so it cannot shadow the verdict.
    #[serde(flatten)]
    pub details: Map<String, Value>,
}

impl CheckerResult {
    /// A verdict with no details yet.
    pub fn new(valid: Validity) -> CheckerResult {
        CheckerResult {
            valid,
            details: Map::new(),
        }
    }

    /// An unknown verdict with the `reason` nothing could be decided.
    pub fn unknown(reason: impl Into<String>) -> CheckerResult {
        CheckerResult::new(Validity::Unknown).with("reason", reason.into())
    }

    /// Builder: adds one detail.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> CheckerResult {
        self.details.insert(key.to_string(), value.into());
        self
    }

    /// The text a human summary shows for this result: the `summary` detail, else the
    /// `reason`, else every numeric detail as `name=value`.
    pub fn headline(&self) -> String {
        for key in ["summary", "reason"] {
            if let Some(Value::String(s)) = self.details.get(key) {
                return s.clone();
            }
        }
        self.details
            .iter()
            .filter(|(_, v)| v.is_number())
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl Serialize for CheckerResult {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let details = self.details.iter().filter(|(k, _)| k.as_str() != "valid");
        let mut map = s.serialize_map(Some(1 + details.clone().count()))?;
        map.serialize_entry("valid", &self.valid)?;
        for (k, v) in details {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn serializes_flat_and_round_trips() {
        let r = CheckerResult::new(Validity::Invalid)
            .with("lost_count", 3)
            .with("summary", "3 lost");
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            json!({"valid": false, "lost_count": 3, "summary": "3 lost"})
        );
        let back: CheckerResult = serde_json::from_value(v).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn a_valid_detail_cannot_shadow_the_verdict() {
        let r = CheckerResult::new(Validity::Unknown).with("valid", true);
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(text, r#"{"valid":"unknown"}"#);
    }

    #[test]
    fn headline_prefers_summary_then_reason_then_counts() {
        let r = CheckerResult::new(Validity::Valid)
            .with("a", 1)
            .with("b", "x");
        assert_eq!(r.headline(), "a=1");
        assert_eq!(CheckerResult::unknown("why").headline(), "why");
        let r = CheckerResult::unknown("why").with("summary", "what");
        assert_eq!(r.headline(), "what");
    }
}
