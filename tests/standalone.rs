//! Standalone mode against real Valkey 8.0.1: one primary and two replicas joined with
//! REPLICAOF, clients that sent `CLIENT CAPA redirect`, and `FAILOVER TO` a replica under
//! load. The clients meet `-REDIRECT` and record each hop; the observer records every
//! node's INFO replication; nothing acknowledged is lost and no replication loop is seen.

mod common;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    assert_nothing_left, cluster_lock, history, require_root, results, run_to_end, scenario,
    with_cluster_lock,
};
use faultline::backend::{self};
use faultline::flavor::{self, standalone::Standalone};
use faultline::observer::{Observer, ObserverConfig};
use faultline::scenario::FlavorName;
use faultline_checkers::{Checker, ReplicationLoop, RunData, Validity};
use faultline_history::{read_jsonl, Observation, OpType, Process, TOPOLOGY_FILE};
use faultline_workloads::{ClientConfig, Outcome, StandaloneClient};

/// Standalone Valkey nodes n1 and n2 on the local backend (not started).
fn valkey_pair(
    dir: &std::path::Path,
) -> (
    faultline::ledger::RunId,
    Box<dyn faultline::backend::Backend>,
) {
    common::local_backend(
        dir,
        Arc::new(Standalone(Arc::from(flavor::by_name(FlavorName::Valkey)))),
        vec!["n1".into(), "n2".into()],
        5000,
    )
}

/// Starts the nodes and forms the replication group (n2 replica of n1); returns what
/// [`names_and_addrs`] does.
async fn form(
    backend: &mut dyn faultline::backend::Backend,
) -> (Vec<faultline::backend::NodeSpec>, Vec<(String, String)>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    faultline::standalone::start_and_form(backend, deadline)
        .await
        .unwrap();
    names_and_addrs(backend)
}

/// The backend's nodes, and `(name, ip:port)` of each for the standalone client.
fn names_and_addrs(
    backend: &dyn faultline::backend::Backend,
) -> (Vec<faultline::backend::NodeSpec>, Vec<(String, String)>) {
    let nodes = backend.nodes().to_vec();
    let addrs = nodes.iter().map(|n| (n.name.clone(), n.addr())).collect();
    (nodes, addrs)
}

#[test]
fn a_fault_that_does_not_fit_the_mode_is_bad_input() {
    let out = common::faultline()
        .args([
            "run",
            &scenario("seed-003-valkey.yaml"),
            "--nemesis",
            "migrate-slots",
        ])
        .output()
        .unwrap();
    assert_eq!(common::code(&out), 254, "{}", common::text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("migrate-slots needs a cluster"),
        "{}",
        common::text(&out)
    );
}

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

