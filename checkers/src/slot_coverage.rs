//! `slot-coverage`: every slot has exactly one primary in every view.
//!
//! Two ways a view can be wrong about slots:
//! - **unowned**: no node flagged primary lists the slot. Either nobody lists it (Redis
//!   7.0.15 under redis/redis#13018: the shard's range vanishes) or only a node flagged
//!   replica does (Valkey 8.0.1 under valkey-io/valkey#1015: the range is printed on a
//!   `slave`). Clients routed by that node get `-CLUSTERDOWN` or loop on redirects.
//! - **double**: two primaries list the same slot in one view. Redis hands a slot to one
//!   node at a time (a higher config epoch takes it away from the old owner), so a view
//!   that shows both is itself inconsistent.

use serde_json::{json, Map, Value};

use faultline_history::cluster_nodes::SLOTS;
use faultline_history::ClusterView;

use crate::checker::Input;
use crate::episodes::{self, Episode};
use crate::views::{lines_about, normalize, ranges_text, slot_count, trimmed, Reply};
use crate::{Checker, CheckerResult, RunData};

/// The checker's name in `results.json`.
pub const NAME: &str = "slot-coverage";

/// How many lines of a view an excerpt keeps when the whole view is relevant.
const EXCERPT_LINES: usize = 12;

/// Finds unowned and doubly claimed slots in every observer's views, and how long each
/// lasted.
///
/// Episodes are per observer and per kind (unowned, double): the ranges may shift inside
/// one episode; the first view's ranges and the most slots any view of it showed are
/// reported. Invalid when an episode lasts at least
/// [`crate::Tolerances::slot_coverage_ms`]; unknown when no poll got a view; skipped
/// without `topology.jsonl`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SlotCoverage;

/// The two kinds of wrong slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Unowned,
    Double,
}

/// What one view showed of one kind.
struct Seen {
    kind: Kind,
    ranges: Vec<(u16, u16)>,
    slots: u64,
    /// Over the episode, the most slots one view showed.
    max_slots: u64,
    /// Unowned: replicas listing some of the slots. Double: the claiming primaries.
    nodes: Vec<String>,
    excerpt: Vec<String>,
}

impl Checker for SlotCoverage {
    fn name(&self) -> &'static str {
        NAME
    }

    fn needs(&self) -> &'static [Input] {
        &[Input::Topology, Input::ClusterViews]
    }

    fn reads_history(&self) -> bool {
        false
    }

    fn check(&self, run: &RunData) -> CheckerResult {
        let views = run.views();
        let found = episodes::find(&views.observers, problems, |into, later| {
            into.max_slots = into.max_slots.max(later.slots);
        });
        let names = &views.names;
        let describe = |e: &Episode<Seen>| {
            let (kind, seen) = (&e.detail.kind, &e.detail);
            let who = names
                .sorted(seen.nodes.iter().map(String::as_str))
                .join(" and ");
            match kind {
                Kind::Unowned if who.is_empty() => format!(
                    "{} saw slots {} with no node listing them",
                    e.observer,
                    ranges_text(&seen.ranges)
                ),
                Kind::Unowned => format!(
                    "{} saw slots {} with no primary (listed on replica {who})",
                    e.observer,
                    ranges_text(&seen.ranges)
                ),
                Kind::Double => format!(
                    "{} saw slots {} claimed by {who}",
                    e.observer,
                    ranges_text(&seen.ranges)
                ),
            }
        };
        let mut result = episodes::report(
            views,
            found,
            run.tolerances.slot_coverage_ms,
            "slot-coverage anomaly",
            describe,
            |e| {
                let (kind, seen) = (&e.detail.kind, &e.detail);
                let mut m = Map::new();
                m.insert(
                    "kind".into(),
                    json!(match kind {
                        Kind::Unowned => "unowned",
                        Kind::Double => "double",
                    }),
                );
                m.insert("slots".into(), json!(ranges_text(&seen.ranges)));
                m.insert("slot_count".into(), json!(seen.slots));
                m.insert("max_slot_count".into(), json!(seen.max_slots));
                m.insert(
                    "nodes".into(),
                    json!(names.sorted(seen.nodes.iter().map(String::as_str))),
                );
                m.insert("excerpt".into(), Value::from(seen.excerpt.clone()));
                m
            },
        );
        if let Some(Value::Array(list)) = result.details.get("episodes") {
            let count = |k: &str| list.iter().filter(|e| e["kind"] == k).count();
            let (unowned, double) = (count("unowned"), count("double"));
            result = result
                .with("unowned_episodes", unowned)
                .with("double_claim_episodes", double);
        }
        result
    }
}

