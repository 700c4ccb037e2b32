//! `faultline run --live` against a cluster it did not start: a real 3x1 Valkey cluster
//! in network namespaces, brought up by the test's own fixture (`common::Cluster`: the
//! local backend and formation, no `faultline run`), password-protected, with keys planted
//! before the run. faultline reaches it through the client port only (access `none`).
//!
//! - a run with failovers is valid, deletes exactly its own keys, restores the roles, and
//!   leaves every planted key byte for byte as it was;
//! - a wrong password is a clear error (255), before anything is written;
//! - with one node down the preflight fails (255) and no command that writes reaches any
//!   node (`INFO commandstats`), and no run directory is made;
//! - a fault that is not allowed, or that access `none` cannot do, is refused (254)
//!   without connecting anywhere.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::{code, faultline, results, text, with_cluster_lock, Cluster};
use faultline::scenario::FlavorName;
use faultline_workloads::access::{self, Credentials};
use faultline_workloads::slots::tag_for_slot;
use faultline_workloads::{ClientConfig, ClusterClient, Outcome};
use redis::Value;

const PASSWORD: &str = "pl4nted-S3cret";
const PASSWORD_VAR: &str = "FAULTLINE_LIVE_TEST_PASSWORD";

/// Client-port-only failovers, under the set workload.
const SCENARIO: &str = "\
name: live-failover
time_limit: 9
workload:
  keys: 16
  concurrency: 4
nemesis:
  interval_s: 3
  duration_s: 1
  start_after_s: 1
  faults:
    - kind: failover
";

impl Cluster {
    /// Every node asks for `PASSWORD` (replicas also use it towards their primary). The
    /// fixture's admin connections were authenticated before and stay so.
    async fn protect(&mut self) {
        for name in self.names() {
            for (k, v) in [("masterauth", PASSWORD), ("requirepass", PASSWORD)] {
                let _: String = self
                    .query(&name, redis::cmd("CONFIG").arg("SET").arg(k).arg(v))
                    .await;
            }
        }
    }

    /// A redirect-following client of the test's own, authenticated.
    fn client(&self) -> ClusterClient {
        let nodes: Vec<(String, String)> = self
            .nodes()
            .iter()
            .map(|n| (n.name.clone(), n.addr()))
            .collect();
        let c = Credentials {
            username: None,
            password: PASSWORD.into(),
        };
        access::register(nodes.iter().map(|(_, a)| a.as_str()), &c);
        ClusterClient::new(ClientConfig::default(), &nodes)
    }

    /// The write commands each node (but those `down`) has run since the stats were reset.
    async fn writes_seen(&mut self, down: &[&str]) -> BTreeMap<String, Vec<String>> {
        let mut out = BTreeMap::new();
        for name in self.names() {
            if down.contains(&name.as_str()) {
                continue;
            }
            let stats: String = self
                .query(&name, redis::cmd("INFO").arg("commandstats"))
                .await;
            let writes: Vec<String> = stats
                .lines()
                .filter_map(|l| l.strip_prefix("cmdstat_"))
                .filter_map(|l| l.split(':').next())
                .filter(|c| {
                    [
                        "set",
                        "sadd",
                        "del",
                        "unlink",
                        "flushall",
                        "flushdb",
                        "hset",
                        "rpush",
                        "failover",
                        "cluster|failover",
                        "cluster|setslot",
                        "migrate",
                        "config|set",
                    ]
                    .contains(c)
                })
                .map(String::from)
                .collect();
            out.insert(name, writes);
        }
        out
    }
}

