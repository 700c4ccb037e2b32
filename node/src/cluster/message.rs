//! [`Message`]: one cluster bus message in the Redis Cluster bus format (`clusterMsg` of
//! Redis 7.0 / Valkey 8.0, big-endian), so the harness's bus proxy frames and filters it
//! like a real server's:
//!
//! header (2256 bytes): `"RCmb"`, totlen u32, ver u16 (1), port u16, type u16, count u16,
//! currentEpoch u64, configEpoch u64, offset u64, sender (40), myslots (2048),
//! replicaof (40, zeros = none), myip (46), extensions u16, 30 unused, pport u16,
//! cport u16, flags u16, state u8, mflags (3); then the body: `count` gossip sections of
//! 104 bytes for PING/PONG/MEET, a node name for FAIL, configEpoch + name + slots for
//! UPDATE, nothing for the failover messages. This node sends no extensions.

use anyhow::{bail, ensure, Result};

/// Header length; also the shortest message.
pub const HEADER_LEN: usize = 2256;
/// One gossip section.
pub const GOSSIP_LEN: usize = 104;
/// Node name length.
pub const NAME_LEN: usize = 40;
/// Slot bitmap bytes.
pub const SLOT_BYTES: usize = 2048;

/// Message types (`CLUSTERMSG_TYPE_*`).
pub mod kind {
    /// Liveness probe with the sender's view and gossip.
    pub const PING: u16 = 0;
    /// Answer to PING/MEET, also broadcast after a config change.
    pub const PONG: u16 = 1;
    /// A PING that makes the receiver add the sender.
    pub const MEET: u16 = 2;
    /// A node is failed.
    pub const FAIL: u16 = 3;
    /// A replica asks for votes.
    pub const FAILOVER_AUTH_REQUEST: u16 = 5;
    /// A primary's vote.
    pub const FAILOVER_AUTH_ACK: u16 = 6;
    /// The receiver's slot config is stale.
    pub const UPDATE: u16 = 7;
    /// A replica asks its primary to pause for a manual failover.
    pub const MFSTART: u16 = 8;
}

/// Node flag bits (`CLUSTER_NODE_*`), as carried in headers and gossip.
pub mod flag {
    /// Primary.
    pub const PRIMARY: u16 = 1;
    /// Replica.
    pub const REPLICA: u16 = 2;
    /// Suspected failed.
    pub const PFAIL: u16 = 4;
    /// Failed.
    pub const FAIL: u16 = 8;
    /// The node itself.
    pub const MYSELF: u16 = 16;
    /// Handshake not finished.
    pub const HANDSHAKE: u16 = 32;
    /// Address unknown.
    pub const NOADDR: u16 = 64;
    /// Send MEET, not PING.
    pub const MEET: u16 = 128;
}

/// `mflags[0]` bits.
pub mod mflag {
    /// The primary has paused clients for a manual failover.
    pub const PAUSED: u8 = 1;
    /// Vote even though the primary is not failed (manual failover).
    pub const FORCEACK: u8 = 2;
}

/// One gossip section: what the sender knows of another node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gossip {
    /// Node id.
    pub id: String,
    /// When the sender last pinged it (s, 0 = none pending).
    pub ping_sent: u32,
    /// When the sender last heard a PONG (s).
    pub pong_received: u32,
    /// Address.
    pub ip: String,
    /// Client port.
    pub port: u16,
    /// Bus port.
    pub cport: u16,
    /// Flags as the sender sees them.
    pub flags: u16,
}

/// A message body by type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// PING / PONG / MEET.
    Gossip(Vec<Gossip>),
    /// FAIL: the failed node.
    Fail(String),
    /// UPDATE: a node's config the receiver must adopt.
    Update {
        /// The node's config epoch.
        config_epoch: u64,
        /// Node id.
        id: String,
        /// Its slots.
        slots: Box<[u8; SLOT_BYTES]>,
    },
    /// FAILOVER_AUTH_REQUEST / ACK / MFSTART.
    Empty,
}

