//! The node's client protocol, spoken by raw bytes, the redis crate and redis-cli.

mod common;

use std::process::Command;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{cmd, dirs, node};

async fn raw(stream: &mut TcpStream, send: &[u8], want: &[u8]) {
    let got = exchange(stream, send, |got| got.len() >= want.len()).await;
    assert_eq!(got, String::from_utf8_lossy(want));
}

/// Sends `send`, then reads until `done` says the reply is whole.
async fn exchange(stream: &mut TcpStream, send: &[u8], done: impl Fn(&[u8]) -> bool) -> String {
    stream.write_all(send).await.unwrap();
    let mut got = Vec::new();
    while !done(&got) {
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn raw_resp_commands_and_pipelining() {
    let (_root, d) = dirs(1);
    let n = node(&d[0], &[]).await;
    let mut s = TcpStream::connect(n.client).await.unwrap();
    raw(&mut s, b"*1\r\n$4\r\nPING\r\n", b"+PONG\r\n").await;
    raw(
        &mut s,
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nv1\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
        b"+OK\r\n$2\r\nv1\r\n",
    )
    .await;
    raw(
        &mut s,
        b"*2\r\n$4\r\nINCR\r\n$1\r\nk\r\n",
        b"-ERR value is not an integer or out of range\r\n",
    )
    .await;
    raw(&mut s, b"*2\r\n$3\r\nGET\r\n$7\r\nmissing\r\n", b"$-1\r\n").await;
    raw(&mut s, b"PING\r\n", b"+PONG\r\n").await;
    raw(
        &mut s,
        b"*1\r\n$7\r\nNOSUCHC\r\n",
        b"-ERR unknown command 'NOSUCHC', with args beginning with: \r\n",
    )
    .await;
    raw(
        &mut s,
        b"*3\r\n$4\r\nSADD\r\n$1\r\nk\r\n$1\r\na\r\n",
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
    )
    .await;
}

#[tokio::test]
async fn keyspace_commands_through_the_redis_crate() {
    let (_root, d) = dirs(1);
    let a = node(&d[0], &[]).await.client;
    assert_eq!(
        cmd::<i64>(a, &["SADD", "s", "1", "2", "2"]).await.unwrap(),
        2
    );
    assert_eq!(
        cmd::<Vec<String>>(a, &["SMEMBERS", "s"]).await.unwrap(),
        vec!["1", "2"]
    );
    assert_eq!(cmd::<i64>(a, &["SISMEMBER", "s", "2"]).await.unwrap(), 1);
    assert_eq!(cmd::<i64>(a, &["SCARD", "s"]).await.unwrap(), 2);
    assert_eq!(cmd::<i64>(a, &["INCRBY", "c", "5"]).await.unwrap(), 5);
    assert_eq!(cmd::<i64>(a, &["INCR", "c"]).await.unwrap(), 6);
    assert_eq!(
        cmd::<i64>(a, &["RPUSH", "l", "x", "y", "z"]).await.unwrap(),
        3
    );
    assert_eq!(
        cmd::<Vec<String>>(a, &["LRANGE", "l", "1", "-1"])
            .await
            .unwrap(),
        vec!["y", "z"]
    );
    assert_eq!(
        cmd::<i64>(a, &["EXISTS", "s", "c", "nope"]).await.unwrap(),
        2
    );
    assert_eq!(cmd::<i64>(a, &["DEL", "s", "nope"]).await.unwrap(), 1);
    let (cursor, keys): (String, Vec<String>) =
        cmd(a, &["SCAN", "0", "MATCH", "c*", "COUNT", "1000"])
            .await
            .unwrap();
    assert_eq!((cursor.as_str(), keys), ("0", vec!["c".to_string()]));
    // No replicas: WAIT answers at once with 0.
    assert_eq!(cmd::<i64>(a, &["WAIT", "0", "100"]).await.unwrap(), 0);
    let info: String = cmd(a, &["INFO", "replication"]).await.unwrap();
    assert!(info.contains("role:master"), "{info}");
    let cfg: Vec<String> = cmd(a, &["CONFIG", "GET", "cluster-node-timeout"])
        .await
        .unwrap();
    assert_eq!(cfg, vec!["cluster-node-timeout", "15000"]);
    let _: () = cmd(a, &["CONFIG", "SET", "cluster-node-timeout", "2000"])
        .await
        .unwrap();
    let cfg: Vec<String> = cmd(a, &["CONFIG", "GET", "cluster-node-timeout"])
        .await
        .unwrap();
    assert_eq!(cfg[1], "2000");
}

#[tokio::test]
async fn the_register_workloads_cas_script_runs_by_sha_and_by_text() {
    let (_root, d) = dirs(1);
    let a = node(&d[0], &[]).await.client;
    let script = faultline_workloads::register::CAS_SCRIPT;
    assert_eq!(
        script,
        faultline_node::command::CAS_SCRIPT,
        "the node recognises the workload's script"
    );
    let sha: String = cmd(a, &["SCRIPT", "LOAD", script]).await.unwrap();
    assert_eq!(sha.len(), 40);
    let _: () = cmd(a, &["SET", "r", "1"]).await.unwrap();
    assert_eq!(
        cmd::<i64>(a, &["EVALSHA", &sha, "1", "r", "1", "2"])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        cmd::<i64>(a, &["EVALSHA", &sha, "1", "r", "1", "3"])
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        cmd::<i64>(a, &["EVAL", script, "1", "r", "2", "4"])
            .await
            .unwrap(),
        1
    );
    assert_eq!(cmd::<String>(a, &["GET", "r"]).await.unwrap(), "4");
    let e = cmd::<i64>(
        a,
        &[
            "EVALSHA",
            "0000000000000000000000000000000000000000",
            "1",
            "r",
            "1",
            "2",
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Some("NOSCRIPT"));
    let e = cmd::<i64>(a, &["EVAL", "return 1", "0"]).await.unwrap_err();
    assert!(e.to_string().contains("compare-and-set"), "{e}");
}

#[tokio::test]
async fn standalone_replica_streams_writes_and_redirects_capable_clients() {
    let (_root, d) = dirs(2);
    let p = node(&d[0], &[]).await.client;
    let _: () = cmd(p, &["SET", "before", "1"]).await.unwrap();
    let r = node(&d[1], &[]).await.client;
    let _: () = cmd(r, &["REPLICAOF", "127.0.0.1", &p.port().to_string()])
        .await
        .unwrap();
    common::until(
        std::time::Duration::from_secs(10),
        "the replica's link",
        || async {
            let info: String = cmd(r, &["INFO", "replication"]).await.ok()?;
            info.contains("master_link_status:up").then_some(())
        },
    )
    .await;
    for i in 0..50 {
        let _: i64 = cmd(p, &["SADD", "s", &i.to_string()]).await.unwrap();
    }
    // Every write was acknowledged by the replica.
    assert_eq!(cmd::<i64>(p, &["WAIT", "1", "5000"]).await.unwrap(), 1);
    assert_eq!(cmd::<i64>(r, &["SCARD", "s"]).await.unwrap(), 50);
    assert_eq!(cmd::<String>(r, &["GET", "before"]).await.unwrap(), "1");
    let e = cmd::<()>(r, &["SET", "x", "1"]).await.unwrap_err();
    assert_eq!(e.code(), Some("READONLY"));
    // A client with the redirect capability is sent to the primary.
    let mut c = common::conn(r).await;
    let _: () = redis::cmd("CLIENT")
        .arg("CAPA")
        .arg("redirect")
        .query_async(&mut c)
        .await
        .unwrap();
    let e = redis::cmd("GET")
        .arg("before")
        .query_async::<String>(&mut c)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains(&format!("127.0.0.1:{}", p.port())),
        "{e}"
    );
    let info: String = cmd(p, &["INFO", "replication"]).await.unwrap();
    assert!(info.contains("connected_slaves:1"), "{info}");
}

/// redis-cli (redis-tools) against the node: a real client, not ours.
#[tokio::test]
async fn redis_cli_talks_to_the_node() {
    let (_root, d) = dirs(1);
    let a = node(&d[0], &[]).await.client;
    let cli = move |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &a.port().to_string()])
            .args(args)
            .output()
            .expect("redis-cli is installed (scripts/install-deps)");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let out = tokio::task::spawn_blocking(move || {
        (
            cli(&["SET", "k", "hello"]),
            cli(&["GET", "k"]),
            cli(&["SADD", "s", "a", "b"]),
            cli(&["PING"]),
            cli(&["INFO", "server"]),
        )
    })
    .await
    .unwrap();
    assert_eq!(out.0, "OK");
    assert_eq!(out.1, "hello");
    assert_eq!(out.2, "2");
    assert_eq!(out.3, "PONG");
    assert!(out.4.contains("faultline_node_version:"), "{}", out.4);
}

