//! Building this node's messages and queueing them on links.

use super::message::{flag, mflag, Body, Gossip, Message};
use super::Cluster;
use crate::state::{now_ms, State};

/// A message of `kind` carrying this node's header (for a replica: its primary's slots
/// and config epoch, as Redis sends them) and, for PING/PONG/MEET, gossip about every
/// other node it knows outside a handshake.
pub fn build(st: &State, kind: u16) -> Message {
    let c = st.cluster.as_ref().expect("cluster mode");
    let me = c.myself();
    let shard = c.shard_primary();
    let config_epoch = c
        .nodes
        .get(&shard)
        .map_or(me.config_epoch, |p| p.config_epoch);
    let mut mflags = 0;
    if c.mf.end != 0 && me.is_primary() && c.mf.replica.is_some() {
        mflags |= mflag::PAUSED;
    }
    let body = match kind {
        super::message::kind::PING | super::message::kind::PONG | super::message::kind::MEET => {
            let now = now_ms();
            Body::Gossip(
                c.nodes
                    .values()
                    .filter(|n| n.id != c.myid && !n.has(flag::HANDSHAKE | flag::NOADDR))
                    .map(|n| Gossip {
                        id: n.id.clone(),
                        ping_sent: (n.ping_sent / 1000) as u32,
                        pong_received: (n.pong_received.min(now) / 1000) as u32,
                        ip: n.ip.clone(),
                        port: n.port,
                        cport: n.cport,
                        flags: n.flags,
                    })
                    .collect(),
            )
        }
        _ => Body::Empty,
    };
    Message {
        kind,
        port: me.port,
        current_epoch: c.current_epoch,
        config_epoch,
        offset: st.repl.offset,
        sender: c.myid.clone(),
        slots: c.bitmap_of(&shard),
        replicaof: me.primary.clone(),
        myip: me.ip.clone(),
        cport: me.cport,
        flags: me.flags & !flag::MYSELF | flag::MYSELF,
        state: u8::from(!c.state_ok),
        mflags,
        body,
    }
}

/// Queues bytes on the outbound link to `id`; false when there is none.
pub fn to_node(c: &mut Cluster, id: &str, bytes: Vec<u8>) -> bool {
    let Some(n) = c.nodes.get_mut(id) else {
        return false;
    };
    let Some(link) = &n.link else { return false };
    let ok = link.tx.send(bytes).is_ok();
    c.sent += u64::from(ok);
    ok
}

/// Sends a PING (or MEET to a node met by `CLUSTER MEET`) to `id`, noting when.
pub fn ping(st: &mut State, id: &str) {
    let kind = {
        let c = st.cluster.as_ref().expect("cluster mode");
        match c.nodes.get(id) {
            Some(n) if n.has(flag::MEET) => super::message::kind::MEET,
            Some(_) => super::message::kind::PING,
            None => return,
        }
    };
    let bytes = build(st, kind).encode();
    let c = st.cluster.as_mut().expect("cluster mode");
    if to_node(c, id, bytes) {
        let n = c.nodes.get_mut(id).expect("checked");
        if n.ping_sent == 0 {
            n.ping_sent = now_ms();
        }
    }
}

/// Sends a message to every node with a link outside a handshake.
pub fn broadcast(st: &mut State, msg: &Message) {
    let bytes = msg.encode();
    let c = st.cluster.as_mut().expect("cluster mode");
    let ids: Vec<String> = c
        .nodes
        .values()
        .filter(|n| n.id != c.myid && !n.has(flag::HANDSHAKE))
        .map(|n| n.id.clone())
        .collect();
    for id in ids {
        to_node(c, &id, bytes.clone());
    }
}

/// Broadcasts a PONG: how a node announces a config change at once.
pub fn broadcast_pong(st: &mut State) {
    let m = build(st, super::message::kind::PONG);
    broadcast(st, &m);
}
