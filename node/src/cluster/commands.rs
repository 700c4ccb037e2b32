//! `CLUSTER <subcommand>`: parsed into [`ClusterCommand`], then applied to the node.

use super::gossip::{set_my_primary, start_handshake};
use super::message::flag;
use super::{cron, save_config, send, Cluster};
use crate::bugs::Bug;
use crate::frame::Frame;
use crate::slot::{key_slot, SLOTS};
use crate::state::{now_ms, State};

/// A parsed `CLUSTER` subcommand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterCommand {
    /// `CLUSTER NODES`.
    Nodes,
    /// `CLUSTER SLOTS`.
    Slots,
    /// `CLUSTER SHARDS`.
    Shards,
    /// `CLUSTER INFO`.
    Info,
    /// `CLUSTER MYID`.
    MyId,
    /// `CLUSTER MEET ip port [bus-port]`.
    Meet(String, u16, Option<u16>),
    /// `CLUSTER ADDSLOTS` / `ADDSLOTSRANGE` (expanded), `DELSLOTS`.
    AddSlots(Vec<u16>),
    /// `CLUSTER DELSLOTS`.
    DelSlots(Vec<u16>),
    /// `CLUSTER REPLICATE id`.
    Replicate(String),
    /// `CLUSTER FAILOVER [FORCE|TAKEOVER]`.
    Failover(FailoverKind),
    /// `CLUSTER RESET [HARD|SOFT]`.
    Reset(bool),
    /// `CLUSTER SETSLOT slot IMPORTING|MIGRATING|NODE id | STABLE`.
    SetSlot(u16, SetSlot),
    /// `CLUSTER GETKEYSINSLOT slot count`.
    GetKeysInSlot(u16, usize),
    /// `CLUSTER COUNTKEYSINSLOT slot`.
    CountKeysInSlot(u16),
    /// `CLUSTER KEYSLOT key`.
    KeySlot(Vec<u8>),
    /// `CLUSTER SET-CONFIG-EPOCH n`.
    SetConfigEpoch(u64),
    /// `CLUSTER BUMPEPOCH`.
    BumpEpoch,
    /// `CLUSTER FORGET id`.
    Forget(String),
    /// `CLUSTER SAVECONFIG`.
    SaveConfig,
    /// `CLUSTER COUNT-FAILURE-REPORTS id`.
    CountFailureReports(String),
    /// `CLUSTER REPLICAS id` / `SLAVES id`.
    Replicas(String),
}

/// `CLUSTER FAILOVER`'s option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailoverKind {
    /// Coordinated with the primary: pause, catch up, election.
    Default,
    /// Election without the primary (it may be down).
    Force,
    /// No election: a new epoch taken unilaterally.
    Takeover,
}

/// `CLUSTER SETSLOT`'s action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetSlot {
    /// Keys arrive here from that node.
    Importing(String),
    /// Keys leave for that node.
    Migrating(String),
    /// The slot belongs to that node.
    Node(String),
    /// Clear importing/migrating.
    Stable,
}

fn text(a: &[u8]) -> String {
    String::from_utf8_lossy(a).into_owned()
}

fn num<T: std::str::FromStr>(a: &[u8], what: &str) -> Result<T, Frame> {
    text(a)
        .parse()
        .map_err(|_| Frame::err(format!("ERR Invalid or out of range {what}")))
}

fn slot(a: &[u8]) -> Result<u16, Frame> {
    let s: i64 = num(a, "slot")?;
    if !(0..SLOTS as i64).contains(&s) {
        return Err(Frame::err("ERR Invalid or out of range slot"));
    }
    Ok(s as u16)
}

