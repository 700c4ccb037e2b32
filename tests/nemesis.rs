//! Faults against real clusters: failovers flip roles, kills and pauses come back, a mixed
//! run on Redis and on Valkey ends with every fault healed and nothing left behind, and the
//! same seed gives the same schedule.

mod common;

use std::collections::HashMap;

use common::{
    assert_nothing_left, cluster_lock, history, require_root, results, run_to_end, scenario,
};
use faultline_history::{Op, OpType, Process};

/// The nemesis's completed ops, in order.
fn nemesis_ops(ops: &[Op]) -> Vec<&Op> {
    ops.iter()
        .filter(|o| o.process == Process::Nemesis && o.kind != OpType::Invoke)
        .collect()
}

/// Every fault that took effect was undone: each kill has a later restart of the same
/// nodes, each pause a resume, each partition a heal, all `ok`.
fn assert_all_healed(ops: &[&Op]) {
    let mut open: HashMap<&str, usize> = HashMap::new();
    for op in ops {
        let undo = match op.f.as_str() {
            "kill" | "pause" | "partition" if op.kind == OpType::Ok => {
                *open.entry(op.f.as_str()).or_default() += 1;
                continue;
            }
            "restart" => "kill",
            "resume" => "pause",
            "heal" => "partition",
            _ => continue,
        };
        assert_eq!(op.kind, OpType::Ok, "{} did not succeed: {op:?}", op.f);
        if let Some(n) = open.get_mut(undo) {
            *n = n.saturating_sub(1);
        }
    }
    assert!(
        open.values().all(|n| *n == 0),
        "faults never healed: {open:?}"
    );
}

#[test]
fn failover_under_load_promotes_the_replica_as_cluster_nodes_shows() {
    require_root();
    let _one_at_a_time = cluster_lock();
    let store = tempfile::tempdir().unwrap();
    let run = run_to_end(
        &[&scenario("failover-under-load.yaml"), "--time-limit", "14"],
        store.path(),
    );
    // A coordinated failover loses nothing: valid.
    assert_eq!(run.code, 0, "{}", run.text);
    let ops = history(&run.dir);
    let failovers: Vec<&Op> = nemesis_ops(&ops)
        .into_iter()
        .filter(|o| o.f == "failover")
        .collect();
    assert_eq!(
        failovers.len(),
        2,
        "failovers at 5 s and 11 s: {failovers:?}"
    );
    for f in &failovers {
        assert_eq!(f.kind, OpType::Ok, "{f:?}");
        assert_eq!(f.value["reply"], "OK");
        assert_eq!(f.value["promoted"], true);
        assert_ne!(f.value["primary"], f.value["replica"]);
    }
    // Clients followed the new primaries: MOVED hops to the promoted replicas.
    let promoted: Vec<String> = failovers
        .iter()
        .map(|f| f.value["replica"].as_str().unwrap().to_string())
        .collect();
    assert!(
        ops.iter()
            .any(|o| !o.redirects.is_empty()
                && o.node.as_ref().is_some_and(|n| promoted.contains(n))),
        "no client was redirected to a promoted replica"
    );
    assert_nothing_left(&run.id, &run.dir);
}

fn mixed(flavor: &str) {
    require_root();
    let _one_at_a_time = cluster_lock();
    let store = tempfile::tempdir().unwrap();
    let run = run_to_end(
        &[
            &scenario("mixed.yaml"),
            "--flavor",
            flavor,
            "--time-limit",
            "30",
        ],
        store.path(),
    );
    // Faults may lose writes (asynchronous replication); the run itself must complete.
    assert!(run.code == 0 || run.code == 1, "{}", run.text);
    let ops = history(&run.dir);
    let nemesis = nemesis_ops(&ops);
    assert!(nemesis.len() >= 5, "few nemesis ops: {nemesis:?}");
    assert_all_healed(&nemesis);
    let r = results(&run.dir);
    let notes = r["run"]["notes"].as_array().unwrap();
    assert!(
        notes.is_empty(),
        "the cluster must agree again after the final heal: {notes:?}"
    );
    assert_eq!(
        r["checkers"]["lost-writes"]["unread_keys"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_nothing_left(&run.id, &run.dir);
}

#[test]
fn mixed_faults_on_redis_all_heal_and_leave_nothing() {
    mixed("redis");
}

#[test]
fn mixed_faults_on_valkey_all_heal_and_leave_nothing() {
    mixed("valkey");
}

#[test]
fn same_seed_same_faults_same_targets_same_offsets() {
    require_root();
    let _one_at_a_time = cluster_lock();
    let schedule = |store: &std::path::Path| {
        let run = run_to_end(
            &[
                &scenario("mixed.yaml"),
                "--nemesis",
                "kill,pause",
                "--nemesis-interval",
                "3",
                "--time-limit",
                "12",
                "--seed",
                "20261122",
            ],
            store,
        );
        assert!(run.code == 0 || run.code == 1, "{}", run.text);
        let ops = history(&run.dir);
        assert_nothing_left(&run.id, &run.dir);
        ops.iter()
            .filter(|o| {
                o.process == Process::Nemesis
                    && o.kind == OpType::Invoke
                    && o.extra.contains_key("step")
            })
            .map(|o| {
                let done = ops
                    .iter()
                    .find(|c| {
                        c.process == Process::Nemesis
                            && c.kind != OpType::Invoke
                            && c.index > o.index
                    })
                    .unwrap();
                (
                    o.f.clone(),
                    done.value["nodes"].clone(),
                    o.extra["at_ms"].as_u64().unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    let a_store = tempfile::tempdir().unwrap();
    let b_store = tempfile::tempdir().unwrap();
    let a = schedule(a_store.path());
    let b = schedule(b_store.path());
    assert!(a.len() >= 3, "{a:?}");
    assert_eq!(a.len(), b.len(), "{a:?}\n{b:?}");
    assert_eq!(a, b, "same seed, same schedule");
}
