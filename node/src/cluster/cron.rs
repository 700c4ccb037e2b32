//! Every 100 ms (Redis's `clusterCron`): links to every known node, PINGs, PFAIL after a
//! node timeout without an answer, FAIL by majority, the replica election with its rank
//! delay, manual failover, and the cluster state. Also the primaries' side of elections:
//! the vote.

use rand::Rng;
use tokio::sync::mpsc;

use super::gossip::{mark_failing_if_needed, set_my_primary};
use super::message::{flag, kind, mflag, slot_bit, Message};
use super::peer::Link;
use super::send;
use crate::slot::SLOTS;
use crate::state::{now_ms, State};

/// How long a restarted primary refuses keyed commands (Redis's CLUSTER_WRITABLE_DELAY).
pub const WRITABLE_DELAY_MS: u64 = 2000;

/// A link the cron created: the bus task connects it.
pub struct NewLink {
    /// Link number.
    pub id: u64,
    /// Address.
    pub ip: String,
    /// Bus port.
    pub cport: u16,
    /// What to send on it.
    pub rx: mpsc::UnboundedReceiver<Vec<u8>>,
}

fn cl(st: &mut State) -> &mut super::Cluster {
    st.cluster.as_mut().expect("cluster mode")
}

/// One cron tick; returns the links to connect.
pub fn tick(st: &mut State) -> Vec<NewLink> {
    let now = now_ms();
    let c = cl(st);
    c.iteration += 1;
    let timeout = c.node_timeout;
    let handshake_timeout = timeout.max(1000);

    // Handshakes that never finished.
    let expired: Vec<String> = c
        .nodes
        .values()
        .filter(|n| n.has(flag::HANDSHAKE) && now.saturating_sub(n.ctime) > handshake_timeout)
        .map(|n| n.id.clone())
        .collect();
    for id in expired {
        c.nodes.remove(&id);
    }

    // Links.
    let mut new_links = Vec::new();
    let myid = c.myid.clone();
    let ids: Vec<String> = c.nodes.keys().filter(|id| **id != myid).cloned().collect();
    for id in &ids {
        let c = cl(st);
        let n = c.nodes.get_mut(id).expect("listed");
        if n.link.is_none() && !n.has(flag::NOADDR) {
            c.next_link += 1;
            let lid = c.next_link;
            let (tx, rx) = mpsc::unbounded_channel();
            let n = c.nodes.get_mut(id).expect("listed");
            n.link = Some(Link {
                id: lid,
                tx,
                connected: false,
                ctime: now,
            });
            new_links.push(NewLink {
                id: lid,
                ip: n.ip.clone(),
                cport: n.cport,
                rx,
            });
            send::ping(st, id);
        }
    }

    // A PING every second to the node heard from longest ago; and to any node not heard
    // from for half the node timeout.
    if cl(st).iteration % 10 == 0 {
        let c = cl(st);
        let oldest = c
            .nodes
            .values()
            .filter(|n| {
                n.id != myid && n.link.is_some() && n.ping_sent == 0 && !n.has(flag::HANDSHAKE)
            })
            .min_by_key(|n| n.pong_received)
            .map(|n| n.id.clone());
        if let Some(id) = oldest {
            send::ping(st, &id);
        }
    }
    for id in &ids {
        let c = cl(st);
        let Some(n) = c.nodes.get_mut(id) else {
            continue;
        };
        let Some(link) = &n.link else { continue };
        if n.ping_sent != 0
            && now.saturating_sub(n.ping_sent) > timeout / 2
            && link.connected
            && now.saturating_sub(link.ctime) > timeout
        {
            // The link may be the problem, not the node: reconnect.
            n.link = None;
            continue;
        }
        if link.connected && n.ping_sent == 0 && now.saturating_sub(n.pong_received) > timeout / 2 {
            send::ping(st, id);
            continue;
        }
        let c = cl(st);
        let n = c.nodes.get_mut(id).expect("listed");
        if c.mf.end != 0 && c.mf.replica.as_deref() == Some(id.as_str()) {
            send::ping(st, id);
            continue;
        }
        if n.ping_sent != 0
            && now.saturating_sub(n.ping_sent) > timeout
            && !n.has(flag::PFAIL | flag::FAIL)
        {
            n.flags |= flag::PFAIL;
            st.log('*', format!("*** NODE {id} possibly failing"));
        }
    }
    let pfail: Vec<String> = cl(st)
        .nodes
        .values()
        .filter(|n| n.has(flag::PFAIL))
        .map(|n| n.id.clone())
        .collect();
    for id in pfail {
        mark_failing_if_needed(st, &id, now);
    }

    manual_failover_timeout(st, now);
    if cl(st).myself().primary.is_some() {
        manual_failover_catch_up(st);
        replica_failover(st, now);
    }
    update_state(st, now);
    super::flush_config(st);
    new_links
}

