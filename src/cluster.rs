//! Forming a cluster and waiting until every node agrees about it.
//!
//! Formation is done by hand, the way `redis-cli --cluster create` does it, so that every
//! step is ours to observe and (in later faults) to interfere with: distinct config epochs,
//! ADDSLOTSRANGE, MEET, REPLICATE, and a second MEET that spreads the result (see
//! [`Admin::form`]). "Agreed" means every node answers, reports
//! `cluster_state:ok`, lists every node with no handshake or failure flag, and shows the
//! same slot map and the same primary/replica relation; replicas report their link to the
//! primary up.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use faultline_history::ClusterView;
use faultline_workloads::query;
use redis::aio::MultiplexedConnection;
use tokio::time::Instant;

use crate::backend::{Backend, NodeSpec};

/// How long one admin command may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How often agreement is polled.
const POLL: Duration = Duration::from_millis(100);

/// The intended shape: which node is primary for which slots, who replicates whom.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Node indices of primaries with their slot range.
    pub primaries: Vec<(usize, (u16, u16))>,
    /// `(replica, primary)` node indices.
    pub replicas: Vec<(usize, usize)>,
}

impl Layout {
    /// Nodes `0..p` are primaries with equal slot ranges; then replicas round by round:
    /// node `p + r*p + i` replicates primary `i` (3x1: n4->n1, n5->n2, n6->n3).
    pub fn new(primaries: usize, replicas_per_primary: usize) -> Layout {
        let primaries_list = (0..primaries)
            .map(|i| {
                let first = i * 16384 / primaries;
                let last = (i + 1) * 16384 / primaries - 1;
                (i, (first as u16, last as u16))
            })
            .collect();
        let replicas = (0..replicas_per_primary)
            .flat_map(|r| (0..primaries).map(move |i| (primaries + r * primaries + i, i)))
            .collect();
        Layout {
            primaries: primaries_list,
            replicas,
        }
    }
}

/// Starts every node of `backend` and forms the cluster `layout` describes, until every
/// node agrees (see [`Admin::form`]). Returns the admin connections, ready for later
/// agreement checks.
///
/// # Errors
/// A server that cannot start or dies, or no agreement by `deadline`.
pub async fn start_and_form(
    backend: &mut dyn Backend,
    layout: &Layout,
    deadline: Instant,
) -> Result<Admin> {
    crate::backend::start_all(backend)?;
    let bus_ports = (0..backend.nodes().len())
        .map(|i| backend.announced_bus_port(i))
        .collect();
    let mut admin = Admin::new(backend.nodes()).with_bus_ports(bus_ports);
    admin.wait_up(backend, deadline).await?;
    admin
        .form(layout, deadline)
        .await
        .context("forming the cluster")?;
    Ok(admin)
}

