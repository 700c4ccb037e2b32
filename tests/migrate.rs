//! Slot migration under load against a real Valkey cluster: clients meet `-ASK` while a
//! slot's keys are on the target and the slot is still the source's, follow it with
//! ASKING, and nothing acknowledged is lost. And a migration left half-done is finished or
//! rolled back by the final phase's sweep, so no slot stays MIGRATING / IMPORTING.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use faultline::cluster::{start_and_form, Layout};
use faultline::control::{lock, BackendControl};
use faultline::flavor;
use faultline::scenario::FlavorName;
use faultline_history::ClusterView;
use faultline_nemeses::{Ctx, NodeInfo};
use redis::aio::MultiplexedConnection;

use common::{
    assert_nothing_left, cluster_lock, history, require_root, results, run_to_end, scenario,
    with_cluster_lock,
};
use faultline_history::{OpType, Process};

#[test]
fn slot_migration_under_load_records_ask_hops_and_loses_nothing() {
    require_root();
    let _one_at_a_time = cluster_lock();
    let store = tempfile::tempdir().unwrap();
    // The scenario's own 20 s: a migration of 128 slots is about 800 round trips, each
    // `SETSLOT` saving (and fsyncing) nodes.conf, and on a loaded CI machine one took
    // 8.3 s, so a 10 s run had no time for the second.
    let run = run_to_end(&[&scenario("migrate-slots.yaml")], store.path());
    assert_eq!(run.code, 0, "{}", run.text);
    let ops = history(&run.dir);
    let migrations: Vec<_> = ops
        .iter()
        .filter(|o| o.process == Process::Nemesis && o.f == "migrate-slots")
        .filter(|o| o.kind != OpType::Invoke)
        .collect();
    assert!(
        migrations.len() >= 2,
        "migrations from 3 s every 4 s: {migrations:?}"
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

async fn conn(node: &NodeInfo) -> MultiplexedConnection {
    redis::Client::open(format!("redis://{}/", node.addr()))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn cmd<T: redis::FromRedisValue>(node: &NodeInfo, args: &[&str]) -> T {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query_async(&mut conn(node).await)
        .await
        .unwrap_or_else(|e| panic!("{args:?} on {}: {e}", node.name))
}

/// The node's own view: its id and the owner id of `slot`.
async fn own_view(node: &NodeInfo, slot: u16) -> (String, String, String) {
    let text: String = cmd(node, &["CLUSTER", "NODES"]).await;
    let view = ClusterView::parse(&text).unwrap();
    let owner = view.slot_owners()[usize::from(slot)].unwrap().to_string();
    (view.myself().unwrap().id.clone(), owner, text)
}

#[test]
fn a_half_done_migration_is_finished_or_rolled_back_before_the_final_reads() {
    with_cluster_lock(async {
        let dir = tempfile::tempdir().unwrap();
        let (run_id, mut backend) = common::local_backend(
            dir.path(),
            Arc::from(flavor::by_name(FlavorName::Valkey)),
            vec!["n1".into(), "n2".into(), "n3".into()],
            5000,
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        start_and_form(backend.as_mut(), &Layout::new(3, 0), deadline)
            .await
            .unwrap();
        let backend = Arc::new(Mutex::new(backend));
        let ctx = Ctx {
            control: Arc::new(BackendControl::new(run_id.as_str(), backend.clone())),
            query_timeout: Duration::from_millis(500),
        };
        let nodes = ctx.control.nodes().to_vec();
        let mut ids = Vec::new();
        for n in &nodes {
            ids.push(own_view(n, 0).await.0);
        }
        let node_of = |id: &str| &nodes[ids.iter().position(|i| i == id).unwrap()];

        // Slot of {a}: 3 of its 5 keys already on the target when the migration stops.
        // Slot of {b}: marked MIGRATING / IMPORTING, nothing moved yet.
        let mut cases = Vec::new();
        for (tag, moved) in [("a", 3usize), ("b", 0)] {
            let slot: u16 = cmd(&nodes[0], &["CLUSTER", "KEYSLOT", &format!("{{{tag}}}")]).await;
            let (_, owner, _) = own_view(&nodes[0], slot).await;
            let source = node_of(&owner).clone();
            let target = nodes
                .iter()
                .find(|n| n.name != source.name)
                .unwrap()
                .clone();
            let target_id = ids[nodes.iter().position(|n| n.name == target.name).unwrap()].clone();
            let keys: Vec<String> = (0..5).map(|i| format!("{{{tag}}}k{i}")).collect();
            for k in &keys {
                let _: () = cmd(&source, &["SET", k, "v"]).await;
            }
            let s = slot.to_string();
            let _: () = cmd(&target, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &owner]).await;
            let _: () = cmd(
                &source,
                &["CLUSTER", "SETSLOT", &s, "MIGRATING", &target_id],
            )
            .await;
            if moved > 0 {
                let port = target.port.to_string();
                let ip = target.ip.to_string();
                let mut args = vec!["MIGRATE", &ip, &port, "", "0", "5000", "KEYS"];
                args.extend(keys[..moved].iter().map(String::as_str));
                let _: String = cmd(&source, &args).await;
            }
            let (_, _, text) = own_view(&source, slot).await;
            assert!(text.contains("->-"), "{text}");
            cases.push((slot, source, target, target_id, owner, keys, moved));
        }

        let done = faultline_nemeses::migrate_slots::heal_all(&ctx).await;
        let done = done.unwrap();
        assert_eq!(done["settled"].as_array().unwrap().len(), 2, "{done}");

        for (slot, source, target, target_id, owner, keys, moved) in cases {
            for n in [&source, &target] {
                let (_, now, text) = own_view(n, slot).await;
                assert!(!text.contains("->-") && !text.contains("-<-"), "{text}");
                // Finished: the target owns the slot and every key; rolled back: the source.
                let expected = if moved > 0 { &target_id } else { &owner };
                assert_eq!(&now, expected, "slot {slot} in {}'s view", n.name);
            }
            let holder = if moved > 0 { &target } else { &source };
            for k in &keys {
                let v: Option<String> = cmd(holder, &["GET", k]).await;
                assert_eq!(v.as_deref(), Some("v"), "{k} on {}", holder.name);
            }
        }

        let id = run_id.to_string();
        lock(&backend).teardown().unwrap();
        assert_nothing_left(&id, dir.path());
    });
}
