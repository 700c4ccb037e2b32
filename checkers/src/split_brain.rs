//! `split-brain`: two nodes that each, in their own view, are primary for the same slots
//! at the same time, and whether both acknowledged writes while it lasted.
//!
//! Only a node's own `myself` line says what it will do with a write, so each node's
//! claim is read from its own polls: intervals where node X's own view says X is primary
//! for a set of slots. Two such claims overlap when their slots intersect and their
//! intervals (first to last poll showing the claim, a lower bound of how long it held)
//! intersect.
//!
//! A short overlap is part of every failover (the new primary takes the slots before the
//! old one hears of it), and a minority primary keeps calling itself primary through a
//! whole partition while refusing writes (`cluster_state:fail` after node-timeout). What
//! loses data is both sides *acknowledging writes* to those slots during the overlap. So
//! the verdict is invalid when, during an overlap at least
//! [`crate::Tolerances::split_brain_ms`] long, ok `add`s to the overlapping slots were
//! acknowledged by both nodes (the history's `node` field). Overlaps without such writes
//! are reported and leave the run valid; overlaps with no history to judge them by make it
//! unknown.

use faultline_history::{Op, OpType, Process};
use serde_json::{json, Value};

use crate::checker::Input;
use crate::in_flight::InFlight;
use crate::key_slot::key_slot;
use crate::stream::{HistoryPass, OpSource};
use crate::views::{contains, intersect, millis, normalize, ranges_text, secs, Sample, Views};
use crate::{Checker, CheckerResult, RunData, Validity};

/// The checker's name in `results.json`.
pub const NAME: &str = "split-brain";

/// How many overlaps a result lists in full.
const EXAMPLES: usize = 20;

/// How many acknowledged writes per node an overlap lists.
const WRITE_EXAMPLES: usize = 5;

/// Finds overlapping own-view primary claims and the writes both sides acknowledged
/// during them. Skipped without `topology.jsonl`; the history is optional (without it,
/// overlaps make the verdict unknown).
#[derive(Debug, Clone, Copy, Default)]
pub struct SplitBrain;

/// A maximal run of one node's polls in which its own line says primary for the same
/// slots.
struct Claim<'a> {
    node: &'a str,
    first_ns: u64,
    last_ns: u64,
    ranges: Vec<(u16, u16)>,
    /// The node's own line at the first poll.
    line: String,
}

/// An [`Overlap`] with its claims.
struct OverlapOf<'a> {
    a: &'a Claim<'a>,
    b: &'a Claim<'a>,
    ranges: &'a [(u16, u16)],
    from_ns: u64,
    to_ns: u64,
}

/// Two claims at once (indexes into the claims), and the writes each side acknowledged
/// during it.
struct Overlap {
    a: usize,
    b: usize,
    ranges: Vec<(u16, u16)>,
    from_ns: u64,
    to_ns: u64,
    /// Per side (`a`, `b`): how many ok adds it acknowledged during the overlap, and the
    /// first [`WRITE_EXAMPLES`] of them.
    acked: [(usize, Vec<Value>); 2],
}

impl Checker for SplitBrain {
    fn name(&self) -> &'static str {
        NAME
    }

    fn needs(&self) -> &'static [Input] {
        &[Input::Topology, Input::ClusterViews]
    }

    fn check(&self, run: &RunData) -> CheckerResult {
        crate::stream::run_in_memory(self.history_pass(run).expect("streams"), run)
    }

    fn history_pass<'r>(&self, run: &'r RunData) -> Option<Box<dyn HistoryPass + 'r>> {
        Some(Box::new(Pass::new(run)))
    }
}

/// The overlaps, found from the topology before the history streams past, and the
/// acknowledged adds that fall in them.
struct Pass<'r> {
    run: &'r RunData,
    claims: Vec<Claim<'r>>,
    overlaps: Vec<Overlap>,
    /// Overlaps shorter than the tolerance.
    ignored: usize,
    /// Each client's pending `add` invoke time.
    pending: InFlight<u64, u64>,
}

