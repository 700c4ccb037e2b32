//! A client for one primary with replicas (no cluster mode), that follows Valkey's
//! `-REDIRECT host:port` itself and reports every hop.
//!
//! Valkey 8+ answers a client that declared `CLIENT CAPA redirect` with `-REDIRECT` when it
//! sends a write (or a read without `READONLY`) to a replica, instead of `-READONLY`; during a
//! standalone `FAILOVER` the old primary does the same once it has become a replica. Seed 003
//! (valkey-io/valkey#821, fixed by #871 before 8.0.0) is such clients bounced between the old
//! and the new primary, so each hop is recorded in the op's `redirects` (kind `REDIRECT`, no
//! slot), with the same hop limit as the cluster client.
//!
//! Outcomes follow the cluster client: an error reply (`READONLY`, `LOADING`, ...) is
//! [`Outcome::Fail`]; a time-out or a broken connection after sending is [`Outcome::Info`].
//! After `READONLY` or a broken link the client asks every node `INFO replication` and goes
//! to the node that calls itself primary.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Instant;

use faultline_history::{Redirect, ReplicationInfo};
use redis::aio::MultiplexedConnection;
use redis::{Cmd, Value};

use crate::client::{ask, refresh_due, ClientConfig, Failure, Outcome, Trace};
use crate::key_client::{session_suffix, BoxFuture, KeyClient, Route};
use crate::pool::Pool;
use crate::query::error_text;

/// Redirect-following client for one standalone primary and its replicas. Share it
/// between tasks with an `Arc`.
pub struct StandaloneClient {
    config: ClientConfig,
    /// `(name, ip:port)` of every node, in name order.
    nodes: Vec<(String, String)>,
    /// `ip:port` -> name.
    names: HashMap<String, String>,
    /// The node believed primary.
    primary: RwLock<String>,
    /// Its replicas with their link up, as last learned: where reads may go.
    replicas: RwLock<Vec<String>>,
    /// Round-robin position over `replicas`.
    next_replica: AtomicUsize,
    pool: Pool,
    /// Set after READONLY or a broken link: the primary may have moved.
    stale: AtomicBool,
    last_refresh: Mutex<Option<Instant>>,
    /// Each node's answer to `CLIENT CAPA redirect` (`OK`, or the error), by name.
    capa: Mutex<BTreeMap<String, String>>,
}

impl StandaloneClient {
    /// A client for `nodes` (`(name, "ip:port")`), starting at `primary` (an address).
    pub fn new(config: ClientConfig, nodes: &[(String, String)], primary: &str) -> Self {
        StandaloneClient {
            config,
            nodes: nodes.to_vec(),
            names: nodes.iter().map(|(n, a)| (a.clone(), n.clone())).collect(),
            primary: RwLock::new(primary.to_string()),
            replicas: RwLock::new(Vec::new()),
            next_replica: AtomicUsize::new(0),
            pool: Pool::default(),
            stale: AtomicBool::new(false),
            last_refresh: Mutex::new(None),
            capa: Mutex::new(BTreeMap::new()),
        }
    }

    /// The node name for an address, or the address itself.
    pub fn name_of(&self, addr: &str) -> String {
        self.names
            .get(addr)
            .cloned()
            .unwrap_or_else(|| addr.to_string())
    }

    /// What each node answered to `CLIENT CAPA redirect` on the client's first connection
    /// to it: `OK`, or the error (a server without the capability refuses it, and the
    /// client goes on without: replicas then answer `-READONLY`).
    pub fn capa_replies(&self) -> BTreeMap<String, String> {
        self.capa.lock().unwrap().clone()
    }

    /// The node believed primary (`ip:port`).
    pub fn primary(&self) -> String {
        self.primary.read().unwrap().clone()
    }

