//! The command line. Doc comments here are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::kinds::{BackendName, FlavorName};

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
    Run(RunArgs),
    /// Re-run the checkers on a stored run directory (needs only history.jsonl).
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
}

/// `faultline analyze`.
#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// A run directory (or any directory holding a history.jsonl).
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
    /// Client connections / processes on both sides.
    #[arg(long, default_value_t = 50)]
    pub concurrency: usize,
    /// Times to repeat the cluster start-up comparison.
    #[arg(long, default_value_t = 3)]
    pub startups: usize,
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
    #[arg(long, value_name = "LIST")]
    pub targets: String,
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
