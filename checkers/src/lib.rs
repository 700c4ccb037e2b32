//! faultline's checkers: a run's history, topology log and node logs in, verdicts out.
//!
//! Pure and fast: no async, no networking, no I/O except reading a run directory's files,
//! so `faultline analyze` re-checks a stored run exactly as the live run was checked.
//!
//! Module map:
//! - [`validity`]: [`Validity`], the three-valued verdict (valid / invalid / unknown), and
//!   how verdicts combine (the worst wins).
//! - [`run_data`]: [`RunData`], everything checkers read about a run (history, topology
//!   observations, node logs, tolerances), and [`load_run`], which reads it from a run
//!   directory.
//! - [`tolerances`]: [`Tolerances`], how long an anomaly must last to count.
//! - [`checker`]: the [`Checker`] trait, its [`CheckerResult`], and the [`Input`]s a
//!   checker needs (a checker whose input file is absent is skipped, with a note).
//! - [`registry`]: [`all`] checkers and [`check`], which runs them. A new checker is one
//!   file here plus one line in [`all`].
//! - [`stream`]: the opt-in one-pass reading of `history.jsonl` ([`HistoryPass`]), so a
//!   history of tens of millions of ops is checked without being held.
//! - [`results`]: [`Results`], the contents of `results.json`, with a terminal summary.
//! - The checkers, one file each:
//!   - [`lost_writes`]: [`LostWrites`], the set workload's lost-write checker (history);
//!   - [`replication_loop`]: [`ReplicationLoop`], replica-of cycles in a view (topology);
//!   - [`slot_coverage`]: [`SlotCoverage`], slots with no primary or two (topology);
//!   - [`split_brain`]: [`SplitBrain`], two nodes primary for the same slots in their own
//!     views, and writes both acknowledged (topology, history);
//!   - [`convergence`]: [`Convergence`], every view agreeing after the final heal
//!     (topology, history);
//!   - [`failover`]: [`FailoverOutcomes`], manual failovers refused or never done
//!     (history);
//!   - [`log_pattern`]: [`LogPattern`], known-bug signatures in node logs (logs);
//!   - [`bouncing_redirects`]: [`BouncingRedirects`], clients sent back and forth between
//!     nodes: redirect cycles, long chains, ping-pong (history);
//!   - [`client_errors`]: [`ClientErrors`], each promotion's error window for the client
//!     that drove the run, errors by kind, READONLY long after a failover (history,
//!     topology);
//!   - [`counter`]: [`CounterChecker`], the counter workload's reads between the
//!     increments certainly and possibly applied; under- and over-counts (history);
//!   - [`list_append`]: [`ListAppend`], the list-append workload's reads as prefixes of
//!     one growing list: first divergence, duplicates, unexpected and lost elements
//!     (history);
//!   - [`linearizable`]: [`Linearizable`], register and kv ops per key against a
//!     linearizable register / kv key (Wing–Gong/Lowe search with a budget; history).
//! - [`standalone_views`]: `mode: standalone` topology (`INFO replication` per node): the
//!   replica-of graph the observations in force describe, and its cycles.
//! - [`key_slot`]: the hash slot of a key (CRC16), for checkers that map writes to shards.
//! - Private: `views` (the topology log parsed once per analysis, node names from `myself`
//!   lines, slot-range helpers), `episodes` (how long one observer showed one anomaly),
//!   `fast_hash` (the hasher behind the checkers' big maps), `in_flight` (pairing each
//!   invoke with its completion), `keyed` (client ops paired and grouped by key).

#![warn(missing_docs)]

pub mod bouncing_redirects;
pub mod checker;
pub mod client_errors;
pub mod convergence;
pub mod counter;
mod episodes;
pub mod failover;
mod fast_hash;
mod in_flight;
pub mod key_slot;
mod keyed;
pub mod linearizable;
pub mod list_append;
pub mod log_pattern;
pub mod lost_writes;
pub mod registry;
pub mod replication_loop;
pub mod results;
pub mod run_data;
pub mod slot_coverage;
pub mod split_brain;
pub mod standalone_views;
pub mod stream;
pub mod stuck_migration;
pub mod tolerances;
pub mod validity;
mod views;

pub use bouncing_redirects::BouncingRedirects;
pub use checker::{Checker, CheckerResult, Input};
pub use client_errors::ClientErrors;
pub use convergence::Convergence;
pub use counter::CounterChecker;
pub use failover::FailoverOutcomes;
pub use linearizable::Linearizable;
pub use list_append::ListAppend;
pub use log_pattern::LogPattern;
pub use lost_writes::LostWrites;
pub use registry::{all, check, try_check};
pub use replication_loop::ReplicationLoop;
pub use results::Results;
pub use run_data::{load_run, load_run_streaming, LoadError, NodeLog, RunData};
pub use slot_coverage::SlotCoverage;
pub use split_brain::SplitBrain;
pub use stream::{HistoryPass, OpSource};
pub use stuck_migration::StuckMigration;
pub use tolerances::Tolerances;
pub use validity::Validity;
