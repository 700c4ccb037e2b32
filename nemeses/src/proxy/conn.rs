//! One proxied bus connection: the peer that connected to a node's listener, carried on
//! to the node's real bus port, framed and judged message by message in both directions.
//!
//! Each direction has a reader (frames what arrives, asks the rules, queues) and a writer
//! (delivers in order: a delayed or held message keeps the ones behind it waiting, as a
//! slow TCP link would, unless its rule lets them overtake). When a side closes, what is
//! queued towards the other side is still delivered, then that side is shut down too; an
//! error on either side closes the whole connection, and whatever it still held is given
//! up (a closed TCP connection loses what is in flight).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::bus_proxy::{lock, ConnEntry, Core, OpenGuard};
use super::frame::{Chunk, Framer, Header, MsgType};
use super::held::HeldMessage;
use super::link::Link;
use super::netns;
use super::rule::Action;

/// Read buffer per direction.
const READ_BUF: usize = 64 * 1024;

/// Which way bytes flow on the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// From the node that opened the connection to the node whose listener it reached.
    Forward,
    /// The replies: from the listening node back to the opener.
    Backward,
}

/// What both directions know about the connection.
struct ConnInfo {
    id: u64,
    /// The node whose listener was reached.
    receiver: String,
    /// The node that connected: known from its address, or from the `port` of the first
    /// message it sends when several nodes share an address.
    opener: OnceLock<String>,
    peer: SocketAddr,
    /// When the last PING or MEET was written to the receiver, for the round trip.
    ping_out: Mutex<Option<Instant>>,
}

impl ConnInfo {
    fn opener(&self) -> String {
        self.opener
            .get()
            .cloned()
            .unwrap_or_else(|| self.peer.to_string())
    }

    fn link(&self, dir: Dir) -> Link {
        let opener = self.opener();
        match dir {
            Dir::Forward => Link::new(&opener, &self.receiver, &opener),
            Dir::Backward => Link::new(&self.receiver, &opener, &opener),
        }
    }
}

/// When a queued message may go.
#[derive(Clone, Default)]
struct Gate {
    until: Option<Instant>,
    release: Option<CancellationToken>,
}

impl Gate {
    fn is_open(&self) -> bool {
        self.until.is_none() && self.release.is_none()
    }

    async fn wait(self) {
        match (self.until, self.release) {
            (None, None) => {}
            (Some(t), None) => tokio::time::sleep_until(t.into()).await,
            (None, Some(r)) => r.cancelled().await,
            (Some(t), Some(r)) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(t.into()) => {}
                    _ = r.cancelled() => {}
                }
            }
        }
    }
}

/// A message (or raw bytes) on its way to the writer.
struct Item {
    bytes: Vec<u8>,
    gate: Gate,
    reorder: bool,
    /// Its id in the held book, if it was held back.
    held: Option<u64>,
    read_at: Instant,
    /// A PING or MEET: its delivery starts a round trip.
    ping: bool,
}

/// Serves one accepted connection until either side closes or the proxy stops.
pub(crate) async fn serve(
    core: Arc<Core>,
    tracker: TaskTracker,
    cancel: CancellationToken,
    accepted: TcpStream,
    peer: SocketAddr,
    receiver: usize,
) {
    let _open = OpenGuard::new(core.clone());
    let node = core.nodes[receiver].clone();
    let onward = tokio::select! {
        _ = cancel.cancelled() => return,
        r = connect_onward(&core, receiver) => r,
    };
    let onward = match onward {
        Ok(s) => s,
        Err(e) => {
            lock(&core.stats).stats.onward_failures += 1;
            debug!(
                "bus proxy: {peer} -> {}: real bus port unreachable: {e}",
                node.name
            );
            return;
        }
    };
    let _ = accepted.set_nodelay(true);
    let _ = onward.set_nodelay(true);
    let info = Arc::new(ConnInfo {
        id: core.next_conn_id(),
        receiver: node.name.clone(),
        opener: OnceLock::new(),
        peer,
        ping_out: Mutex::new(None),
    });
    let by_address: Vec<&str> = core
        .nodes
        .iter()
        .filter(|n| n.ip == ip4(peer) && n.name != node.name)
        .map(|n| n.name.as_str())
        .collect();
    if let [only] = by_address[..] {
        let _ = info.opener.set(only.to_string());
    }
    lock(&core.conns).insert(
        info.id,
        ConnEntry {
            close: cancel.clone(),
            dropped_by: Default::default(),
        },
    );
    debug!(
        "bus proxy: conn {} from {peer} ({}) to {}",
        info.id,
        info.opener(),
        node.name
    );
    let (a_read, a_write) = accepted.into_split();
    let (b_read, b_write) = onward.into_split();
    tokio::join!(
        direction(
            &core,
            &tracker,
            &info,
            Dir::Forward,
            a_read,
            b_write,
            &cancel
        ),
        direction(
            &core,
            &tracker,
            &info,
            Dir::Backward,
            b_read,
            a_write,
            &cancel
        ),
    );
    core.finish_conn(info.id);
    debug!("bus proxy: conn {} closed", info.id);
}