/// Runs `client` command `cmd` on `key` until it is answered (the cluster may be settling).
async fn exec(client: &ClusterClient, key: &str, cmd: &redis::Cmd) -> Value {
    for _ in 0..50 {
        match client.execute(key.as_bytes(), cmd).await {
            Outcome::Ok { value, .. } => return value,
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("{cmd:?} on {key} never answered")
}

/// Plants keys of several types all over the slot space (none with faultline's prefix)
/// and returns each key's `DUMP` (type, value and encoding, byte for byte) and TTL.
async fn plant(client: &ClusterClient) -> BTreeMap<String, (Value, Value)> {
    let mut planted = BTreeMap::new();
    for i in 0..24u16 {
        let slot = i * 683;
        let key = format!("customer:{i}{{{}}}", tag_for_slot(slot));
        let mut cmd = match i % 4 {
            0 => {
                let mut c = redis::cmd("SET");
                c.arg(&key).arg(vec![0u8, 255, 10, i as u8, 13, 0]);
                c
            }
            1 => {
                let mut c = redis::cmd("HSET");
                c.arg(&key).arg("name").arg(format!("n{i}")).arg("n").arg(i);
                c
            }
            2 => {
                let mut c = redis::cmd("SADD");
                c.arg(&key).arg(1).arg(2).arg(i);
                c
            }
            _ => {
                let mut c = redis::cmd("RPUSH");
                c.arg(&key).arg("a").arg("b").arg(i);
                c
            }
        };
        exec(client, &key, &cmd).await;
        if i % 5 == 0 {
            cmd = redis::cmd("EXPIRE");
            cmd.arg(&key).arg(100_000);
            exec(client, &key, &cmd).await;
        }
        planted.insert(key, (Value::Nil, Value::Nil));
    }
    snapshot(client, planted.keys()).await
}

/// `DUMP` and `TTL` (rounded to the hour) of each key.
async fn snapshot<'a>(
    client: &ClusterClient,
    keys: impl Iterator<Item = &'a String>,
) -> BTreeMap<String, (Value, Value)> {
    let mut out = BTreeMap::new();
    for key in keys {
        let dump = exec(client, key, redis::cmd("DUMP").arg(key)).await;
        let ttl = match exec(client, key, redis::cmd("TTL").arg(key)).await {
            Value::Int(t) if t > 0 => Value::Int(t / 3600),
            other => other,
        };
        out.insert(key.clone(), (dump, ttl));
    }
    out
}

/// The live cluster: 3x1 Valkey (node time-out `node_timeout_ms`), password-protected,
/// keys planted; with the test's own client and the planted keys' snapshot.
async fn protected_cluster(
    node_timeout_ms: u64,
) -> (Cluster, ClusterClient, BTreeMap<String, (Value, Value)>) {
    let mut cluster = Cluster::up(FlavorName::Valkey, 3, 1, node_timeout_ms, false).await;
    cluster.protect().await;
    let client = cluster.client();
    let planted = plant(&client).await;
    (cluster, client, planted)
}

/// Every key on the cluster's primaries whose name starts with `fl-`.
async fn faultline_keys(cluster: &mut Cluster) -> Vec<String> {
    let mut keys = Vec::new();
    let mut scan = redis::cmd("SCAN");
    scan.arg(0)
        .arg("MATCH")
        .arg("fl-*")
        .arg("COUNT")
        .arg(100_000);
    for (i, name) in cluster.names().iter().enumerate() {
        // A client-kill fault may have closed the fixture's connection: one reconnect.
        let reply: anyhow::Result<(String, Vec<String>)> = match cluster.admin.cmd(i, &scan).await {
            Ok(r) => Ok(r),
            Err(_) => cluster.admin.cmd(i, &scan).await,
        };
        let (_, found) = reply.unwrap_or_else(|e| panic!("SCAN on {name}: {e:#}"));
        keys.extend(found);
    }
    keys
}

/// Every file under `dir` that contains `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    hits.push(p.display().to_string());
                }
            }
        }
    }
    hits
}

/// `faultline run --live` with the test's password variable set to `password`.
fn live_run(args: &[&str], password: &str, store: &Path) -> std::process::Output {
    faultline()
        .arg("run")
        .args(args)
        .arg("--store")
        .arg(store)
        .env(PASSWORD_VAR, password)
        .output()
        .unwrap()
}

