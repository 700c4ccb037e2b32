//! [`BusProxy`]: the listeners, the rules in force, what is held, and the handle faults and
//! tests use.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::conn;
use super::held::{HeldBook, HeldMessage, Released};
use super::netns;
use super::rule::{Rule, RuleId, RuleSet};
use super::stats::{Recorder, Stats};

/// One node as the proxy sees it: where its listener goes and where it forwards to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyNode {
    /// `n1`, `n2`, ...
    pub name: String,
    /// The node's address: the proxy listens there, and connections from it are its own.
    pub ip: Ipv4Addr,
    /// Client port: identifies the sender when several nodes share an address (loopback),
    /// from the `port` field of the first message it sends.
    pub port: u16,
    /// The port the node's cluster bus really listens on (client port + 10000).
    pub bus_port: u16,
    /// The port the node announces as its bus port (`cluster-announce-bus-port`), where
    /// the proxy listens for it.
    pub proxy_port: u16,
    /// The node's network namespace (`/run/netns/fl-<id>-n2`): the listener and the
    /// onward connections are made inside it. `None`: the caller's own (loopback).
    pub netns: Option<PathBuf>,
}

/// The proxy's shared state; connections hold this, not the owner.
pub(crate) struct Core {
    pub(crate) nodes: Vec<ProxyNode>,
    pub(crate) rules: Mutex<RuleSet>,
    pub(crate) held: Mutex<HeldBook>,
    /// Bumped whenever a message starts being held, for [`BusProxy::wait_held`].
    pub(crate) held_changed: watch::Sender<u64>,
    pub(crate) stats: Mutex<Recorder>,
    /// Open connections, so a heal can close those that lost messages.
    pub(crate) conns: Mutex<BTreeMap<u64, ConnEntry>>,
    pub(crate) next_conn: AtomicU64,
    pub(crate) next_msg: AtomicU64,
    /// How long to wait for a node's real bus port to accept the onward connection.
    pub(crate) connect_timeout: Duration,
}

/// One open connection, as the proxy's handle sees it.
pub(crate) struct ConnEntry {
    /// Closes the connection.
    pub(crate) close: CancellationToken,
    /// Drop rules that dropped a message on it.
    pub(crate) dropped_by: BTreeSet<RuleId>,
}

/// What removing a rule did.
#[derive(Debug, Clone, PartialEq)]
pub struct Removed {
    /// The rule.
    pub rule: Rule,
    /// Messages it was holding back, now on their way (in order).
    pub released: usize,
    /// Connections closed because the rule had dropped messages on them.
    pub connections_reset: usize,
}

/// Locks a mutex; a panic elsewhere does not make the proxy unusable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Owner {
    core: Arc<Core>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    addrs: Vec<SocketAddr>,
}

impl Drop for Owner {
    /// The last handle gone: stop accepting and close every connection.
    fn drop(&mut self) {
        self.shutdown.cancel();
        lock(&RUNNING).retain(|_, w| w.strong_count() > 0);
    }
}

/// Proxies of running runs, by run id, for faults to find (they are built from the
/// scenario alone, see [`crate::fault::build`]).
static RUNNING: Mutex<BTreeMap<String, Weak<Owner>>> = Mutex::new(BTreeMap::new());

/// A cluster bus proxy for a set of nodes. Cheap to clone; every clone is the same proxy,
/// which stops when [`BusProxy::shutdown`] is called or the last clone is dropped.
///
/// Each node announces [`ProxyNode::proxy_port`] as its bus port, so every node that
/// connects to it reaches the proxy's listener on the node's own address (inside the
/// node's namespace), and the proxy carries the connection on to the node's real bus
/// port. The proxy frames the messages both ways ([`super::frame`]), knows each one's
/// sender, receiver and connection ([`super::Link`]), and applies the rules in force
/// ([`super::rule`]). With no rules it only forwards.
#[derive(Clone)]
pub struct BusProxy {
    owner: Arc<Owner>,
}

