//! Garnet (Microsoft's Redis-compatible server, `GarnetServer`): a different dialect.
//!
//! - Settings are command-line flags (`--cluster --port N --bind IP --checkpointdir D
//!   --aof ...`, names from Garnet's `libs/host/Configuration/Options.cs`), not a
//!   redis.conf; the config file faultline writes is only a record of them.
//! - Gossip runs over the client port: there is no separate cluster bus port, so a node is
//!   met with `CLUSTER MEET ip port` and bus faults target the client port.
//! - No automatic failover: a failed primary stays failed until an external controller
//!   (here: the harness's failover fault) runs `CLUSTER FAILOVER` on a replica.
//! - `--clean-cluster-config` makes a restarted node forget its nodes.conf; without it a
//!   restarted old primary reloads its stale view (microsoft/garnet#1044, seed 004), so it
//!   is a scenario choice (`cluster.clean_cluster_config`).
//! - `--cluster-timeout` is in whole seconds (Redis's `cluster-node-timeout` is ms).
//!
//! Garnet cannot be obtained on faultline's CI machines (no .NET runtime, no registry);
//! this dialect is unit-tested, and runs with a binary the user provides (`cluster.binary`)
//! or an image built from docker/Dockerfile.garnet.

use std::path::Path;

use super::{Flavor, NodeConfig};
use crate::kinds::Persistence;

/// Garnet.
#[derive(Debug, Default)]
pub struct Garnet {
    /// Start every node with `--clean-cluster-config`.
    pub clean_cluster_config: bool,
}

impl Flavor for Garnet {
    fn name(&self) -> &'static str {
        "garnet"
    }

    fn default_binary(&self) -> &'static str {
        "GarnetServer"
    }

    fn install_hint(&self) -> &'static str {
        "Garnet is not packaged for Debian: build it from microsoft/garnet (.NET 8) and set \
         cluster.binary, or build faultline/garnet:<version> from docker/Dockerfile.garnet"
    }

    fn bus_port(&self, client_port: u16) -> u16 {
        client_port
    }

    fn automatic_failover(&self) -> bool {
        false
    }

    fn args(&self, _conf: &Path, node: &NodeConfig) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut flag = |k: &str, v: Option<String>| {
            a.push(format!("--{k}"));
            if let Some(v) = v {
                a.push(v);
            }
        };
        flag("bind", Some(node.ip.to_string()));
        flag("port", Some(node.port.to_string()));
        flag("cluster", None);
        // Whole seconds, at least one.
        flag(
            "cluster-timeout",
            Some(node.node_timeout_ms.div_ceil(1000).max(1).to_string()),
        );
        flag(
            "checkpointdir",
            Some(node.data_dir.join("checkpoints").display().to_string()),
        );
        flag("logdir", Some(node.data_dir.display().to_string()));
        flag("file-logger", Some(node.log_file.display().to_string()));
        flag("logger-level", Some("Debug".into()));
        match node.persistence {
            Persistence::None => {}
            Persistence::Aof => {
                flag("aof", None);
                flag("recover", None);
            }
            Persistence::Rdb => flag("recover", None),
        }
        if self.clean_cluster_config {
            flag("clean-cluster-config", None);
        }
        a
    }

    fn config(&self, node: &NodeConfig) -> String {
        let mut c = String::from(
            "# GarnetServer takes its settings on the command line; this file records them.\n",
        );
        for arg in self.args(Path::new(""), node) {
            if arg.starts_with("--") && !c.ends_with('\n') {
                c.push('\n');
            }
            if !arg.starts_with("--") {
                c.push(' ');
            }
            c.push_str(&arg);
        }
        c.push('\n');
        c
    }

    fn version(&self, binary: &Path) -> anyhow::Result<String> {
        let out = std::process::Command::new(binary)
            .arg("--version")
            .output()
            .map_err(|e| {
                anyhow::anyhow!(
                    "could not run {} ({e}); {}",
                    binary.display(),
                    self.install_hint()
                )
            })?;
        let text = String::from_utf8_lossy(&out.stdout);
        match first_version(&text) {
            Some(v) => Ok(v),
            None => anyhow::bail!(
                "{} --version printed no version: {text:?}",
                binary.display()
            ),
        }
    }
}

/// The first dotted number in `text` (`1.0.60` in "Garnet 1.0.60+abc").
fn first_version(text: &str) -> Option<String> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map(|w| w.trim_matches('.'))
        .find(|w| w.contains('.') && w.split('.').all(|p| !p.is_empty()))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(persistence: Persistence) -> NodeConfig {
        NodeConfig {
            ip: "10.77.3.11".parse().unwrap(),
            port: 6379,
            node_timeout_ms: 2500,
            persistence,
            data_dir: "/s/run/data/n1".into(),
            log_file: "/s/run/logs/n1/server.log".into(),
        }
    }

    #[test]
    fn command_line_is_garnets_dialect() {
        let args = Garnet::default().args(Path::new("/x.conf"), &node(Persistence::Aof));
        assert_eq!(
            args.join(" "),
            "--bind 10.77.3.11 --port 6379 --cluster --cluster-timeout 3 \
             --checkpointdir /s/run/data/n1/checkpoints --logdir /s/run/data/n1 \
             --file-logger /s/run/logs/n1/server.log --logger-level Debug --aof --recover"
        );
    }

    #[test]
    fn clean_cluster_config_is_a_choice() {
        let plain = Garnet::default().args(Path::new(""), &node(Persistence::None));
        assert!(!plain.iter().any(|a| a == "--clean-cluster-config"));
        assert!(!plain.iter().any(|a| a == "--aof"));
        let clean = Garnet {
            clean_cluster_config: true,
        }
        .args(Path::new(""), &node(Persistence::None));
        assert_eq!(clean.last().unwrap(), "--clean-cluster-config");
    }

    #[test]
    fn one_port_no_automatic_failover_and_a_readable_record() {
        let g = Garnet::default();
        assert_eq!(g.bus_port(6379), 6379);
        assert!(!g.automatic_failover());
        let conf = g.config(&node(Persistence::None));
        assert!(conf.contains("\n--port 6379\n"), "{conf}");
        assert!(conf.contains("\n--cluster\n"), "{conf}");
        // Sub-second timeouts round up to Garnet's one-second minimum.
        let mut n = node(Persistence::None);
        n.node_timeout_ms = 200;
        assert!(g
            .args(Path::new(""), &n)
            .join(" ")
            .contains("--cluster-timeout 1 "));
    }

    #[test]
    fn versions_are_found_in_garnets_banner() {
        assert_eq!(
            first_version("Garnet 1.0.60+a1b2").as_deref(),
            Some("1.0.60")
        );
        assert_eq!(
            first_version("GarnetServer v1.0.5\n").as_deref(),
            Some("1.0.5")
        );
        assert_eq!(first_version("no version"), None);
    }
}
