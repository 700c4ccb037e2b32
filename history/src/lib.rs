//! The record formats every part of faultline agrees on.
//!
//! A run writes two logs into its directory, one JSON object per line, as things happen:
//!
//! - `history.jsonl`: every operation a client or nemesis invoked and how it completed
//!   ([`Op`]), in the Jepsen sense of invoke / ok / fail / info.
//! - `topology.jsonl`: raw `CLUSTER NODES` replies the topology observer saw
//!   ([`topology::Observation`]), failed polls included.
//!
//! Module map:
//! - [`op`]: the [`Op`] record and its parts ([`OpType`], [`Process`], [`Redirect`]).
//! - [`reader`]: reads a JSONL log back, tolerating the torn last line a killed run leaves.
//! - [`op_stream`]: reads `history.jsonl` one op at a time (same rules), and one op back
//!   by its byte offset, for checkers that must not hold the whole history.
//! - [`recorder`]: the single writer that numbers, timestamps and appends ops.
//! - [`appender`]: [`JsonlAppender`], JSON lines flushed while a run goes.
//! - [`bounds`]: self-checking scalars for scenario files ([`bounds::Bounded`], ...).
//! - [`cluster_nodes`]: parses a raw `CLUSTER NODES` reply into a [`ClusterView`].
//! - [`nemesis_ops`]: the op names each fault kind writes ([`NemesisOps`]).
//! - [`info_replication`]: parses a raw `INFO replication` reply into a [`ReplicationInfo`].
//! - [`edn`]: a small EDN reader and writer (line/column errors).
//! - [`import`]: history files of other tools (Jepsen `history.edn`, Porcupine etcd and kv
//!   logs) detected from their content and read as [`Op`]s; [`import::to_edn`] writes Jepsen
//!   `history.edn`.
//!
//! This crate does no networking and knows nothing about servers; clients, nemeses and
//! checkers all depend on it, and on nothing of each other.

pub mod op;
pub mod op_stream;
pub mod reader;
pub mod recorder;

pub use op::{Op, OpType, Process, Redirect};
pub use op_stream::{for_each_op, op_at};
pub use reader::{read_jsonl, JsonlFile, ReadError, Skipped};
pub use recorder::Recorder;
pub mod appender;
pub mod bounds;
pub mod cluster_nodes;
pub mod nemesis_ops;
pub use cluster_nodes::{ClusterView, NodeLine};
pub use nemesis_ops::{FaultOps, NemesisOps};
pub mod info_replication;
pub use info_replication::ReplicationInfo;
pub mod topology;
pub use appender::JsonlAppender;
pub use topology::{
    for_each_observation, read_topology, Change, ChangeEncoder, LineChange, Observation,
    Reconstructor, TOPOLOGY_FILE,
};
pub mod edn;
pub mod import;
