//! faultline's nemeses: fault primitives and the seeded schedule that fires them.
//!
//! Module map:
//! - [`spec`]: the scenario's `nemesis:` section (faults, targets, shapes, ports).
//! - [`control`]: [`Control`], what the orchestrator lets faults do to nodes.
//! - [`fault`]: the [`Fault`] / [`Heal`] interface.
//! - [`package`]: [`FaultPackage`], what a fault kind declares about itself;
//!   [`registry`]: the one list of kinds (`FaultSpec`, `--nemesis`, final sweeps, op names).
//! - [`iptables`]: the rules and scripts of the faults that own an iptables chain.
//! - [`partition`], [`process`] (kill, pause), [`failover`], [`delay`] (delay, loss),
//!   [`migrate_slots`] (slot migration with ASK windows), [`standalone_failover`]
//!   (`FAILOVER TO` in `mode: standalone`), [`client_port`] (client-pause, client-kill,
//!   debug-sleep: the client port only, for live clusters): the faults.
//! - [`target`], [`roles`]: which nodes a target means right now.
//! - [`schedule`]: the seeded plan; [`runner`]: fires it, records every fault, heals;
//!   [`instant`]: prepared faults put in effect at their instant from a thread of their own.
//!
//! Faults know nothing of namespaces or containers; they act through [`Control`].

pub mod client_port;
pub mod control;
pub mod delay;
pub mod failover;
pub mod fault;
pub mod instant;
pub mod iptables;
pub mod migrate_slots;
pub mod package;
pub mod partition;
pub mod process;
pub mod proxy;
pub mod registry;
pub mod roles;
pub mod runner;
pub mod schedule;
pub mod spec;
pub mod standalone_failover;
pub mod target;

pub use control::{Control, HostChange, NodeInfo};
pub use fault::{Applied, Ctx, Fault, Heal, Outcome};
pub use package::FaultPackage;
pub use runner::Nemesis;
pub use spec::{FaultSpec, NemesisSpec};
