//! What a fault kind declares about itself: [`FaultPackage`].
//!
//! Each fault module implements [`FaultPackage`] once per kind it offers; one line in
//! [`crate::registry`] lists it. Everything else (the scenario's `FaultSpec` enum, its
//! validation, `--nemesis`, the final phase's sweeps, the op names the checkers and the
//! report read) is derived from these declarations.

use std::fmt::Debug;

use faultline_history::FaultOps;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::fault::{BoxFuture, Ctx, Fault};
use crate::spec::Target;

/// Which cluster mode a fault works in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeNeed {
    /// Cluster mode and standalone mode alike.
    Any,
    /// Only `mode: cluster` (it speaks `CLUSTER ...` or acts on the cluster bus).
    Cluster,
    /// Only `mode: standalone`.
    Standalone,
}

/// What a fault needs from the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// The cluster mode it works in.
    pub mode: ModeNeed,
    /// Whether it acts on the cluster bus proxy (`cluster.bus: proxy`).
    pub bus_proxy: bool,
    /// Whether it acts on the node's host: runs commands in the node's network namespace
    /// or signals its server process, rather than only talking to its ports.
    pub node_host: bool,
}

/// When a final-phase sweep runs (the final phase runs only with a nemesis).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepWhen {
    /// In every run with a nemesis, whatever its faults.
    Always,
    /// When the scenario's nemesis has a fault of a kind declaring this sweep.
    KindInScenario,
    /// When the cluster bus proxy runs.
    BusProxy,
}

/// A final-phase sweep: undoes whatever its faults left, whatever the schedule's state.
#[derive(Clone, Copy)]
pub struct Sweep {
    /// The history's `f` for it.
    pub op: &'static str,
    /// When it runs.
    pub when: SweepWhen,
    /// What it does; returns what was done, for the history.
    pub run: for<'a> fn(&'a Ctx) -> BoxFuture<'a, Result<Value, String>>,
}

impl Debug for Sweep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sweep")
            .field("op", &self.op)
            .field("when", &self.when)
            .finish()
    }
}

/// A scenario value a fault refuses, beyond what its spec's types check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// The spec's key at fault (`count`), under `nemesis.faults[i]`.
    pub key: &'static str,
    /// What is wrong.
    pub message: String,
}

/// Everything about one fault kind.
pub trait FaultPackage {
    /// Its parameters, as in the scenario (`kind:` aside).
    type Spec: Debug + Clone + Default + Serialize + DeserializeOwned;
    /// The op names it writes; `OPS.kind` is its name in scenarios.
    const OPS: FaultOps;
    /// What it needs from the run.
    const NEEDS: Needs;
    /// The final phase's sweep for what it leaves behind, if any (faults may share one:
    /// it runs once).
    const SWEEP: Option<Sweep> = None;
    /// The spec's node sets, by key, for node-name validation.
    fn targets(spec: &Self::Spec) -> Vec<(&'static str, &Target)>;
    /// Checks beyond the spec's types.
    ///
    /// # Errors
    /// The key at fault and why.
    fn validate(_spec: &Self::Spec) -> Result<(), SpecError> {
        Ok(())
    }
    /// The fault, configured.
    fn build(spec: &Self::Spec) -> Box<dyn Fault>;
}

/// Implements [`FaultPackage`] for a fault on links: built by `$fault::new(spec)`, aimed by
/// the spec's `from` and `to`, with the `NEEDS` and `SWEEP` consts in scope (delay and
/// loss; the bus faults).
macro_rules! links_package {
    ($fault:ident, $spec:ident, $ops:expr) => {
        impl $crate::package::FaultPackage for $fault {
            type Spec = $spec;
            const OPS: faultline_history::FaultOps = $ops;
            const NEEDS: $crate::package::Needs = NEEDS;
            const SWEEP: Option<$crate::package::Sweep> = Some(SWEEP);
            fn targets(spec: &$spec) -> Vec<(&'static str, &$crate::spec::Target)> {
                vec![("from", &spec.from), ("to", &spec.to)]
            }
            fn build(spec: &$spec) -> Box<dyn $crate::fault::Fault> {
                Box::new($fault::new(spec.clone()))
            }
        }
    };
}
pub(crate) use links_package;
