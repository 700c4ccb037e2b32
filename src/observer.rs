//! The topology observer: every node's own view of the cluster, polled all run long.
//!
//! The bugs faultline hunts (redis/redis#13018, valkey-io/valkey#1015) show in one node's
//! `CLUSTER NODES` for 43 ms to 2.6 s and then clear, so each node is asked every
//! [`DEFAULT_INTERVAL`] on its own connection, by its own task: a paused or partitioned
//! node times out ([`DEFAULT_TIMEOUT`]) without holding up the others. Every reply is
//! appended raw to `topology.jsonl` (an [`Observation`], timed on the history's clock);
//! failures are appended too, with `"error"`. The log is flushed every 20 ms, so a killed
//! run leaves a readable prefix. Checkers parse the views later.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use faultline_history::{JsonlAppender, Observation};
use faultline_workloads::query;
use redis::aio::MultiplexedConnection;
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::backend::NodeSpec;

/// How often each node is polled: well under the shortest anomaly seen by hand (43 ms
/// would still be caught by the 20 ms of [`ObserverConfig`] if asked for).
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(50);

/// How long one poll (connect included) may take before it is recorded as failed. Short,
/// so a stalled node costs one failed line per poll, not a gap in the log.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(200);

/// How the observer polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObserverConfig {
    /// Time between the starts of two polls of one node. A poll that takes longer
    /// delays the next one rather than bunching polls up.
    pub interval: Duration,
    /// The limit on one poll, connect included.
    pub timeout: Duration,
    /// Standalone nodes (no cluster): poll `INFO replication` instead of `CLUSTER NODES`,
    /// recorded as `info_replication`.
    pub standalone: bool,
}

impl Default for ObserverConfig {
    fn default() -> Self {
        ObserverConfig {
            interval: DEFAULT_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            standalone: false,
        }
    }
}

/// What one node's polling did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NodeStats {
    /// Lines written for this node, failures included.
    pub observations: u64,
    /// Of which failed.
    pub errors: u64,
    /// Round trip of the slowest successful poll, µs.
    pub max_latency_us: u64,
    /// Sum of successful polls' round trips, µs (for the mean).
    pub total_latency_us: u64,
}

impl NodeStats {
    /// Mean round trip of successful polls, µs.
    pub fn mean_latency_us(&self) -> u64 {
        self.total_latency_us
            .checked_div(self.observations - self.errors)
            .unwrap_or(0)
    }

    fn add(&mut self, other: &NodeStats) {
        self.observations += other.observations;
        self.errors += other.errors;
        self.max_latency_us = self.max_latency_us.max(other.max_latency_us);
        self.total_latency_us += other.total_latency_us;
    }
}

/// What the observer did, returned by [`Observer::stop`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ObserverStats {
    /// Lines written, failures included.
    pub observations: u64,
    /// Failed polls.
    pub errors: u64,
    /// From start to stop, seconds.
    pub elapsed_s: f64,
    /// Per node, by name.
    pub per_node: BTreeMap<String, NodeStats>,
}

impl ObserverStats {
    /// Polls per second per node actually achieved.
    pub fn rate_per_node(&self) -> f64 {
        if self.per_node.is_empty() || self.elapsed_s <= 0.0 {
            return 0.0;
        }
        self.observations as f64 / self.per_node.len() as f64 / self.elapsed_s
    }
}

/// A running topology observer. Stop it with [`Observer::stop`]; dropping it stops the
/// polling too (on error paths), without the final round.
pub struct Observer {
    log: JsonlAppender,
    nodes: Vec<NodeSpec>,
    tasks: Vec<JoinHandle<(NodeStats, Option<MultiplexedConnection>)>>,
    stop: CancellationToken,
    _stop_on_drop: DropGuard,
    t0: Instant,
    started: Instant,
    config: ObserverConfig,
}

impl Observer {
    /// Starts polling every node in `nodes` every `interval`, appending to `path`
    /// (created, truncating). Times are nanoseconds since `t0`: pass the history
    /// recorder's [`faultline_history::Recorder::t0`] so views and ops share one clock.
    /// Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// If the log cannot be created.
    pub fn start(
        nodes: &[NodeSpec],
        path: &Path,
        t0: Instant,
        interval: Duration,
    ) -> Result<Observer> {
        Self::start_with(
            nodes,
            path,
            t0,
            ObserverConfig {
                interval,
                ..ObserverConfig::default()
            },
        )
    }