#[tokio::test]
async fn the_append_only_file_is_replayed_at_start() {
    let (_root, d) = dirs(1);
    let a = node(&d[0], &[("appendonly", "yes")]).await.client;
    assert_eq!(cmd::<i64>(a, &["SADD", "s", "1", "2"]).await.unwrap(), 2);
    assert_eq!(cmd::<i64>(a, &["INCRBY", "c", "7"]).await.unwrap(), 7);
    assert_eq!(cmd::<i64>(a, &["DEL", "s"]).await.unwrap(), 1);
    assert_eq!(cmd::<i64>(a, &["RPUSH", "s", "x"]).await.unwrap(), 1);
    // A second node started on the same directory reads what the first wrote.
    let b = node(&d[0], &[("appendonly", "yes")]).await.client;
    assert_eq!(cmd::<String>(b, &["GET", "c"]).await.unwrap(), "7");
    assert_eq!(
        cmd::<Vec<String>>(b, &["LRANGE", "s", "0", "-1"])
            .await
            .unwrap(),
        vec!["x"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_failover_to_hands_over_to_the_replica() {
    let (_root, d) = dirs(2);
    let p = node(&d[0], &[]).await.client;
    let r = node(&d[1], &[]).await.client;
    let _: () = cmd(r, &["REPLICAOF", "127.0.0.1", &p.port().to_string()])
        .await
        .unwrap();
    common::until(
        std::time::Duration::from_secs(10),
        "the replica to be connected",
        || async {
            let info: String = cmd(p, &["INFO", "replication"]).await.ok()?;
            info.contains("connected_slaves:1").then_some(())
        },
    )
    .await;
    let _: () = cmd(p, &["SET", "k", "v"]).await.unwrap();
    let _: () = cmd(
        p,
        &[
            "FAILOVER",
            "TO",
            "127.0.0.1",
            &r.port().to_string(),
            "TIMEOUT",
            "5000",
        ],
    )
    .await
    .unwrap();
    common::until(
        std::time::Duration::from_secs(10),
        "the hand-over",
        || async {
            let a: String = cmd(p, &["INFO", "replication"]).await.ok()?;
            let b: String = cmd(r, &["INFO", "replication"]).await.ok()?;
            (a.contains("role:slave")
                && a.contains("master_failover_state:no-failover")
                && b.contains("role:master"))
            .then_some(())
        },
    )
    .await;
    assert_eq!(cmd::<String>(r, &["GET", "k"]).await.unwrap(), "v");
    let e = cmd::<()>(r, &["FAILOVER", "ABORT"]).await.unwrap_err();
    assert!(e.to_string().contains("No failover in progress"), "{e}");
}

/// `HELLO 3` switches the connection to RESP3 (null `_`, `%` maps, `~` sets); `HELLO 2`
/// back; the redis crate's RESP3 client reads it as such.
#[tokio::test]
async fn hello_3_switches_to_resp3() {
    let (_root, d) = dirs(1);
    let n = node(&d[0], &[]).await;
    let mut s = TcpStream::connect(n.client).await.unwrap();
    raw(&mut s, b"SADD s a\r\nGET missing\r\n", b":1\r\n$-1\r\n").await;
    // The reply to HELLO 3 is the first in RESP3: a map of 7 fields.
    let hello = hello_reply(&mut s, b"HELLO 3 SETNAME me\r\n").await;
    assert!(hello.starts_with("%7\r\n$6\r\nserver\r\n"), "{hello:?}");
    assert!(hello.contains("$5\r\nproto\r\n:3\r\n"), "{hello:?}");
    raw(&mut s, b"GET missing\r\n", b"_\r\n").await;
    raw(&mut s, b"SMEMBERS s\r\n", b"~1\r\n$1\r\na\r\n").await;
    raw(&mut s, b"CLIENT GETNAME\r\n", b"$2\r\nme\r\n").await;
    raw(
        &mut s,
        b"CONFIG GET appendonly\r\n",
        b"%1\r\n$10\r\nappendonly\r\n$2\r\nno\r\n",
    )
    .await;
    let hello = hello_reply(&mut s, b"HELLO 2\r\n").await;
    assert!(hello.starts_with("*14\r\n"), "{hello:?}");
    raw(&mut s, b"GET missing\r\n", b"$-1\r\n").await;
    raw(
        &mut s,
        b"HELLO 4\r\n",
        b"-NOPROTO unsupported protocol version\r\n",
    )
    .await;

    let client = redis::Client::open(format!("redis://{}/?protocol=resp3", n.client)).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let members: redis::Value = redis::cmd("SMEMBERS")
        .arg("s")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(matches!(members, redis::Value::Set(_)), "{members:?}");
    let missing: redis::Value = redis::cmd("GET")
        .arg("missing")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(missing, redis::Value::Nil);
}

/// Sends a HELLO and reads its whole reply (it ends with the empty `modules` array).
async fn hello_reply(s: &mut TcpStream, send: &[u8]) -> String {
    exchange(s, send, |got| got.ends_with(b"modules\r\n*0\r\n")).await
}
