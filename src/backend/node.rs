//! A node's files, as every backend lays them out: `data/<node>/` (the config faultline
//! writes, nodes.conf, RDB/AOF) and `logs/<node>/` (server.log, console.log, and a copy of
//! nodes.conf at teardown) under the run directory. Backends differ in how they run the
//! server, not in what it reads and writes, so this is the one place that prepares it.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{BackendPlan, NodeSpec, CLIENT_PORT};
use crate::flavor::NodeConfig;

/// One node's spec, config and directories.
pub struct NodeFiles {
    /// Name and address.
    pub spec: NodeSpec,
    /// The server's arguments (the config file's path, or a flavor's flags).
    pub args: Vec<String>,
    /// `data/<node>/server.conf`.
    pub conf: PathBuf,
    /// The config as the flavor wrote it, before any announce lines.
    base_config: String,
    /// The bus port the node announces, when its bus goes through the proxy.
    pub announced_bus_port: Option<u16>,
    /// The server's working directory.
    pub data_dir: PathBuf,
    /// Where its logs go.
    pub log_dir: PathBuf,
}

impl NodeFiles {
    /// Makes the node's directories and writes its config, for a server at `ip` on
    /// [`CLIENT_PORT`]. Paths the server reads are absolute (it may run from another
    /// working directory, or in a container with the run directory mounted at its path).
    ///
    /// # Errors
    /// If a directory or the config cannot be written.
    pub fn prepare(plan: &BackendPlan, name: &str, ip: Ipv4Addr) -> Result<NodeFiles> {
        Self::prepare_at(plan, name, ip, CLIENT_PORT)
    }

    /// [`NodeFiles::prepare`] for a server on `port` (nodes sharing one address).
    ///
    /// # Errors
    /// If a directory or the config cannot be written.
    pub fn prepare_at(
        plan: &BackendPlan,
        name: &str,
        ip: Ipv4Addr,
        port: u16,
    ) -> Result<NodeFiles> {
        let data_dir = plan.run_dir.join("data").join(name);
        let log_dir = plan.run_dir.join("logs").join(name);
        fs::create_dir_all(&data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
        let conf = data_dir.join("server.conf");
        let node_config = NodeConfig {
            ip,
            port,
            node_timeout_ms: plan.node_timeout_ms,
            persistence: plan.persistence,
            data_dir: abs(&data_dir)?,
            log_file: abs(&log_dir.join("server.log"))?,
        };
        let text = plan.flavor.config(&node_config);
        let args = plan.flavor.args(&abs(&conf)?, &node_config);
        fs::write(&conf, &text).with_context(|| format!("writing {}", conf.display()))?;
        Ok(NodeFiles {
            spec: NodeSpec {
                name: name.to_string(),
                ip,
                port,
            },
            args,
            conf,
            base_config: text,
            announced_bus_port: None,
            data_dir,
            log_dir,
        })
    }

    /// Rewrites the config so the node announces `port` as its bus port (see
    /// [`super::Backend::announce_bus_port`]).
    ///
    /// # Errors
    /// If the config cannot be written.
    pub fn announce_bus_port(&mut self, port: u16) -> Result<()> {
        let text = format!(
            "{}{}",
            self.base_config,
            crate::flavor::announce_config(self.spec.ip, port)
        );
        fs::write(&self.conf, text).with_context(|| format!("writing {}", self.conf.display()))?;
        self.announced_bus_port = Some(port);
        Ok(())
    }

    /// `logs/<node>/server.log`.
    pub fn server_log(&self) -> PathBuf {
        self.log_dir.join("server.log")
    }

    /// `logs/<node>/console.log`: the server's stdout and stderr.
    pub fn console_log(&self) -> PathBuf {
        self.log_dir.join("console.log")
    }

    /// A file from the node's data directory (nodes.conf, say).
    ///
    /// # Errors
    /// If it cannot be read.
    pub fn read(&self, name: &str) -> Result<Vec<u8>> {
        let path = self.data_dir.join(name);
        fs::read(&path).with_context(|| format!("reading {}", path.display()))
    }

    /// "`<node>` exited (`<status>`); last lines of server.log:" and its last 15 lines,
    /// then `console` (the end of its stdout and stderr).
    pub fn exit_report(&self, status: &str, console: &str) -> String {
        let log = self.server_log();
        format!(
            "{} exited ({status}); last lines of {}:\n{}{console}",
            self.spec.name,
            log.display(),
            crate::sys::tail(&log, 15),
        )
    }

    /// Keeps the evidence a torn-down node leaves in its data directory: nodes.conf (who
    /// the node thought it and its peers were) is copied into its logs.
    pub fn keep_evidence(&self) {
        let _ = fs::copy(
            self.data_dir.join("nodes.conf"),
            self.log_dir.join("nodes.conf"),
        );
    }
}

fn abs(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("resolving {}", p.display()))
}
