//! Shared by the node's tests: start real nodes in this process on loopback, port 0.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use faultline_node::config::Config;
use faultline_node::server::{self, Bound};

/// Starts a node with `extra` settings (`--name value` pairs) and its files in `dir`.
pub async fn node(dir: &Path, extra: &[(&str, &str)]) -> Bound {
    let mut args: Vec<String> = vec![
        "--bind".into(),
        "127.0.0.1".into(),
        "--port".into(),
        "0".into(),
        "--dir".into(),
        dir.display().to_string(),
        "--logfile".into(),
        dir.join("node.log").display().to_string(),
    ];
    for (k, v) in extra {
        args.push(format!("--{k}"));
        args.push(v.to_string());
    }
    server::spawn(Config::from_args(&args).expect("config"))
        .await
        .expect("node starts")
}

/// A cluster-mode node on any free client and bus port.
pub async fn cluster_node(dir: &Path, timeout_ms: u64, extra: &[(&str, &str)]) -> Bound {
    let t = timeout_ms.to_string();
    let mut all = vec![
        ("cluster-enabled", "yes"),
        ("cluster-port", "0"),
        ("cluster-node-timeout", t.as_str()),
    ];
    all.extend_from_slice(extra);
    node(dir, &all).await
}

/// A multiplexed connection.
pub async fn conn(addr: SocketAddr) -> redis::aio::MultiplexedConnection {
    redis::Client::open(format!("redis://{addr}/"))
        .expect("url")
        .get_multiplexed_async_connection_with_config(
            // Generous: the test machine is shared and loaded; these bound hangs only.
            &redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(std::time::Duration::from_secs(10)))
                .set_response_timeout(Some(std::time::Duration::from_secs(10))),
        )
        .await
        .expect("connects")
}

/// Sends one command.
pub async fn cmd<T: redis::FromRedisValue>(
    addr: SocketAddr,
    args: &[&str],
) -> redis::RedisResult<T> {
    let mut c = conn(addr).await;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async(&mut c).await
}

/// Polls `f` every 50 ms until it is `Some`, or panics with `what` after `limit`.
pub async fn until<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A temporary directory per node.
pub fn dirs(n: usize) -> (tempfile::TempDir, Vec<std::path::PathBuf>) {
    let root = tempfile::tempdir().expect("tempdir");
    if std::env::var_os("FL_NODE_KEEP").is_some() {
        eprintln!("node dirs kept under {}", root.path().display());
        let kept = root.path().to_path_buf();
        std::mem::forget(root);
        let root = tempfile::TempDir::new_in(&kept).expect("tempdir");
        let v = (0..n)
            .map(|i| {
                let d = kept.join(format!("n{}", i + 1));
                std::fs::create_dir_all(&d).expect("mkdir");
                d
            })
            .collect();
        return (root, v);
    }
    let v = (0..n)
        .map(|i| {
            let d = root.path().join(format!("n{}", i + 1));
            std::fs::create_dir_all(&d).expect("mkdir");
            d
        })
        .collect();
    (root, v)
}
