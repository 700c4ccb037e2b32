//! Standalone topology (`mode: standalone`): each node's `INFO replication`, and the
//! replica-of graph the observations in force at each moment describe.
//!
//! A standalone node speaks only for itself: `role:slave` with `master_host:master_port`
//! says whom it replicates. Nodes are polled at different instants, so "A replica of B"
//! seen at t1 and "B replica of A" seen at t2 prove nothing about one moment: B may have
//! changed between them (a clean FAILOVER looks exactly like that to a 50 ms poll). A
//! claim is known to hold from the first to the last of consecutive polls that show it
//! (a poll that shows something else, or fails, ends it). A cycle among claims known to
//! hold at one same instant (A replica of B and B replica of A, a node replica of itself,
//! a longer ring) is a replication loop, for as long as all of them are known to hold.
//! Lines name the observer's own address (`addr`), which ties addresses to names.
//!
//! One two-node cycle is the FAILOVER command's own hand-over, not a loop: in
//! `failover-in-progress` the old primary has already made itself a replica of the target,
//! which stays a replica until the old primary's `PSYNC FAILOVER` reaches it (Valkey's
//! FAILOVER documentation says so; it is the window valkey-io/valkey#821 bounced clients
//! in). A cycle of two in which one node reports `master_failover_state:failover-in-progress`
//! towards the other is kept apart as a hand-over ([`LoopEpisode::handover`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use faultline_history::{Observation, ReplicationInfo};

/// Whether a topology log holds standalone observations (no cluster views to judge).
pub fn is_standalone(topology: &[Observation]) -> bool {
    topology.iter().any(|o| o.info_replication.is_some())
        && topology.iter().all(|o| o.cluster_nodes.is_none())
}

/// One replication loop: the nodes in replica-of order and how long the observations
/// in force showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopEpisode {
    /// Names (or addresses of nodes no observer is) in replica-of order, smallest first.
    pub cycle: Vec<String>,
    /// From when every claim of the cycle is known to hold.
    pub first_ns: u64,
    /// Until when every claim of the cycle is known to hold.
    pub last_ns: u64,
    /// Whether a node of the cycle was polled again afterwards (with another answer).
    pub cleared: bool,
    /// A FAILOVER hand-over (two nodes, one of them `failover-in-progress` towards the
    /// other), not a replication loop.
    pub handover: bool,
}

/// What a standalone topology log shows: loops, and how much it had to go on.
#[derive(Debug, Default)]
pub struct Loops {
    /// Every loop, in order of appearance.
    pub episodes: Vec<LoopEpisode>,
    /// Successful polls.
    pub ok: usize,
    /// Failed polls.
    pub failed: usize,
}

/// One node's claim, known to hold from `start_ns` to `end_ns` (consecutive polls).
#[derive(Debug, Clone)]
struct Claim {
    start_ns: u64,
    end_ns: u64,
    /// Whom it replicates (a name, or an address no observer has).
    of: String,
    /// `failover-in-progress` in any poll of the run.
    failover: bool,
}

