//! Faults during faults and the client mix, on real servers: a delay on the primary's link
//! to its replica with `FAILOVER TO` fired while it holds (Valkey 8.0.1, which has the fix
//! for seed 003: valid), readers and fresh connections in the history; the client mix in
//! cluster mode; and the stuck-migration checker on a slot left half-moved on purpose.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    assert_nothing_left, cluster_lock, history, require_root, results, run_to_end, scenario,
    with_cluster_lock, Cluster,
};
use faultline::scenario::FlavorName;
use faultline_checkers::{Checker, RunData, StuckMigration, Validity};
use faultline_history::{read_jsonl, Observation, Op, OpType, Process, Recorder};
use faultline_workloads::workload::ClientMix;
use faultline_workloads::{registry, ClientConfig, Counters, WorkloadParams};
use tokio_util::sync::CancellationToken;

fn nemesis<'a>(ops: &'a [Op], f: &str, kind: OpType) -> Vec<&'a Op> {
    ops.iter()
        .filter(|o| o.process == Process::Nemesis && o.f == f && o.kind == kind)
        .collect()
}

#[test]
fn a_failover_during_a_delay_overlaps_it_heals_both_and_is_valid_on_valkey_8_0_1() {
    require_root();
    let _one_at_a_time = cluster_lock();
    let store = tempfile::tempdir().unwrap();
    // One group: the delay at 3 s (healed 4 s after it took effect), FAILOVER TO 0.5 s
    // after it took effect.
    let run = run_to_end(
        &[&scenario("seed-003-composed.yaml"), "--time-limit", "8"],
        store.path(),
    );
    assert_eq!(run.code, 0, "{}", run.text);
    let ops = history(&run.dir);

    let delay = nemesis(&ops, "delay", OpType::Invoke);
    let delay_ok = nemesis(&ops, "delay", OpType::Ok);
    let failover = nemesis(&ops, "standalone-failover", OpType::Invoke);
    let failover_done = nemesis(&ops, "standalone-failover", OpType::Ok);
    let heals = nemesis(&ops, "heal", OpType::Invoke);
    let healed = nemesis(&ops, "heal", OpType::Ok);
    assert_eq!(
        (
            delay.len(),
            delay_ok.len(),
            failover.len(),
            failover_done.len()
        ),
        (1, 1, 1, 1),
        "{ops:?}"
    );
    assert_eq!((heals.len(), healed.len()), (1, 1), "the delay's own heal");
    // Each records its lane, group and schedule; the failover is in the second lane.
    assert_eq!(delay[0].extra["lane"], 0);
    assert_eq!(failover[0].extra["lane"], 1);
    assert_eq!(delay[0].extra["group"], failover[0].extra["group"]);
    assert_eq!(delay[0].extra["at_ms"], 3000);
    assert_eq!(failover[0].extra["at_ms"], 3500);
    assert_eq!(failover[0].extra["after_previous_ms"], 500);
    assert!(delay[0].extra["late_ms"].is_number());
    assert!(failover[0].extra["late_ms"].is_number());
    assert_eq!(heals[0].extra["lane"], 0, "{:?}", heals[0]);
    assert_eq!(heals[0].extra["of_step"], delay[0].extra["step"]);
    // Overlapping for real: the failover started after the delay took effect and before
    // its heal began.
    assert!(delay_ok[0].time_ns < failover[0].time_ns, "{ops:?}");
    assert!(failover[0].time_ns < heals[0].time_ns, "{ops:?}");
    assert_eq!(delay_ok[0].value["links"], serde_json::json!(["n1->n2"]));
    assert_eq!(
        failover_done[0].value["promoted"], true,
        "{:?}",
        failover_done[0]
    );
    // The heal flushed the delay's chain and stopped its delayer; the sweep found nothing.
    assert_eq!(healed[0].value["flushed"], 1, "{:?}", healed[0]);
    assert!(!nemesis(&ops, "heal-delay", OpType::Ok).is_empty());

    // The client mix: readers' ops are in the history like every op, every client op
    // went over a fresh connection of its own.
    let reads: Vec<&Op> = ops
        .iter()
        .filter(|o| (o.f == "smembers" || o.f == "sismember") && o.kind == OpType::Ok)
        .collect();
    assert!(reads.len() > 10, "{} reads", reads.len());
    let adds = ops
        .iter()
        .filter(|o| o.f == "add" && o.kind == OpType::Ok)
        .count();
    assert!(adds > 10, "{adds} adds");
    let invokes: Vec<&Op> = ops
        .iter()
        .filter(|o| {
            matches!(o.process, Process::Client(_)) && o.kind == OpType::Invoke && o.f != "read"
        })
        .collect();
    assert!(invokes
        .iter()
        .all(|o| o.extra["route"]["fresh"] == true && o.extra["route"]["session"].is_u64()));
    let hops = ops
        .iter()
        .flat_map(|o| o.redirects.iter())
        .filter(|r| r.kind == "REDIRECT")
        .count();
    assert!(hops > 0, "clients were redirected by the demoted primary");

    let r = results(&run.dir);
    assert_eq!(r["valid"], true, "{r:#}");
    assert_eq!(r["checkers"]["bouncing-redirects"]["valid"], true, "{r:#}");
    assert_eq!(r["checkers"]["lost-writes"]["valid"], true, "{r:#}");
    assert_nothing_left(&run.id, &run.dir);
}