#[test]
fn a_live_cluster_is_tested_through_its_client_port_and_left_as_it_was() {
    with_cluster_lock(async {
        let (mut cluster, client, planted) = protected_cluster(2000).await;
        let seed = cluster.node("n2").addr();
        let work = tempfile::tempdir().unwrap();
        let file = work.path().join("live-failover.yaml");
        std::fs::write(&file, SCENARIO).unwrap();
        let store = work.path().join("store");
        let file = file.to_str().unwrap();

        let args = [
            file,
            "--live",
            &seed,
            "--allow-faults",
            "failover",
            "--auth-password-env",
            PASSWORD_VAR,
        ];

        // A wrong password: a clear error, nothing made.
        let out = live_run(&args, "not-the-password", &store);
        let all = text(&out);
        assert_eq!(code(&out), 255, "{all}");
        assert!(all.contains("authentication failed"), "{all}");
        assert!(all.contains("refused the user or password"), "{all}");
        assert!(!store.exists(), "a failed preflight made a run directory");

        // The run: valid, roles restored, its keys deleted, the planted keys untouched.
        let out = live_run(
            &[&args[..], &["--restore-roles"]].concat(),
            PASSWORD,
            &store,
        );
        let all = text(&out);
        assert_eq!(code(&out), 0, "{all}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let dir = common::run_dir(&stdout);
        let r = results(&dir);
        assert_eq!(r["valid"], true, "{all}");
        let backend = r["run"]["backend"].as_str().unwrap();
        assert!(
            backend.starts_with("live cluster") && backend.contains(&seed),
            "{backend}"
        );
        assert!(backend.contains("access none"), "{backend}");
        assert!(
            r["run"]["server_version"]
                .as_str()
                .unwrap()
                .contains("8.0.1"),
            "{r}"
        );
        let history = common::history(&dir);
        let failovers: Vec<_> = history
            .iter()
            .filter(|o| o.f == "failover" && o.kind == faultline_history::OpType::Ok)
            .collect();
        assert!(!failovers.is_empty(), "no failover happened:\n{all}");
        assert!(
            history
                .iter()
                .filter_map(|o| o.key.as_deref())
                .all(|k| k.starts_with("fl-")),
            "the workload touched a key without the run's prefix"
        );
        let post: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("postflight.json")).unwrap()).unwrap();
        assert_eq!(post["cleanup"]["left"], 0, "{post}");
        assert!(post["cleanup"]["deleted"].as_u64().unwrap() > 0, "{post}");
        assert_eq!(post["slots_covered"], true, "{post}");
        assert_eq!(post["primaries_now"], post["primaries_before"], "{post}");
        let pre: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("preflight.json")).unwrap()).unwrap();
        assert_eq!(pre["nodes"].as_array().unwrap().len(), 6, "{pre}");
        assert_eq!(pre["access"], "none");
        let leaks = files_containing(&dir, PASSWORD);
        assert!(leaks.is_empty(), "the password is in {leaks:?}");
        assert!(faultline_keys(&mut cluster).await.is_empty());
        cluster.wait_agreed(Duration::from_secs(20)).await;
        let after = snapshot(&client, planted.keys()).await;
        assert_eq!(after, planted, "a planted key changed");

        // One node down: the preflight fails and no write reaches any node.
        for name in cluster.names() {
            let _: String = cluster
                .query(&name, redis::cmd("CONFIG").arg("RESETSTAT"))
                .await;
        }
        cluster.ctx.control.kill("n6").unwrap();
        let store2 = work.path().join("store2");
        let out = live_run(&args, PASSWORD, &store2);
        let all = text(&out);
        assert_eq!(code(&out), 255, "{all}");
        assert!(all.contains("preflight"), "{all}");
        assert!(!store2.exists(), "a failed preflight made a run directory");
        let writes = cluster.writes_seen(&["n6"]).await;
        assert!(
            writes.values().all(Vec::is_empty),
            "a failed preflight wrote: {writes:?}"
        );
        cluster.ctx.control.restart("n6").unwrap();
        let after = snapshot(&client, planted.keys()).await;
        assert_eq!(after, planted, "a planted key changed");
        cluster.finish();
    });
}

