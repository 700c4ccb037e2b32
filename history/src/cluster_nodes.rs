//! Parsing the text of a `CLUSTER NODES` reply: one node per line,
//! `<id> <ip:port@cport[,hostname]> <flags> <primary-id|-> <ping-sent> <pong-recv>
//! <config-epoch> <link-state> <slot>...`.
//!
//! Both the orchestrator (waiting for a cluster to agree) and the topology checkers read
//! these views, so the parser lives here, beside the formats it serves.

use std::collections::BTreeMap;

/// Number of hash slots in a Redis Cluster.
pub const SLOTS: usize = 16384;

/// One line of a `CLUSTER NODES` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLine {
    /// The 40-hex-character node id.
    pub id: String,
    /// `ip:port` clients use (the part before `@`).
    pub addr: String,
    /// The cluster bus port (after `@`), when present.
    pub bus_port: Option<u16>,
    /// Flags as printed (`myself`, `master`, `slave`, `fail?`, `fail`, `handshake`, ...).
    pub flags: Vec<String>,
    /// The id of the primary this node replicates, if it is a replica.
    pub primary_id: Option<String>,
    /// The node's config epoch as this view knows it.
    pub config_epoch: u64,
    /// `connected` or `disconnected`.
    pub link_connected: bool,
    /// Slot ranges (inclusive) this view lists on the node; importing/migrating markers
    /// are left out.
    pub slots: Vec<(u16, u16)>,
}

impl NodeLine {
    /// Whether the line carries a flag.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// Primary in this view (`master`, or Valkey's `primary`).
    pub fn is_primary(&self) -> bool {
        self.has_flag("master") || self.has_flag("primary")
    }

    /// Replica in this view (`slave`, or `replica`).
    pub fn is_replica(&self) -> bool {
        self.has_flag("slave") || self.has_flag("replica")
    }

    /// The line describing the node that produced the reply.
    pub fn is_myself(&self) -> bool {
        self.has_flag("myself")
    }

    /// Marked failed (`fail`) or suspected (`fail?`).
    pub fn is_failing(&self) -> bool {
        self.has_flag("fail") || self.has_flag("fail?")
    }

    /// Still being introduced (`handshake`) or without an address (`noaddr`).
    pub fn is_unsettled(&self) -> bool {
        self.has_flag("handshake") || self.has_flag("noaddr")
    }

    /// How many slots the line lists.
    pub fn slot_count(&self) -> usize {
        self.slots
            .iter()
            .map(|(a, b)| usize::from(*b) - usize::from(*a) + 1)
            .sum()
    }
}

/// Why a reply could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("CLUSTER NODES line {line}: {message}: {text:?}")]
pub struct ParseError {
    /// 1-based line number within the reply.
    pub line: usize,
    /// What was wrong.
    pub message: String,
    /// The offending line.
    pub text: String,
}

/// A whole `CLUSTER NODES` reply: one node's view of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterView {
    /// The nodes, in reply order.
    pub nodes: Vec<NodeLine>,
}

impl ClusterView {
    /// Parses a raw reply.
    ///
    /// # Errors
    /// If a line has too few fields or a number does not parse.
    pub fn parse(text: &str) -> Result<ClusterView, ParseError> {
        let mut nodes = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let raw = raw.trim();
            if raw.is_empty() {
                continue;
            }
            nodes.push(parse_line(raw).map_err(|message| ParseError {
                line: i + 1,
                message,
                text: raw.to_string(),
            })?);
        }
        Ok(ClusterView { nodes })
    }

    /// The line flagged `myself`.
    pub fn myself(&self) -> Option<&NodeLine> {
        self.nodes.iter().find(|n| n.is_myself())
    }

    /// The line for a node id.
    pub fn node(&self, id: &str) -> Option<&NodeLine> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// Slot ownership in this view: for each slot, the id of the node flagged primary that
    /// lists it (`None` when no primary lists it). A slot listed on two primaries goes to
    /// the first in reply order; [`ClusterView::double_claims`] reports those.
    pub fn slot_owners(&self) -> Vec<Option<&str>> {
        let mut owners: Vec<Option<&str>> = vec![None; SLOTS];
        for n in self.nodes.iter().filter(|n| n.is_primary()) {
            for &(a, b) in &n.slots {
                for owner in &mut owners[usize::from(a)..=usize::from(b)] {
                    owner.get_or_insert(n.id.as_str());
                }
            }
        }
        owners
    }

    /// Slot map as ranges: `(first, last) -> owner id` for maximal runs of one owner.
    pub fn slot_ranges(&self) -> BTreeMap<(u16, u16), Option<String>> {
        let owners = self.slot_owners();
        let mut out = BTreeMap::new();
        let mut start = 0usize;
        for s in 1..=SLOTS {
            if s == SLOTS || owners[s] != owners[start] {
                out.insert(
                    (start as u16, (s - 1) as u16),
                    owners[start].map(str::to_string),
                );
                start = s;
            }
        }
        out
    }

    /// Number of slots no primary lists.
    pub fn unowned_slots(&self) -> usize {
        self.slot_owners().iter().filter(|o| o.is_none()).count()
    }
}

