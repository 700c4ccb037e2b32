//! Cluster mode: the slot map, the view of every node, epochs, and the bus.
//!
//! - [`Cluster`] (here): the data, slot ownership helpers, `CLUSTER NODES`-style lines,
//!   and nodes.conf (written on every config change, read at start).
//! - [`peer`]: a node as known here, and the outbound link to it.
//! - [`message`]: the bus message format (Redis's `clusterMsg`).
//! - [`gossip`]: what a received message changes (roles, slots, epochs, failure
//!   reports, FAIL, UPDATE, votes): the receiver side of the protocol.
//! - [`cron`]: every 100 ms: links, PINGs, PFAIL, FAIL by majority, replica elections
//!   with rank delay, manual failover, cluster state.
//! - [`send`]: building messages and queueing them on links.
//! - [`commands`]: `CLUSTER ...`.
//! - [`bus`]: the bus port's listener and the link tasks (I/O only).

pub mod bus;
pub mod commands;
pub mod cron;
pub mod gossip;
pub mod message;
pub mod peer;
pub mod send;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, Result};
use rand::Rng;

use crate::slot::SLOTS;
use crate::state::{now_ms, State};
use message::{flag, set_slot_bit, SLOT_BYTES};
use peer::Peer;

/// A random 40-hex-digit node id.
pub fn random_id() -> String {
    let mut rng = rand::rng();
    (0..40)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0'))
        .collect()
}

/// Manual failover state (`CLUSTER FAILOVER`), on the replica that runs it and on the
/// primary that pauses for it.
#[derive(Debug, Default)]
pub struct ManualFailover {
    /// Deadline (ms); 0 when none is in progress.
    pub end: u64,
    /// Primary side: the replica that asked (MFSTART).
    pub replica: Option<String>,
    /// Replica side: the offset the paused primary reported.
    pub primary_offset: Option<u64>,
    /// Replica side: caught up (or FORCE): the election may start.
    pub can_start: bool,
}

/// An election this replica runs.
#[derive(Debug, Default)]
pub struct Election {
    /// When the election starts / started (ms); 0 none scheduled.
    pub auth_time: u64,
    /// Votes received.
    pub auth_count: usize,
    /// Whether the request went out.
    pub auth_sent: bool,
    /// Rank among the primary's replicas (0 = most data).
    pub rank: usize,
    /// The epoch the request was made in.
    pub auth_epoch: u64,
}

/// The cluster view.
pub struct Cluster {
    /// This node's id.
    pub myid: String,
    /// Every known node, this one included.
    pub nodes: BTreeMap<String, Peer>,
    /// Owner of each slot.
    pub slots: Vec<Option<String>>,
    /// Slots being migrated away: slot -> target id.
    pub migrating: HashMap<u16, String>,
    /// Slots being imported: slot -> source id.
    pub importing: HashMap<u16, String>,
    /// The cluster's current epoch as known here.
    pub current_epoch: u64,
    /// The epoch this node last voted in.
    pub last_vote_epoch: u64,
    /// `cluster_state:ok`.
    pub state_ok: bool,
    /// Replica election.
    pub election: Election,
    /// Manual failover.
    pub mf: ManualFailover,
    /// `cluster-node-timeout`, ms.
    pub node_timeout: u64,
    /// Config changed since nodes.conf was written.
    pub todo_save: bool,
    /// Next link number.
    pub next_link: u64,
    /// Cron iterations.
    pub iteration: u64,
    /// Loaded from nodes.conf as a primary with slots (bug switch failback-keeps-old-config).
    pub restarted_as_primary: bool,
    /// Messages sent / received, for CLUSTER INFO.
    pub sent: u64,
    /// Messages received.
    pub received: u64,
}

impl Cluster {
    /// A fresh node, alone, with no slots.
    pub fn new(ip: String, port: u16, cport: u16, node_timeout: u64) -> Cluster {
        let myid = random_id();
        let mut nodes = BTreeMap::new();
        nodes.insert(
            myid.clone(),
            Peer::new(
                myid.clone(),
                ip,
                port,
                cport,
                flag::MYSELF | flag::PRIMARY,
                now_ms(),
            ),
        );
        Cluster {
            myid,
            nodes,
            slots: vec![None; SLOTS],
            migrating: HashMap::new(),
            importing: HashMap::new(),
            current_epoch: 0,
            last_vote_epoch: 0,
            state_ok: false,
            election: Election::default(),
            mf: ManualFailover::default(),
            node_timeout,
            todo_save: true,
            next_link: 0,
            restarted_as_primary: false,
            iteration: 0,
            sent: 0,
            received: 0,
        }
    }

