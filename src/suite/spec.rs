//! Suite files (`suites/*.yaml`): cases, each a scenario x targets x seeds with what it
//! expects, expanded into [`Case`]s (one per scenario x target) with stable ids.
//!
//! ```yaml
//! name: canary
//! time_limit: 60                # optional: every case's workload seconds
//! cases:
//!   - scenario: ../scenarios/seed-000-redis.yaml   # relative to this file
//!     targets: [redis:7.0.15]   # flavor:version | flavor:suite | flavor:/path/to/binary | flavor
//!     seeds: [501, 502]         # optional: default one seed per repetition, drawn from the id
//!     expect:                   # a canary: found in at least min_rate of repetitions
//!       invalid: [replication-loop, slot-coverage]
//!       min_rate: 0.7           # gated on the Wilson 95% lower bound
//!   - scenario: ../scenarios/smoke.yaml
//!     targets: [redis:7.0.15]
//!     expect: valid             # a correctness case: any finding fails it
//!   - scenario: ../scenarios/seed-002-valkey.yaml
//!     targets: [valkey:8.1.1]
//!     expect:                   # a known finding, tracked upstream
//!       known: [replication-loop]
//!       rate: 0.2
//!       reason: stale PONG the #1777 check does not recognise
//!       tracked: valkey-io/valkey#2811
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::kinds::FlavorName;
use crate::matrix::Target;
use crate::scenario::Scenario;

/// A suite file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuiteFile {
    /// Name (default: the file name without extension).
    #[serde(default)]
    name: Option<String>,
    /// For people.
    #[serde(default)]
    description: Option<String>,
    /// Seconds of workload for every case (a case's own `time_limit` wins).
    #[serde(default)]
    time_limit: Option<f64>,
    /// The cases.
    cases: Vec<CaseEntry>,
}

/// One entry of `cases:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseEntry {
    /// Scenario file, relative to the suite file.
    scenario: PathBuf,
    /// Where it runs: one case per target.
    targets: Vec<String>,
    /// Seeds; each repetition runs every seed.
    #[serde(default)]
    seeds: Option<Vec<u64>>,
    /// Seconds of workload (overrides the suite's and the scenario's).
    #[serde(default)]
    time_limit: Option<f64>,
    /// What the case expects.
    expect: WrittenExpect,
}

/// What a case expects of every repetition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Expect {
    /// A correctness case: any checker finding anything fails it.
    Valid,
    /// A canary: at least one of `checkers` says invalid in at least `min_rate` of the
    /// repetitions, judged on the Wilson 95% lower bound.
    Invalid {
        /// The checkers that should find the bug (any one counts).
        checkers: Vec<String>,
        /// The bar for the detection rate's lower bound.
        min_rate: f64,
    },
    /// A known finding, tracked upstream: `checkers` may say invalid (at about `rate`);
    /// any other checker finding something fails the case like a correctness case. When
    /// `rate` falls outside the observed 95% interval, the case is marked rate-changed.
    Known {
        /// The checkers whose findings are known.
        checkers: Vec<String>,
        /// The rate last measured.
        rate: f64,
        /// Why it is known (what the finding is).
        reason: String,
        /// Where it is tracked (an upstream issue).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tracked: Option<String>,
    },
}

impl Expect {
    /// `valid`, `invalid >= 0.70`, `known ~0.20`.
    pub fn describe(&self) -> String {
        match self {
            Expect::Valid => "valid".into(),
            Expect::Invalid { checkers, min_rate } => {
                format!("invalid ({}) >= {min_rate:.2}", checkers.join(", "))
            }
            Expect::Known { checkers, rate, .. } => {
                format!("known ({}) ~{rate:.2}", checkers.join(", "))
            }
        }
    }

    /// The checkers whose findings count as detections (none for `valid`: any counts).
    pub fn checkers(&self) -> Option<&[String]> {
        match self {
            Expect::Valid => None,
            Expect::Invalid { checkers, .. } | Expect::Known { checkers, .. } => Some(checkers),
        }
    }
}

/// `expect:` is the word `valid`, or a mapping with `invalid:` + `min_rate:` or `known:` +
/// `rate:` + `reason:` (+ `tracked:`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectMap {
    #[serde(default)]
    invalid: Option<Vec<String>>,
    #[serde(default)]
    min_rate: Option<f64>,
    #[serde(default)]
    known: Option<Vec<String>>,
    #[serde(default)]
    rate: Option<f64>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    tracked: Option<String>,
}

