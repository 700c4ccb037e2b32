//! Scenario files: what a run does, as YAML, validated on load.
//!
//! Every mistake a person can make in a scenario (an unknown key, a wrong type, an
//! impossible value such as 0 primaries or a negative rate) is reported with the file, line
//! and field, so it can be fixed without reading our source. Validation happens inside
//! deserialization (see [`Bounded`], [`PositiveF64`]) so the YAML parser's location applies.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use faultline_checkers::Tolerances;
pub use faultline_history::bounds::{Bounded, NonNegativeF64, PositiveF64};
use faultline_nemeses::package::ModeNeed;
use faultline_nemeses::proxy::BusMode;
use faultline_nemeses::spec::Target;
pub use faultline_nemeses::NemesisSpec;
use faultline_workloads::workload::ClientMix;

pub use crate::kinds::{BackendName, ClientName, FlavorName, Mode, Persistence};

pub(crate) mod locate;
use locate::{clean_message, line_of, locate, quoted};

/// The scenario `faultline run` uses when given no file.
pub const BUILTIN_SMOKE: &str = include_str!("../scenarios/smoke.yaml");
/// What error messages call the built-in scenario.
pub const BUILTIN_SMOKE_NAME: &str = "scenarios/smoke.yaml (built in)";

/// One scenario, as written (plus defaults), and after [`Scenario::resolve`] with its seed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Name of the scenario; runs are stored under `store/<name>/`. Defaults to the file
    /// name without extension.
    #[serde(default)]
    pub name: String,
    /// What the scenario is for, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `cluster` (default), or `standalone`: one primary and `cluster.replicas` replicas
    /// joined with REPLICAOF, no cluster mode.
    #[serde(default, skip_serializing_if = "Mode::is_cluster")]
    pub mode: Mode,
    /// Server kind.
    #[serde(default)]
    pub flavor: FlavorName,
    /// Where the nodes run.
    #[serde(default)]
    pub backend: BackendName,
    /// Seed for every random choice; absent means a fresh one, written back on resolve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Seconds of workload.
    #[serde(default = "default_time_limit")]
    pub time_limit: PositiveF64,
    /// The cluster to bring up.
    #[serde(default)]
    pub cluster: ClusterSpec,
    /// The client load.
    #[serde(default)]
    pub workload: WorkloadSpec,
    /// Faults to inject while the workload runs; absent means none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nemesis: Option<NemesisSpec>,
    /// How long an anomaly must last before a checker counts it (default: any length),
    /// and the convergence bound. `faultline analyze` reads them back from the run's
    /// scenario.yaml.
    #[serde(default, skip_serializing_if = "is_default_tolerances")]
    pub tolerances: Tolerances,
    /// Test a running cluster faultline did not start (`--live`); absent: faultline
    /// starts its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<crate::live::LiveSpec>,
}

/// A conflict found after parsing, as (dotted field, word on its line, message), turned
/// into an error at the field's line.
fn located(
    text: &str,
    file: &str,
    conflict: Option<(String, String, String)>,
) -> Result<(), ScenarioError> {
    let Some((field, hint, message)) = conflict else {
        return Ok(());
    };
    let (line, column) = locate(text, &field, Some(&hint)).unwrap_or((0, 0));
    Err(ScenarioError::Invalid {
        file: file.to_string(),
        line,
        column,
        field: Some(field),
        message,
    })
}

fn is_default_tolerances(t: &Tolerances) -> bool {
    *t == Tolerances::default()
}

fn default_time_limit() -> PositiveF64 {
    PositiveF64(10.0)
}

/// The cluster's shape and server settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// Number of primaries (shards).
    #[serde(default = "three")]
    pub primaries: Bounded<1, 100>,
    /// Replicas per primary.
    #[serde(default = "one")]
    pub replicas: Bounded<0, 10>,
    /// `cluster-node-timeout` in milliseconds.
    #[serde(default = "node_timeout")]
    pub node_timeout_ms: Bounded<50, 600_000>,
    /// What the servers persist.
    #[serde(default)]
    pub persistence: Persistence,
    /// Seconds to wait for the new cluster to agree before giving up.
    #[serde(default = "form_timeout")]
    pub form_timeout_s: PositiveF64,
    /// Seconds the final phase waits for the cluster to agree again.
    #[serde(default = "converge_timeout")]
    pub converge_timeout_s: PositiveF64,
    /// Server binary to run instead of the flavor's default (a user's own build).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<PathBuf>,
    /// Server version to run (`8.1.1`), or a Debian suite to take it from (`sid`): the
    /// host's binary if its version matches, else a cached root filesystem (image, for the
    /// docker backend) built offline when missing. Absent: the host's binary (docker: an
    /// image of the host binary's version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Garnet only: start nodes with `--clean-cluster-config` (a restarted node forgets its
    /// cluster config instead of reloading a stale one; microsoft/garnet#1044).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub clean_cluster_config: bool,
    /// faultline-node only (`flavor: faultline`): the seed bugs to switch on
    /// (`stale-pong-applied`, `no-epoch-check-on-demotion`, `failback-keeps-old-config`,
    /// `ack-before-replicate-lost`; `node/BUGS.md`). None by default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bugs: Vec<String>,
    /// How nodes reach each other's cluster bus: `direct`, or `proxy` (through the
    /// harness, which the bus-* faults need).
    #[serde(default, skip_serializing_if = "is_direct")]
    pub bus: BusMode,
}