/// Finds every replication loop among claims known to hold at one same instant.
pub fn find_loops(topology: &[Observation]) -> Loops {
    let mut obs: Vec<&Observation> = topology
        .iter()
        .filter(|o| o.cluster_nodes.is_none())
        .collect();
    obs.sort_by_key(|o| o.time_ns);
    let name_of: HashMap<&str, &str> = obs
        .iter()
        .filter_map(|o| o.addr.as_deref().map(|a| (a, o.observer.as_str())))
        .collect();
    let resolve = |addr: &str| -> String {
        name_of
            .get(addr)
            .map_or_else(|| addr.to_string(), |n| n.to_string())
    };
    let mut out = Loops::default();
    // node -> its replica-of claims, in time order; and the node's last poll.
    let mut claims: BTreeMap<String, Vec<Claim>> = BTreeMap::new();
    let mut last_poll: HashMap<String, u64> = HashMap::new();
    // node -> whether its previous poll extends its last claim.
    let mut extends: HashMap<String, bool> = HashMap::new();
    for o in obs {
        last_poll.insert(o.observer.clone(), o.time_ns);
        let claim = match &o.info_replication {
            Some(text) => {
                out.ok += 1;
                let info = ReplicationInfo::parse(text);
                info.primary_addr().map(|addr| {
                    let failover = info.failover_state() == Some("failover-in-progress");
                    (resolve(&addr), failover)
                })
            }
            None => {
                out.failed += 1;
                None
            }
        };
        let list = claims.entry(o.observer.clone()).or_default();
        let continues = extends.get(&o.observer).copied().unwrap_or(false);
        match claim {
            Some((of, failover)) => {
                match list.last_mut() {
                    Some(c) if continues && c.of == of => {
                        c.end_ns = o.time_ns;
                        c.failover |= failover;
                    }
                    _ => list.push(Claim {
                        start_ns: o.time_ns,
                        end_ns: o.time_ns,
                        of,
                        failover,
                    }),
                }
                extends.insert(o.observer.clone(), true);
            }
            None => {
                extends.insert(o.observer.clone(), false);
            }
        }
    }
    // A loop can only begin where a claim begins: look at every such instant.
    let mut starts: Vec<u64> = claims.values().flatten().map(|c| c.start_ns).collect();
    starts.sort_unstable();
    starts.dedup();
    // node set -> its episodes, merged when they overlap (`cleared` is set at the end).
    let mut found: BTreeMap<BTreeSet<String>, Vec<LoopEpisode>> = BTreeMap::new();
    for t in starts {
        let active: BTreeMap<&String, &Claim> = claims
            .iter()
            .filter_map(|(n, list)| {
                list.iter()
                    .find(|c| c.start_ns <= t && t <= c.end_ns)
                    .map(|c| (n, c))
            })
            .collect();
        let edges: BTreeMap<String, String> = active
            .iter()
            .map(|(n, c)| ((*n).clone(), c.of.clone()))
            .collect();
        for cycle in cycles(&edges) {
            let involved: Vec<&Claim> = cycle
                .iter()
                .filter_map(|n| active.get(n).copied())
                .collect();
            let first = involved.iter().map(|c| c.start_ns).max().unwrap_or(t);
            let last = involved.iter().map(|c| c.end_ns).min().unwrap_or(t);
            let handover = cycle.len() == 2 && involved.iter().any(|c| c.failover);
            let list = found.entry(cycle.iter().cloned().collect()).or_default();
            match list.last_mut() {
                Some(e) if first <= e.last_ns => {
                    e.last_ns = e.last_ns.max(last);
                    e.handover |= handover;
                }
                _ => list.push(LoopEpisode {
                    cycle,
                    first_ns: first,
                    last_ns: last,
                    cleared: false,
                    handover,
                }),
            }
        }
    }
    for (set, list) in found {
        for mut e in list {
            e.cleared = set
                .iter()
                .any(|n| last_poll.get(n).is_some_and(|&p| p > e.last_ns));
            out.episodes.push(e);
        }
    }
    out.episodes.sort_by_key(|e| e.first_ns);
    out
}

