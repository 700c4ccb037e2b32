//! The command line. Doc comments here are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::kinds::{BackendName, ClientName, FlavorName};

/// Jepsen-style fault-injection harness for Redis Cluster compatible servers.
///
/// Starts real server nodes (Redis, Valkey, ...) in network namespaces or containers, drives a workload that records
/// every operation, and checks the history for lost writes.
///
/// Exit codes: 0 valid, 1 invalid (an anomaly was found), 2 unknown (could not decide),
/// 254 bad usage or input, 255 harness error.
#[derive(Debug, Parser)]
#[command(name = "faultline", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a scenario: bring a cluster up, drive the workload, check the history.
    Run(Box<RunArgs>),
    /// Re-run the checkers on a stored run directory (needs only history.jsonl), or check
    /// one history file: faultline JSONL, Jepsen history.edn, a Porcupine etcd log or kv
    /// EDN (format detected from the content).
    Analyze(AnalyzeArgs),
    /// (Re)write report.html, its PNG plots and junit.xml for a run directory, and the
    /// store's index.html.
    Report(AnalyzeArgs),
    /// Check the prerequisites on this machine and say how to fix what is missing.
    Doctor,
    /// Remove namespaces, links and processes that killed runs left behind.
    Clean(CleanArgs),
    /// Measure the harness against plain tools on the same cluster.
    Bench(BenchArgs),
    /// Run one scenario on several server versions and tabulate the verdicts.
    Matrix(MatrixArgs),
    /// Run a suite (scenarios x targets x seeds, repeated) and gate on what each case
    /// expects; or merge shard outputs, or compare a result with a baseline.
    Suite(SuiteArgs),
    /// Write a run's history (or a history file) in another tool's format.
    Export(ExportArgs),
}

/// `faultline export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Jepsen `history.edn` (one op map per line), for Knossos and Elle. Required: the only
    /// format so far.
    #[arg(long, required = true)]
    pub edn: bool,
    /// A run directory (its history.jsonl) or a history file in any format `analyze` reads.
    pub path: PathBuf,
    /// Where to write (`-` for standard output). Default: RUN/history.edn for a run
    /// directory, standard output for a file.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// `faultline run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Scenario file (YAML). Without one, the built-in smoke scenario runs.
    pub scenario: Option<PathBuf>,

    /// Server kind (overrides the scenario).
    #[arg(long, value_enum, help_heading = "Overrides")]
    pub flavor: Option<FlavorName>,

    /// Where nodes run (overrides the scenario).
    #[arg(long, value_enum, help_heading = "Overrides")]
    pub backend: Option<BackendName>,

    /// Seconds of workload (overrides the scenario's time_limit).
    #[arg(long, value_name = "SECS", help_heading = "Overrides")]
    pub time_limit: Option<f64>,

    /// Workload to drive (overrides the scenario's workload.name): set, register,
    /// counter or list-append.
    #[arg(long, value_name = "NAME", help_heading = "Overrides")]
    pub workload: Option<String>,

    /// Client that drives the workload (overrides the scenario's workload.client):
    /// faultline's own, or a client library behind its adapter (adapters/PROTOCOL.md).
    #[arg(long, value_enum, help_heading = "Overrides")]
    pub client: Option<ClientName>,

    /// Faults to inject, replacing the scenario's: comma-separated kinds, each with its
    /// defaults (the kinds are listed under `--help`).
    #[arg(long, value_name = "KINDS", help_heading = "Overrides", long_help = nemesis_help())]
    pub nemesis: Option<String>,

    /// Seconds from one fault to the next (overrides the scenario's nemesis interval_s).
    #[arg(long, value_name = "SECS", help_heading = "Overrides")]
    pub nemesis_interval: Option<f64>,

    /// Seed for every random choice of the run (default: random, saved in scenario.yaml).
    #[arg(long, help_heading = "Overrides")]
    pub seed: Option<u64>,

    /// Store directory; runs go to STORE/<scenario>/<UTC timestamp>/.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "store",
        help_heading = "Output"
    )]
    pub store: PathBuf,

    /// Leave the cluster running after the run (remove it later with `faultline clean`).
    #[arg(long, help_heading = "Output")]
    pub keep: bool,

    /// A cluster faultline did not start, to run against instead of its own.
    #[command(flatten)]
    pub live: LiveArgs,
}

