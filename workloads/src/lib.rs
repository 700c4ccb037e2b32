//! faultline's clients and workloads.
//!
//! Module map:
//! - [`slots`]: key to hash slot (CRC16 and hash tags), and tags that land on a given slot.
//! - [`client`]: [`ClusterClient`], which follows MOVED / ASK / TRYAGAIN / CLUSTERDOWN /
//!   REDIRECT itself, records every hop, and classifies each outcome as ok, fail or info.
//! - [`set`]: the set workload (unique adds to a few keys, one final read per key).
//!
//! A workload drives a [`ClusterClient`] and records every op through a
//! [`faultline_history::Recorder`]; it knows nothing of processes, namespaces or faults.

pub mod client;
pub mod set;
pub mod slots;

pub use client::{ClientConfig, ClusterClient, Outcome};
pub use set::{Counters, FinalReads, SetSpec, SetWorkload};
