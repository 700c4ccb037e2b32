//! faultline's own node (`node/`, `flavor: faultline`) under the harness, for real: a
//! 3x1 cluster of `faultline-node` processes in their own network namespaces survives
//! kills, partitions, pauses and failovers with no finding, and each bug switch
//! (`cluster.bugs`, node/BUGS.md) is caught by the checker it exists for. The node binary
//! is this package's `faultline-node`, found beside `faultline`.

mod common;

use common::{
    assert_nothing_left, cluster_lock, require_root, results, run_to_end, scenario, Finished,
};
use faultline_history::{OpType, Process};

fn run(file: &str, args: &[&str]) -> (Finished, serde_json::Value, tempfile::TempDir) {
    require_root();
    let _one_at_a_time = cluster_lock();
    let store = tempfile::tempdir().unwrap();
    let path = scenario(file);
    let mut all = vec![path.as_str(), "--flavor", "faultline"];
    all.extend_from_slice(args);
    let run = run_to_end(&all, store.path());
    let r = results(&run.dir);
    assert_nothing_left(&run.id, &run.dir);
    (run, r, store)
}

/// The checkers that did not say valid, with their summaries.
fn findings(r: &serde_json::Value) -> String {
    r["checkers"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, c)| c["valid"] != true)
                .map(|(n, c)| format!("{n}: {}", c["summary"]))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

fn verdict<'a>(r: &'a serde_json::Value, checker: &str) -> &'a serde_json::Value {
    &r["checkers"][checker]["valid"]
}

#[test]
fn a_3x1_cluster_of_nodes_survives_kills_partitions_pauses_and_failovers() {
    let (run, r, _store) = run("mixed.yaml", &["--time-limit", "20"]);
    assert_eq!(run.code, 0, "no finding expected:\n{}", findings(&r));
    let resolved = std::fs::read_to_string(run.dir.join("scenario.yaml")).unwrap();
    assert!(resolved.contains("flavor: faultline"), "{resolved}");
}

#[test]
fn stale_pong_applied_is_caught_by_log_pattern_and_slot_coverage() {
    // A replica-of loop shows too when the old primary's demotion reached the observer
    // before the stale PONG (node/BUGS.md); which comes first is a race, so it is not
    // asserted.
    let (run, r, _store) = run("node-stale-pong-applied.yaml", &["--time-limit", "18"]);
    assert_eq!(run.code, 1, "{}", run.text);
    assert_eq!(verdict(&r, "log-pattern"), false, "{r:#}");
    assert_eq!(verdict(&r, "slot-coverage"), false, "{r:#}");
}

#[test]
fn no_epoch_check_on_demotion_is_caught_by_slot_coverage() {
    let (run, r, _store) = run(
        "node-no-epoch-check-on-demotion.yaml",
        &["--time-limit", "18"],
    );
    assert_eq!(run.code, 1, "{}", run.text);
    assert_eq!(verdict(&r, "slot-coverage"), false, "{r:#}");
}

#[test]
fn failback_keeps_old_config_is_caught_by_the_failover_checker_with_the_role() {
    let (run, r, _store) = run(
        "node-failback-keeps-old-config.yaml",
        &["--time-limit", "21"],
    );
    assert_eq!(run.code, 1, "{}", run.text);
    let f = &r["checkers"]["failover"];
    assert_eq!(f["valid"], false, "{r:#}");
    let summary = f["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains("ERR Node is not configured as a REPLICA"),
        "{summary}"
    );
    assert!(summary.contains("it called itself primary"), "{summary}");
}

#[test]
fn ack_before_replicate_lost_is_caught_by_lost_writes() {
    let (run, r, _store) = run(
        "node-ack-before-replicate-lost.yaml",
        &["--time-limit", "12"],
    );
    assert_eq!(run.code, 1, "{}", run.text);
    assert_eq!(verdict(&r, "lost-writes"), false, "{r:#}");
}

#[test]
fn redirect_before_pause_is_caught_by_bouncing_redirects() {
    let (run, r, _store) = run("node-redirect-before-pause.yaml", &["--time-limit", "14"]);
    assert_eq!(run.code, 1, "{}", run.text);
    assert_eq!(verdict(&r, "bouncing-redirects"), false, "{r:#}");
}

#[test]
fn slot_migrations_move_keys_with_migrate_and_clients_follow_ask() {
    let (run, r, _store) = run("migrate-slots.yaml", &["--time-limit", "10"]);
    assert_eq!(run.code, 0, "no finding expected:\n{}", findings(&r));
    let ops = common::history(&run.dir);
    let migrations: Vec<_> = ops
        .iter()
        .filter(|o| o.process == Process::Nemesis && o.f == "migrate-slots")
        .filter(|o| o.kind != OpType::Invoke)
        .collect();
    assert!(!migrations.is_empty(), "no migration ran");
    for m in &migrations {
        assert_eq!(m.kind, OpType::Ok, "{m:?}");
        assert!(m.value["moved_keys"].as_u64().unwrap() >= 1, "{m:?}");
    }
    assert!(
        ops.iter()
            .flat_map(|o| o.redirects.iter())
            .any(|h| h.kind == "ASK"),
        "no client met -ASK mid-migration"
    );
}