/// `faultline run`'s live-cluster options (each overrides the scenario's `live:` section).
#[derive(Debug, Args, Default, Clone)]
pub struct LiveArgs {
    /// Test this running cluster instead of starting one: comma-separated seed nodes; the
    /// rest is discovered (CLUSTER NODES; INFO replication in standalone mode). Nothing is
    /// installed, configured, flushed or stopped; the workload writes only keys of the
    /// run's own prefix and deletes them at the end.
    #[arg(long, value_name = "HOST:PORT,...", help_heading = "Live cluster")]
    pub live: Option<String>,

    /// Fault kinds that may happen to the live cluster, comma-separated; a scenario fault
    /// of another kind is refused before anything starts (exit 254).
    #[arg(long, value_name = "KINDS", help_heading = "Live cluster")]
    pub allow_faults: Option<String>,

    /// After the run, fail the original primaries back where a failover moved them.
    #[arg(long, help_heading = "Live cluster")]
    pub restore_roles: bool,

    /// ACL user to authenticate as (default: the default user).
    #[arg(long, value_name = "USER", help_heading = "Live cluster")]
    pub auth_user: Option<String>,

    /// Environment variable holding the password (passwords are never taken on the
    /// command line).
    #[arg(long, value_name = "VAR", help_heading = "Live cluster")]
    pub auth_password_env: Option<String>,

    /// File whose first line is the password.
    #[arg(long, value_name = "FILE", help_heading = "Live cluster")]
    pub auth_password_file: Option<PathBuf>,

    /// Speak TLS to the nodes, trusting this CA certificate (PEM).
    #[arg(long, value_name = "FILE", help_heading = "Live cluster")]
    pub tls_ca: Option<PathBuf>,

    /// Client certificate (PEM), for nodes that verify clients.
    #[arg(long, value_name = "FILE", help_heading = "Live cluster")]
    pub tls_cert: Option<PathBuf>,

    /// The client certificate's key (PEM).
    #[arg(long, value_name = "FILE", help_heading = "Live cluster")]
    pub tls_key: Option<PathBuf>,

    /// Access `ssh`: the hosts file mapping each node address to its SSH destination and
    /// restart command (partitions, kill, pause, netem then become possible).
    #[arg(long, value_name = "FILE", help_heading = "Live cluster")]
    pub hosts: Option<PathBuf>,
}

impl RunArgs {
    /// No scenario and no override: what `matrix` and `suite` hand
    /// [`crate::run::run_scenario`] (which reads only the store and `--keep`) for the
    /// scenarios they prepare themselves.
    pub fn store_only(store: PathBuf) -> RunArgs {
        RunArgs {
            scenario: None,
            flavor: None,
            backend: None,
            time_limit: None,
            workload: None,
            client: None,
            nemesis: None,
            nemesis_interval: None,
            seed: None,
            store,
            keep: false,
            live: Default::default(),
        }
    }
}

/// `faultline analyze`.
#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// A run directory (or any directory holding a history.jsonl); for `analyze`, also a
    /// single history file.
    pub run_dir: PathBuf,
}

/// `faultline clean`.
#[derive(Debug, Args)]
pub struct CleanArgs {
    /// Only this run id (as printed by `faultline run`).
    #[arg(long)]
    pub run: Option<String>,
    /// Say what would be removed, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also read the ledgers on the hosts of this live-cluster hosts file (access `ssh`)
    /// and revert what runs left there (chains, qdiscs, stopped or killed servers).
    #[arg(long, value_name = "HOSTS_FILE")]
    pub live: Option<PathBuf>,
}

