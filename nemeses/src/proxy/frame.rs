//! Cluster bus frames: cutting a byte stream into messages and reading their headers.
//!
//! Every bus message starts with the same header (`clusterMsg` in Redis 7.0's
//! `src/cluster.h`, Valkey 8.0's `src/cluster_legacy.h`; both pin the offsets with
//! `static_assert`s), big-endian:
//!
//! | offset | field | | offset | field |
//! |---|---|---|---|---|
//! | 0 | `"RCmb"` | | 80 | myslots (2048-byte bitmap) |
//! | 4 | totlen u32 (whole message) | | 2128 | replicaof (40 hex, zeros = none) |
//! | 8 | ver u16 | | 2168 | myip (46, NUL-padded; empty unless announced) |
//! | 10 | port u16 (client port) | | 2214 | extensions u16 |
//! | 12 | type u16 | | 2246 | pport u16 |
//! | 14 | count u16 (gossip sections) | | 2248 | cport u16 (bus port the sender announces) |
//! | 16 | currentEpoch u64 | | 2250 | flags u16 |
//! | 24 | configEpoch u64 | | 2252 | state u8 |
//! | 32 | offset u64 | | 2253 | mflags [u8; 3] |
//! | 40 | sender (40 hex) | | 2256 | message data |
//!
//! Valkey 8 also sends a *light* header (`clusterMsgLight`) for PUBLISH and module
//! messages to peers that support it: the type carries bit `0x8000`, offsets 10 and 14 are
//! unused, and the data starts at 16; there is no sender (the link says who it is).
//!
//! [`Framer`] never changes a byte. When the stream does not look like the bus (a bad
//! signature or an impossible length), it stops framing and hands everything on as
//! [`Chunk::Raw`], so a proxy built on it stays transparent whatever arrives.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `"RCmb"`: Redis Cluster message bus.
pub const SIGNATURE: &[u8; 4] = b"RCmb";
/// Bytes of the full header (`CLUSTERMSG_MIN_LEN`): a full message is at least this long.
pub const HEADER_LEN: usize = 2256;
/// Bytes of the light header (`CLUSTERMSG_LIGHT_MIN_LEN`), the shortest valid message.
pub const LIGHT_HEADER_LEN: usize = 16;
/// The type bit Valkey sets on light headers (`CLUSTERMSG_LIGHT`).
pub const LIGHT_BIT: u16 = 0x8000;
/// Messages longer than this are taken as a sign the stream is not the bus. Real ones
/// are a few KiB (a PING with gossip) up to the size of a published message.
pub const MAX_FRAME_LEN: usize = 512 << 20;

/// Node flag bits (`CLUSTER_NODE_*`) as carried at offset 2250.
pub mod flags {
    /// `master`: a primary.
    pub const PRIMARY: u16 = 1;
    /// `slave`: a replica.
    pub const REPLICA: u16 = 2;
    /// `fail?`: suspected by whoever reports it (seen in gossip sections).
    pub const PFAIL: u16 = 4;
    /// `fail`.
    pub const FAIL: u16 = 8;
    /// `myself`.
    pub const MYSELF: u16 = 16;
    /// `handshake`.
    pub const HANDSHAKE: u16 = 32;
    /// `noaddr`.
    pub const NOADDR: u16 = 64;
    /// `meet`.
    pub const MEET: u16 = 128;
    /// `nofailover`.
    pub const NOFAILOVER: u16 = 512;
}

/// A bus message type (`CLUSTERMSG_TYPE_*`), without the light bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MsgType {
    /// 0: liveness probe carrying the sender's view and gossip.
    Ping,
    /// 1: the reply to PING or MEET, same layout.
    Pong,
    /// 2: a PING that makes the receiver add the sender.
    Meet,
    /// 3: "node X has failed", broadcast once a majority agrees.
    Fail,
    /// 4: Pub/Sub message propagation.
    Publish,
    /// 5: a replica asks primaries for their vote.
    FailoverAuthRequest,
    /// 6: a primary's vote.
    FailoverAuthAck,
    /// 7: "your slot map is stale": a newer owner's config.
    Update,
    /// 8: a replica asks its primary to pause clients for a manual failover.
    MfStart,
    /// 9: module message.
    Module,
    /// 10: sharded Pub/Sub propagation.
    PublishShard,
    /// A type this parser does not know.
    Other(u16),
}

