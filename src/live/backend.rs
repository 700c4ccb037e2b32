//! The [`Backend`] for a live cluster reached with access `none`: its nodes' addresses
//! and bus ports come from discovery, and it can do nothing on their hosts. Faults that
//! would need to (kill, pause, partitions, delay) are refused when the scenario is loaded
//! ([`super::fault_refusal`]), so the refusals here are a second line, worded for a person.

use std::path::PathBuf;

use anyhow::{bail, Result};

use super::discover::Target;
use crate::backend::node::NodeFiles;
use crate::backend::{Backend, BackendPlan, NodeSpec};

/// A live cluster's nodes, client port only.
pub struct LiveBackend {
    specs: Vec<NodeSpec>,
    bus_ports: Vec<Option<u16>>,
    seeds: String,
}

impl LiveBackend {
    /// The backend for a cluster that passed the preflight.
    pub fn new(target: &Target) -> LiveBackend {
        LiveBackend {
            specs: target.specs(),
            bus_ports: target.nodes.iter().map(|n| n.bus_port).collect(),
            seeds: target.spec.seeds.join(","),
        }
    }

    fn refuse(&self, node: usize, what: &str) -> Result<()> {
        bail!(
            "{} is a node of a live cluster reached with access none: faultline cannot {what} it",
            self.specs[node].name
        )
    }
}

impl Backend for LiveBackend {
    fn nodes(&self) -> &[NodeSpec] {
        &self.specs
    }

    fn start(&mut self, node: usize) -> Result<()> {
        self.refuse(node, "start")
    }

    fn exited(&mut self) -> Option<String> {
        None
    }

    fn kill(&mut self, node: usize) -> Result<()> {
        self.refuse(node, "kill")
    }

    fn pause(&mut self, node: usize, pause: bool) -> Result<()> {
        self.refuse(node, if pause { "pause" } else { "resume" })
    }

    /// A prefix that runs nothing and fails saying why (`sh -c` prints its `$0`).
    fn netns_exec_prefix(&self, node: usize) -> Vec<String> {
        vec![
            "sh".into(),
            "-c".into(),
            "echo \"$0\" >&2; exit 1".into(),
            format!(
                "{} is a node of a live cluster reached with access none: faultline runs no \
                 command on its host",
                self.specs[node].name
            ),
        ]
    }

    fn host_exec_prefix(&self, node: usize) -> Vec<String> {
        self.netns_exec_prefix(node)
    }

    fn netns_path(&self, _node: usize) -> Option<PathBuf> {
        None
    }

    fn plan(&self) -> Option<&BackendPlan> {
        None
    }

    fn node_files(&self, _node: usize) -> Option<&NodeFiles> {
        None
    }

    fn node_files_mut(&mut self, _node: usize) -> Option<&mut NodeFiles> {
        None
    }

    fn bus_port(&self, node: usize) -> Option<u16> {
        self.bus_ports[node]
    }

    fn announced_bus_port(&self, node: usize) -> Option<u16> {
        self.bus_ports[node]
    }

    /// Nothing of faultline's runs on a live cluster's hosts with access none.
    fn teardown(&mut self) -> Result<()> {
        Ok(())
    }

    fn keep_notice(&self) -> String {
        format!(
            "live cluster {}: faultline started nothing there, so there is nothing to keep",
            self.seeds
        )
    }
}
