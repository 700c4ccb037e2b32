//! The receiver side of the bus: what one message changes in this node's view (Redis's
//! `clusterProcessPacket`), and the view changes it shares with the cron (role changes,
//! slot ownership by config epoch, failure reports).

use super::message::{flag, kind, mflag, slot_bit, Body, Gossip, Message, SLOT_BYTES};
use super::peer::Peer;
use super::send;
use crate::bugs::Bug;
use crate::slot::SLOTS;
use crate::state::{now_ms, State};

/// Where a message arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// On a connection a peer opened to this node (its PINGs, MEETs, broadcasts).
    Inbound,
    /// On this node's outbound link with that number (PONGs answering its PINGs).
    Link(u64),
}

/// How long a manual failover may take (Redis's `CLUSTER_MF_TIMEOUT`).
pub const MF_TIMEOUT_MS: u64 = 5000;

fn cl(st: &mut State) -> &mut super::Cluster {
    st.cluster.as_mut().expect("cluster mode")
}

/// Processes one message; returns the reply to send on the same connection (a PONG for
/// PING and MEET).
pub fn process(st: &mut State, msg: &Message, origin: Origin, conn_ip: &str) -> Option<Vec<u8>> {
    let now = now_ms();
    let myid = cl(st).myid.clone();
    cl(st).received += 1;
    if msg.sender == myid {
        return None;
    }
    let is_gossip = matches!(msg.kind, kind::PING | kind::PONG | kind::MEET);
    let known = cl(st)
        .nodes
        .get(&msg.sender)
        .is_some_and(|n| !n.has(flag::HANDSHAKE));

    // Epochs and offsets come first, from any known sender. Whether the message is
    // older than what is known of the sender's config is decided before that update.
    let mut stale = false;
    if known {
        let c = cl(st);
        if msg.current_epoch > c.current_epoch {
            c.current_epoch = msg.current_epoch;
            c.todo_save = true;
        }
        // Stale: the sender holds slots here, as a primary in config epoch E, and the
        // message (a demotion claim, or any claim) carries an older config epoch: it was
        // sent before the config this node already knows. Replicas carry their primary's
        // epoch, which says nothing about the replica itself, so only primaries with
        // slots are checked.
        let holds = c.slots_of(&msg.sender) > 0;
        let n = c.nodes.get_mut(&msg.sender).expect("known");
        stale = is_gossip && holds && n.is_primary() && msg.config_epoch < n.config_epoch;
        if msg.config_epoch > n.config_epoch {
            n.config_epoch = msg.config_epoch;
            c.todo_save = true;
        }
        n.repl_offset = msg.offset;
    }

    if msg.kind == kind::MEET && !known && origin == Origin::Inbound {
        let ip = if msg.myip.is_empty() {
            conn_ip.to_string()
        } else {
            msg.myip.clone()
        };
        let mut p = Peer::new(
            msg.sender.clone(),
            ip.clone(),
            msg.port,
            msg.cport,
            role_flags(msg),
            now,
        );
        p.primary = msg.replicaof.clone();
        p.config_epoch = msg.config_epoch;
        let c = cl(st);
        c.nodes.insert(msg.sender.clone(), p);
        c.todo_save = true;
        st.log(
            '*',
            format!("Node {} ({ip}:{}) met this node", msg.sender, msg.port),
        );
    }

    let reply =
        matches!(msg.kind, kind::PING | kind::MEET).then(|| send::build(st, kind::PONG).encode());

    if is_gossip {
        if let Origin::Link(lid) = origin {
            link_reply(st, msg, lid, now);
        }
    }
    let known = cl(st)
        .nodes
        .get(&msg.sender)
        .is_some_and(|n| !n.has(flag::HANDSHAKE));
    if !known {
        return reply;
    }

    match msg.kind {
        kind::PING | kind::PONG | kind::MEET => {
            // Redis 7.0 had no such check (nor its log line): with the seed-000 switch
            // a stale message is applied without a word.
            if stale && !st.bug(Bug::NoEpochCheckOnDemotion) {
                let known_epoch = cl(st).nodes[&msg.sender].config_epoch;
                st.log(
                    '-',
                    format!(
                        "Ignore stale message from {} in shard {}; gossip config epoch: {}, current config epoch: {known_epoch}",
                        msg.sender,
                        msg.replicaof.as_deref().unwrap_or(&msg.sender),
                        msg.config_epoch
                    ),
                );
            }
            let apply_role =
                !stale || st.bug(Bug::StalePongApplied) || st.bug(Bug::NoEpochCheckOnDemotion);
            if apply_role {
                role_change(st, msg, stale);
            }
            if !stale {
                slot_claims(st, msg);
                epoch_collision(st, msg);
            }
            if let Body::Gossip(g) = &msg.body {
                gossip_sections(st, &msg.sender, g, now);
            }
            paused_offset(st, msg);
        }
        kind::FAIL => {
            if let Body::Fail(id) = &msg.body {
                let c = cl(st);
                if let Some(n) = c.nodes.get_mut(id) {
                    if n.id != c.myid && !n.has(flag::FAIL) {
                        n.flags = (n.flags | flag::FAIL) & !flag::PFAIL;
                        n.fail_time = now;
                        c.todo_save = true;
                        st.log(
                            '*',
                            format!("FAIL message received from {} about {id}", msg.sender),
                        );
                    }
                }
            }
        }
        kind::UPDATE => {
            if let Body::Update {
                config_epoch,
                id,
                slots,
            } = &msg.body
            {
                let c = cl(st);
                let newer = c
                    .nodes
                    .get(id)
                    .is_some_and(|n| n.config_epoch < *config_epoch);
                if newer {
                    let n = c.nodes.get_mut(id).expect("checked");
                    n.config_epoch = *config_epoch;
                    if !n.is_primary() {
                        n.flags = (n.flags & !flag::REPLICA) | flag::PRIMARY;
                        n.primary = None;
                    }
                    update_slots(st, id, *config_epoch, slots);
                }
            }
        }
        kind::FAILOVER_AUTH_REQUEST => super::cron::maybe_vote(st, msg, now),
        kind::FAILOVER_AUTH_ACK => {
            let c = cl(st);
            let counts = c.nodes.get(&msg.sender).is_some_and(|n| n.is_primary())
                && c.slots_of(&msg.sender) > 0
                && msg.current_epoch >= c.election.auth_epoch;
            if counts {
                c.election.auth_count += 1;
                let n = c.election.auth_count;
                st.log(
                    '*',
                    format!("Failover auth granted by {} ({n} votes)", msg.sender),
                );
            }
        }
        kind::MFSTART => {
            let c = cl(st);
            let mine = c
                .nodes
                .get(&msg.sender)
                .is_some_and(|n| n.primary.as_deref() == Some(&c.myid));
            if mine && c.myself().is_primary() {
                c.mf.end = now + MF_TIMEOUT_MS;
                c.mf.replica = Some(msg.sender.clone());
                st.pause_writes_until = now + MF_TIMEOUT_MS * 2;
                st.log(
                    '*',
                    format!("Manual failover requested by replica {}", msg.sender),
                );
                let ping = send::build(st, kind::PING).encode();
                send::to_node(cl(st), &msg.sender, ping);
            }
        }
        _ => {}
    }
    super::flush_config(st);
    reply
}