/// One request to a node: a command or a pipeline.
#[derive(Clone, Copy)]
enum Req<'a> {
    Cmd(&'a redis::Cmd),
    Pipe(&'a redis::Pipeline),
}

/// Admin connections to every node, and the node ids once known.
pub struct Admin {
    nodes: Vec<NodeSpec>,
    conns: Vec<Option<MultiplexedConnection>>,
    /// Node id -> node name, filled in by [`Admin::learn_ids`].
    names: HashMap<String, String>,
    ids: Vec<String>,
    /// Bus ports the nodes announce, where not client port + 10000 (bus proxy).
    bus_ports: Vec<Option<u16>>,
}

impl Admin {
    /// An admin for these nodes; connections open lazily.
    pub fn new(nodes: &[NodeSpec]) -> Admin {
        Admin {
            nodes: nodes.to_vec(),
            conns: vec![None; nodes.len()],
            names: HashMap::new(),
            ids: Vec::new(),
            bus_ports: vec![None; nodes.len()],
        }
    }

    /// The same admin, meeting nodes at these announced bus ports (`None`: client port
    /// + 10000) with `CLUSTER MEET ip port bus-port`.
    pub fn with_bus_ports(mut self, ports: Vec<Option<u16>>) -> Admin {
        self.bus_ports = ports;
        self.bus_ports.resize(self.nodes.len(), None);
        self
    }

    /// Sends one command to node `i`, reconnecting if needed.
    ///
    /// # Errors
    /// Connection failure, time-out or an error reply, naming the node.
    pub async fn cmd<T: redis::FromRedisValue>(&mut self, i: usize, cmd: &redis::Cmd) -> Result<T> {
        let mut conn = self.conn(i).await?;
        let reply = cmd.query_async::<T>(&mut conn).await;
        self.checked(i, reply)
    }

    /// Sends a pipeline to node `i` in one round trip, reconnecting if needed.
    ///
    /// # Errors
    /// As [`Admin::cmd`]; an error reply to any command in it fails the whole.
    pub async fn pipe<T: redis::FromRedisValue>(
        &mut self,
        i: usize,
        pipe: &redis::Pipeline,
    ) -> Result<T> {
        let mut conn = self.conn(i).await?;
        let reply = pipe.query_async::<T>(&mut conn).await;
        self.checked(i, reply)
    }

    /// Node `i`'s connection, made if there is none.
    async fn conn(&mut self, i: usize) -> Result<redis::aio::MultiplexedConnection> {
        if let Some(c) = &self.conns[i] {
            return Ok(c.clone());
        }
        let node = &self.nodes[i];
        let c = query::connect(&node.addr(), ADMIN_TIMEOUT, Some(ADMIN_TIMEOUT))
            .await
            .with_context(|| format!("connecting to {} ({})", node.name, node.addr()))?;
        self.conns[i] = Some(c.clone());
        Ok(c)
    }

    /// A reply from node `i`, named; a broken connection is dropped so the next command
    /// reconnects.
    fn checked<T>(&mut self, i: usize, reply: redis::RedisResult<T>) -> Result<T> {
        reply.map_err(|e| {
            if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
                self.conns[i] = None;
            }
            let node = &self.nodes[i];
            anyhow!("{} ({}): {e}", node.name, node.addr())
        })
    }

    /// Waits until every node answers PING; a node whose process exits is an error that
    /// quotes its log.
    ///
    /// # Errors
    /// A node exited, or did not answer before `deadline`.
    pub async fn wait_up(&mut self, backend: &mut dyn Backend, deadline: Instant) -> Result<()> {
        for i in 0..self.nodes.len() {
            loop {
                if let Some(exit) = backend.exited() {
                    bail!("server process died while starting: {exit}");
                }
                match self.cmd::<String>(i, &redis::cmd("PING")).await {
                    Ok(_) => break,
                    Err(e) if Instant::now() >= deadline => {
                        return Err(e.context(format!("{} never answered PING", self.nodes[i].name)))
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }
        Ok(())
    }

    /// Asks every node its id.
    ///
    /// # Errors
    /// A node that does not answer.
    pub async fn learn_ids(&mut self) -> Result<()> {
        let mut ids = Vec::new();
        for i in 0..self.nodes.len() {
            let id: String = self.cmd(i, redis::cmd("CLUSTER").arg("MYID")).await?;
            self.names.insert(id.clone(), self.nodes[i].name.clone());
            ids.push(id);
        }
        self.ids = ids;
        Ok(())
    }

    /// Forms the cluster described by `layout` and waits until it agrees.
    ///
    /// The cluster bus carries a node's slots and role in the header of every packet, but
    /// a node takes them from a packet only once it knows the sender by id: the packets of
    /// a first handshake teach it nothing but the id, and a later change otherwise spreads
    /// with the next periodic ping (a random peer a second, every peer only after half the
    /// node time-out). So, after the distinct config epochs and the slots, every pair
    /// meets; once every node knows every other by id and the replicas have REPLICATEd,
    /// every node meets every other once more, and that MEET hands the receiver the
    /// sender's slots and role at once.
    ///
    /// # Errors
    /// A step that fails, or no agreement by `deadline` (naming the node that disagrees).
    pub async fn form(&mut self, layout: &Layout, deadline: Instant) -> Result<()> {
        self.learn_ids().await?;
        // Distinct config epochs up front, as redis-cli does, so no epoch collision has to
        // be resolved while the cluster settles (a node takes one only while alone).
        for (k, &(p, _)) in layout.primaries.iter().enumerate() {
            let _: Result<String> = self
                .cmd(p, redis::cmd("CLUSTER").arg("SET-CONFIG-EPOCH").arg(k + 1))
                .await;
        }
        for &(p, (a, b)) in &layout.primaries {
            let _: String = self
                .cmd(p, redis::cmd("CLUSTER").arg("ADDSLOTSRANGE").arg(a).arg(b))
                .await?;
        }
        // Every pair meets directly rather than waiting for gossip to spread the news,
        // each node's MEETs as one pipeline: one round trip per node, not per pair (4,950
        // pairs at 100 nodes).
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        for i in 1..all.len() {
            self.meet(i, &all[..i], deadline).await?;
        }
        self.wait_acquainted(deadline).await?;
        tracing::debug!("formation: every node knows every other");
        for &(r, p) in &layout.replicas {
            let primary_id = self.ids[p].clone();
            let _: String = self
                .query_until(
                    r,
                    Req::Cmd(redis::cmd("CLUSTER").arg("REPLICATE").arg(&primary_id)),
                    deadline,
                    "replicating",
                )
                .await
                .with_context(|| {
                    format!(
                        "{} could not become a replica of {}",
                        self.nodes[r].name, self.nodes[p].name
                    )
                })?;
        }
        for i in 0..all.len() {
            let others: Vec<usize> = all.iter().copied().filter(|&j| j != i).collect();
            self.meet(i, &others, deadline).await?;
        }
        tracing::debug!("formation: replicas attached and announced, waiting for agreement");
        self.wait_agreed(Some(layout), deadline).await
    }

    /// Polls until every node knows every other by id (no handshake left), the condition
    /// for REPLICATE and for a MEET to carry news.
    ///
    /// # Errors
    /// At `deadline`, the node that still misses one, and what it knows.
    async fn wait_acquainted(&mut self, deadline: Instant) -> Result<()> {
        let mut i = 0;
        while i < self.nodes.len() {
            let text: String = self
                .query_until(
                    i,
                    Req::Cmd(redis::cmd("CLUSTER").arg("NODES")),
                    deadline,
                    "asking",
                )
                .await?;
            let view = ClusterView::parse(&text)
                .with_context(|| format!("{}'s CLUSTER NODES", self.nodes[i].name))?;
            let missing = self
                .ids
                .iter()
                .position(|id| view.node(id).is_none_or(|line| line.is_unsettled()));
            match missing {
                None => i += 1,
                Some(j) if Instant::now() >= deadline => bail!(
                    "{} does not know {} yet: {}",
                    self.nodes[i].name,
                    self.nodes[j].name,
                    self.describe(&view)
                ),
                Some(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
        Ok(())
    }

    /// Node `i` meets each of `peers` (`CLUSTER MEET`), in one pipeline.
    ///
    /// # Errors
    /// No reply by `deadline` (MEET is idempotent, so a stalled reply is sent again).
    async fn meet(&mut self, i: usize, peers: &[usize], deadline: Instant) -> Result<()> {
        if peers.is_empty() {
            return Ok(());
        }
        let mut meets = redis::pipe();
        for &j in peers {
            let peer = &self.nodes[j];
            let meet = meets
                .cmd("CLUSTER")
                .arg("MEET")
                .arg(peer.ip.to_string())
                .arg(peer.port);
            if let Some(bus) = self.bus_ports[j] {
                meet.arg(bus);
            }
            meets.ignore();
        }
        self.query_until(i, Req::Pipe(&meets), deadline, "meeting")
            .await
    }

    /// Sends `req` to node `i`, and again whenever it fails or its reply stalls past the
    /// admin time-out (a hundred servers on two loaded cores can stall one), until
    /// `deadline`. Only for requests that may be repeated (MEET, REPLICATE, queries).
    ///
    /// # Errors
    /// The last failure, once `deadline` has passed.
    async fn query_until<T: redis::FromRedisValue>(
        &mut self,
        i: usize,
        req: Req<'_>,
        deadline: Instant,
        what: &str,
    ) -> Result<T> {
        loop {
            let reply = match req {
                Req::Cmd(cmd) => self.cmd(i, cmd).await,
                Req::Pipe(pipe) => self.pipe(i, pipe).await,
            };
            match reply {
                Ok(v) => return Ok(v),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(e) => {
                    tracing::debug!("formation: {e:#}; {what} again");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    /// Polls until every node agrees (and, with a layout, agrees on that layout).
    ///
    /// # Errors
    /// At `deadline`, the last disagreement seen, naming the node and what it sees.
    pub async fn wait_agreed(&mut self, layout: Option<&Layout>, deadline: Instant) -> Result<()> {
        loop {
            let problem = match self.disagreement(layout).await {
                None => return Ok(()),
                Some(p) => p,
            };
            if Instant::now() >= deadline {
                bail!("the cluster did not agree in time: {problem}");
            }
            tracing::debug!("not agreed yet: {problem}");
            tokio::time::sleep(POLL).await;
        }
    }

    /// Why the cluster does not agree right now, or `None` if it does.
    pub async fn disagreement(&mut self, layout: Option<&Layout>) -> Option<String> {
        let n = self.nodes.len();
        let mut views = Vec::with_capacity(n);
        for i in 0..n {
            let name = self.nodes[i].name.clone();
            let info: String = match self.cmd(i, redis::cmd("CLUSTER").arg("INFO")).await {
                Ok(v) => v,
                Err(e) => return Some(format!("{e:#}")),
            };
            if !info.lines().any(|l| l.trim() == "cluster_state:ok") {
                let state = info
                    .lines()
                    .find(|l| l.starts_with("cluster_state:"))
                    .unwrap_or("cluster_state:?")
                    .trim();
                let text: String = self
                    .cmd(i, redis::cmd("CLUSTER").arg("NODES"))
                    .await
                    .unwrap_or_default();
                let sees = ClusterView::parse(&text)
                    .map(|v| self.describe(&v))
                    .unwrap_or_default();
                return Some(format!("{name} reports {state}; it sees {sees}"));
            }
            let text: String = match self.cmd(i, redis::cmd("CLUSTER").arg("NODES")).await {
                Ok(v) => v,
                Err(e) => return Some(format!("{e:#}")),
            };
            let view = match ClusterView::parse(&text) {
                Ok(v) => v,
                Err(e) => return Some(format!("{name}: {e}")),
            };
            if view.nodes.len() != n {
                return Some(format!(
                    "{name} knows {} of {n} nodes: {}",
                    view.nodes.len(),
                    self.describe(&view)
                ));
            }
            if let Some(bad) = view
                .nodes
                .iter()
                .find(|l| l.is_unsettled() || l.is_failing())
            {
                return Some(format!(
                    "{name} flags {} as {}",
                    self.name(&bad.id),
                    bad.flags.join(",")
                ));
            }
            if let Some(me) = view.myself() {
                if me.is_replica() {
                    let repl: String = self
                        .cmd(i, redis::cmd("INFO").arg("replication"))
                        .await
                        .unwrap_or_default();
                    if !repl.lines().any(|l| l.trim() == "master_link_status:up") {
                        return Some(format!(
                            "{name} is a replica whose link to its primary is not up yet"
                        ));
                    }
                }
            }
            views.push((name, view));
        }
        let (first_name, first) = &views[0];
        let reference = summary(first);
        if first.unowned_slots() > 0 {
            return Some(format!(
                "{first_name} sees {} slots without a primary: {}",
                first.unowned_slots(),
                self.describe(first)
            ));
        }
        for (name, view) in &views[1..] {
            if summary(view) != reference {
                return Some(format!(
                    "{name} disagrees with {first_name}: {name} sees {}; {first_name} sees {}",
                    self.describe(view),
                    self.describe(first)
                ));
            }
        }
        if let Some(layout) = layout {
            for &(p, range) in &layout.primaries {
                let owner = first
                    .slot_ranges()
                    .into_iter()
                    .find(|(r, _)| r.0 <= range.0 && range.0 <= r.1)
                    .and_then(|(_, o)| o);
                if owner.as_deref() != Some(self.ids[p].as_str()) {
                    return Some(format!(
                        "slots {}-{} are not on {} yet: {}",
                        range.0,
                        range.1,
                        self.nodes[p].name,
                        self.describe(first)
                    ));
                }
            }
            for &(r, p) in &layout.replicas {
                let line = first.node(&self.ids[r]);
                if line.and_then(|l| l.primary_id.as_deref()) != Some(self.ids[p].as_str()) {
                    return Some(format!(
                        "{} is not yet a replica of {}: {}",
                        self.nodes[r].name,
                        self.nodes[p].name,
                        self.describe(first)
                    ));
                }
            }
        }
        None
    }

    fn name(&self, id: &str) -> String {
        self.names
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.chars().take(8).collect())
    }

    /// A view in a sentence: slot ranges with owners, then replicas and their primaries.
    pub fn describe(&self, view: &ClusterView) -> String {
        let ranges: Vec<String> = view
            .slot_ranges()
            .into_iter()
            .map(|((a, b), owner)| {
                let who = owner.map_or_else(|| "nobody".to_string(), |o| self.name(&o));
                format!("{a}-{b} {who}")
            })
            .collect();
        let replicas: Vec<String> = view
            .nodes
            .iter()
            .filter(|l| l.is_replica())
            .map(|l| {
                format!(
                    "{}->{}",
                    self.name(&l.id),
                    l.primary_id.as_deref().map_or("?".into(), |p| self.name(p))
                )
            })
            .collect();
        format!(
            "slots [{}] replicas [{}]",
            ranges.join(", "),
            replicas.join(", ")
        )
    }
}

/// The slot map, and each node id's role.
type Summary = (
    BTreeMap<(u16, u16), Option<String>>,
    BTreeMap<String, String>,
);

/// What all views must share: slot map and the role of every node.
fn summary(view: &ClusterView) -> Summary {
    let roles = view
        .nodes
        .iter()
        .map(|l| {
            let role = match (&l.primary_id, l.is_primary()) {
                (_, true) => "primary".to_string(),
                (Some(p), false) => format!("replica of {p}"),
                (None, false) => l.flags.join(","),
            };
            (l.id.clone(), role)
        })
        .collect();
    (view.slot_ranges(), roles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_3x1_pairs_n4_with_n1() {
        let l = Layout::new(3, 1);
        assert_eq!(
            l.primaries,
            vec![(0, (0, 5460)), (1, (5461, 10921)), (2, (10922, 16383))]
        );
        assert_eq!(l.replicas, vec![(3, 0), (4, 1), (5, 2)]);
    }

    #[test]
    fn layout_covers_every_slot_once() {
        for p in 1..=7 {
            let l = Layout::new(p, 2);
            let mut next = 0u32;
            for &(_, (a, b)) in &l.primaries {
                assert_eq!(u32::from(a), next);
                next = u32::from(b) + 1;
            }
            assert_eq!(next, 16384);
            assert_eq!(l.replicas.len(), 2 * p);
        }
    }
}