impl<'r> Pass<'r> {
    fn new(run: &'r RunData) -> Pass<'r> {
        let views = run.views();
        let claims = own_claims(views);
        let mut overlaps = Vec::new();
        for (i, a) in claims.iter().enumerate() {
            for (j, b) in claims.iter().enumerate().skip(i + 1) {
                if a.node == b.node {
                    continue;
                }
                let (from_ns, to_ns) = (a.first_ns.max(b.first_ns), a.last_ns.min(b.last_ns));
                if from_ns > to_ns {
                    continue;
                }
                let ranges = intersect(&a.ranges, &b.ranges);
                if !ranges.is_empty() {
                    let (a, b) = if a.node <= b.node { (i, j) } else { (j, i) };
                    overlaps.push(Overlap {
                        a,
                        b,
                        ranges,
                        from_ns,
                        to_ns,
                        acked: Default::default(),
                    });
                }
            }
        }
        overlaps.sort_by_key(|o| o.from_ns);
        let min_ns = run.tolerances.split_brain_ms.saturating_mul(1_000_000);
        let before = overlaps.len();
        overlaps.retain(|o| o.to_ns - o.from_ns >= min_ns);
        let ignored = before - overlaps.len();
        Pass {
            run,
            claims,
            overlaps,
            ignored,
            pending: InFlight::default(),
        }
    }
}

impl HistoryPass for Pass<'_> {
    /// Every ok `add` of a client, with its invoke time and its key's slot, counted in
    /// the overlaps it falls in.
    fn op(&mut self, _at: u64, op: &Op) {
        if self.overlaps.is_empty() {
            return;
        }
        let Process::Client(p) = op.process else {
            return;
        };
        if op.f != "add" {
            return;
        }
        if op.kind == OpType::Invoke {
            self.pending.invoke(p, op.time_ns);
            return;
        }
        let invoke_ns = self.pending.complete(&p).unwrap_or(op.time_ns);
        if op.kind != OpType::Ok {
            return;
        }
        let (Some(node), Some(key)) = (op.node.as_deref(), op.key.as_deref()) else {
            return;
        };
        let slot = key_slot(key);
        for o in &mut self.overlaps {
            let side = if node == self.claims[o.a].node {
                0
            } else if node == self.claims[o.b].node {
                1
            } else {
                continue;
            };
            if contains(&o.ranges, slot) && invoke_ns <= o.to_ns && op.time_ns >= o.from_ns {
                let (count, examples) = &mut o.acked[side];
                *count += 1;
                if examples.len() < WRITE_EXAMPLES {
                    examples.push(json!({
                        "index": op.index,
                        "key": op.key,
                        "value": op.value,
                        "node": op.node,
                        "time_ns": op.time_ns,
                    }));
                }
            }
        }
    }

