//! redis-rs's own cluster client (`redis::cluster_async`) behind the faultline adapter
//! protocol (`adapters/PROTOCOL.md`): the binary `faultline-redis-rs-adapter`.
//!
//! Library defaults, then the scenario's `client_config` (`retries`, `min_retry_wait`,
//! `max_retry_wait` in ms, `connection_timeout_ms`, `response_timeout_ms`). Each op runs `argv` as a command on one shared
//! `ClusterConnection`, bounded by the op time-out; an error reply is `fail`, anything
//! else (I/O, time-out, a dropped connection, no connection to the slot's node) `info`.

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::cluster::ClusterClientBuilder;
use redis::{ErrorKind, RedisError, Value};
use serde_json::{json, Value as Json};
use tokio::io::{AsyncBufReadExt as _, BufReader};

/// One answer line, written whole under a lock.
fn write(out: &Mutex<std::io::Stdout>, answer: &Json) {
    let mut out = out.lock().unwrap();
    let _ = writeln!(out, "{answer}");
    let _ = out.flush();
}

fn to_json(v: Value) -> Json {
    match v {
        Value::Nil => Json::Null,
        Value::Int(i) => i.into(),
        Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned().into(),
        Value::SimpleString(s) => s.into(),
        Value::Okay => true.into(),
        Value::Array(items) | Value::Set(items) => items.into_iter().map(to_json).collect(),
        Value::Double(d) => d.into(),
        Value::Boolean(b) => b.into(),
        other => format!("{other:?}").into(),
    }
}

/// Whether the error certainly means the command did not run: a server error reply.
fn classify(e: &RedisError) -> &'static str {
    match e.kind() {
        ErrorKind::Server(_) | ErrorKind::Extension => "fail",
        _ => "info",
    }
}

fn error_text(e: &RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        _ => e.to_string(),
    }
}

fn builder(nodes: Vec<String>, config: &Json) -> Result<ClusterClientBuilder, String> {
    let mut b = ClusterClientBuilder::new(nodes.into_iter().map(|n| format!("redis://{n}")));
    let Some(map) = config.as_object() else {
        return Ok(b);
    };
    for (k, v) in map {
        let n = v.as_u64();
        b = match (k.as_str(), n) {
            ("retries", Some(n)) => b.retries(n as u32),
            ("min_retry_wait", Some(n)) => b.min_retry_wait(n),
            ("max_retry_wait", Some(n)) => b.max_retry_wait(n),
            ("connection_timeout_ms", Some(n)) => b.connection_timeout(Duration::from_millis(n)),
            ("response_timeout_ms", Some(n)) => b.response_timeout(Duration::from_millis(n)),
            _ => return Err(format!("unknown or mistyped client_config key {k}: {v}")),
        };
    }
    Ok(b)
}

#[tokio::main]
async fn main() {
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let Ok(Some(first)) = lines.next_line().await else {
        return;
    };
    let hello: Json = match serde_json::from_str(&first) {
        Ok(h) => h,
        Err(e) => {
            write(
                &out,
                &json!({"type": "error", "error": format!("hello: {e}")}),
            );
            std::process::exit(1);
        }
    };
    if hello["type"] != "hello" || hello["protocol"] != 1 || hello["mode"] != "cluster" {
        write(
            &out,
            &json!({"type": "error", "error": "expected a protocol 1 hello for a cluster"}),
        );
        std::process::exit(1);
    }
    let op_timeout = Duration::from_millis(hello["op_timeout_ms"].as_u64().unwrap_or(1000));
    let nodes: Vec<String> = hello["nodes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let connection = async {
        let client = builder(nodes, &hello["config"])?
            .build()
            .map_err(|e| e.to_string())?;
        client
            .get_async_connection()
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    let connection = match connection {
        Ok(c) => c,
        Err(e) => {
            eprintln!("connecting: {e}");
            write(
                &out,
                &json!({"type": "error", "error": format!("connecting: {e}")}),
            );
            std::process::exit(1);
        }
    };
    write(
        &out,
        &json!({"type": "hello", "protocol": 1, "library": "redis", "version": env!("REDIS_RS_VERSION")}),
    );
    let mut tasks = tokio::task::JoinSet::new();
    while let Ok(Some(line)) = lines.next_line().await {
        let op: Json = match serde_json::from_str(&line) {
            Ok(op) => op,
            Err(e) => {
                eprintln!("ignoring a line that is not JSON ({e}): {line}");
                continue;
            }
        };
        let (mut conn, out) = (connection.clone(), out.clone());
        tasks.spawn(async move {
            let start = Instant::now();
            let mut cmd = redis::Cmd::new();
            for a in op["argv"].as_array().into_iter().flatten() {
                cmd.arg(a.as_str().unwrap_or_default());
            }
            let result =
                tokio::time::timeout(op_timeout, cmd.query_async::<Value>(&mut conn)).await;
            let mut answer = match result {
                Ok(Ok(v)) => json!({"type": "ok", "value": to_json(v)}),
                Ok(Err(e)) => json!({"type": classify(&e), "error": error_text(&e)}),
                Err(_) => json!({"type": "info", "error": "timeout"}),
            };
            answer["id"] = op["id"].clone();
            answer["latency_us"] = (start.elapsed().as_micros() as u64).into();
            write(&out, &answer);
        });
        while tasks.try_join_next().is_some() {}
    }
    let _ = tokio::time::timeout(op_timeout + Duration::from_secs(1), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
}