fn role_flags(msg: &Message) -> u16 {
    if msg.replicaof.is_some() {
        flag::REPLICA
    } else {
        flag::PRIMARY
    }
}

/// A message on this node's own link: the answer to its PING/MEET. Finishes a handshake
/// (the peer's real id replaces the temporary one) and records the PONG.
fn link_reply(st: &mut State, msg: &Message, lid: u64, now: u64) {
    let c = cl(st);
    let Some(id) = c
        .nodes
        .values()
        .find(|n| n.link.as_ref().is_some_and(|l| l.id == lid))
        .map(|n| n.id.clone())
    else {
        return;
    };
    let mut id = id;
    if c.nodes[&id].has(flag::HANDSHAKE) {
        if c.nodes.contains_key(&msg.sender) {
            // Met again a node already known: keep the known entry, drop this one.
            c.nodes.remove(&id);
            return;
        }
        c.rename(&id, &msg.sender);
        let n = c.nodes.get_mut(&msg.sender).expect("renamed");
        n.flags = (n.flags & !(flag::HANDSHAKE | flag::MEET | flag::PRIMARY | flag::REPLICA))
            | role_flags(msg);
        n.primary = msg.replicaof.clone();
        n.config_epoch = msg.config_epoch;
        c.todo_save = true;
        id = msg.sender.clone();
        st.log('*', format!("Handshake with node {id} completed"));
    } else if id != msg.sender {
        // The node at that address now has another id (reset): forget the old entry.
        st.log(
            '*',
            format!(
                "Node {id} answered as {}; removing the old entry",
                msg.sender
            ),
        );
        cl(st).remove(&id);
        return;
    }
    if msg.kind == kind::PONG {
        let c = cl(st);
        let timeout = c.node_timeout;
        let slots = c.slots_of(&id);
        let n = c.nodes.get_mut(&id).expect("found");
        n.pong_received = now;
        n.ping_sent = 0;
        n.flags &= !flag::MEET;
        if n.has(flag::PFAIL) {
            n.flags &= !flag::PFAIL;
            st.log('-', format!("Clear PFAIL state for node {id}: answered"));
        } else if n.has(flag::FAIL) {
            // Redis: a replica, or a primary without slots, is back at once; a primary
            // with slots after 2 x node timeout without a failover.
            let back =
                !n.is_primary() || slots == 0 || now.saturating_sub(n.fail_time) > 2 * timeout;
            if back {
                n.flags &= !flag::FAIL;
                cl(st).todo_save = true;
                st.log(
                    '*',
                    format!("Clear FAIL state for node {id}: is reachable again"),
                );
            }
        }
    }
}