    fn finish(self: Box<Self>, _: &dyn OpSource) -> CheckerResult {
        let run = self.run;
        let views = run.views();
        if views.ok == 0 {
            return CheckerResult::unknown(
                "topology.jsonl has no successful observation: no view to judge",
            )
            .with("input", views.input_counts());
        }
        let (overlaps, ignored) = (&self.overlaps, self.ignored);
        let tolerance_ms = run.tolerances.split_brain_ms;
        let mut double_acked = 0usize;
        let mut listed = Vec::new();
        let mut worst: Option<String> = None;
        for overlap in overlaps {
            let o = OverlapOf {
                a: &self.claims[overlap.a],
                b: &self.claims[overlap.b],
                ranges: &overlap.ranges,
                from_ns: overlap.from_ns,
                to_ns: overlap.to_ns,
            };
            let [(by_a, ex_a), (by_b, ex_b)] = &overlap.acked;
            let both = *by_a > 0 && *by_b > 0;
            let text = format!(
                "{} and {} both primary for {} in their own views for {} ms from {}",
                o.a.node,
                o.b.node,
                ranges_text(o.ranges),
                millis(o.from_ns, o.to_ns),
                secs(o.from_ns)
            );
            if both {
                double_acked += 1;
                if worst.is_none() {
                    worst = Some(format!(
                        "{text}, and both acknowledged writes then ({} by {}, {} by {})",
                        by_a, o.a.node, by_b, o.b.node
                    ));
                }
            }
            if listed.len() < EXAMPLES {
                let mut entry = json!({
                    "nodes": [o.a.node, o.b.node],
                    "slots": ranges_text(o.ranges),
                    "first_ns": o.from_ns,
                    "last_ns": o.to_ns,
                    "duration_ms": millis(o.from_ns, o.to_ns),
                    "claims": [
                        {"node": o.a.node, "first_ns": o.a.first_ns, "last_ns": o.a.last_ns,
                         "slots": ranges_text(&o.a.ranges), "own_line": o.a.line},
                        {"node": o.b.node, "first_ns": o.b.first_ns, "last_ns": o.b.last_ns,
                         "slots": ranges_text(&o.b.ranges), "own_line": o.b.line},
                    ],
                    "double_acknowledged": both,
                });
                if run.history_present {
                    entry["acknowledged"] = json!({
                        o.a.node: by_a,
                        o.b.node: by_b,
                    });
                    entry["acknowledged_examples"] = json!({
                        o.a.node: ex_a,
                        o.b.node: ex_b,
                    });
                }
                listed.push(entry);
            }
        }

        let longest = overlaps
            .iter()
            .map(|o| o.to_ns - o.from_ns)
            .max()
            .unwrap_or(0);
        let (valid, summary) = if let Some(worst) = worst {
            let more = if double_acked > 1 {
                format!(" ({double_acked} such overlaps)")
            } else {
                String::new()
            };
            (Validity::Invalid, format!("{worst}{more}"))
        } else if overlaps.is_empty() {
            let mut s = "no two nodes claimed the same slots as primary at once in their own views"
                .to_string();
            if ignored > 0 {
                s.push_str(&format!(
                    " ({ignored} overlaps shorter than the {tolerance_ms} ms tolerance ignored)"
                ));
            }
            (Validity::Valid, s)
        } else if !run.history_present {
            (
                Validity::Unknown,
                format!(
                    "{} overlaps of own-view primary claims (longest {} ms) and no history.jsonl to tell whether both sides acknowledged writes",
                    overlaps.len(),
                    (longest + 500_000) / 1_000_000
                ),
            )
        } else {
            (
                Validity::Valid,
                format!(
                    "{} overlaps of own-view primary claims (longest {} ms), none with writes acknowledged by both sides",
                    overlaps.len(),
                    (longest + 500_000) / 1_000_000
                ),
            )
        };
        let mut result = CheckerResult::new(valid)
            .with("summary", summary.clone())
            .with("overlap_count", overlaps.len())
            .with("double_acknowledged_count", double_acked)
            .with("longest_ms", (longest + 500_000) / 1_000_000)
            .with("ignored_shorter", ignored)
            .with("tolerance_ms", tolerance_ms)
            .with("overlaps", listed)
            .with("input", views.input_counts());
        if valid == Validity::Unknown {
            result = result.with("reason", summary);
        }
        result
    }
}

