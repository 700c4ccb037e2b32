//! [`Replication`]: asynchronous primary -> replica replication with offsets, in this
//! node's own protocol over the client port.
//!
//! A replica connects to its primary's client port and sends `FLSYNC <ip> <port>`. The
//! primary answers `+FULLRESYNC <replid> <offset>`, `:<n>`, then `n` commands that rebuild
//! its keyspace, then streams every write it applies, one command per offset step. The
//! replica answers `REPLCONF ACK <offset>` as it applies, which `WAIT` and `INFO
//! replication` read. Every (re)connection is a full sync: a demoted primary drops
//! whatever its new primary never had, which is exactly the window asynchronous
//! replication leaves open (writes acknowledged to a client, not yet streamed).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::net::TcpStream;
use tokio::sync::broadcast;

use crate::bugs::Bug;
use crate::command;
use crate::connection::Connection;
use crate::frame::Frame;
use crate::state::{now_ms, with, Shared, State};

/// Commands a primary keeps for slow replicas before cutting them off (they resync).
const BACKLOG: usize = 1 << 16;

/// A replica as its primary sees it.
#[derive(Debug, Clone)]
pub struct ReplicaInfo {
    /// The replica's announced address.
    pub ip: String,
    /// Its client port.
    pub port: u16,
    /// The offset it last acknowledged.
    pub ack: u64,
    /// When (ms).
    pub ack_ms: u64,
}

/// Replication state.
pub struct Replication {
    /// The primary this node follows (address, and id in cluster mode).
    pub target: Option<(String, u16)>,
    /// Bumped whenever `target` changes: a stream from an older generation stops.
    pub generation: u64,
    /// Whether the stream from the primary is up.
    pub link_up: bool,
    /// When the link last went down (ms), for `master_link_down_since_seconds`.
    pub link_down_since: u64,
    /// `master_repl_offset`: writes applied (primary) or received (replica).
    pub offset: u64,
    /// Replication id: changes when this node starts a new history as primary.
    pub replid: String,
    /// The write stream to replicas.
    pub stream: broadcast::Sender<(u64, Frame)>,
    /// Connected replicas by connection number.
    pub replicas: HashMap<u64, ReplicaInfo>,
    next_conn: u64,
    /// Standalone `FAILOVER` progress (`master_failover_state`).
    pub failover_state: &'static str,
    /// The replica a standalone `FAILOVER` hands over to, while it is in progress.
    pub failover_target: Option<(String, u16)>,
}

impl Default for Replication {
    fn default() -> Self {
        Replication {
            target: None,
            generation: 0,
            link_up: false,
            link_down_since: now_ms(),
            offset: 0,
            replid: crate::cluster::random_id(),
            stream: broadcast::channel(BACKLOG).0,
            replicas: HashMap::new(),
            next_conn: 0,
            failover_state: "no-failover",
            failover_target: None,
        }
    }
}

impl Replication {
    /// Follows a new primary (or none). Returns whether anything changed.
    pub fn follow(&mut self, target: Option<(String, u16)>) -> bool {
        if self.target == target {
            return false;
        }
        if target.is_none() && self.target.is_some() {
            // A new primary starts a new history; replicas of the old one resync.
            self.replid = crate::cluster::random_id();
        }
        self.target = target;
        self.generation += 1;
        self.link_up = false;
        self.link_down_since = now_ms();
        self.replicas.clear();
        true
    }

    /// The number of replicas that acknowledged at least `offset`.
    pub fn acked(&self, offset: u64) -> usize {
        self.replicas.values().filter(|r| r.ack >= offset).count()
    }
}

/// Sends a write the node applied as primary to its replicas (one offset step).
pub fn propagate(st: &mut State, args: &[Vec<u8>]) {
    if let Some(aof) = st.aof.as_mut() {
        aof.append(args);
    }
    if !st.is_primary() {
        return;
    }
    st.repl.offset += 1;
    let frame = if st.bug(Bug::AckBeforeReplicateLost) {
        // Bug switch: the write was acknowledged and counted, but what replicas get is a
        // no-op, so offsets agree while the data never leaves this node.
        Frame::command(&[b"FLNOOP".to_vec()])
    } else {
        Frame::command(args)
    };
    let _ = st.repl.stream.send((st.repl.offset, frame));
}