    /// Asks every node `INFO replication` and believes the one that calls itself primary
    /// (the one with most connected replicas if several do); its replicas whose link is up
    /// become where [`StandaloneClient::execute_read`] reads. Returns its address.
    ///
    /// # Errors
    /// If no node calls itself primary.
    pub async fn find_primary(&self) -> Result<String, String> {
        *self.last_refresh.lock().unwrap() = Some(Instant::now());
        let mut best: Option<(usize, String)> = None;
        let mut seen = Vec::new();
        let mut infos: Vec<(String, ReplicationInfo)> = Vec::new();
        for (name, addr) in &self.nodes {
            let text = ask::<String>(
                self.config.op_timeout,
                self.connection(addr),
                redis::cmd("INFO").arg("replication"),
            )
            .await;
            match text {
                Ok(t) => {
                    let f = ReplicationInfo::parse(&t);
                    seen.push(format!("{name} {}", f.role().unwrap_or_default()));
                    if f.is_primary() {
                        let replicas = f.connected_replicas();
                        if best.as_ref().is_none_or(|(r, _)| replicas > *r) {
                            best = Some((replicas, addr.clone()));
                        }
                    }
                    infos.push((addr.clone(), f));
                }
                Err(e) => seen.push(format!("{name}: {e}")),
            }
        }
        match best {
            Some((_, addr)) => {
                let replicas = infos
                    .iter()
                    .filter(|(_, f)| f.link_up() && f.primary_addr().as_deref() == Some(&addr))
                    .map(|(a, _)| a.clone())
                    .collect();
                *self.replicas.write().unwrap() = replicas;
                *self.primary.write().unwrap() = addr.clone();
                self.stale.store(false, Ordering::Relaxed);
                Ok(addr)
            }
            None => Err(format!(
                "no node calls itself primary ({})",
                seen.join("; ")
            )),
        }
    }

    async fn maybe_refresh(&self) {
        if refresh_due(&self.last_refresh) {
            let _ = self.find_primary().await;
        }
    }

    /// Sends `cmd` to the believed primary, following `-REDIRECT`, within the op time-out.
    pub async fn execute(&self, cmd: &Cmd) -> Outcome {
        self.execute_at(cmd, None, Route::default()).await
    }

    /// As [`StandaloneClient::execute`], along `route`: on a session's own connections
    /// (each declaring `CLIENT CAPA redirect`; opened anew with `fresh`), starting at
    /// `route.start`'s node rather than the believed primary (a replica's `-REDIRECT` is
    /// followed and recorded like any other).
    pub async fn execute_routed(&self, cmd: &Cmd, route: Route) -> Outcome {
        self.execute_at(cmd, None, route).await
    }

    /// Sends a read-only `cmd` to one of the primary's replicas, round robin, on a
    /// connection that declared `READONLY` (with `CLIENT CAPA redirect`, Valkey serves
    /// reads there instead of redirecting them); to the primary when no replica is known.
    /// A replica's answer may be stale: asynchronous replication.
    pub async fn execute_read(&self, cmd: &Cmd) -> Outcome {
        if self.stale.load(Ordering::Relaxed) {
            self.maybe_refresh().await;
        }
        let replica = {
            let replicas = self.replicas.read().unwrap();
            (!replicas.is_empty()).then(|| {
                let i = self.next_replica.fetch_add(1, Ordering::Relaxed);
                replicas[i % replicas.len()].clone()
            })
        };
        self.execute_at(cmd, replica, Route::default()).await
    }

    /// One op: at `replica` (read-only) or at the believed primary (or `route.start`).
    async fn execute_at(&self, cmd: &Cmd, replica: Option<String>, route: Route) -> Outcome {
        if self.stale.load(Ordering::Relaxed) {
            self.maybe_refresh().await;
        }
        if let (Some(id), true) = (route.session, route.fresh) {
            self.pool.forget_suffix(&session_suffix(id));
        }
        let mut trace = Trace::default();
        let result = tokio::time::timeout(
            self.config.op_timeout,
            self.run(cmd, &mut trace, replica, route),
        )
        .await;
        if result.is_err() && trace.in_doubt {
            self.stale.store(true, Ordering::Relaxed);
        }
        trace.outcome(result.ok())
    }

