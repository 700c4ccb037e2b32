//! [`Peer`]: one node as this node knows it (itself included), and [`Link`], this node's
//! outbound bus connection to it.

use std::collections::HashMap;

use tokio::sync::mpsc::UnboundedSender;

use super::message::flag;

/// This node's outbound bus connection to a peer (PINGs out, PONGs back).
#[derive(Debug)]
pub struct Link {
    /// Distinguishes a reconnection from the link it replaces.
    pub id: u64,
    /// Bytes queued to send.
    pub tx: UnboundedSender<Vec<u8>>,
    /// Whether the TCP connection is established.
    pub connected: bool,
    /// When the link was created (ms).
    pub ctime: u64,
}

/// A node in the cluster view.
#[derive(Debug)]
pub struct Peer {
    /// 40-hex node id (random while in handshake).
    pub id: String,
    /// Announced address.
    pub ip: String,
    /// Client port.
    pub port: u16,
    /// Bus port peers connect to.
    pub cport: u16,
    /// `message::flag` bits (MYSELF on this node's own entry).
    pub flags: u16,
    /// The primary it replicates.
    pub primary: Option<String>,
    /// Its config epoch as known here.
    pub config_epoch: u64,
    /// When a PING to it went unanswered since (ms; 0 none pending).
    pub ping_sent: u64,
    /// When it last answered (ms).
    pub pong_received: u64,
    /// When this entry was created (ms; handshake time-out).
    pub ctime: u64,
    /// When it was marked FAIL (ms).
    pub fail_time: u64,
    /// When this node last voted for one of its replicas (ms).
    pub voted_time: u64,
    /// Its replication offset, from its last message.
    pub repl_offset: u64,
    /// Primaries that report it PFAIL/FAIL, and when (ms).
    pub fail_reports: HashMap<String, u64>,
    /// The outbound link.
    pub link: Option<Link>,
}

impl Peer {
    /// A node with nothing known but its address.
    pub fn new(id: String, ip: String, port: u16, cport: u16, flags: u16, now: u64) -> Peer {
        Peer {
            id,
            ip,
            port,
            cport,
            flags,
            primary: None,
            config_epoch: 0,
            ping_sent: 0,
            pong_received: 0,
            ctime: now,
            fail_time: 0,
            voted_time: 0,
            repl_offset: 0,
            fail_reports: HashMap::new(),
            link: None,
        }
    }

    /// Whether a flag is set.
    pub fn has(&self, f: u16) -> bool {
        self.flags & f != 0
    }

    /// Primary (by flags).
    pub fn is_primary(&self) -> bool {
        self.has(flag::PRIMARY)
    }

    /// `ip:port`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    /// The flags as `CLUSTER NODES` prints them.
    pub fn flag_text(&self) -> String {
        let mut out = Vec::new();
        for (f, name) in [
            (flag::MYSELF, "myself"),
            (flag::PRIMARY, "master"),
            (flag::REPLICA, "slave"),
            (flag::PFAIL, "fail?"),
            (flag::FAIL, "fail"),
            (flag::HANDSHAKE, "handshake"),
            (flag::NOADDR, "noaddr"),
        ] {
            if self.has(f) {
                out.push(name);
            }
        }
        if out.is_empty() {
            "noflags".into()
        } else {
            out.join(",")
        }
    }
}