/// Two real Valkey nodes told to replicate each other: a replication loop for real. A
/// client with `CLIENT CAPA redirect` is sent back and forth until the hop limit ends the
/// op as `info` with `redirect limit`, and the loop checker finds the loop in the
/// observer's INFO replication lines.
#[test]
fn nodes_replicating_each_other_bounce_clients_to_the_hop_limit_and_are_a_loop() {
    with_cluster_lock(async {
        let dir = tempfile::tempdir().unwrap();
        let (run_id, mut backend) = valkey_pair(dir.path());
        backend::start_all(backend.as_mut()).unwrap();
        let (nodes, addrs) = names_and_addrs(backend.as_ref());
        // Wait for both to answer, then point each at the other.
        for (i, n) in nodes.iter().enumerate() {
            let other = &nodes[1 - i];
            let client = redis::Client::open(format!("redis://{}/", n.addr())).unwrap();
            let started = Instant::now();
            let mut conn = loop {
                match client.get_multiplexed_async_connection().await {
                    Ok(c) => break c,
                    Err(e) if started.elapsed() > Duration::from_secs(10) => panic!("{e}"),
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            };
            let _: () = redis::cmd("REPLICAOF")
                .arg(other.ip.to_string())
                .arg(other.port)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
        let observer = Observer::start_with(
            &nodes,
            &dir.path().join(TOPOLOGY_FILE),
            Instant::now(),
            ObserverConfig {
                standalone: true,
                ..ObserverConfig::default()
            },
        )
        .unwrap();

        let client = StandaloneClient::new(ClientConfig::default(), &addrs, &nodes[0].addr());
        let mut cmd = redis::cmd("SADD");
        cmd.arg("s").arg(1);
        match client.execute(&cmd).await {
            Outcome::Info {
                error, redirects, ..
            } => {
                assert_eq!(error, "redirect limit");
                assert_eq!(redirects.len(), ClientConfig::default().max_redirects + 1);
                for pair in redirects.windows(2) {
                    assert_eq!(pair[0].to, pair[1].from);
                    assert_eq!(pair[0].from, pair[1].to, "A -> B -> A: {redirects:?}");
                }
                assert!(redirects
                    .iter()
                    .all(|r| r.kind == "REDIRECT" && r.slot.is_none()));
            }
            other => panic!("expected the hop limit, got {other:?}"),
        }
        assert!(client.capa_replies().values().all(|r| r == "OK"));

        tokio::time::sleep(Duration::from_millis(300)).await;
        observer.stop().await.unwrap();
        let topology = read_jsonl::<Observation>(&dir.path().join(TOPOLOGY_FILE))
            .unwrap()
            .records;
        let r = ReplicationLoop.check(&RunData::from_topology(topology));
        assert_eq!(r.valid, Validity::Invalid, "{r:?}");
        assert_eq!(r.details["episodes"][0]["cycle"], "n1 -> n2 -> n1");

        backend.teardown().unwrap();
        assert_nothing_left(run_id.as_str(), dir.path());
    });
}

/// Reads may go to a replica: on a connection that declared `CLIENT CAPA redirect` and
/// `READONLY`, Valkey's replica answers them itself (no `-REDIRECT`), while writes on the
/// same client still go to the primary.
#[test]
fn reads_go_to_a_replica_and_writes_to_the_primary() {
    with_cluster_lock(async {
        let dir = tempfile::tempdir().unwrap();
        let (run_id, mut backend) = valkey_pair(dir.path());
        let (nodes, addrs) = form(backend.as_mut()).await;
        let client = StandaloneClient::new(ClientConfig::default(), &addrs, &nodes[1].addr());
        assert_eq!(client.find_primary().await.unwrap(), nodes[0].addr());

        let mut add = redis::cmd("SADD");
        add.arg("s").arg(7);
        match client.execute(&add).await {
            Outcome::Ok {
                node, redirects, ..
            } => {
                assert_eq!(node.as_deref(), Some("n1"));
                assert!(redirects.is_empty());
            }
            other => panic!("{other:?}"),
        }
        let mut read = redis::cmd("SMEMBERS");
        read.arg("s");
        let started = Instant::now();
        loop {
            match client.execute_read(&read).await {
                Outcome::Ok {
                    node,
                    redirects,
                    value,
                } => {
                    assert_eq!(node.as_deref(), Some("n2"), "read on the replica");
                    assert!(redirects.is_empty(), "{redirects:?}");
                    if value != redis::Value::Array(vec![]) && value != redis::Value::Set(vec![]) {
                        break; // replicated
                    }
                }
                other => panic!("{other:?}"),
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "never replicated"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        backend.teardown().unwrap();
        assert_nothing_left(run_id.as_str(), dir.path());
    });
}

/// Seed 003's window made long (measurement, not a pass/fail): every packet from the
/// primary to its replica is delayed 300 ms, so FAILOVER's hand-over (the old primary,
/// already a replica, connecting to send `PSYNC FAILOVER`) lasts several round trips.
/// Clients that believe the old primary and clients that believe the target write all
/// along; printed: the failover's states and every redirect chain seen.
/// `cargo test --test standalone seed_003_window -- --ignored --nocapture`
#[test]
#[ignore]
fn seed_003_window_stretched_by_a_delayed_link() {
    use faultline::control::BackendControl;
    use faultline_nemeses::delay::Delay;
    use faultline_nemeses::spec::{DelaySpec, Ports, Target};
    use faultline_nemeses::standalone_failover::{StandaloneFailover, StandaloneFailoverSpec};
    use faultline_nemeses::{Ctx, Fault};
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    with_cluster_lock(async {
        let dir = tempfile::tempdir().unwrap();
        let (run_id, mut backend) = valkey_pair(dir.path());
        let (nodes, addrs) = form(backend.as_mut()).await;
        let backend = Arc::new(Mutex::new(backend));
        let ctx = Ctx {
            control: Arc::new(BackendControl::new(run_id.as_str(), backend.clone())),
            query_timeout: Duration::from_millis(500),
        };
        let delay = Delay::new(DelaySpec {
            from: Target::Nodes(vec!["n1".into()]),
            to: Target::Nodes(vec!["n2".into()]),
            both_ways: false,
            ports: Ports::All,
            delay_ms: serde_json::from_str("300").unwrap(),
            ..DelaySpec::default()
        });
        let applied = delay.apply(&ctx, 1).await;
        println!("delay: {:?} {}", applied.outcome, applied.value);

        let chains: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for (i, start) in [0usize, 0, 1, 1].into_iter().enumerate() {
            // Clients of the first kind keep what they learn; those of the second start
            // at the target for every op, as a client that has not heard of the failover
            // yet, so some arrive during the hand-over.
            let fresh = start == 1;
            let config = ClientConfig {
                op_timeout: Duration::from_secs(10),
                ..ClientConfig::default()
            };
            let first = nodes[start].addr();
            let addrs = addrs.clone();
            let (chains, stop) = (chains.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut client = StandaloneClient::new(config.clone(), &addrs, &first);
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if fresh {
                        client = StandaloneClient::new(config.clone(), &addrs, &first);
                    }
                    let mut add = redis::cmd("SADD");
                    add.arg(format!("k{i}")).arg(n);
                    n += 1;
                    let (kind, redirects) = match client.execute(&add).await {
                        Outcome::Ok { redirects, .. } => ("ok", redirects),
                        Outcome::Fail {
                            redirects, error, ..
                        } => {
                            println!("fail: {error}");
                            ("fail", redirects)
                        }
                        Outcome::Info {
                            redirects, error, ..
                        } => {
                            println!("info: {error}");
                            ("info", redirects)
                        }
                    };
                    if !redirects.is_empty() {
                        let mut chain = vec![client.name_of(&redirects[0].from)];
                        chain.extend(redirects.iter().map(|r| client.name_of(&r.to)));
                        *chains
                            .lock()
                            .unwrap()
                            .entry(format!("{kind} {}", chain.join(" -> ")))
                            .or_default() += 1;
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let failover = StandaloneFailover::new(StandaloneFailoverSpec {
            timeout_ms: faultline_history::bounds::Bounded(10_000),
            ..StandaloneFailoverSpec::default()
        });
        let done = failover.apply(&ctx, 1).await;
        println!("failover: {:?} {}", done.outcome, done.value);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
        println!(
            "redirect chains (outcome, chain: ops): {:#?}",
            chains.lock().unwrap()
        );
        let _ = faultline_nemeses::delay::heal_all(&ctx).await;
        lock_teardown(&backend);
        assert_nothing_left(run_id.as_str(), dir.path());
    });
}

fn lock_teardown(backend: &std::sync::Mutex<Box<dyn faultline::backend::Backend>>) {
    faultline::control::lock(backend).teardown().unwrap();
}
