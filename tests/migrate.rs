//! Slot migration under load against a real Valkey cluster: clients meet `-ASK` while a
//! slot's keys are on the target and the slot is still the source's, follow it with
//! ASKING, and nothing acknowledged is lost.

mod common;

use common::{
    assert_nothing_left, cluster_lock, history, require_root, results, run_to_end, scenario,
};
use faultline_history::{OpType, Process};

#[test]
fn slot_migration_under_load_records_ask_hops_and_loses_nothing() {
    require_root();
    let _one_at_a_time = cluster_lock();
    let store = tempfile::tempdir().unwrap();
    let run = run_to_end(
        &[&scenario("migrate-slots.yaml"), "--time-limit", "10"],
        store.path(),
    );
    assert_eq!(run.code, 0, "{}", run.text);
    let ops = history(&run.dir);
    let migrations: Vec<_> = ops
        .iter()
        .filter(|o| o.process == Process::Nemesis && o.f == "migrate-slots")
        .filter(|o| o.kind != OpType::Invoke)
        .collect();
    assert!(
        migrations.len() >= 2,
        "migrations at 3 s and 7 s: {migrations:?}"
    );
    for m in &migrations {
        assert_eq!(m.kind, OpType::Ok, "{m:?}");
        assert_ne!(m.value["from"], m.value["to"]);
        let (first, last) = (
            m.value["first_slot"].as_u64(),
            m.value["last_slot"].as_u64(),
        );
        assert_eq!(
            m.value["moved_slots"].as_u64(),
            Some(last.unwrap() - first.unwrap() + 1),
            "every slot of the range moved: {m:?}"
        );
        assert!(m.value["moved_keys"].as_u64().unwrap() >= 1, "{m:?}");
    }
    // Clients were sent to the target mid-migration, and the hop names the moving slot.
    let asks: Vec<_> = ops
        .iter()
        .flat_map(|o| o.redirects.iter())
        .filter(|r| r.kind == "ASK")
        .collect();
    assert!(!asks.is_empty(), "no ASK hop recorded");
    assert!(asks.iter().all(|r| r.slot.is_some() && r.from != r.to));
    let r = results(&run.dir);
    assert_eq!(r["checkers"]["lost-writes"]["valid"], true, "{r}");
    assert_nothing_left(&run.id, &run.dir);
}
