//! The names a scenario and the command line choose among: which server ([`FlavorName`]),
//! where its nodes run ([`BackendName`]), how they are joined ([`Mode`]) and what they
//! persist ([`Persistence`]).
//!
//! Each is one enum that serde reads from YAML and clap reads from the command line
//! (`ValueEnum`), under the same lowercase names, so `--help`, error messages and the
//! scenario format always list exactly the values that exist. [`crate::scenario`]
//! re-exports them. Adding a flavor or a backend starts with a variant here; the compiler
//! then points at its registry arm ([`crate::flavor::for_cluster`], [`crate::backend::create`]).

use std::fmt;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// Server kinds faultline knows how to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
#[value(rename_all = "lowercase")]
pub enum FlavorName {
    /// Redis (`redis-server`).
    #[default]
    Redis,
    /// Valkey (`valkey-server`).
    Valkey,
    /// Garnet (`GarnetServer`; not obtainable on Debian, bring your own binary or image).
    Garnet,
    /// faultline's own node (`faultline-node`, built with faultline), with switchable
    /// seed bugs (`cluster.bugs`).
    Faultline,
}

/// Backends faultline can run nodes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
#[value(rename_all = "lowercase")]
pub enum BackendName {
    /// Server processes in per-node network namespaces on this machine.
    #[default]
    Local,
    /// Containers on a per-run Docker network, from `faultline/<flavor>:<version>` images.
    Docker,
    /// Server processes on 127.0.0.1 at per-run ports, no namespace: runs without root.
    /// The cluster bus always goes through the bus proxy, where partitions are cut.
    Loopback,
}

/// How the nodes are joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
#[value(rename_all = "lowercase")]
pub enum Mode {
    /// A Redis Cluster: `cluster.primaries` shards of one primary and its replicas.
    #[default]
    Cluster,
    /// One primary and its replicas (REPLICAOF), no cluster mode: standalone failover,
    /// `-REDIRECT` for clients that sent `CLIENT CAPA redirect` (seed 003).
    Standalone,
}

impl Mode {
    /// Whether this is the default, cluster mode (scenario.yaml leaves it out then).
    pub fn is_cluster(&self) -> bool {
        *self == Mode::Cluster
    }
}

/// Persistence the servers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
#[value(rename_all = "lowercase")]
pub enum Persistence {
    /// No RDB snapshots, no AOF (the default: faster, and the cluster is thrown away).
    #[default]
    None,
    /// Append-only file, fsync every second.
    Aof,
    /// RDB snapshots on the server's default schedule.
    Rdb,
}

/// Which client drives the workload (`workload.client`, `--client`, `matrix --clients`):
/// faultline's own, or a real client library behind its adapter process
/// (`adapters/PROTOCOL.md`, [`crate::adapters`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
#[value(rename_all = "kebab-case")]
pub enum ClientName {
    /// faultline's own client: follows every redirect itself and records each hop.
    #[default]
    Faultline,
    /// redis-py's `RedisCluster` (asyncio), in the adapters' Python environment.
    RedisPy,
    /// valkey-py's `ValkeyCluster` (asyncio), in the adapters' Python environment.
    ValkeyPy,
    /// Valkey GLIDE for Python's `GlideClusterClient` (a Rust core).
    Glide,
    /// redis-rs's own cluster client (`redis::cluster_async`), a binary of this workspace.
    RedisRs,
    /// A program of your own that speaks the protocol (`workload.adapter_command`).
    Adapter,
}

impl ClientName {
    /// Whether this is faultline's own client (scenario.yaml leaves it out then).
    pub fn is_faultline(&self) -> bool {
        *self == ClientName::Faultline
    }
}

/// Writes the name a value has in scenarios and on the command line.
fn write_name<T: ValueEnum>(value: &T, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    // Every variant of these enums has a name (none is `#[value(skip)]`).
    match value.to_possible_value() {
        Some(v) => f.write_str(v.get_name()),
        None => Ok(()),
    }
}

/// Parses a name, or says which names exist.
fn parse_name<T: ValueEnum>(what: &str, s: &str) -> Result<T, String> {
    T::from_str(s, false).map_err(|_| {
        let names: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value().map(|p| p.get_name().to_string()))
            .collect();
        format!("unknown {what} {s:?}; choose one of {}", names.join(", "))
    })
}

macro_rules! named {
    ($t:ty, $what:literal) => {
        impl $t {
            /// Parses a name (a matrix target, say).
            ///
            /// # Errors
            /// Names the choices when `s` is not one of them.
            pub fn parse(s: &str) -> Result<$t, String> {
                parse_name($what, s)
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_name(self, f)
            }
        }
    };
}

named!(FlavorName, "flavor");
named!(BackendName, "backend");
named!(Mode, "mode");
named!(Persistence, "persistence");
named!(ClientName, "client");

#[cfg(test)]
mod tests {
    use super::*;

    /// The command line and the scenario format spell every value the same way.
    #[test]
    fn clap_and_serde_names_agree() {
        fn check<T: ValueEnum + Serialize + fmt::Display>() {
            for v in T::value_variants() {
                let yaml = serde_yaml_ng::to_string(v).unwrap();
                assert_eq!(yaml.trim(), v.to_string());
            }
        }
        check::<FlavorName>();
        check::<BackendName>();
        check::<Mode>();
        check::<Persistence>();
        check::<ClientName>();
    }

    #[test]
    fn unknown_names_list_the_choices() {
        let e = FlavorName::parse("keydb").unwrap_err();
        assert_eq!(
            e,
            "unknown flavor \"keydb\"; choose one of redis, valkey, garnet, faultline"
        );
        assert_eq!(BackendName::parse("docker"), Ok(BackendName::Docker));
    }
}
