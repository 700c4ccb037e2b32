//! The hosts file of access `ssh` (`live.hosts_file`, `--hosts FILE`): for each node
//! address the cluster announces, the SSH destination that reaches its host and the
//! commands that restart its server.
//!
//! ```yaml
//! ssh_options: [StrictHostKeyChecking=accept-new]   # `-o` options for every host
//! nodes:
//!   - node: 10.0.0.11:6379          # as CLUSTER NODES announces it
//!     host: db1.example             # default: the node's address
//!     user: root                    # default: ssh's own (~/.ssh/config)
//!     port: 22                      # default: ssh's own
//!     identity: /home/me/.ssh/id_ed25519
//!     sudo: true                    # run every command through `sudo -n`
//!     restart: systemctl restart valkey@6379
//!     stop: systemctl kill -s KILL valkey@6379   # optional: how `kill` stops it
//!     start: systemctl start valkey@6379         # optional: how it comes back
//!     options: [ProxyJump=bastion]               # optional, this host only
//! ```
//!
//! A password or a key's contents never go here: ssh reads keys from files, agents and
//! `~/.ssh/config` itself. Bad input names the file, line and field (exit 254).

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// One node's host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostEntry {
    /// The node's address as the cluster announces it, `IP:PORT`.
    pub node: String,
    /// Where ssh connects (a name `~/.ssh/config` knows, or an address); default: the
    /// node's IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The login; default: ssh's own choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// SSH port; default: ssh's own choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Private key file (`-i`); its contents are never read by faultline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<PathBuf>,
    /// Run every remote command through `sudo -n` (a login that is not root).
    #[serde(default)]
    pub sudo: bool,
    /// Restarts the server (after a kill, when there is no `start`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<String>,
    /// Stops the server for a `kill` fault; default: SIGKILL to the pid `INFO server`
    /// gives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<String>,
    /// Starts the server again after a `kill`; default: `restart`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// More `-o` options for this host (after the file's `ssh_options`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl HostEntry {
    /// The command that brings the server back after a kill, if any.
    pub fn start_command(&self) -> Option<&str> {
        self.start.as_deref().or(self.restart.as_deref())
    }
}

/// The hosts file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostsFile {
    /// `-o` options for every host (`StrictHostKeyChecking=...`, `UserKnownHostsFile=...`).
    /// Host keys are checked strictly unless this says otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_options: Vec<String>,
    /// One entry per node address.
    pub nodes: Vec<HostEntry>,
}

/// A hosts file that cannot be used: where and why.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {field}: {message}")]
pub struct HostsError {
    /// The file.
    pub file: String,
    /// 1-based; 0 when unknown.
    pub line: usize,
    /// Dotted field (`nodes[1].port`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl HostsFile {
    /// Reads and checks a hosts file.
    ///
    /// # Errors
    /// An unreadable file, YAML that is not a hosts file, or a value that cannot be.
    pub fn load(path: &Path) -> std::result::Result<HostsFile, HostsError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| HostsError {
            file: file.clone(),
            line: 0,
            field: "(file)".into(),
            message: format!("cannot read it: {e}"),
        })?;
        HostsFile::parse(&text, &file)
    }

    /// Parses hosts-file text; `file` names it in errors.
    ///
    /// # Errors
    /// See [`HostsFile::load`].
    pub fn parse(text: &str, file: &str) -> std::result::Result<HostsFile, HostsError> {
        use crate::scenario::locate::{clean_message, locate, quoted};
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let hosts: HostsFile = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let message = clean_message(&inner.to_string(), &path);
            let line = locate(text, &path, quoted(&message))
                .map(|(l, _)| l)
                .or_else(|| inner.location().map(|l| l.line()))
                .unwrap_or(0);
            HostsError {
                file: file.to_string(),
                line,
                field: path,
                message,
            }
        })?;
        let at = |path: String, message: String| {
            // A flow list (`[a, b]`) has no line per item: its key's line then.
            let line = locate(text, &path, None)
                .or_else(|| locate(text, path.rsplit_once('[')?.0, None))
                .map_or(0, |(l, _)| l);
            HostsError {
                file: file.to_string(),
                line,
                field: path,
                message,
            }
        };
        for (i, o) in hosts.ssh_options.iter().enumerate() {
            if let Err(m) = check_option(o) {
                return Err(at(format!("ssh_options[{i}]"), m));
            }
        }
        for (i, entry) in hosts.nodes.iter().enumerate() {
            if let Err(m) = check_addr(&entry.node) {
                return Err(at(format!("nodes[{i}].node"), m));
            }
            if let Some(j) = hosts.nodes[..i].iter().position(|e| e.node == entry.node) {
                return Err(at(
                    format!("nodes[{i}].node"),
                    format!("{} is listed twice (also nodes[{j}])", entry.node),
                ));
            }
            if entry.port == Some(0) {
                return Err(at(
                    format!("nodes[{i}].port"),
                    "port 0 is no SSH port".into(),
                ));
            }
            for (key, value) in [
                ("host", entry.host.as_deref()),
                ("user", entry.user.as_deref()),
            ] {
                if let Some(v) = value {
                    if v.is_empty() || v.starts_with('-') || v.contains(char::is_whitespace) {
                        return Err(at(
                            format!("nodes[{i}].{key}"),
                            format!("{v:?} is not a {key} ssh can be given"),
                        ));
                    }
                }
            }
            for (key, value) in [
                ("restart", &entry.restart),
                ("stop", &entry.stop),
                ("start", &entry.start),
            ] {
                if value.as_deref().is_some_and(|c| c.trim().is_empty()) {
                    return Err(at(format!("nodes[{i}].{key}"), "an empty command".into()));
                }
            }
            for (j, o) in entry.options.iter().enumerate() {
                if let Err(m) = check_option(o) {
                    return Err(at(format!("nodes[{i}].options[{j}]"), m));
                }
            }
        }
        Ok(hosts)
    }

    /// The entry for a node address.
    pub fn entry(&self, addr: &str) -> Option<&HostEntry> {
        self.nodes.iter().find(|e| e.node == addr)
    }
}