/// Every cycle of a functional graph (each node points at most at one other), each
/// rotated to start at its smallest name.
fn cycles(next: &BTreeMap<String, String>) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut done: BTreeSet<&str> = BTreeSet::new();
    for start in next.keys() {
        if done.contains(start.as_str()) {
            continue;
        }
        let mut path: Vec<&str> = Vec::new();
        let mut at = Some(start.as_str());
        while let Some(node) = at {
            if done.contains(node) {
                break;
            }
            if let Some(from) = path.iter().position(|&p| p == node) {
                let mut cycle: Vec<String> = path[from..].iter().map(|s| s.to_string()).collect();
                let min = (0..cycle.len()).min_by_key(|&i| &cycle[i]).unwrap_or(0);
                cycle.rotate_left(min);
                out.push(cycle);
                break;
            }
            path.push(node);
            at = next.get(node).map(String::as_str);
        }
        done.extend(path);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn primary() -> String {
        "# Replication\r\nrole:master\r\nconnected_slaves:1\r\nmaster_failover_state:no-failover\r\n".into()
    }
    fn replica(of: u8) -> String {
        format!("# Replication\r\nrole:slave\r\nmaster_host:10.0.0.{of}\r\nmaster_port:6379\r\nmaster_link_status:up\r\n")
    }
    fn at(ms: u64, n: u8, text: String) -> Observation {
        Observation::replication(ms * 1_000_000, format!("n{n}"), text)
            .with_addr(format!("10.0.0.{n}:6379"))
    }

    #[test]
    fn replicas_of_a_primary_are_no_loop_and_failover_swaps_are_none_either() {
        let obs = vec![
            at(0, 1, primary()),
            at(0, 2, replica(1)),
            at(0, 3, replica(1)),
            // FAILOVER TO n2: n2 primary first, then n1 and n3 follow it.
            at(50, 2, primary()),
            at(60, 1, replica(2)),
            at(70, 3, replica(2)),
        ];
        let l = find_loops(&obs);
        assert!(l.episodes.is_empty(), "{:?}", l.episodes);
        assert_eq!(l.ok, 6);
        assert!(is_standalone(&obs));
    }

    #[test]
    fn claims_seen_at_different_instants_are_no_loop_unless_both_are_known_to_hold() {
        // A clean failover seen by 50 ms polls: n1 demoted at 60, n2 last seen as a
        // replica at 40 and as primary at 90. Nothing proves both at one instant.
        let obs = vec![
            at(0, 1, primary()),
            at(0, 2, replica(1)),
            at(40, 2, replica(1)),
            at(60, 1, replica(2)),
            at(90, 2, primary()),
            at(110, 1, replica(2)),
        ];
        assert!(find_loops(&obs).episodes.is_empty());
    }

    #[test]
    fn two_nodes_replicas_of_each_other_at_once_are_a_loop_while_both_hold() {
        let obs = vec![
            at(0, 1, primary()),
            at(0, 2, replica(1)),
            at(50, 1, replica(2)),
            at(60, 2, replica(1)),
            at(100, 1, replica(2)),
            at(110, 2, replica(1)),
            at(150, 2, primary()), // breaks it
            at(160, 1, replica(2)),
        ];
        let l = find_loops(&obs);
        assert_eq!(
            l.episodes,
            vec![LoopEpisode {
                cycle: vec!["n1".into(), "n2".into()],
                first_ns: 50_000_000,
                last_ns: 110_000_000,
                cleared: true,
                handover: false,
            }]
        );
    }

    #[test]
    fn the_failover_hand_over_is_told_apart_from_a_loop() {
        let demoted = "role:slave\r\nmaster_host:10.0.0.2\r\nmaster_port:6379\r\nmaster_failover_state:failover-in-progress\r\n";
        let obs = vec![
            at(0, 1, primary()),
            at(0, 2, replica(1)),
            at(50, 1, demoted.to_string()), // n1 hands over to n2, still a replica
            at(55, 1, demoted.to_string()),
            at(60, 2, replica(1)),
            at(70, 2, primary()),
        ];
        let l = find_loops(&obs);
        assert_eq!(l.episodes.len(), 1, "{:?}", l.episodes);
        assert!(l.episodes[0].handover, "{:?}", l.episodes);
        assert_eq!(
            (l.episodes[0].first_ns, l.episodes[0].last_ns),
            (50_000_000, 55_000_000)
        );
    }

    #[test]
    fn self_replica_and_longer_rings_are_loops_and_a_failed_poll_ends_one() {
        let obs = vec![at(0, 1, replica(1)), at(10, 2, primary())];
        let l = find_loops(&obs);
        assert_eq!(l.episodes.len(), 1);
        assert_eq!(l.episodes[0].cycle, vec!["n1".to_string()]);
        assert!(!l.episodes[0].cleared);

        let obs = vec![
            at(0, 1, replica(2)),
            at(0, 2, replica(3)),
            at(0, 3, replica(1)),
            at(30, 1, replica(2)),
            at(30, 2, replica(3)),
            at(30, 3, replica(1)),
            Observation::failed(40_000_000, "n2", "timed out").with_addr("10.0.0.2:6379"),
            at(50, 2, replica(3)),
        ];
        let l = find_loops(&obs);
        assert_eq!(l.episodes.len(), 1, "{:?}", l.episodes);
        assert_eq!(l.episodes[0].cycle, vec!["n1", "n2", "n3"]);
        assert_eq!(l.episodes[0].last_ns, 30_000_000);
        assert!(l.episodes[0].cleared);
        assert_eq!(l.failed, 1);
    }
}
