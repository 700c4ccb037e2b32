//! faultline's clients and workloads.
//!
//! Module map:
//! - [`slots`]: key to hash slot (CRC16 and hash tags), and tags that land on a given slot.
//! - [`client`]: [`ClusterClient`], which follows MOVED / ASK / TRYAGAIN / CLUSTERDOWN /
//!   REDIRECT itself, records every hop, and classifies each outcome as ok, fail or info.
//! - [`key_client`]: [`KeyClient`], what a workload needs of either client.
//! - [`standalone`]: [`StandaloneClient`], for one primary with replicas (no cluster): it
//!   sends `CLIENT CAPA redirect` (Valkey 8+), follows `-REDIRECT host:port`, records each
//!   hop, finds the primary again (INFO replication) after READONLY or a broken link, and
//!   may send reads to replicas (`READONLY`).
//! - [`workload`]: [`Workload`], what the run drives (setup, clients until a stop token,
//!   final reads, the checkers that judge it), and what every workload is built from.
//! - [`registry`]: every workload by name; adding one is a file and a line there.
//! - `pool` (private): the clients' connections, one per node, replaced after a break.
//! - [`access`]: credentials for nodes that ask for them (live clusters), by address.
//! - [`query`]: one connection, one command, bounded in time (nemeses, observer, formation).
//! - [`set`]: the set workload (unique adds to a few keys, one final read per key).
//! - [`register`]: reads, writes and compare-and-set (a Lua script) on a few registers.
//! - [`counter`]: `INCRBY` and reads on a few counters.
//! - [`list_append`]: `RPUSH` of unique elements and whole-list reads.
//! - [`driver`]: what every workload shares: a [`driver::Generator`] performs one recorded
//!   op, and [`driver::Driven`] makes it a workload (the client-process loop, the final
//!   reads).
//!
//! A workload drives a [`KeyClient`] and records every op through a
//! [`faultline_history::Recorder`]; it knows nothing of processes, namespaces or faults.

pub mod access;
pub mod adapter;
pub mod client;
pub mod counter;
pub mod driver;
pub mod key_client;
pub mod list_append;
mod pool;
pub mod query;
pub mod register;
pub mod registry;
pub mod set;
pub mod slots;
pub mod standalone;
pub mod workload;

pub use client::{ClientConfig, ClusterClient, Outcome};
pub use key_client::KeyClient;
pub use set::SetWorkload;
pub use standalone::StandaloneClient;
pub use workload::{Counters, FinalReads, Workload, WorkloadParams};
