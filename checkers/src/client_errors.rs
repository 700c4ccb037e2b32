//! `client-errors`: what the client (faultline's own, or a library behind its adapter)
//! made of each failover, judged against the scenario's tolerance.
//!
//! Promotions come from the topology log: a node that an observer listed as a replica and
//! then lists as a primary holding slots, at the first observer that shows it (later
//! sightings by other observers, until some observer sees the node demoted again, are the
//! same promotion). For each
//! promotion the **error window** runs from that sighting to the first `ok` completion of
//! an op on a key of the promoted node's slots (with faultline's client, which records
//! the node, one the promoted node answered; a library hides the node, so its window
//! closes at its first ok on the shard, and in a partition an ok from an isolated old
//! primary would close it early). Its p50 and max are reported, as are the errors met
//! inside it.
//!
//! Every `fail` and `info` of a client op is counted by kind (READONLY, MOVED, ASK,
//! TRYAGAIN, CLUSTERDOWN, connection, timeout, other; a library that gives up with MOVED
//! did not follow the redirect), overall and while a fault was in force (from a fault's
//! invoke to the completion of the heal after it, or its own completion for a fault with
//! no heal such as a failover).
//!
//! One shape is a finding: a `READONLY` error more than
//! [`crate::Tolerances::client_readonly_after_promotion_ms`] after the latest promotion of
//! the key's shard was seen: the client still writes to the demoted primary
//! (redis-rs#2085).

use std::collections::BTreeMap;

use faultline_history::{Op, OpType, Process};
use serde_json::{json, Value};

use crate::checker::Input;
use crate::key_slot::key_slot;
use crate::stream::{HistoryPass, OpSource};
use crate::views::Sample;
use crate::{Checker, CheckerResult, RunData, Validity};

/// The checker's name in `results.json`.
pub const NAME: &str = "client-errors";

/// How many findings a result lists.
const EXAMPLES: usize = 20;

/// Error windows around promotions, errors by kind, and READONLY long after a failover.
/// Skipped without `history.jsonl` and `CLUSTER NODES` views; unknown when no client op
/// completed.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientErrors;

/// An error's kind, from its text (the server's code, or a library's class name).
pub fn error_kind(error: &str) -> &'static str {
    let e = error.to_ascii_lowercase();
    if e.contains("readonly") || e.contains("read only") {
        "READONLY"
    } else if e.contains("clusterdown") || e.contains("cluster is down") {
        "CLUSTERDOWN"
    } else if e.contains("moved") {
        "MOVED"
    } else if e.contains("tryagain") {
        "TRYAGAIN"
    } else if e.contains("askerror") || e.starts_with("ask ") {
        "ASK"
    } else if e.contains("timeout") || e.contains("timed out") {
        "timeout"
    } else if e.contains("connect")
        || e.contains("reset")
        || e.contains("refused")
        || e.contains("broken pipe")
        || e.contains("closed")
        || e.contains("io error")
    {
        "connection"
    } else {
        "other"
    }
}

/// One promotion seen in the topology log.
#[derive(Debug, Clone)]
struct Promotion {
    time_ns: u64,
    node: String,
    observer: String,
    slots: Vec<(u16, u16)>,
    /// When the first ok on the shard came, and whether the node was known.
    first_ok_ns: Option<u64>,
    errors: BTreeMap<&'static str, u64>,
}

impl Promotion {
    fn covers(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(a, b)| a <= slot && slot <= b)
    }
}

