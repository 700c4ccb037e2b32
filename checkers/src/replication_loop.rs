//! `replication-loop`: a view in which the replica-of relation has a cycle.
//!
//! A replicates B and B replicates A (or a longer ring) cannot be: in such a view the
//! shard has no primary, and its slots are either listed on a replica or missing. Seed 000
//! (redis/redis#13018, manual failover under message delay, fixed in 7.4) and seed 002
//! (valkey-io/valkey#1015, a stale PONG flipping the new primary back, fixed in 8.1.1)
//! both show exactly this, in one observer's view only, for 43 ms to 2.6 s.

use std::collections::BTreeMap;

use faultline_history::ClusterView;
use serde_json::{json, Map, Value};

use crate::checker::Input;
use crate::episodes::{self, Episode};
use crate::standalone_views;
use crate::views::{lines_about, millis, secs};
use crate::{Checker, CheckerResult, RunData};

/// The checker's name in `results.json`.
pub const NAME: &str = "replication-loop";

/// Finds replica-of cycles in every observer's views and how long each lasted.
///
/// Per view, each line with a primary id points at its primary; a cycle in that graph is
/// a loop. Episodes are per observer and per set of nodes in the cycle. Invalid when an
/// episode lasts at least [`crate::Tolerances::replication_loop_ms`]; unknown when no poll
/// got a view; skipped without `topology.jsonl`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplicationLoop;

/// What the first view of an episode showed.
struct LoopSeen {
    /// Ids in replica-of order, starting at the smallest id.
    order: Vec<String>,
    /// The cycle's lines of the raw reply.
    excerpt: Vec<String>,
}

impl Checker for ReplicationLoop {
    fn name(&self) -> &'static str {
        NAME
    }

    fn needs(&self) -> &'static [Input] {
        &[Input::Topology]
    }

    fn reads_history(&self) -> bool {
        false
    }

    fn check(&self, run: &RunData) -> CheckerResult {
        if run.views().is_standalone() {
            return check_standalone(run);
        }
        let views = run.views();
        let found = episodes::find(
            &views.observers,
            |view, text| {
                cycles(view)
                    .into_iter()
                    .map(|order| {
                        let mut key = order.clone();
                        key.sort();
                        let ids: Vec<&str> = order.iter().map(String::as_str).collect();
                        let excerpt = lines_about(text, &ids);
                        (key, LoopSeen { order, excerpt })
                    })
                    .collect()
            },
            |_, _| {},
        );
        let names = &views.names;
        let chain = |e: &Episode<LoopSeen>| {
            let mut hops: Vec<String> = e.detail.order.iter().map(|id| names.of(id)).collect();
            hops.push(names.of(&e.detail.order[0]));
            hops.join(" -> ")
        };
        episodes::report(
            views,
            found,
            run.tolerances.replication_loop_ms,
            "replication loop",
            |e| format!("{} saw {} (replica of)", e.observer, chain(e)),
            |e| {
                let mut m = Map::new();
                m.insert(
                    "nodes".into(),
                    json!(names.sorted(e.detail.order.iter().map(String::as_str))),
                );
                m.insert("cycle".into(), json!(chain(e)));
                m.insert("excerpt".into(), Value::from(e.detail.excerpt.clone()));
                m
            },
        )
    }
}

