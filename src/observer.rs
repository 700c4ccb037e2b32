//! The topology observer: every node's own view of the cluster, polled all run long.
//!
//! The bugs faultline hunts (redis/redis#13018, valkey-io/valkey#1015) show in one node's
//! `CLUSTER NODES` for 43 ms to 2.6 s and then clear, so each node is asked on its own
//! connection, by its own task: a paused or partitioned node times out
//! ([`DEFAULT_TIMEOUT`]) without holding up the others. Every reply is appended to
//! `topology.jsonl` (an [`Observation`], timed on the history's clock) in change-only form
//! ([`ChangeEncoder`]: a reply identical to the node's previous one costs a reference, one
//! that differs only in ping/pong times costs those numbers); failures are appended too,
//! with `"error"`. The log is flushed every 20 ms, so a killed run leaves a readable
//! prefix. Checkers parse the views later.
//!
//! ## Poll rate
//!
//! Small clusters are polled every [`DEFAULT_INTERVAL`] throughout. Larger ones
//! ([`ObserverConfig::adaptive`]) share a budget: while the cluster is *hot* every node is
//! polled every `interval` ([`HOT_BUDGET`] polls/s over all nodes, but never slower than
//! [`MAX_HOT_INTERVAL`], so a 100 ms anomaly is still seen), and while it is calm every
//! `calm_interval` ([`CALM_BUDGET`]). The cluster turns hot for `hot_for` whenever any
//! node's view changes shape (flags, roles, epochs, links, slots, nodes), a node that
//! answered stops answering, or the nemesis records an op ([`Observer::watch_nemesis`]); sleeping pollers wake at
//! once and poll on the fast beat.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use faultline_history::{Change, ChangeEncoder, JsonlAppender, Observation, Recorder};
use faultline_workloads::query;
use redis::aio::MultiplexedConnection;
use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::backend::NodeSpec;

/// How often each node is polled in a small cluster, and while hot in any cluster of up
/// to [`HOT_BUDGET`] / 20 nodes: well under the shortest anomaly seen by hand (43 ms
/// would still be caught by a 20 ms interval if asked for).
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(50);

/// The slowest per-node interval while hot, whatever the cluster's size: an anomaly of
/// 100 ms is still seen.
pub const MAX_HOT_INTERVAL: Duration = Duration::from_millis(100);

/// The slowest per-node interval while calm.
pub const MAX_CALM_INTERVAL: Duration = Duration::from_secs(1);

/// Polls per second over all nodes while hot ([`ObserverConfig::adaptive`]).
pub const HOT_BUDGET: f64 = 1000.0;

/// Polls per second over all nodes while calm ([`ObserverConfig::adaptive`]).
pub const CALM_BUDGET: f64 = 200.0;

/// How long the cluster stays hot after a change, failure or nemesis op, unless the run
/// says otherwise.
pub const DEFAULT_HOT_FOR: Duration = Duration::from_secs(3);

/// How long one poll (connect included) may take before it is recorded as failed. Short,
/// so a stalled node costs one failed line per poll, not a gap in the log.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(200);

/// How often [`Observer::watch_nemesis`] looks at the history recorder's nemesis count.
const NEMESIS_WATCH: Duration = Duration::from_millis(5);

/// How the observer polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObserverConfig {
    /// Time between the starts of two polls of one node while the cluster is hot. A poll
    /// that takes longer delays the next one rather than bunching polls up.
    pub interval: Duration,
    /// The same while the cluster is calm (equal to `interval`: a fixed rate).
    pub calm_interval: Duration,
    /// How long the cluster stays hot after a shape change, a newly failing node or a nemesis
    /// op.
    pub hot_for: Duration,
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
            calm_interval: DEFAULT_INTERVAL,
            hot_for: DEFAULT_HOT_FOR,
            timeout: DEFAULT_TIMEOUT,
            standalone: false,
        }
    }
}