    async fn run(
        &self,
        cmd: &Cmd,
        trace: &mut Trace,
        replica: Option<String>,
        route: Route,
    ) -> Result<Value, Failure> {
        let readonly = replica.is_some();
        let mut target = match (replica, route.start) {
            (Some(r), _) => r,
            (None, Some(i)) => self.nodes[i % self.nodes.len()].1.clone(),
            (None, None) => self.primary(),
        };
        loop {
            if trace.redirects.len() > self.config.max_redirects {
                return Err(Failure::Unknown("redirect limit".into()));
            }
            trace.node = Some(self.name_of(&target));
            let key = route.conn_key(&conn_key(&target, readonly));
            let (generation, mut conn) = match self.connection_keyed(&key, &target, readonly).await
            {
                Ok(c) => c,
                Err(e) => {
                    self.stale.store(true, Ordering::Relaxed);
                    return Err(Failure::Certain(format!("connect {target}: {e}")));
                }
            };
            trace.in_doubt = true;
            let err = match cmd.query_async::<Value>(&mut conn).await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            match err.code() {
                Some("REDIRECT") => {
                    trace.in_doubt = false;
                    let Some(to) = err.detail().and_then(|d| d.split_whitespace().next()) else {
                        return Err(Failure::Certain(error_text(&err)));
                    };
                    let to = to.to_string();
                    trace.redirects.push(Redirect {
                        kind: "REDIRECT".into(),
                        slot: None,
                        from: target.clone(),
                        to: to.clone(),
                    });
                    *self.primary.write().unwrap() = to.clone();
                    target = to;
                }
                Some(code) => {
                    trace.in_doubt = false;
                    if code == "READONLY" || code == "MASTERDOWN" {
                        self.stale.store(true, Ordering::Relaxed);
                    }
                    return Err(Failure::Certain(error_text(&err)));
                }
                None => {
                    self.drop_connection(&key, generation);
                    self.stale.store(true, Ordering::Relaxed);
                    return Err(Failure::Unknown(error_text(&err)));
                }
            }
        }
    }

    /// The node's connection, opened (with `CLIENT CAPA redirect`) if there is none.
    async fn connection(&self, addr: &str) -> Result<(u64, MultiplexedConnection), String> {
        self.connection_for(addr, false).await
    }

    /// The node's connection for writes, or for reads on a replica (`readonly`: it also
    /// declared `READONLY`).
    async fn connection_for(
        &self,
        addr: &str,
        readonly: bool,
    ) -> Result<(u64, MultiplexedConnection), String> {
        self.connection_keyed(&conn_key(addr, readonly), addr, readonly)
            .await
    }

    /// The connection to `addr` kept under pool key `key` (a session's, or a shared one).
    async fn connection_keyed(
        &self,
        key: &str,
        addr: &str,
        readonly: bool,
    ) -> Result<(u64, MultiplexedConnection), String> {
        self.pool.get(key, || self.open(addr, readonly)).await
    }

    /// A new connection to `addr` that declared `CLIENT CAPA redirect` (and `READONLY`
    /// when `readonly`).
    async fn open(&self, addr: &str, readonly: bool) -> Result<MultiplexedConnection, String> {
        let mut conn = crate::query::connect(addr, self.config.connect_timeout, None)
            .await
            .map_err(|e| e.to_string())?;
        // Capabilities belong to the connection: declare it on every new one.
        let capa = tokio::time::timeout(
            self.config.connect_timeout,
            redis::cmd("CLIENT")
                .arg("CAPA")
                .arg("redirect")
                .query_async::<String>(&mut conn),
        )
        .await;
        let answer = match capa {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) if e.code().is_some() => error_text(&e),
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("CLIENT CAPA redirect: timed out".into()),
        };
        if readonly && answer == "OK" {
            // Refused (a server without the capability): reads are then redirected, or
            // answered READONLY, and the op says so.
            let _ = tokio::time::timeout(
                self.config.connect_timeout,
                redis::cmd("READONLY").query_async::<String>(&mut conn),
            )
            .await;
        }
        self.capa
            .lock()
            .unwrap()
            .entry(self.name_of(addr))
            .or_insert(answer);
        Ok(conn)
    }

    fn drop_connection(&self, key: &str, generation: u64) {
        self.pool.drop_connection(key, generation);
    }
}

impl KeyClient for StandaloneClient {
    fn execute<'a>(&'a self, _key: &'a [u8], cmd: &'a Cmd) -> BoxFuture<'a, Outcome> {
        Box::pin(StandaloneClient::execute(self, cmd))
    }

    fn execute_routed<'a>(
        &'a self,
        _key: &'a [u8],
        cmd: &'a Cmd,
        route: Route,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(StandaloneClient::execute_routed(self, cmd, route))
    }
}

/// Connections for reads on replicas (`READONLY`) are kept apart from the others.
fn conn_key(addr: &str, readonly: bool) -> String {
    if readonly {
        format!("readonly {addr}")
    } else {
        addr.to_string()
    }
}
