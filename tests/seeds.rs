//! The seed scenarios run end to end against the affected servers: the bus proxy carries
//! the cluster, `failover-while-held` fails the shard over and back while the observer's
//! PONGs are held, the topology observer records every node's view, and the topology
//! checkers judge them. How often the bug shows (the goal is the first round) is measured
//! by the closing note's runs, not asserted here: a wrong view lasts 43 ms to 2.6 s and a
//! test must not hinge on it.

mod common;

use common::{
    assert_nothing_left, cluster_lock, history, require_root, results, run_to_end, scenario,
};
use faultline_history::{OpType, Process};

fn seed(file: &str) {
    require_root();
    let _one_at_a_time = cluster_lock();
    let store = tempfile::tempdir().unwrap();
    // Steps at 3 s and 14 s; each waits for a held PONG (up to ~5 s on a loaded machine),
    // so the limit leaves the second one 4 s to fire before the workload stops.
    let run = run_to_end(&[&scenario(file), "--time-limit", "18"], store.path());
    assert!(run.code == 0 || run.code == 1, "{}", run.text);
    let ops = history(&run.dir);
    let failovers: Vec<_> = ops
        .iter()
        .filter(|o| {
            o.process == Process::Nemesis
                && o.f == "failover-while-held"
                && o.kind != OpType::Invoke
        })
        .collect();
    assert_eq!(
        failovers.len(),
        2,
        "failover and failback at 3 s and 14 s: {failovers:?}"
    );
    for f in &failovers {
        assert_eq!(f.kind, OpType::Ok, "{f:?}");
        assert_eq!(f.value["promoted"], true, "{f:?}");
        assert_eq!(f.value["observer"], "n3");
        // Fired while a PONG from the replica to the observer was in the proxy's hands.
        assert!(f.value["held"]["config_epoch"].is_u64(), "{f:?}");
    }
    assert_ne!(
        failovers[0].value["replica"], failovers[1].value["replica"],
        "failover, then failback"
    );
    let topology = std::fs::read_to_string(run.dir.join("topology.jsonl")).unwrap();
    assert!(
        topology.lines().count() > 6 * 100,
        "the observer polled every 50 ms"
    );
    let r = results(&run.dir);
    for checker in [
        "replication-loop",
        "slot-coverage",
        "split-brain",
        "convergence",
        "failover",
        "log-pattern",
        "lost-writes",
    ] {
        assert!(
            r["checkers"].get(checker).is_some(),
            "{checker} missing: {r:#}"
        );
    }
    assert_eq!(
        r["checkers"]["lost-writes"]["lost_count"], 0,
        "a coordinated failover loses nothing"
    );
    eprintln!(
        "{file}: replication-loop {}, slot-coverage {}, log-pattern {}",
        r["checkers"]["replication-loop"]["valid"],
        r["checkers"]["slot-coverage"]["valid"],
        r["checkers"]["log-pattern"]["valid"]
    );
    assert_nothing_left(&run.id, &run.dir);
}

#[test]
fn seed_000_on_redis_7_0_runs_end_to_end() {
    seed("seed-000-redis.yaml");
}

#[test]
fn seed_002_on_valkey_8_0_runs_end_to_end() {
    seed("seed-002-valkey.yaml");
}