/// `faultline bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Server kind to measure.
    #[arg(long, value_enum, default_value_t = FlavorName::Redis)]
    pub flavor: FlavorName,
    /// Seconds of load for each side of the throughput comparison.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// redis-benchmark's connections (`-c`); faultline runs as many client processes
    /// against `-P 1`, and this times `--pipeline` against `-P <--pipeline>`.
    #[arg(long, default_value_t = 50)]
    pub concurrency: usize,
    /// redis-benchmark's pipeline depth (`-P`) of the second throughput comparison (1:
    /// only the unpipelined one).
    #[arg(long, default_value_t = 16)]
    pub pipeline: usize,
    /// faultline's processes per client task in the pipelined comparison
    /// (`workload.pipeline`): each task's ops go out together, one pipeline per primary.
    /// On 2 cores, 160 gave the highest ratio among 16, 80, 160, 400 and 800, within the
    /// round-to-round noise of 400.
    #[arg(long, default_value_t = 160, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub batch: u64,
    /// redis-benchmark rounds per comparison, each followed by a faultline round (after
    /// a first faultline round), so a machine whose load drifts weighs on both alike.
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    /// Times to repeat the cluster start-up comparison.
    #[arg(long, default_value_t = 3)]
    pub startups: usize,
    /// Times to repeat a start-up comparison of the docker backend against local (the
    /// image of the host's server version is built first if not cached); 0 skips it.
    #[arg(long, default_value_t = 0)]
    pub docker_startups: usize,
    /// Where the bench's own run directories go.
    #[arg(long, value_name = "DIR", default_value = "store")]
    pub store: PathBuf,
    /// Measure at scale instead: analysis and report of a generated set history of
    /// `--ops` adds (wall time, max RSS, each history checker against lost-writes).
    #[arg(long)]
    pub scale: bool,
    /// Adds in the `--scale` history.
    #[arg(long, default_value_t = 10_000_000)]
    pub ops: u64,
    /// With `--scale`: a real run of this many nodes instead (`--flavor`, `--replicas` per
    /// primary, `--seconds` of the set workload with partitions and failovers), measured:
    /// formation, observer polls per node per second, topology.jsonl per minute, analysis
    /// and report, faultline's own memory and CPU per node.
    #[arg(long, value_name = "N")]
    pub nodes: Option<usize>,
    /// Replicas per primary for `--nodes`.
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,
    /// With `--nodes`: raise the kernel's neighbour-table thresholds
    /// (net.ipv4.neigh.default.gc_thresh2/3, shared by every namespace) to fit N nodes for
    /// the measurement, and restore the old values after. Needs root.
    #[arg(long)]
    pub raise_neigh_cap: bool,
    /// Measure fault latency instead: scheduled instant to fault in effect, per kind
    /// (partition, kill, pause, delay), faults prepared before their instant against
    /// applied at it, one `faultline run` each.
    #[arg(long)]
    pub faults: bool,
    /// Faults of each kind (on average: the seed draws them) per `--faults` run.
    #[arg(long, default_value_t = 10)]
    pub per_kind: usize,
    /// Cluster shapes for `--faults`: primaries, one replica each.
    #[arg(long, value_delimiter = ',', default_values_t = [3, 15])]
    pub fault_primaries: Vec<usize>,
}

/// `faultline matrix`.
#[derive(Debug, Args)]
pub struct MatrixArgs {
    /// Scenario file (YAML).
    pub scenario: PathBuf,
    /// Comma-separated FLAVOR[:VERSION] targets, e.g. redis:7.0.15,valkey:8.0.1,valkey:8.1.1.
    /// VERSION may be a Debian suite (bookworm, bookworm-backports, trixie, sid); without
    /// one the host's binary runs. Versions the host lacks run from root filesystems or
    /// images built offline (cached under /var/cache/faultline/rootfs/).
    #[arg(long, value_name = "LIST", required_unless_present = "clients")]
    pub targets: Option<String>,
    /// Comma-separated clients, one column each (per target): faultline, redis-py,
    /// valkey-py, glide, redis-rs. Without --targets, the scenario's server runs them all.
    /// The table gains each client's error window, failed and indeterminate ops and
    /// lost writes.
    #[arg(long, value_name = "LIST")]
    pub clients: Option<String>,
    /// Where nodes run (overrides the scenario).
    #[arg(long, value_enum)]
    pub backend: Option<BackendName>,
    /// Seconds of workload per target (overrides the scenario's time_limit).
    #[arg(long, value_name = "SECS")]
    pub time_limit: Option<f64>,
    /// Seed shared by every target (default: random, the same for all).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Store directory; runs go to STORE/<scenario>/, the table to STORE/matrix/<UTC timestamp>/.
    #[arg(long, value_name = "DIR", default_value = "store")]
    pub store: PathBuf,
}

/// `faultline suite`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SuiteArgs {
    /// `merge` or `compare`; without one, run the suite file.
    #[command(subcommand)]
    pub action: Option<SuiteAction>,
    /// Running a suite.
    #[command(flatten)]
    pub run: SuiteRunArgs,
}

/// `faultline suite merge | compare`.
#[derive(Debug, Subcommand)]
pub enum SuiteAction {
    /// Join shard outputs (directories holding suite.json) into one suite.json, junit.xml
    /// and suite.html.
    Merge(SuiteMergeArgs),
    /// Classify every case against a baseline suite.json (new failure, fixed, still
    /// failing, flaky, rate changed) and write Markdown for a CI step summary. Exit 1 when
    /// there is a new failure.
    Compare(SuiteCompareArgs),
}

