//! The fault registry: one line per fault kind.
//!
//! Adding a fault is one module implementing [`FaultPackage`] and one line in the
//! [`registry!`] call below. The macro generates, from those lines, the scenario's
//! [`FaultSpec`] enum (`kind: <name>` plus the package's spec, kebab-case variant names,
//! so serde keeps its line-located errors), [`FAULT_KINDS`], [`KINDS`] (what each kind
//! needs and sweeps), and the dispatch methods on [`FaultSpec`].
//!
//! The final phase runs the kinds' sweeps in registry order, each once: the network first
//! (`heal-all`, `heal-delay`), then the slots (`settle-slots`), then the bus (`heal-bus`).

use faultline_history::{FaultOps, NemesisOps, Recorder};
use serde::{Deserialize, Serialize};

use crate::fault::{Ctx, Fault};
use crate::package::{FaultPackage, Needs, SpecError, Sweep, SweepWhen};
use crate::runner::record_heal;
use crate::spec::Target;

/// What the registry knows of one kind, without its spec type.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    /// Its op names; `ops.kind` is its name.
    pub ops: FaultOps,
    /// What it needs from the run.
    pub needs: Needs,
    /// Its final-phase sweep.
    pub sweep: Option<Sweep>,
}

macro_rules! registry {
    ($( $(#[$doc:meta])* $variant:ident => $package:ty, )*) => {
        /// One kind of fault with its parameters, as in the scenario (`kind: <name>`).
        #[derive(Debug, Clone, Serialize, Deserialize)]
        #[serde(tag = "kind", rename_all = "kebab-case")]
        pub enum FaultSpec {
            $( $(#[$doc])* $variant(<$package as FaultPackage>::Spec), )*
        }

        /// Every fault kind's name, in registry order, for help text and `--nemesis`.
        pub const FAULT_KINDS: &[&str] = &[$( <$package as FaultPackage>::OPS.kind, )*];

        /// Every fault kind, in registry order.
        pub const KINDS: &[Kind] = &[$(
            Kind {
                ops: <$package as FaultPackage>::OPS,
                needs: <$package as FaultPackage>::NEEDS,
                sweep: <$package as FaultPackage>::SWEEP,
            },
        )*];

        const OPS: &[FaultOps] = &[$( <$package as FaultPackage>::OPS, )*];

        impl FaultSpec {
            /// The kind's name.
            pub fn kind(&self) -> &'static str {
                match self {
                    $( FaultSpec::$variant(_) => <$package as FaultPackage>::OPS.kind, )*
                }
            }

            /// The named kind with its defaults, if there is such a kind.
            pub fn default_of(kind: &str) -> Option<FaultSpec> {
                $(
                    if kind == <$package as FaultPackage>::OPS.kind {
                        return Some(FaultSpec::$variant(Default::default()));
                    }
                )*
                None
            }

            /// The spec's node sets, by key (`target`, `from`, ...).
            pub fn targets(&self) -> Vec<(&'static str, &Target)> {
                match self {
                    $( FaultSpec::$variant(s) => <$package as FaultPackage>::targets(s), )*
                }
            }

            /// The kind's own checks beyond its spec's types.
            ///
            /// # Errors
            /// The key at fault and why.
            pub fn validate(&self) -> Result<(), SpecError> {
                match self {
                    $( FaultSpec::$variant(s) => <$package as FaultPackage>::validate(s), )*
                }
            }

            /// The fault, configured.
            pub fn build(&self) -> Box<dyn Fault> {
                match self {
                    $( FaultSpec::$variant(s) => <$package as FaultPackage>::build(s), )*
                }
            }
        }
    };
}

registry! {
    /// Cut network links between nodes (iptables inside the node namespaces).
    Partition => crate::partition::Partition,
    /// SIGKILL a server; restart it (same config, same nodes.conf) at heal.
    Kill => crate::process::Kill,
    /// SIGSTOP a server; SIGCONT it at heal.
    Pause => crate::process::Pause,
    /// `CLUSTER FAILOVER` on a replica of a chosen primary.
    Failover => crate::failover::Failover,
    /// Delay packets on links between nodes (NFQUEUE delayer in the senders' namespaces).
    Delay => crate::delay::Delay,
    /// Drop a share of packets on links between nodes (iptables statistic).
    Loss => crate::delay::Loss,
    /// Move a range of slots between primaries under load (ASK redirects for real).
    MigrateSlots => crate::migrate_slots::MigrateSlots,
    /// Delay cluster bus messages by link and type (needs `cluster.bus: proxy`).
    BusDelay => crate::proxy::fault::BusDelay,
    /// Drop cluster bus messages by link and type (needs `cluster.bus: proxy`).
    BusDrop => crate::proxy::fault::BusDrop,
    /// Hold cluster bus messages until healed (needs `cluster.bus: proxy`).
    BusHold => crate::proxy::fault::BusHold,
    /// A failover fired while a PONG from the replica to an observer is held (needs
    /// `cluster.bus: proxy`; seeds 000 and 002).
    FailoverWhileHeld => crate::proxy::stale_failover::FailoverWhileHeld,
    /// `FAILOVER TO host port [FORCE] TIMEOUT ms` on a standalone primary (needs
    /// `mode: standalone`; seed 003).
    StandaloneFailover => crate::standalone_failover::StandaloneFailover,
    /// `CLIENT PAUSE ms WRITE|ALL` on nodes (client port only); `CLIENT UNPAUSE` at heal.
    ClientPause => crate::client_port::ClientPause,
    /// `CLIENT KILL TYPE normal` on nodes: their client connections closed at once.
    ClientKill => crate::client_port::ClientKill,
    /// `DEBUG SLEEP s` on nodes, where the server allows DEBUG.
    DebugSleep => crate::client_port::DebugSleep,
}

impl FaultSpec {
    /// What the registry knows of this spec's kind.
    pub fn package(&self) -> &'static Kind {
        let kind = self.kind();
        KINDS
            .iter()
            .find(|k| k.ops.kind == kind)
            .expect("every FaultSpec variant is in KINDS")
    }

    /// What the kind needs from the run.
    pub fn needs(&self) -> Needs {
        self.package().needs
    }
}

/// The op names of every kind, for the checkers and the report.
pub fn op_catalog() -> NemesisOps {
    NemesisOps::new(OPS)
}

/// The final phase's sweeps for a nemesis of `faults`, in the order they run: each
/// kind's sweep once, in registry order, if its [`SweepWhen`] holds.
pub fn sweeps_for(faults: &[FaultSpec], bus_proxy_running: bool) -> Vec<Sweep> {
    let mut out: Vec<Sweep> = Vec::new();
    for sweep in KINDS.iter().filter_map(|k| k.sweep) {
        if out.iter().any(|s| s.op == sweep.op) {
            continue;
        }
        let due = match sweep.when {
            SweepWhen::Always => true,
            SweepWhen::KindInScenario => faults
                .iter()
                .any(|f| f.package().sweep.is_some_and(|s| s.op == sweep.op)),
            SweepWhen::BusProxy => bus_proxy_running,
        };
        if due {
            out.push(sweep);
        }
    }
    out
}

/// Runs and records the final phase's sweeps ([`sweeps_for`]): whatever the schedule's
/// state, the final phase must see the whole network, no slot half-moved and the whole
/// bus.
pub async fn final_sweeps(
    ctx: &Ctx,
    recorder: &Recorder,
    faults: &[FaultSpec],
    bus_proxy_running: bool,
) {
    final_sweeps_reaching(ctx, recorder, faults, bus_proxy_running, true).await;
}

/// Whether a sweep acts on the nodes' hosts: a kind declaring it needs the host
/// ([`Needs::node_host`]).
pub fn sweep_needs_host(sweep: &Sweep) -> bool {
    KINDS
        .iter()
        .any(|k| k.needs.node_host && k.sweep.is_some_and(|s| s.op == sweep.op))
}

/// [`final_sweeps`], leaving out those that act on the nodes' hosts unless `host` (a live
/// cluster reached through its client port only has no firewall or qdisc of ours to
/// sweep).
pub async fn final_sweeps_reaching(
    ctx: &Ctx,
    recorder: &Recorder,
    faults: &[FaultSpec],
    bus_proxy_running: bool,
    host: bool,
) {
    for sweep in sweeps_for(faults, bus_proxy_running) {
        if host || !sweep_needs_host(&sweep) {
            record_heal(sweep.op, recorder, (sweep.run)(ctx)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::ModeNeed;

    fn every_default() -> Vec<FaultSpec> {
        FAULT_KINDS
            .iter()
            .map(|k| FaultSpec::default_of(k).expect("every kind has a default"))
            .collect()
    }

    #[test]
    fn every_kind_has_a_default_spec_that_round_trips() {
        assert_eq!(FAULT_KINDS.len(), KINDS.len());
        for spec in every_default() {
            let kind = spec.kind();
            let json = serde_json::to_value(&spec).unwrap();
            assert_eq!(
                json["kind"], kind,
                "serde's kebab-case name is the package's"
            );
            let back: FaultSpec = serde_json::from_value(json.clone()).unwrap();
            assert_eq!(back.kind(), kind);
            assert_eq!(serde_json::to_value(&back).unwrap(), json, "{kind}");
            assert!(spec.validate().is_ok(), "{kind}: its defaults are valid");
        }
        assert!(FaultSpec::default_of("explode").is_none());
    }

    #[test]
    fn every_kind_states_its_needs_and_names_its_ops() {
        for spec in every_default() {
            let Kind { ops, needs, sweep } = *spec.package();
            let kind = ops.kind;
            assert!(
                ops.starts.contains(&kind),
                "{kind}: applying writes its name"
            );
            assert!(
                !spec.targets().is_empty(),
                "{kind}: every fault aims at some nodes"
            );
            if needs.bus_proxy {
                assert_eq!(
                    needs.mode,
                    ModeNeed::Cluster,
                    "{kind}: the bus is a cluster's"
                );
            }
            if ops.disrupts_failover {
                assert!(
                    !ops.heals.is_empty(),
                    "{kind}: in force until a declared heal"
                );
            }
            if ops.failover {
                assert!(ops.heals.iter().all(|h| !ops.starts.contains(h)), "{kind}");
            }
            assert_eq!(
                ops.sweeps,
                sweep
                    .as_ref()
                    .map(|s| std::slice::from_ref(&s.op))
                    .unwrap_or(&[]),
                "{kind}: OPS.sweeps names its SWEEP"
            );
            for op in ops.starts {
                assert!(!op_catalog().is_heal(op), "{kind}: {op} applies, not heals");
            }
        }
    }

    #[test]
    fn kinds_sharing_a_sweep_agree_on_when_it_runs() {
        for a in KINDS.iter().filter_map(|k| k.sweep) {
            for b in KINDS.iter().filter_map(|k| k.sweep) {
                if a.op == b.op {
                    assert_eq!(a.when, b.when, "{}", a.op);
                }
            }
        }
    }

    #[test]
    fn final_sweeps_run_network_first_then_slots_then_bus() {
        let ops = |faults: &[FaultSpec], proxy| -> Vec<&str> {
            sweeps_for(faults, proxy).iter().map(|s| s.op).collect()
        };
        assert_eq!(
            ops(&every_default(), true),
            ["heal-all", "heal-delay", "settle-slots", "heal-bus"]
        );
        let kill = [FaultSpec::default_of("kill").unwrap()];
        assert_eq!(ops(&kill, false), ["heal-all", "heal-delay"]);
        assert_eq!(ops(&kill, true), ["heal-all", "heal-delay", "heal-bus"]);
        let migrate = [FaultSpec::default_of("migrate-slots").unwrap()];
        assert_eq!(
            ops(&migrate, false),
            ["heal-all", "heal-delay", "settle-slots"]
        );
    }

    #[test]
    fn the_catalog_knows_every_heal_the_report_used_to_guess() {
        let catalog = op_catalog();
        for f in [
            "heal",
            "heal-all",
            "heal-delay",
            "heal-bus",
            "restart",
            "resume",
            "settle-slots",
        ] {
            assert!(catalog.is_heal(f), "{f}");
        }
        for f in ["failover", "failover-while-held", "standalone-failover"] {
            assert!(catalog.is_failover(f), "{f}");
        }
        let disrupting: Vec<&str> = catalog
            .kinds()
            .iter()
            .filter(|k| k.disrupts_failover)
            .map(|k| k.kind)
            .collect();
        assert_eq!(disrupting, ["partition", "kill", "pause", "client-pause"]);
    }
}