impl ClusterCommand {
    /// Parses the arguments after `CLUSTER`.
    ///
    /// # Errors
    /// The error reply for an unknown subcommand or bad arguments.
    pub fn parse(args: &[Vec<u8>]) -> Result<ClusterCommand, Frame> {
        let Some(sub) = args.first() else {
            return Err(Frame::err(
                "ERR wrong number of arguments for 'cluster' command",
            ));
        };
        let sub = text(sub).to_uppercase();
        let rest = &args[1..];
        let arity = |n: usize| -> Result<(), Frame> {
            if rest.len() == n {
                Ok(())
            } else {
                Err(Frame::err(format!(
                    "ERR wrong number of arguments for 'cluster|{}' command",
                    sub.to_lowercase()
                )))
            }
        };
        Ok(match sub.as_str() {
            "NODES" => ClusterCommand::Nodes,
            "SLOTS" => ClusterCommand::Slots,
            "SHARDS" => ClusterCommand::Shards,
            "INFO" => ClusterCommand::Info,
            "MYID" => ClusterCommand::MyId,
            "MEET" => {
                if rest.len() != 2 && rest.len() != 3 {
                    arity(2)?;
                }
                let port: u16 = num(&rest[1], "port")?;
                let bus = match rest.get(2) {
                    Some(b) => Some(num(b, "port")?),
                    None => None,
                };
                ClusterCommand::Meet(text(&rest[0]), port, bus)
            }
            "ADDSLOTS" | "DELSLOTS" => {
                if rest.is_empty() {
                    arity(1)?;
                }
                let slots = rest
                    .iter()
                    .map(|a| slot(a))
                    .collect::<Result<Vec<_>, _>>()?;
                if sub == "ADDSLOTS" {
                    ClusterCommand::AddSlots(slots)
                } else {
                    ClusterCommand::DelSlots(slots)
                }
            }
            "ADDSLOTSRANGE" | "DELSLOTSRANGE" => {
                if rest.is_empty() || rest.len() % 2 != 0 {
                    arity(2)?;
                }
                let mut slots = Vec::new();
                for p in rest.chunks(2) {
                    let (a, b) = (slot(&p[0])?, slot(&p[1])?);
                    if a > b {
                        return Err(Frame::err(format!(
                            "ERR start slot number {a} is greater than end slot number {b}"
                        )));
                    }
                    slots.extend(a..=b);
                }
                if sub == "ADDSLOTSRANGE" {
                    ClusterCommand::AddSlots(slots)
                } else {
                    ClusterCommand::DelSlots(slots)
                }
            }
            "REPLICATE" => {
                arity(1)?;
                ClusterCommand::Replicate(text(&rest[0]))
            }
            "FAILOVER" => {
                let kind = match rest.first().map(|a| text(a).to_uppercase()).as_deref() {
                    None => FailoverKind::Default,
                    Some("FORCE") => FailoverKind::Force,
                    Some("TAKEOVER") => FailoverKind::Takeover,
                    Some(_) => return Err(Frame::err("ERR syntax error")),
                };
                if rest.len() > 1 {
                    return Err(Frame::err("ERR syntax error"));
                }
                ClusterCommand::Failover(kind)
            }
            "RESET" => {
                let hard = match rest.first().map(|a| text(a).to_uppercase()).as_deref() {
                    None | Some("SOFT") => false,
                    Some("HARD") => true,
                    Some(_) => return Err(Frame::err("ERR syntax error")),
                };
                ClusterCommand::Reset(hard)
            }
            "SETSLOT" => {
                if rest.len() < 2 {
                    arity(2)?;
                }
                let s = slot(&rest[0])?;
                let action = text(&rest[1]).to_uppercase();
                let id = || {
                    rest.get(2)
                        .map(|a| text(a))
                        .ok_or_else(|| Frame::err("ERR syntax error"))
                };
                let a = match action.as_str() {
                    "IMPORTING" => SetSlot::Importing(id()?),
                    "MIGRATING" => SetSlot::Migrating(id()?),
                    "NODE" => SetSlot::Node(id()?),
                    "STABLE" => SetSlot::Stable,
                    _ => return Err(Frame::err("ERR Invalid CLUSTER SETSLOT action or number of arguments. Try CLUSTER HELP")),
                };
                ClusterCommand::SetSlot(s, a)
            }
            "GETKEYSINSLOT" => {
                arity(2)?;
                ClusterCommand::GetKeysInSlot(slot(&rest[0])?, num(&rest[1], "number of keys")?)
            }
            "COUNTKEYSINSLOT" => {
                arity(1)?;
                ClusterCommand::CountKeysInSlot(slot(&rest[0])?)
            }
            "KEYSLOT" => {
                arity(1)?;
                ClusterCommand::KeySlot(rest[0].clone())
            }
            "SET-CONFIG-EPOCH" => {
                arity(1)?;
                ClusterCommand::SetConfigEpoch(num(&rest[0], "config epoch specified")?)
            }
            "BUMPEPOCH" => ClusterCommand::BumpEpoch,
            "FORGET" => {
                arity(1)?;
                ClusterCommand::Forget(text(&rest[0]))
            }
            "SAVECONFIG" => ClusterCommand::SaveConfig,
            "COUNT-FAILURE-REPORTS" => {
                arity(1)?;
                ClusterCommand::CountFailureReports(text(&rest[0]))
            }
            "REPLICAS" | "SLAVES" => {
                arity(1)?;
                ClusterCommand::Replicas(text(&rest[0]))
            }
            other => {
                return Err(Frame::err(format!(
                    "ERR unknown subcommand '{}'. Try CLUSTER HELP.",
                    other.to_lowercase()
                )))
            }
        })
    }