/// The primary's side of `FLSYNC`: snapshot, then stream, reading acknowledgements.
///
/// # Errors
/// When the replica's connection breaks (the replica reconnects and resyncs).
pub async fn serve_replica(
    shared: Arc<Shared>,
    mut conn: Connection,
    ip: String,
    port: u16,
) -> Result<()> {
    let (id, offset, replid, snapshot, mut rx) = with(&shared, |st| {
        st.repl.next_conn += 1;
        let id = st.repl.next_conn;
        st.repl.replicas.insert(
            id,
            ReplicaInfo {
                ip: ip.clone(),
                port,
                ack: 0,
                ack_ms: now_ms(),
            },
        );
        st.log(
            '*',
            format!(
                "Replica {ip}:{port} asks for synchronization; full resync at offset {}",
                st.repl.offset
            ),
        );
        (
            id,
            st.repl.offset,
            st.repl.replid.clone(),
            st.db.snapshot(),
            st.repl.stream.subscribe(),
        )
    });
    let result = async {
        conn.queue(&Frame::Simple(format!("FULLRESYNC {replid} {offset}")));
        conn.queue(&Frame::Integer(snapshot.len() as i64));
        for f in &snapshot {
            conn.queue(f);
        }
        conn.flush().await?;
        loop {
            tokio::select! {
                item = rx.recv() => match item {
                    Ok((_, frame)) => {
                        conn.queue(&frame);
                        while let Ok((_, f)) = rx.try_recv() {
                            conn.queue(&f);
                        }
                        conn.flush().await?;
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => bail!("replica fell {n} writes behind the backlog"),
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                },
                frame = conn.read_frame() => {
                    let Some(frame) = frame? else { return Ok(()) };
                    let args = frame.into_args()?;
                    if args.len() == 3 && args[0].eq_ignore_ascii_case(b"REPLCONF") {
                        let ack: u64 = String::from_utf8_lossy(&args[2]).parse().unwrap_or(0);
                        let still = with(&shared, |st| {
                            if let Some(r) = st.repl.replicas.get_mut(&id) {
                                r.ack = ack;
                                r.ack_ms = now_ms();
                                true
                            } else {
                                false
                            }
                        });
                        shared.acks.notify_waiters();
                        if !still {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }
    .await;
    with(&shared, |st| {
        st.repl.replicas.remove(&id);
        st.log('*', format!("Connection with replica {ip}:{port} lost"));
    });
    result
}

/// Keeps this node's replication stream pointed at its current primary: spawned once,
/// it (re)starts the stream whenever the target changes.
pub async fn manager(shared: Arc<Shared>) {
    let mut running: Option<(u64, tokio::task::JoinHandle<()>)> = None;
    let mut last_sync = now_ms();
    loop {
        if now_ms() - last_sync >= 1000 {
            last_sync = now_ms();
            with(&shared, |st| {
                if let Some(aof) = st.aof.as_mut() {
                    aof.sync();
                }
            });
        }
        let notified = shared.repl_changed.notified();
        let (generation, target) = with(&shared, |st| (st.repl.generation, st.repl.target.clone()));
        if running.as_ref().map(|(g, _)| *g) != Some(generation) {
            if let Some((_, h)) = running.take() {
                h.abort();
            }
            if let Some((ip, port)) = target {
                let s = shared.clone();
                running = Some((generation, tokio::spawn(follow(s, generation, ip, port))));
            } else {
                running = Some((generation, tokio::spawn(async {})));
            }
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

/// The replica's side: connect, full sync, apply the stream; again after any break.
async fn follow(shared: Arc<Shared>, generation: u64, ip: String, port: u16) {
    loop {
        let err = sync_once(&shared, generation, &ip, port).await;
        let current = with(&shared, |st| {
            let current = st.repl.generation == generation;
            if current {
                if st.repl.link_up {
                    st.repl.link_down_since = now_ms();
                }
                st.repl.link_up = false;
                if let Err(e) = &err {
                    st.log(
                        '#',
                        format!("Replication from primary {ip}:{port} broke: {e:#}"),
                    );
                }
            }
            current
        });
        if !current {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn sync_once(shared: &Arc<Shared>, generation: u64, ip: &str, port: u16) -> Result<()> {
    let stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect((ip, port)))
        .await
        .context("connecting to the primary timed out")?
        .context("connecting to the primary")?;
    let mut conn = Connection::new(stream);
    let (my_ip, my_port) = with(shared, |st| {
        (st.config.announced_ip(), st.config.announced_port())
    });
    conn.write_frame(&Frame::command(&[
        b"FLSYNC".to_vec(),
        my_ip.into_bytes(),
        my_port.to_string().into_bytes(),
    ]))
    .await?;
    let head = conn
        .read_frame()
        .await?
        .context("primary closed during sync")?;
    let Frame::Simple(line) = head else {
        bail!("primary answered FLSYNC with {head:?}")
    };
    let mut words = line.split_whitespace();
    let (Some("FULLRESYNC"), Some(_replid), Some(offset)) =
        (words.next(), words.next(), words.next())
    else {
        bail!("primary answered FLSYNC with {line:?}");
    };
    let offset: u64 = offset.parse().context("FULLRESYNC offset")?;
    let Some(Frame::Integer(n)) = conn.read_frame().await? else {
        bail!("no snapshot size")
    };
    let mut snapshot = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n {
        snapshot.push(
            conn.read_frame()
                .await?
                .context("primary closed during the snapshot")?
                .into_args()?,
        );
    }
    let ok = with(shared, |st| {
        if st.repl.generation != generation {
            return false;
        }
        st.db.clear();
        for args in &snapshot {
            command::apply_write(&mut st.db, args);
        }
        if let Some(aof) = st.aof.as_mut() {
            aof.rewrite(&st.db.snapshot());
        }
        st.repl.offset = offset;
        st.repl.link_up = true;
        st.log(
            '*',
            format!(
                "Primary {ip}:{port} <-> replica sync: finished with {} keys at offset {offset}",
                st.db.len()
            ),
        );
        true
    });
    if !ok {
        return Ok(());
    }
    let mut last_ack = 0u64;
    loop {
        let frame = tokio::time::timeout(Duration::from_millis(100), conn.read_frame()).await;
        let mut batch = Vec::new();
        // A time-out (nothing streamed for 100 ms) still acknowledges below.
        if let Ok(f) = frame {
            let Some(f) = f? else {
                bail!("primary closed the replication stream")
            };
            batch.push(f.into_args()?);
            while let Some(f) = conn.buffered_frame()? {
                batch.push(f.into_args()?);
            }
        }
        let offset = with(shared, |st| {
            if st.repl.generation != generation {
                return None;
            }
            for args in &batch {
                command::apply_write(&mut st.db, args);
                if let Some(aof) = st.aof.as_mut() {
                    aof.append(args);
                }
                st.repl.offset += 1;
            }
            Some(st.repl.offset)
        });
        let Some(offset) = offset else { return Ok(()) };
        if offset != last_ack || batch.is_empty() {
            conn.write_frame(&Frame::command(&[
                b"REPLCONF".to_vec(),
                b"ACK".to_vec(),
                offset.to_string().into_bytes(),
            ]))
            .await?;
            last_ack = offset;
        }
    }
}