/// The sender's role as its message states it: a replica that claims to be a primary,
/// or a primary that claims to replicate someone (Redis's "role switch" block).
fn role_change(st: &mut State, msg: &Message, stale: bool) {
    let c = cl(st);
    let myid = c.myid.clone();
    let n = c.nodes.get_mut(&msg.sender).expect("known");
    match &msg.replicaof {
        None => {
            if !n.is_primary() {
                n.flags = (n.flags & !flag::REPLICA) | flag::PRIMARY;
                n.primary = None;
                c.todo_save = true;
                st.log('*', format!("Node {} is now a primary", msg.sender));
            }
        }
        Some(p) => {
            if n.is_primary() {
                n.flags = (n.flags & !flag::PRIMARY) | flag::REPLICA;
                let no_epoch_check = st.bug(Bug::NoEpochCheckOnDemotion);
                let keep_slots = stale && st.bug(Bug::StalePongApplied) && !no_epoch_check;
                let c = cl(st);
                // A fresh "now a replica of P" from a primary whose replica P was here: P
                // took the shard over (Redis 7.4's #13055, Valkey's same-shard case). P is
                // a primary from now on and the sender's slots are P's, in the sender's
                // config epoch at least, instead of owned by nobody until P's own claim
                // arrives (a replica-of loop and a coverage gap in the meantime).
                let heir = !stale
                    && !no_epoch_check
                    && *p != myid
                    && c.nodes.get(p.as_str()).is_some_and(|h| {
                        !h.is_primary() && h.primary.as_deref() == Some(msg.sender.as_str())
                    });
                if heir {
                    let h = c.nodes.get_mut(p.as_str()).expect("checked");
                    h.flags = (h.flags & !flag::REPLICA) | flag::PRIMARY;
                    h.primary = None;
                    h.config_epoch = h.config_epoch.max(msg.config_epoch);
                    let epoch = h.config_epoch;
                    for o in c
                        .slots
                        .iter_mut()
                        .filter(|o| o.as_deref() == Some(msg.sender.as_str()))
                    {
                        *o = Some(p.clone());
                    }
                    c.todo_save = true;
                    st.log(
                        '*',
                        format!(
                            "A failover occurred in shard {}; node {} failed over to node {p} with a config epoch of {epoch}",
                            msg.sender, msg.sender
                        ),
                    );
                }
                let c = cl(st);
                if !keep_slots && !heir {
                    // A primary turned replica serves nothing (Redis's clusterDelNodeSlots).
                    // With `no-epoch-check-on-demotion` this runs for a stale message too.
                    for o in c
                        .slots
                        .iter_mut()
                        .filter(|o| o.as_deref() == Some(msg.sender.as_str()))
                    {
                        *o = None;
                    }
                }
                c.todo_save = true;
            }
            let c = cl(st);
            let n = c.nodes.get_mut(&msg.sender).expect("known");
            if n.primary.as_deref() != Some(p) && *p != msg.sender {
                n.primary = Some(p.clone());
                c.todo_save = true;
                st.log(
                    '*',
                    format!("Node {} is now a replica of node {p}", msg.sender),
                );
            }
        }
    }
}

