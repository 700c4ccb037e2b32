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

/// Two claims at once.
struct Overlap<'a> {
    a: &'a Claim<'a>,
    b: &'a Claim<'a>,
    ranges: Vec<(u16, u16)>,
    from_ns: u64,
    to_ns: u64,
}

/// An acknowledged add, invoke and completion paired.
struct Ack<'a> {
    invoke_ns: u64,
    complete: &'a Op,
    slot: u16,
}

impl Checker for SplitBrain {
    fn name(&self) -> &'static str {
        NAME
    }

    fn needs(&self) -> &'static [Input] {
        &[Input::Topology, Input::ClusterViews]
    }

    fn check(&self, run: &RunData) -> CheckerResult {
        let views = run.views();
        if views.ok == 0 {
            return CheckerResult::unknown(
                "topology.jsonl has no successful observation: no view to judge",
            )
            .with("input", views.input_counts());
        }
        let claims = own_claims(views);
        let mut overlaps = Vec::new();
        for (i, a) in claims.iter().enumerate() {
            for b in &claims[i + 1..] {
                if a.node == b.node {
                    continue;
                }
                let (from_ns, to_ns) = (a.first_ns.max(b.first_ns), a.last_ns.min(b.last_ns));
                if from_ns > to_ns {
                    continue;
                }
                let ranges = intersect(&a.ranges, &b.ranges);
                if !ranges.is_empty() {
                    let (a, b) = if a.node <= b.node { (a, b) } else { (b, a) };
                    overlaps.push(Overlap {
                        a,
                        b,
                        ranges,
                        from_ns,
                        to_ns,
                    });
                }
            }
        }
        overlaps.sort_by_key(|o| o.from_ns);
        let tolerance_ms = run.tolerances.split_brain_ms;
        let min_ns = tolerance_ms.saturating_mul(1_000_000);
        let before = overlaps.len();
        overlaps.retain(|o| o.to_ns - o.from_ns >= min_ns);
        let ignored = before - overlaps.len();

        let acks = if run.history_present {
            acked_adds(&run.history)
        } else {
            Vec::new()
        };
        let mut double_acked = 0usize;
        let mut listed = Vec::new();
        let mut worst: Option<String> = None;
        for o in &overlaps {
            let during = |node: &str| -> Vec<&Ack> {
                acks.iter()
                    .filter(|a| {
                        a.complete.node.as_deref() == Some(node)
                            && contains(&o.ranges, a.slot)
                            && a.invoke_ns <= o.to_ns
                            && a.complete.time_ns >= o.from_ns
                    })
                    .collect()
            };
            let (by_a, by_b) = (during(o.a.node), during(o.b.node));
            let both = !by_a.is_empty() && !by_b.is_empty();
            let text = format!(
                "{} and {} both primary for {} in their own views for {} ms from {}",
                o.a.node,
                o.b.node,
                ranges_text(&o.ranges),
                millis(o.from_ns, o.to_ns),
                secs(o.from_ns)
            );
            if both {
                double_acked += 1;
                if worst.is_none() {
                    worst = Some(format!(
                        "{text}, and both acknowledged writes then ({} by {}, {} by {})",
                        by_a.len(),
                        o.a.node,
                        by_b.len(),
                        o.b.node
                    ));
                }
            }
            if listed.len() < EXAMPLES {
                let examples = |acks: &[&Ack]| -> Vec<Value> {
                    acks.iter()
                        .take(WRITE_EXAMPLES)
                        .map(|a| {
                            json!({
                                "index": a.complete.index,
                                "key": a.complete.key,
                                "value": a.complete.value,
                                "node": a.complete.node,
                                "time_ns": a.complete.time_ns,
                            })
                        })
                        .collect()
                };
                let mut entry = json!({
                    "nodes": [o.a.node, o.b.node],
                    "slots": ranges_text(&o.ranges),
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
                        o.a.node: by_a.len(),
                        o.b.node: by_b.len(),
                    });
                    entry["acknowledged_examples"] = json!({
                        o.a.node: examples(&by_a),
                        o.b.node: examples(&by_b),
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

/// Every ok `add` of a client, with its invoke time and its key's slot.
fn acked_adds(history: &[Op]) -> Vec<Ack<'_>> {
    let mut pending: InFlight<u64, u64> = InFlight::default();
    let mut out = Vec::new();
    for op in history {
        let Process::Client(p) = op.process else {
            continue;
        };
        if op.f != "add" {
            continue;
        }
        if op.kind == OpType::Invoke {
            pending.invoke(p, op.time_ns);
            continue;
        }
        let invoke_ns = pending.complete(&p).unwrap_or(op.time_ns);
        if op.kind != OpType::Ok || op.node.is_none() {
            continue;
        }
        let Some(key) = op.key.as_deref() else {
            continue;
        };
        out.push(Ack {
            invoke_ns,
            complete: op,
            slot: key_slot(key),
        });
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