/// Every node's own primary claims, from its own polls.
fn own_claims<'a>(views: &'a Views) -> Vec<Claim<'a>> {
    let mut out = Vec::new();
    for observer in &views.observers {
        let mut open: Option<Claim<'a>> = None;
        for sample in &observer.samples {
            let claim = match sample {
                Sample::View { view, .. } => view
                    .myself()
                    .filter(|me| me.is_primary() && !me.slots.is_empty())
                    .map(|me| (normalize(me.slots.clone()), me)),
                Sample::Failed { .. } => None,
            };
            let t = sample.time_ns();
            match (claim, open.as_mut()) {
                (Some((ranges, _)), Some(c)) if c.ranges == ranges => c.last_ns = t,
                (Some((ranges, me)), _) => {
                    out.extend(open.take());
                    let line = match sample {
                        Sample::View { text, .. } => text
                            .lines()
                            .map(str::trim)
                            .find(|l| l.starts_with(&me.id))
                            .unwrap_or_default()
                            .to_string(),
                        Sample::Failed { .. } => String::new(),
                    };
                    open = Some(Claim {
                        node: &observer.name,
                        first_ns: t,
                        last_ns: t,
                        ranges,
                        line,
                    });
                }
                (None, _) => out.extend(open.take()),
            }
        }
        out.extend(open);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::tests::{healthy_round, view_3x1};
    use faultline_history::Observation;

    const MS: u64 = 1_000_000;

    /// n4's own view after it was promoted, while n1 has not heard of it.
    fn n4_promoted() -> String {
        crate::views::tests::n4_promoted(4)
    }

    /// A key in slot range 0-5460 (`foo` is in slot 12182, so use a tag that lands low).
    fn low_key() -> String {
        let key = (0..)
            .map(|i| format!("s{{{i}}}"))
            .find(|k| key_slot(k) <= 5460)
            .unwrap();
        assert!(key_slot(&key) <= 5460);
        key
    }

    fn add(index: u64, process: u64, t_ms: u64, key: &str, node: &str) -> [Op; 2] {
        let mut invoke = Op::new(Process::Client(process), OpType::Invoke, "add")
            .with_key(key)
            .with_value(index);
        invoke.time_ns = t_ms * MS;
        invoke.index = index * 2;
        let mut ok = invoke.complete(OpType::Ok);
        ok.time_ns = t_ms * MS + MS / 2;
        ok.index = index * 2 + 1;
        ok.node = Some(node.to_string());
        [invoke, ok]
    }

    /// n1 keeps calling itself primary from 0 to 300 ms; n4 does from 100 ms on.
    fn overlapping() -> Vec<Observation> {
        let mut obs = healthy_round(0);
        for t in (50..=300).step_by(50) {
            obs.push(Observation::reply(t * MS, "n1", view_3x1(1, &|_, _| {})));
        }
        for t in (100..=400).step_by(50) {
            obs.push(Observation::reply(t * MS, "n4", n4_promoted()));
        }
        obs
    }

    #[test]
    fn overlapping_own_views_with_writes_acked_by_both_is_invalid() {
        let key = low_key();
        let mut history = Vec::new();
        history.extend(add(0, 0, 150, &key, "n1"));
        history.extend(add(1, 1, 200, &key, "n4"));
        history.extend(add(2, 2, 250, &key, "n4"));
        // Before the overlap: n1 alone was primary.
        history.extend(add(3, 3, 20, &key, "n1"));
        let run = RunData::from_topology(overlapping()).with_history(history);
        let r = SplitBrain.check(&run);
        assert_eq!(r.valid, Validity::Invalid, "{r:?}");
        let o = &r.details["overlaps"][0];
        assert_eq!(o["nodes"], json!(["n1", "n4"]));
        assert_eq!(o["slots"], "0-5460");
        assert_eq!(o["first_ns"], 100 * MS);
        assert_eq!(o["last_ns"], 300 * MS);
        assert_eq!(o["duration_ms"], 200);
        assert_eq!(o["acknowledged"], json!({"n1": 1, "n4": 2}));
        assert_eq!(
            o["acknowledged_examples"]["n4"].as_array().unwrap().len(),
            2
        );
        assert_eq!(r.details["double_acknowledged_count"], 1);
        let s = r.details["summary"].as_str().unwrap();
        assert!(s.contains("n1 and n4 both primary for 0-5460"), "{s}");
        assert!(s.contains("1 by n1, 2 by n4"), "{s}");
    }

    #[test]
    fn an_overlap_acked_by_one_side_only_is_valid_and_reported() {
        let key = low_key();
        let mut history = Vec::new();
        history.extend(add(0, 0, 150, &key, "n4"));
        // A write to another shard acknowledged by n1 does not count.
        let other = (0..)
            .map(|i| format!("s{{{i}}}"))
            .find(|k| key_slot(k) > 5460)
            .unwrap();
        history.extend(add(1, 1, 150, &other, "n1"));
        let run = RunData::from_topology(overlapping()).with_history(history);
        let r = SplitBrain.check(&run);
        assert_eq!(r.valid, Validity::Valid, "{r:?}");
        assert_eq!(r.details["overlap_count"], 1);
        assert_eq!(
            r.details["overlaps"][0]["acknowledged"],
            json!({"n1": 0, "n4": 1})
        );
    }

    #[test]
    fn an_overlap_without_history_is_unknown_and_tolerance_hides_it() {
        let mut run = RunData::from_topology(overlapping());
        let r = SplitBrain.check(&run);
        assert_eq!(r.valid, Validity::Unknown, "{r:?}");
        assert!(r.details["reason"]
            .as_str()
            .unwrap()
            .contains("no history.jsonl"));
        run.tolerances.split_brain_ms = 201;
        let r = SplitBrain.check(&run);
        assert_eq!(r.valid, Validity::Valid, "{r:?}");
        assert_eq!(r.details["ignored_shorter"], 1);
    }

    #[test]
    fn a_healthy_cluster_has_no_overlap() {
        let mut obs = healthy_round(0);
        obs.extend(healthy_round(50));
        let r = SplitBrain.check(&RunData::from_topology(obs));
        assert_eq!(r.valid, Validity::Valid, "{r:?}");
        assert_eq!(r.details["overlap_count"], 0);
    }
}
