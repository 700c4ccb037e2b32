//! The nemesis schedule, drawn from the run's seed before the run starts.
//!
//! Same seed, same scenario, same time limit: the same faults at the same offsets with the
//! same draws. Targets given by name, `one`, `minority`, `majority` or `all` then resolve
//! to the same nodes; `primaries` and `replicas` resolve against the roles of the moment,
//! which the faults themselves change.
//!
//! One interval is one *group* of steps. Without `compose` or `concurrent` a group is one
//! drawn fault (the draws are the same as before composition existed); with `concurrent:
//! k` it is `k` different drawn faults at the interval's start; with `compose` it is every
//! listed fault at its own offset. The steps of a group run overlapped, each in its own
//! lane (see [`crate::fault::lane`]).

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
    /// Which interval it belongs to; the steps of one group overlap.
    pub group: usize,
    /// Its lane within the group (0 for the first fault).
    pub lane: u8,
    /// How long it holds before its heal (the spec's `duration_s` unless composed).
    pub hold: Duration,
    /// It waits for the previous step of its group to take effect, then `after` more
    /// (`at` assumes applying takes no time).
    pub after_previous: Option<Duration>,
}

/// Every step that starts before `time_limit`: the first group at `start_after_s`, then
/// one group per `interval_s`.
pub fn plan(spec: &NemesisSpec, seed: u64, time_limit: Duration) -> Vec<Step> {
    let mut rng = StdRng::seed_from_u64(seed ^ SALT);
    let interval = Duration::from_secs_f64(spec.interval_s.get());
    let duration = Duration::from_secs_f64(spec.duration_s.get());
    let mut at = Duration::from_secs_f64(spec.start_after_s.get());
    let mut steps = Vec::new();
    let mut group = 0;
    while at < time_limit && !spec.faults.is_empty() {
        if !spec.compose.is_empty() {
            let mut previous = at;
            for (lane, c) in spec.compose.iter().enumerate() {
                let after = Duration::from_secs_f64(c.after_s.get());
                let when = if c.after_previous {
                    previous + after
                } else {
                    at + after
                };
                previous = when;
                let draw = rng.random();
                if when < time_limit {
                    steps.push(Step {
                        at: when,
                        fault: c.fault,
                        draw,
                        group,
                        lane: lane as u8,
                        hold: c
                            .hold_s
                            .map_or(duration, |h| Duration::from_secs_f64(h.get())),
                        after_previous: c.after_previous.then_some(after),
                    });
                }
            }
        } else {
            let k = spec.concurrent.map_or(1, |c| c.get());
            for (lane, fault) in draw_distinct(spec, k, &mut rng).into_iter().enumerate() {
                steps.push(Step {
                    at,
                    fault,
                    draw: rng.random(),
                    group,
                    lane: lane as u8,
                    hold: duration,
                    after_previous: None,
                });
            }
        }
        at += interval;
        group += 1;
    }
    steps
}

/// `k` different fault indices, never two process faults (kill, pause) together. With
/// `k == 1` this is exactly one `random_range` draw, as before composition.
fn draw_distinct(spec: &NemesisSpec, k: usize, rng: &mut StdRng) -> Vec<usize> {
    let n = spec.faults.len();
    if k <= 1 {
        return vec![rng.random_range(0..n)];
    }
    let is_process = |i: usize| ["kill", "pause"].contains(&spec.faults[i].kind());
    let mut pool: Vec<usize> = (0..n).collect();
    let mut out: Vec<usize> = Vec::new();
    while out.len() < k && !pool.is_empty() {
        let i = pool.swap_remove(rng.random_range(0..pool.len()));
        if is_process(i) && out.iter().any(|&j| is_process(j)) {
            continue;
        }
        out.push(i);
    }
    out
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
        assert!(s
            .iter()
            .all(|s| s.lane == 0 && s.hold == Duration::from_secs(5)));
        let kinds: std::collections::HashSet<usize> = plan(&spec(), 1, Duration::from_secs(1000))
            .iter()
            .map(|s| s.fault)
            .collect();
        assert_eq!(kinds.len(), 4, "every fault kind gets drawn");
    }

    #[test]
    fn composed_groups_keep_their_offsets_and_lanes() {
        let mut s = NemesisSpec::from_kinds("delay,standalone-failover").unwrap();
        s.interval_s.0 = 8.0;
        s.start_after_s.0 = 2.0;
        s.compose = serde_json::from_str(
            r#"[{"fault": 0, "hold_s": 3}, {"fault": 1, "after_s": 0.5, "after_previous": true}]"#,
        )
        .unwrap();
        let steps = plan(&s, 7, Duration::from_secs(20));
        let view: Vec<(u128, usize, usize, u8, u64)> = steps
            .iter()
            .map(|s| (s.at.as_millis(), s.fault, s.group, s.lane, s.hold.as_secs()))
            .collect();
        assert_eq!(
            view,
            vec![
                (2000, 0, 0, 0, 3),
                (2500, 1, 0, 1, 5),
                (10000, 0, 1, 0, 3),
                (10500, 1, 1, 1, 5),
                (18000, 0, 2, 0, 3),
                (18500, 1, 2, 1, 5),
            ]
        );
        assert_eq!(steps, plan(&s, 7, Duration::from_secs(20)), "seeded");
        assert_eq!(steps[0].after_previous, None);
        assert_eq!(steps[1].after_previous, Some(Duration::from_millis(500)));
    }

    #[test]
    fn concurrent_draws_distinct_faults_and_never_two_process_faults() {
        let mut s = spec();
        s.concurrent = std::num::NonZeroUsize::new(3);
        let steps = plan(&s, 9, Duration::from_secs(500));
        let groups = steps.iter().map(|s| s.group).max().unwrap() + 1;
        for g in 0..groups {
            let faults: Vec<usize> = steps
                .iter()
                .filter(|s| s.group == g)
                .map(|s| s.fault)
                .collect();
            let mut d = faults.clone();
            d.sort_unstable();
            d.dedup();
            assert_eq!(d.len(), faults.len(), "distinct in group {g}");
            let process = faults.iter().filter(|&&f| f == 1 || f == 2).count();
            assert!(process <= 1, "kill and pause together in group {g}");
            let lanes: Vec<u8> = steps
                .iter()
                .filter(|s| s.group == g)
                .map(|s| s.lane)
                .collect();
            assert_eq!(lanes, (0..faults.len() as u8).collect::<Vec<_>>());
        }
    }
}