impl MsgType {
    /// Every known type, in wire order.
    pub const KNOWN: [MsgType; 11] = [
        MsgType::Ping,
        MsgType::Pong,
        MsgType::Meet,
        MsgType::Fail,
        MsgType::Publish,
        MsgType::FailoverAuthRequest,
        MsgType::FailoverAuthAck,
        MsgType::Update,
        MsgType::MfStart,
        MsgType::Module,
        MsgType::PublishShard,
    ];

    /// The type for a wire value (the light bit must already be cleared).
    pub fn from_wire(v: u16) -> MsgType {
        MsgType::KNOWN
            .get(usize::from(v))
            .copied()
            .unwrap_or(MsgType::Other(v))
    }

    /// The wire value.
    pub fn wire(self) -> u16 {
        match self {
            MsgType::Other(v) => v,
            known => MsgType::KNOWN.iter().position(|k| *k == known).unwrap_or(0) as u16,
        }
    }

    /// The name used in scenarios and the history (`pong`, `failover-auth-request`).
    pub fn name(self) -> String {
        match self {
            MsgType::Ping => "ping".into(),
            MsgType::Pong => "pong".into(),
            MsgType::Meet => "meet".into(),
            MsgType::Fail => "fail".into(),
            MsgType::Publish => "publish".into(),
            MsgType::FailoverAuthRequest => "failover-auth-request".into(),
            MsgType::FailoverAuthAck => "failover-auth-ack".into(),
            MsgType::Update => "update".into(),
            MsgType::MfStart => "mfstart".into(),
            MsgType::Module => "module".into(),
            MsgType::PublishShard => "publishshard".into(),
            MsgType::Other(v) => format!("type-{v}"),
        }
    }
}

impl fmt::Display for MsgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl FromStr for MsgType {
    type Err = String;

    fn from_str(s: &str) -> Result<MsgType, String> {
        if let Some(known) = MsgType::KNOWN.iter().find(|k| k.name() == s) {
            return Ok(*known);
        }
        if let Some(v) = s.strip_prefix("type-").and_then(|d| d.parse::<u16>().ok()) {
            return Ok(MsgType::from_wire(v & !LIGHT_BIT));
        }
        let names: Vec<String> = MsgType::KNOWN.iter().map(|k| k.name()).collect();
        Err(format!(
            "unknown bus message type {s:?}; use one of {}",
            names.join(", ")
        ))
    }
}

impl Serialize for MsgType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl<'de> Deserialize<'de> for MsgType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a bus header says. Fields past the type exist only in full headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Length of the whole message, header included.
    pub totlen: u32,
    /// Protocol version (1).
    pub ver: u16,
    /// The type field as sent, light bit included.
    pub raw_type: u16,
    /// The message type, light bit removed.
    pub msg_type: MsgType,
    /// A Valkey light header: no sender, no epochs, no slots.
    pub light: bool,
    /// The rest of a full header; `None` for light headers, and for a message too short to
    /// hold one (the receiver will reject it; the proxy still forwards it whole).
    pub full: Option<FullHeader>,
}