    /// [`Observer::start`] with every setting.
    ///
    /// # Errors
    /// If the log cannot be created.
    pub fn start_with(
        nodes: &[NodeSpec],
        path: &Path,
        t0: Instant,
        config: ObserverConfig,
    ) -> Result<Observer> {
        let log =
            JsonlAppender::create(path).with_context(|| format!("creating {}", path.display()))?;
        let stop = CancellationToken::new();
        let tasks = nodes
            .iter()
            .map(|node| {
                tokio::spawn(poll_loop(
                    node.clone(),
                    log.clone(),
                    t0,
                    config,
                    stop.clone(),
                ))
            })
            .collect();
        Ok(Observer {
            log,
            nodes: nodes.to_vec(),
            tasks,
            _stop_on_drop: stop.clone().drop_guard(),
            stop,
            t0,
            started: Instant::now(),
            config,
        })
    }

    /// Stops polling, polls every node one last time (so the log ends with a view of
    /// every node taken after whatever the caller did last, such as the final reads),
    /// and closes the log.
    ///
    /// # Errors
    /// If the log could not be written.
    pub async fn stop(self) -> Result<ObserverStats> {
        self.stop.cancel();
        let mut stats = ObserverStats::default();
        let mut last_round = Vec::new();
        for (node, task) in self.nodes.iter().zip(self.tasks) {
            let (node_stats, conn) = task.await.unwrap_or_default();
            stats.per_node.insert(node.name.clone(), node_stats);
            let (log, node, config, t0) = (self.log.clone(), node.clone(), self.config, self.t0);
            last_round.push(tokio::spawn(async move {
                let mut conn = conn;
                let mut s = NodeStats::default();
                poll_once(&node, &mut conn, &log, t0, config, &mut s).await;
                (node.name, s)
            }));
        }
        for task in last_round {
            if let Ok((name, s)) = task.await {
                stats.per_node.entry(name).or_default().add(&s);
            }
        }
        stats.elapsed_s = self.started.elapsed().as_secs_f64();
        for s in stats.per_node.values() {
            stats.observations += s.observations;
            stats.errors += s.errors;
        }
        self.log.close().context("writing topology.jsonl")?;
        Ok(stats)
    }
}

/// Polls one node until `stop`; returns its stats and its connection for the last round.
async fn poll_loop(
    node: NodeSpec,
    log: JsonlAppender,
    t0: Instant,
    config: ObserverConfig,
    stop: CancellationToken,
) -> (NodeStats, Option<MultiplexedConnection>) {
    let mut stats = NodeStats::default();
    let mut conn = None;
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        poll_once(&node, &mut conn, &log, t0, config, &mut stats).await;
    }
    (stats, conn)
}

/// One poll: `CLUSTER NODES` (or, standalone, `INFO replication`) within the time-out
/// (connecting first if needed), appended as one observation. Any failure drops the
/// connection; the next poll opens a fresh one.
async fn poll_once(
    node: &NodeSpec,
    conn: &mut Option<MultiplexedConnection>,
    log: &JsonlAppender,
    t0: Instant,
    config: ObserverConfig,
    stats: &mut NodeStats,
) {
    let timeout = config.timeout;
    let sent = Instant::now();
    let reply = tokio::time::timeout(timeout, fetch(node, conn, timeout, config.standalone))
        .await
        .unwrap_or_else(|_| Err(format!("timed out after {} ms", timeout.as_millis())));
    let latency_us = sent.elapsed().as_micros() as u64;
    let time_ns = t0.elapsed().as_nanos() as u64;
    stats.observations += 1;
    let observation = match reply {
        Ok(text) => {
            stats.max_latency_us = stats.max_latency_us.max(latency_us);
            stats.total_latency_us += latency_us;
            if config.standalone {
                Observation::replication(time_ns, &node.name, text).with_addr(node.addr())
            } else {
                Observation::reply(time_ns, &node.name, text)
            }
        }
        Err(e) => {
            *conn = None;
            stats.errors += 1;
            let failed = Observation::failed(time_ns, &node.name, e);
            if config.standalone {
                failed.with_addr(node.addr())
            } else {
                failed
            }
        }
    };
    log.append(&observation.with_latency_us(latency_us));
}

