//! [`Bugs`]: the seed bugs this node can be told to have (`faultline-bugs` in its config;
//! the scenario's `cluster.bugs`). None is on by default. Each switch plants the
//! mechanism its seed documents (`/work/shared/seeds/`, DESIGN.md's table), in the code
//! that would have it in Redis or Valkey; each is explained where it acts and in
//! `node/BUGS.md`.

use anyhow::{bail, Result};

/// One bug switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bug {
    /// Seed 002 (valkey-io/valkey#1015, fixed by #1777): a PONG whose config epoch is older
    /// than what the receiver knows of the sender is logged as stale and then applied
    /// anyway (role and primary), giving a replica-of loop in the observer's view.
    /// Acts in `cluster::gossip` (the stale check).
    StalePongApplied,
    /// Seed 000 (redis/redis#13018, fixed by #13055): a message saying a known primary is
    /// now a replica is applied without comparing config epochs: the observer drops the
    /// sender's slots and records it as a replica, even when the message is older than
    /// the sender's current config. Acts in `cluster::gossip` (the role change).
    NoEpochCheckOnDemotion,
    /// Seed 004 (microsoft/garnet#1044): after a restart the node reloads its
    /// pre-restart role from nodes.conf and keeps it against the cluster's newer config;
    /// `CLUSTER FAILOVER FORCE` on it then answers `ERR Node is not configured as a
    /// REPLICA` until `CLUSTER REPLICATE`. Acts in `cluster::gossip` (the node ignores
    /// configs that would demote it) and `cluster::commands` (the refusal).
    FailbackKeepsOldConfig,
    /// A primary acknowledges writes without queueing them for its replicas, and drops
    /// them when it is demoted: writes are lost at every failover, far beyond the
    /// asynchronous-replication window. For the lost-writes and register checkers.
    /// Acts in `server` (propagation) and `replication`.
    AckBeforeReplicateLost,
    /// Seed 003 (valkey-io/valkey#821, fixed by #871 before Valkey 8.0.0): during a
    /// standalone `FAILOVER` in state `failover-in-progress`, the old primary answers
    /// clients with `CLIENT CAPA redirect` with `-REDIRECT <target>` before its write
    /// pause holds them; the target, still a replica of the old primary until the
    /// hand-over lands, redirects them back: the clients bounce. Acts in `server` (the
    /// check before the pause) and `command::route`.
    RedirectBeforePause,
}

impl Bug {
    /// Every switch with its name.
    pub const ALL: [(Bug, &'static str); 5] = [
        (Bug::StalePongApplied, "stale-pong-applied"),
        (Bug::NoEpochCheckOnDemotion, "no-epoch-check-on-demotion"),
        (Bug::FailbackKeepsOldConfig, "failback-keeps-old-config"),
        (Bug::AckBeforeReplicateLost, "ack-before-replicate-lost"),
        (Bug::RedirectBeforePause, "redirect-before-pause"),
    ];

    /// The switch's name.
    pub fn name(self) -> &'static str {
        Bug::ALL
            .iter()
            .find(|(b, _)| *b == self)
            .map(|(_, n)| *n)
            .unwrap_or("?")
    }
}

/// The switches that are on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bugs(Vec<Bug>);

impl Bugs {
    /// Parses a comma- or space-separated list of names.
    ///
    /// # Errors
    /// For a name that is no switch (the error lists them).
    pub fn parse(text: &str) -> Result<Bugs> {
        let mut out = Vec::new();
        for name in text.split([',', ' ']).filter(|s| !s.is_empty()) {
            match Bug::ALL.iter().find(|(_, n)| *n == name) {
                Some((b, _)) => out.push(*b),
                None => bail!(
                    "unknown bug switch {name:?} (known: {})",
                    Bug::ALL
                        .iter()
                        .map(|(_, n)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        }
        Ok(Bugs(out))
    }

    /// Whether a switch is on.
    pub fn on(&self, bug: Bug) -> bool {
        self.0.contains(&bug)
    }

    /// The names that are on.
    pub fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|b| b.name()).collect()
    }
}