impl ObserverConfig {
    /// The budgeted rates for `nodes` nodes: hot, [`HOT_BUDGET`] polls/s shared by all
    /// (between [`DEFAULT_INTERVAL`] and [`MAX_HOT_INTERVAL`] per node); calm,
    /// [`CALM_BUDGET`] (between the hot interval and [`MAX_CALM_INTERVAL`]). Up to 10
    /// nodes this is [`DEFAULT_INTERVAL`] throughout; at 100 nodes 100 ms hot and 500 ms
    /// calm.
    pub fn adaptive(nodes: usize) -> ObserverConfig {
        let share = |budget: f64| Duration::from_secs_f64(nodes.max(1) as f64 / budget);
        let interval = share(HOT_BUDGET).clamp(DEFAULT_INTERVAL, MAX_HOT_INTERVAL);
        let calm_interval = share(CALM_BUDGET).clamp(interval, MAX_CALM_INTERVAL);
        ObserverConfig {
            interval,
            calm_interval,
            ..ObserverConfig::default()
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
    /// Polls made while the cluster was hot.
    pub hot_polls: u64,
    /// Replies written whole.
    pub full: u64,
    /// Replies written as a reference to the previous one (identical).
    pub same: u64,
    /// Replies written as changed lines against the previous one.
    pub changed: u64,
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
        self.hot_polls += other.hot_polls;
        self.full += other.full;
        self.same += other.same;
        self.changed += other.changed;
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
    /// Of which the cluster was hot (polled on the fast beat), seconds.
    pub hot_s: f64,
    /// The per-node intervals, hot and calm, ms.
    pub interval_ms: f64,
    pub calm_interval_ms: f64,
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

    /// The figures a run keeps in `results.json`: the rates (overall, slowest and
    /// fastest node, and each node's), how long the cluster was hot, and how replies
    /// were stored.
    pub fn summary(&self) -> serde_json::Value {
        let per_s = |n: &NodeStats| {
            if self.elapsed_s > 0.0 {
                (n.observations as f64 / self.elapsed_s * 10.0).round() / 10.0
            } else {
                0.0
            }
        };
        let rates: Vec<f64> = self.per_node.values().map(per_s).collect();
        let sum = |f: fn(&NodeStats) -> u64| self.per_node.values().map(f).sum::<u64>();
        serde_json::json!({
            "polls_per_node_per_s": (self.rate_per_node() * 100.0).round() / 100.0,
            "min_node_polls_per_s": rates.iter().copied().fold(f64::INFINITY, f64::min),
            "max_node_polls_per_s": rates.iter().copied().fold(0.0, f64::max),
            "interval_ms": self.interval_ms,
            "calm_interval_ms": self.calm_interval_ms,
            "elapsed_s": (self.elapsed_s * 1000.0).round() / 1000.0,
            "hot_s": (self.hot_s * 1000.0).round() / 1000.0,
            "observations": self.observations,
            "failed": self.errors,
            "stored": {"full": sum(|n| n.full), "changed": sum(|n| n.changed), "same": sum(|n| n.same)},
            "per_node_polls_per_s": self.per_node.iter().map(|(k, n)| (k.clone(), per_s(n))).collect::<BTreeMap<_, _>>(),
        })
    }
}

/// When the cluster is hot, shared by every poller.
struct Pace {
    t0: Instant,
    /// Until when (ns since `t0`) the cluster is hot.
    hot_until_ns: AtomicU64,
    /// Nanoseconds of hot time granted so far (may run past the stop).
    hot_total_ns: AtomicU64,
    /// Wakes pollers sleeping on the calm beat.
    wake: Notify,
    config: ObserverConfig,
}

impl Pace {
    fn now_ns(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }

    fn is_hot(&self) -> bool {
        self.now_ns() < self.hot_until_ns.load(Ordering::Relaxed)
    }

    /// Hot from now for `hot_for`.
    fn heat(&self) {
        let now = self.now_ns();
        let until = now + self.config.hot_for.as_nanos() as u64;
        let before = self.hot_until_ns.fetch_max(until, Ordering::Relaxed);
        if until > before {
            self.hot_total_ns
                .fetch_add(until - before.max(now), Ordering::Relaxed);
        }
        if before <= now && self.config.calm_interval > self.config.interval {
            self.wake.notify_waiters();
        }
    }

    fn interval(&self) -> Duration {
        if self.is_hot() {
            self.config.interval
        } else {
            self.config.calm_interval
        }
    }

    /// Seconds hot up to now.
    fn hot_s(&self) -> f64 {
        let now = self.now_ns();
        let overshoot = self
            .hot_until_ns
            .load(Ordering::Relaxed)
            .saturating_sub(now);
        self.hot_total_ns
            .load(Ordering::Relaxed)
            .saturating_sub(overshoot) as f64
            / 1e9
    }
}

/// One node's poller state, handed from its loop to the last round.
#[derive(Default)]
struct NodePoller {
    stats: NodeStats,
    conn: Option<MultiplexedConnection>,
    encoder: ChangeEncoder,
    /// The previous poll failed: a failure heats the cluster only when it is new, so a
    /// node that stays down (or a machine too loaded to answer) does not keep every
    /// node on the fast beat by itself.
    failing: bool,
}

/// A running topology observer. Stop it with [`Observer::stop`]; dropping it stops the
/// polling too (on error paths), without the final round.
pub struct Observer {
    log: JsonlAppender,
    nodes: Vec<NodeSpec>,
    tasks: Vec<JoinHandle<NodePoller>>,
    stop: CancellationToken,
    _stop_on_drop: DropGuard,
    pace: Arc<Pace>,
    started: Instant,
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
                calm_interval: interval,
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
        let pace = Arc::new(Pace {
            t0,
            hot_until_ns: AtomicU64::new(0),
            hot_total_ns: AtomicU64::new(0),
            wake: Notify::new(),
            config: ObserverConfig {
                calm_interval: config.calm_interval.max(config.interval),
                ..config
            },
        });
        let started = Instant::now();
        let n = nodes.len().max(1) as u32;
        let tasks = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                // Spread the first polls over one calm beat, so the nodes are not asked
                // all at once on every beat.
                let first = started + pace.config.calm_interval * i as u32 / n;
                tokio::spawn(poll_loop(
                    node.clone(),
                    log.clone(),
                    pace.clone(),
                    first,
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
            pace,
            started,
        })
    }

    /// Polls on the fast beat for `hot_for` after every op the nemesis records in
    /// `recorder` (a fault, its effect, its heal), so the views around a fault are dense
    /// even before any node shows it.
    pub fn watch_nemesis(&self, recorder: Recorder) {
        let (pace, stop) = (self.pace.clone(), self.stop.clone());
        tokio::spawn(async move {
            let mut seen = recorder.nemesis_ops();
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(NEMESIS_WATCH) => {}
                }
                let now = recorder.nemesis_ops();
                if now != seen {
                    seen = now;
                    pace.heat();
                }
            }
        });
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
            let mut poller = task.await.unwrap_or_default();
            stats
                .per_node
                .insert(node.name.clone(), std::mem::take(&mut poller.stats));
            let (log, node, pace) = (self.log.clone(), node.clone(), self.pace.clone());
            last_round.push(tokio::spawn(async move {
                poll_once(&node, &mut poller, &log, &pace).await;
                (node.name, poller.stats)
            }));
        }
        for task in last_round {
            if let Ok((name, s)) = task.await {
                stats.per_node.entry(name).or_default().add(&s);
            }
        }
        stats.elapsed_s = self.started.elapsed().as_secs_f64();
        stats.hot_s = self.pace.hot_s();
        stats.interval_ms = self.pace.config.interval.as_secs_f64() * 1000.0;
        stats.calm_interval_ms = self.pace.config.calm_interval.as_secs_f64() * 1000.0;
        for s in stats.per_node.values() {
            stats.observations += s.observations;
            stats.errors += s.errors;
        }
        self.log.close().context("writing topology.jsonl")?;
        Ok(stats)
    }
}

