//! faultline-node (`node/`): the project's own Redis-Cluster-protocol server. It reads
//! the common config (Redis's names), plus `faultline-bugs` for the seed-bug switches a
//! scenario's `cluster.bugs` turns on. Its binary is built with faultline and found beside
//! it (`target/<profile>/faultline-node`), else on PATH.

use std::path::PathBuf;

use super::{common_config, Flavor, NodeConfig};

/// faultline-node, with the bug switches to turn on.
pub struct Faultline {
    /// `cluster.bugs`.
    pub bugs: Vec<String>,
}

/// The binary's name.
pub const BINARY: &str = "faultline-node";

/// faultline-node beside the running executable (or one directory up, for test
/// binaries under `target/<profile>/deps/`).
pub fn beside_faultline() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.join(BINARY), dir.parent()?.join(BINARY)]
        .into_iter()
        .find(|p| p.is_file())
}

impl Flavor for Faultline {
    fn name(&self) -> &'static str {
        "faultline"
    }

    fn default_binary(&self) -> &'static str {
        BINARY
    }

    fn install_hint(&self) -> &'static str {
        "build it with faultline: cargo build -p faultline-node (it is then found beside the faultline binary)"
    }

    fn config(&self, node: &NodeConfig) -> String {
        let mut c = common_config(node);
        if !self.bugs.is_empty() {
            c.push_str(&format!("faultline-bugs {}\n", self.bugs.join(",")));
        }
        c
    }

    fn bundled_binary(&self) -> Option<PathBuf> {
        beside_faultline()
    }
}