fn is_direct(bus: &BusMode) -> bool {
    *bus == BusMode::Direct
}

fn three() -> Bounded<1, 100> {
    Bounded(3)
}
fn one() -> Bounded<0, 10> {
    Bounded(1)
}
fn node_timeout() -> Bounded<50, 600_000> {
    Bounded(5000)
}
fn form_timeout() -> PositiveF64 {
    PositiveF64(60.0)
}
fn converge_timeout() -> PositiveF64 {
    PositiveF64(30.0)
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            primaries: three(),
            replicas: one(),
            node_timeout_ms: node_timeout(),
            persistence: Persistence::None,
            form_timeout_s: form_timeout(),
            converge_timeout_s: converge_timeout(),
            binary: None,
            version: None,
            clean_cluster_config: false,
            bugs: Vec::new(),
            bus: BusMode::Direct,
        }
    }
}

/// A workload's name, as scenarios write it (`workload: name: set`): always one of
/// [`faultline_workloads::registry::NAMES`], which parsing checks (an unknown name is the
/// same error an unknown enum variant gives).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkloadName(&'static str);

impl WorkloadName {
    /// The name as written in scenarios, and as the registry knows it.
    pub fn label(self) -> &'static str {
        self.0
    }

    /// The registry's workload called `name`.
    ///
    /// # Errors
    /// Names the choices when `name` is not a workload.
    pub fn named(name: &str) -> Result<WorkloadName, String> {
        use faultline_workloads::registry::{lookup, NAMES};
        lookup(name).map(WorkloadName).ok_or_else(|| {
            format!(
                "unknown workload {name:?}; choose one of {}",
                NAMES.join(", ")
            )
        })
    }
}

impl Default for WorkloadName {
    /// The registry's first workload (`set`).
    fn default() -> Self {
        WorkloadName(faultline_workloads::registry::NAMES[0])
    }
}

impl Serialize for WorkloadName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

impl<'de> Deserialize<'de> for WorkloadName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use faultline_workloads::registry::{lookup, NAMES};
        let name = String::deserialize(d)?;
        lookup(&name)
            .map(WorkloadName)
            .ok_or_else(|| serde::de::Error::unknown_variant(&name, NAMES))
    }
}

/// The client load.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    /// Which workload.
    #[serde(default)]
    pub name: WorkloadName,
    /// Number of keys, spread evenly over the slot space.
    #[serde(default = "keys")]
    pub keys: Bounded<1, 16384>,
    /// Client processes at once.
    #[serde(default = "concurrency")]
    pub concurrency: Bounded<1, 10_000>,
    /// Target ops per second over all processes; absent means as fast as they can.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<PositiveF64>,
    /// Processes whose ops go out together: with N above 1, each client task runs N
    /// processes, and each round their ops (one per process) go to the servers as one
    /// pipeline per node, so many requests ride each connection per write. Every op keeps
    /// its own invoke and completion, and each process still has one op at a time. The
    /// set workload on faultline's client batches its ops (without a routing client mix);
    /// other ops run side by side as before. 1 (the default): a task per process.
    #[serde(default = "pipeline", skip_serializing_if = "is_one")]
    pub pipeline: Bounded<1, 1024>,
    /// Budget for one op, redirects included; past it the op is `info`.
    #[serde(default = "op_timeout")]
    pub op_timeout_ms: Bounded<1, 600_000>,
    /// Seconds the final reads may take, retries included.
    #[serde(default = "final_read_timeout")]
    pub final_read_timeout_s: PositiveF64,
    /// Readers, own and fresh connections, random start nodes (default: none of them).
    #[serde(default, skip_serializing_if = "ClientMix::is_default")]
    pub mix: ClientMix,
    /// Which client drives the ops: faultline's own (the default) or a client library
    /// behind its adapter (`adapters/PROTOCOL.md`). Setup and final reads stay with
    /// faultline's client, so the final state is read the same way for every client.
    #[serde(default, skip_serializing_if = "ClientName::is_faultline")]
    pub client: ClientName,
    /// The library's configuration, handed to the adapter as is (its defaults otherwise):
    /// keyword arguments of redis-py's `RedisCluster`, valkey-py's `ValkeyCluster`,
    /// GLIDE's `GlideClusterClientConfiguration`; redis-rs: `retries`, `min_retry_wait`,
    /// `max_retry_wait`, `connection_timeout_ms`, `response_timeout_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_config: Option<serde_json::Value>,
    /// With `client: adapter`: the program and its arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter_command: Option<Vec<String>>,
}