/// The unowned and doubly claimed slots of one view, by kind.
fn problems(view: &ClusterView, text: &Reply) -> Vec<(Kind, Seen)> {
    let claims: Vec<(u16, u16, &str)> = view
        .nodes
        .iter()
        .filter(|n| n.is_primary())
        .flat_map(|n| n.slots.iter().map(move |&(a, b)| (a, b, n.id.as_str())))
        .collect();
    // Elementary intervals between every range boundary; each has one set of claimants.
    let mut cuts: Vec<u32> = vec![0, SLOTS as u32];
    for &(a, b, _) in &claims {
        cuts.push(u32::from(a));
        cuts.push(u32::from(b) + 1);
    }
    cuts.sort_unstable();
    cuts.dedup();
    let mut unowned = Vec::new();
    let mut double = Vec::new();
    let mut claimants: Vec<&str> = Vec::new();
    for w in cuts.windows(2) {
        let (a, b) = (w[0] as u16, (w[1] - 1) as u16);
        let here: Vec<&str> = claims
            .iter()
            .filter(|&&(x, y, _)| x <= a && b <= y)
            .map(|&(_, _, id)| id)
            .collect();
        match here.len() {
            0 => unowned.push((a, b)),
            1 => {}
            _ => {
                double.push((a, b));
                claimants.extend(here);
            }
        }
    }
    let mut out = Vec::new();
    if !unowned.is_empty() {
        let ranges = normalize(unowned);
        let mut listed_on: Vec<&str> = view
            .nodes
            .iter()
            .filter(|n| !n.is_primary())
            .filter(|n| {
                n.slots
                    .iter()
                    .any(|&(x, y)| ranges.iter().any(|&(a, b)| x <= b && a <= y))
            })
            .map(|n| n.id.as_str())
            .collect();
        listed_on.dedup();
        let excerpt = if listed_on.is_empty() {
            trimmed(text, EXCERPT_LINES)
        } else {
            lines_about(text, &listed_on)
        };
        let slots = slot_count(&ranges);
        out.push((
            Kind::Unowned,
            Seen {
                kind: Kind::Unowned,
                ranges,
                slots,
                max_slots: slots,
                nodes: listed_on.iter().map(|s| s.to_string()).collect(),
                excerpt,
            },
        ));
    }
    if !double.is_empty() {
        claimants.sort_unstable();
        claimants.dedup();
        let ranges = normalize(double);
        let slots = slot_count(&ranges);
        out.push((
            Kind::Double,
            Seen {
                kind: Kind::Double,
                ranges,
                slots,
                max_slots: slots,
                excerpt: lines_about(text, &claimants),
                nodes: claimants.iter().map(|s| s.to_string()).collect(),
            },
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::tests::{healthy_round, n4_promoted, n4_took_over_from_n1, view_3x1};
    use crate::Validity;
    use faultline_history::Observation;

    fn at(ms: u64, observer: &str, text: String) -> Observation {
        Observation::reply(ms * 1_000_000, observer, text)
    }

    fn check(obs: Vec<Observation>) -> CheckerResult {
        SlotCoverage.check(&RunData::from_topology(obs))
    }

    #[test]
    fn slots_listed_only_on_a_replica_are_a_gap_with_its_duration() {
        // Valkey 8.0.1 under valkey-io/valkey#1015: n1 flagged slave, still listing 0-5460.
        let bad = || {
            view_3x1(3, &|n, l| {
                if n == 1 {
                    l.flags = "slave".into();
                    l.primary = Some(4);
                }
            })
        };
        let mut obs = healthy_round(0);
        obs.push(at(20, "n3", bad()));
        obs.push(at(40, "n3", bad()));
        obs.push(at(63, "n3", bad()));
        obs.extend(healthy_round(80));
        let r = check(obs);
        assert_eq!(r.valid, Validity::Invalid, "{r:?}");
        let e = &r.details["episodes"][0];
        assert_eq!(e["kind"], "unowned");
        assert_eq!(e["slots"], "0-5460");
        assert_eq!(e["slot_count"], 5461);
        assert_eq!(e["nodes"], json!(["n1"]));
        assert_eq!(e["duration_ms"], 43);
        assert_eq!(e["observer"], "n3");
        assert_eq!(e["excerpt"].as_array().unwrap().len(), 1);
        assert_eq!(r.details["unowned_episodes"], 1);
        let summary = r.details["summary"].as_str().unwrap();
        assert!(summary.contains("listed on replica n1"), "{summary}");
    }

    #[test]
    fn a_missing_range_is_a_gap() {
        // Redis 7.0.15 under redis/redis#13018: the shard's range is nowhere.
        let bad = view_3x1(2, &|n, l| {
            if n == 2 {
                l.slots.clear();
            }
        });
        let mut obs = healthy_round(0);
        obs.push(at(10, "n2", bad));
        let r = check(obs);
        assert_eq!(r.valid, Validity::Invalid, "{r:?}");
        let e = &r.details["episodes"][0];
        assert_eq!(e["slots"], "5461-10922");
        assert_eq!(e["nodes"], json!([]));
        assert_eq!(e["ended"], "still showing at the observer's last poll");
        assert_eq!(e["excerpt"].as_array().unwrap().len(), 6);
    }

    #[test]
    fn two_primaries_claiming_a_range_is_a_double_claim() {
        let bad = view_3x1(5, &|n, l| {
            if n == 4 {
                l.flags = "master".into();
                l.primary = None;
                l.slots = "100-200 5000-5500".into();
            }
        });
        let mut obs = healthy_round(0);
        obs.push(at(10, "n5", bad));
        let r = check(obs);
        assert_eq!(r.valid, Validity::Invalid, "{r:?}");
        let e = &r.details["episodes"][0];
        assert_eq!(e["kind"], "double");
        assert_eq!(e["slots"], "100-200 5000-5500");
        assert_eq!(e["nodes"], json!(["n1", "n2", "n4"]));
        assert_eq!(r.details["double_claim_episodes"], 1);
    }

    #[test]
    fn a_clean_failover_sequence_has_no_gap() {
        // n4 promoted: first n4 claims the slots while n1 still says master with none
        // (it has lost them), then n1 becomes n4's replica. No view lacks an owner.
        let mut obs = healthy_round(0);
        let step1 = n4_promoted;
        let step2 = n4_took_over_from_n1;
        for n in 1..=6u8 {
            obs.push(at(50, &format!("n{n}"), step1(n)));
            obs.push(at(100, &format!("n{n}"), step2(n)));
        }
        let r = check(obs);
        assert_eq!(r.valid, Validity::Valid, "{r:?}");
        assert_eq!(r.details["episode_count"], 0);
        assert!(r.details["summary"]
            .as_str()
            .unwrap()
            .starts_with("no slot-coverage anomaly in"));
    }
}
