//! `failover`: every manual failover the nemesis sent was taken and carried out.
//!
//! The failover nemesis sends `CLUSTER FAILOVER [FORCE|TAKEOVER]` to a replica and watches
//! the replica's own view until it calls itself primary; the reply and the outcome are in
//! the history (`nemeses/src/failover.rs`). Two outcomes are findings:
//! - **error reply**: a replica refused, e.g. Garnet's `ERR Node is not configured as a
//!   REPLICA` after a forced failover and a restart of the old primary
//!   (microsoft/garnet#1044);
//! - **not promoted**: the replica said OK but never became primary within the nemesis's
//!   time-out.
//!
//! Not findings, but counted: a failover the nemesis could not aim (no primary had a
//! replica), one whose replica could not be reached (a connection error, say while it was
//! paused), one with no completion (the run was cut short), and findings while another
//! fault (kill, pause, partition) was in force, which are expected to fail.
//!
//! With no failover in the history the verdict is valid (`failovers: 0`): there was
//! nothing that could have gone wrong, and saying unknown would make every run without the
//! failover fault unknown.

use std::collections::HashMap;

use faultline_history::{NemesisOps, Op, OpType, Process};
use serde_json::{json, Value};

use crate::checker::Input;
use crate::in_flight::InFlight;
use crate::stream::{HistoryPass, OpSource};
use crate::views::secs;
use crate::{Checker, CheckerResult, RunData, Validity};

/// The checker's name in `results.json`.
pub const NAME: &str = "failover";

/// How many findings a result lists.
const EXAMPLES: usize = 20;

/// Judges the outcome of every manual failover in the history. Skipped without
/// `history.jsonl`. No tolerance applies: a failover has an outcome, not a duration (its
/// time-out is the nemesis's `timeout_s`).
#[derive(Debug, Clone, Copy, Default)]
pub struct FailoverOutcomes;

/// How one failover went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Promoted,
    ErrorReply,
    NotPromoted,
    Unreachable,
    NotAttempted,
    Unfinished,
}

impl Outcome {
    fn is_finding(self) -> bool {
        matches!(self, Outcome::ErrorReply | Outcome::NotPromoted)
    }

    fn label(self) -> &'static str {
        match self {
            Outcome::Promoted => "promoted",
            Outcome::ErrorReply => "error reply",
            Outcome::NotPromoted => "not promoted",
            Outcome::Unreachable => "replica unreachable",
            Outcome::NotAttempted => "not attempted",
            Outcome::Unfinished => "no completion",
        }
    }
}

fn outcome(done: Option<&Op>) -> Outcome {
    let Some(done) = done else {
        return Outcome::Unfinished;
    };
    let aimed = done.value.get("replica").is_some();
    let connection = done
        .error
        .as_deref()
        .is_some_and(|e| e.starts_with("connection:"));
    match done.kind {
        OpType::Ok => Outcome::Promoted,
        _ if !aimed => Outcome::NotAttempted,
        _ if connection => Outcome::Unreachable,
        OpType::Fail => Outcome::ErrorReply,
        OpType::Info | OpType::Invoke => Outcome::NotPromoted,
    }
}

impl Checker for FailoverOutcomes {
    fn name(&self) -> &'static str {
        NAME
    }

    fn needs(&self) -> &'static [Input] {
        &[Input::History]
    }

    fn check(&self, run: &RunData) -> CheckerResult {
        crate::stream::run_in_memory(self.history_pass(run).expect("streams"), run)
    }

    fn history_pass<'r>(&self, run: &'r RunData) -> Option<Box<dyn HistoryPass + 'r>> {
        Some(Box::new(NemesisLines {
            catalog: &run.nemesis_ops,
            ops: Vec::new(),
        }))
    }
}

/// The nemesis lines of a history, kept whole as they stream past (they are few).
struct NemesisLines<'r> {
    catalog: &'r NemesisOps,
    ops: Vec<Op>,
}