/// A standalone run (`INFO replication` lines): loops in the replica-of graph of the
/// observations in force at each moment ([`standalone_views::find_loops`]).
fn check_standalone(run: &RunData) -> CheckerResult {
    let loops = standalone_views::find_loops(&run.views().other);
    let input = json!({
        "mode": "standalone",
        "observations": loops.ok + loops.failed,
        "failed_observations": loops.failed,
    });
    if loops.ok == 0 {
        return CheckerResult::unknown(
            "topology.jsonl has no successful INFO replication observation: nothing to judge",
        )
        .with("input", input);
    }
    let tolerance_ms = run.tolerances.replication_loop_ms;
    let (handovers, looped): (Vec<_>, Vec<_>) = loops.episodes.iter().partition(|e| e.handover);
    let (kept, ignored): (Vec<_>, Vec<_>) = looped
        .into_iter()
        .partition(|e| millis(e.first_ns, e.last_ns) >= tolerance_ms);
    let chain = |c: &[String]| {
        let mut hops = c.to_vec();
        hops.push(c[0].clone());
        hops.join(" -> ")
    };
    let episodes: Vec<Value> = kept
        .iter()
        .take(20)
        .map(|e| {
            let mut nodes = e.cycle.clone();
            nodes.sort();
            json!({
                "nodes": nodes,
                "cycle": chain(&e.cycle),
                "first_ns": e.first_ns,
                "last_ns": e.last_ns,
                "duration_ms": millis(e.first_ns, e.last_ns),
                "ended": if e.cleared { "cleared" } else { "end of log" },
            })
        })
        .collect();
    let summary = match kept.first() {
        None => {
            let mut s = format!(
                "no replication loop in {} INFO replication observations",
                loops.ok
            );
            if !ignored.is_empty() {
                s.push_str(&format!(
                    " ({} shorter than {tolerance_ms} ms ignored)",
                    ignored.len()
                ));
            }
            let longest = handovers
                .iter()
                .map(|e| millis(e.first_ns, e.last_ns))
                .max();
            if let Some(longest) = longest {
                s.push_str(&format!(
                    "; {} FAILOVER hand-over(s) seen, longest {longest} ms",
                    handovers.len()
                ));
            }
            s
        }
        Some(e) => format!(
            "{} replication loop episode(s): {} (replica of) for {} ms from {}",
            kept.len(),
            chain(&e.cycle),
            millis(e.first_ns, e.last_ns),
            secs(e.first_ns)
        ),
    };
    let valid = if kept.is_empty() {
        crate::Validity::Valid
    } else {
        crate::Validity::Invalid
    };
    CheckerResult::new(valid)
        .with("summary", summary)
        .with("episode_count", kept.len())
        .with("ignored_shorter", ignored.len())
        .with("tolerance_ms", tolerance_ms)
        .with("episodes", episodes)
        // FAILOVER's own hand-over (old primary already a replica of the target, which
        // is still its replica): reported, not a loop.
        .with("handover_count", handovers.len())
        .with(
            "handover_longest_ms",
            handovers
                .iter()
                .map(|e| millis(e.first_ns, e.last_ns))
                .max()
                .unwrap_or(0),
        )
        .with("input", input)
}