/// The fields only a full header has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullHeader {
    /// The sender's client port.
    pub port: u16,
    /// Number of gossip sections (PING/PONG/MEET) or other per-type count.
    pub count: u16,
    /// The sender's current epoch.
    pub current_epoch: u64,
    /// The sender's config epoch (its primary's, for a replica).
    pub config_epoch: u64,
    /// Replication offset.
    pub offset: u64,
    /// The sender's node id (40 hex characters).
    pub sender: String,
    /// Slots the sender claims (its primary's, for a replica), as inclusive ranges.
    pub slots: Vec<(u16, u16)>,
    /// The node id of the sender's primary, if it says it is a replica.
    pub replicaof: Option<String>,
    /// The sender's announced address; `None` unless `cluster-announce-ip` is set.
    pub myip: Option<String>,
    /// Number of ping extensions.
    pub extensions: u16,
    /// The sender's secondary (TLS or plain) client port.
    pub pport: u16,
    /// The cluster bus port the sender announces: where peers connect to it.
    pub cport: u16,
    /// The sender's node flags ([`flags`]).
    pub flags: u16,
    /// The sender's view of the cluster state (0 ok, 1 fail).
    pub state: u8,
    /// Message flags (`CLUSTERMSG_FLAG0_PAUSED` = 1, `FORCEACK` = 2, `EXT_DATA` = 4 in
    /// the first byte).
    pub mflags: [u8; 3],
}

impl FullHeader {
    /// Whether the sender says it is a primary.
    pub fn is_primary(&self) -> bool {
        self.flags & flags::PRIMARY != 0
    }

    /// Whether the sender says it is a replica.
    pub fn is_replica(&self) -> bool {
        self.flags & flags::REPLICA != 0
    }
}

impl Header {
    /// Reads the header of one complete message (`bytes.len()` is its totlen). `None` if
    /// it is shorter than a light header or the signature is wrong.
    pub fn parse(bytes: &[u8]) -> Option<Header> {
        if bytes.len() < LIGHT_HEADER_LEN || &bytes[..4] != SIGNATURE {
            return None;
        }
        let raw_type = be16(bytes, 12);
        let light = raw_type & LIGHT_BIT != 0;
        let full = (!light && bytes.len() >= HEADER_LEN).then(|| FullHeader {
            port: be16(bytes, 10),
            count: be16(bytes, 14),
            current_epoch: be64(bytes, 16),
            config_epoch: be64(bytes, 24),
            offset: be64(bytes, 32),
            sender: name(&bytes[40..80]).unwrap_or_default(),
            slots: slot_ranges(&bytes[80..2128]),
            replicaof: name(&bytes[2128..2168]),
            myip: name(&bytes[2168..2214]),
            extensions: be16(bytes, 2214),
            pport: be16(bytes, 2246),
            cport: be16(bytes, 2248),
            flags: be16(bytes, 2250),
            state: bytes[2252],
            mflags: [bytes[2253], bytes[2254], bytes[2255]],
        });
        Some(Header {
            totlen: be32(bytes, 4),
            ver: be16(bytes, 8),
            raw_type,
            msg_type: MsgType::from_wire(raw_type & !LIGHT_BIT),
            light,
            full,
        })
    }

    /// The sender's client port, where the header carries it (full headers).
    pub fn port(&self) -> Option<u16> {
        self.full.as_ref().map(|f| f.port)
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// A NUL-padded text field; `None` when empty (all zeros means "none" on the bus).
fn name(field: &[u8]) -> Option<String> {
    let end = field.iter().position(|&c| c == 0).unwrap_or(field.len());
    (end > 0).then(|| String::from_utf8_lossy(&field[..end]).into_owned())
}

/// The set bits of a slot bitmap (slot `s` is bit `s & 7` of byte `s >> 3`, as
/// `bitmapTestBit` reads it) as inclusive ranges.
fn slot_ranges(bitmap: &[u8]) -> Vec<(u16, u16)> {
    let mut ranges = Vec::new();
    let mut start: Option<u16> = None;
    for (i, &byte) in bitmap.iter().enumerate() {
        if byte == 0 && start.is_none() {
            continue;
        }
        for bit in 0..8u16 {
            let slot = (i as u16) * 8 + bit;
            let set = byte & (1 << bit) != 0;
            match (set, start) {
                (true, None) => start = Some(slot),
                (false, Some(s)) => {
                    ranges.push((s, slot - 1));
                    start = None;
                }
                _ => {}
            }
        }
    }
    if let Some(s) = start {
        ranges.push((s, (bitmap.len() * 8 - 1) as u16));
    }
    ranges
}

/// One complete message, exactly as it was received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The message's bytes, header included.
    pub bytes: Vec<u8>,
    /// Its header, if one could be read.
    pub header: Option<Header>,
}

/// What the framer hands on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    /// A whole message.
    Frame(Frame),
    /// Bytes passed on as they are, once the stream stopped looking like the bus.
    Raw(Vec<u8>),
}