/// The slots a primary claims: take them where its config epoch is newer; tell it with an
/// UPDATE where a newer owner exists.
fn slot_claims(st: &mut State, msg: &Message) {
    if msg.replicaof.is_some() {
        return;
    }
    let c = cl(st);
    let Some(sender) = c.nodes.get(&msg.sender) else {
        return;
    };
    if !sender.is_primary() {
        return;
    }
    let differs = (0..SLOTS)
        .any(|s| slot_bit(&msg.slots, s) != (c.slots[s].as_deref() == Some(msg.sender.as_str())));
    if !differs {
        return;
    }
    update_slots(st, &msg.sender, msg.config_epoch, &msg.slots);
    // A slot it claims that a newer config gives to someone else: send that config.
    let c = cl(st);
    let newer = (0..SLOTS)
        .filter(|&s| slot_bit(&msg.slots, s))
        .find_map(|s| {
            let o = c.slots[s].as_deref()?;
            (o != msg.sender
                && c.nodes
                    .get(o)
                    .is_some_and(|n| n.config_epoch > msg.config_epoch))
            .then(|| o.to_string())
        });
    if let Some(owner) = newer {
        let epoch = c.nodes[&owner].config_epoch;
        let mut update = send::build(st, kind::UPDATE);
        update.body = Body::Update {
            config_epoch: epoch,
            id: owner.clone(),
            slots: cl(st).bitmap_of(&owner),
        };
        let bytes = update.encode();
        send::to_node(cl(st), &msg.sender, bytes);
    }
}

/// Two primaries with one config epoch: the one with the smaller id takes a new epoch
/// (Redis's `clusterHandleConfigEpochCollision`).
fn epoch_collision(st: &mut State, msg: &Message) {
    let c = cl(st);
    let me = c.myself();
    let Some(sender) = c.nodes.get(&msg.sender) else {
        return;
    };
    if !me.is_primary()
        || !sender.is_primary()
        || sender.config_epoch != me.config_epoch
        || msg.sender <= c.myid
    {
        return;
    }
    c.current_epoch += 1;
    let e = c.current_epoch;
    c.myself_mut().config_epoch = e;
    c.todo_save = true;
    st.log(
        '#',
        format!(
            "configEpoch collision with node {}. configEpoch set to {e}",
            msg.sender
        ),
    );
}

/// A replica in a manual failover learns the offset its paused primary stopped at.
fn paused_offset(st: &mut State, msg: &Message) {
    let c = cl(st);
    if msg.mflags & mflag::PAUSED != 0
        && c.mf.end != 0
        && c.mf.primary_offset.is_none()
        && c.myself().primary.as_deref() == Some(msg.sender.as_str())
    {
        c.mf.primary_offset = Some(msg.offset);
        st.log(
            '*',
            format!(
                "Received replication offset for paused primary manual failover: {}",
                msg.offset
            ),
        );
    }
}

/// Gossip sections: failure reports from primaries, and nodes to meet.
fn gossip_sections(st: &mut State, sender: &str, gossip: &[Gossip], now: u64) {
    let c = cl(st);
    let sender_is_primary = c.nodes.get(sender).is_some_and(|n| n.is_primary());
    let mut check = Vec::new();
    let mut meet = Vec::new();
    for g in gossip {
        if g.id == c.myid {
            continue;
        }
        match c.nodes.get_mut(&g.id) {
            Some(n) => {
                if sender_is_primary {
                    if g.flags & (flag::PFAIL | flag::FAIL) != 0 {
                        n.fail_reports.insert(sender.to_string(), now);
                        check.push(g.id.clone());
                    } else {
                        n.fail_reports.remove(sender);
                    }
                }
            }
            None => {
                if g.flags & (flag::NOADDR | flag::HANDSHAKE) == 0
                    && !c
                        .nodes
                        .values()
                        .any(|n| n.has(flag::HANDSHAKE) && n.ip == g.ip && n.cport == g.cport)
                {
                    meet.push((g.ip.clone(), g.port, g.cport));
                }
            }
        }
    }
    for id in check {
        mark_failing_if_needed(st, &id, now);
    }
    for (ip, port, cport) in meet {
        start_handshake(st, ip, port, cport);
    }
}

/// Starts meeting a node at an address (CLUSTER MEET, or gossip about an unknown node):
/// a temporary entry that the peer's first PONG renames.
pub fn start_handshake(st: &mut State, ip: String, port: u16, cport: u16) {
    let c = cl(st);
    if c.nodes
        .values()
        .any(|n| n.has(flag::HANDSHAKE) && n.ip == ip && n.cport == cport)
    {
        return;
    }
    let id = super::random_id();
    c.nodes.insert(
        id.clone(),
        Peer::new(id, ip, port, cport, flag::HANDSHAKE | flag::MEET, now_ms()),
    );
}

