//! A cluster client that follows redirects itself and reports every hop.
//!
//! Off-the-shelf cluster clients hide MOVED and ASK; a harness must see them, because a
//! redirect chain is evidence (a slot owned by nobody, a bouncing redirect). So this client
//! keeps its own slot map, talks to each node over one multiplexed connection, and returns,
//! with each reply, the redirects it followed.
//!
//! It also decides what an op's outcome means, in Jepsen's terms: an error reply means the
//! command certainly did not run ([`Outcome::Fail`]); a time-out or a broken connection after
//! the command was sent means nobody knows ([`Outcome::Info`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use faultline_history::Redirect;
use redis::aio::MultiplexedConnection;
use redis::{Cmd, RedisError, Value};

use crate::key_client::{session_suffix, Route};
use crate::pool::Pool;
use crate::query::error_text;
use crate::slots::{key_slot, SLOTS};

/// How the client behaves; the defaults suit a throw-away test cluster.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Budget for a whole op, redirects and retries included. Past it the op is `info`.
    pub op_timeout: Duration,
    /// Budget for opening one connection.
    pub connect_timeout: Duration,
    /// Hops after which the op gives up as `info` with error `redirect limit`.
    pub max_redirects: usize,
    /// First back-off after TRYAGAIN or CLUSTERDOWN; doubles on each retry.
    pub retry_backoff: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            op_timeout: Duration::from_millis(1000),
            connect_timeout: Duration::from_millis(500),
            max_redirects: 16,
            retry_backoff: Duration::from_millis(10),
        }
    }
}

/// What happened to one command.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The command ran; `value` is the reply.
    Ok {
        /// The reply.
        value: Value,
        /// Name of the node that answered.
        node: Option<String>,
        /// Every redirect followed on the way.
        redirects: Vec<Redirect>,
    },
    /// The command certainly did not run (an error reply, or it was never sent).
    Fail {
        /// What went wrong, with the server's error text when there was one.
        error: String,
        /// The node that answered last, if any.
        node: Option<String>,
        /// Every redirect followed on the way.
        redirects: Vec<Redirect>,
    },
    /// The command may or may not have run (time-out, connection lost after sending).
    Info {
        /// What went wrong.
        error: String,
        /// The node the command was last sent to.
        node: Option<String>,
        /// Every redirect followed on the way.
        redirects: Vec<Redirect>,
    },
}