impl BusProxy {
    /// Binds a listener for every node and starts accepting. Must run inside a tokio
    /// runtime (multi-threaded or not).
    ///
    /// # Errors
    /// A namespace that cannot be entered or an address that cannot be bound (the node's
    /// address must exist in its namespace, or on this machine without one).
    pub async fn start(nodes: Vec<ProxyNode>) -> io::Result<BusProxy> {
        let mut listeners = Vec::with_capacity(nodes.len());
        for node in &nodes {
            let addr = SocketAddr::from((node.ip, node.proxy_port));
            let socket = netns::socket_in_async(node.netns.clone()).await?;
            socket.set_reuseaddr(true)?;
            socket.bind(addr).map_err(|e| {
                io::Error::new(e.kind(), format!("binding {addr} for {}: {e}", node.name))
            })?;
            listeners.push(socket.listen(1024)?);
        }
        let (held_changed, _) = watch::channel(0);
        let core = Arc::new(Core {
            nodes,
            rules: Mutex::new(RuleSet::new()),
            held: Mutex::new(HeldBook::default()),
            held_changed,
            stats: Mutex::new(Recorder::default()),
            conns: Mutex::new(BTreeMap::new()),
            next_conn: AtomicU64::new(0),
            next_msg: AtomicU64::new(0),
            connect_timeout: Duration::from_secs(2),
        });
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let mut addrs = Vec::new();
        for (i, listener) in listeners.into_iter().enumerate() {
            addrs.push(listener.local_addr()?);
            tracker.spawn(accept_loop(
                core.clone(),
                tracker.clone(),
                shutdown.clone(),
                listener,
                i,
            ));
        }
        Ok(BusProxy {
            owner: Arc::new(Owner {
                core,
                shutdown,
                tracker,
                addrs,
            }),
        })
    }

    fn core(&self) -> &Core {
        &self.owner.core
    }

    /// The nodes, in the order given.
    pub fn nodes(&self) -> &[ProxyNode] {
        &self.core().nodes
    }

    /// Where each node's listener is bound, in node order.
    pub fn listen_addrs(&self) -> &[SocketAddr] {
        &self.owner.addrs
    }

    /// Makes this proxy the one faults of run `run_id` act on.
    pub fn register(&self, run_id: &str) {
        lock(&RUNNING).insert(run_id.to_string(), Arc::downgrade(&self.owner));
    }

    /// The proxy registered for `run_id`, if it is still running.
    pub fn for_run(run_id: &str) -> Option<BusProxy> {
        let weak = lock(&RUNNING).get(run_id)?.clone();
        let owner = weak.upgrade()?;
        (!owner.shutdown.is_cancelled()).then_some(BusProxy { owner })
    }

    /// Adds a rule after those in force; it applies to messages read from now on.
    pub fn add_rule(&self, rule: Rule) -> RuleId {
        debug!("bus proxy: rule {rule:?}");
        lock(&self.core().rules).add(rule)
    }

    /// Removes a rule: the messages it delayed or held go now, in order, and if it
    /// dropped messages, the connections it dropped them on are closed (see
    /// [`Verdict::Drop`](super::Verdict::Drop)). `None` if there was no such rule.
    pub fn remove_rule(&self, id: RuleId) -> Option<Removed> {
        let released = self.held_by(&[id]);
        let rule = lock(&self.core().rules).remove(id)?;
        let connections_reset = self.core().reset_dropped(&[id]);
        Some(Removed {
            rule,
            released,
            connections_reset,
        })
    }

    /// The rules in force, in order.
    pub fn rules(&self) -> Vec<(RuleId, Rule)> {
        lock(&self.core().rules).list()
    }

    /// Removes every rule, as [`BusProxy::remove_rule`] does each; returns what each
    /// removal did.
    pub fn clear_rules(&self) -> Vec<(RuleId, Removed)> {
        let ids: Vec<RuleId> = self.rules().iter().map(|(id, _)| *id).collect();
        ids.into_iter()
            .filter_map(|id| self.remove_rule(id).map(|r| (id, r)))
            .collect()
    }

    fn held_by(&self, rules: &[RuleId]) -> usize {
        lock(&self.core().held)
            .list()
            .iter()
            .filter(|m| rules.contains(&m.rule))
            .count()
    }

    /// What the proxy holds back right now, oldest first.
    pub fn held(&self) -> Vec<HeldMessage> {
        let mut v = lock(&self.core().held).list();
        v.sort_by_key(|m| (m.since, m.id));
        v
    }

    /// The most recent messages that were held and no longer are (up to
    /// [`super::held::RELEASED_KEPT`]), in the order they left.
    pub fn released(&self) -> Vec<Released> {
        lock(&self.core().held).released()
    }