/// Every promotion in the run's `CLUSTER NODES` views, by its first sighting.
///
/// All observers' views are read in time order. A node an observer listed as a replica and
/// now lists as a primary holding slots is promoted, unless its last promotion is still
/// open: then this is a late sighting of the same one (an observer that was cut off
/// catching up). A promotion closes when an observer that listed the node as a primary
/// lists it as a replica again (a demotion).
fn promotions(run: &RunData) -> Vec<Promotion> {
    let views = run.views();
    let mut samples: Vec<(u64, usize, &faultline_history::ClusterView)> = Vec::new();
    for (o, observer) in views.observers.iter().enumerate() {
        for sample in &observer.samples {
            if let Sample::View { time_ns, view, .. } = sample {
                samples.push((*time_ns, o, view));
            }
        }
    }
    samples.sort_by_key(|&(t, o, _)| (t, o));
    // per observer: node id -> whether it last listed the node as a replica
    let mut replica: Vec<BTreeMap<&str, bool>> = vec![BTreeMap::new(); views.observers.len()];
    // node id -> its open promotion
    let mut open: BTreeMap<&str, usize> = BTreeMap::new();
    let mut seen: Vec<Promotion> = Vec::new();
    for (time_ns, o, view) in samples {
        for node in &view.nodes {
            let id = node.id.as_str();
            let was_replica = replica[o].get(id).copied();
            let primary = node.is_primary() && node.slot_count() > 0;
            if primary && was_replica == Some(true) && !open.contains_key(id) {
                open.insert(id, seen.len());
                seen.push(Promotion {
                    time_ns,
                    node: views.names.of(id),
                    observer: views.observers[o].name.clone(),
                    slots: node.slots.clone(),
                    first_ok_ns: None,
                    errors: BTreeMap::new(),
                });
            }
            if node.is_replica() && was_replica == Some(false) {
                open.remove(id);
            }
            replica[o].insert(id, node.is_replica());
        }
    }
    seen
}

impl Checker for ClientErrors {
    fn name(&self) -> &'static str {
        NAME
    }

    fn needs(&self) -> &'static [Input] {
        &[Input::History, Input::ClusterViews]
    }

    fn check(&self, run: &RunData) -> CheckerResult {
        crate::stream::run_in_memory(self.history_pass(run).expect("streams"), run)
    }

    fn history_pass<'r>(&self, run: &'r RunData) -> Option<Box<dyn HistoryPass + 'r>> {
        Some(Box::new(Pass {
            run,
            promotions: promotions(run),
            readonly_after_ns: run.tolerances.client_readonly_after_promotion_ms * 1_000_000,
            completions: 0,
            ok: 0,
            by_kind: BTreeMap::new(),
            during_faults: BTreeMap::new(),
            failed_during_faults: 0,
            info_during_faults: 0,
            faults_open: 0,
            late_readonly: Vec::new(),
        }))
    }
}

struct Pass<'r> {
    run: &'r RunData,
    promotions: Vec<Promotion>,
    readonly_after_ns: u64,
    completions: u64,
    ok: u64,
    by_kind: BTreeMap<&'static str, u64>,
    during_faults: BTreeMap<&'static str, u64>,
    failed_during_faults: u64,
    info_during_faults: u64,
    /// Faults applied and not yet healed.
    faults_open: u64,
    /// (position, ms after the promotion, the promotion's node)
    late_readonly: Vec<(u64, u64, String)>,
}

impl Pass<'_> {
    fn nemesis(&mut self, op: &Op) {
        let catalog = &self.run.nemesis_ops;
        let heal = catalog.is_heal(&op.f);
        match op.kind {
            OpType::Invoke if !heal => self.faults_open += 1,
            OpType::Invoke => {}
            _ if heal => self.faults_open = 0,
            _ => {
                // A fault kind without heals (a failover) is over when it completes.
                let lasting = catalog
                    .kinds()
                    .iter()
                    .any(|k| k.starts.contains(&op.f.as_str()) && !k.heals.is_empty());
                if !lasting {
                    self.faults_open = self.faults_open.saturating_sub(1);
                }
            }
        }
    }
}