fn ip4(addr: SocketAddr) -> std::net::Ipv4Addr {
    match addr {
        SocketAddr::V4(a) => *a.ip(),
        SocketAddr::V6(a) => a
            .ip()
            .to_ipv4_mapped()
            .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
    }
}

/// Connects to the node's real bus port, from inside its namespace.
async fn connect_onward(core: &Core, receiver: usize) -> std::io::Result<TcpStream> {
    let node = &core.nodes[receiver];
    let socket = netns::socket_in_async(node.netns.clone()).await?;
    let addr = SocketAddr::from((node.ip, node.bus_port));
    tokio::time::timeout(core.connect_timeout, socket.connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?
}

/// One direction: read, judge, deliver.
async fn direction(
    core: &Arc<Core>,
    tracker: &TaskTracker,
    info: &Arc<ConnInfo>,
    dir: Dir,
    src: OwnedReadHalf,
    sink: OwnedWriteHalf,
    cancel: &CancellationToken,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::join!(
        read(core, info, dir, src, tx, cancel),
        write(core, tracker, info, dir, sink, rx, cancel),
    );
}

async fn read(
    core: &Arc<Core>,
    info: &Arc<ConnInfo>,
    dir: Dir,
    mut src: OwnedReadHalf,
    tx: mpsc::UnboundedSender<Item>,
    cancel: &CancellationToken,
) {
    let mut framer = Framer::new();
    let mut buf = vec![0u8; READ_BUF];
    loop {
        let n = tokio::select! {
            _ = cancel.cancelled() => return,
            r = src.read(&mut buf) => match r {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) => {
                    debug!("bus proxy: conn {} {dir:?} read: {e}", info.id);
                    cancel.cancel();
                    return;
                }
            },
        };
        let was_raw = framer.is_raw();
        framer.push(&buf[..n]);
        while let Some(chunk) = framer.next_chunk() {
            let read_at = Instant::now();
            let items = match chunk {
                Chunk::Raw(bytes) => {
                    let mut r = lock(&core.stats);
                    if !was_raw {
                        r.stats.raw_streams += 1;
                        tracing::warn!(
                            "bus proxy: conn {} {dir:?} is not cluster bus traffic; passing it on unframed",
                            info.id
                        );
                    }
                    r.stats.raw_bytes += bytes.len() as u64;
                    vec![Item {
                        bytes,
                        gate: Gate::default(),
                        reorder: false,
                        held: None,
                        read_at,
                        ping: false,
                    }]
                }
                Chunk::Frame(frame) => {
                    judge(core, info, dir, frame.bytes, frame.header.as_ref(), read_at)
                }
            };
            for item in items {
                if tx.send(item).is_err() {
                    return;
                }
            }
        }
    }
}

