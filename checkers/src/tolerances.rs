//! How long an anomaly must last before a checker counts it, and the other bounds the
//! checkers judge by.
//!
//! A topology anomaly is seen as a run of observations 20-50 ms apart, so its measured
//! duration is a lower bound (last sighting minus first). Every anomaly shorter than its
//! checker's tolerance is left out of the verdict but still counted (`ignored_shorter`),
//! so a person can see what a tolerance hid. The defaults hide nothing.

use serde::{Deserialize, Serialize};

/// Per-checker tolerances; part of [`crate::RunData`], so a scenario can set them and
/// `faultline analyze` re-checks with the same ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tolerances {
    /// `replication-loop`: ignore loops seen for less than this many ms.
    pub replication_loop_ms: u64,
    /// `slot-coverage`: ignore unowned or doubly claimed slots seen for less than this.
    pub slot_coverage_ms: u64,
    /// `split-brain`: ignore overlaps of two nodes' own primary claims shorter than this.
    pub split_brain_ms: u64,
    /// `convergence`: how long after the final heal every view must agree.
    pub convergence_bound_ms: u64,
    /// `log-pattern`: how close in time the lines of a two-line signature must be.
    pub log_pattern_window_ms: u64,
    /// `bouncing-redirects`: the most moving hops (MOVED, ASK, REDIRECT) one op may follow
    /// before its chain counts as too long.
    pub redirect_chain_max: u64,
    /// `bouncing-redirects`: two consecutive ops of one process this close (ms), the second
    /// sent back along a hop of the first, are ping-pong; also how far apart findings may
    /// be and still belong to one episode.
    pub redirect_pingpong_window_ms: u64,
    /// `linearizable`: how long the search may take over all keys (from the checker's
    /// start); keys not decided by then are named and the verdict is unknown.
    pub linearizable_budget_ms: u64,
    /// `client-errors`: a READONLY error this long (ms) after the latest promotion of its
    /// key's shard was seen is a finding: the client still writes to the demoted primary
    /// (redis-rs#2085).
    pub client_readonly_after_promotion_ms: u64,
}

impl Default for Tolerances {
    fn default() -> Self {
        Tolerances {
            replication_loop_ms: 0,
            slot_coverage_ms: 0,
            split_brain_ms: 0,
            convergence_bound_ms: 30_000,
            // valkey-io/valkey#1015 flips the role while handling the very message it
            // called stale: both lines carry the same millisecond. Two seconds leaves room
            // for a slow log without pairing unrelated events (failovers are >= 2 x
            // node-timeout apart).
            log_pattern_window_ms: 2_000,
            // A stale slot map after a failover plus a slot in migration is two hops
            // (MOVED, then ASK); one more is slack for a map two changes behind.
            redirect_chain_max: 3,
            // Same-direction failovers are >= 2 x node-timeout apart, so a legitimate
            // failback reverses a hop seconds later, not within one.
            redirect_pingpong_window_ms: 1_000,
            // A 1M-op register history on 100 keys is decided or named unknown within 10 s
            // with the reading included; raise it for long runs with many clients per key.
            linearizable_budget_ms: 8_000,
            // A client that meets READONLY should refresh its slot map at once; two
            // seconds covers a refresh racing gossip that has not reached every node.
            client_readonly_after_promotion_ms: 2_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_hide_nothing_and_partial_yaml_like_json_fills_in() {
        let t = Tolerances::default();
        assert_eq!(t.replication_loop_ms, 0);
        assert_eq!(t.convergence_bound_ms, 30_000);
        let t: Tolerances = serde_json::from_str(r#"{"slot_coverage_ms": 100}"#).unwrap();
        assert_eq!(t.slot_coverage_ms, 100);
        assert_eq!(t.convergence_bound_ms, 30_000);
        assert!(serde_json::from_str::<Tolerances>(r#"{"slot_coverage": 1}"#).is_err());
    }
}
