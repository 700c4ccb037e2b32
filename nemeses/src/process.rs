//! Faults on server processes: kill (SIGKILL, restart at heal) and pause (SIGSTOP,
//! SIGCONT at heal).

use faultline_history::bounds::Bounded;
use faultline_history::FaultOps;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::fault::{Applied, BoxFuture, Ctx, Fault, Heal, Outcome};
use crate::package::{FaultPackage, ModeNeed, Needs};
use crate::spec::Target;
use crate::target;

/// A fault on server processes (kill, pause).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFaultSpec {
    /// Which nodes (default one).
    #[serde(default)]
    pub target: Target,
    /// Draw this many of the target's nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<Bounded<1, 1000>>,
}

/// Which signal pair a process fault uses.
#[derive(Clone, Copy)]
enum Kind {
    Kill,
    Pause,
}

impl Kind {
    fn ops(self) -> FaultOps {
        match self {
            Kind::Kill => <Kill as FaultPackage>::OPS,
            Kind::Pause => <Pause as FaultPackage>::OPS,
        }
    }

    fn heal_name(self) -> &'static str {
        self.ops().heals[0]
    }
}

/// SIGKILL the target nodes' servers; the heal restarts them with the same config and
/// nodes.conf.
pub struct Kill(NodeFaultSpec);

impl Kill {
    /// A kill fault.
    pub fn new(spec: NodeFaultSpec) -> Kill {
        Kill(spec)
    }
}

/// SIGSTOP the target nodes' servers; the heal sends SIGCONT.
pub struct Pause(NodeFaultSpec);

impl Pause {
    /// A pause fault.
    pub fn new(spec: NodeFaultSpec) -> Pause {
        Pause(spec)
    }
}

impl Fault for Kill {
    fn apply<'a>(&'a self, ctx: &'a Ctx, draw: u64) -> BoxFuture<'a, Applied> {
        Box::pin(apply(Kind::Kill, &self.0, ctx, draw))
    }

    fn prepares(&self) -> bool {
        true
    }
}

impl Fault for Pause {
    fn apply<'a>(&'a self, ctx: &'a Ctx, draw: u64) -> BoxFuture<'a, Applied> {
        Box::pin(apply(Kind::Pause, &self.0, ctx, draw))
    }

    fn prepares(&self) -> bool {
        true
    }
}

async fn apply(kind: Kind, spec: &NodeFaultSpec, ctx: &Ctx, draw: u64) -> Applied {
    let params = json!({ "target": spec.target.to_string() });
    let roles = match spec.target {
        Target::Primaries | Target::Replicas => match ctx.roles().await {
            Ok(r) => Some(r),
            Err(e) => return Applied::failed(params, e),
        },
        _ => None,
    };
    let count = spec.count.map(|c| c.get() as usize);
    let nodes = match target::resolve(&spec.target, count, &ctx.names(), roles.as_ref(), draw) {
        Ok(n) => n,
        Err(e) => return Applied::failed(params, e),
    };
    // Everything above may run before the instant (the roles then as read then); the
    // signals are the fault, sent at it. A kill is in effect once the kernel shows the server
    // exiting (the backends still wait for the reap), a pause once it shows it stopped.
    let control = ctx.control.clone();
    let targets = nodes.clone();
    let signal = move || {
        targets
            .iter()
            .map(|node| {
                let result = match kind {
                    Kind::Kill => control.kill(node),
                    Kind::Pause => control.pause(node),
                };
                (node.clone(), result)
            })
            .collect::<Vec<_>>()
    };
    let Some(results) = crate::instant::at_instant(signal).await else {
        return Applied::failed(params, crate::fault::STOPPED);
    };
    let mut done = Vec::new();
    let mut errors = Vec::new();
    for (node, result) in results {
        match result {
            Ok(()) => done.push(node),
            Err(e) => errors.push(format!("{node}: {e:#}")),
        }
    }
    let value = json!({ "target": spec.target.to_string(), "nodes": nodes, "done": done });
    let heal: Option<Box<dyn Heal>> = (!done.is_empty()).then(|| {
        Box::new(Undo {
            kind,
            nodes: done.clone(),
        }) as Box<dyn Heal>
    });
    let (outcome, error) = match (done.is_empty(), errors.is_empty()) {
        (_, true) => (Outcome::Ok, None),
        (true, false) => (Outcome::Fail, Some(errors.join("; "))),
        (false, false) => (Outcome::Info, Some(errors.join("; "))),
    };
    Applied {
        outcome,
        value,
        error,
        heal,
    }
}

/// Restarts or resumes the nodes a kill or pause hit.
struct Undo {
    kind: Kind,
    nodes: Vec<String>,
}

impl Heal for Undo {
    fn name(&self) -> &'static str {
        self.kind.heal_name()
    }

    fn heal<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<Value, String>> {
        Box::pin(async move {
            let mut errors = Vec::new();
            for node in &self.nodes {
                let result = match self.kind {
                    Kind::Kill => ctx.control.restart(node),
                    Kind::Pause => ctx.control.resume(node),
                };
                if let Err(e) = result {
                    errors.push(format!("{node}: {e:#}"));
                }
            }
            if errors.is_empty() {
                Ok(json!({ "nodes": self.nodes }))
            } else {
                Err(errors.join("; "))
            }
        })
    }
}

/// Kill and pause: any mode, on the node's own process; they last until healed, and a
/// failover is expected to fail meanwhile.
const NEEDS: Needs = Needs {
    mode: ModeNeed::Any,
    bus_proxy: false,
    node_host: true,
};

/// The package of a process fault: kill and pause differ only in their names.
macro_rules! process_package {
    ($fault:ident, $kind:literal, $heal:literal) => {
        impl FaultPackage for $fault {
            type Spec = NodeFaultSpec;
            const OPS: FaultOps = FaultOps::new(&[$kind])
                .with_heals(&[$heal])
                .disrupting_failovers();
            const NEEDS: Needs = NEEDS;
            fn targets(spec: &NodeFaultSpec) -> Vec<(&'static str, &Target)> {
                vec![("target", &spec.target)]
            }
            fn build(spec: &NodeFaultSpec) -> Box<dyn Fault> {
                Box::new($fault::new(spec.clone()))
            }
        }
    };
}

process_package!(Kill, "kill", "restart");
process_package!(Pause, "pause", "resume");