/// A decoded bus message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Type (`kind::*`).
    pub kind: u16,
    /// Sender's client port.
    pub port: u16,
    /// Sender's current epoch.
    pub current_epoch: u64,
    /// Sender's config epoch (its primary's, if it is a replica).
    pub config_epoch: u64,
    /// Sender's replication offset.
    pub offset: u64,
    /// Sender's id.
    pub sender: String,
    /// Slots the sender (or its primary) serves.
    pub slots: Box<[u8; SLOT_BYTES]>,
    /// The primary the sender replicates, if any.
    pub replicaof: Option<String>,
    /// The address the sender announces.
    pub myip: String,
    /// The bus port the sender announces.
    pub cport: u16,
    /// Sender's flags.
    pub flags: u16,
    /// Sender's cluster state (0 ok, 1 fail).
    pub state: u8,
    /// `mflags[0]`.
    pub mflags: u8,
    /// Type-specific part.
    pub body: Body,
}

/// Whether slot `s` is set in a bitmap.
pub fn slot_bit(slots: &[u8; SLOT_BYTES], s: usize) -> bool {
    slots[s >> 3] & (1 << (s & 7)) != 0
}

/// Sets slot `s` in a bitmap.
pub fn set_slot_bit(slots: &mut [u8; SLOT_BYTES], s: usize) {
    slots[s >> 3] |= 1 << (s & 7);
}

fn put_name(out: &mut Vec<u8>, name: &str) {
    let mut b = [0u8; NAME_LEN];
    let n = name.len().min(NAME_LEN);
    b[..n].copy_from_slice(&name.as_bytes()[..n]);
    out.extend_from_slice(&b);
}

fn put_ip(out: &mut Vec<u8>, ip: &str) {
    let mut b = [0u8; 46];
    let n = ip.len().min(45);
    b[..n].copy_from_slice(&ip.as_bytes()[..n]);
    out.extend_from_slice(&b);
}

