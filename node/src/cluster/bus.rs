//! The bus's I/O: the listener on the bus port (peers' PINGs, MEETs and broadcasts,
//! answered on the same connection), one task per outbound link (this node's messages
//! out, the PONGs back), and the cron timer. Everything they read goes through
//! [`super::gossip::process`] under the node's lock.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::cron::{self, NewLink};
use super::gossip::{self, Origin};
use super::message::{frame_len, Message};
use crate::state::{now_ms, with, Shared};

/// Reads whole bus messages from a stream.
struct Reader {
    buf: Vec<u8>,
}

impl Reader {
    async fn next(&mut self, r: &mut (impl AsyncReadExt + Unpin)) -> Result<Option<Message>> {
        loop {
            if let Some(len) = frame_len(&self.buf)? {
                if self.buf.len() >= len {
                    let m = Message::decode(&self.buf[..len]);
                    self.buf.drain(..len);
                    return m.map(Some);
                }
            }
            let mut chunk = [0u8; 16 << 10];
            let n = r.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Accepts peers on the bus port.
pub async fn listen(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let Ok((stream, addr)) = listener.accept().await else {
            continue;
        };
        let s = shared.clone();
        tokio::spawn(async move {
            let _ = inbound(s, stream, addr.ip().to_string()).await;
        });
    }
}

async fn inbound(shared: Arc<Shared>, stream: TcpStream, ip: String) -> Result<()> {
    let _ = stream.set_nodelay(true);
    let (mut r, mut w) = stream.into_split();
    let mut reader = Reader { buf: Vec::new() };
    while let Some(msg) = reader.next(&mut r).await? {
        let reply = with(&shared, |st| {
            gossip::process(st, &msg, Origin::Inbound, &ip)
        });
        if let Some(bytes) = reply {
            w.write_all(&bytes).await?;
        }
    }
    Ok(())
}

/// The cron: every 100 ms, and the links it asks for.
pub async fn cron_task(shared: Arc<Shared>) {
    let mut every = tokio::time::interval(Duration::from_millis(100));
    loop {
        every.tick().await;
        let links = with(&shared, cron::tick);
        for l in links {
            tokio::spawn(link(shared.clone(), l));
        }
    }
}

/// One outbound link: connect (bounded by the node timeout), send what is queued,
/// process what comes back. When it breaks, the node's entry forgets it and the cron
/// makes a new one.
async fn link(shared: Arc<Shared>, mut l: NewLink) {
    let timeout = with(&shared, |st| {
        st.cluster.as_ref().map_or(1000, |c| c.node_timeout)
    });
    let result: Result<()> = async {
        let stream = tokio::time::timeout(Duration::from_millis(timeout), TcpStream::connect((l.ip.as_str(), l.cport))).await??;
        let _ = stream.set_nodelay(true);
        with(&shared, |st| {
            if let Some(c) = st.cluster.as_mut() {
                if let Some(link) = c.nodes.values_mut().filter_map(|n| n.link.as_mut()).find(|k| k.id == l.id) {
                    link.connected = true;
                    link.ctime = now_ms();
                }
            }
        });
        let (mut r, mut w) = stream.into_split();
        let mut reader = Reader { buf: Vec::new() };
        loop {
            tokio::select! {
                out = l.rx.recv() => match out {
                    Some(bytes) => w.write_all(&bytes).await?,
                    None => return Ok(()), // the entry dropped this link
                },
                msg = reader.next(&mut r) => match msg? {
                    Some(msg) => with(&shared, |st| { gossip::process(st, &msg, Origin::Link(l.id), &l.ip); }),
                    None => return Ok(()),
                },
            }
        }
    }
    .await;
    let _ = result;
    // Failed connects are retried by the cron, no faster than every 100 ms.
    tokio::time::sleep(Duration::from_millis(100)).await;
    with(&shared, |st| {
        if let Some(c) = st.cluster.as_mut() {
            if let Some(n) = c
                .nodes
                .values_mut()
                .find(|n| n.link.as_ref().is_some_and(|k| k.id == l.id))
            {
                n.link = None;
            }
        }
    });
}