/// Cuts a byte stream into messages, as they arrive in pieces of any size.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    raw: bool,
}

impl Framer {
    /// A framer at the start of a stream.
    pub fn new() -> Framer {
        Framer::default()
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Whether the framer has given up on framing (a bad signature or length) and now
    /// passes everything through raw.
    pub fn is_raw(&self) -> bool {
        self.raw
    }

    /// Bytes received but not yet handed on (part of a message).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete message, or raw bytes, or `None` until more bytes arrive.
    pub fn next_chunk(&mut self) -> Option<Chunk> {
        if self.raw {
            return (!self.buf.is_empty()).then(|| Chunk::Raw(std::mem::take(&mut self.buf)));
        }
        let seen = self.buf.len().min(4);
        if self.buf[..seen] != SIGNATURE[..seen] {
            return self.give_up();
        }
        if self.buf.len() < 8 {
            return None;
        }
        let totlen = be32(&self.buf, 4) as usize;
        if !(LIGHT_HEADER_LEN..=MAX_FRAME_LEN).contains(&totlen) {
            return self.give_up();
        }
        if self.buf.len() < totlen {
            return None;
        }
        let rest = self.buf.split_off(totlen);
        let bytes = std::mem::replace(&mut self.buf, rest);
        let header = Header::parse(&bytes);
        Some(Chunk::Frame(Frame { bytes, header }))
    }

    fn give_up(&mut self) -> Option<Chunk> {
        self.raw = true;
        self.next_chunk()
    }
}

/// Builds message bytes for tests and tools: a full header with the given fields, or a
/// light one, padded to `totlen`.
#[derive(Debug, Clone)]
pub struct FrameBuilder {
    /// Type, light bit included if wanted.
    pub raw_type: u16,
    /// Client port.
    pub port: u16,
    /// Gossip count.
    pub count: u16,
    /// currentEpoch.
    pub current_epoch: u64,
    /// configEpoch.
    pub config_epoch: u64,
    /// Replication offset.
    pub offset: u64,
    /// Sender id (40 hex).
    pub sender: String,
    /// Claimed slots, inclusive ranges.
    pub slots: Vec<(u16, u16)>,
    /// Primary's id.
    pub replicaof: Option<String>,
    /// Announced address.
    pub myip: Option<String>,
    /// Announced bus port.
    pub cport: u16,
    /// Node flags.
    pub flags: u16,
    /// Bytes of message data after the header.
    pub data_len: usize,
}

impl Default for FrameBuilder {
    fn default() -> Self {
        FrameBuilder {
            raw_type: 0,
            port: 6379,
            count: 0,
            current_epoch: 0,
            config_epoch: 0,
            offset: 0,
            sender: "0".repeat(40),
            slots: Vec::new(),
            replicaof: None,
            myip: None,
            cport: 16379,
            flags: flags::PRIMARY,
            data_len: 0,
        }
    }
}

impl FrameBuilder {
    /// A full-header message of `msg_type` from `sender`.
    pub fn new(msg_type: MsgType, sender: &str) -> FrameBuilder {
        FrameBuilder {
            raw_type: msg_type.wire(),
            sender: sender.to_string(),
            ..FrameBuilder::default()
        }
    }