/// `faultline suite SUITE.yaml`.
#[derive(Debug, Args)]
pub struct SuiteRunArgs {
    /// Suite file (YAML; see suites/).
    #[arg(required = true)]
    pub suite: Option<PathBuf>,
    /// Repetitions of every seed of every case.
    #[arg(long, default_value_t = 1)]
    pub repeat: u32,
    /// Print the case ids (of the shard, with --partition) instead of running them.
    #[arg(long, help_heading = "Selection")]
    pub list: bool,
    /// What --list prints: ids one per line, JSON, or a GitHub Actions matrix
    /// (`{"include":[{"case":ID},...]}`).
    #[arg(long, value_enum, default_value_t = ListFormat::Text, help_heading = "Selection")]
    pub format: ListFormat,
    /// Run one shard: hash:M/N (by case id) or slice:M/N (every Nth case). The N shards
    /// are disjoint and together cover every case.
    #[arg(long, value_name = "SCHEME:M/N", value_parser = clap::value_parser!(crate::suite::partition::Partition), help_heading = "Selection")]
    pub partition: Option<crate::suite::partition::Partition>,
    /// Only this case (repeatable); ids as --list prints them.
    #[arg(long, value_name = "ID", help_heading = "Selection")]
    pub case: Vec<String>,
    /// One seed for every case, instead of the suite's.
    #[arg(long, help_heading = "Overrides")]
    pub seed: Option<u64>,
    /// Where nodes run (overrides every scenario).
    #[arg(long, value_enum, help_heading = "Overrides")]
    pub backend: Option<BackendName>,
    /// Seconds of workload per run (overrides the suite and its scenarios).
    #[arg(long, value_name = "SECS", help_heading = "Overrides")]
    pub time_limit: Option<f64>,
    /// Store directory; runs go to STORE/<scenario>/<UTC timestamp>/ as usual.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "store",
        help_heading = "Output"
    )]
    pub store: PathBuf,
    /// Where suite.json, junit.xml and suite.html go (default STORE/suites/<suite>/<UTC timestamp>/).
    #[arg(long, value_name = "DIR", help_heading = "Output")]
    pub out: Option<PathBuf>,
    /// A baseline suite.json (or its directory) for suite.html's rate plot.
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub baseline: Option<PathBuf>,
}

/// What `faultline suite --list` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    /// One case id per line.
    Text,
    /// The cases as JSON (id, scenario, target, seeds, expectation).
    Json,
    /// A GitHub Actions matrix: {"include":[{"case":ID},...]}.
    GhaMatrix,
}

/// `faultline suite merge`.
#[derive(Debug, Args)]
pub struct SuiteMergeArgs {
    /// Shard output directories (or their suite.json files).
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Where the merged suite.json, junit.xml and suite.html go.
    #[arg(long, value_name = "DIR", default_value = "suite-merged")]
    pub out: PathBuf,
    /// A baseline suite.json (or its directory) for suite.html's rate plot.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
}

/// `faultline suite compare`.
#[derive(Debug, Args)]
pub struct SuiteCompareArgs {
    /// This run's suite.json (or its directory).
    pub result: PathBuf,
    /// The baseline's suite.json (or its directory).
    #[arg(long, value_name = "FILE")]
    pub baseline: PathBuf,
    /// Append the Markdown here (e.g. "$GITHUB_STEP_SUMMARY") instead of printing it.
    #[arg(long, value_name = "FILE")]
    pub summary: Option<PathBuf>,
    /// Also write the classification as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// `--nemesis`'s long help, listing every fault kind the registry knows
/// ([`faultline_nemeses::spec::FAULT_KINDS`]), so it cannot fall behind.
fn nemesis_help() -> String {
    format!(
        "Faults to inject, replacing the scenario's: comma-separated kinds, each with its \
         defaults. Kinds: {}.",
        faultline_nemeses::spec::FAULT_KINDS.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, ValueEnum};

    use super::*;

    /// `faultline run --help` names every flavor, backend and fault kind there is.
    #[test]
    fn run_help_lists_every_value() {
        let mut cli = Cli::command().term_width(0);
        let help = cli
            .find_subcommand_mut("run")
            .expect("run subcommand")
            .render_long_help()
            .to_string();
        let flavors = FlavorName::value_variants().iter().map(|v| v.to_string());
        let backends = BackendName::value_variants().iter().map(|v| v.to_string());
        let faults = faultline_nemeses::spec::FAULT_KINDS
            .iter()
            .map(|k| k.to_string());
        for name in flavors.chain(backends).chain(faults) {
            assert!(help.contains(&name), "{name} missing from\n{help}");
        }
    }
}