/// `IP:PORT` with an IPv4 address (nodes are announced by address).
fn check_addr(addr: &str) -> std::result::Result<(), String> {
    match addr.parse::<std::net::SocketAddrV4>() {
        Ok(_) => Ok(()),
        Err(_) => Err(format!(
            "{addr:?} is not IP:PORT as the cluster announces its nodes (10.0.0.11:6379)"
        )),
    }
}

/// An ssh `-o` option: `Key=value`; the ones that would move faultline's own connection
/// sharing or let ssh ask for a password are refused.
fn check_option(option: &str) -> std::result::Result<(), String> {
    let Some((key, _)) = option.split_once('=') else {
        return Err(format!("{option:?} is not Key=value"));
    };
    let lower = key.trim().to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "controlmaster" | "controlpath" | "controlpersist" | "batchmode"
    ) {
        return Err(format!(
            "{key} is faultline's own (connection sharing under the run's socket \
             directory, BatchMode=yes): leave it out"
        ));
    }
    Ok(())
}

/// Checks that every discovered node has an entry, naming the ones that have none.
///
/// # Errors
/// The node addresses without an entry.
pub fn check_covers(hosts: &HostsFile, file: &Path, addrs: &[String]) -> Result<()> {
    let missing: Vec<&str> = addrs
        .iter()
        .filter(|a| hosts.entry(a).is_none())
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        bail!(
            "{}: no entry for node {} (access ssh needs one per node the cluster announces)",
            file.display(),
            missing.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        HostsFile::parse(text, "h.yaml").unwrap_err().to_string()
    }

    #[test]
    fn a_hosts_file_parses() {
        let h = HostsFile::parse(
            "ssh_options: [StrictHostKeyChecking=no]\nnodes:\n  - node: 10.0.0.1:6379\n    user: root\n    port: 2222\n    identity: /k\n    sudo: true\n    restart: systemctl restart valkey@6379\n",
            "h.yaml",
        )
        .unwrap();
        let e = h.entry("10.0.0.1:6379").unwrap();
        assert_eq!(e.port, Some(2222));
        assert!(e.sudo);
        assert_eq!(e.start_command(), Some("systemctl restart valkey@6379"));
        assert!(h.entry("10.0.0.2:6379").is_none());
    }

    #[test]
    fn bad_hosts_files_name_file_line_and_field() {
        let e = err("nodes:\n  - node: 10.0.0.1:6379\n    prot: 22\n");
        assert!(e.starts_with("h.yaml:3:"), "{e}");
        assert!(e.contains("unknown field `prot`"), "{e}");
        let e = err("nodes:\n  - node: 10.0.0.1:6379\n  - node: db1\n");
        assert!(e.starts_with("h.yaml:3: nodes[1].node:"), "{e}");
        let e = err("nodes:\n  - node: 10.0.0.1:6379\n    port: 70000\n");
        assert!(e.starts_with("h.yaml:3:"), "{e}");
        let e = err("nodes:\n  - node: 10.0.0.1:6379\n  - node: 10.0.0.1:6379\n");
        assert!(e.contains("listed twice"), "{e}");
        let e = err("ssh_options: [ControlPath=/tmp/x]\nnodes: []\n");
        assert!(e.starts_with("h.yaml:1: ssh_options[0]:"), "{e}");
        let e = err("nodes:\n  - node: 10.0.0.1:6379\n    user: -oProxyCommand=x\n");
        assert!(e.starts_with("h.yaml:3: nodes[0].user:"), "{e}");
    }
}
