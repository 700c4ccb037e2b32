//! Any flavor without cluster mode, for `mode: standalone`: the same binary, version and
//! config dialect, with every `cluster-*` setting left out, so the node starts as a plain
//! primary that `REPLICAOF` can attach to another.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;

use super::{Flavor, NodeConfig};

/// Wraps a flavor and drops its cluster settings.
pub struct Standalone(pub Arc<dyn Flavor>);

impl Flavor for Standalone {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn default_binary(&self) -> &'static str {
        self.0.default_binary()
    }

    fn install_hint(&self) -> &'static str {
        self.0.install_hint()
    }

    fn version(&self, binary: &Path) -> Result<String> {
        self.0.version(binary)
    }

    fn config(&self, node: &NodeConfig) -> String {
        self.0
            .config(node)
            .lines()
            .filter(|l| !l.trim_start().starts_with("cluster-"))
            .map(|l| format!("{l}\n"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flavor::by_name;
    use crate::kinds::{FlavorName, Persistence};

    #[test]
    fn standalone_nodes_have_no_cluster_settings() {
        let node = NodeConfig {
            ip: "10.77.3.11".parse().unwrap(),
            port: 6379,
            node_timeout_ms: 5000,
            persistence: Persistence::None,
            data_dir: "/s/run/data/n1".into(),
            log_file: "/s/run/logs/n1/server.log".into(),
        };
        let flavor = Standalone(Arc::from(by_name(FlavorName::Valkey)));
        let c = flavor.config(&node);
        assert!(!c.contains("cluster-"), "{c}");
        assert!(c.contains("bind 10.77.3.11\n") && c.contains("enable-debug-command yes\n"));
    }
}
