//! faultline-node: a Redis-Cluster-protocol server of faultline's own, with switchable
//! seed bugs, so the harness can be run where no server is installed and its checkers can
//! be shown to catch the bugs they exist for. See `node/README.md` (what it speaks, its
//! durability model) and `node/BUGS.md` (the switches).
//!
//! Module map:
//! - [`frame`]: [`frame::Frame`], one RESP2 value; [`connection`]: frames over TCP.
//! - [`command`]: client commands, parsed then applied (routing: MOVED/ASK/...).
//! - [`db`]: the keyspace; [`slot`]: key -> hash slot; [`sha1`]: script names.
//! - [`info`]: `INFO`'s sections.
//! - [`cluster`]: slots, the view of every node, the bus (Redis's message format),
//!   failure detection, elections, manual failover, nodes.conf.
//! - [`migrate`]: `MIGRATE` and the `DUMP`/`RESTORE` payload format.
//! - [`failover`]: standalone `FAILOVER TO` (the hand-over to a replica).
//! - [`replication`]: asynchronous replication with offsets (its own protocol).
//! - [`state`]: everything behind one lock; [`server`]: listeners and client loops.
//! - [`aof`]: the append-only file (`appendonly yes`).
//! - [`config`]: settings from a redis.conf-style file; [`bugs`]: the switches;
//!   [`log`]: the log file in Redis's line format.

pub mod aof;
pub mod bugs;
pub mod cluster;
pub mod command;
pub mod config;
pub mod connection;
pub mod db;
pub mod failover;
pub mod frame;
pub mod info;
pub mod log;
pub mod migrate;
pub mod replication;
pub mod server;
pub mod sha1;
pub mod slot;
pub mod state;

/// The `faultline-node` binary: `faultline-node [CONFIG] [--name value ...]`, as
/// `redis-server` is started; `--version` prints `... v=<version> ...` as Redis does.
///
/// # Errors
/// When the config is bad or the node cannot start.
pub fn main(args: Vec<String>) -> anyhow::Result<()> {
    if args.iter().any(|a| a == "--version" || a == "-v") {
        println!(
            "faultline-node v={} (Redis Cluster protocol 7.0)",
            env!("CARGO_PKG_VERSION")
        );
        return Ok(());
    }
    let config = config::Config::from_args(&args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(server::run(config))
}