fn keys() -> Bounded<1, 16384> {
    Bounded(32)
}
fn concurrency() -> Bounded<1, 10_000> {
    Bounded(16)
}
fn pipeline() -> Bounded<1, 1024> {
    Bounded(1)
}
fn is_one(n: &Bounded<1, 1024>) -> bool {
    n.0 == 1
}
fn op_timeout() -> Bounded<1, 600_000> {
    Bounded(1000)
}
fn final_read_timeout() -> PositiveF64 {
    PositiveF64(30.0)
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        WorkloadSpec {
            name: WorkloadName::default(),
            keys: keys(),
            concurrency: concurrency(),
            rate: None,
            pipeline: pipeline(),
            op_timeout_ms: op_timeout(),
            final_read_timeout_s: final_read_timeout(),
            mix: ClientMix::default(),
            client: ClientName::default(),
            client_config: None,
            adapter_command: None,
        }
    }
}

/// A scenario that could not be used, located as precisely as the parser allows.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read scenario {file}")]
    Io {
        /// The file as given.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML did not fit the schema.
    #[error("{file}:{line}:{column}: {}{message}", field.as_ref().map(|f| format!("{f}: ")).unwrap_or_default())]
    Invalid {
        /// The file as given.
        file: String,
        /// 1-based line (0 when the parser gave none).
        line: usize,
        /// 1-based column.
        column: usize,
        /// Dotted path of the field, e.g. `cluster.primaries`.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
}

impl Scenario {
    /// Reads and validates a scenario file.
    ///
    /// # Errors
    /// [`ScenarioError`] naming the file, line and field.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
            file: file.clone(),
            source,
        })?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "scenario".into());
        Self::parse(&text, &file, &stem)
    }

    /// The built-in smoke scenario.
    pub fn builtin() -> Scenario {
        Self::parse(BUILTIN_SMOKE, BUILTIN_SMOKE_NAME, "smoke")
            .expect("the built-in scenario is valid (tested)")
    }

    /// Parses scenario text; `file` is used in errors, `default_name` when `name` is absent.
    ///
    /// # Errors
    /// [`ScenarioError::Invalid`] naming the file, line and field.
    pub fn parse(text: &str, file: &str, default_name: &str) -> Result<Scenario, ScenarioError> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let mut scenario: Scenario = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            // The parser places errors raised by our own checks at the start of the
            // enclosing mapping; the key's own line is what a person needs.
            let message = clean_message(&inner.to_string(), &path);
            let (line, column) = locate(text, &path, quoted(&message))
                .or_else(|| inner.location().map(|l| (l.line(), l.column())))
                .unwrap_or((0, 0));
            ScenarioError::Invalid {
                file: file.to_string(),
                line,
                column,
                message,
                field: (path != ".").then_some(path),
            }
        })?;
        if scenario.name.is_empty() {
            scenario.name = default_name.to_string();
        }
        if !scenario
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            || scenario.name.starts_with('.')
        {
            return Err(ScenarioError::Invalid {
                file: file.to_string(),
                line: line_of(text, "name:"),
                column: 1,
                field: Some("name".into()),
                message: format!(
                    "{:?} is used as a directory name: use letters, digits, '-', '_' and '.'",
                    scenario.name
                ),
            });
        }
        scenario.check_node_names(text, file)?;
        scenario.check_mode(text, file)?;
        scenario.check_live(text, file)?;
        scenario.check_compose(text, file)?;
        Ok(scenario)
    }

    /// Node names in fault targets must be nodes this scenario has.
    fn check_node_names(&self, text: &str, file: &str) -> Result<(), ScenarioError> {
        let Some(nemesis) = &self.nemesis else {
            return Ok(());
        };
        let n = self.node_count();
        for (i, fault) in nemesis.faults.iter().enumerate() {
            if let Err(e) = fault.validate() {
                let field = format!("nemesis.faults[{i}]");
                let (line, column) = locate(text, &field, Some(e.key)).unwrap_or((0, 0));
                return Err(ScenarioError::Invalid {
                    file: file.to_string(),
                    line,
                    column,
                    field: Some(format!("{field}.{}", e.key)),
                    message: e.message,
                });
            }
            if fault.needs().bus_proxy && self.cluster.bus != BusMode::Proxy {
                let field = format!("nemesis.faults[{i}]");
                let (line, column) = locate(text, &field, Some(fault.kind())).unwrap_or((0, 0));
                return Err(ScenarioError::Invalid {
                    file: file.to_string(),
                    line,
                    column,
                    field: Some(format!("{field}.kind")),
                    message: format!(
                        "{} acts on the cluster bus proxy: add `bus: proxy` under `cluster:`",
                        fault.kind()
                    ),
                });
            }
            for (key, target) in fault.targets() {
                if let Target::Nodes(names) = target {
                    let valid = |name: &str| {
                        name.strip_prefix('n')
                            .and_then(|d| d.parse::<usize>().ok())
                            .is_some_and(|k| k >= 1 && k <= n && name == format!("n{k}"))
                    };
                    if let Some(bad) = names.iter().find(|x| !valid(x)) {
                        let field = format!("nemesis.faults[{i}].{key}");
                        let (line, column) =
                            locate(text, &field, Some(bad.as_str())).unwrap_or((0, 0));
                        return Err(ScenarioError::Invalid {
                            file: file.to_string(),
                            line,
                            column,
                            field: Some(field),
                            message: format!("no node {bad:?}: this cluster has n1 to n{n}"),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Composed and concurrent faults must fit their interval and never overlap two process
    /// faults ([`NemesisSpec::validate`]).
    fn check_compose(&self, text: &str, file: &str) -> Result<(), ScenarioError> {
        let Some(Err(e)) = self.nemesis.as_ref().map(NemesisSpec::validate) else {
            return Ok(());
        };
        let (line, column) = locate(text, &e.field, Some(&e.hint)).unwrap_or((0, 0));
        Err(ScenarioError::Invalid {
            file: file.to_string(),
            line,
            column,
            field: Some(e.field),
            message: e.message,
        })
    }

    /// `mode: standalone` has one primary, no cluster bus and no cluster faults; the
    /// standalone failover needs it.
    fn check_mode(&self, text: &str, file: &str) -> Result<(), ScenarioError> {
        located(text, file, self.mode_conflict())
    }

    /// A live cluster's section, and the faults it allows ([`crate::live::fault_refusal`]).
    fn check_live(&self, text: &str, file: &str) -> Result<(), ScenarioError> {
        located(text, file, crate::live::fault_refusal(self))
    }

    /// What in the scenario does not fit its `mode`, as (dotted field, word on its line,
    /// message); also checked after `--nemesis` replaces the faults.
    pub fn mode_conflict(&self) -> Option<(String, String, String)> {
        if !self.cluster.bugs.is_empty() {
            if self.flavor != FlavorName::Faultline {
                return Some((
                    "cluster.bugs".into(),
                    "bugs".into(),
                    "bug switches exist only in faultline's own node: set `flavor: faultline`"
                        .into(),
                ));
            }
            if let Err(e) = faultline_node::bugs::Bugs::parse(&self.cluster.bugs.join(",")) {
                return Some(("cluster.bugs".into(), "bugs".into(), format!("{e:#}")));
            }
        }
        let standalone = self.mode == Mode::Standalone;
        let client = self.workload.client;
        if standalone && !client.is_faultline() && client != ClientName::Adapter {
            // Neither valkey-py 6.2 nor GLIDE for Python 2.6 sends CLIENT CAPA redirect.
            return Some((
                "workload.client".into(),
                "client".into(),
                format!(
                    "the {client} adapter drives the library's cluster client; mode: \
                     standalone has no cluster (no library here sends CLIENT CAPA redirect)"
                ),
            ));
        }
        if (client == ClientName::Adapter) != self.workload.adapter_command.is_some() {
            return Some((
                "workload.adapter_command".into(),
                "client".into(),
                "`client: adapter` and `adapter_command: [PROGRAM, ARGS...]` go together".into(),
            ));
        }
        if self
            .workload
            .adapter_command
            .as_ref()
            .is_some_and(|c| c.is_empty())
        {
            return Some((
                "workload.adapter_command".into(),
                "adapter_command".into(),
                "adapter_command names a program".into(),
            ));
        }
        if standalone && self.cluster.primaries.get() != 1 {
            return Some((
                "cluster.primaries".into(),
                "primaries".into(),
                "mode: standalone runs one primary: set `primaries: 1` under `cluster:`".into(),
            ));
        }
        if standalone && self.cluster.bus == BusMode::Proxy {
            return Some((
                "cluster.bus".into(),
                "bus".into(),
                "mode: standalone has no cluster bus: remove `bus: proxy`".into(),
            ));
        }
        if let Some(conflict) = self.loopback_conflict() {
            return Some(conflict);
        }
        for (i, fault) in self
            .nemesis
            .iter()
            .flat_map(|n| n.faults.iter())
            .enumerate()
        {
            let mode = fault.needs().mode;
            let standalone_only = mode == ModeNeed::Standalone;
            let cluster_only = mode == ModeNeed::Cluster;
            let message = if standalone && cluster_only {
                format!(
                    "{} needs a cluster; this scenario has `mode: standalone`",
                    fault.kind()
                )
            } else if !standalone && standalone_only {
                format!(
                    "{} needs `mode: standalone` (one primary with replicas)",
                    fault.kind()
                )
            } else {
                continue;
            };
            return Some((
                format!("nemesis.faults[{i}].kind"),
                fault.kind().to_string(),
                message,
            ));
        }
        None
    }

    /// What `backend: loopback` cannot do (no namespace of each node's own, no root): the
    /// faults that act inside a node's namespace, a partition of the client port, a
    /// partition without a cluster bus to cut it in, and Garnet (its bus is its client
    /// port, so no proxy can stand in it).
    fn loopback_conflict(&self) -> Option<(String, String, String)> {
        use faultline_nemeses::partition::Ports;
        use faultline_nemeses::spec::FaultSpec;
        if self.backend != BackendName::Loopback {
            return None;
        }
        if self.flavor == FlavorName::Garnet && self.mode == Mode::Cluster {
            return Some((
                "backend".into(),
                "backend".into(),
                "backend: loopback cuts partitions in the cluster bus proxy, and Garnet gossips on its client port: use backend: local".into(),
            ));
        }
        let standalone = self.mode == Mode::Standalone;
        for (i, fault) in self
            .nemesis
            .iter()
            .flat_map(|n| n.faults.iter())
            .enumerate()
        {
            let why = match fault {
                FaultSpec::Delay(_) | FaultSpec::Loss(_) => format!(
                    "{} acts with tc/iptables inside each node's own network namespace, which \
                     backend: loopback does not make; use bus-delay or bus-drop (the cluster \
                     bus, through the proxy), or backend: local (as root)",
                    fault.kind()
                ),
                FaultSpec::Partition(p) if p.ports == Ports::Client => "a partition of the \
                     client port needs each node's own network namespace; on backend: \
                     loopback partitions cut the cluster bus only (ports: bus or all)"
                    .to_string(),
                FaultSpec::Partition(_) if standalone => "on backend: loopback partitions are \
                     cut in the cluster bus proxy, and mode: standalone has no cluster bus"
                    .to_string(),
                _ => continue,
            };
            return Some((
                format!("nemesis.faults[{i}].kind"),
                fault.kind().to_string(),
                why,
            ));
        }
        None
    }

    /// Fills in the seed (a fresh random one when absent).
    pub fn resolve(mut self) -> Scenario {
        if self.seed.is_none() {
            self.seed = Some(rand::random());
        }
        self
    }

    /// The seed; call after [`Scenario::resolve`].
    pub fn seed(&self) -> u64 {
        self.seed.unwrap_or_default()
    }

    /// Total nodes: primaries times (1 + replicas).
    pub fn node_count(&self) -> usize {
        (self.cluster.primaries.get() * (1 + self.cluster.replicas.get())) as usize
    }

    /// The scenario as YAML, as stored in the run directory.
    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(self).expect("a scenario always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Scenario::parse(text, "s.yaml", "s")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn every_shipped_scenario_is_valid() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let s = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(
                    Some(s.name.as_str()),
                    path.file_stem().and_then(|x| x.to_str())
                );
                seen += 1;
            }
        }
        assert!(seen >= 4, "only {seen} scenarios found in {dir}");
    }

    #[test]
    fn builtin_is_valid() {
        let s = Scenario::builtin();
        assert_eq!(s.name, "smoke");
        assert_eq!(s.node_count(), 6);
    }

    #[test]
    fn zero_primaries_names_file_line_and_field() {
        let e = err("name: x\ncluster:\n  primaries: 0\n");
        assert!(e.starts_with("s.yaml:3:"), "{e}");
        assert!(
            e.contains("cluster.primaries: must be between 1 and 100, got 0"),
            "{e}"
        );
    }

    #[test]
    fn negative_rate_is_rejected_with_its_line() {
        let e = err("# comment\nworkload:\n  concurrency: 4\n  rate: -5\ncluster:\n  rate: 1\n");
        assert!(e.starts_with("s.yaml:4:3:"), "{e}");
        let e = err("workload:\n  concurrency: 4\n  rate: -5\n");
        assert!(e.starts_with("s.yaml:3:"), "{e}");
        assert!(
            e.contains("workload.rate: must be a number greater than 0"),
            "{e}"
        );
    }

    #[test]
    fn unknown_key_is_rejected_with_its_line() {
        let e = err("name: x\ncluster:\n  primaries: 3\n  replica: 1\n");
        assert!(e.starts_with("s.yaml:4:"), "{e}");
        assert!(
            e.contains("cluster.replica: unknown field `replica`"),
            "{e}"
        );
    }

    #[test]
    fn wrong_type_is_rejected_with_its_line() {
        let e = err("name: x\ntime_limit: soon\n");
        assert!(e.starts_with("s.yaml:2:"), "{e}");
        assert!(e.contains("time_limit:"), "{e}");
    }

    #[test]
    fn unknown_flavor_lists_the_choices() {
        let e = err("flavor: keydb\n");
        assert!(e.contains("flavor: unknown variant `keydb`"), "{e}");
        assert!(e.contains("redis"), "{e}");
    }

    const COMPOSED: &str = "mode: standalone
cluster:
  primaries: 1
  replicas: 1
nemesis:
  interval_s: 8
  faults:
    - kind: delay
      from: primaries
      to: replicas
      delay_ms: 300
    - kind: standalone-failover
  compose:
    - fault: 0
      hold_s: 3
    - fault: 1
      after_previous: true
      after_s: 0.5
";

    #[test]
    fn composition_parses_and_keeps_its_offsets() {
        let s = Scenario::parse(COMPOSED, "s.yaml", "s").unwrap();
        let n = s.nemesis.unwrap();
        assert!(n.is_composed());
        assert_eq!(n.compose.len(), 2);
        assert_eq!(n.compose[0].after_s.get(), 0.0);
        assert_eq!(n.compose[0].hold_s.map(|h| h.get()), Some(3.0));
        assert_eq!(n.compose[1].after_s.get(), 0.5);
        assert!(n.compose[1].after_previous && !n.compose[0].after_previous);
        // Written back (store/<run>/scenario.yaml) and read again: the same.
        let again = serde_yaml_ng::to_string(&n).unwrap();
        let back: NemesisSpec = serde_yaml_ng::from_str(&again).unwrap();
        assert_eq!(back.compose, n.compose);
    }

    #[test]
    fn composition_that_cannot_work_names_file_line_and_field() {
        // A fault that does not exist.
        let e = err(&COMPOSED.replace("    - fault: 1\n", "    - fault: 5\n"));
        assert!(e.starts_with("s.yaml:16:"), "{e}");
        assert!(e.contains("nemesis.compose[1].fault: no fault 5"), "{e}");
        // Starting after the interval ends.
        let e = err(&COMPOSED.replace("after_s: 0.5", "after_s: 9"));
        assert!(e.starts_with("s.yaml:18:"), "{e}");
        assert!(e.contains("nemesis.compose[1].after_s"), "{e}");
        assert!(e.contains("cannot be kept"), "{e}");
        // In sequence after nothing.
        let e = err(&COMPOSED.replace(
            "      hold_s: 3\n",
            "      hold_s: 3\n      after_previous: true\n",
        ));
        assert!(e.starts_with("s.yaml:16:"), "{e}");
        assert!(e.contains("nemesis.compose[0].after_previous"), "{e}");
        // Held past the interval.
        let e = err(&COMPOSED.replace("hold_s: 3", "hold_s: 8"));
        assert!(e.starts_with("s.yaml:15:"), "{e}");
        assert!(e.contains("nemesis.compose[0].hold_s"), "{e}");
        // Two process faults at once.
        let e = err("nemesis:\n  faults:\n    - kind: kill\n    - kind: pause\n  compose:\n    - fault: 0\n      hold_s: 2\n    - fault: 1\n      after_s: 1\n");
        assert!(e.starts_with("s.yaml:8:"), "{e}");
        assert!(e.contains("pause overlaps kill"), "{e}");
        // In sequence they are fine.
        Scenario::parse(
            "nemesis:\n  faults:\n    - kind: kill\n    - kind: pause\n  compose:\n    - fault: 0\n      hold_s: 2\n    - fault: 1\n      after_s: 3\n      hold_s: 2\n",
            "s.yaml",
            "s",
        )
        .unwrap();
        // Drawn together: more than listed; both ways at once.
        let e = err("nemesis:\n  concurrent: 3\n  faults:\n    - kind: kill\n    - kind: delay\n");
        assert!(e.starts_with("s.yaml:2:"), "{e}");
        assert!(e.contains("nemesis.concurrent: 3 faults at once"), "{e}");
        let e = err(&COMPOSED.replace("  compose:\n", "  concurrent: 2\n  compose:\n"));
        assert!(e.contains("not both"), "{e}");
        let e = err("nemesis:\n  interval_s: 4\n  concurrent: 2\n  faults:\n    - kind: partition\n    - kind: delay\n");
        assert!(e.contains("before the next interval"), "{e}");
        let e = err(&COMPOSED.replace(
            "    - fault: 0\n      hold_s: 3\n",
            "    - fault: 0\n      hold_s: 3\n      hold: 3\n",
        ));
        assert!(e.contains("unknown field `hold`"), "{e}");
    }

    #[test]
    fn client_mix_parses_and_rejects_a_share_outside_0_1() {
        let s = Scenario::parse(
            "workload:\n  mix:\n    readers: 0.25\n    fresh_connection_every: 10\n    random_start_node: true\n",
            "s.yaml",
            "s",
        )
        .unwrap();
        assert_eq!(s.workload.mix.readers.0, 0.25);
        assert_eq!(s.workload.mix.reader_count(16), 4);
        assert_eq!(
            s.workload.mix.fresh_connection_every.map(|n| n.get()),
            Some(10)
        );
        assert!(s.workload.mix.random_start_node);
        assert!(Scenario::builtin().workload.mix.is_default());
        let e = err("workload:\n  mix:\n    readers: 1.5\n");
        assert!(e.starts_with("s.yaml:3:"), "{e}");
        assert!(e.contains("between 0 and 1"), "{e}");
        let e = err("workload:\n  mix:\n    fresh_connection_every: 0\n");
        assert!(e.contains("workload.mix.fresh_connection_every"), "{e}");
    }

    #[test]
    fn nemesis_section_parses_and_checks_its_values() {
        let s = Scenario::parse(
            "nemesis:\n  interval_s: 4\n  faults:\n    - kind: partition\n      shape: halves\n      ports: bus\n    - kind: kill\n      target: [n1, n6]\n    - kind: failover\n      mode: force\n",
            "s.yaml",
            "s",
        )
        .unwrap();
        let n = s.nemesis.unwrap();
        assert_eq!(n.faults.len(), 3);
        assert_eq!(n.interval_s.get(), 4.0);
        let e = err("nemesis:\n  faults:\n    - kind: partition\n      shape: circle\n");
        assert!(e.starts_with("s.yaml:4:"), "{e}");
        assert!(e.contains("unknown variant `circle`"), "{e}");
        let e = err("nemesis:\n  faults:\n    - kind: explode\n");
        assert!(e.contains("explode"), "{e}");
        let e = err("nemesis:\n  faults:\n    - kind: kill\n      target: [n7]\n");
        assert!(e.contains("s.yaml:4:"), "{e}");
        assert!(e.contains("no node \"n7\""), "{e}");
        let e = err(
            "nemesis:\n  faults:\n    - kind: partition\n      shape: halves\n      count: 2\n",
        );
        assert!(e.starts_with("s.yaml:5:"), "{e}");
        assert!(e.contains("divides every node"), "{e}");
        let e = err("nemesis:\n  faults:\n    - kind: kill\n      targets: one\n");
        assert!(e.contains("unknown field `targets`"), "{e}");
    }

    #[test]
    fn standalone_mode_takes_one_primary_and_only_its_own_faults() {
        let s = Scenario::parse(
            "mode: standalone\ncluster:\n  primaries: 1\n  replicas: 2\nnemesis:\n  faults:\n    - kind: standalone-failover\n      force: true\n",
            "t.yaml",
            "t",
        )
        .unwrap();
        assert_eq!(s.mode, Mode::Standalone);
        assert_eq!(s.node_count(), 3);
        let e = err("mode: standalone\n");
        assert!(e.contains("primaries: 1"), "{e}");
        let e = err("mode: standalone\ncluster:\n  primaries: 1\nnemesis:\n  faults:\n    - kind: migrate-slots\n");
        assert!(
            e.contains("migrate-slots needs a cluster") && e.contains(":6:"),
            "{e}"
        );
        let e = err("nemesis:\n  faults:\n    - kind: standalone-failover\n");
        assert!(e.contains("needs `mode: standalone`"), "{e}");
        let e = err("mode: sentinel\n");
        assert!(e.contains("sentinel"), "{e}");
    }

    #[test]
    fn every_registered_fault_parses_and_validates_as_its_package_says() {
        use faultline_nemeses::package::ModeNeed;
        use faultline_nemeses::spec::{FaultSpec, FAULT_KINDS};
        for kind in FAULT_KINDS {
            let needs = FaultSpec::default_of(kind).unwrap().needs();
            let bus = if needs.bus_proxy {
                "  bus: proxy\n"
            } else {
                ""
            };
            let faults = format!("nemesis:\n  faults:\n    - kind: {kind}\n");
            let cluster = Scenario::parse(&format!("cluster:\n{bus}{faults}"), "c.yaml", "c");
            let standalone = Scenario::parse(
                &format!("mode: standalone\ncluster:\n  primaries: 1\n  replicas: 2\n{faults}"),
                "s.yaml",
                "s",
            );
            assert_eq!(
                cluster.is_ok(),
                needs.mode != ModeNeed::Standalone,
                "{kind}"
            );
            assert_eq!(
                standalone.is_ok(),
                needs.mode != ModeNeed::Cluster,
                "{kind}"
            );
            if needs.bus_proxy {
                let e = err(&faults);
                assert!(e.contains("add `bus: proxy`") && e.contains(":3:"), "{e}");
            }
            for s in [cluster, standalone].into_iter().flatten() {
                let again = Scenario::parse(&s.to_yaml(), "r.yaml", "r").unwrap();
                let spec = &again.nemesis.unwrap().faults[0];
                assert_eq!(spec.kind(), *kind);
                assert_eq!(
                    serde_json::to_value(spec).unwrap(),
                    serde_json::to_value(&s.nemesis.unwrap().faults[0]).unwrap()
                );
            }
        }
    }

    #[test]
    fn tolerances_parse_and_reject_unknown_keys() {
        let s = Scenario::parse("tolerances:\n  slot_coverage_ms: 100\n", "s.yaml", "s").unwrap();
        assert_eq!(s.tolerances.slot_coverage_ms, 100);
        assert_eq!(s.tolerances.convergence_bound_ms, 30_000);
        let e = err("tolerances:\n  slot_coverage: 100\n");
        assert!(e.starts_with("s.yaml:2:"), "{e}");
    }

    #[test]
    fn name_defaults_to_file_stem_and_must_be_a_safe_directory_name() {
        let s = Scenario::parse("flavor: valkey\n", "f.yaml", "from-file").unwrap();
        assert_eq!(s.name, "from-file");
        let e = err("name: ../../etc\n");
        assert!(e.contains("s.yaml:1:1: name:"), "{e}");
    }

    #[test]
    fn resolved_scenario_round_trips_with_its_seed() {
        let s = Scenario::builtin().resolve();
        let again = Scenario::parse(&s.to_yaml(), "r.yaml", "r").unwrap();
        assert_eq!(again.seed, s.seed);
        assert_eq!(again.workload.keys, s.workload.keys);
    }

    #[test]
    fn a_workload_name_comes_from_the_registry() {
        let s = Scenario::parse("workload:\n  name: set\n", "s.yaml", "s").unwrap();
        assert_eq!(s.workload.name, WorkloadName::default());
        assert_eq!(s.workload.name.label(), "set");
        assert!(s.to_yaml().contains("  name: set\n"), "{}", s.to_yaml());
        let e = Scenario::parse("workload:\n  name: queue\n", "s.yaml", "s")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "s.yaml:2:9: workload.name: unknown variant `queue`, expected one of `set`, \
             `register`, `counter`, `list-append`"
        );
        let s = Scenario::parse("workload:\n  name: list-append\n", "s.yaml", "s").unwrap();
        assert_eq!(s.workload.name, WorkloadName::named("list-append").unwrap());
        let e = WorkloadName::named("queue").unwrap_err();
        assert!(e.contains("\"queue\"") && e.contains("counter"), "{e}");
    }
}
