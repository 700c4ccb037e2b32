//! The `nemesis:` section of a scenario: which faults, how often, against whom.
//!
//! ```yaml
//! nemesis:
//!   interval_s: 10      # from the start of one fault to the start of the next
//!   duration_s: 5       # how long a fault holds before it is healed
//!   start_after_s: 5    # quiet time before the first fault
//!   faults:
//!     - kind: partition
//!       shape: isolate  # isolate | halves | majorities-ring | bridge | one-way
//!       target: primaries
//!       count: 1
//!       ports: all      # all | bus | client
//!     - kind: kill
//!     - kind: pause
//!       target: replicas
//!     - kind: failover
//!       mode: default   # default | force | takeover
//!     - kind: migrate-slots
//!       slots: 64       # a count (from a slot holding keys) or [first, last]
//!     - kind: standalone-failover   # mode: standalone only
//!       force: false
//!       timeout_ms: 5000
//! ```

use std::fmt;

use faultline_history::bounds::{NonNegativeF64, PositiveF64};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

pub use crate::delay::{DelaySpec, LossSpec};
pub use crate::failover::{FailoverMode, FailoverSpec};
pub use crate::migrate_slots::MigrateSlotsSpec;
pub use crate::partition::{PartitionSpec, Ports, Shape};
pub use crate::process::NodeFaultSpec;
pub use crate::proxy::spec::{BusDelaySpec, BusDropSpec, BusHoldSpec};
pub use crate::proxy::stale_failover::FailoverWhileHeldSpec;
pub use crate::registry::{FaultSpec, FAULT_KINDS};
pub use crate::standalone_failover::StandaloneFailoverSpec;

/// The scenario's nemesis.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NemesisSpec {
    /// Seconds from the start of one fault to the start of the next.
    #[serde(default = "ten")]
    pub interval_s: PositiveF64,
    /// Seconds a fault holds before it is healed (failovers are not healed).
    #[serde(default = "five")]
    pub duration_s: PositiveF64,
    /// Seconds of undisturbed workload before the first fault.
    #[serde(default = "five_nn")]
    pub start_after_s: NonNegativeF64,
    /// The faults to draw from, one per interval, chosen by the run's seed.
    pub faults: Vec<FaultSpec>,
}

fn ten() -> PositiveF64 {
    PositiveF64(10.0)
}
fn five() -> PositiveF64 {
    PositiveF64(5.0)
}
fn five_nn() -> NonNegativeF64 {
    NonNegativeF64(5.0)
}

impl NemesisSpec {
    /// Faults of the named kinds, each with its defaults (the `--nemesis` override).
    ///
    /// # Errors
    /// Names the unknown kind and lists the known ones.
    pub fn from_kinds(kinds: &str) -> Result<NemesisSpec, String> {
        let mut faults = Vec::new();
        for kind in kinds.split(',').map(str::trim).filter(|k| !k.is_empty()) {
            let Some(fault) = FaultSpec::default_of(kind) else {
                return Err(format!(
                    "unknown fault {kind:?}; choose from {}",
                    FAULT_KINDS.join(", ")
                ));
            };
            faults.push(fault);
        }
        if faults.is_empty() {
            return Err("name at least one fault".into());
        }
        Ok(NemesisSpec {
            interval_s: ten(),
            duration_s: five(),
            start_after_s: five_nn(),
            faults,
        })
    }
}

/// A set of nodes, resolved when the fault fires (roles change during a run).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Target {
    /// One node.
    #[default]
    One,
    /// The largest set short of half.
    Minority,
    /// The smallest set over half.
    Majority,
    /// Nodes that are primaries right now.
    Primaries,
    /// Nodes that are replicas right now.
    Replicas,
    /// Every node.
    All,
    /// These nodes, by name.
    Nodes(Vec<String>),
}

impl Target {
    const NAMES: &'static str =
        "one, minority, majority, primaries, replicas, all, or a list of node names";
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::One => f.write_str("one"),
            Target::Minority => f.write_str("minority"),
            Target::Majority => f.write_str("majority"),
            Target::Primaries => f.write_str("primaries"),
            Target::Replicas => f.write_str("replicas"),
            Target::All => f.write_str("all"),
            Target::Nodes(n) => write!(f, "[{}]", n.join(", ")),
        }
    }
}

impl Serialize for Target {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Target::Nodes(n) => n.serialize(s),
            other => s.serialize_str(&other.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Target;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(Target::NAMES)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Target, E> {
                Ok(match v {
                    "one" => Target::One,
                    "minority" => Target::Minority,
                    "majority" => Target::Majority,
                    "primaries" => Target::Primaries,
                    "replicas" => Target::Replicas,
                    "all" => Target::All,
                    other => {
                        return Err(E::custom(format!(
                            "unknown target {other:?}; use {}",
                            Target::NAMES
                        )))
                    }
                })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Target, A::Error> {
                let mut names = Vec::new();
                while let Some(n) = seq.next_element::<String>()? {
                    names.push(n);
                }
                if names.is_empty() {
                    return Err(de::Error::custom("a node list needs at least one node"));
                }
                Ok(Target::Nodes(names))
            }
        }
        d.deserialize_any(V)
    }
}
