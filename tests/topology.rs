//! The topology observer against a real 3x1 Redis cluster (every node polled every 50 ms,
//! every view parses, a quiet cluster checks valid, a manual failover shows in the views,
//! the set workload beside it), and the topology checkers through `faultline analyze` on
//! hand-written run directories.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{code, faultline, text, with_cluster_lock, Cluster};
use faultline::observer::{Observer, ObserverStats, DEFAULT_INTERVAL};
use faultline_checkers::{Results, Validity};
use faultline_history::{read_topology, ClusterView, Observation, Recorder, TOPOLOGY_FILE};
use faultline_workloads::{registry, ClientConfig, Counters, WorkloadParams};
use tokio_util::sync::CancellationToken;

/// The checkers that read the topology log.
const TOPOLOGY_CHECKERS: &[&str] = &[
    "replication-loop",
    "slot-coverage",
    "split-brain",
    "convergence",
];

/// Starts the topology observer on every node, writing into the run directory.
fn observe(cluster: &Cluster, t0: Instant) -> Observer {
    Observer::start(
        &cluster.specs(),
        &cluster.path().join(TOPOLOGY_FILE),
        t0,
        DEFAULT_INTERVAL,
    )
    .unwrap()
}

/// The run's topology log, by observer.
fn observations(dir: &Path) -> BTreeMap<String, Vec<Observation>> {
    let file = read_topology(&dir.join(TOPOLOGY_FILE)).expect("topology.jsonl reads");
    assert!(file.skipped.is_none(), "torn line after a clean stop");
    let mut by: BTreeMap<String, Vec<Observation>> = BTreeMap::new();
    for o in file.records {
        by.entry(o.observer.clone()).or_default().push(o);
    }
    by
}

/// Whether an observation's own line says primary.
fn own_role_is_primary(o: &Observation) -> Option<bool> {
    let view = ClusterView::parse(o.cluster_nodes.as_deref()?).ok()?;
    view.myself().map(|m| m.is_primary())
}

fn report(stats: &ObserverStats) {
    let mean: Vec<String> = stats
        .per_node
        .iter()
        .map(|(n, s)| format!("{n} {} us", s.mean_latency_us()))
        .collect();
    eprintln!(
        "observer: {} observations ({} failed) in {:.2} s = {:.1}/s per node; mean round trip {}",
        stats.observations,
        stats.errors,
        stats.elapsed_s,
        stats.rate_per_node(),
        mean.join(", ")
    );
}

/// Checks `dir` as `faultline run` checks a run of the set workload (the checkers that
/// workload and every workload get).
fn check(dir: &Path) -> Results {
    let run = faultline_checkers::load_run(dir).unwrap();
    faultline_checkers::check(&run, &faultline::analyze::checkers_for(Some("set")).0)
}

#[test]
fn observer_polls_every_node_every_50_ms_and_a_quiet_cluster_checks_valid() {
    with_cluster_lock(async {
        let cluster = Cluster::redis(3, 1).await;
        let t0 = Instant::now();
        let observer = observe(&cluster, t0);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let stats = observer.stop().await.unwrap();
        report(&stats);
        assert_eq!(stats.errors, 0, "{stats:?}");

        let by = observations(cluster.path());
        assert_eq!(by.len(), 6, "{:?}", by.keys());
        for (name, list) in &by {
            // 3 s at 50 ms: 60 polls, plus the first tick and the final round.
            assert!(
                (55..=64).contains(&list.len()),
                "{name}: {} observations",
                list.len()
            );
            assert!(list.windows(2).all(|w| w[0].time_ns < w[1].time_ns));
            for o in list {
                let view = ClusterView::parse(o.cluster_nodes.as_deref().unwrap()).unwrap();
                assert_eq!(view.nodes.len(), 6);
                assert_eq!(view.unowned_slots(), 0);
                let me = view.myself().expect("a myself line");
                assert_eq!(
                    me.addr,
                    cluster
                        .nodes()
                        .iter()
                        .find(|n| &n.name == name)
                        .unwrap()
                        .addr()
                );
            }
        }

        let results = check(cluster.path());
        eprintln!("{}", results.summary());
        for name in TOPOLOGY_CHECKERS.iter().chain(&["log-pattern"]) {
            assert_eq!(
                results.checkers[*name].valid,
                Validity::Valid,
                "{name}: {}",
                results.summary()
            );
        }
        // No history in this directory: its checkers are skipped, not unknown.
        assert!(!results.checkers.contains_key("lost-writes"));
        assert!(
            results.notes.iter().any(|n| n.contains("no history.jsonl")),
            "{:?}",
            results.notes
        );
        assert_eq!(results.valid, Validity::Valid);
        cluster.finish();
    });
}