    /// Applies the command.
    pub fn apply(self, st: &mut State) -> Frame {
        if st.cluster.is_none() {
            return Frame::err("ERR This instance has cluster support disabled");
        }
        let reply = self.apply_cluster(st);
        super::flush_config(st);
        reply
    }

    fn apply_cluster(self, st: &mut State) -> Frame {
        let now = now_ms();
        let c = st.cluster.as_mut().expect("checked");
        match self {
            ClusterCommand::Nodes => Frame::bulk(c.nodes_text()),
            ClusterCommand::Slots => slots_reply(c),
            ClusterCommand::Shards => shards_reply(c, st.repl.offset),
            ClusterCommand::Info => Frame::bulk(info_text(c)),
            ClusterCommand::MyId => Frame::bulk(&c.myid),
            ClusterCommand::Meet(ip, port, bus) => {
                if ip.parse::<std::net::IpAddr>().is_err() {
                    return Frame::err(format!("ERR Invalid node address specified: {ip}:{port}"));
                }
                let cport = bus.unwrap_or(port.wrapping_add(10000));
                start_handshake(st, ip, port, cport);
                Frame::ok()
            }
            ClusterCommand::AddSlots(slots) => {
                for &s in &slots {
                    if let Some(o) = &c.slots[usize::from(s)] {
                        return Frame::err(format!("ERR Slot {s} is already busy ({o})"));
                    }
                }
                let me = c.myid.clone();
                for s in slots {
                    c.slots[usize::from(s)] = Some(me.clone());
                    c.importing.remove(&s);
                }
                c.todo_save = true;
                cron::update_state(st, now);
                Frame::ok()
            }
            ClusterCommand::DelSlots(slots) => {
                for s in slots {
                    c.slots[usize::from(s)] = None;
                }
                c.todo_save = true;
                cron::update_state(st, now);
                Frame::ok()
            }
            ClusterCommand::Replicate(id) => {
                let Some(p) = c.nodes.get(&id) else {
                    return Frame::err(format!("ERR Unknown node {id}"));
                };
                if id == c.myid {
                    return Frame::err("ERR Can't replicate myself");
                }
                if !p.is_primary() {
                    return Frame::err("ERR I can only replicate a master, not a replica.");
                }
                if c.myself().is_primary() && (c.slots_of(&c.myid) > 0 || !st.db.is_empty()) {
                    return Frame::err(
                        "ERR To set a master the node must be empty and without assigned slots.",
                    );
                }
                c.restarted_as_primary = false;
                st.log('*', format!("Configured to replicate node {id}"));
                set_my_primary(st, Some(id));
                Frame::ok()
            }
            ClusterCommand::Failover(kind) => failover(st, kind, now),
            ClusterCommand::Reset(hard) => {
                if c.myself().primary.is_none() && !st.db.is_empty() {
                    return Frame::err(
                        "ERR CLUSTER RESET can't be called with master nodes containing keys",
                    );
                }
                let (ip, port, cport, timeout) = {
                    let me = c.myself();
                    (me.ip.clone(), me.port, me.cport, c.node_timeout)
                };
                let mut fresh = Cluster::new(ip, port, cport, timeout);
                if !hard {
                    fresh.nodes.remove(&fresh.myid);
                    let mut me = c.nodes.remove(&c.myid).expect("myself");
                    me.flags = flag::MYSELF | flag::PRIMARY;
                    me.primary = None;
                    fresh.myid = me.id.clone();
                    fresh.current_epoch = c.current_epoch;
                    fresh.last_vote_epoch = c.last_vote_epoch;
                    me.config_epoch = c.myself_config_epoch_or(me.config_epoch);
                    fresh.nodes.insert(me.id.clone(), me);
                }
                *c = fresh;
                st.repl.follow(None);
                st.db.clear();
                st.log(
                    '*',
                    format!("CLUSTER RESET {}", if hard { "HARD" } else { "SOFT" }),
                );
                Frame::ok()
            }
            ClusterCommand::SetSlot(s, action) => {
                match action {
                    SetSlot::Importing(from) => {
                        if !c.nodes.contains_key(&from) {
                            return Frame::err(format!("ERR I don't know about node {from}"));
                        }
                        c.importing.insert(s, from);
                    }
                    SetSlot::Migrating(to) => {
                        if c.slots[usize::from(s)].as_deref() != Some(c.myid.as_str()) {
                            return Frame::err(format!("ERR I'm not the owner of hash slot {s}"));
                        }
                        if !c.nodes.contains_key(&to) {
                            return Frame::err(format!("ERR I don't know about node {to}"));
                        }
                        c.migrating.insert(s, to);
                    }
                    SetSlot::Stable => {
                        c.migrating.remove(&s);
                        c.importing.remove(&s);
                    }
                    SetSlot::Node(id) => {
                        if !c.nodes.contains_key(&id) {
                            return Frame::err(format!("ERR Unknown node {id}"));
                        }
                        let me = c.myid.clone();
                        let was_mine = c.slots[usize::from(s)].as_deref() == Some(me.as_str());
                        if was_mine && id != me && !st.db.keys_in_slot(s, 1).is_empty() {
                            return Frame::err(format!(
                                "ERR Can't assign hashslot {s} to a different node while I still hold keys for this hash slot."
                            ));
                        }
                        c.migrating.remove(&s);
                        let importing = c.importing.remove(&s).is_some();
                        c.slots[usize::from(s)] = Some(id.clone());
                        if importing && id == me {
                            // Redis: a finished import bumps this node's epoch so its
                            // claim wins over the old owner's.
                            c.current_epoch += 1;
                            c.myself_mut().config_epoch = c.current_epoch;
                            st.log('*', format!("configEpoch updated after importing slot {s}"));
                        }
                    }
                }
                let c = st.cluster.as_mut().expect("checked");
                c.todo_save = true;
                cron::update_state(st, now);
                send::broadcast_pong(st);
                Frame::ok()
            }
            ClusterCommand::GetKeysInSlot(s, n) => Frame::Array(
                st.db
                    .keys_in_slot(s, n)
                    .into_iter()
                    .map(Frame::Bulk)
                    .collect(),
            ),
            ClusterCommand::CountKeysInSlot(s) => {
                Frame::Integer(st.db.keys_in_slot(s, usize::MAX).len() as i64)
            }
            ClusterCommand::KeySlot(k) => Frame::Integer(i64::from(key_slot(&k))),
            ClusterCommand::SetConfigEpoch(e) => {
                if c.nodes.len() > 1 {
                    return Frame::err("ERR The user can assign a config epoch only when the node does not know any other node.");
                }
                if c.myself().config_epoch != 0 {
                    return Frame::err("ERR Node config epoch is already non-zero");
                }
                c.myself_mut().config_epoch = e;
                c.current_epoch = c.current_epoch.max(e);
                c.todo_save = true;
                Frame::ok()
            }
            ClusterCommand::BumpEpoch => {
                let max = c.nodes.values().map(|n| n.config_epoch).max().unwrap_or(0);
                if c.myself().config_epoch == 0 || c.myself().config_epoch != max {
                    c.current_epoch += 1;
                    c.myself_mut().config_epoch = c.current_epoch;
                    c.todo_save = true;
                    Frame::Simple(format!("BUMPED {}", c.current_epoch))
                } else {
                    Frame::Simple(format!("STILL {}", c.myself().config_epoch))
                }
            }
            ClusterCommand::Forget(id) => {
                if id == c.myid {
                    return Frame::err("ERR I tried hard but I can't forget myself...");
                }
                if !c.nodes.contains_key(&id) {
                    return Frame::err(format!("ERR Unknown node {id}"));
                }
                c.remove(&id);
                c.todo_save = true;
                Frame::ok()
            }
            ClusterCommand::SaveConfig => match save_config(st) {
                Ok(()) => Frame::ok(),
                Err(e) => Frame::err(format!("ERR error saving the cluster node config: {e:#}")),
            },
            ClusterCommand::CountFailureReports(id) => match c.nodes.get(&id) {
                Some(n) => Frame::Integer(n.fail_reports.len() as i64),
                None => Frame::err(format!("ERR Unknown node {id}")),
            },
            ClusterCommand::Replicas(id) => {
                if !c.nodes.contains_key(&id) {
                    return Frame::err(format!("ERR Unknown node {id}"));
                }
                Frame::Array(
                    c.nodes
                        .values()
                        .filter(|n| n.primary.as_deref() == Some(id.as_str()))
                        .map(|n| Frame::bulk(c.node_line(n)))
                        .collect(),
                )
            }
        }
    }
}

