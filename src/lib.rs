//! faultline: a Jepsen-style fault-injection harness for Redis Cluster compatible servers.
//!
//! Module map (see ARCHITECTURE.md for the layers and the data flow of a run):
//! - [`cli`]: the command line; [`exit`]: exit codes.
//! - [`scenario`]: scenario files, validated on load.
//! - [`run`]: the orchestrator of one run; [`analyze`]: checking a run directory.
//! - [`report`]: report.html, PNG plots, junit.xml, the store index, the progress bar.
//! - [`backend`]: where nodes run (local: namespaces on this machine; docker: containers).
//! - [`node_image`]: the Docker image of faultline's own node, made from its binary.
//! - [`rootfs`]: server versions the host lacks: offline-built Debian roots and images;
//!   [`server`]: which binary (host or root filesystem) a run starts.
//! - [`flavor`]: server kinds (redis, valkey, garnet, faultline): binary, version, config dialect;
//!   [`kinds`]: the names scenarios and the command line choose among (flavor, backend, mode).
//! - [`cluster`]: forming a cluster and waiting for agreement; [`standalone`]: the same for
//!   one primary with replicas (`mode: standalone`); [`formed`]: either, once joined.
//! - [`control`]: what faults may do to nodes, over the backend.
//! - [`live`]: runs against a cluster faultline did not start (`--live`): discovery,
//!   preflight, postflight, the key sandbox, allowed faults.
//! - [`observer`]: the topology observer (every node's CLUSTER NODES into topology.jsonl).
//! - [`store`]: run directories; [`ledger`]: what each run created, for teardown and clean.
//! - [`suite`]: suites of cases with expectations, rates, shards, merge and compare.
//! - [`doctor`], [`clean`], [`bench`], [`matrix`]: the other subcommands; [`sys`]: system tool wrappers.

pub mod adapters;
pub mod analyze;
pub mod backend;
pub mod bench;
pub mod clean;
pub mod cli;
pub mod cluster;
pub mod control;
pub mod doctor;
pub mod exit;
pub mod export;
pub mod flavor;
pub mod formed;
pub mod kinds;
pub mod ledger;
pub mod live;
pub mod matrix;
pub mod node_image;
pub mod observer;
pub mod report;
pub mod rootfs;
pub mod run;
pub mod scenario;
pub mod server;
pub mod standalone;
pub mod store;
pub mod suite;
pub mod sys;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

/// The `faultline` binary: parse the command line, run one subcommand, exit with its code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::BAD_INPUT
            } else {
                exit::VALID
            });
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,redis=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("faultline: error: starting the async runtime: {e}");
            return ExitCode::from(exit::HARNESS_ERROR);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run::command(*args).await,
            Command::Analyze(args) => analyze::command(&args.run_dir),
            Command::Report(args) => report::command(&args.run_dir),
            Command::Doctor => doctor::command(),
            Command::Clean(args) => clean::command(&args),
            Command::Bench(args) => bench::command(args).await,
            Command::Matrix(args) => matrix::command(args).await,
            Command::Suite(args) => suite::command(args).await,
            Command::Export(args) => export::command(&args),
        }
    });
    // Nothing left on the runtime needs waiting for (the history is closed, the backend
    // torn down); don't let idle connection tasks hold up the exit.
    runtime.shutdown_background();
    exit::finish(result)
}