    /// This node's entry.
    pub fn myself(&self) -> &Peer {
        &self.nodes[&self.myid]
    }

    /// This node's entry, mutable.
    pub fn myself_mut(&mut self) -> &mut Peer {
        self.nodes
            .get_mut(&self.myid)
            .expect("myself is always known")
    }

    /// The primary whose slots this node serves or replicates: itself, or its primary.
    pub fn shard_primary(&self) -> String {
        self.myself()
            .primary
            .clone()
            .unwrap_or_else(|| self.myid.clone())
    }

    /// Slots owned by `id`.
    pub fn slots_of(&self, id: &str) -> usize {
        self.slots
            .iter()
            .filter(|o| o.as_deref() == Some(id))
            .count()
    }

    /// The slot bitmap of `id`.
    pub fn bitmap_of(&self, id: &str) -> Box<[u8; SLOT_BYTES]> {
        let mut b = Box::new([0u8; SLOT_BYTES]);
        for (s, o) in self.slots.iter().enumerate() {
            if o.as_deref() == Some(id) {
                set_slot_bit(&mut b, s);
            }
        }
        b
    }

    /// Slot ranges of `id`, inclusive.
    pub fn ranges_of(&self, id: &str) -> Vec<(usize, usize)> {
        let mut out: Vec<(usize, usize)> = Vec::new();
        for (s, o) in self.slots.iter().enumerate() {
            if o.as_deref() == Some(id) {
                match out.last_mut() {
                    Some(r) if r.1 + 1 == s => r.1 = s,
                    _ => out.push((s, s)),
                }
            }
        }
        out
    }

    /// Primaries serving at least one slot (the cluster's size, for quorums).
    pub fn size(&self) -> usize {
        self.nodes
            .values()
            .filter(|n| n.is_primary() && self.slots_of(&n.id) > 0)
            .count()
    }

    /// Votes or failure reports needed: a majority of [`Cluster::size`].
    pub fn quorum(&self) -> usize {
        self.size() / 2 + 1
    }

    /// One `CLUSTER NODES` line.
    pub fn node_line(&self, n: &Peer) -> String {
        let link = if n.id == self.myid || n.link.as_ref().is_some_and(|l| l.connected) {
            "connected"
        } else {
            "disconnected"
        };
        // A replica is printed with its primary's config epoch (Redis's `nodeEpoch`).
        let epoch = n
            .primary
            .as_deref()
            .and_then(|p| self.nodes.get(p))
            .filter(|_| !n.is_primary())
            .map_or(n.config_epoch, |p| p.config_epoch);
        let mut line = format!(
            "{} {}:{}@{} {} {} {} {} {} {}",
            n.id,
            n.ip,
            n.port,
            n.cport,
            n.flag_text(),
            n.primary.as_deref().unwrap_or("-"),
            n.ping_sent,
            n.pong_received,
            epoch,
            link
        );
        for (a, b) in self.ranges_of(&n.id) {
            if a == b {
                line.push_str(&format!(" {a}"));
            } else {
                line.push_str(&format!(" {a}-{b}"));
            }
        }
        if n.id == self.myid {
            let mut m: Vec<_> = self.migrating.iter().collect();
            m.sort();
            for (s, to) in m {
                line.push_str(&format!(" [{s}->-{to}]"));
            }
            let mut i: Vec<_> = self.importing.iter().collect();
            i.sort();
            for (s, from) in i {
                line.push_str(&format!(" [{s}-<-{from}]"));
            }
        }
        line
    }

    /// The `CLUSTER NODES` reply (this node first, as Redis does not promise an order).
    pub fn nodes_text(&self) -> String {
        let mut out = String::new();
        out.push_str(&self.node_line(self.myself()));
        out.push('\n');
        for n in self.nodes.values().filter(|n| n.id != self.myid) {
            out.push_str(&self.node_line(n));
            out.push('\n');
        }
        out
    }

    /// Renames a node (a finished handshake reveals the real id).
    pub fn rename(&mut self, old: &str, new: &str) {
        if let Some(mut n) = self.nodes.remove(old) {
            n.id = new.to_string();
            self.nodes.insert(new.to_string(), n);
            for o in self.slots.iter_mut().filter(|o| o.as_deref() == Some(old)) {
                *o = Some(new.to_string());
            }
        }
    }