    /// Lets one held message go now (in order: it still waits for those before it on its
    /// connection unless its rule reorders). Returns whether it was held.
    pub fn release(&self, id: u64) -> bool {
        lock(&self.core().held).release(|m| m.id == id) > 0
    }

    /// Lets every held message go now; returns how many.
    pub fn release_all(&self) -> usize {
        lock(&self.core().held).release(|_| true)
    }

    /// Waits until a message that `pick` chooses is held, and returns it (at once if one
    /// already is). Wrap it in a time-out: it waits for as long as it takes.
    ///
    /// For "fire a failover while a PONG from B to N is in flight":
    /// `proxy.wait_held(|m| m.link.from == "n2" && m.link.to == "n3" && m.msg_type ==
    /// Some(MsgType::Pong))`.
    pub async fn wait_held(&self, pick: impl Fn(&HeldMessage) -> bool) -> HeldMessage {
        let mut changed = self.core().held_changed.subscribe();
        loop {
            if let Some(m) = self.held().into_iter().find(|m| pick(m)) {
                return m;
            }
            if changed.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// The counters and timings so far.
    pub fn stats(&self) -> Stats {
        lock(&self.core().stats).snapshot()
    }

    /// Connections open right now.
    pub fn open_connections(&self) -> u64 {
        self.stats().connections_open
    }

    /// Stops accepting, closes every connection (held messages are not delivered) and
    /// waits until every task of the proxy has ended. Returns the final counters.
    pub async fn shutdown(&self) -> Stats {
        self.owner.shutdown.cancel();
        self.owner.tracker.close();
        self.owner.tracker.wait().await;
        // No upgrade under the lock: dropping the last handle of another proxy there would
        // re-enter it from that proxy's Drop.
        let me = Arc::downgrade(&self.owner);
        lock(&RUNNING).retain(|_, w| w.strong_count() > 0 && !Weak::ptr_eq(w, &me));
        self.stats()
    }

    /// Whether [`BusProxy::shutdown`] has finished (every task ended).
    pub fn is_stopped(&self) -> bool {
        self.owner.shutdown.is_cancelled() && self.owner.tracker.is_empty()
    }
}

async fn accept_loop(
    core: Arc<Core>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    listener: TcpListener,
    receiver: usize,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                tracker.spawn(conn::serve(
                    core.clone(),
                    tracker.clone(),
                    shutdown.child_token(),
                    stream,
                    peer,
                    receiver,
                ));
            }
            Err(e) => {
                // Out of descriptors and the like: back off rather than spin.
                warn!("bus proxy: accept for {}: {e}", core.nodes[receiver].name);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Counts a connection open until dropped.
pub(crate) struct OpenGuard(pub(crate) Arc<Core>);

impl OpenGuard {
    pub(crate) fn new(core: Arc<Core>) -> OpenGuard {
        lock(&core.stats).stats.connections_accepted += 1;
        OpenGuard(core)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        lock(&self.0.stats).closed += 1;
    }
}

impl Core {
    pub(crate) fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn next_msg_id(&self) -> u64 {
        self.next_msg.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn hold(&self, message: HeldMessage, release: CancellationToken) {
        lock(&self.held).hold(message, release);
        self.held_changed.send_modify(|n| *n += 1);
    }

    pub(crate) fn finish_held(&self, id: u64, delivered: bool) {
        lock(&self.held).finish(id, delivered);
    }

    pub(crate) fn finish_conn(&self, conn: u64) {
        lock(&self.held).finish_conn(conn);
        lock(&self.conns).remove(&conn);
    }

    /// Notes that `rule` dropped a message on `conn`.
    pub(crate) fn dropped(&self, conn: u64, rule: RuleId) {
        if let Some(c) = lock(&self.conns).get_mut(&conn) {
            c.dropped_by.insert(rule);
        }
    }

    /// Closes the connections any of `rules` dropped messages on; returns how many.
    fn reset_dropped(&self, rules: &[RuleId]) -> usize {
        let mut n = 0;
        for c in lock(&self.conns).values() {
            if c.dropped_by.iter().any(|r| rules.contains(r)) {
                c.close.cancel();
                n += 1;
            }
        }
        lock(&self.stats).stats.connections_reset += n as u64;
        n
    }
}
