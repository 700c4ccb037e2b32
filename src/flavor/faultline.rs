//! faultline-node (`node/`): the project's own Redis-Cluster-protocol server. It reads
//! the common config (Redis's names), plus `faultline-bugs` for the seed-bug switches a
//! scenario's `cluster.bugs` turns on. Its binary is built with faultline and found beside
//! it (`target/<profile>/faultline-node`), else on PATH.

use std::path::PathBuf;

use super::{common_config, Flavor, NodeConfig};
use crate::kinds::{BackendName, FlavorName};
use crate::scenario::Scenario;

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

/// The embedded default (issue 18): a local run that names Redis or Valkey only by flavor
/// (no `cluster.binary`, no `cluster.version`) on a machine with neither `redis-server`
/// nor `valkey-server` runs on faultline-node instead. `has` says whether a binary is on
/// PATH. Returns the note to print and record, or `None` when the run keeps its flavor.
pub fn embedded_default(scenario: &mut Scenario, has: impl Fn(&str) -> bool) -> Option<String> {
    let asked = scenario.flavor;
    if !matches!(asked, FlavorName::Redis | FlavorName::Valkey)
        || scenario.cluster.binary.is_some()
        || scenario.cluster.version.is_some()
        || !matches!(scenario.backend, BackendName::Local | BackendName::Loopback)
        || has("redis-server")
        || has("valkey-server")
        || (!has(BINARY) && beside_faultline().is_none())
    {
        return None;
    }
    scenario.flavor = FlavorName::Faultline;
    Some(format!(
        "neither redis-server nor valkey-server is installed: running flavor {asked}'s scenario on faultline-node, the embedded default"
    ))
}

/// Which server a scenario that names no binary or version would run on here
/// (`faultline doctor`).
pub fn default_server_note(has: impl Fn(&str) -> bool) -> String {
    if has("redis-server") {
        "flavor redis runs redis-server from PATH (the default)".into()
    } else if has("valkey-server") {
        "redis-server is missing: flavor redis cannot run; flavor valkey runs valkey-server".into()
    } else if has(BINARY) || beside_faultline().is_some() {
        "neither redis-server nor valkey-server is installed: runs use faultline-node, the embedded default".into()
    } else {
        "no server at all: install redis-server, or build faultline-node with faultline".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_fall_back_to_the_node_only_when_no_server_is_installed() {
        let mut s = Scenario::builtin();
        assert_eq!(
            embedded_default(&mut s, |b| b == "redis-server" || b == BINARY),
            None
        );
        assert_eq!(s.flavor, FlavorName::Redis);
        let note = embedded_default(&mut s, |b| b == BINARY).expect("falls back");
        assert!(
            note.contains("neither redis-server nor valkey-server"),
            "{note}"
        );
        assert_eq!(s.flavor, FlavorName::Faultline);
        // A version or a binary asked for by name is never replaced.
        let mut s = Scenario::builtin();
        s.cluster.version = Some("7.0.15".into());
        assert_eq!(embedded_default(&mut s, |b| b == BINARY), None);
    }
}