/// PFAIL becomes FAIL when a majority of primaries (this node included, if it is one)
/// report the node failing within 2 x node timeout; the FAIL is then broadcast.
pub fn mark_failing_if_needed(st: &mut State, id: &str, now: u64) {
    let c = cl(st);
    let quorum = c.quorum();
    let window = 2 * c.node_timeout;
    let me_primary = c.myself().is_primary();
    let primaries: Vec<String> = c
        .nodes
        .values()
        .filter(|n| n.is_primary())
        .map(|n| n.id.clone())
        .collect();
    let Some(n) = c.nodes.get_mut(id) else { return };
    if !n.has(flag::PFAIL) || n.has(flag::FAIL) {
        return;
    }
    n.fail_reports
        .retain(|r, t| now.saturating_sub(*t) <= window && primaries.contains(r));
    let reports = n.fail_reports.len() + usize::from(me_primary);
    if reports < quorum {
        return;
    }
    n.flags = (n.flags | flag::FAIL) & !flag::PFAIL;
    n.fail_time = now;
    c.todo_save = true;
    st.log(
        '*',
        format!("Marking node {id} as failing (quorum reached)."),
    );
    let mut m = send::build(st, kind::FAIL);
    m.body = Body::Fail(id.to_string());
    send::broadcast(st, &m);
}

/// Gives `sender` every slot in `slots` whose owner has an older config epoch (or none);
/// when this node's shard loses its last slot that way, this node follows `sender`
/// (Redis's `clusterUpdateSlotsConfigWith`).
pub fn update_slots(st: &mut State, sender: &str, epoch: u64, slots: &[u8; SLOT_BYTES]) {
    let keep_own = st.bug(Bug::FailbackKeepsOldConfig) && cl(st).restarted_as_primary;
    let c = cl(st);
    let shard = c.shard_primary();
    let mut shard_lost = false;
    let mut refused = false;
    for s in (0..SLOTS).filter(|&s| slot_bit(slots, s)) {
        let owner = c.slots[s].clone();
        if owner.as_deref() == Some(sender) || c.importing.contains_key(&(s as u16)) {
            continue;
        }
        let owner_epoch = owner
            .as_deref()
            .and_then(|o| c.nodes.get(o))
            .map_or(0, |n| n.config_epoch);
        if owner.is_some() && owner_epoch >= epoch {
            continue;
        }
        if owner.as_deref() == Some(shard.as_str()) {
            if keep_own && shard == c.myid {
                // Bug switch failback-keeps-old-config: the restarted node keeps the
                // role and slots its old nodes.conf gave it.
                refused = true;
                continue;
            }
            shard_lost = true;
        }
        c.slots[s] = Some(sender.to_string());
        c.migrating.remove(&(s as u16));
        c.todo_save = true;
    }
    if refused {
        st.log('#', format!("Keeping the configuration loaded at start-up against node {sender}'s newer config epoch {epoch}"));
    }
    let c = cl(st);
    if shard_lost && c.slots_of(&shard) == 0 && sender != c.myid {
        st.log(
            '*',
            format!("Configuration change detected. Reconfiguring myself as a replica of {sender}"),
        );
        set_my_primary(st, Some(sender.to_string()));
    }
}

/// Makes this node a replica of `primary`, or a primary (`None`), and points
/// replication there.
pub fn set_my_primary(st: &mut State, primary: Option<String>) {
    let c = cl(st);
    let target = primary
        .as_ref()
        .and_then(|p| c.nodes.get(p))
        .map(|p| (p.ip.clone(), p.port));
    let me = c.myself_mut();
    match &primary {
        Some(p) => {
            me.flags = (me.flags & !flag::PRIMARY) | flag::REPLICA;
            me.primary = Some(p.clone());
        }
        None => {
            me.flags = (me.flags & !flag::REPLICA) | flag::PRIMARY;
            me.primary = None;
        }
    }
    c.mf = super::ManualFailover::default();
    c.election = super::Election::default();
    c.todo_save = true;
    if primary.is_some() {
        let myid = c.myid.clone();
        for o in c
            .slots
            .iter_mut()
            .filter(|o| o.as_deref() == Some(myid.as_str()))
        {
            *o = None;
        }
        c.migrating.clear();
        c.importing.clear();
    }
    st.pause_writes_until = 0;
    st.repl.follow(target);
}
