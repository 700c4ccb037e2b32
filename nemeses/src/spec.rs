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
//!
//! Faults during faults (Jepsen's `nemesis/compose`), two ways; the faults themselves stay
//! in `faults`, validated as ever:
//!
//! ```yaml
//! nemesis:
//!   interval_s: 8
//!   faults:
//!     - kind: delay            # faults[0]
//!       from: primaries
//!       to: replicas
//!       delay_ms: 300
//!     - kind: standalone-failover   # faults[1]
//!   compose:                   # every interval runs all of these, each at its offset
//!     - fault: 0
//!       after_s: 0             # from the interval's start
//!       hold_s: 3              # until its heal (default duration_s)
//!     - fault: 1
//!       after_previous: true   # counted from when the delay took effect ...
//!       after_s: 0.5           # ... so it fires while the delay holds
//! ```
//!
//! or `concurrent: 2`: each interval draws two different faults from `faults` (seeded)
//! and applies them together, each held `duration_s`. Each fault of a step runs in its own
//! lane ([`crate::fault::lane`]): its own iptables chain and NFQUEUE queue, healed alone.

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
    /// Faults run together every interval, each at its own offset (instead of drawing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compose: Vec<Compose>,
    /// Draw this many different faults per interval and apply them together (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrent: Option<std::num::NonZeroUsize>,
}

/// One fault of a composed step: which, when in the interval, how long.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Compose {
    /// Index into `faults`.
    pub fault: usize,
    /// Seconds from the interval's start to this fault.
    #[serde(default = "zero_nn")]
    pub after_s: NonNegativeF64,
    /// Seconds it holds before its heal (default `duration_s`; faults without a heal,
    /// failovers, ignore it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_s: Option<PositiveF64>,
    /// In sequence: `after_s` counts from the moment the previous entry's fault took
    /// effect (its apply returned), not from the interval's start. Applying can take a
    /// while (iptables in every namespace, a delayer to start), and "fire while the delay
    /// holds" must not race it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub after_previous: bool,
}

/// A nemesis section that cannot work, found before the run: the dotted field, the word
/// on its line, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeError {
    /// The dotted field (`nemesis.compose[1].after_s`).
    pub field: String,
    /// A word on the field's line, to locate it.
    pub hint: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// Kinds that act on a server process: two at once may hit the same node (a pause of a
/// killed server, a restart of a paused one), so they never overlap in a step.
const PROCESS_KINDS: &[&str] = &["kill", "pause"];

impl NemesisSpec {
    /// Whether faults overlap by design (composed or concurrent).
    pub fn is_composed(&self) -> bool {
        !self.compose.is_empty() || self.concurrent.is_some_and(|c| c.get() > 1)
    }

    /// Checks what the types cannot: `compose` and `concurrent` name faults that exist,
    /// fit in the interval, use at most [`crate::fault::LANES`] lanes, and never overlap
    /// two process faults.
    ///
    /// # Errors
    /// The first problem, located.
    pub fn validate(&self) -> Result<(), ComposeError> {
        let interval = self.interval_s.get();
        let lanes = usize::from(crate::fault::LANES);
        if let Some(c) = self.concurrent {
            let field = "nemesis.concurrent".to_string();
            let err = |message: String| ComposeError {
                field: field.clone(),
                hint: "concurrent".into(),
                message,
            };
            if !self.compose.is_empty() {
                return Err(err(
                    "use either `concurrent` (drawn faults together) or `compose` (these \
                     faults at these offsets), not both"
                        .into(),
                ));
            }
            if c.get() > self.faults.len() {
                return Err(err(format!(
                    "{} faults at once, but `faults` lists {}: list more or draw fewer",
                    c.get(),
                    self.faults.len()
                )));
            }
            if c.get() > lanes {
                return Err(err(format!("at most {lanes} faults at once")));
            }
            if c.get() > 1 && self.duration_s.get() >= interval {
                return Err(err(format!(
                    "faults held {} s cannot all end before the next interval ({} s): \
                     shorten `duration_s` or lengthen `interval_s`",
                    self.duration_s.get(),
                    interval
                )));
            }
        }
        if self.compose.len() > lanes {
            return Err(ComposeError {
                field: format!("nemesis.compose[{lanes}]"),
                hint: "fault".into(),
                message: format!("at most {lanes} faults in one composed step"),
            });
        }
        let mut spans: Vec<(usize, &str, f64, f64)> = Vec::new();
        for (i, c) in self.compose.iter().enumerate() {
            if i == 0 && c.after_previous {
                return Err(ComposeError {
                    field: "nemesis.compose[0].after_previous".into(),
                    hint: "after_previous".into(),
                    message: "the first fault of a step has no previous one: remove \
                              `after_previous`"
                        .into(),
                });
            }
            let Some(fault) = self.faults.get(c.fault) else {
                return Err(ComposeError {
                    field: format!("nemesis.compose[{i}].fault"),
                    hint: "fault".into(),
                    message: format!(
                        "no fault {}: `faults` has {} (numbered from 0)",
                        c.fault,
                        self.faults.len()
                    ),
                });
            };
            // In sequence, the offset adds to the previous one's (applying taking no time:
            // whatever it takes shows as `late_ms`).
            let start = match spans.last() {
                Some((_, _, prev, _)) if c.after_previous => prev + c.after_s.get(),
                _ => c.after_s.get(),
            };
            let hold = c.hold_s.map_or(self.duration_s.get(), |h| h.get());
            let heals = !fault.package().ops.heals.is_empty();
            let end = if heals { start + hold } else { start };
            if start >= interval || end >= interval {
                let (key, what) = if start >= interval {
                    ("after_s", format!("starts {start} s into"))
                } else {
                    ("hold_s", format!("is healed {end} s into"))
                };
                return Err(ComposeError {
                    field: format!("nemesis.compose[{i}].{key}"),
                    hint: key.into(),
                    message: format!(
                        "{} {what} a {interval} s interval, so the schedule cannot be kept: \
                         fit it inside `interval_s` or lengthen it",
                        fault.kind()
                    ),
                });
            }
            let kind = fault.kind();
            if PROCESS_KINDS.contains(&kind) {
                if let Some((j, other, _, _)) = spans
                    .iter()
                    .find(|(_, k, s, e)| PROCESS_KINDS.contains(k) && start <= *e && *s <= end)
                {
                    return Err(ComposeError {
                        field: format!("nemesis.compose[{i}].fault"),
                        hint: "fault".into(),
                        message: format!(
                            "{kind} overlaps {other} (compose[{j}]): two process faults at \
                             once may hit one node; put them in sequence"
                        ),
                    });
                }
            }
            spans.push((i, kind, start, end));
        }
        Ok(())
    }
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
fn zero_nn() -> NonNegativeF64 {
    NonNegativeF64(0.0)
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
            compose: Vec::new(),
            concurrent: None,
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
