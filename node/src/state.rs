//! [`Shared`] and [`State`]: everything a node holds, behind one mutex (Redis executes
//! one command at a time too, so every command, bus message and cron tick sees and leaves
//! a consistent node). Nothing awaits while holding the lock: messages to peers go into
//! unbounded channels, and tasks (links, the replication stream) are spawned, not awaited.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

use crate::bugs::{Bug, Bugs};
use crate::cluster::Cluster;
use crate::config::Config;
use crate::db::Db;
use crate::log::Log;
use crate::replication::Replication;

/// Milliseconds since the Unix epoch (the clock every timer here reads).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The node as the tasks share it.
pub struct Shared {
    state: Mutex<State>,
    /// The log file.
    pub log: Log,
    /// Woken when replication's target changes or a replica acknowledges (WAIT).
    pub repl_changed: Notify,
    /// Woken when a client pause ends or writes are acknowledged.
    pub acks: Notify,
}

impl Shared {
    /// Wraps a state.
    pub fn new(state: State, log: Log) -> Arc<Shared> {
        Arc::new(Shared {
            state: Mutex::new(state),
            log,
            repl_changed: Notify::new(),
            acks: Notify::new(),
        })
    }

    /// Locks the node (a panic elsewhere does not poison it for the rest).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Counters for `INFO commandstats` and `INFO stats`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Calls per lowercase command name.
    pub calls: HashMap<String, u64>,
    /// Connections accepted.
    pub connections: u64,
}

/// Everything the node holds.
pub struct State {
    /// Settings (CONFIG GET/SET).
    pub config: Config,
    /// Switched-on seed bugs.
    pub bugs: Bugs,
    /// The keyspace.
    pub db: Db,
    /// Cluster view and bus state (`None` in standalone mode).
    pub cluster: Option<Cluster>,
    /// Replication: role, offsets, connected replicas.
    pub repl: Replication,
    /// Scripts by SHA-1 (`SCRIPT LOAD`).
    pub scripts: HashMap<String, Vec<u8>>,
    /// Writes are held until this time (ms; manual failover, CLIENT PAUSE, FAILOVER).
    pub pause_writes_until: u64,
    /// Counters.
    pub stats: Stats,
    /// Log lines produced under the lock, written after it (role marker, level, text).
    pub pending_log: Vec<(char, String)>,
    /// Start time (ms).
    pub started_ms: u64,
    /// The append-only file, with `appendonly yes`.
    pub aof: Option<crate::aof::Aof>,
    /// Keys a `MIGRATE` is moving (how many MIGRATEs each): writes to them are held
    /// until it ends, so none can land between the copy and the deletion.
    pub in_flight: HashMap<Vec<u8>, usize>,
}

impl State {
    /// A node from its config.
    pub fn new(config: Config) -> anyhow::Result<State> {
        let bugs = config.bugs()?;
        Ok(State {
            bugs,
            db: Db::default(),
            cluster: None,
            repl: Replication::default(),
            scripts: HashMap::new(),
            pause_writes_until: 0,
            stats: Stats::default(),
            pending_log: Vec::new(),
            started_ms: now_ms(),
            aof: None,
            in_flight: HashMap::new(),
            config,
        })
    }

    /// Queues a log line (`level`: `*` notice, `#` warning, `-` verbose).
    pub fn log(&mut self, level: char, msg: impl Into<String>) {
        self.pending_log.push((level, msg.into()));
    }

    /// Whether a bug switch is on.
    pub fn bug(&self, b: Bug) -> bool {
        self.bugs.on(b)
    }

    /// Whether this node is a primary (cluster: by its own flags; standalone: not
    /// replicating anyone).
    pub fn is_primary(&self) -> bool {
        match &self.cluster {
            Some(c) => c.myself().primary.is_none(),
            None => self.repl.target.is_none(),
        }
    }

    /// Writes queued log lines; call after unlocking.
    pub fn take_log(&mut self) -> Vec<(char, String)> {
        std::mem::take(&mut self.pending_log)
    }
}

/// Locks, runs `f`, unlocks, then writes the log lines `f` queued.
pub fn with<R>(shared: &Shared, f: impl FnOnce(&mut State) -> R) -> R {
    let (r, lines, role) = {
        let mut st = shared.lock();
        let r = f(&mut st);
        let role = if st.is_primary() { 'M' } else { 'S' };
        (r, st.take_log(), role)
    };
    for (level, msg) in lines {
        shared.log.line(role, level, &msg);
    }
    r
}