#[test]
fn faults_that_are_not_allowed_are_refused_before_anything_starts() {
    let store = tempfile::tempdir().unwrap();
    // 127.0.0.1:1 answers nothing: a refusal that tried to connect would say so.
    let cases: [(&[&str], &str); 4] = [
        (
            &["--live", "127.0.0.1:1", "--nemesis", "failover"],
            "failover is not allowed",
        ),
        (
            &[
                "--live",
                "127.0.0.1:1",
                "--nemesis",
                "partition",
                "--allow-faults",
                "partition",
            ],
            "access `none` cannot reach",
        ),
        (
            &["--live", "127.0.0.1:1", "--allow-faults", "explode"],
            "no fault kind",
        ),
        (&["--restore-roles"], "add --live"),
    ];
    for (args, expected) in cases {
        let out = faultline()
            .arg("run")
            .args(args)
            .arg("--store")
            .arg(store.path())
            .output()
            .unwrap();
        let all = text(&out);
        assert_eq!(code(&out), 254, "{args:?}\n{all}");
        assert!(all.contains(expected), "{args:?}\n{all}");
    }
    assert_eq!(std::fs::read_dir(store.path()).unwrap().count(), 0);
}

#[test]
fn the_client_port_faults_run_on_a_live_cluster() {
    with_cluster_lock(async {
        let (mut cluster, client, planted) = protected_cluster(5000).await;
        let seed = cluster.node("n1").addr();
        let work = tempfile::tempdir().unwrap();
        let file = work.path().join("live-client-port.yaml");
        std::fs::write(
            &file,
            SCENARIO
                .replace("interval_s: 3", "interval_s: 1.5")
                .replace("time_limit: 9", "time_limit: 5"),
        )
        .unwrap();
        let file = file.to_str().unwrap();
        let store = work.path().join("store");
        // migrate-slots: MIGRATE must carry the password to the target node.
        for kind in [
            "client-pause",
            "client-kill",
            "debug-sleep",
            "migrate-slots",
        ] {
            let out = live_run(
                &[
                    file,
                    "--live",
                    &seed,
                    "--nemesis",
                    kind,
                    "--allow-faults",
                    kind,
                    "--auth-password-env",
                    PASSWORD_VAR,
                ],
                PASSWORD,
                &store,
            );
            let all = text(&out);
            assert_eq!(code(&out), 0, "{kind}\n{all}");
            let dir = common::run_dir(&String::from_utf8_lossy(&out.stdout));
            let applied: Vec<_> = common::history(&dir)
                .into_iter()
                .filter(|o| o.f == kind && o.kind.is_completion())
                .collect();
            // Every application took effect, or (a time-out on a loaded machine) may have;
            // none was refused, and at least one surely took effect.
            use faultline_history::OpType;
            assert!(
                applied.iter().any(|o| o.kind == OpType::Ok),
                "{kind} never took effect\n{all}"
            );
            for op in &applied {
                assert_ne!(
                    op.kind,
                    OpType::Fail,
                    "{kind}: {:?} {:?}",
                    op.error,
                    op.value
                );
            }
            let post: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.join("postflight.json")).unwrap())
                    .unwrap();
            assert_eq!(post["cleanup"]["left"], 0, "{kind}: {post}");
            assert_eq!(post["slots_covered"], true, "{kind}: {post}");
            assert!(files_containing(&dir, PASSWORD).is_empty());
        }
        // One migration of a shard's first slots: the shard is split, and its old primary,
        // no longer the owner of its first slot, still holds run keys that the clean-up
        // must find.
        let shard = shard_of_slot_zero(&mut cluster).await;
        std::fs::write(
            file,
            SCENARIO
                .replace("interval_s: 3", "interval_s: 30")
                .replace("time_limit: 9", "time_limit: 5")
                .replace(
                    "    - kind: failover\n",
                    "    - kind: migrate-slots\n      slots: [0, 15]\n",
                ),
        )
        .unwrap();
        let out = live_run(
            &[
                file,
                "--live",
                &seed,
                "--allow-faults",
                "migrate-slots",
                "--auth-password-env",
                PASSWORD_VAR,
            ],
            PASSWORD,
            &store,
        );
        let all = text(&out);
        assert_eq!(code(&out), 0, "{all}");
        let dir = common::run_dir(&String::from_utf8_lossy(&out.stdout));
        let post: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("postflight.json")).unwrap()).unwrap();
        let before = post["primaries_before"][&shard].as_str().unwrap_or("?");
        let now = post["primaries_now"][&shard].as_str().unwrap_or_default();
        assert!(
            now.starts_with("split: ") && now.contains(&format!("{before} (")),
            "{shard} after moving its slots 0-15: {post}"
        );
        assert_eq!(post["cleanup"]["left"], 0, "{post}");
        assert_eq!(post["slots_covered"], true, "{post}");
        assert!(faultline_keys(&mut cluster).await.is_empty());
        let after = snapshot(&client, planted.keys()).await;
        assert_eq!(after, planted, "a planted key changed");
        cluster.finish();
    });
}