/// Every replica-of cycle in a view, each as ids in replica-of order starting at its
/// smallest id.
fn cycles(view: &ClusterView) -> Vec<Vec<String>> {
    let next: BTreeMap<&str, &str> = view
        .nodes
        .iter()
        .filter_map(|n| n.primary_id.as_deref().map(|p| (n.id.as_str(), p)))
        .collect();
    let mut out = Vec::new();
    // 0 = unvisited, 1 = on the current path, 2 = done.
    let mut state: BTreeMap<&str, u8> = BTreeMap::new();
    for &start in next.keys() {
        if state.get(start).copied().unwrap_or(0) != 0 {
            continue;
        }
        let mut path: Vec<&str> = Vec::new();
        let mut at = Some(start);
        while let Some(node) = at {
            match state.get(node).copied().unwrap_or(0) {
                0 => {
                    state.insert(node, 1);
                    path.push(node);
                    at = next.get(node).copied();
                }
                1 => {
                    let from = path.iter().position(|&p| p == node).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        path[from..].iter().map(|s| s.to_string()).collect();
                    let min = (0..cycle.len()).min_by_key(|&i| &cycle[i]).unwrap_or(0);
                    cycle.rotate_left(min);
                    out.push(cycle);
                    break;
                }
                _ => break,
            }
        }
        for p in path {
            state.insert(p, 2);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::tests::{healthy_round, id, n4_took_over_from_n1, view_3x1};
    use crate::Validity;
    use faultline_history::Observation;

    /// n3's view of seed 002: n1 replica of n4 and n4 replica of n1, slots on n1.
    fn loop_view() -> String {
        view_3x1(3, &|n, l| match n {
            1 => {
                l.flags = "slave".into();
                l.primary = Some(4);
            }
            4 => l.epoch = 7,
            _ => {}
        })
    }

    #[test]
    fn a_loop_in_one_observers_view_is_invalid_with_its_duration() {
        let mut obs = healthy_round(0);
        obs.push(Observation::reply(50_000_000, "n3", loop_view()));
        obs.push(Observation::reply(100_000_000, "n3", loop_view()));
        obs.push(Observation::reply(150_000_000, "n3", loop_view()));
        obs.extend(healthy_round(200));
        let r = ReplicationLoop.check(&RunData::from_topology(obs));
        assert_eq!(r.valid, Validity::Invalid, "{r:?}");
        assert_eq!(r.details["episode_count"], 1);
        let e = &r.details["episodes"][0];
        assert_eq!(e["observer"], "n3");
        assert_eq!(e["nodes"], json!(["n1", "n4"]));
        assert_eq!(e["cycle"], "n1 -> n4 -> n1");
        assert_eq!(e["duration_ms"], 100);
        assert_eq!(e["observations"], 3);
        assert_eq!(e["ended"], "cleared");
        assert_eq!(e["ended_ns"], 200_000_000u64);
        assert_eq!(e["excerpt"].as_array().unwrap().len(), 2);
        let summary = r.details["summary"].as_str().unwrap();
        assert!(summary.contains("n3 saw n1 -> n4 -> n1"), "{summary}");
    }

    #[test]
    fn a_healthy_cluster_and_a_clean_failover_are_valid() {
        let mut obs = healthy_round(0);
        // n4 took over from n1: n4 primary with the slots, n1 its replica.
        let after = n4_took_over_from_n1;
        for n in 1..=6u8 {
            obs.push(Observation::reply(50_000_000, format!("n{n}"), after(n)));
        }
        let r = ReplicationLoop.check(&RunData::from_topology(obs));
        assert_eq!(r.valid, Validity::Valid, "{r:?}");
        assert_eq!(r.details["episode_count"], 0);
    }

    #[test]
    fn tolerance_ignores_short_loops_but_counts_them() {
        let mut obs = healthy_round(0);
        obs.push(Observation::reply(50_000_000, "n3", loop_view()));
        obs.push(Observation::reply(90_000_000, "n3", loop_view()));
        obs.extend(healthy_round(100));
        let mut run = RunData::from_topology(obs);
        run.tolerances.replication_loop_ms = 41;
        let r = ReplicationLoop.check(&run);
        assert_eq!(r.valid, Validity::Valid, "{r:?}");
        assert_eq!(r.details["ignored_shorter"], 1);
        run.tolerances.replication_loop_ms = 40;
        assert_eq!(ReplicationLoop.check(&run).valid, Validity::Invalid);
    }

    #[test]
    fn standalone_replicas_of_each_other_are_a_loop_and_slot_checkers_skip() {
        let info = |of: Option<u8>| match of {
            None => "role:master\r\n".to_string(),
            Some(p) => format!("role:slave\r\nmaster_host:10.0.0.{p}\r\nmaster_port:6379\r\n"),
        };
        let at = |ms: u64, n: u8, of| {
            Observation::replication(ms * 1_000_000, format!("n{n}"), info(of))
                .with_addr(format!("10.0.0.{n}:6379"))
        };
        let healthy = vec![at(0, 1, None), at(0, 2, Some(1)), at(50, 2, Some(1))];
        let r = ReplicationLoop.check(&RunData::from_topology(healthy.clone()));
        assert_eq!(r.valid, Validity::Valid, "{r:?}");
        let mut looped = healthy;
        looped.push(at(60, 1, Some(2)));
        looped.push(at(70, 2, Some(1)));
        looped.push(at(80, 1, Some(2)));
        looped.push(at(100, 1, None));
        let r = ReplicationLoop.check(&RunData::from_topology(looped.clone()));
        assert_eq!(r.valid, Validity::Invalid, "{r:?}");
        assert_eq!(r.details["episodes"][0]["cycle"], "n1 -> n2 -> n1");
        assert_eq!(r.details["episodes"][0]["duration_ms"], 10);
        // Slot checkers have no CLUSTER NODES view to judge: skipped, never valid.
        let all = crate::check(&RunData::from_topology(looped), &crate::all());
        for name in ["slot-coverage", "split-brain", "convergence"] {
            assert!(
                !all.checkers.contains_key(name),
                "{name} ran on a standalone log"
            );
        }
        assert!(
            all.notes.iter().any(|n| n.contains("slot-coverage")),
            "{:?}",
            all.notes
        );
    }

    #[test]
    fn longer_rings_are_found_and_only_failures_is_unknown() {
        let ring = view_3x1(2, &|n, l| match n {
            1 => l.primary = Some(4),
            4 => l.primary = Some(5),
            5 => l.primary = Some(1),
            _ => {}
        });
        let v = ClusterView::parse(&ring).unwrap();
        assert_eq!(cycles(&v), vec![vec![id(1), id(4), id(5)]]);
        let r = ReplicationLoop.check(&RunData::from_topology(vec![Observation::failed(
            1, "n1", "refused",
        )]));
        assert_eq!(r.valid, Validity::Unknown);
    }
}