impl HistoryPass for NemesisLines<'_> {
    fn op(&mut self, _at: u64, op: &Op) {
        if op.process == Process::Nemesis {
            self.ops.push(op.clone());
        }
    }

    fn finish(self: Box<Self>, _: &dyn OpSource) -> CheckerResult {
        judge(self.catalog, &self.ops)
    }
}

/// The verdict on a history's nemesis ops (`history` may hold client ops too; they are
/// ignored).
fn judge(ops: &NemesisOps, history: &[Op]) -> CheckerResult {
    // Pair failover invokes with their completions (the nemesis does one thing at a
    // time); track which faults that disrupt failovers are in force. Failovers (plain,
    // fired while a PONG is held, standalone `FAILOVER TO`) share their outcome
    // fields: reply, promoted, took_ms.
    if ops.kinds().is_empty() && history.iter().any(|o| o.process == Process::Nemesis) {
        // Without the catalog no op can be told to be a failover: saying "no failovers"
        // would be a verdict on nothing.
        return CheckerResult::unknown(
            "the history has nemesis ops but no fault catalog was given to tell failovers",
        );
    }
    let disrupting: Vec<_> = ops.kinds().iter().filter(|k| k.disrupts_failover).collect();
    let mut in_force: HashMap<&str, i64> = HashMap::new();
    let mut failovers: Vec<(&Op, Option<&Op>, bool)> = Vec::new();
    let mut open_failover: InFlight<(), usize> = InFlight::default();
    for op in history.iter().filter(|o| o.process == Process::Nemesis) {
        let faults_now = in_force.values().any(|n| *n > 0);
        if op.kind == OpType::Invoke {
            if ops.is_failover(&op.f) {
                failovers.push((op, None, faults_now));
                open_failover.invoke((), failovers.len() - 1);
            }
            continue;
        }
        if ops.is_failover(&op.f) {
            if let Some(i) = open_failover.complete(&()) {
                failovers[i].1 = Some(op);
                failovers[i].2 |= faults_now;
            }
            continue;
        }
        if op.kind != OpType::Ok {
            continue;
        }
        let f = op.f.as_str();
        for k in &disrupting {
            if k.starts.contains(&f) {
                *in_force.entry(k.kind).or_default() += 1;
            } else if k.heals.contains(&f) {
                let n = in_force.entry(k.kind).or_default();
                *n = (*n - 1).max(0);
            }
            if k.sweeps.contains(&f) {
                in_force.insert(k.kind, 0);
            }
        }
    }

    let mut counts: HashMap<&'static str, usize> = HashMap::new();
    let mut findings = Vec::new();
    let mut under_faults = 0usize;
    let mut took: Vec<u64> = Vec::new();
    for (invoke, done, faults) in &failovers {
        let o = outcome(*done);
        *counts.entry(o.label()).or_default() += 1;
        if o == Outcome::Promoted {
            if let Some(ms) = done
                .and_then(|d| d.value.get("took_ms"))
                .and_then(Value::as_u64)
            {
                took.push(ms);
            }
        }
        if !o.is_finding() {
            continue;
        }
        // FORCE and TAKEOVER exist to work while the primary is down: a replica that
        // refuses one (an error reply, not a time-out) is a finding even while a kill or
        // partition is in force (seed 004, microsoft/garnet#1044).
        let forced = matches!(
            done.unwrap_or(invoke)
                .value
                .get("mode")
                .and_then(Value::as_str),
            Some("FORCE" | "TAKEOVER")
        );
        if *faults && !(forced && o == Outcome::ErrorReply) {
            under_faults += 1;
            continue;
        }
        let done = done.unwrap_or(invoke);
        let mut finding = json!({
            "outcome": o.label(),
            "index": done.index,
            "time_ns": done.time_ns,
            "primary": done.value.get("primary"),
            "replica": done.value.get("replica"),
            "mode": done.value.get("mode"),
            "reply": done.value.get("reply"),
            "error": done.error,
        });
        // The refusing node's own role, where the fault recorded it (seed 004); absent
        // otherwise, so findings from runs without it read as they always did.
        for field in ["role", "myself"] {
            if let Some(v) = done.value.get(field) {
                finding[field] = v.clone();
            }
        }
        findings.push(finding);
    }
    let count = |o: Outcome| counts.get(o.label()).copied().unwrap_or(0);
    let attempted = failovers.len() - count(Outcome::NotAttempted);
    let words = |f: &Value| {
        let replica = f["replica"].as_str().unwrap_or("?");
        let at = secs(f["time_ns"].as_u64().unwrap_or(0));
        match f["outcome"].as_str() {
            Some("error reply") => format!(
                "{replica} replied {} at {at}{}",
                f["reply"]
                    .as_str()
                    .or(f["error"].as_str())
                    .unwrap_or("an error"),
                match f["role"].as_str() {
                    Some(role) => format!(
                        " (it called itself {role}: {})",
                        f["myself"].as_str().unwrap_or("?")
                    ),
                    None => String::new(),
                }
            ),
            _ => format!(
                "{replica} was not primary in time at {at} ({})",
                f["error"].as_str().unwrap_or("no reason given")
            ),
        }
    };
    let (valid, summary) = if !findings.is_empty() {
        let named: Vec<String> = findings.iter().take(3).map(words).collect();
        let more = if findings.len() > 3 { "; ..." } else { "" };
        (
            Validity::Invalid,
            format!(
                "{} of {attempted} failovers went wrong: {}{more}",
                findings.len(),
                named.join("; ")
            ),
        )
    } else if failovers.is_empty() {
        (Validity::Valid, "no failovers in the history".to_string())
    } else {
        let mut s = format!(
            "{} of {attempted} failovers promoted their replica",
            count(Outcome::Promoted)
        );
        if let Some(max) = took.iter().max() {
            s.push_str(&format!(" (slowest {max} ms)"));
        }
        if under_faults > 0 {
            s.push_str(&format!(
                "; {under_faults} failed while another fault was in force"
            ));
        }
        (Validity::Valid, s)
    };
    let findings_count = findings.len();
    findings.truncate(EXAMPLES);
    CheckerResult::new(valid)
        .with("summary", summary)
        .with("failovers", failovers.len())
        .with("promoted", count(Outcome::Promoted))
        .with("error_replies", count(Outcome::ErrorReply))
        .with("not_promoted", count(Outcome::NotPromoted))
        .with("unreachable", count(Outcome::Unreachable))
        .with("not_attempted", count(Outcome::NotAttempted))
        .with("unfinished", count(Outcome::Unfinished))
        .with("under_other_faults", under_faults)
        .with("finding_count", findings_count)
        .with("findings", findings)
        .with("slowest_promotion_ms", took.iter().max().copied())
}