impl Cluster {
    fn myself_config_epoch_or(&self, e: u64) -> u64 {
        self.nodes.get(&self.myid).map_or(e, |n| n.config_epoch)
    }
}

fn failover(st: &mut State, kind: FailoverKind, now: u64) -> Frame {
    let keeps_old = st.bug(Bug::FailbackKeepsOldConfig);
    let c = st.cluster.as_mut().expect("checked");
    let Some(pid) = c.myself().primary.clone() else {
        if keeps_old && c.restarted_as_primary {
            // Seed 004: Garnet's answer on a node that reloaded its old primary role.
            return Frame::err("ERR Node is not configured as a REPLICA");
        }
        return Frame::err("ERR You should send CLUSTER FAILOVER to a replica");
    };
    let primary_failed = c
        .nodes
        .get(&pid)
        .is_none_or(|p| p.has(flag::FAIL | flag::NOADDR));
    if kind == FailoverKind::Default && primary_failed {
        return Frame::err("ERR Master is down or failed, please use CLUSTER FAILOVER FORCE");
    }
    c.mf = super::ManualFailover {
        end: now + super::gossip::MF_TIMEOUT_MS,
        ..Default::default()
    };
    c.election = super::Election::default();
    match kind {
        FailoverKind::Takeover => {
            c.current_epoch += 1;
            let e = c.current_epoch;
            st.log(
                '*',
                format!("Taking over the primary (user request), epoch {e}."),
            );
            cron::promote(st, e);
        }
        FailoverKind::Force => {
            c.mf.can_start = true;
            st.log('*', "Forced failover user request accepted.");
        }
        FailoverKind::Default => {
            st.log('*', "Manual failover user request accepted.");
            let m = send::build(st, super::message::kind::MFSTART).encode();
            let c = st.cluster.as_mut().expect("checked");
            send::to_node(c, &pid, m);
        }
    }
    Frame::ok()
}