#[test]
fn the_client_mix_in_cluster_mode_reads_reconnects_and_starts_anywhere() {
    with_cluster_lock(async {
        let cluster = Cluster::up(FlavorName::Valkey, 3, 0, 5000, false).await;
        let t0 = Instant::now();
        let path = cluster.path().join("history.jsonl");
        let recorder = Recorder::create_at(&path, t0).unwrap();
        let (client, _) = faultline::formed::workload_client(
            faultline::scenario::Mode::Cluster,
            ClientConfig::default(),
            &cluster.specs(),
        )
        .await
        .unwrap();
        let mix: ClientMix = serde_json::from_value(serde_json::json!({
            "readers": 0.5, "fresh_connection_every": 3, "random_start_node": true,
        }))
        .unwrap();
        let workload = registry::by_name(
            "set",
            WorkloadParams {
                keys: 16,
                concurrency: 4,
                rate: None,
                seed: 3,
                mix,
                ..Default::default()
            },
        )
        .unwrap();
        let stop = CancellationToken::new();
        let counters = Arc::new(Counters::default());
        let timer = {
            let stop = stop.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(2)).await;
                stop.cancel();
            })
        };
        workload
            .run(client.clone(), recorder.clone(), stop, counters.clone())
            .await;
        timer.abort();
        recorder.close().unwrap();
        let (_, fail, info) = counters.snapshot();
        assert_eq!(fail + info, 0);
        let ops = read_jsonl::<Op>(&path).unwrap().records;
        let done: Vec<&Op> = ops.iter().filter(|o| o.kind == OpType::Ok).collect();
        let by_f = |f: &str| done.iter().filter(|o| o.f == f).count();
        assert!(by_f("add") > 10 && by_f("smembers") > 10, "{ops:?}");
        // Readers are processes 0 and 1, writers 2 and 3.
        assert!(done
            .iter()
            .all(|o| (o.f == "add") == matches!(o.process, Process::Client(2 | 3))));
        // Every third op of a process opened fresh connections; every op started at a
        // drawn node, so about two in three met a MOVED first, recorded as a hop.
        let invokes: Vec<&Op> = ops.iter().filter(|o| o.kind == OpType::Invoke).collect();
        let fresh = invokes
            .iter()
            .filter(|o| o.extra["route"]["fresh"] == true)
            .count();
        assert!(fresh * 3 >= invokes.len() && fresh * 3 <= invokes.len() + 12);
        assert!(invokes.iter().all(|o| o.extra["route"]["start"].is_u64()));
        let moved = done.iter().filter(|o| !o.redirects.is_empty()).count();
        assert!(
            moved * 4 > done.len(),
            "{moved} of {} ops redirected",
            done.len()
        );
        assert!(done
            .iter()
            .flat_map(|o| o.redirects.iter())
            .all(|r| r.kind == "MOVED"));
        cluster.finish();
    });
}

/// Every node's `CLUSTER NODES`, as the observer records it.
async fn views(cluster: &mut Cluster, t0: Instant) -> Vec<Observation> {
    let mut out = Vec::new();
    for name in cluster.names() {
        let text: String = cluster
            .query(&name, redis::cmd("CLUSTER").arg("NODES"))
            .await;
        out.push(Observation::reply(
            t0.elapsed().as_nanos() as u64,
            name,
            text,
        ));
    }
    out
}

