//! The nemesis schedule, drawn from the run's seed before the run starts.
//!
//! Same seed, same scenario, same time limit: the same faults at the same offsets with the
//! same draws. Targets given by name, `one`, `minority`, `majority` or `all` then resolve
//! to the same nodes; `primaries` and `replicas` resolve against the roles of the moment,
//! which the faults themselves change.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::spec::NemesisSpec;

/// Mixed into the run's seed so the nemesis and the workload draw independent streams.
const SALT: u64 = 0x6e65_6d65_7369_7321;

/// One scheduled fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Step {
    /// When it fires, from the start of the workload.
    pub at: Duration,
    /// Which of the scenario's faults (index into `faults`).
    pub fault: usize,
    /// The step's own random number: target choice, shuffles.
    pub draw: u64,
}

/// Every step that starts before `time_limit`: the first at `start_after_s`, then one per
/// `interval_s`.
pub fn plan(spec: &NemesisSpec, seed: u64, time_limit: Duration) -> Vec<Step> {
    let mut rng = StdRng::seed_from_u64(seed ^ SALT);
    let interval = Duration::from_secs_f64(spec.interval_s.get());
    let mut at = Duration::from_secs_f64(spec.start_after_s.get());
    let mut steps = Vec::new();
    while at < time_limit && !spec.faults.is_empty() {
        steps.push(Step {
            at,
            fault: rng.random_range(0..spec.faults.len()),
            draw: rng.random(),
        });
        at += interval;
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> NemesisSpec {
        NemesisSpec::from_kinds("partition,kill,pause,failover").unwrap()
    }

    #[test]
    fn same_seed_same_schedule() {
        let a = plan(&spec(), 42, Duration::from_secs(120));
        let b = plan(&spec(), 42, Duration::from_secs(120));
        assert_eq!(a, b);
        let c = plan(&spec(), 43, Duration::from_secs(120));
        assert_ne!(a, c);
    }

    #[test]
    fn steps_start_after_the_quiet_time_and_stop_before_the_limit() {
        let s = plan(&spec(), 1, Duration::from_secs(30));
        let at: Vec<u64> = s.iter().map(|s| s.at.as_secs()).collect();
        assert_eq!(at, vec![5, 15, 25]);
        let kinds: std::collections::HashSet<usize> = plan(&spec(), 1, Duration::from_secs(1000))
            .iter()
            .map(|s| s.fault)
            .collect();
        assert_eq!(kinds.len(), 4, "every fault kind gets drawn");
    }
}