fn node_entry(n: &super::peer::Peer) -> Frame {
    Frame::Array(vec![
        Frame::bulk(&n.ip),
        Frame::Integer(i64::from(n.port)),
        Frame::bulk(&n.id),
        Frame::Array(vec![]),
    ])
}

fn slots_reply(c: &Cluster) -> Frame {
    let mut out = Vec::new();
    let mut start = 0usize;
    for s in 1..=SLOTS {
        if s < SLOTS && c.slots[s] == c.slots[start] {
            continue;
        }
        if let Some(owner) = c.slots[start].as_deref().and_then(|o| c.nodes.get(o)) {
            let mut entry = vec![
                Frame::Integer(start as i64),
                Frame::Integer(s as i64 - 1),
                node_entry(owner),
            ];
            for r in c
                .nodes
                .values()
                .filter(|n| n.primary.as_deref() == Some(owner.id.as_str()) && !n.has(flag::FAIL))
            {
                entry.push(node_entry(r));
            }
            out.push(Frame::Array(entry));
        }
        start = s;
    }
    Frame::Array(out)
}

fn shards_reply(c: &Cluster, my_offset: u64) -> Frame {
    let mut out = Vec::new();
    for p in c.nodes.values().filter(|n| n.is_primary()) {
        let mut slots = Vec::new();
        for (a, b) in c.ranges_of(&p.id) {
            slots.push(Frame::Integer(a as i64));
            slots.push(Frame::Integer(b as i64));
        }
        let mut nodes = Vec::new();
        for n in c
            .nodes
            .values()
            .filter(|n| n.id == p.id || n.primary.as_deref() == Some(p.id.as_str()))
        {
            let offset = if n.id == c.myid {
                my_offset
            } else {
                n.repl_offset
            };
            let health = if n.has(flag::FAIL | flag::PFAIL) {
                "fail"
            } else {
                "online"
            };
            nodes.push(Frame::Array(vec![
                Frame::bulk("id"),
                Frame::bulk(&n.id),
                Frame::bulk("port"),
                Frame::Integer(i64::from(n.port)),
                Frame::bulk("ip"),
                Frame::bulk(&n.ip),
                Frame::bulk("endpoint"),
                Frame::bulk(&n.ip),
                Frame::bulk("role"),
                Frame::bulk(if n.is_primary() { "master" } else { "replica" }),
                Frame::bulk("replication-offset"),
                Frame::Integer(offset as i64),
                Frame::bulk("health"),
                Frame::bulk(health),
            ]));
        }
        out.push(Frame::Array(vec![
            Frame::bulk("slots"),
            Frame::Array(slots),
            Frame::bulk("nodes"),
            Frame::Array(nodes),
        ]));
    }
    Frame::Array(out)
}

