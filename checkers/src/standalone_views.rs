//! Standalone topology (`mode: standalone`): each node's `INFO replication`, and the
//! replica-of graph the observations in force at each moment describe.
//!
//! A standalone node speaks only for itself: `role:slave` with `master_host:master_port`
//! says whom it replicates. So the graph at time t is built from every node's latest
//! observation at or before t (a failed poll removes that node's edge: nothing is known).
//! A cycle in it (A replica of B and B replica of A, a node replica of itself, a longer
//! ring) is a replication loop, from the observation that closed it to the one that broke
//! it. Lines name the observer's own address (`addr`), which ties addresses to names.
//!
//! One two-node cycle is the FAILOVER command's own hand-over, not a loop: in
//! `failover-in-progress` the old primary has already made itself a replica of the target,
//! which stays a replica until the old primary's `PSYNC FAILOVER` reaches it (Valkey's
//! FAILOVER documentation says so; it is the window valkey-io/valkey#821 bounced clients
//! in). A cycle of two in which one node reports `master_failover_state:failover-in-progress`
//! towards the other is kept apart as a hand-over ([`LoopEpisode::handover`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use faultline_history::Observation;

/// Whether a topology log holds standalone observations (no cluster views to judge).
pub fn is_standalone(topology: &[Observation]) -> bool {
    topology.iter().any(|o| o.info_replication.is_some())
        && topology.iter().all(|o| o.cluster_nodes.is_none())
}

/// `field:value` lines of an INFO section.
pub fn info_fields(text: &str) -> HashMap<&str, &str> {
    text.lines()
        .filter_map(|l| l.trim().split_once(':'))
        .collect()
}

/// Whom the node replicates, by `ip:port`, or `None` for a primary.
pub fn replica_of(text: &str) -> Option<String> {
    let f = info_fields(text);
    if f.get("role").copied() != Some("slave") {
        return None;
    }
    Some(format!(
        "{}:{}",
        f.get("master_host")?,
        f.get("master_port")?
    ))
}

/// One replication loop: the nodes in replica-of order and how long the observations
/// in force showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopEpisode {
    /// Names (or addresses of nodes no observer is) in replica-of order, smallest first.
    pub cycle: Vec<String>,
    /// The observation that closed the cycle.
    pub first_ns: u64,
    /// The observation that broke it, or the last observation of the log.
    pub last_ns: u64,
    /// Whether it was broken before the log ended.
    pub cleared: bool,
    /// A FAILOVER hand-over (two nodes, one of them `failover-in-progress` towards the
    /// other when the cycle closed), not a replication loop.
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

/// Sweeps the observations in time order, keeping each node's latest claim.
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
    // observer -> the name it replicates.
    let mut edges: BTreeMap<String, String> = BTreeMap::new();
    // Nodes whose latest observation says `failover-in-progress`.
    let mut in_failover: BTreeSet<String> = BTreeSet::new();
    // node set -> (cycle order, first seen, hand-over).
    let mut open: BTreeMap<BTreeSet<String>, (Vec<String>, u64, bool)> = BTreeMap::new();
    let mut last_ns = 0;
    for o in obs {
        last_ns = o.time_ns;
        match &o.info_replication {
            Some(text) => {
                out.ok += 1;
                if info_fields(text).get("master_failover_state").copied()
                    == Some("failover-in-progress")
                {
                    in_failover.insert(o.observer.clone());
                } else {
                    in_failover.remove(&o.observer);
                }
                match replica_of(text) {
                    Some(addr) => edges.insert(o.observer.clone(), resolve(&addr)),
                    None => edges.remove(&o.observer),
                };
            }
            None => {
                out.failed += 1;
                edges.remove(&o.observer);
                in_failover.remove(&o.observer);
            }
        }
        let now: BTreeMap<BTreeSet<String>, Vec<String>> = cycles(&edges)
            .into_iter()
            .map(|c| (c.iter().cloned().collect(), c))
            .collect();
        let closed: Vec<BTreeSet<String>> = open
            .keys()
            .filter(|k| !now.contains_key(*k))
            .cloned()
            .collect();
        for k in closed {
            let (cycle, first_ns, handover) = open.remove(&k).unwrap_or_default();
            out.episodes.push(LoopEpisode {
                cycle,
                first_ns,
                last_ns: o.time_ns,
                cleared: true,
                handover,
            });
        }
        for (k, c) in now {
            let handover = c.len() == 2 && c.iter().any(|n| in_failover.contains(n));
            open.entry(k).or_insert((c, o.time_ns, handover));
        }
    }
    for (_, (cycle, first_ns, handover)) in open {
        out.episodes.push(LoopEpisode {
            cycle,
            first_ns,
            last_ns,
            cleared: false,
            handover,
        });
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
    fn two_nodes_replicas_of_each_other_at_once_are_a_loop_until_one_changes() {
        let obs = vec![
            at(0, 1, primary()),
            at(0, 2, replica(1)),
            at(50, 1, replica(2)), // closes n1 -> n2 -> n1
            at(100, 3, replica(1)),
            at(150, 2, primary()), // breaks it
        ];
        let l = find_loops(&obs);
        assert_eq!(
            l.episodes,
            vec![LoopEpisode {
                cycle: vec!["n1".into(), "n2".into()],
                first_ns: 50_000_000,
                last_ns: 150_000_000,
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
            at(70, 2, primary()),
        ];
        let l = find_loops(&obs);
        assert_eq!(l.episodes.len(), 1);
        assert!(l.episodes[0].handover, "{:?}", l.episodes);
        assert_eq!(l.episodes[0].last_ns, 70_000_000);
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
            Observation::failed(40_000_000, "n2", "timed out").with_addr("10.0.0.2:6379"),
        ];
        let l = find_loops(&obs);
        assert_eq!(l.episodes.len(), 1);
        assert_eq!(l.episodes[0].cycle, vec!["n1", "n2", "n3"]);
        assert_eq!(l.episodes[0].last_ns, 40_000_000);
        assert!(l.episodes[0].cleared);
        assert_eq!(l.failed, 1);
    }
}