impl<'de> Deserialize<'de> for WrittenExpect {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = WrittenExpect;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`valid`, or a mapping with `invalid: [checkers]` and `min_rate`, or `known: [checkers]`, `rate` and `reason`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<WrittenExpect, E> {
                match v {
                    "valid" => Ok(WrittenExpect(Expect::Valid)),
                    other => Err(E::custom(format!(
                        "expect: {other:?}: write `valid`, or a mapping with `invalid:` or `known:`"
                    ))),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<WrittenExpect, A::Error> {
                let m = ExpectMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let rate_ok = |r: f64| (0.0..=1.0).contains(&r);
                match (m.invalid, m.known) {
                    (Some(checkers), None) => {
                        if m.rate.is_some() || m.reason.is_some() || m.tracked.is_some() {
                            return Err(de::Error::custom(
                                "rate, reason and tracked belong to `known:`; a canary (`invalid:`) takes min_rate",
                            ));
                        }
                        let min_rate = m.min_rate.ok_or_else(|| {
                            de::Error::custom("`invalid:` needs `min_rate:` (0 to 1, gated on the Wilson 95% lower bound)")
                        })?;
                        if !rate_ok(min_rate) {
                            return Err(de::Error::custom(format!(
                                "min_rate must be between 0 and 1, got {min_rate}"
                            )));
                        }
                        Ok(WrittenExpect(Expect::Invalid { checkers, min_rate }))
                    }
                    (None, Some(checkers)) => {
                        if m.min_rate.is_some() {
                            return Err(de::Error::custom(
                                "min_rate belongs to `invalid:`; a known finding states `rate:`",
                            ));
                        }
                        let rate = m.rate.ok_or_else(|| {
                            de::Error::custom(
                                "`known:` needs `rate:` (the rate last measured, 0 to 1)",
                            )
                        })?;
                        if !rate_ok(rate) {
                            return Err(de::Error::custom(format!(
                                "rate must be between 0 and 1, got {rate}"
                            )));
                        }
                        let reason = m.reason.filter(|r| !r.trim().is_empty()).ok_or_else(|| {
                            de::Error::custom("`known:` needs `reason:` (what the finding is and why it is accepted)")
                        })?;
                        Ok(WrittenExpect(Expect::Known {
                            checkers,
                            rate,
                            reason,
                            tracked: m.tracked,
                        }))
                    }
                    (Some(_), Some(_)) => {
                        Err(de::Error::custom("give `invalid:` or `known:`, not both"))
                    }
                    (None, None) => Err(de::Error::custom(
                        "a mapping needs `invalid:` (a canary) or `known:` (a known finding)",
                    )),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// [`Expect`] as written in a suite file (see the `Deserialize` impl above).
#[derive(Debug)]
struct WrittenExpect(Expect);

/// Where a case runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseTarget {
    /// A version or Debian suite (a root filesystem when the host lacks it), or the
    /// host's binary when no version is given.
    Version(Target),
    /// A server binary on this machine.
    Binary {
        /// Its kind.
        flavor: FlavorName,
        /// Its path.
        path: PathBuf,
    },
}

impl CaseTarget {
    /// `redis:7.0.15`, `valkey:sid`, `valkey:/opt/valkey/bin/valkey-server`, `redis`.
    ///
    /// # Errors
    /// Names the bad entry.
    pub fn parse(text: &str) -> Result<CaseTarget, String> {
        if let Some((flavor, path)) = text.split_once(':').filter(|(_, p)| p.starts_with('/')) {
            let flavor = FlavorName::parse(flavor).map_err(|e| format!("target {text:?}: {e}"))?;
            return Ok(CaseTarget::Binary {
                flavor,
                path: PathBuf::from(path),
            });
        }
        let mut list = Target::parse_list(text)?;
        match (list.pop(), list.is_empty()) {
            (Some(t), true) => Ok(CaseTarget::Version(t)),
            _ => Err(format!("target {text:?}: one target per entry")),
        }
    }

    /// The target as written (`flavor:version`, `flavor:/path`).
    pub fn label(&self) -> String {
        match self {
            CaseTarget::Version(t) => t.label(),
            CaseTarget::Binary { flavor, path } => format!("{flavor}:{}", path.display()),
        }
    }

    /// Points `scenario` at this target.
    pub fn apply(&self, scenario: &mut Scenario) {
        match self {
            CaseTarget::Version(t) => {
                scenario.flavor = t.flavor;
                scenario.cluster.version = t.version.clone();
            }
            CaseTarget::Binary { flavor, path } => {
                scenario.flavor = *flavor;
                scenario.cluster.binary = Some(path.clone());
                scenario.cluster.version = None;
            }
        }
    }
}

/// A loaded suite.
#[derive(Debug, Clone)]
pub struct Suite {
    /// Its name (output directories and JUnit names carry it).
    pub name: String,
    /// For people.
    pub description: Option<String>,
    /// The file as given on the command line (reproduce commands name it).
    pub file: PathBuf,
    /// Every case, in file order.
    pub cases: Vec<Case>,
}

/// One scenario on one target, with its seeds and expectation.
#[derive(Debug, Clone)]
pub struct Case {
    /// `<scenario name>@<target>`: stable across nights, shards and machines.
    pub id: String,
    /// The scenario file (resolved against the suite file's directory).
    pub scenario_file: PathBuf,
    /// The scenario, loaded and validated, target not yet applied.
    pub scenario: Scenario,
    /// Where it runs.
    pub target: CaseTarget,
    /// Seeds given in the file; `None`: one seed per repetition ([`Case::seeds`]).
    pub seeds: Option<Vec<u64>>,
    /// Seconds of workload, when the suite overrides the scenario's.
    pub time_limit: Option<f64>,
    /// What every repetition is held to.
    pub expect: Expect,
}

impl Case {
    /// The (seed, repetition) pairs to run for `repeat` repetitions: every given seed
    /// `repeat` times, or one seed per repetition drawn from the case id (the same on
    /// every machine and night, different between repetitions).
    pub fn plan(&self, repeat: u32) -> Vec<(u64, u32)> {
        match &self.seeds {
            Some(seeds) => seeds
                .iter()
                .flat_map(|&s| (1..=repeat).map(move |r| (s, r)))
                .collect(),
            None => (1..=repeat)
                .map(|r| {
                    (
                        super::partition::fnv1a(&format!("{}#{r}", self.id)) % 1_000_000,
                        r,
                    )
                })
                .collect(),
        }
    }

    /// The scenario this case runs with `seed`.
    pub fn scenario_for(&self, seed: u64) -> Scenario {
        let mut s = self.scenario.clone();
        self.target.apply(&mut s);
        if let Some(t) = self.time_limit {
            s.time_limit.0 = t;
        }
        s.seed = Some(seed);
        s
    }
}

impl Suite {
    /// Reads a suite file and every scenario it names.
    ///
    /// # Errors
    /// Bad input: the file, line and what to fix (unknown keys, a bad target, a scenario
    /// that does not load, an unknown checker, two cases with one id).
    pub fn load(path: &Path) -> Result<Suite> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read suite {}", path.display()))?;
        let file = path.display().to_string();
        let de = serde_yaml_ng::Deserializer::from_str(&text);
        let written: SuiteFile = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let inner = e.into_inner();
            let (line, column) = inner.location().map_or((0, 0), |l| (l.line(), l.column()));
            let message = inner.to_string();
            let mut message = message.split(" at line ").next().unwrap_or(&message);
            // The parser repeats (a prefix of) the path; the path is said once, in front.
            if let Some((head, rest)) = message.split_once(": ") {
                if !head.contains(' ') && field.starts_with(head) {
                    message = rest;
                }
            }
            anyhow!("{file}:{line}:{column}: {field}: {message}")
        })?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "suite".into());
        let name = written.name.unwrap_or(stem);
        if name.is_empty()
            || name.starts_with('.')
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            bail!("{file}:{}: name {name:?} is used as a directory name: use letters, digits, '-', '_' and '.'", line_of(&text, "name:"));
        }
        if written.cases.is_empty() {
            bail!(
                "{file}:{}: cases: the suite has no cases",
                line_of(&text, "cases:")
            );
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let known: BTreeSet<&'static str> = faultline_checkers::registry::all()
            .iter()
            .map(|c| c.name())
            .collect();
        let check_time = |t: Option<f64>, what: &str| -> Result<()> {
            match t {
                Some(t) if !t.is_finite() || t <= 0.0 => {
                    bail!(
                        "{file}:{}: {what} must be greater than 0, got {t}",
                        line_of(&text, "time_limit:")
                    )
                }
                _ => Ok(()),
            }
        };
        check_time(written.time_limit, "time_limit")?;
        let mut cases: Vec<Case> = Vec::new();
        for (i, entry) in written.cases.into_iter().enumerate() {
            let at = nth_line_of(&text, "- scenario:", i);
            let where_ = format!("{file}:{at}: cases[{i}]");
            check_time(entry.time_limit, &format!("cases[{i}].time_limit"))?;
            let scenario_file = base.join(&entry.scenario);
            let scenario = Scenario::load(&scenario_file)
                .with_context(|| format!("{where_}: scenario {}", entry.scenario.display()))?;
            let expect = entry.expect.0;
            if let Some(names) = expect.checkers() {
                if names.is_empty() {
                    bail!("{where_}: expect: name at least one checker");
                }
                for n in names {
                    if !known.contains(n.as_str()) {
                        bail!(
                            "{where_}: expect: unknown checker {n:?}; the checkers are {}",
                            known.iter().copied().collect::<Vec<_>>().join(", ")
                        );
                    }
                }
            }
            if matches!(&entry.seeds, Some(s) if s.is_empty()) {
                bail!("{where_}: seeds: give at least one seed, or leave seeds out");
            }
            if entry.targets.is_empty() {
                bail!("{where_}: targets: give at least one target, e.g. [redis:7.0.15]");
            }
            for t in &entry.targets {
                let target = CaseTarget::parse(t).map_err(|e| anyhow!("{where_}: targets: {e}"))?;
                let id = format!("{}@{}", scenario.name, target.label());
                if cases.iter().any(|c| c.id == id) {
                    bail!("{where_}: case {id} is already in the suite");
                }
                cases.push(Case {
                    id,
                    scenario_file: scenario_file.clone(),
                    scenario: scenario.clone(),
                    target,
                    seeds: entry.seeds.clone(),
                    time_limit: entry.time_limit.or(written.time_limit),
                    expect: expect.clone(),
                });
            }
        }
        Ok(Suite {
            name,
            description: written.description,
            file: path.to_path_buf(),
            cases,
        })
    }
}

