//! Standalone mode against real Valkey 8.0.1: one primary and two replicas joined with
//! REPLICAOF, clients that sent `CLIENT CAPA redirect`, and `FAILOVER TO` a replica under
//! load. The clients meet `-REDIRECT` and record each hop; the observer records every
//! node's INFO replication; nothing acknowledged is lost and no replication loop is seen.

mod common;

use common::{
    assert_nothing_left, cluster_lock, history, require_root, results, run_to_end, scenario,
};
use faultline_history::{read_jsonl, Observation, OpType, Process, TOPOLOGY_FILE};

#[test]
fn standalone_failover_under_load_records_redirect_hops_and_ends_valid() {
    require_root();
    let _one_at_a_time = cluster_lock();
    let store = tempfile::tempdir().unwrap();
    let run = run_to_end(
        &[&scenario("seed-003-valkey.yaml"), "--time-limit", "10"],
        store.path(),
    );
    assert_eq!(run.code, 0, "{}", run.text);
    let ops = history(&run.dir);
    let failovers: Vec<_> = ops
        .iter()
        .filter(|o| o.process == Process::Nemesis && o.f == "standalone-failover")
        .filter(|o| o.kind != OpType::Invoke)
        .collect();
    assert_eq!(
        failovers.len(),
        2,
        "failovers at 3 s and 8 s: {failovers:?}"
    );
    for f in &failovers {
        assert_eq!(f.kind, OpType::Ok, "{f:?}");
        assert_eq!(f.value["reply"], "OK");
        assert_eq!(f.value["promoted"], true);
        let states = f.value["states"].as_array().unwrap();
        assert_eq!(
            states.last().unwrap()["state"],
            "no-failover",
            "the old primary's failover state is followed to its end: {f:?}"
        );
    }
    // The second failover starts from the first one's new primary.
    assert_eq!(failovers[1].value["primary"], failovers[0].value["replica"]);
    // Clients were redirected by the demoted primary: REDIRECT hops without a slot.
    let hops: Vec<_> = ops
        .iter()
        .flat_map(|o| o.redirects.iter())
        .filter(|r| r.kind == "REDIRECT")
        .collect();
    assert!(!hops.is_empty(), "no REDIRECT hop recorded");
    assert!(hops.iter().all(|r| r.slot.is_none() && r.from != r.to));
    let topology = read_jsonl::<Observation>(&run.dir.join(TOPOLOGY_FILE))
        .unwrap()
        .records;
    assert!(topology
        .iter()
        .all(|o| o.cluster_nodes.is_none() && o.addr.is_some()));
    assert!(topology.iter().any(|o| o
        .info_replication
        .as_deref()
        .is_some_and(|t| t.contains("role:slave"))));
    let r = results(&run.dir);
    assert_eq!(r["checkers"]["lost-writes"]["valid"], true, "{r}");
    assert_eq!(r["checkers"]["replication-loop"]["valid"], true, "{r}");
    assert_eq!(r["checkers"]["failover"]["valid"], true, "{r}");
    // Slot checkers have nothing to judge in a standalone run: skipped, not valid.
    assert!(r["checkers"].get("slot-coverage").is_none(), "{r}");
    assert_nothing_left(&run.id, &run.dir);
}