fn manual_failover_timeout(st: &mut State, now: u64) {
    let c = cl(st);
    if c.mf.end != 0 && now > c.mf.end {
        c.mf = super::ManualFailover::default();
        st.pause_writes_until = 0;
        st.log('#', "Manual failover timed out.");
    }
}

/// The replica in a manual failover may start its election once it has applied
/// everything up to the offset its paused primary reported.
fn manual_failover_catch_up(st: &mut State) {
    let offset = st.repl.offset;
    let c = cl(st);
    if c.mf.end == 0 || c.mf.can_start {
        return;
    }
    if let Some(target) = c.mf.primary_offset {
        if offset >= target {
            c.mf.can_start = true;
            st.log(
                '*',
                "All primary replication stream processed, manual failover can start.",
            );
        }
    }
}

/// Rank: how many other replicas of the same primary have a larger offset.
fn rank(st: &mut State) -> usize {
    let offset = st.repl.offset;
    let c = cl(st);
    let Some(p) = c.myself().primary.clone() else {
        return 0;
    };
    c.nodes
        .values()
        .filter(|n| {
            n.id != c.myid && n.primary.as_deref() == Some(p.as_str()) && !n.has(flag::FAIL)
        })
        .filter(|n| n.repl_offset > offset)
        .count()
}

/// The replica's election (Redis's `clusterHandleReplicaFailover`): when its primary is
/// FAIL (or a manual failover may start), wait 500 ms + up to 500 ms + 1 s per rank, ask
/// every primary for its vote in a new epoch, and take the primary's slots on a majority.
fn replica_failover(st: &mut State, now: u64) {
    let c = cl(st);
    let Some(pid) = c.myself().primary.clone() else {
        return;
    };
    let manual = c.mf.end != 0 && c.mf.can_start;
    let Some(p) = c.nodes.get(&pid) else { return };
    if (!p.has(flag::FAIL) && !manual) || c.slots_of(&pid) == 0 {
        return;
    }
    let auth_timeout = (2 * c.node_timeout).max(2000);
    let auth_retry = 2 * auth_timeout;
    if now.saturating_sub(c.election.auth_time) > auth_retry {
        c.election.auth_time = now + 500 + rand::rng().random_range(0..500);
        c.election.auth_count = 0;
        c.election.auth_sent = false;
        let r = rank(st);
        let c = cl(st);
        c.election.rank = r;
        c.election.auth_time += r as u64 * 1000;
        if manual {
            c.election.auth_time = now;
            c.election.rank = 0;
        }
        let (t, r) = (c.election.auth_time.saturating_sub(now), c.election.rank);
        st.log(
            '*',
            format!(
                "Start of election delayed for {t} milliseconds (rank #{r}, offset {}).",
                st.repl.offset
            ),
        );
        return;
    }
    if !c.election.auth_sent && !manual {
        let old = c.election.rank;
        let r = rank(st);
        let c = cl(st);
        if r > old {
            c.election.auth_time += (r - old) as u64 * 1000;
            c.election.rank = r;
        }
    }
    let c = cl(st);
    if now < c.election.auth_time {
        return;
    }
    if now - c.election.auth_time > auth_timeout {
        if c.election.auth_sent {
            c.election.auth_sent = false;
            st.log('#', "Failover attempt expired.");
        }
        return;
    }
    if !c.election.auth_sent {
        c.current_epoch += 1;
        c.election.auth_epoch = c.current_epoch;
        c.election.auth_sent = true;
        c.todo_save = true;
        let e = c.current_epoch;
        st.log('*', format!("Starting a failover election for epoch {e}."));
        super::flush_config(st);
        let mut m = send::build(st, kind::FAILOVER_AUTH_REQUEST);
        if manual {
            m.mflags |= mflag::FORCEACK;
        }
        send::broadcast(st, &m);
        return;
    }
    if c.election.auth_count >= c.quorum() {
        let e = c.election.auth_epoch;
        st.log(
            '*',
            format!("Failover election won for epoch {e}: promoting myself."),
        );
        promote(st, e);
    }
}

