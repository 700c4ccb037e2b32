//! Flavors: the kinds of server faultline runs, and how each is configured.
//!
//! A flavor knows its binary, how to read its version, and its config dialect. Adding one
//! (a user's fork, say) is one file here, its name in [`crate::kinds::FlavorName`] and its
//! arm in [`for_cluster`] (the compiler points there); `doctor`, `--help`, scenario parsing and
//! both backends then know it.

pub mod faultline;
mod garnet;
mod redis;
pub mod standalone;
mod valkey;

pub use faultline::Faultline;
pub use garnet::Garnet;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use clap::ValueEnum;

use crate::kinds::{FlavorName, Persistence};

/// Everything a flavor needs to write one node's config file.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Address the node listens on and announces.
    pub ip: std::net::Ipv4Addr,
    /// Client port.
    pub port: u16,
    /// `cluster-node-timeout`, ms.
    pub node_timeout_ms: u64,
    /// Persistence mode.
    pub persistence: Persistence,
    /// Working directory (nodes.conf, RDB, AOF).
    pub data_dir: PathBuf,
    /// The server's log file.
    pub log_file: PathBuf,
}

/// A kind of server.
pub trait Flavor: Send + Sync {
    /// Name as used in scenarios (`redis`).
    fn name(&self) -> &'static str;

    /// Binary looked up on PATH when the scenario names none.
    fn default_binary(&self) -> &'static str;

    /// How a person gets the binary on Debian, for `doctor` and error messages.
    fn install_hint(&self) -> &'static str;

    /// The server's version, from `BINARY --version` (`... v=7.0.15 ...`).
    ///
    /// # Errors
    /// If the binary cannot be run or prints no version.
    fn version(&self, binary: &Path) -> Result<String> {
        let out = Command::new(binary)
            .arg("--version")
            .output()
            .with_context(|| {
                format!(
                    "could not run {} ({})",
                    binary.display(),
                    self.install_hint()
                )
            })?;
        let text = String::from_utf8_lossy(&out.stdout);
        match text.split_whitespace().find_map(|w| w.strip_prefix("v=")) {
            Some(v) => Ok(v.to_string()),
            None => bail!(
                "{} --version printed no version: {text:?}",
                binary.display()
            ),
        }
    }

    /// The config file text for one node.
    fn config(&self, node: &NodeConfig) -> String {
        common_config(node)
    }

    /// The server's arguments, given the config file written from [`Flavor::config`] at
    /// `conf` (Redis and Valkey: just that path; Garnet: flags).
    fn args(&self, conf: &Path, _node: &NodeConfig) -> Vec<String> {
        vec![conf.display().to_string()]
    }

    /// Where the node's peers reach its cluster bus: client port + 10000 for Redis and
    /// Valkey (unless `cluster-port` is set); the client port itself for Garnet.
    fn bus_port(&self, client_port: u16) -> u16 {
        client_port + 10000
    }

    /// Where the flavor's binary is when the scenario names none, before PATH is searched
    /// (faultline-node: beside the running `faultline`).
    fn bundled_binary(&self) -> Option<PathBuf> {
        None
    }

    /// Whether replicas take over a failed primary on their own. When not (Garnet), only
    /// the harness's failover fault promotes a replica.
    fn automatic_failover(&self) -> bool {
        true
    }
}

/// A flavor with default settings.
pub fn by_name(name: FlavorName) -> Box<dyn Flavor> {
    for_cluster(name, &crate::scenario::ClusterSpec::default())
}

/// Every flavor, in [`FlavorName`]'s order (for `doctor`).
pub fn all() -> Vec<Box<dyn Flavor>> {
    FlavorName::value_variants()
        .iter()
        .map(|&n| by_name(n))
        .collect()
}