/// Asks the rules about one message and turns the verdict into what to queue.
fn judge(
    core: &Arc<Core>,
    info: &Arc<ConnInfo>,
    dir: Dir,
    bytes: Vec<u8>,
    header: Option<&Header>,
    read_at: Instant,
) -> Vec<Item> {
    if dir == Dir::Forward && info.opener.get().is_none() {
        identify(core, info, header);
    }
    let msg_type = header.map(|h| h.msg_type);
    if dir == Dir::Backward && msg_type == Some(MsgType::Pong) {
        if let Some(sent) = lock(&info.ping_out).take() {
            lock(&core.stats).ping_rtt(read_at.saturating_duration_since(sent));
        }
    }
    let link = info.link(dir);
    let decision = lock(&core.rules).decide(&link, msg_type);
    let ping = dir == Dir::Forward && matches!(msg_type, Some(MsgType::Ping | MsgType::Meet));
    let mut stats = lock(&core.stats);
    stats.frame(bytes.len(), header);
    let item = |bytes: Vec<u8>| Item {
        bytes,
        gate: Gate::default(),
        reorder: false,
        held: None,
        read_at,
        ping,
    };
    match decision.action {
        Action::Pass => {
            stats.stats.passed += 1;
            vec![item(bytes)]
        }
        Action::Drop => {
            stats.stats.dropped += 1;
            drop(stats);
            if let Some(rule) = decision.rule {
                core.dropped(info.id, rule);
            }
            Vec::new()
        }
        Action::Duplicate => {
            stats.stats.duplicated += 1;
            vec![item(bytes.clone()), item(bytes)]
        }
        Action::Gate {
            delay,
            reorder,
            release,
        } => {
            if delay.is_some() {
                stats.stats.delayed += 1;
            } else {
                stats.stats.held += 1;
            }
            drop(stats);
            let id = core.next_msg_id();
            let until = delay.map(|d| read_at + d);
            let held = HeldMessage {
                id,
                conn: info.id,
                link,
                msg_type: None,
                light: false,
                sender_id: None,
                current_epoch: None,
                config_epoch: None,
                replicaof: None,
                header: None,
                rule: decision.rule.unwrap_or_default(),
                since: read_at,
                until,
            }
            .describe(header);
            core.hold(held, release.clone());
            vec![Item {
                bytes,
                gate: Gate {
                    until,
                    release: Some(release),
                },
                reorder,
                held: Some(id),
                read_at,
                ping,
            }]
        }
    }
}

/// Names the opener from the first message's `port` when its address was not enough.
fn identify(core: &Core, info: &ConnInfo, header: Option<&Header>) {
    let Some(port) = header.and_then(Header::port) else {
        return;
    };
    let found = core
        .nodes
        .iter()
        .find(|n| n.ip == ip4(info.peer) && n.port == port && n.name != info.receiver);
    if let Some(n) = found {
        let _ = info.opener.set(n.name.clone());
    }
}

async fn write(
    core: &Arc<Core>,
    tracker: &TaskTracker,
    info: &Arc<ConnInfo>,
    dir: Dir,
    mut sink: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Item>,
    cancel: &CancellationToken,
) {
    // In-order messages, oldest first; the front one may be waiting for its gate.
    let mut ordered: VecDeque<Item> = VecDeque::new();
    // Messages allowed to be overtaken come back here when their gate opens.
    let (loose_tx, mut loose_rx) = mpsc::unbounded_channel::<Item>();
    let mut loose = 0usize;
    let mut input_open = true;
    loop {
        if !input_open && ordered.is_empty() && loose == 0 {
            let _ = sink.shutdown().await;
            return;
        }
        let front = ordered.front().map(|i| i.gate.clone());
        let ready = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            Some(item) = loose_rx.recv(), if loose > 0 => {
                loose -= 1;
                item
            }
            _ = front.clone().unwrap_or_default().wait(), if front.is_some() => {
                ordered.pop_front().expect("front")
            }
            msg = rx.recv(), if input_open => {
                match msg {
                    None => {
                        input_open = false;
                        continue;
                    }
                    Some(item) if item.gate.is_open() && ordered.is_empty() => item,
                    Some(item) if item.reorder => {
                        loose += 1;
                        let back = loose_tx.clone();
                        let cancel = cancel.clone();
                        tracker.spawn(async move {
                            tokio::select! {
                                _ = cancel.cancelled() => {}
                                _ = item.gate.clone().wait() => { let _ = back.send(item); }
                            }
                        });
                        continue;
                    }
                    Some(item) => {
                        ordered.push_back(item);
                        continue;
                    }
                }
            }
        };
        let written = tokio::select! {
            _ = cancel.cancelled() => return,
            r = sink.write_all(&ready.bytes) => r,
        };
        if let Err(e) = written {
            debug!("bus proxy: conn {} {dir:?} write: {e}", info.id);
            cancel.cancel();
            return;
        }
        let now = Instant::now();
        match ready.held {
            Some(id) => core.finish_held(id, true),
            None => lock(&core.stats).dwell(now.saturating_duration_since(ready.read_at)),
        }
        if ready.ping {
            *lock(&info.ping_out) = Some(now);
        }
    }
}