/// Sends `cmd` on the connection `conn` gives (a client's pooled one), all within
/// `limit`: a client's own question to a node (slot map, roles), not a workload op.
///
/// # Errors
/// The connection's or the reply's error as text; `timed out` past `limit`.
pub(crate) async fn ask<T: redis::FromRedisValue>(
    limit: Duration,
    conn: impl std::future::Future<Output = Result<(u64, MultiplexedConnection), String>>,
    cmd: &Cmd,
) -> Result<T, String> {
    tokio::time::timeout(limit, async {
        let mut conn = conn.await?.1;
        cmd.query_async::<T>(&mut conn)
            .await
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|_| Err("timed out".into()))
}

/// Whether a client whose last refresh was at `last` may refresh again: at most every
/// 250 ms, so a burst of failing ops does not turn into a burst of refreshes.
pub(crate) fn refresh_due(last: &Mutex<Option<Instant>>) -> bool {
    last.lock()
        .unwrap()
        .is_none_or(|t| t.elapsed() > Duration::from_millis(250))
}

/// Per-op trace, kept outside the op's future so a time-out can still read it.
#[derive(Default)]
pub(crate) struct Trace {
    pub(crate) redirects: Vec<Redirect>,
    pub(crate) node: Option<String>,
    /// A command was sent and no definite answer has come back for it yet.
    pub(crate) in_doubt: bool,
}

impl Trace {
    /// The op's outcome from what happened to it: `None` if it timed out (in doubt if
    /// a command had been sent without a definite answer).
    pub(crate) fn outcome(self, result: Option<Result<Value, Failure>>) -> Outcome {
        let Trace {
            redirects,
            node,
            in_doubt,
        } = self;
        match result {
            Some(Ok(value)) => Outcome::Ok {
                value,
                node,
                redirects,
            },
            Some(Err(Failure::Certain(error))) => Outcome::Fail {
                error,
                node,
                redirects,
            },
            Some(Err(Failure::Unknown(error))) => Outcome::Info {
                error,
                node,
                redirects,
            },
            None if in_doubt => Outcome::Info {
                error: "timeout".into(),
                node,
                redirects,
            },
            None => Outcome::Fail {
                error: "timeout before the command was sent".into(),
                node,
                redirects,
            },
        }
    }
}

/// Redirect-following client for one cluster. Share it between tasks with an `Arc`.
pub struct ClusterClient {
    config: ClientConfig,
    /// `ip:port` -> node name (`n1`), for the history's `node` field.
    names: HashMap<String, String>,
    /// Addresses to ask for the slot map.
    seeds: Vec<String>,
    /// slot -> `ip:port` of its primary, as last learned.
    slots: RwLock<Vec<Option<Arc<str>>>>,
    pool: Pool,
    /// Set when a connection broke: the slot map may be out of date.
    stale: AtomicBool,
    last_refresh: Mutex<Option<Instant>>,
}

/// Why the slot map could not be learned.
#[derive(Debug, thiserror::Error)]
#[error("no node answered CLUSTER SLOTS ({0})")]
pub struct RefreshError(String);

impl ClusterClient {
    /// A client for the cluster whose nodes are `nodes` (`(name, "ip:port")`). Call
    /// [`ClusterClient::refresh_slots`] before the first command.
    pub fn new(config: ClientConfig, nodes: &[(String, String)]) -> ClusterClient {
        ClusterClient {
            config,
            names: nodes
                .iter()
                .map(|(name, addr)| (addr.clone(), name.clone()))
                .collect(),
            seeds: nodes.iter().map(|(_, addr)| addr.clone()).collect(),
            slots: RwLock::new(vec![None; usize::from(SLOTS)]),
            pool: Pool::default(),
            stale: AtomicBool::new(false),
            last_refresh: Mutex::new(None),
        }
    }

    /// The client's configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The node name for an address, or the address itself for a node we were not told of.
    pub fn name_of(&self, addr: &str) -> String {
        self.names
            .get(addr)
            .cloned()
            .unwrap_or_else(|| addr.to_string())
    }

    /// Learns the whole slot map from the first node that answers `CLUSTER SLOTS`.
    ///
    /// # Errors
    /// If no node answers with a usable map.
    pub async fn refresh_slots(&self) -> Result<(), RefreshError> {
        *self.last_refresh.lock().unwrap() = Some(Instant::now());
        let mut errors = Vec::new();
        for addr in &self.seeds {
            let reply = ask::<Value>(
                self.config.op_timeout,
                self.connection(addr),
                redis::cmd("CLUSTER").arg("SLOTS"),
            )
            .await;
            match reply.and_then(|v| parse_cluster_slots(&v, addr)) {
                Ok(map) => {
                    *self.slots.write().unwrap() = map;
                    self.stale.store(false, Ordering::Relaxed);
                    return Ok(());
                }
                Err(e) => errors.push(format!("{addr}: {e}")),
            }
        }
        Err(RefreshError(errors.join("; ")))
    }

    /// Sends `cmd`, which touches `key`, to the node that owns the key's slot, following
    /// redirects, within the op time-out.
    pub async fn execute(&self, key: &[u8], cmd: &Cmd) -> Outcome {
        self.execute_routed(key, cmd, Route::default()).await
    }

    /// As [`ClusterClient::execute`], along `route`: on a session's own connections
    /// (opened anew with `fresh`), starting at `route.start`'s node rather than the
    /// slot's owner as last learned (its MOVED is followed and recorded like any other).
    pub async fn execute_routed(&self, key: &[u8], cmd: &Cmd, route: Route) -> Outcome {
        if self.stale.load(Ordering::Relaxed) {
            self.maybe_refresh().await;
        }
        if let (Some(id), true) = (route.session, route.fresh) {
            self.pool.forget_suffix(&session_suffix(id));
        }
        let mut trace = Trace::default();
        let result = tokio::time::timeout(
            self.config.op_timeout,
            self.run(key, cmd, &mut trace, route),
        )
        .await;
        trace.outcome(result.ok())
    }

    /// Sends every `(key, cmd)` of `ops` as [`ClusterClient::execute`] would, but the
    /// commands for one node go as one pipeline: one write, one wait for all their
    /// replies. A command answered with a redirect or a retry goes on alone from there,
    /// exactly as `execute` would have gone on. Everything happens within one op time-out
    /// from now. Outcomes come back in `ops`' order.
    pub async fn execute_batch(&self, ops: &[(&[u8], &Cmd)]) -> Vec<Outcome> {
        if self.stale.load(Ordering::Relaxed) {
            self.maybe_refresh().await;
        }
        let deadline = tokio::time::Instant::now() + self.config.op_timeout;
        let slots: Vec<u16> = ops.iter().map(|(key, _)| key_slot(key)).collect();
        let mut groups: Vec<(Arc<str>, Vec<usize>)> = Vec::new();
        for (i, &slot) in slots.iter().enumerate() {
            let owner = self.owner(slot);
            match groups.iter_mut().find(|(addr, _)| *addr == owner) {
                Some((_, items)) => items.push(i),
                None => groups.push((owner, vec![i])),
            }
        }
        let sent = groups.into_iter().map(|(target, items)| {
            let slots = &slots;
            async move {
                self.pipeline_to(&target, &items, ops, slots, deadline)
                    .await
            }
        });
        let mut outcomes: Vec<Option<Outcome>> = ops.iter().map(|_| None).collect();
        for group in futures_util::future::join_all(sent).await {
            for (i, outcome) in group {
                outcomes[i] = Some(outcome);
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.expect("every op of a batch is in one group"))
            .collect()
    }

    /// One node's share of a batch: `items` (indexes into `ops` and `slots`) sent to
    /// `target` as one pipeline, each reply then treated as `execute` would treat it.
    async fn pipeline_to(
        &self,
        target: &str,
        items: &[usize],
        ops: &[(&[u8], &Cmd)],
        slots: &[u16],
        deadline: tokio::time::Instant,
    ) -> Vec<(usize, Outcome)> {
        let name = self.name_of(target);
        let trace = |in_doubt| Trace {
            node: Some(name.clone()),
            in_doubt,
            ..Trace::default()
        };
        let all = |in_doubt, result: &dyn Fn() -> Option<Result<Value, Failure>>| {
            items
                .iter()
                .map(|&i| (i, trace(in_doubt).outcome(result())))
                .collect::<Vec<_>>()
        };
        let (generation, mut conn) =
            match tokio::time::timeout_at(deadline, self.connection(target)).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    self.stale.store(true, Ordering::Relaxed);
                    let error = format!("connect {target}: {e}");
                    return all(false, &|| Some(Err(Failure::Certain(error.clone()))));
                }
                Err(_) => return all(false, &|| None),
            };
        let mut pipe = redis::pipe();
        for &i in items {
            pipe.add_command(ops[i].1.clone());
        }
        let replies =
            tokio::time::timeout_at(deadline, conn.send_packed_commands(&pipe, 0, items.len()))
                .await;
        let replies = match replies {
            Ok(Ok(replies)) if replies.len() == items.len() => replies,
            Ok(Ok(replies)) => {
                let error = format!(
                    "{} replies to a pipeline of {} commands",
                    replies.len(),
                    items.len()
                );
                return all(true, &|| Some(Err(Failure::Unknown(error.clone()))));
            }
            Ok(Err(e)) => {
                self.pool.drop_connection(target, generation);
                self.stale.store(true, Ordering::Relaxed);
                let error = error_text(&e);
                return all(true, &|| Some(Err(Failure::Unknown(error.clone()))));
            }
            Err(_) => return all(true, &|| None),
        };
        // Plain replies are settled here; only the ones that must go on (a redirect, a
        // retry) become futures: one per reply cost an allocation and a copy of the whole
        // redirect loop's state for every op of the batch.
        let mut settled = Vec::with_capacity(items.len());
        let mut errors = Vec::new();
        for (&i, reply) in items.iter().zip(replies) {
            match reply {
                Value::ServerError(e) => errors.push((i, RedisError::from(e))),
                value => settled.push((i, trace(true).outcome(Some(Ok(value))))),
            }
        }
        if errors.is_empty() {
            return settled;
        }
        let onward = errors.into_iter().map(|(i, err)| {
            let mut trace = trace(true);
            async move {
                let (slot, cmd) = (slots[i], ops[i].1);
                let result = tokio::time::timeout_at(deadline, async {
                    let mut backoff = self.config.retry_backoff;
                    let from = (target.to_string(), false);
                    let (to, asking) = self
                        .next_hop(
                            &err,
                            slot,
                            from,
                            &mut trace,
                            &mut backoff,
                            (target, generation),
                        )
                        .await?;
                    let route = Route::default();
                    self.run_from(slot, cmd, &mut trace, route, to, asking, &mut backoff)
                        .await
                })
                .await;
                (i, trace.outcome(result.ok()))
            }
        });
        settled.extend(futures_util::future::join_all(onward).await);
        settled
    }

    async fn run(
        &self,
        key: &[u8],
        cmd: &Cmd,
        trace: &mut Trace,
        route: Route,
    ) -> Result<Value, Failure> {
        let slot = key_slot(key);
        let target = match route.start {
            Some(i) => self.seeds[i % self.seeds.len()].clone(),
            None => self.owner(slot).to_string(),
        };
        let mut backoff = self.config.retry_backoff;
        self.run_from(slot, cmd, trace, route, target, false, &mut backoff)
            .await
    }

    /// The redirect-following loop of one command for `slot`, from `target` (with
    /// `ASKING` first if `asking`).
    #[allow(clippy::too_many_arguments)]
    async fn run_from(
        &self,
        slot: u16,
        cmd: &Cmd,
        trace: &mut Trace,
        route: Route,
        mut target: String,
        mut asking: bool,
        backoff: &mut Duration,
    ) -> Result<Value, Failure> {
        loop {
            if trace.redirects.len() > self.config.max_redirects {
                return Err(Failure::Unknown("redirect limit".into()));
            }
            trace.node = Some(self.name_of(&target));
            let conn_key = route.conn_key(&target);
            let (generation, mut conn) = match self.connection_keyed(&conn_key, &target).await {
                Ok(c) => c,
                Err(e) => {
                    self.stale.store(true, Ordering::Relaxed);
                    return Err(Failure::Certain(format!("connect {target}: {e}")));
                }
            };
            trace.in_doubt = true;
            let reply = if asking {
                let mut pipe = redis::pipe();
                pipe.cmd("ASKING").add_command(cmd.clone());
                conn.send_packed_commands(&pipe, 0, 2)
                    .await
                    .and_then(|mut replies| match replies.pop() {
                        Some(Value::ServerError(e)) => Err(e.into()),
                        Some(v) => Ok(v),
                        None => Ok(Value::Nil),
                    })
            } else {
                cmd.query_async::<Value>(&mut conn).await
            };
            let err = match reply {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            (target, asking) = self
                .next_hop(
                    &err,
                    slot,
                    (target, asking),
                    trace,
                    backoff,
                    (&conn_key, generation),
                )
                .await?;
        }
    }

    /// What an error reply from `from` (asked with `ASKING` first if `asking`; on the
    /// pool's connection `conn`: key and generation) means for a command for `slot`: the
    /// next node to ask (and whether with `ASKING`), after any back-off, or the op's end.
    /// Every hop goes into `trace`.
    async fn next_hop(
        &self,
        err: &RedisError,
        slot: u16,
        (from, asking): (String, bool),
        trace: &mut Trace,
        backoff: &mut Duration,
        conn: (&str, u64),
    ) -> Result<(String, bool), Failure> {
        match Class::of(err) {
            Class::Redirect { kind, slot: s, to } => {
                trace.in_doubt = false;
                if kind == "MOVED" {
                    if let Some(s) = s {
                        self.slots.write().unwrap()[usize::from(s)] = Some(to.as_str().into());
                    }
                }
                trace.redirects.push(Redirect {
                    kind: kind.into(),
                    slot: s,
                    from,
                    to: to.clone(),
                });
                Ok((to, kind == "ASK"))
            }
            Class::Retry { kind } => {
                trace.in_doubt = false;
                trace.redirects.push(Redirect {
                    kind: kind.into(),
                    slot: Some(slot),
                    from: from.clone(),
                    to: from.clone(),
                });
                tokio::time::sleep(*backoff).await;
                *backoff = (*backoff * 2).min(Duration::from_millis(200));
                if kind == "CLUSTERDOWN" {
                    self.stale.store(true, Ordering::Relaxed);
                }
                Ok((from, asking))
            }
            Class::Rejected => {
                trace.in_doubt = false;
                Err(Failure::Certain(error_text(err)))
            }
            Class::Broken => {
                self.pool.drop_connection(conn.0, conn.1);
                self.stale.store(true, Ordering::Relaxed);
                Err(Failure::Unknown(error_text(err)))
            }
        }
    }

    fn owner(&self, slot: u16) -> Arc<str> {
        if let Some(addr) = &self.slots.read().unwrap()[usize::from(slot)] {
            return addr.clone();
        }
        // No owner known: any node will redirect us to the right one.
        self.seeds[usize::from(slot) % self.seeds.len()]
            .as_str()
            .into()
    }

    async fn maybe_refresh(&self) {
        if refresh_due(&self.last_refresh) {
            let _ = self.refresh_slots().await;
        }
    }

    async fn connection(&self, addr: &str) -> Result<(u64, MultiplexedConnection), String> {
        self.connection_keyed(addr, addr).await
    }

    /// The connection to `addr` kept under pool key `key` (a session's, or the shared one).
    async fn connection_keyed(
        &self,
        key: &str,
        addr: &str,
    ) -> Result<(u64, MultiplexedConnection), String> {
        self.pool
            .get(key, || async {
                crate::query::connect(addr, self.config.connect_timeout, None)
                    .await
                    .map_err(|e| e.to_string())
            })
            .await
    }
}

impl Outcome {
    /// The history line that completes `invoke` with this outcome; on success its value is
    /// `ok_value` applied to the reply.
    pub fn completion(
        self,
        invoke: &faultline_history::Op,
        ok_value: impl FnOnce(&Value) -> serde_json::Value,
    ) -> faultline_history::Op {
        use faultline_history::OpType;
        let (kind, value, error, node, redirects) = match self {
            Outcome::Ok {
                value,
                node,
                redirects,
            } => (OpType::Ok, ok_value(&value), None, node, redirects),
            Outcome::Fail {
                error,
                node,
                redirects,
            } => (
                OpType::Fail,
                invoke.value.clone(),
                Some(error),
                node,
                redirects,
            ),
            Outcome::Info {
                error,
                node,
                redirects,
            } => (
                OpType::Info,
                invoke.value.clone(),
                Some(error),
                node,
                redirects,
            ),
        };
        let mut op = invoke.complete(kind);
        op.value = value;
        op.error = error;
        op.node = node;
        op.redirects = redirects;
        op
    }
}

pub(crate) enum Failure {
    /// The command surely did not take effect (an error reply, no connection).
    Certain(String),
    /// It may have (a broken connection after sending, the redirect limit).
    Unknown(String),
}

/// What an error reply tells the client to do.
enum Class {
    /// MOVED, ASK or Valkey's REDIRECT: go elsewhere.
    Redirect {
        kind: &'static str,
        slot: Option<u16>,
        to: String,
    },
    /// TRYAGAIN or CLUSTERDOWN: wait and ask the same node again.
    Retry { kind: &'static str },
    /// Any other error reply: the server refused, the command did not run.
    Rejected,
    /// No reply (connection lost, protocol error): outcome unknown.
    Broken,
}

impl Class {
    fn of(err: &RedisError) -> Class {
        let Some(code) = err.code() else {
            return Class::Broken;
        };
        let detail = err.detail().unwrap_or("");
        match code {
            "MOVED" | "ASK" => {
                let mut parts = detail.split_ascii_whitespace();
                let slot = parts.next().and_then(|s| s.parse().ok());
                match parts.next() {
                    Some(to) => Class::Redirect {
                        kind: if code == "MOVED" { "MOVED" } else { "ASK" },
                        slot,
                        to: to.to_string(),
                    },
                    None => Class::Rejected,
                }
            }
            "REDIRECT" => match detail.split_ascii_whitespace().next() {
                Some(to) => Class::Redirect {
                    kind: "REDIRECT",
                    slot: None,
                    to: to.to_string(),
                },
                None => Class::Rejected,
            },
            "TRYAGAIN" => Class::Retry { kind: "TRYAGAIN" },
            "CLUSTERDOWN" => Class::Retry {
                kind: "CLUSTERDOWN",
            },
            _ => Class::Rejected,
        }
    }
}

/// Turns a `CLUSTER SLOTS` reply into a slot -> `ip:port` table. An empty host means the
/// node that answered (`asked`).
fn parse_cluster_slots(reply: &Value, asked: &str) -> Result<Vec<Option<Arc<str>>>, String> {
    let Value::Array(ranges) = reply else {
        return Err(format!("unexpected CLUSTER SLOTS reply {reply:?}"));
    };
    let asked_host = asked.rsplit_once(':').map_or(asked, |(h, _)| h);
    let mut map = vec![None; usize::from(SLOTS)];
    for range in ranges {
        let Value::Array(parts) = range else {
            return Err("CLUSTER SLOTS entry is not an array".into());
        };
        let (Some(Value::Int(first)), Some(Value::Int(last)), Some(Value::Array(primary))) =
            (parts.first(), parts.get(1), parts.get(2))
        else {
            return Err(format!("malformed CLUSTER SLOTS entry {parts:?}"));
        };
        let host = match primary.first() {
            Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(Value::SimpleString(s)) => s.clone(),
            _ => String::new(),
        };
        let host = if host.is_empty() || host == "?" {
            asked_host.to_string()
        } else {
            host
        };
        let Some(Value::Int(port)) = primary.get(1) else {
            return Err("CLUSTER SLOTS entry without a port".into());
        };
        let addr: Arc<str> = format!("{host}:{port}").into();
        let (first, last) = (*first as usize, *last as usize);
        if first > last || last >= usize::from(SLOTS) {
            return Err(format!("bad slot range {first}-{last}"));
        }
        for s in &mut map[first..=last] {
            *s = Some(addr.clone());
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn cluster_slots_reply_becomes_a_map() {
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                Value::Array(vec![bulk("10.0.0.1"), Value::Int(6379), bulk("id1")]),
            ]),
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(16383),
                Value::Array(vec![bulk(""), Value::Int(6379), bulk("id2")]),
            ]),
        ]);
        let map = parse_cluster_slots(&reply, "10.0.0.2:6379").unwrap();
        assert_eq!(map[0].as_deref(), Some("10.0.0.1:6379"));
        assert_eq!(map[5460].as_deref(), Some("10.0.0.1:6379"));
        assert_eq!(map[5461].as_deref(), Some("10.0.0.2:6379"));
        assert_eq!(map[16383].as_deref(), Some("10.0.0.2:6379"));
    }
}