/// The shard (as the postflight names it, `slots A-B`) holding slot 0.
async fn shard_of_slot_zero(cluster: &mut Cluster) -> String {
    // A client-kill fault may have closed the fixture's connection: one reconnect.
    let mut nodes = redis::cmd("CLUSTER");
    nodes.arg("NODES");
    let i = cluster.index("n1");
    let text: String = match cluster.admin.cmd(i, &nodes).await {
        Ok(t) => t,
        Err(_) => cluster.admin.cmd(i, &nodes).await.unwrap(),
    };
    let view = faultline_history::ClusterView::parse(&text).unwrap();
    let owner = view.slot_owners()[0].unwrap().to_string();
    let line = view.nodes.iter().find(|n| n.id == owner).unwrap();
    let ranges: Vec<String> = line.slots.iter().map(|(a, b)| format!("{a}-{b}")).collect();
    format!("slots {}", ranges.join(","))
}

/// Runs `openssl ARGS` in `dir`; panics with its output on failure.
fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", text(&out));
}

/// A CA, a server certificate for `ips`, and a client certificate, all signed by the CA.
fn certificates(dir: &Path, ips: &[String]) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=faultline test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
    );
    let san = ips
        .iter()
        .map(|ip| format!("IP:{ip}"))
        .collect::<Vec<_>>()
        .join(",");
    std::fs::write(dir.join("server.ext"), format!("subjectAltName={san}\n")).unwrap();
    for (name, ext) in [("server", Some("server.ext")), ("client", None)] {
        let (key, csr, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        let subject = format!("/CN=faultline test {name}");
        openssl(
            dir,
            &[
                "req", "-newkey", "rsa:2048", "-nodes", "-subj", &subject, "-keyout", &key, "-out",
                &csr,
            ],
        );
        let mut sign = vec![
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &crt,
        ];
        if let Some(ext) = ext {
            sign.extend(["-extfile", ext]);
        }
        openssl(dir, &sign);
    }
}