#[cfg(test)]
mod tests {
    use faultline_history::{FaultOps, NemesisOps};

    use super::*;

    fn nemesis(kind: OpType, f: &str, value: Value, error: Option<&str>) -> Op {
        let mut op = Op::new(Process::Nemesis, kind, f).with_value(value);
        op.error = error.map(str::to_string);
        op
    }

    fn numbered(mut ops: Vec<Op>) -> Vec<Op> {
        for (i, op) in ops.iter_mut().enumerate() {
            op.index = i as u64;
            op.time_ns = (i as u64 + 1) * 1_000_000_000;
        }
        ops
    }

    fn failover(kind: OpType, value: Value, error: Option<&str>) -> [Op; 2] {
        [
            nemesis(
                OpType::Invoke,
                "failover",
                json!({"kind": "failover"}),
                None,
            ),
            nemesis(kind, "failover", value, error),
        ]
    }

    /// The op names these tests write, as the nemeses' packages declare them.
    const OPS: &[FaultOps] = &[
        FaultOps::new(&["failover"]).failing_over(),
        FaultOps::new(&["pause"])
            .with_heals(&["resume"])
            .disrupting_failovers(),
    ];

    fn check(ops: Vec<Op>) -> CheckerResult {
        let run = RunData::from_history(numbered(ops)).with_nemesis_ops(NemesisOps::new(OPS));
        FailoverOutcomes.check(&run)
    }