fn parse_line(raw: &str) -> Result<NodeLine, String> {
    let fields: Vec<&str> = raw.split_ascii_whitespace().collect();
    if fields.len() < 8 {
        return Err(format!(
            "expected at least 8 fields, found {}",
            fields.len()
        ));
    }
    let (addr_part, _hostname) = match fields[1].split_once(',') {
        Some((a, h)) => (a, Some(h)),
        None => (fields[1], None),
    };
    let (addr, bus_port) = match addr_part.split_once('@') {
        Some((a, b)) => (
            a.to_string(),
            Some(b.parse().map_err(|_| format!("bad bus port {b:?}"))?),
        ),
        None => (addr_part.to_string(), None),
    };
    let flags = fields[2].split(',').map(str::to_string).collect();
    let primary_id = (fields[3] != "-").then(|| fields[3].to_string());
    let config_epoch = fields[6]
        .parse()
        .map_err(|_| format!("bad config epoch {:?}", fields[6]))?;
    let mut slots = Vec::new();
    for s in &fields[8..] {
        if s.starts_with('[') {
            continue; // [slot->-id] migrating / [slot-<-id] importing
        }
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let a: u16 = a.parse().map_err(|_| format!("bad slot {s:?}"))?;
        let b: u16 = b.parse().map_err(|_| format!("bad slot {s:?}"))?;
        if a > b || usize::from(b) >= SLOTS {
            return Err(format!("bad slot range {s:?}"));
        }
        slots.push((a, b));
    }
    Ok(NodeLine {
        id: fields[0].to_string(),
        addr,
        bus_port,
        flags,
        primary_id,
        config_epoch,
        link_connected: fields[7] == "connected",
        slots,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIEW: &str = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,hostname4 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002,hostname2 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003,hostname3 master - 0 1426238318243 3 connected 10923-16383
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001,hostname1 myself,master - 0 0 1 connected 0-5460 [5461->-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]
";

    #[test]
    fn parses_a_full_view() {
        let v = ClusterView::parse(VIEW).unwrap();
        assert_eq!(v.nodes.len(), 4);
        let me = v.myself().unwrap();
        assert_eq!(me.addr, "127.0.0.1:30001");
        assert_eq!(me.bus_port, Some(31001));
        assert_eq!(me.slots, vec![(0, 5460)]);
        assert!(v.nodes[0].is_replica());
        assert_eq!(
            v.nodes[0].primary_id.as_deref(),
            Some("e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca")
        );
        assert_eq!(v.unowned_slots(), 0);
        assert_eq!(v.slot_ranges().len(), 3);
    }

    #[test]
    fn slots_on_a_replica_are_unowned() {
        let text = VIEW.replace("myself,master", "myself,slave");
        let v = ClusterView::parse(&text).unwrap();
        assert_eq!(v.unowned_slots(), 5461);
    }

    #[test]
    fn short_line_is_an_error() {
        let err = ClusterView::parse("abc 1.2.3.4:5@6 master").unwrap_err();
        assert_eq!(err.line, 1);
    }
}