impl HistoryPass for Pass<'_> {
    fn op(&mut self, at: u64, op: &Op) {
        if op.process == Process::Nemesis {
            self.nemesis(op);
            return;
        }
        if op.kind == OpType::Invoke {
            return;
        }
        self.completions += 1;
        let slot = op.key.as_deref().map(key_slot);
        if op.kind == OpType::Ok {
            self.ok += 1;
            if let Some(slot) = slot {
                for p in &mut self.promotions {
                    let node_fits = op.node.as_ref().is_none_or(|n| *n == p.node);
                    if p.first_ok_ns.is_none()
                        && op.time_ns >= p.time_ns
                        && node_fits
                        && p.covers(slot)
                    {
                        p.first_ok_ns = Some(op.time_ns);
                    }
                }
            }
            return;
        }
        let kind = error_kind(op.error.as_deref().unwrap_or(""));
        *self.by_kind.entry(kind).or_default() += 1;
        if self.faults_open > 0 {
            *self.during_faults.entry(kind).or_default() += 1;
            match op.kind {
                OpType::Fail => self.failed_during_faults += 1,
                _ => self.info_during_faults += 1,
            }
        }
        let Some(slot) = slot else { return };
        let mut latest: Option<&mut Promotion> = None;
        for p in &mut self.promotions {
            if p.time_ns <= op.time_ns && p.covers(slot) {
                if p.first_ok_ns.is_none() {
                    *p.errors.entry(kind).or_default() += 1;
                }
                latest = Some(p);
            }
        }
        if kind == "READONLY" {
            if let Some(p) = latest {
                let after = op.time_ns - p.time_ns;
                if after > self.readonly_after_ns {
                    self.late_readonly
                        .push((at, after / 1_000_000, p.node.clone()));
                }
            }
        }
    }

    fn finish(self: Box<Self>, ops: &dyn OpSource) -> CheckerResult {
        if self.completions == 0 {
            return CheckerResult::unknown("no client op completed");
        }
        let mut windows: Vec<u64> = self
            .promotions
            .iter()
            .filter_map(|p| p.first_ok_ns.map(|t| (t - p.time_ns) / 1_000_000))
            .collect();
        windows.sort_unstable();
        let p50 = windows.get(windows.len().saturating_sub(1) / 2).copied();
        let max = windows.last().copied();
        let promotions: Vec<Value> = self
            .promotions
            .iter()
            .map(|p| {
                json!({
                    "node": p.node,
                    "seen_by": p.observer,
                    "at_s": p.time_ns as f64 / 1e9,
                    "slots": p.slots.iter().map(|(a, b)| format!("{a}-{b}")).collect::<Vec<_>>(),
                    "error_window_ms": p.first_ok_ns.map(|t| (t - p.time_ns) / 1_000_000),
                    "errors_in_window": p.errors,
                })
            })
            .collect();
        let examples: Vec<Value> = self
            .late_readonly
            .iter()
            .take(EXAMPLES)
            .map(|(at, ms, node)| {
                let op = ops.op_at(*at);
                json!({
                    "index": op.index,
                    "process": op.process.to_string(),
                    "key": op.key,
                    "error": op.error,
                    "ms_after_promotion": ms,
                    "promoted": node,
                })
            })
            .collect();
        let unclosed = self
            .promotions
            .iter()
            .filter(|p| p.first_ok_ns.is_none())
            .count();
        let valid = if self.late_readonly.is_empty() {
            Validity::Valid
        } else {
            Validity::Invalid
        };
        let summary = if self.late_readonly.is_empty() {
            format!(
                "{} promotions, error window p50 {} max {}; {} errors",
                self.promotions.len(),
                p50.map_or("-".into(), |v| format!("{v} ms")),
                max.map_or("-".into(), |v| format!("{v} ms")),
                self.by_kind.values().sum::<u64>()
            )
        } else {
            format!(
                "{} READONLY errors more than {} ms after their shard's promotion (redis-rs#2085)",
                self.late_readonly.len(),
                self.readonly_after_ns / 1_000_000
            )
        };
        CheckerResult::new(valid)
            .with("summary", summary)
            .with("completions", self.completions)
            .with("ok", self.ok)
            .with("errors_by_kind", json!(self.by_kind))
            .with("errors_during_faults", json!(self.during_faults))
            .with("failed_during_faults", self.failed_during_faults)
            .with("indeterminate_during_faults", self.info_during_faults)
            .with("promotions", promotions)
            .with("error_window_p50_ms", json!(p50))
            .with("error_window_max_ms", json!(max))
            .with("windows_not_closed", unclosed)
            .with("late_readonly_count", self.late_readonly.len())
            .with("late_readonly", examples)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::tests::{healthy_round, n4_took_over_from_n1};
    use faultline_history::Observation;

    /// A client op on key `b` (slot 3300, in n1's 0-5460), completed at `ms`.
    fn op(index: u64, ms: u64, kind: OpType, error: Option<&str>) -> Op {
        let mut o = Op::new(Process::Client(index % 4), kind, "add").with_key("b");
        o.index = index;
        o.time_ns = ms * 1_000_000;
        o.error = error.map(String::from);
        o
    }

    /// n4 takes over n1's shard (0-5460), first seen at 1000 ms by n3.
    fn run(ops: Vec<Op>) -> CheckerResult {
        let mut topology = healthy_round(0);
        topology.push(Observation::reply(
            1_000_000_000,
            "n3",
            n4_took_over_from_n1(3),
        ));
        topology.push(Observation::reply(
            1_020_000_000,
            "n2",
            n4_took_over_from_n1(2),
        ));
        let mut data = RunData::from_topology(topology);
        data.history = ops;
        data.history_present = true;
        ClientErrors.check(&data)
    }

    #[test]
    fn the_error_window_runs_from_the_promotion_to_the_first_ok_on_the_shard() {
        assert_eq!(key_slot("b"), 3300);
        let r = run(vec![
            op(0, 900, OpType::Ok, None),
            op(
                1,
                1100,
                OpType::Fail,
                Some("ReadOnlyError: You can't write against a read only replica."),
            ),
            op(2, 1200, OpType::Info, Some("timeout")),
            op(3, 1450, OpType::Ok, None),
        ]);
        assert_eq!(r.valid, Validity::Valid, "{r:?}");
        assert_eq!(
            r.details["promotions"].as_array().unwrap().len(),
            1,
            "{r:?}"
        );
        assert_eq!(r.details["promotions"][0]["node"], "n4");
        assert_eq!(r.details["promotions"][0]["seen_by"], "n3");
        assert_eq!(r.details["promotions"][0]["error_window_ms"], 450);
        assert_eq!(
            r.details["promotions"][0]["errors_in_window"],
            json!({"READONLY": 1, "timeout": 1})
        );
        assert_eq!(r.details["error_window_max_ms"], 450);
        assert_eq!(
            r.details["errors_by_kind"],
            json!({"READONLY": 1, "timeout": 1})
        );
    }

    #[test]
    fn an_observer_catching_up_later_sees_the_same_promotion() {
        // n1, cut off, lists n4 as its replica until the partition heals 8 s later.
        let mut topology = healthy_round(0);
        topology.push(Observation::reply(
            1_000_000_000,
            "n3",
            n4_took_over_from_n1(3),
        ));
        topology.push(Observation::reply(
            1_000_000_000,
            "n1",
            healthy_round(1000)[0].cluster_nodes.clone().unwrap(),
        ));
        topology.push(Observation::reply(
            9_000_000_000,
            "n1",
            n4_took_over_from_n1(1),
        ));
        let mut data = RunData::from_topology(topology);
        data.history = vec![op(0, 1100, OpType::Ok, None)];
        data.history_present = true;
        let r = ClientErrors.check(&data);
        assert_eq!(
            r.details["promotions"].as_array().unwrap().len(),
            1,
            "{r:?}"
        );
        assert_eq!(r.details["promotions"][0]["seen_by"], "n3");
    }

    #[test]
    fn readonly_long_after_the_promotion_is_a_finding() {
        // redis-rs#2085: the client keeps writing to the demoted primary.
        let r = run(vec![
            op(0, 1100, OpType::Ok, None),
            op(
                1,
                4500,
                OpType::Fail,
                Some("READONLY You can't write against a read only replica."),
            ),
        ]);
        assert_eq!(r.valid, Validity::Invalid, "{r:?}");
        assert_eq!(r.details["late_readonly_count"], 1);
        assert_eq!(r.details["late_readonly"][0]["index"], 1);
        assert_eq!(r.details["late_readonly"][0]["ms_after_promotion"], 3500);
    }

    #[test]
    fn errors_are_sorted_by_kind() {
        assert_eq!(
            error_kind("ReadOnlyError: You can't write against a read only replica."),
            "READONLY"
        );
        assert_eq!(error_kind("READONLY You can't write"), "READONLY");
        assert_eq!(error_kind("CLUSTERDOWN The cluster is down"), "CLUSTERDOWN");
        assert_eq!(error_kind("MovedError: 3999 10.0.0.1:6379"), "MOVED");
        assert_eq!(error_kind("timeout"), "timeout");
        assert_eq!(
            error_kind("ConnectionError: Connection reset by peer"),
            "connection"
        );
        assert_eq!(error_kind("WRONGTYPE Operation"), "other");
    }
}