/// The `CLUSTER INFO` text.
pub fn info_text(c: &Cluster) -> String {
    let assigned = c.slots.iter().filter(|o| o.is_some()).count();
    let flagged = |f: u16| {
        c.slots
            .iter()
            .filter(|o| {
                o.as_deref()
                    .and_then(|o| c.nodes.get(o))
                    .is_some_and(|n| n.has(f))
            })
            .count()
    };
    let (pfail, fail) = (flagged(flag::PFAIL), flagged(flag::FAIL));
    format!(
        "cluster_state:{}\r\ncluster_slots_assigned:{assigned}\r\ncluster_slots_ok:{}\r\ncluster_slots_pfail:{pfail}\r\n\
         cluster_slots_fail:{fail}\r\ncluster_known_nodes:{}\r\ncluster_size:{}\r\ncluster_current_epoch:{}\r\n\
         cluster_my_epoch:{}\r\ncluster_stats_messages_sent:{}\r\ncluster_stats_messages_received:{}\r\n",
        if c.state_ok { "ok" } else { "fail" },
        assigned - pfail - fail,
        c.nodes.len(),
        c.size(),
        c.current_epoch,
        c.nodes.get(&c.shard_primary()).map_or(0, |n| n.config_epoch),
        c.sent,
        c.received,
    )
}
