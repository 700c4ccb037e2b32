//! The fault interface.
//!
//! A fault is applied once per scheduled step ([`Fault::apply`]) and returns what it did,
//! as it will appear in the history, plus, for faults that last, the [`Heal`] that undoes
//! it. Each kind is a [`crate::package::FaultPackage`] listed in [`crate::registry`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::control::{Control, HostChange};
use crate::roles::{self, Roles};

/// A boxed future, so faults can be trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Most faults one composed step runs at once ([`crate::spec::Compose`]): each gets its
/// own lane, so faults that own iptables chains or NFQUEUE delayers never share them.
pub const LANES: u8 = 4;

tokio::task_local! {
    static LANE: u8;
    static HOLD: Duration;
}

/// How long a change is assumed to hold when the schedule did not say (a fault applied
/// outside the runner).
pub const DEFAULT_HOLD: Duration = Duration::from_secs(60);

/// How long the fault being applied holds before its heal (the step's `hold`), for a
/// revert that must not come before it; [`DEFAULT_HOLD`] outside a scheduled step.
pub fn hold() -> Duration {
    HOLD.try_with(|h| *h).unwrap_or(DEFAULT_HOLD)
}

/// Runs `f` (a scheduled step's apply) in `lane`, holding for `hold`.
pub async fn in_step<F: Future>(lane: u8, hold: Duration, f: F) -> F::Output {
    HOLD.scope(hold, LANE.scope(lane, f)).await
}

/// The lane of the fault being applied or healed: 0 outside a composed step (the chain
/// and queue names every run has always used), 1.. for the other faults of a step.
/// Faults that own a chain or a queue read it when they apply and keep it in their heal.
pub fn lane() -> u8 {
    LANE.try_with(|l| *l).unwrap_or(0)
}

/// Runs `f` (a fault's apply) in `lane`.
pub async fn in_lane<F: Future>(lane: u8, f: F) -> F::Output {
    LANE.scope(lane, f).await
}

/// `base` for lane 0, `base` + `-` + `tag` + lane otherwise: a lane's own chain name.
pub fn lane_name(base: &str, tag: &str, lane: u8) -> String {
    if lane == 0 {
        base.to_string()
    } else {
        format!("{base}-{tag}{lane}")
    }
}

/// What faults act through.
#[derive(Clone)]
pub struct Ctx {
    /// The orchestrator's controls.
    pub control: Arc<dyn Control>,
    /// Budget for asking nodes their view.
    pub query_timeout: Duration,
}

impl Ctx {
    /// Runs `sh -c script sh arg` in each job's node namespace, with the job's stdin, all
    /// at once (each exec blocks, so each runs on the blocking pool); results in job
    /// order, errors as text.
    pub(crate) async fn sh_in_each(
        &self,
        script: &'static str,
        arg: &str,
        jobs: Vec<(String, Option<String>)>,
    ) -> Vec<(String, Result<String, String>)> {
        let handles: Vec<_> = jobs
            .into_iter()
            .map(|(node, stdin)| {
                let control = self.control.clone();
                let arg = arg.to_string();
                let name = node.clone();
                let handle = tokio::task::spawn_blocking(move || {
                    control
                        .exec_in_netns(&name, "sh", &["-c", script, "sh", &arg], stdin.as_deref())
                        .map_err(|e| format!("{e:#}"))
                });
                (node, handle)
            })
            .collect();
        let mut out = Vec::with_capacity(handles.len());
        for (node, handle) in handles {
            let result = handle.await.unwrap_or_else(|e| Err(e.to_string()));
            out.push((node, result));
        }
        out
    }

    /// Declares `change` on each node ([`Control::guard`], bounded by the step's
    /// [`hold`]), all at once; results in node order, errors as text.
    pub(crate) async fn guard_each(
        &self,
        nodes: &[String],
        change: &HostChange,
    ) -> Vec<(String, Result<(), String>)> {
        let bound = hold();
        self.each(nodes, change, move |c, n, ch| c.guard(n, ch, bound))
            .await
    }

    /// Declares `change` undone on each node ([`Control::release`]); the failures, as
    /// text naming the node.
    pub(crate) async fn release_each(&self, nodes: &[String], change: &HostChange) -> Vec<String> {
        self.each(nodes, change, |c, n, ch| c.release(n, ch))
            .await
            .into_iter()
            .filter_map(|(n, r)| r.err().map(|e| format!("{n}: {e}")))
            .collect()
    }

    async fn each(
        &self,
        nodes: &[String],
        change: &HostChange,
        call: impl Fn(&dyn Control, &str, &HostChange) -> anyhow::Result<()>
            + Send
            + Sync
            + Copy
            + 'static,
    ) -> Vec<(String, Result<(), String>)> {
        let handles: Vec<_> = nodes
            .iter()
            .map(|node| {
                let control = self.control.clone();
                let (name, change) = (node.clone(), change.clone());
                let handle = tokio::task::spawn_blocking(move || {
                    call(control.as_ref(), &name, &change).map_err(|e| format!("{e:#}"))
                });
                (node.clone(), handle)
            })
            .collect();
        let mut out = Vec::with_capacity(handles.len());
        for (node, handle) in handles {
            out.push((node, handle.await.unwrap_or_else(|e| Err(e.to_string()))));
        }
        out
    }

    /// Node names, in name order.
    pub fn names(&self) -> Vec<String> {
        self.control
            .nodes()
            .iter()
            .map(|n| n.name.clone())
            .collect()
    }

    /// Roles as the nodes see them now.
    ///
    /// # Errors
    /// If no node answers.
    pub async fn roles(&self) -> Result<Roles, String> {
        roles::observe(self.control.nodes(), self.query_timeout).await
    }
}

/// The error of a prepared fault whose run stopped before its instant (nothing was done).
pub const STOPPED: &str = "the run stopped before the fault's instant";

/// How an applied fault ends in the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The fault took effect.
    Ok,
    /// The fault certainly did not take effect (refused, no target).
    Fail,
    /// Nobody knows whether it took effect.
    Info,
}

/// The result of applying a fault.
pub struct Applied {
    /// ok / fail / info.
    pub outcome: Outcome,
    /// Exact parameters and observations (nodes, shape, rules, reply), for the history.
    pub value: Value,
    /// What went wrong, on fail / info.
    pub error: Option<String>,
    /// How to undo it, for faults that last.
    pub heal: Option<Box<dyn Heal>>,
}

impl Applied {
    /// A fault that could not be applied at all.
    pub fn failed(value: Value, error: impl Into<String>) -> Applied {
        Applied {
            outcome: Outcome::Fail,
            value,
            error: Some(error.into()),
            heal: None,
        }
    }
}

/// One kind of fault, configured.
pub trait Fault: Send + Sync {
    /// Applies the fault; `draw` is this step's share of the run's seed.
    fn apply<'a>(&'a self, ctx: &'a Ctx, draw: u64) -> BoxFuture<'a, Applied>;

    /// Whether `apply` does nothing to any node until it calls
    /// [`crate::instant::at_instant`]: the runner may then start it before the fault's
    /// instant ([`crate::instant::lead`]), and the action it hands over runs at the instant.
    fn prepares(&self) -> bool {
        false
    }
}

/// Undoes one applied fault.
pub trait Heal: Send + Sync {
    /// The history's `f` for healing (`heal`, `restart`, `resume`).
    fn name(&self) -> &'static str;
    /// Undoes the fault; returns what was done, for the history.
    fn heal<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<Value, String>>;
}