    /// Forgets a node: its entry, its slots, and references to it as a primary.
    pub fn remove(&mut self, id: &str) {
        self.nodes.remove(id);
        for o in self.slots.iter_mut().filter(|o| o.as_deref() == Some(id)) {
            *o = None;
        }
        for n in self.nodes.values_mut() {
            n.fail_reports.remove(id);
            if n.primary.as_deref() == Some(id) {
                n.primary = None;
            }
        }
    }
}

/// nodes.conf: the `CLUSTER NODES` lines, then `vars currentEpoch N lastVoteEpoch M`.
pub fn save_config(st: &mut State) -> Result<()> {
    let path = st.config.nodes_conf();
    let Some(c) = st.cluster.as_mut() else {
        return Ok(());
    };
    c.todo_save = false;
    let mut text = c.nodes_text();
    text.push_str(&format!(
        "vars currentEpoch {} lastVoteEpoch {}\n",
        c.current_epoch, c.last_vote_epoch
    ));
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// Writes nodes.conf if the config changed; a failure is logged (Redis exits; here the
/// run's evidence is more useful than a dead node).
pub fn flush_config(st: &mut State) {
    if st.cluster.as_ref().is_some_and(|c| c.todo_save) {
        if let Err(e) = save_config(st) {
            st.log('#', format!("Could not save nodes.conf: {e:#}"));
        }
    }
}

/// Reads nodes.conf if present: the node keeps its id, epochs, role and the slot map it
/// had (Redis's restart behaviour; the cluster then corrects it by epochs).
///
/// # Errors
/// When the file exists but cannot be parsed.
pub fn load_config(
    path: &Path,
    ip: &str,
    port: u16,
    cport: u16,
    node_timeout: u64,
) -> Result<Option<Cluster>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    if text.trim().is_empty() {
        return Ok(None);
    }
    let mut c = Cluster::new(ip.to_string(), port, cport, node_timeout);
    c.nodes.clear();
    let now = now_ms();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        if f[0] == "vars" {
            for pair in f[1..].chunks(2) {
                if let [k, v] = pair {
                    let v: u64 = v.parse().unwrap_or(0);
                    match *k {
                        "currentEpoch" => c.current_epoch = v,
                        "lastVoteEpoch" => c.last_vote_epoch = v,
                        _ => {}
                    }
                }
            }
            continue;
        }
        anyhow::ensure!(
            f.len() >= 8,
            "{} line {}: too few fields",
            path.display(),
            i + 1
        );
        let (addr, bus) = f[1].split_once('@').unwrap_or((f[1], "0"));
        let (nip, nport) = addr.rsplit_once(':').unwrap_or((addr, "0"));
        let bus = bus.split(',').next().unwrap_or("0");
        let mut flags = 0;
        for fl in f[2].split(',') {
            flags |= match fl {
                "myself" => flag::MYSELF,
                "master" => flag::PRIMARY,
                "slave" => flag::REPLICA,
                "fail" => flag::FAIL,
                "noaddr" => flag::NOADDR,
                _ => 0,
            };
        }
        let id = f[0].to_string();
        let mut p = Peer::new(
            id.clone(),
            nip.to_string(),
            nport.parse().unwrap_or(0),
            bus.parse().unwrap_or(0),
            flags,
            now,
        );
        p.primary = (f[3] != "-").then(|| f[3].to_string());
        p.config_epoch = f[6].parse().unwrap_or(0);
        if flags & flag::FAIL != 0 {
            p.fail_time = now;
        }
        if flags & flag::MYSELF != 0 {
            c.myid = id.clone();
            p.ip = ip.to_string();
            p.port = port;
            p.cport = cport;
        }
        for r in &f[8..] {
            if r.starts_with('[') {
                continue;
            }
            let (a, b) = r.split_once('-').unwrap_or((r, r));
            if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                for s in a..=b.min(SLOTS - 1) {
                    c.slots[s] = Some(id.clone());
                }
            }
        }
        c.nodes.insert(id, p);
    }
    anyhow::ensure!(
        c.nodes.contains_key(&c.myid) && c.myself().has(flag::MYSELF),
        "{}: no myself line",
        path.display()
    );
    Ok(Some(c))
}