/// Polls one node until `stop`, the first time at `first`; returns its state for the
/// last round.
async fn poll_loop(
    node: NodeSpec,
    log: JsonlAppender,
    pace: Arc<Pace>,
    first: Instant,
    stop: CancellationToken,
) -> NodePoller {
    let mut poller = NodePoller::default();
    let mut last: Option<Instant> = None;
    loop {
        let wake = pace.wake.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        let due = last.map_or(first, |at| at + pace.interval());
        if due > Instant::now() {
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep_until(due.into()) => {}
                // Turned hot: the due time moves up.
                _ = &mut wake => continue,
            }
        } else if stop.is_cancelled() {
            break;
        }
        last = Some(Instant::now());
        poll_once(&node, &mut poller, &log, &pace).await;
    }
    poller
}

/// One poll: `CLUSTER NODES` (or, standalone, `INFO replication`) within the time-out
/// (connecting first if needed), appended as one observation. Any failure drops the
/// connection; the next poll opens a fresh one.
async fn poll_once(node: &NodeSpec, poller: &mut NodePoller, log: &JsonlAppender, pace: &Pace) {
    let config = pace.config;
    let timeout = config.timeout;
    if pace.is_hot() {
        poller.stats.hot_polls += 1;
    }
    let sent = Instant::now();
    let reply = tokio::time::timeout(
        timeout,
        fetch(node, &mut poller.conn, timeout, config.standalone),
    )
    .await
    .unwrap_or_else(|_| Err(format!("timed out after {} ms", timeout.as_millis())));
    let latency_us = sent.elapsed().as_micros() as u64;
    let time_ns = pace.now_ns();
    let stats = &mut poller.stats;
    stats.observations += 1;
    let observation = match reply {
        Ok(text) => {
            poller.failing = false;
            stats.max_latency_us = stats.max_latency_us.max(latency_us);
            stats.total_latency_us += latency_us;
            if config.standalone {
                stats.full += 1;
                Observation::replication(time_ns, &node.name, text).with_addr(node.addr())
            } else {
                let (o, change) = poller.encoder.encode(time_ns, &node.name, text);
                if change == Change::Shape {
                    pace.heat();
                }
                match (o.is_reference(), o.changed.is_empty()) {
                    (false, _) => stats.full += 1,
                    (true, true) => stats.same += 1,
                    (true, false) => stats.changed += 1,
                }
                o
            }
        }
        Err(e) => {
            poller.conn = None;
            stats.errors += 1;
            if !std::mem::replace(&mut poller.failing, true) {
                pace.heat();
            }
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
    use faultline_history::{read_topology, Op, OpType, Process, TOPOLOGY_FILE};
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
                calm_interval: Duration::from_millis(20),
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

        let file = read_topology(&path).unwrap();
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

    #[test]
    fn adaptive_rates_follow_the_budget() {
        let small = ObserverConfig::adaptive(6);
        assert_eq!(
            (small.interval, small.calm_interval),
            (DEFAULT_INTERVAL, DEFAULT_INTERVAL)
        );
        let big = ObserverConfig::adaptive(100);
        assert_eq!(big.interval, Duration::from_millis(100));
        assert_eq!(big.calm_interval, Duration::from_millis(500));
        let huge = ObserverConfig::adaptive(2000);
        assert_eq!(
            (huge.interval, huge.calm_interval),
            (MAX_HOT_INTERVAL, MAX_CALM_INTERVAL)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_calm_cluster_is_polled_slowly_and_a_nemesis_op_speeds_every_node_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TOPOLOGY_FILE);
        let port = fake_node(Duration::ZERO).await;
        let nodes: Vec<NodeSpec> = ["n1", "n2"]
            .iter()
            .map(|name| NodeSpec {
                name: name.to_string(),
                ip: Ipv4Addr::LOCALHOST,
                port,
            })
            .collect();
        let recorder = Recorder::create(&dir.path().join("history.jsonl")).unwrap();
        let observer = Observer::start_with(
            &nodes,
            &path,
            recorder.t0(),
            ObserverConfig {
                interval: Duration::from_millis(20),
                calm_interval: Duration::from_millis(400),
                hot_for: Duration::from_millis(600),
                ..ObserverConfig::default()
            },
        )
        .unwrap();
        observer.watch_nemesis(recorder.clone());
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let heated_ns = recorder.now_ns();
        recorder.record(Op::new(Process::Nemesis, OpType::Invoke, "partition"));
        tokio::time::sleep(Duration::from_millis(600)).await;
        let stats = observer.stop().await.unwrap();
        assert!(stats.hot_s > 0.3 && stats.hot_s < 0.9, "{stats:?}");

        let file = read_topology(&path).unwrap();
        for name in ["n1", "n2"] {
            let times: Vec<u64> = file
                .records
                .iter()
                .filter(|o| o.observer == name)
                .map(|o| o.time_ns)
                .collect();
            let calm = times.iter().filter(|&&t| t < heated_ns).count();
            let hot = times.iter().filter(|&&t| t >= heated_ns).count();
            // The same text every time: one full reply, then references.
            assert!(calm <= 4, "{name}: {calm} polls in a calm second at 400 ms");
            assert!(
                hot >= 3 * calm,
                "{name}: {hot} polls hot against {calm} calm"
            );
        }
        let stored = &stats.summary()["stored"];
        assert_eq!(stored["full"], 2, "{stored}");
        assert!(file.records.iter().all(|o| o.cluster_nodes.is_some()));
    }
}