fn line_of(text: &str, key: &str) -> usize {
    nth_line_of(text, key, 0)
}

/// The 1-based line of the `n`th line starting (after indentation) with `key`; 0 if none.
fn nth_line_of(text: &str, key: &str, n: usize) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with(key))
        .nth(n)
        .map_or(0, |(i, _)| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn suite(text: &str) -> Result<Suite> {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "s.yaml", "name: s\ntime_limit: 5\n");
        let p = write(dir.path(), "suite.yaml", text);
        Suite::load(&p)
    }

    #[test]
    fn cases_expand_per_target_with_stable_ids() {
        let s = suite(
            "cases:\n  - scenario: s.yaml\n    targets: [redis:7.0.15, valkey:/usr/bin/valkey-server]\n    seeds: [1, 2]\n    expect: valid\n  - scenario: s.yaml\n    targets: [valkey:8.0.1]\n    expect:\n      invalid: [replication-loop]\n      min_rate: 0.5\n",
        )
        .unwrap();
        let ids: Vec<_> = s.cases.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "s@redis:7.0.15",
                "s@valkey:/usr/bin/valkey-server",
                "s@valkey:8.0.1"
            ]
        );
        assert_eq!(s.cases[0].plan(2), [(1, 1), (1, 2), (2, 1), (2, 2)]);
        let drawn = s.cases[2].plan(3);
        assert_eq!(drawn, s.cases[2].plan(3));
        assert_ne!(drawn[0].0, drawn[1].0);
        let sc = s.cases[1].scenario_for(7);
        assert_eq!(
            sc.cluster.binary.as_deref(),
            Some(Path::new("/usr/bin/valkey-server"))
        );
        assert_eq!(sc.seed, Some(7));
    }

    #[test]
    fn bad_suites_name_the_line_and_the_fix() {
        let e = suite("cases:\n  - scenario: s.yaml\n    targets: [redis]\n    expect:\n      invalid: [nope]\n      min_rate: 0.5\n").unwrap_err();
        assert!(
            format!("{e:#}").contains("unknown checker \"nope\""),
            "{e:#}"
        );
        let e = suite("cases:\n  - scenario: s.yaml\n    targets: [redis]\n    expect:\n      invalid: [lost-writes]\n").unwrap_err();
        assert!(format!("{e:#}").contains("min_rate"), "{e:#}");
        let e = suite("cases:\n  - scenario: s.yaml\n    targets: [redis]\n    expect:\n      known: [lost-writes]\n      rate: 0.5\n").unwrap_err();
        assert!(format!("{e:#}").contains("reason"), "{e:#}");
        let e = suite("cases:\n  - scenario: s.yaml\n    targets: [redis]\n    expect: invalid\n")
            .unwrap_err();
        assert!(format!("{e:#}").contains(":4:"), "{e:#}");
        let e = suite("cases:\n  - scenario: s.yaml\n    targets: [redis]\n    expect: valid\n    color: red\n").unwrap_err();
        assert!(format!("{e:#}").contains("color"), "{e:#}");
        let e =
            suite("cases:\n  - scenario: missing.yaml\n    targets: [redis]\n    expect: valid\n")
                .unwrap_err();
        assert!(
            format!("{e:#}").contains("suite.yaml:2: cases[0]: scenario missing.yaml"),
            "{e:#}"
        );
    }

    #[test]
    fn shipped_suites_load() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for name in ["canary", "nightly", "node"] {
            let s = Suite::load(&root.join(format!("suites/{name}.yaml"))).unwrap();
            assert!(!s.cases.is_empty());
        }
    }
}