/// The flavor registry: the flavor with the scenario's flavor-specific choices applied
/// (`cluster.clean_cluster_config` for Garnet).
pub fn for_cluster(name: FlavorName, cluster: &crate::scenario::ClusterSpec) -> Box<dyn Flavor> {
    match name {
        FlavorName::Redis => Box::new(redis::Redis),
        FlavorName::Valkey => Box::new(valkey::Valkey),
        FlavorName::Garnet => Box::new(garnet::Garnet {
            clean_cluster_config: cluster.clean_cluster_config,
        }),
        FlavorName::Faultline => Box::new(faultline::Faultline {
            bugs: cluster.bugs.clone(),
        }),
    }
}

/// Settings Redis 7.0+ and Valkey 8+ read alike: a cluster node on one address, no
/// protection (the network is the run's own), debug commands on (faults use them), and
/// everything it writes inside the run directory.
pub fn common_config(node: &NodeConfig) -> String {
    let mut c = String::new();
    let mut line = |k: &str, v: &str| {
        c.push_str(k);
        c.push(' ');
        c.push_str(v);
        c.push('\n');
    };
    line("bind", &node.ip.to_string());
    line("port", &node.port.to_string());
    line("protected-mode", "no");
    line("daemonize", "no");
    line("cluster-enabled", "yes");
    line("cluster-config-file", "nodes.conf");
    line("cluster-node-timeout", &node.node_timeout_ms.to_string());
    line("enable-debug-command", "yes");
    line("dir", &quote(&node.data_dir));
    line("logfile", &quote(&node.log_file));
    line("loglevel", "verbose");
    // Replicas sync at once; the default waits 5 s for more replicas to share one transfer.
    line("repl-diskless-sync-delay", "0");
    match node.persistence {
        Persistence::None => {
            line("save", "\"\"");
            line("appendonly", "no");
        }
        Persistence::Aof => {
            line("save", "\"\"");
            line("appendonly", "yes");
            line("appendfsync", "everysec");
        }
        Persistence::Rdb => {
            line("appendonly", "no");
        }
    }
    c
}

/// Extra config lines that make a node announce `bus_port` as its cluster bus port (it
/// still listens on client port + 10000): peers, gossip and `CLUSTER MEET ... bus_port`
/// then reach whoever listens on `bus_port` (the bus proxy). The node's address is
/// announced too: the proxy's onward connections reach the node from the node's own
/// address, and without `cluster-announce-ip` a node takes a peer's address from its
/// connection (`nodeIp2String`), so it would record every peer at its own address.
/// Redis 7.0+ and Valkey 8+ read both settings alike.
pub fn announce_config(ip: std::net::Ipv4Addr, bus_port: u16) -> String {
    format!("cluster-announce-ip {ip}\ncluster-announce-bus-port {bus_port}\n")
}

fn quote(p: &Path) -> String {
    format!("\"{}\"", p.display().to_string().replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> NodeConfig {
        NodeConfig {
            ip: "10.77.3.11".parse().unwrap(),
            port: 6379,
            node_timeout_ms: 5000,
            persistence: Persistence::None,
            data_dir: "/s/run/data/n1".into(),
            log_file: "/s/run/logs/n1/server.log".into(),
        }
    }

    #[test]
    fn config_is_a_test_cluster_node() {
        for name in [FlavorName::Redis, FlavorName::Valkey] {
            let c = by_name(name).config(&node());
            for expected in [
                "bind 10.77.3.11\n",
                "cluster-enabled yes\n",
                "cluster-node-timeout 5000\n",
                "enable-debug-command yes\n",
                "save \"\"\n",
                "appendonly no\n",
                "logfile \"/s/run/logs/n1/server.log\"\n",
            ] {
                assert!(
                    c.contains(expected),
                    "{name}: {expected:?} missing from\n{c}"
                );
            }
        }
    }

    #[test]
    fn announce_lines_name_the_address_and_bus_port() {
        let text = announce_config("10.77.3.12".parse().unwrap(), 17379);
        assert_eq!(
            text,
            "cluster-announce-ip 10.77.3.12\ncluster-announce-bus-port 17379\n"
        );
    }

    #[test]
    fn aof_persistence_turns_on_appendonly() {
        let mut n = node();
        n.persistence = Persistence::Aof;
        assert!(common_config(&n).contains("appendonly yes\n"));
    }
}