fn name_at(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl Message {
    /// The wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + 4 * GOSSIP_LEN);
        out.extend_from_slice(b"RCmb");
        out.extend_from_slice(&[0; 4]); // totlen, patched below
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&self.port.to_be_bytes());
        out.extend_from_slice(&self.kind.to_be_bytes());
        let count = match &self.body {
            Body::Gossip(g) => g.len() as u16,
            _ => 0,
        };
        out.extend_from_slice(&count.to_be_bytes());
        out.extend_from_slice(&self.current_epoch.to_be_bytes());
        out.extend_from_slice(&self.config_epoch.to_be_bytes());
        out.extend_from_slice(&self.offset.to_be_bytes());
        put_name(&mut out, &self.sender);
        out.extend_from_slice(&self.slots[..]);
        match &self.replicaof {
            Some(p) => put_name(&mut out, p),
            None => out.extend_from_slice(&[0; NAME_LEN]),
        }
        put_ip(&mut out, &self.myip);
        out.extend_from_slice(&0u16.to_be_bytes()); // extensions
        out.extend_from_slice(&[0; 30]);
        out.extend_from_slice(&0u16.to_be_bytes()); // pport (no TLS)
        out.extend_from_slice(&self.cport.to_be_bytes());
        out.extend_from_slice(&self.flags.to_be_bytes());
        out.push(self.state);
        out.extend_from_slice(&[self.mflags, 0, 0]);
        debug_assert_eq!(out.len(), HEADER_LEN);
        match &self.body {
            Body::Gossip(gs) => {
                for g in gs {
                    put_name(&mut out, &g.id);
                    out.extend_from_slice(&g.ping_sent.to_be_bytes());
                    out.extend_from_slice(&g.pong_received.to_be_bytes());
                    put_ip(&mut out, &g.ip);
                    out.extend_from_slice(&g.port.to_be_bytes());
                    out.extend_from_slice(&g.cport.to_be_bytes());
                    out.extend_from_slice(&g.flags.to_be_bytes());
                    out.extend_from_slice(&0u16.to_be_bytes()); // pport
                    out.extend_from_slice(&0u16.to_be_bytes()); // unused
                }
            }
            Body::Fail(id) => put_name(&mut out, id),
            Body::Update {
                config_epoch,
                id,
                slots,
            } => {
                out.extend_from_slice(&config_epoch.to_be_bytes());
                put_name(&mut out, id);
                out.extend_from_slice(&slots[..]);
            }
            Body::Empty => {}
        }
        let len = out.len() as u32;
        out[4..8].copy_from_slice(&len.to_be_bytes());
        out
    }

    /// Decodes one whole message (as cut by [`frame_len`]).
    ///
    /// # Errors
    /// When it is not a full-header bus message or its body is short.
    pub fn decode(b: &[u8]) -> Result<Message> {
        ensure!(
            b.len() >= HEADER_LEN && &b[..4] == b"RCmb",
            "not a cluster bus message"
        );
        let kind = u16_at(b, 12);
        ensure!(
            kind & 0x8000 == 0,
            "light headers are not spoken by this node"
        );
        let count = usize::from(u16_at(b, 14));
        let mut slots = Box::new([0u8; SLOT_BYTES]);
        slots.copy_from_slice(&b[80..80 + SLOT_BYTES]);
        let replicaof = &b[2128..2168];
        let body = &b[HEADER_LEN..];
        let body = match kind {
            kind::PING | kind::PONG | kind::MEET => {
                ensure!(
                    body.len() >= count * GOSSIP_LEN,
                    "gossip sections cut short"
                );
                Body::Gossip(
                    body.chunks(GOSSIP_LEN)
                        .take(count)
                        .map(|g| Gossip {
                            id: name_at(&g[..40]),
                            ping_sent: u32_at(g, 40),
                            pong_received: u32_at(g, 44),
                            ip: name_at(&g[48..94]),
                            port: u16_at(g, 94),
                            cport: u16_at(g, 96),
                            flags: u16_at(g, 98),
                        })
                        .collect(),
                )
            }
            kind::FAIL => {
                ensure!(body.len() >= NAME_LEN, "FAIL without a node name");
                Body::Fail(name_at(&body[..NAME_LEN]))
            }
            kind::UPDATE => {
                ensure!(body.len() >= 8 + NAME_LEN + SLOT_BYTES, "UPDATE cut short");
                let mut s = Box::new([0u8; SLOT_BYTES]);
                s.copy_from_slice(&body[48..48 + SLOT_BYTES]);
                Body::Update {
                    config_epoch: u64_at(body, 0),
                    id: name_at(&body[8..48]),
                    slots: s,
                }
            }
            _ => Body::Empty,
        };
        Ok(Message {
            kind,
            port: u16_at(b, 10),
            current_epoch: u64_at(b, 16),
            config_epoch: u64_at(b, 24),
            offset: u64_at(b, 32),
            sender: name_at(&b[40..80]),
            slots,
            replicaof: if replicaof.iter().all(|&c| c == 0) {
                None
            } else {
                Some(name_at(replicaof))
            },
            myip: name_at(&b[2168..2214]),
            cport: u16_at(b, 2248),
            flags: u16_at(b, 2250),
            state: b[2252],
            mflags: b[2253],
            body,
        })
    }
}

/// The length of the message at the start of `buf`, once its first 8 bytes are there.
///
/// # Errors
/// When the bytes are not the bus (bad signature or impossible length).
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>> {
    if buf.len() < 8 {
        return Ok(None);
    }
    if &buf[..4] != b"RCmb" {
        bail!("bad cluster bus signature {:?}", &buf[..4]);
    }
    let len = u32_at(buf, 4) as usize;
    ensure!(
        (HEADER_LEN..=(64 << 20)).contains(&len),
        "impossible bus message length {len}"
    );
    Ok(Some(len))
}