/// Becomes the primary of its shard in config epoch `epoch`: takes its primary's slots,
/// persists, and tells everyone at once.
pub fn promote(st: &mut State, epoch: u64) {
    let c = cl(st);
    let Some(old) = c.myself().primary.clone() else {
        return;
    };
    let myid = c.myid.clone();
    for o in c
        .slots
        .iter_mut()
        .filter(|o| o.as_deref() == Some(old.as_str()))
    {
        *o = Some(myid.clone());
    }
    c.myself_mut().config_epoch = epoch;
    c.restarted_as_primary = false;
    set_my_primary(st, None);
    update_state(st, now_ms());
    super::flush_config(st);
    send::broadcast_pong(st);
}

/// A primary's vote (Redis's `clusterSendFailoverAuthIfNeeded`): once per epoch, for a
/// replica whose primary is FAIL (or that asks with FORCEACK), not twice for one shard
/// within 2 x node timeout, and only if no slot it claims has a newer owner.
pub fn maybe_vote(st: &mut State, msg: &Message, now: u64) {
    let c = cl(st);
    let me = c.myself();
    if !me.is_primary() || c.slots_of(&c.myid) == 0 {
        return;
    }
    let refuse = |st: &mut State, why: String| {
        st.log(
            '#',
            format!("Failover auth denied to {}: {why}", msg.sender),
        );
    };
    if msg.current_epoch < c.current_epoch {
        let e = c.current_epoch;
        return refuse(
            st,
            format!("reqEpoch ({}) < curEpoch({e})", msg.current_epoch),
        );
    }
    if c.last_vote_epoch == c.current_epoch {
        let e = c.current_epoch;
        return refuse(st, format!("already voted for epoch {e}"));
    }
    let Some(node) = c.nodes.get(&msg.sender) else {
        return;
    };
    let Some(pid) = node.primary.clone().filter(|_| !node.is_primary()) else {
        return refuse(st, "it is a primary node".into());
    };
    let Some(p) = c.nodes.get(&pid) else {
        return refuse(st, "I don't know its primary".into());
    };
    let force = msg.mflags & mflag::FORCEACK != 0;
    if !p.has(flag::FAIL) && !force {
        return refuse(st, "its primary is up".into());
    }
    if now.saturating_sub(p.voted_time) < 2 * c.node_timeout {
        return refuse(
            st,
            "can't vote about this primary before the 2 x node timeout since the last vote".into(),
        );
    }
    let newer = (0..SLOTS)
        .filter(|&s| slot_bit(&msg.slots, s))
        .find_map(|s| {
            let o = c.slots[s].as_deref()?;
            c.nodes
                .get(o)
                .is_some_and(|n| n.config_epoch > msg.config_epoch)
                .then(|| format!("slot {s} has a newer owner {o}"))
        });
    if let Some(why) = newer {
        return refuse(st, why);
    }
    c.last_vote_epoch = c.current_epoch;
    c.nodes.get_mut(&pid).expect("checked").voted_time = now;
    c.todo_save = true;
    let e = c.current_epoch;
    super::flush_config(st);
    st.log(
        '*',
        format!("Failover auth granted to {} for epoch {e}", msg.sender),
    );
    let ack = send::build(st, kind::FAILOVER_AUTH_ACK).encode();
    send::to_node(cl(st), &msg.sender, ack);
}

/// `cluster_state`: ok when every slot has an owner not flagged FAIL and, for a primary,
/// a majority of primaries is reachable (a primary in a minority partition stops taking
/// writes, as in Redis).
pub fn update_state(st: &mut State, now: u64) {
    // A primary that just started waits before it serves: it may have been failed over
    // while it was down, and the cluster needs a moment to tell it (Redis's
    // CLUSTER_WRITABLE_DELAY, 2 s).
    let young = now.saturating_sub(st.started_ms) < WRITABLE_DELAY_MS;
    let c = cl(st);
    if young && c.myself().is_primary() && c.slots_of(&c.myid) > 0 && c.nodes.len() > 1 {
        if c.state_ok {
            c.state_ok = false;
        }
        return;
    }
    let mut ok = c.slots.iter().all(|o| {
        o.as_deref()
            .and_then(|o| c.nodes.get(o))
            .is_some_and(|n| !n.has(flag::FAIL))
    });
    if ok && c.myself().is_primary() {
        let size = c.size();
        let reachable = c
            .nodes
            .values()
            .filter(|n| n.is_primary() && c.slots_of(&n.id) > 0 && !n.has(flag::PFAIL | flag::FAIL))
            .count();
        if size > 0 && reachable < size / 2 + 1 {
            ok = false;
        }
    }
    if ok != c.state_ok {
        c.state_ok = ok;
        st.log(
            '*',
            format!("Cluster state changed: {}", if ok { "ok" } else { "fail" }),
        );
    }
}