#[test]
fn observer_captures_the_role_change_of_a_manual_failover() {
    with_cluster_lock(async {
        let mut cluster = Cluster::redis(3, 1).await;
        let t0 = Instant::now();
        let observer = observe(&cluster, t0);
        tokio::time::sleep(Duration::from_millis(500)).await;
        // n4 (index 3) replicates n1: promote it.
        let sent_ns = t0.elapsed().as_nanos() as u64;
        let reply: String = cluster
            .admin
            .cmd(3, redis::cmd("CLUSTER").arg("FAILOVER"))
            .await
            .unwrap();
        assert_eq!(reply, "OK");
        cluster.wait_agreed(Duration::from_secs(20)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let stats = observer.stop().await.unwrap();
        report(&stats);

        let by = observations(cluster.path());
        let roles = |name: &str| -> Vec<(u64, bool)> {
            by[name]
                .iter()
                .filter_map(|o| own_role_is_primary(o).map(|p| (o.time_ns, p)))
                .collect()
        };
        let (n4, n1) = (roles("n4"), roles("n1"));
        assert!(
            !n4.first().unwrap().1 && n4.last().unwrap().1,
            "n4 never became primary: {n4:?}"
        );
        assert!(
            n1.first().unwrap().1 && !n1.last().unwrap().1,
            "n1 never became replica: {n1:?}"
        );
        let promoted_ns = n4.iter().find(|(_, p)| *p).unwrap().0;
        let demoted_ns = n1.iter().find(|(_, p)| !*p).unwrap().0;
        assert!(promoted_ns > sent_ns);
        eprintln!(
            "failover: n4 primary in its own view {:.1} ms after CLUSTER FAILOVER, n1 replica in its own {:.1} ms after",
            (promoted_ns - sent_ns) as f64 / 1e6,
            (demoted_ns - sent_ns) as f64 / 1e6
        );

        // Report what the checkers make of a real, clean failover; only the capture of
        // the role change is asserted.
        let results = check(cluster.path());
        eprintln!("{}", results.summary());
        for name in TOPOLOGY_CHECKERS {
            eprintln!(
                "{name}: {}",
                serde_json::to_string(&results.checkers[*name]).unwrap()
            );
        }
        cluster.finish();
    });
}

/// Polls every node's `CLUSTER NODES` directly for `rounds` rounds, 20 ms apart.
async fn poll_raw(cluster: &mut Cluster, t0: Instant, rounds: usize, into: &mut Vec<Observation>) {
    for _ in 0..rounds {
        for name in cluster.names() {
            let text: String = cluster
                .query(&name, redis::cmd("CLUSTER").arg("NODES"))
                .await;
            into.push(Observation::reply(
                t0.elapsed().as_nanos() as u64,
                name,
                text,
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn change_only_storage_round_trips_real_replies_across_a_failover_and_checks_the_same() {
    with_cluster_lock(async {
        let mut cluster = Cluster::redis(3, 1).await;
        let t0 = Instant::now();
        // Real replies: quiet, through a failover of n1 to n4, and quiet again.
        let mut raw = Vec::new();
        poll_raw(&mut cluster, t0, 25, &mut raw).await;
        let reply: String = cluster
            .query("n4", redis::cmd("CLUSTER").arg("FAILOVER"))
            .await;
        assert_eq!(reply, "OK");
        poll_raw(&mut cluster, t0, 50, &mut raw).await;
        cluster.wait_agreed(Duration::from_secs(20)).await;
        poll_raw(&mut cluster, t0, 10, &mut raw).await;

        // Written as the observer writes them, and as every line was written before.
        let full_dir = tempfile::tempdir().unwrap();
        let change_dir = tempfile::tempdir().unwrap();
        let full =
            faultline_history::JsonlAppender::create(&full_dir.path().join(TOPOLOGY_FILE)).unwrap();
        let change =
            faultline_history::JsonlAppender::create(&change_dir.path().join(TOPOLOGY_FILE))
                .unwrap();
        let mut encoders: BTreeMap<String, faultline_history::ChangeEncoder> = BTreeMap::new();
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        for o in &raw {
            full.append(o);
            let (line, what) = encoders.entry(o.observer.clone()).or_default().encode(
                o.time_ns,
                &o.observer,
                o.cluster_nodes.clone().unwrap(),
            );
            *kinds.entry(format!("{what:?}")).or_default() += 1;
            change.append(&line);
        }
        full.close().unwrap();
        change.close().unwrap();
        eprintln!("{} replies: {kinds:?}", raw.len());
        assert!(kinds.get("Shape").copied().unwrap_or(0) > 0, "{kinds:?}");
        assert!(
            kinds.get("Same").copied().unwrap_or(0) + kinds.get("Liveness").copied().unwrap_or(0)
                > 0,
            "{kinds:?}"
        );
        let size = |d: &Path| fs::metadata(d.join(TOPOLOGY_FILE)).unwrap().len();
        eprintln!(
            "topology.jsonl: {} bytes whole, {} bytes change-only",
            size(full_dir.path()),
            size(change_dir.path())
        );

        // Every reply reads back byte for byte.
        let back = read_topology(&change_dir.path().join(TOPOLOGY_FILE)).unwrap();
        assert!(back.skipped.is_none());
        assert_eq!(back.records, raw);

        // And the checkers say the same, byte for byte.
        let a = serde_json::to_string_pretty(&check(full_dir.path())).unwrap();
        let b = serde_json::to_string_pretty(&check(change_dir.path())).unwrap();
        assert_eq!(a, b);
        cluster.finish();
    });
}

#[test]
fn observer_beside_the_set_workload_costs_little_and_the_run_checks_valid() {
    with_cluster_lock(async {
        let cluster = Cluster::redis(3, 1).await;
        let t0 = Instant::now();
        let recorder = Recorder::create_at(&cluster.path().join("history.jsonl"), t0).unwrap();
        let nodes = cluster.specs();
        let (client, _) = faultline::formed::workload_client(
            faultline::scenario::Mode::Cluster,
            ClientConfig::default(),
            &nodes,
        )
        .await
        .unwrap();
        let workload = registry::by_name(
            "set",
            WorkloadParams {
                keys: 32,
                concurrency: 16,
                rate: None,
                seed: 7,
                ..Default::default()
            },
        )
        .unwrap();
        // Without the observer, with it, then the final reads (all in the run's history,
        // whose final reads must see every add); the last phase, after the final reads,
        // records into a scratch history so the run's own ends with its reads.
        let scratch_dir = tempfile::tempdir().unwrap();
        let scratch = Recorder::create_at(&scratch_dir.path().join("history.jsonl"), t0).unwrap();
        let phase = |seconds: f64, recorder: &Recorder| {
            let (client, recorder, workload) =
                (client.clone(), recorder.clone(), workload.as_ref());
            async move {
                let counters = Arc::new(Counters::default());
                let stop = CancellationToken::new();
                let timer = {
                    let stop = stop.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
                        stop.cancel();
                    })
                };
                let started = Instant::now();
                workload.run(client, recorder, stop, counters.clone()).await;
                timer.abort();
                let (ok, fail, info) = counters.snapshot();
                assert_eq!(fail + info, 0);
                ok as f64 / started.elapsed().as_secs_f64()
            }
        };
        // Warm-up (connections, allocator, CPU frequency), then measured phases.
        phase(1.0, &recorder).await;
        let without_1 = phase(3.0, &recorder).await;
        let observer = Observer::start(
            &nodes,
            &cluster.path().join(TOPOLOGY_FILE),
            t0,
            DEFAULT_INTERVAL,
        )
        .unwrap();
        let with = phase(3.0, &recorder).await;
        let reads = workload
            .final_reads(&client, &recorder, Duration::from_secs(10))
            .await;
        assert_eq!(reads.unread, 0);
        let stats = observer.stop().await.unwrap();
        recorder.close().unwrap();
        let without_2 = phase(3.0, &scratch).await;
        scratch.close().unwrap();
        report(&stats);
        eprintln!(
            "set workload: {without_1:.0} ops/s without the observer, {with:.0} with it, {without_2:.0} without again ({:+.1}% against the mean of the two)",
            (with / ((without_1 + without_2) / 2.0) - 1.0) * 100.0
        );

        // The whole run as `faultline run` will check it: history, topology and logs.
        let results = check(cluster.path());
        eprintln!("{}", results.summary());
        assert_eq!(results.valid, Validity::Valid, "{}", results.summary());
        assert_eq!(results.checkers.len(), 10, "{}", results.summary());
        assert!(results.notes.is_empty(), "{:?}", results.notes);
        cluster.finish();
    });
}

/// A 3x1 view as node `me` sees it (n1..n3 primaries, n4..n6 replicas of them), with n1
/// turned into n4's replica when `looped` (seed 002's loop: n1 -> n4 -> n1).
fn hand_view(me: usize, looped: bool) -> String {
    let id = |n: usize| format!("{n}").repeat(40);
    let mut out = String::new();
    for n in 1..=6 {
        let mine = if n == me { "myself," } else { "" };
        let (flags, primary, slots) = match n {
            1 if looped => ("slave", id(4), "0-5460"),
            1 => ("master", "-".into(), "0-5460"),
            2 => ("master", "-".into(), "5461-10922"),
            3 => ("master", "-".into(), "10923-16383"),
            _ => ("slave", id(n - 3), ""),
        };
        let epoch = if n <= 3 { n } else { n - 3 };
        out.push_str(&format!(
            "{} 10.77.0.{}:6379@16379 {mine}{flags} {primary} 0 1426238317239 {epoch} connected {slots}\n",
            id(n),
            10 + n
        ));
    }
    out
}

#[test]
fn analyze_names_a_replication_loop_in_a_topology_only_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = Vec::new();
    for (t, looped) in [
        (0u64, false),
        (50, true),
        (100, true),
        (150, true),
        (200, false),
    ] {
        for me in 1..=6 {
            let view = hand_view(me, looped && me == 3);
            lines.push(
                serde_json::to_string(&Observation::reply(t * 1_000_000, format!("n{me}"), view))
                    .unwrap(),
            );
        }
    }
    fs::write(dir.path().join(TOPOLOGY_FILE), lines.join("\n") + "\n").unwrap();
    let out = faultline().arg("analyze").arg(dir.path()).output().unwrap();
    assert_eq!(code(&out), 1, "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("n3 saw n1 -> n4 -> n1 (replica of) for 100 ms"),
        "{}",
        text(&out)
    );
    assert!(
        stdout.contains("skipped (no history.jsonl in the run): lost-writes, failover"),
        "{}",
        text(&out)
    );
    let results: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.path().join("results.json")).unwrap()).unwrap();
    let episode = &results["checkers"]["replication-loop"]["episodes"][0];
    assert_eq!(episode["nodes"], serde_json::json!(["n1", "n4"]));
    assert_eq!(episode["observer"], "n3");
    assert_eq!(results["checkers"]["slot-coverage"]["valid"], false);

    // The run's scenario can tolerate short anomalies; analyze reads them back.
    fs::write(
        dir.path().join("scenario.yaml"),
        "tolerances:\n  replication_loop_ms: 150\n  slot_coverage_ms: 150\n",
    )
    .unwrap();
    let out = faultline().arg("analyze").arg(dir.path()).output().unwrap();
    assert_eq!(
        code(&out),
        0,
        "a 100 ms loop under a 150 ms tolerance: {}",
        text(&out)
    );
}

#[test]
fn analyze_of_a_history_only_directory_still_gives_the_lost_writes_verdict() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("history.jsonl"),
        r#"{"index":0,"time_ns":10,"process":0,"type":"invoke","f":"add","key":"s1","value":1}
{"index":1,"time_ns":20,"process":0,"type":"ok","f":"add","key":"s1","value":1}
{"index":2,"time_ns":30,"process":1,"type":"invoke","f":"read","key":"s1","value":null}
{"index":3,"time_ns":40,"process":1,"type":"ok","f":"read","key":"s1","value":[1]}
"#,
    )
    .unwrap();
    let out = faultline().arg("analyze").arg(dir.path()).output().unwrap();
    assert_eq!(code(&out), 0, "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "skipped (no topology.jsonl in the run): replication-loop, slot-coverage, split-brain, convergence"
        ),
        "{}",
        text(&out)
    );
}