#[test]
fn a_live_standalone_valkey_is_tested_over_tls() {
    with_cluster_lock(async {
        use faultline::flavor::{self, standalone::Standalone};
        use std::sync::Arc;

        let dir = tempfile::tempdir().unwrap();
        let (run_id, mut backend) = common::local_backend(
            dir.path(),
            Arc::new(Standalone(Arc::from(flavor::by_name(FlavorName::Valkey)))),
            vec!["n1".into(), "n2".into()],
            5000,
        );
        let nodes = backend.nodes().to_vec();
        let ips: Vec<String> = nodes.iter().map(|n| n.ip.to_string()).collect();
        let certs = tempfile::tempdir().unwrap();
        certificates(certs.path(), &ips);
        let cert = |f: &str| certs.path().join(f).display().to_string();
        // Clients must show a certificate; replication goes over TLS too, so n2 tells
        // n1 its TLS port and n1 lists it there.
        for i in 0..nodes.len() {
            let conf = backend.node_files(i).unwrap().conf.clone();
            let mut text = std::fs::read_to_string(&conf).unwrap();
            text.push_str(&format!(
                "tls-port 6380\ntls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\n\
                 tls-auth-clients yes\ntls-replication yes\n",
                cert("server.crt"),
                cert("server.key"),
                cert("ca.crt")
            ));
            std::fs::write(&conf, text).unwrap();
        }
        faultline::backend::start_all(backend.as_mut()).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        // The fixture's own admin uses the plain port.
        let mut admin = faultline::cluster::Admin::new(&nodes);
        admin.wait_up(backend.as_mut(), deadline).await.unwrap();
        let _: String = admin
            .cmd(1, redis::cmd("REPLICAOF").arg(&ips[0]).arg(6380))
            .await
            .unwrap();
        loop {
            let info: String = admin
                .cmd(1, redis::cmd("INFO").arg("replication"))
                .await
                .unwrap();
            if info.contains("master_link_status:up") {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no TLS replication: {info}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let work = tempfile::tempdir().unwrap();
        let file = work.path().join("live-tls.yaml");
        std::fs::write(
            &file,
            "name: live-tls\nmode: standalone\ntime_limit: 4\ncluster:\n  primaries: 1\n  replicas: 1\nworkload:\n  keys: 8\n  concurrency: 2\n  op_timeout_ms: 3000\nnemesis:\n  interval_s: 3\n  start_after_s: 1\n  faults:\n    - kind: standalone-failover\n",
        )
        .unwrap();
        let store = work.path().join("store");
        let seed = format!("{}:6380", ips[0]);
        let file = file.to_str().unwrap();
        let (ca, crt, key) = (cert("ca.crt"), cert("client.crt"), cert("client.key"));

        // Without TLS the port answers nothing a client understands: the preflight fails.
        let out = live_run(
            &[
                file,
                "--live",
                &seed,
                "--allow-faults",
                "standalone-failover",
            ],
            "",
            &store,
        );
        assert_eq!(code(&out), 255, "{}", text(&out));
        assert!(!store.exists());

        let out = live_run(
            &[
                file,
                "--live",
                &seed,
                "--tls-ca",
                &ca,
                "--tls-cert",
                &crt,
                "--tls-key",
                &key,
                "--allow-faults",
                "standalone-failover",
                "--restore-roles",
            ],
            "",
            &store,
        );
        let all = text(&out);
        assert_eq!(code(&out), 0, "{all}");
        let run = common::run_dir(&String::from_utf8_lossy(&out.stdout));
        let r = results(&run);
        assert_eq!(r["valid"], true, "{r}");
        let pre: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.join("preflight.json")).unwrap()).unwrap();
        let addrs: Vec<&str> = pre["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["addr"].as_str().unwrap())
            .collect();
        assert_eq!(addrs, [seed.clone(), format!("{}:6380", ips[1])], "{pre}");
        assert_eq!(pre["mode"], "standalone");
        let history = common::history(&run);
        let failovers: Vec<_> = history
            .iter()
            .filter(|o| o.f == "standalone-failover" && o.kind.is_completion())
            .collect();
        assert!(
            failovers
                .iter()
                .any(|o| o.kind == faultline_history::OpType::Ok),
            "{all}"
        );
        // A live cluster's config files are not faultline's to rewrite.
        assert!(failovers
            .iter()
            .all(|o| o.value.get("config_rewritten").is_none()));
        let scenario = std::fs::read_to_string(run.join("scenario.yaml")).unwrap();
        assert!(scenario.contains("config_rewrite: false"), "{scenario}");
        let ok_adds = common::history(&run)
            .iter()
            .filter(|o| o.f == "add" && o.kind == faultline_history::OpType::Ok)
            .count();
        assert!(ok_adds > 0, "{all}");
        let post: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.join("postflight.json")).unwrap()).unwrap();
        assert_eq!(post["cleanup"]["left"], 0, "{post}");
        assert!(post["cleanup"]["deleted"].as_u64().unwrap() > 0, "{post}");
        assert_eq!(post["primaries_now"], post["primaries_before"], "{post}");
        let key_pem = std::fs::read_to_string(certs.path().join("client.key")).unwrap();
        let secret_line = key_pem.lines().nth(1).unwrap();
        assert!(files_containing(&run, secret_line).is_empty());
        drop(admin);
        backend.teardown().unwrap();
        common::assert_nothing_left(run_id.as_str(), dir.path());
    });
}