async fn fetch(
    node: &NodeSpec,
    conn: &mut Option<MultiplexedConnection>,
    timeout: Duration,
    standalone: bool,
) -> Result<String, String> {
    if conn.is_none() {
        let c = query::connect(&node.addr(), timeout, Some(timeout))
            .await
            .map_err(|e| format!("connecting: {e}"))?;
        *conn = Some(c);
    }
    let Some(c) = conn.as_mut() else {
        return Err("no connection".into());
    };
    let cmd = if standalone {
        redis::cmd("INFO").arg("replication").clone()
    } else {
        redis::cmd("CLUSTER").arg("NODES").clone()
    };
    cmd.query_async::<String>(c)
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_history::{read_jsonl, TOPOLOGY_FILE};
    use std::net::Ipv4Addr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A fake node on loopback that answers every request with one bulk string, after
    /// `delay`: enough of RESP for the redis crate's CLUSTER NODES (and its connection
    /// set-up commands, whose replies it ignores).
    async fn fake_node(delay: Duration) -> u16 {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let body = "abc 127.0.0.1:1@2 myself,master - 0 0 1 connected 0-16383\n";
                    loop {
                        let n = match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        // One reply per command in the read (each starts with '*').
                        let commands = buf[..n].iter().filter(|&&b| b == b'*').count().max(1);
                        tokio::time::sleep(delay).await;
                        for _ in 0..commands {
                            let reply = format!("${}\r\n{body}\r\n", body.len());
                            if sock.write_all(reply.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        port
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_node_does_not_slow_the_others_and_every_poll_is_logged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TOPOLOGY_FILE);
        let fast = fake_node(Duration::ZERO).await;
        let slow = fake_node(Duration::from_secs(10)).await;
        // A port nobody listens on: connection refused at once.
        let closed = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let node = |name: &str, port| NodeSpec {
            name: name.into(),
            ip: Ipv4Addr::LOCALHOST,
            port,
        };
        let nodes = vec![node("n1", fast), node("n2", slow), node("n3", closed)];
        let t0 = Instant::now();
        let observer = Observer::start_with(
            &nodes,
            &path,
            t0,
            ObserverConfig {
                interval: Duration::from_millis(20),
                timeout: Duration::from_millis(100),
                ..ObserverConfig::default()
            },
        )
        .unwrap();
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let stopping = Instant::now();
        let stats = observer.stop().await.unwrap();
        // At most one poll in progress, then the last round: two time-outs.
        assert!(
            stopping.elapsed() < Duration::from_millis(400),
            "{:?}",
            stopping.elapsed()
        );
        let n1 = &stats.per_node["n1"];
        assert!(n1.observations >= 35, "{stats:?}");
        assert_eq!(n1.errors, 0, "{stats:?}");
        let n2 = &stats.per_node["n2"];
        assert!(
            n2.observations >= 6 && n2.errors == n2.observations,
            "{stats:?}"
        );
        let n3 = &stats.per_node["n3"];
        assert!(
            n3.observations >= 30 && n3.errors == n3.observations,
            "{stats:?}"
        );

        let file = read_jsonl::<Observation>(&path).unwrap();
        assert!(file.skipped.is_none());
        assert_eq!(file.records.len() as u64, stats.observations);
        let n1_lines: Vec<&Observation> =
            file.records.iter().filter(|o| o.observer == "n1").collect();
        assert!(n1_lines
            .iter()
            .all(|o| o.cluster_nodes.is_some() && o.latency_us.is_some()));
        assert!(n1_lines.windows(2).all(|w| w[0].time_ns <= w[1].time_ns));
        // The stalled node never completes the connection set-up or the command.
        let stalled = file.records.iter().find(|o| o.observer == "n2").unwrap();
        let error = stalled.error.as_deref().unwrap();
        assert!(error.contains("timed out"), "{error}");
        assert!(stalled.latency_us.unwrap() < 150_000, "{stalled:?}");
        // The final round: every node's last line was taken after stop was called.
        for name in ["n1", "n2", "n3"] {
            let last = file
                .records
                .iter()
                .rev()
                .find(|o| o.observer == name)
                .unwrap();
            assert!(last.time_ns >= 1_000_000_000, "{last:?}");
        }
    }
}
