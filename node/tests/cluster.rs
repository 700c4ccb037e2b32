//! A cluster of nodes in this process, on loopback: formation as the harness forms one,
//! CLUSTER NODES read by the harness's parser, redirects, manual failovers over the bus,
//! and the bus's bytes cut by the bus proxy's framer.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use faultline_history::ClusterView;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{cluster_node, cmd, dirs, until};

const TIMEOUT_MS: u64 = 2000;

struct Cluster {
    _root: tempfile::TempDir,
    nodes: Vec<faultline_node::server::Bound>,
    ids: Vec<String>,
}

impl Cluster {
    fn addr(&self, i: usize) -> SocketAddr {
        self.nodes[i].client
    }

    async fn view(&self, i: usize) -> ClusterView {
        let text: String = cmd(self.addr(i), &["CLUSTER", "NODES"]).await.unwrap();
        ClusterView::parse(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    /// Until every node sees every node, no flags, every slot owned, same primaries, and
    /// every replica's link is up.
    async fn agreed(&self) {
        let why = std::sync::Mutex::new(String::new());
        let start = std::time::Instant::now();
        loop {
            match self.disagreement().await {
                None => return,
                Some(w) => *why.lock().unwrap() = w,
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the cluster did not agree: {}",
                why.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn disagreement(&self) -> Option<String> {
        let mut primaries = None;
        for i in 0..self.nodes.len() {
            let info: String = match cmd(self.addr(i), &["CLUSTER", "INFO"]).await {
                Ok(i) => i,
                Err(e) => return Some(format!("n{}: {e}", i + 1)),
            };
            let v = self.view(i).await;
            let text = format!(
                "n{} sees {:?}",
                i + 1,
                v.nodes
                    .iter()
                    .map(|n| (n.id[..6].to_string(), n.flags.join(","), n.slots.clone()))
                    .collect::<Vec<_>>()
            );
            if !info.contains("cluster_state:ok") {
                return Some(format!("state not ok; {text}"));
            }
            if v.nodes.len() != self.nodes.len()
                || v.nodes.iter().any(|n| n.is_failing() || n.is_unsettled())
            {
                return Some(text);
            }
            if v.unowned_slots() > 0 {
                return Some(format!("unowned; {text}"));
            }
            let mut p: Vec<String> = v
                .nodes
                .iter()
                .filter(|n| n.is_primary())
                .map(|n| n.id.clone())
                .collect();
            p.sort();
            if primaries.get_or_insert(p.clone()) != &p {
                return Some(format!("primaries differ; {text}"));
            }
            if v.myself().is_some_and(|m| m.is_replica()) {
                let r: String = cmd(self.addr(i), &["INFO", "replication"])
                    .await
                    .unwrap_or_default();
                if !r.contains("master_link_status:up") {
                    return Some(format!("n{} link down", i + 1));
                }
            }
        }
        None
    }
}

/// 3 primaries x 1 replica, formed as `src/cluster.rs` forms one: distinct config epochs,
/// MEET n1, ADDSLOTSRANGE, REPLICATE once the primary is known.
async fn three_by_one(bugs: &str) -> Cluster {
    let (root, d) = dirs(6);
    let mut nodes = Vec::new();
    for dir in &d {
        nodes.push(cluster_node(dir, TIMEOUT_MS, &[("faultline-bugs", bugs)]).await);
    }
    let mut ids = Vec::new();
    for n in &nodes {
        ids.push(cmd::<String>(n.client, &["CLUSTER", "MYID"]).await.unwrap());
    }
    for (k, n) in nodes.iter().enumerate().take(3) {
        let _: () = cmd(
            n.client,
            &["CLUSTER", "SET-CONFIG-EPOCH", &(k + 1).to_string()],
        )
        .await
        .unwrap();
    }
    let first = nodes[0];
    for n in &nodes[1..] {
        let (port, bus) = (
            first.client.port().to_string(),
            first.bus.unwrap().port().to_string(),
        );
        let _: () = cmd(n.client, &["CLUSTER", "MEET", "127.0.0.1", &port, &bus])
            .await
            .unwrap();
    }
    for (k, (a, b)) in [(0, 5460), (5461, 10922), (10923, 16383)]
        .into_iter()
        .enumerate()
    {
        let _: () = cmd(
            nodes[k].client,
            &["CLUSTER", "ADDSLOTSRANGE", &a.to_string(), &b.to_string()],
        )
        .await
        .unwrap();
    }
    for k in 0..3 {
        let (r, p) = (nodes[3 + k].client, ids[k].clone());
        until(
            Duration::from_secs(20),
            "the replica to know its primary",
            || async { cmd::<()>(r, &["CLUSTER", "REPLICATE", &p]).await.ok() },
        )
        .await;
    }
    let c = Cluster {
        _root: root,
        nodes,
        ids,
    };
    c.agreed().await;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_formed_cluster_agrees_redirects_and_fails_over_by_hand() {
    let c = three_by_one("").await;
    // The harness's parser reads every view; n1 owns 0-5460, n4 replicates it.
    let v = c.view(0).await;
    assert_eq!(v.node(&c.ids[0]).unwrap().slots, vec![(0, 5460)]);
    assert_eq!(
        v.node(&c.ids[3]).unwrap().primary_id.as_deref(),
        Some(c.ids[0].as_str())
    );

    // "foo" hashes to slot 12182 (n3): n1 answers MOVED with n3's address.
    let e = cmd::<String>(c.addr(0), &["GET", "foo"]).await.unwrap_err();
    assert_eq!(e.code(), Some("MOVED"));
    assert!(
        e.to_string()
            .contains(&format!("12182 127.0.0.1:{}", c.addr(2).port())),
        "{e}"
    );
    let _: () = cmd(c.addr(2), &["SET", "foo", "bar"]).await.unwrap();
    let slots: redis::Value = cmd(c.addr(1), &["CLUSTER", "SLOTS"]).await.unwrap();
    assert!(
        matches!(&slots, redis::Value::Array(a) if a.len() == 3),
        "{slots:?}"
    );

    // A replica with READONLY serves reads of its primary's slots once replicated.
    assert_eq!(
        cmd::<i64>(c.addr(2), &["WAIT", "1", "5000"]).await.unwrap(),
        1
    );
    let mut r = common::conn(c.addr(5)).await;
    let _: () = redis::cmd("READONLY").query_async(&mut r).await.unwrap();
    let got: String = redis::cmd("GET")
        .arg("foo")
        .query_async(&mut r)
        .await
        .unwrap();
    assert_eq!(got, "bar");

    // Manual failover: n6 (replica of n3) takes over with the data, n3 follows it.
    let _: () = cmd(c.addr(5), &["CLUSTER", "FAILOVER"]).await.unwrap();
    until(
        Duration::from_secs(20),
        "n6 to be primary everywhere",
        || async {
            for i in 0..6 {
                let v = c.view(i).await;
                if !v.node(&c.ids[5])?.is_primary() || !v.node(&c.ids[2])?.is_replica() {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    c.agreed().await;
    assert_eq!(
        cmd::<String>(c.addr(5), &["GET", "foo"]).await.unwrap(),
        "bar"
    );
    let e = cmd::<String>(c.addr(2), &["GET", "foo"]).await.unwrap_err();
    assert_eq!(e.code(), Some("MOVED"));

    // TAKEOVER back: no election, a new epoch.
    let _: () = cmd(c.addr(2), &["CLUSTER", "FAILOVER", "TAKEOVER"])
        .await
        .unwrap();
    until(
        Duration::from_secs(20),
        "n3 to be primary again everywhere",
        || async {
            for i in 0..6 {
                if !c.view(i).await.node(&c.ids[2])?.is_primary() {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    c.agreed().await;
    let e = cmd::<()>(c.addr(0), &["CLUSTER", "FAILOVER"])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("replica"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_messages_are_framed_by_the_bus_proxys_framer() {
    use faultline_nemeses::proxy::frame::{Chunk, Framer, MsgType};
    use faultline_node::cluster::message::{flag, kind, Body, Message, SLOT_BYTES};

    let (_root, d) = dirs(1);
    let n = cluster_node(&d[0], TIMEOUT_MS, &[]).await;
    let id: String = cmd(n.client, &["CLUSTER", "MYID"]).await.unwrap();
    let me = "a".repeat(40);
    let meet = Message {
        kind: kind::MEET,
        port: 1,
        current_epoch: 0,
        config_epoch: 0,
        offset: 0,
        sender: me.clone(),
        slots: Box::new([0; SLOT_BYTES]),
        replicaof: None,
        myip: "127.0.0.1".into(),
        cport: 2,
        flags: flag::PRIMARY,
        state: 0,
        mflags: 0,
        body: Body::Gossip(vec![]),
    };
    let bytes = meet.encode();
    // What this node sends, the proxy's framer reads too.
    let mut f = Framer::new();
    f.push(&bytes);
    let Some(Chunk::Frame(fr)) = f.next_chunk() else {
        panic!("not framed")
    };
    let h = fr.header.unwrap();
    assert_eq!(h.msg_type, MsgType::Meet);
    assert_eq!(h.full.as_ref().unwrap().sender, me);

    let mut s = TcpStream::connect(n.bus.unwrap()).await.unwrap();
    s.write_all(&bytes).await.unwrap();
    let mut framer = Framer::new();
    let reply = loop {
        let mut buf = [0u8; 8192];
        let k = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(k > 0);
        framer.push(&buf[..k]);
        if let Some(c) = framer.next_chunk() {
            break c;
        }
    };
    let Chunk::Frame(fr) = reply else {
        panic!("the node's reply is not a bus frame")
    };
    let h = fr.header.clone().unwrap();
    assert_eq!(h.msg_type, MsgType::Pong);
    let full = h.full.unwrap();
    assert_eq!(full.sender, id);
    assert_eq!(full.cport, n.bus.unwrap().port());
    assert!(full.is_primary());
    // And our decoder agrees with it.
    let decoded = Message::decode(&fr.bytes).unwrap();
    assert_eq!(decoded.sender, id);
    // The node met us: CLUSTER NODES lists the sender.
    let text: String = cmd(n.client, &["CLUSTER", "NODES"]).await.unwrap();
    assert!(text.contains(&me), "{text}");
}

/// `redis-cli --cluster create` and `--cluster check` (redis-tools) form and check a
/// cluster of nodes, as a person would by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_cluster_create_and_check_work() {
    let (_root, d) = dirs(6);
    let mut addrs = Vec::new();
    for dir in &d {
        addrs.push(cluster_node(dir, TIMEOUT_MS, &[]).await.client.to_string());
    }
    let cli = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new("redis-cli")
                .args(&args)
                .output()
                .expect("redis-cli is installed (scripts/install-deps)");
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        })
    };
    let mut create = vec!["--cluster".to_string(), "create".into()];
    create.extend(addrs.iter().cloned());
    create.extend([
        "--cluster-replicas".into(),
        "1".into(),
        "--cluster-yes".into(),
    ]);
    let (ok, out) = cli(create).await.unwrap();
    assert!(ok && out.contains("All 16384 slots covered"), "{out}");
    until(
        Duration::from_secs(30),
        "redis-cli --cluster check to pass",
        || {
            let a = addrs[0].clone();
            async move {
                let (ok, out) = cli(vec!["--cluster".into(), "check".into(), a])
                    .await
                    .ok()?;
                (ok && out.contains("[OK] All nodes agree about slots configuration")).then_some(())
            }
        },
    )
    .await;
}

/// `redis-cli --cluster reshard` moves slots and their keys between nodes with
/// `CLUSTER SETSLOT` and `MIGRATE ... KEYS` (RESTORE-ASKING on the target), and the keys
/// are then served by their new owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_cluster_reshard_moves_keys_with_migrate() {
    let c = three_by_one("").await;
    // Keys in slots 0..=99 (n1's lowest, which reshard moves first).
    let keys: Vec<String> = (0..)
        .map(|i| format!("k{i}"))
        .filter(|k| faultline_node::slot::key_slot(k.as_bytes()) < 100)
        .take(20)
        .collect();
    for k in &keys {
        let _: () = cmd(c.addr(0), &["SET", k, &format!("v-{k}")])
            .await
            .unwrap();
    }
    let set_key = format!("{{{}}}set", keys[0]);
    let _: () = cmd(c.addr(0), &["SADD", &set_key, "a", "b"]).await.unwrap();
    let (addr, from, to) = (c.addr(0).to_string(), c.ids[0].clone(), c.ids[1].clone());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("redis-cli")
            .args(["--cluster", "reshard", &addr, "--cluster-from", &from])
            .args([
                "--cluster-to",
                &to,
                "--cluster-slots",
                "100",
                "--cluster-yes",
            ])
            .output()
            .expect("redis-cli is installed (scripts/install-deps)")
    })
    .await
    .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Moving slot 99 from"), "{text}");
    for k in &keys {
        let v: Option<String> = cmd(c.addr(1), &["GET", k]).await.unwrap();
        assert_eq!(v.as_deref(), Some(format!("v-{k}").as_str()), "{k}");
        let moved = cmd::<Option<String>>(c.addr(0), &["GET", k]).await;
        let e = moved.expect_err("n1 no longer serves it");
        assert!(e.to_string().to_uppercase().contains("MOVED"), "{e}");
    }
    let set: Vec<String> = cmd(c.addr(1), &["SMEMBERS", &set_key]).await.unwrap();
    assert_eq!(set, vec!["a", "b"]);
    // n2's replica got the keys through replication, n1's replica lost them.
    until(
        Duration::from_secs(10),
        "the replicas to follow",
        || async {
            let n5: i64 = cmd(c.addr(4), &["DBSIZE"]).await.ok()?;
            let n4: i64 = cmd(c.addr(3), &["DBSIZE"]).await.ok()?;
            (n5 == 21 && n4 == 0).then_some(())
        },
    )
    .await;
    c.agreed().await;
}