    #[test]
    fn promoted_failovers_are_valid_and_none_is_valid_with_zero() {
        let mut ops = Vec::new();
        ops.extend(failover(
            OpType::Ok,
            json!({"replica": "n4", "primary": "n1", "reply": "OK", "promoted": true, "took_ms": 812}),
            None,
        ));
        let r = check(ops);
        assert_eq!(r.valid, Validity::Valid, "{r:?}");
        assert_eq!(r.details["promoted"], 1);
        assert_eq!(r.details["slowest_promotion_ms"], 812);
        let r = check(Vec::new());
        assert_eq!(r.valid, Validity::Valid);
        assert_eq!(r.details["failovers"], 0);
    }

    #[test]
    fn an_error_reply_and_a_missing_promotion_are_findings() {
        let mut ops = Vec::new();
        ops.extend(failover(
            OpType::Fail,
            json!({"replica": "n1", "primary": "n4", "reply": "ERR Node is not configured as a REPLICA", "promoted": false}),
            Some("ERR Node is not configured as a REPLICA"),
        ));
        ops.extend(failover(
            OpType::Info,
            json!({"replica": "n5", "primary": "n2", "reply": "OK", "promoted": false}),
            Some("n5 answered OK but was not primary within 10.0s"),
        ));
        let r = check(ops);
        assert_eq!(r.valid, Validity::Invalid, "{r:?}");
        assert_eq!(r.details["error_replies"], 1);
        assert_eq!(r.details["not_promoted"], 1);
        assert_eq!(
            r.details["findings"][0]["reply"],
            "ERR Node is not configured as a REPLICA"
        );
        let s = r.details["summary"].as_str().unwrap();
        assert!(
            s.contains("n1 replied ERR Node is not configured as a REPLICA"),
            "{s}"
        );
        assert!(s.contains("n5 was not primary in time"), "{s}");
    }

    #[test]
    fn unaimed_unreachable_and_under_other_faults_are_not_findings() {
        let mut ops = Vec::new();
        ops.extend(failover(
            OpType::Fail,
            json!({"mode": "DEFAULT", "target": "primaries"}),
            Some("no primary among [\"n1\"] has a replica"),
        ));
        ops.extend(failover(
            OpType::Info,
            json!({"replica": "n4", "primary": "n1", "reply": "connection: refused", "promoted": false}),
            Some("connection: refused"),
        ));
        ops.push(nemesis(OpType::Invoke, "pause", Value::Null, None));
        ops.push(nemesis(OpType::Ok, "pause", json!({"nodes": ["n1"]}), None));
        ops.extend(failover(
            OpType::Info,
            json!({"replica": "n4", "primary": "n1", "reply": "OK", "promoted": false}),
            Some("not primary"),
        ));
        ops.push(nemesis(OpType::Invoke, "resume", Value::Null, None));
        ops.push(nemesis(OpType::Ok, "resume", Value::Null, None));
        ops.push(nemesis(OpType::Invoke, "failover", Value::Null, None));
        let r = check(ops);
        assert_eq!(r.valid, Validity::Valid, "{r:?}");
        assert_eq!(r.details["not_attempted"], 1);
        assert_eq!(r.details["unreachable"], 1);
        assert_eq!(r.details["under_other_faults"], 1);
        assert_eq!(r.details["unfinished"], 1);
    }

    #[test]
    fn nemesis_ops_without_a_catalog_are_unknown_not_valid() {
        let ops = vec![
            nemesis(OpType::Invoke, "failover", json!({}), None),
            nemesis(OpType::Ok, "failover", json!({"promoted": true}), None),
        ];
        let r = FailoverOutcomes.check(&RunData::from_history(numbered(ops)));
        assert_eq!(r.valid, Validity::Unknown, "{r:?}");
    }
}