    /// The message bytes. A light type (bit `0x8000`) gets the 16-byte light header.
    pub fn build(&self) -> Vec<u8> {
        let light = self.raw_type & LIGHT_BIT != 0;
        let header = if light { LIGHT_HEADER_LEN } else { HEADER_LEN };
        let totlen = header + self.data_len;
        let mut b = vec![0u8; totlen];
        b[..4].copy_from_slice(SIGNATURE);
        b[4..8].copy_from_slice(&(totlen as u32).to_be_bytes());
        b[8..10].copy_from_slice(&1u16.to_be_bytes());
        b[12..14].copy_from_slice(&self.raw_type.to_be_bytes());
        if light {
            return b;
        }
        b[10..12].copy_from_slice(&self.port.to_be_bytes());
        b[14..16].copy_from_slice(&self.count.to_be_bytes());
        b[16..24].copy_from_slice(&self.current_epoch.to_be_bytes());
        b[24..32].copy_from_slice(&self.config_epoch.to_be_bytes());
        b[32..40].copy_from_slice(&self.offset.to_be_bytes());
        put(&mut b[40..80], &self.sender);
        for &(a, z) in &self.slots {
            for s in a..=z {
                b[80 + usize::from(s >> 3)] |= 1 << (s & 7);
            }
        }
        if let Some(r) = &self.replicaof {
            put(&mut b[2128..2168], r);
        }
        if let Some(ip) = &self.myip {
            put(&mut b[2168..2214], ip);
        }
        b[2248..2250].copy_from_slice(&self.cport.to_be_bytes());
        b[2250..2252].copy_from_slice(&self.flags.to_be_bytes());
        b
    }
}

fn put(field: &mut [u8], text: &str) {
    let n = text.len().min(field.len());
    field[..n].copy_from_slice(&text.as_bytes()[..n]);
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn pong() -> FrameBuilder {
        FrameBuilder {
            port: 6380,
            count: 2,
            current_epoch: 7,
            config_epoch: 5,
            offset: 1234,
            slots: vec![(0, 5460), (16383, 16383)],
            replicaof: None,
            myip: Some("10.77.3.12".into()),
            cport: 17379,
            flags: flags::PRIMARY | flags::MYSELF,
            data_len: 2 * 104,
            ..FrameBuilder::new(MsgType::Pong, A)
        }
    }

    fn frames(chunks: Vec<Chunk>) -> Vec<Frame> {
        chunks
            .into_iter()
            .map(|c| match c {
                Chunk::Frame(f) => f,
                Chunk::Raw(r) => panic!("unexpected raw chunk of {} bytes", r.len()),
            })
            .collect()
    }

    fn drain(f: &mut Framer) -> Vec<Chunk> {
        std::iter::from_fn(|| f.next_chunk()).collect()
    }

    #[test]
    fn a_full_header_reads_every_field_at_its_offset() {
        let bytes = pong().build();
        assert_eq!(bytes.len(), HEADER_LEN + 208);
        let h = Header::parse(&bytes).unwrap();
        assert_eq!(h.totlen as usize, bytes.len());
        assert_eq!(h.ver, 1);
        assert_eq!(h.msg_type, MsgType::Pong);
        assert!(!h.light);
        let f = h.full.clone().unwrap();
        assert_eq!(f.port, 6380);
        assert_eq!(h.port(), Some(6380));
        assert_eq!(f.count, 2);
        assert_eq!(f.current_epoch, 7);
        assert_eq!(f.config_epoch, 5);
        assert_eq!(f.offset, 1234);
        assert_eq!(f.sender, A);
        assert_eq!(f.slots, vec![(0, 5460), (16383, 16383)]);
        assert_eq!(f.replicaof, None);
        assert_eq!(f.myip.as_deref(), Some("10.77.3.12"));
        assert_eq!(f.cport, 17379);
        assert!(f.is_primary() && !f.is_replica());
        // Offsets by hand, independent of the builder: sender at 40, flags at 2250.
        assert_eq!(&bytes[40..44], b"aaaa");
        assert_eq!(
            &bytes[2250..2252],
            &(flags::PRIMARY | flags::MYSELF).to_be_bytes()
        );
        assert_eq!(&bytes[16..24], &7u64.to_be_bytes());
    }

    #[test]
    fn a_replica_names_its_primary() {
        let bytes = FrameBuilder {
            replicaof: Some(B.into()),
            flags: flags::REPLICA,
            ..FrameBuilder::new(MsgType::Ping, A)
        }
        .build();
        let f = Header::parse(&bytes).unwrap().full.unwrap();
        assert_eq!(f.replicaof.as_deref(), Some(B));
        assert!(f.is_replica());
        assert_eq!(f.myip, None, "all zeros: not announced");
        assert!(f.slots.is_empty());
    }

    #[test]
    fn a_light_header_has_a_type_and_nothing_else() {
        let bytes = FrameBuilder {
            raw_type: MsgType::Publish.wire() | LIGHT_BIT,
            data_len: 40,
            ..FrameBuilder::default()
        }
        .build();
        assert_eq!(bytes.len(), 56);
        let h = Header::parse(&bytes).unwrap();
        assert!(h.light);
        assert_eq!(h.msg_type, MsgType::Publish);
        assert_eq!(h.raw_type, 0x8004);
        assert_eq!(h.full, None);
        assert_eq!(h.port(), None);

        let mut f = Framer::new();
        f.push(&bytes);
        f.push(&pong().build());
        let got = frames(drain(&mut f));
        assert_eq!(got.len(), 2, "a light message is framed by its totlen");
        assert_eq!(got[0].bytes, bytes);
        assert_eq!(got[1].header.as_ref().unwrap().msg_type, MsgType::Pong);
    }

    #[test]
    fn partial_reads_of_any_size_give_the_same_frames() {
        let mut stream = Vec::new();
        let mut expect = Vec::new();
        for (i, t) in [MsgType::Ping, MsgType::Pong, MsgType::Fail, MsgType::Update]
            .into_iter()
            .enumerate()
        {
            let b = FrameBuilder {
                current_epoch: i as u64,
                data_len: i * 50,
                ..FrameBuilder::new(t, A)
            }
            .build();
            stream.extend_from_slice(&b);
            expect.push(b);
        }
        for piece in [1, 3, 4, 7, 8, 100, 2255, 2256, 2257, 5000, stream.len()] {
            let mut f = Framer::new();
            let mut got = Vec::new();
            for part in stream.chunks(piece) {
                f.push(part);
                got.extend(frames(drain(&mut f)));
            }
            assert_eq!(f.buffered(), 0, "piece {piece}");
            assert!(!f.is_raw());
            let bytes: Vec<Vec<u8>> = got.iter().map(|g| g.bytes.clone()).collect();
            assert_eq!(bytes, expect, "piece {piece}");
            for (i, g) in got.iter().enumerate() {
                let h = g.header.as_ref().unwrap();
                assert_eq!(h.full.as_ref().unwrap().current_epoch, i as u64);
            }
        }
    }

    #[test]
    fn nothing_is_handed_on_before_the_whole_message_arrived() {
        let b = pong().build();
        let mut f = Framer::new();
        f.push(&b[..b.len() - 1]);
        assert_eq!(f.next_chunk(), None);
        assert_eq!(f.buffered(), b.len() - 1);
        f.push(&b[b.len() - 1..]);
        assert!(matches!(f.next_chunk(), Some(Chunk::Frame(_))));
        assert_eq!(f.next_chunk(), None);
    }

    #[test]
    fn a_bad_signature_turns_the_rest_of_the_stream_raw_and_unchanged() {
        let good = pong().build();
        let mut bad = FrameBuilder::new(MsgType::Ping, B).build();
        bad[..4].copy_from_slice(b"RCmX");
        let mut stream = good.clone();
        stream.extend_from_slice(&bad);
        stream.extend_from_slice(&good);
        for piece in [2, 5, 1000, stream.len()] {
            let mut f = Framer::new();
            let mut chunks = Vec::new();
            for part in stream.chunks(piece) {
                f.push(part);
                chunks.extend(drain(&mut f));
            }
            let Chunk::Frame(first) = &chunks[0] else {
                panic!("the message before the bad one is framed")
            };
            assert_eq!(first.bytes, good);
            let mut out = first.bytes.clone();
            for c in &chunks[1..] {
                match c {
                    Chunk::Raw(r) => out.extend_from_slice(r),
                    Chunk::Frame(_) => panic!("framing resumed after a bad signature"),
                }
            }
            assert_eq!(out, stream, "every byte passes, in order (piece {piece})");
            assert!(f.is_raw());
        }
    }

    #[test]
    fn garbage_from_the_first_byte_is_raw_at_once() {
        let mut f = Framer::new();
        f.push(b"G");
        assert_eq!(f.next_chunk(), Some(Chunk::Raw(b"G".to_vec())));
        f.push(b"ET / HTTP/1.1\r\n");
        assert_eq!(
            f.next_chunk(),
            Some(Chunk::Raw(b"ET / HTTP/1.1\r\n".to_vec()))
        );
        // A prefix of the signature is not judged too early.
        let mut g = Framer::new();
        g.push(b"RC");
        assert_eq!(g.next_chunk(), None);
        assert!(!g.is_raw());
    }

    #[test]
    fn an_impossible_length_is_raw() {
        for totlen in [0u32, 8, 15, (MAX_FRAME_LEN + 1) as u32] {
            let mut b = pong().build();
            b[4..8].copy_from_slice(&totlen.to_be_bytes());
            let mut f = Framer::new();
            f.push(&b);
            assert_eq!(f.next_chunk(), Some(Chunk::Raw(b.clone())), "{totlen}");
        }
    }

    #[test]
    fn a_short_full_message_is_forwarded_whole_without_a_full_header() {
        let mut b = vec![0u8; 100];
        b[..4].copy_from_slice(SIGNATURE);
        b[4..8].copy_from_slice(&100u32.to_be_bytes());
        b[12..14].copy_from_slice(&1u16.to_be_bytes());
        let mut f = Framer::new();
        f.push(&b);
        let got = frames(drain(&mut f));
        assert_eq!(got[0].bytes, b);
        let h = got[0].header.clone().unwrap();
        assert_eq!(h.msg_type, MsgType::Pong);
        assert_eq!(h.full, None);
    }

    #[test]
    fn types_have_names_both_ways() {
        for t in MsgType::KNOWN {
            assert_eq!(MsgType::from_wire(t.wire()), t);
            assert_eq!(t.name().parse::<MsgType>().unwrap(), t);
        }
        assert_eq!(MsgType::from_wire(42), MsgType::Other(42));
        assert_eq!("type-42".parse::<MsgType>().unwrap(), MsgType::Other(42));
        assert_eq!(MsgType::FailoverAuthAck.wire(), 6);
        assert_eq!(MsgType::PublishShard.wire(), 10);
        let err = "pongs".parse::<MsgType>().unwrap_err();
        assert!(err.contains("pong"), "{err}");
    }

    #[test]
    fn slot_ranges_cover_edges() {
        let mut bm = vec![0u8; 2048];
        assert!(slot_ranges(&bm).is_empty());
        bm.iter_mut().for_each(|b| *b = 0xff);
        assert_eq!(slot_ranges(&bm), vec![(0, 16383)]);
        let mut bm = vec![0u8; 2048];
        bm[0] = 0b1000_0001;
        bm[2047] = 0b1000_0000;
        assert_eq!(slot_ranges(&bm), vec![(0, 0), (7, 7), (16383, 16383)]);
    }
}
