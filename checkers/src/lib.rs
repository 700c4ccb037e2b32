//! faultline's checkers: a run's history (and, later, its topology log) in, verdicts out.
//!
//! Pure and fast: no async, no networking, no I/O except reading a run directory's files,
//! so `faultline analyze` re-checks a stored run exactly as the live run was checked.
//!
//! Module map:
//! - [`validity`]: [`Validity`], the three-valued verdict (valid / invalid / unknown), and
//!   how verdicts combine (the worst wins).
//! - [`run_data`]: [`RunData`], everything checkers read about a run, and [`load_run`],
//!   which reads it from a run directory.
//! - [`checker`]: the [`Checker`] trait and its [`CheckerResult`].
//! - [`registry`]: [`all`] checkers and [`check`], which runs them. A new checker is one
//!   file here plus one line in [`all`].
//! - [`results`]: [`Results`], the contents of `results.json`, with a terminal summary.
//! - [`lost_writes`]: [`LostWrites`], the set workload's lost-write checker.
//! - `fast_hash` (private): the hasher behind the checkers' big maps.

#![warn(missing_docs)]

pub mod checker;
mod fast_hash;
pub mod lost_writes;
pub mod registry;
pub mod results;
pub mod run_data;
pub mod validity;

pub use checker::{Checker, CheckerResult};
pub use lost_writes::LostWrites;
pub use registry::{all, check};
pub use results::Results;
pub use run_data::{load_run, LoadError, RunData};
pub use validity::Validity;
