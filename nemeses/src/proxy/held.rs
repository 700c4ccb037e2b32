//! Messages the proxy is holding back (a delay or hold verdict), and the record of those
//! it let go.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::frame::{Header, MsgType};
use super::link::Link;
use super::rule::RuleId;

/// How many released messages [`super::BusProxy::released`] remembers.
pub const RELEASED_KEPT: usize = 4096;

/// One message held back right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldMessage {
    /// Unique within the proxy; for [`super::BusProxy::release`].
    pub id: u64,
    /// The connection carrying it (unique within the proxy).
    pub conn: u64,
    /// Sender, receiver, and who opened the connection.
    pub link: Link,
    /// Its type, if the header could be read.
    pub msg_type: Option<MsgType>,
    /// A Valkey light header (no sender id, no epochs).
    pub light: bool,
    /// The sender's node id as the header gives it.
    pub sender_id: Option<String>,
    /// The sender's currentEpoch.
    pub current_epoch: Option<u64>,
    /// The sender's configEpoch: a PONG held long enough to carry an old one is the
    /// "stale message" of valkey-io/valkey#1015.
    pub config_epoch: Option<u64>,
    /// The primary the sender says it replicates (`None`: it says it is a primary).
    pub replicaof: Option<String>,
    /// The whole header, for what the fields above leave out (slots claimed, flags,
    /// announced ports).
    pub header: Option<Header>,
    /// The rule that holds it.
    pub rule: RuleId,
    /// When the proxy had read it whole.
    pub since: Instant,
    /// When it is due (`None`: held until released).
    pub until: Option<Instant>,
}

impl HeldMessage {
    /// Fills in what the header says.
    pub(crate) fn describe(mut self, header: Option<&Header>) -> HeldMessage {
        if let Some(h) = header {
            self.msg_type = Some(h.msg_type);
            self.light = h.light;
            if let Some(f) = &h.full {
                self.sender_id = Some(f.sender.clone());
                self.current_epoch = Some(f.current_epoch);
                self.config_epoch = Some(f.config_epoch);
                self.replicaof = f.replicaof.clone();
            }
            self.header = Some(h.clone());
        }
        self
    }

    /// For the history: times as milliseconds relative to `now`.
    pub fn to_json(&self, now: Instant) -> Value {
        json!({
            "id": self.id,
            "conn": self.conn,
            "from": self.link.from,
            "to": self.link.to,
            "opened_by": self.link.opened_by,
            "type": self.msg_type.map(|t| t.name()),
            "light": self.light,
            "sender_id": self.sender_id,
            "current_epoch": self.current_epoch,
            "config_epoch": self.config_epoch,
            "replicaof": self.replicaof,
            "rule": self.rule,
            "held_ms": now.saturating_duration_since(self.since).as_millis() as u64,
            "due_in_ms": self.until.map(|u| u.saturating_duration_since(now).as_millis() as u64),
        })
    }
}

/// A message that was held and is no longer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    /// The message as it was held.
    pub message: HeldMessage,
    /// When it was written to the receiver (or given up).
    pub at: Instant,
    /// False when its connection closed first: it was never delivered.
    pub delivered: bool,
}

impl Released {
    /// How long the proxy kept it.
    pub fn held_for(&self) -> std::time::Duration {
        self.at.saturating_duration_since(self.message.since)
    }
}

/// The held messages and the recent releases.
#[derive(Default)]
pub(crate) struct HeldBook {
    now: BTreeMap<u64, (HeldMessage, CancellationToken)>,
    released: VecDeque<Released>,
}

impl HeldBook {
    pub(crate) fn hold(&mut self, message: HeldMessage, release: CancellationToken) {
        self.now.insert(message.id, (message, release));
    }

    /// The message left the proxy (delivered or not).
    pub(crate) fn finish(&mut self, id: u64, delivered: bool) {
        if let Some((message, _)) = self.now.remove(&id) {
            if self.released.len() == RELEASED_KEPT {
                self.released.pop_front();
            }
            self.released.push_back(Released {
                message,
                at: Instant::now(),
                delivered,
            });
        }
    }

    /// Every message of a closed connection, undelivered.
    pub(crate) fn finish_conn(&mut self, conn: u64) {
        let ids: Vec<u64> = self
            .now
            .values()
            .filter(|(m, _)| m.conn == conn)
            .map(|(m, _)| m.id)
            .collect();
        for id in ids {
            self.finish(id, false);
        }
    }

    pub(crate) fn list(&self) -> Vec<HeldMessage> {
        self.now.values().map(|(m, _)| m.clone()).collect()
    }

    pub(crate) fn released(&self) -> Vec<Released> {
        self.released.iter().cloned().collect()
    }

    /// Lets the messages `pick` chooses go now; returns how many.
    pub(crate) fn release(&self, pick: impl Fn(&HeldMessage) -> bool) -> usize {
        let mut n = 0;
        for (m, token) in self.now.values() {
            if pick(m) {
                token.cancel();
                n += 1;
            }
        }
        n
    }
}