#[test]
fn stuck_migration_flags_a_half_moved_slot_and_passes_a_settled_one() {
    with_cluster_lock(async {
        let mut cluster = Cluster::up(FlavorName::Valkey, 2, 0, 5000, false).await;
        let t0 = Instant::now();
        let n1: String = cluster.query("n1", redis::cmd("CLUSTER").arg("MYID")).await;
        let n2: String = cluster.query("n2", redis::cmd("CLUSTER").arg("MYID")).await;
        // Slot 100 is n1's (the first half): leave it half-moved to n2 on purpose.
        let _: () = cluster
            .query(
                "n2",
                redis::cmd("CLUSTER")
                    .arg("SETSLOT")
                    .arg(100)
                    .arg("IMPORTING")
                    .arg(&n1),
            )
            .await;
        let _: () = cluster
            .query(
                "n1",
                redis::cmd("CLUSTER")
                    .arg("SETSLOT")
                    .arg(100)
                    .arg("MIGRATING")
                    .arg(&n2),
            )
            .await;
        let half = views(&mut cluster, t0).await;
        let r = StuckMigration.check(&RunData::from_topology(half.clone()));
        assert_eq!(r.valid, Validity::Invalid, "{r:?}");
        let stuck = r.details["stuck"].as_array().unwrap();
        assert_eq!(stuck.len(), 2, "{r:?}");
        assert_eq!(stuck[0]["node"], "n1");
        assert_eq!(stuck[0]["slots"][0]["state"], "migrating");
        assert_eq!(stuck[1]["slots"][0]["state"], "importing");
        assert_eq!(stuck[1]["slots"][0]["slot"], 100);

        // Settled (rolled back): the last views pass.
        for n in ["n1", "n2"] {
            let _: () = cluster
                .query(
                    n,
                    redis::cmd("CLUSTER").arg("SETSLOT").arg(100).arg("STABLE"),
                )
                .await;
        }
        let mut all = half;
        all.extend(views(&mut cluster, t0).await);
        let r = StuckMigration.check(&RunData::from_topology(all));
        assert_eq!(r.valid, Validity::Valid, "{r:?}");
        assert_eq!(r.details["nodes_judged"], 2);
        cluster.finish();
    });
}

/// Rules (`-A` lines) in `chain` inside `node`'s namespace; 0 when the chain is absent.
fn rules_in(cluster: &Cluster, node: &str, chain: &str) -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &cluster.netns(node),
            "iptables",
            "-w",
            "-S",
            chain,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("-A "))
        .map(String::from)
        .collect()
}

/// Two delays sent from one node at once, in two lanes (as a composed step runs them):
/// each has its own chain and NFQUEUE queue; healing one leaves the other's rules and
/// delayer in place; the final sweep removes everything.
#[test]
fn two_delays_from_one_sender_in_two_lanes_heal_apart() {
    use faultline_nemeses::delay::{self, delayer, DelaySpec, Mechanism};
    use faultline_nemeses::fault::in_lane;
    use faultline_nemeses::spec::Target;
    use faultline_nemeses::{Fault, Outcome};
    with_cluster_lock(async {
        let cluster = Cluster::up(FlavorName::Valkey, 3, 0, 5000, false).await;
        let id = cluster.run_id.to_string();
        let spec = |to: &str, ms: u64| {
            serde_json::from_value::<DelaySpec>(serde_json::json!({
                "from": ["n1"], "to": [to], "delay_ms": ms, "mechanism": "fallback",
            }))
            .unwrap()
        };
        let (a, b) = (spec("n2", 50), spec("n3", 80));
        assert_eq!(a.mechanism, Mechanism::Fallback);
        assert_eq!(a.from, Target::Nodes(vec!["n1".into()]));
        let fa = delay::Delay::new(a);
        let fb = delay::Delay::new(b);
        let applied_a = in_lane(0, fa.apply(&cluster.ctx, 1)).await;
        let applied_b = in_lane(1, fb.apply(&cluster.ctx, 2)).await;
        assert_eq!(applied_a.outcome, Outcome::Ok, "{}", applied_a.value);
        assert_eq!(applied_b.outcome, Outcome::Ok, "{}", applied_b.value);
        let (chain_a, chain_b) = (delay::lane_chain(&id, 0), delay::lane_chain(&id, 1));
        assert_eq!(applied_a.value["chain"], chain_a.as_str());
        assert_eq!(applied_b.value["chain"], chain_b.as_str());
        assert_eq!(applied_a.value["queue_num"], 7700);
        assert_eq!(applied_b.value["queue_num"], 7701);
        let n2 = cluster.node("n2").ip.to_string();
        let n3 = cluster.node("n3").ip.to_string();
        let ra = rules_in(&cluster, "n1", &chain_a);
        let rb = rules_in(&cluster, "n1", &chain_b);
        assert!(
            ra.len() == 1 && ra[0].contains(&n2) && ra[0].contains("--queue-num 7700"),
            "{ra:?}"
        );
        assert!(
            rb.len() == 1 && rb[0].contains(&n3) && rb[0].contains("--queue-num 7701"),
            "{rb:?}"
        );
        assert_eq!(delayer::running(&id).len(), 2, "one delayer per lane on n1");

        // Heal the first: the second's rule and delayer stay.
        let healed = applied_a.heal.unwrap().heal(&cluster.ctx).await.unwrap();
        assert_eq!(healed["chain"], chain_a.as_str());
        assert!(rules_in(&cluster, "n1", &chain_a).is_empty());
        assert_eq!(rules_in(&cluster, "n1", &chain_b), rb);
        assert_eq!(delayer::running(&id).len(), 1);
        // The sweep (final phase) removes the rest.
        let swept = delay::heal_all(&cluster.ctx).await.unwrap();
        assert!(rules_in(&cluster, "n1", &chain_b).is_empty(), "{swept}");
        assert!(delayer::running(&id).is_empty());
        cluster.finish();
    });
}
