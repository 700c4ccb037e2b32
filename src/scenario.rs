//! Scenario files: what a run does, as YAML, validated on load.
//!
//! Every mistake a person can make in a scenario (an unknown key, a wrong type, an
//! impossible value such as 0 primaries or a negative rate) is reported with the file, line
//! and field, so it can be fixed without reading our source. Validation happens inside
//! deserialization (see [`Bounded`], [`PositiveF64`]) so the YAML parser's location applies.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

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
}

fn default_time_limit() -> PositiveF64 {
    PositiveF64(10.0)
}

/// Server kinds faultline knows how to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlavorName {
    /// Redis (`redis-server`).
    #[default]
    Redis,
    /// Valkey (`valkey-server`).
    Valkey,
}

impl FlavorName {
    /// All flavors, for help text and errors.
    pub const ALL: &'static [&'static str] = &["redis", "valkey"];

    /// Parses a name from the command line.
    ///
    /// # Errors
    /// Names the choices when `s` is not one of them.
    pub fn parse(s: &str) -> Result<FlavorName, String> {
        match s {
            "redis" => Ok(FlavorName::Redis),
            "valkey" => Ok(FlavorName::Valkey),
            _ => Err(format!(
                "unknown flavor {s:?}; choose one of {}",
                Self::ALL.join(", ")
            )),
        }
    }
}

impl fmt::Display for FlavorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FlavorName::Redis => "redis",
            FlavorName::Valkey => "valkey",
        })
    }
}

/// Backends faultline can run nodes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendName {
    /// Server processes in per-node network namespaces on this machine.
    #[default]
    Local,
}

impl BackendName {
    /// Parses a name from the command line.
    ///
    /// # Errors
    /// Names the choices when `s` is not one of them.
    pub fn parse(s: &str) -> Result<BackendName, String> {
        match s {
            "local" => Ok(BackendName::Local),
            _ => Err(format!("unknown backend {s:?}; choose one of local")),
        }
    }
}

/// Persistence the servers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Persistence {
    /// No RDB snapshots, no AOF (the default: faster, and the cluster is thrown away).
    #[default]
    None,
    /// Append-only file, fsync every second.
    Aof,
    /// RDB snapshots on the server's default schedule.
    Rdb,
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
        }
    }
}

/// Workloads faultline can drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadName {
    /// Unique adds to set keys, one final read per key (lost-writes checker).
    #[default]
    Set,
}

impl WorkloadName {
    /// The name as written in scenarios.
    pub fn label(self) -> &'static str {
        match self {
            WorkloadName::Set => "set",
        }
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
    /// Budget for one op, redirects included; past it the op is `info`.
    #[serde(default = "op_timeout")]
    pub op_timeout_ms: Bounded<1, 600_000>,
    /// Seconds the final reads may take, retries included.
    #[serde(default = "final_read_timeout")]
    pub final_read_timeout_s: PositiveF64,
}

fn keys() -> Bounded<1, 16384> {
    Bounded(32)
}
fn concurrency() -> Bounded<1, 10_000> {
    Bounded(16)
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
            name: WorkloadName::Set,
            keys: keys(),
            concurrency: concurrency(),
            rate: None,
            op_timeout_ms: op_timeout(),
            final_read_timeout_s: final_read_timeout(),
        }
    }
}

/// An integer that must lie in `MIN..=MAX`; checked while parsing so errors carry a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounded<const MIN: u64, const MAX: u64>(pub u64);

impl<const MIN: u64, const MAX: u64> Bounded<MIN, MAX> {
    /// The value.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl<'de, const MIN: u64, const MAX: u64> Deserialize<'de> for Bounded<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = i128::deserialize(d)?;
        if v < i128::from(MIN) || v > i128::from(MAX) {
            return Err(serde::de::Error::custom(format!(
                "must be between {MIN} and {MAX}, got {v}"
            )));
        }
        Ok(Bounded(v as u64))
    }
}

impl<const MIN: u64, const MAX: u64> Serialize for Bounded<MIN, MAX> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

/// A finite number greater than zero.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PositiveF64(pub f64);

impl PositiveF64 {
    /// The value.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl<'de> Deserialize<'de> for PositiveF64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        if !v.is_finite() || v <= 0.0 {
            return Err(serde::de::Error::custom(format!(
                "must be a number greater than 0, got {v}"
            )));
        }
        Ok(PositiveF64(v))
    }
}

impl Serialize for PositiveF64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0)
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
            let (line, column) = locate(text, &path)
                .or_else(|| inner.location().map(|l| (l.line(), l.column())))
                .unwrap_or((0, 0));
            ScenarioError::Invalid {
                file: file.to_string(),
                line,
                column,
                message: clean_message(&inner.to_string(), &path),
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
        Ok(scenario)
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

/// serde_yaml_ng repeats the path and the location in its message; keep the rest.
fn clean_message(message: &str, path: &str) -> String {
    let mut m = message;
    if let Some(i) = m.rfind(" at line ") {
        m = &m[..i];
    }
    if let Some((head, rest)) = m.split_once(": ") {
        if !head.contains(' ') && path.starts_with(head) {
            m = rest;
        }
    }
    m.to_string()
}

/// The line and column of the key a dotted path names (`workload.rate`), for block-style
/// YAML: each segment is looked up among the keys indented deeper than its parent's.
fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    if path == "." || path.is_empty() {
        return None;
    }
    let lines: Vec<&str> = text.lines().collect();
    let mut from = 0;
    let mut parent_indent: Option<usize> = None;
    let mut found = None;
    for segment in path.split('.') {
        let key = segment.split('[').next().unwrap_or(segment);
        let mut hit = None;
        for (i, line) in lines.iter().enumerate().skip(from) {
            let body = line.trim_start();
            if body.is_empty() || body.starts_with('#') {
                continue;
            }
            let indent = line.len() - body.len();
            if parent_indent.is_some_and(|p| indent <= p) {
                break; // left the parent's block
            }
            let body = body.trim_start_matches("- ");
            if body
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
            {
                hit = Some((i, indent));
                break;
            }
        }
        let (i, indent) = hit?;
        found = Some((i + 1, indent + 1));
        from = i + 1;
        parent_indent = Some(indent);
    }
    found
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.trim_start().starts_with(needle))
        .map_or(0, |i| i + 1)
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
}
