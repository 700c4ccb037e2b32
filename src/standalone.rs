//! Standalone mode (`mode: standalone`): one primary and its replicas, no cluster.
//!
//! Nodes run without `cluster-enabled`; n1 is the primary and every other node is told
//! `REPLICAOF <n1> <port>`, then `CONFIG REWRITE`, so a replica killed and restarted by a
//! fault comes back as a replica. Formation waits until one node is primary, every other
//! reaches it through `master_host:master_port` links that are up (directly, or through a
//! replica: after `FAILOVER TO`, the other replicas stay with the old primary, which now
//! replicates the new one), and each replica's offset has caught up with the primary's.
//! The final phase asks for the same of whichever node is primary by then.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::time::Instant;

use crate::backend::{Backend, NodeSpec};
use crate::cluster::Admin;

/// Time between agreement polls.
const POLL: Duration = Duration::from_millis(50);

/// Admin connections to a standalone primary and its replicas.
pub struct StandaloneAdmin {
    admin: Admin,
    nodes: Vec<NodeSpec>,
}

/// Starts every node of `backend`, makes n1 the primary and the others its replicas, and
/// waits until they are in sync.
///
/// # Errors
/// A server that cannot start or dies, a refused `REPLICAOF`, or no sync by `deadline`.
pub async fn start_and_form(
    backend: &mut dyn Backend,
    deadline: Instant,
) -> Result<StandaloneAdmin> {
    crate::backend::start_all(backend)?;
    let nodes = backend.nodes().to_vec();
    let mut admin = Admin::new(&nodes);
    admin.wait_up(backend, deadline).await?;
    let primary = &nodes[0];
    for (i, replica) in nodes.iter().enumerate().skip(1) {
        admin
            .cmd::<String>(
                i,
                redis::cmd("REPLICAOF")
                    .arg(primary.ip.to_string())
                    .arg(primary.port),
            )
            .await
            .with_context(|| format!("REPLICAOF {} on {}", primary.name, replica.name))?;
        tracing::debug!("{} is replica of {}", replica.name, primary.name);
    }
    for (i, node) in nodes.iter().enumerate() {
        // Keep the role across a restart (a kill fault): the config file says whom to follow.
        admin
            .cmd::<String>(i, redis::cmd("CONFIG").arg("REWRITE"))
            .await
            .with_context(|| format!("CONFIG REWRITE on {}", node.name))?;
    }
    let mut s = StandaloneAdmin { admin, nodes };
    s.wait_agreed(deadline)
        .await
        .context("forming the replication group")?;
    Ok(s)
}

impl StandaloneAdmin {
    /// Admin connections to a group already joined (a live one): `nodes[0]` its primary
    /// when it was found, the rest its replicas. Connections open lazily.
    pub fn attach(nodes: &[NodeSpec]) -> StandaloneAdmin {
        StandaloneAdmin {
            admin: Admin::new(nodes),
            nodes: nodes.to_vec(),
        }
    }

    /// The node's `INFO replication` fields.
    async fn info(&mut self, i: usize) -> Result<HashMap<String, String>> {
        let text: String = self
            .admin
            .cmd(i, redis::cmd("INFO").arg("replication"))
            .await?;
        Ok(faultline_history::info_replication::info_fields(&text))
    }

    /// Polls until one node is primary, every other node replicates it with its link up,
    /// and every replica's offset equals the primary's.
    ///
    /// # Errors
    /// At `deadline`, the last problem seen, naming the node.
    pub async fn wait_agreed(&mut self, deadline: Instant) -> Result<()> {
        loop {
            let problem = match self.disagreement().await {
                None => return Ok(()),
                Some(p) => p,
            };
            if Instant::now() >= deadline {
                bail!("the replication group did not settle in time: {problem}");
            }
            tracing::debug!("not in sync yet: {problem}");
            tokio::time::sleep(POLL).await;
        }
    }

    /// Why the group is not in sync right now, or `None` if it is.
    pub async fn disagreement(&mut self) -> Option<String> {
        let mut infos = Vec::new();
        for i in 0..self.nodes.len() {
            match self.info(i).await {
                Ok(f) => infos.push(f),
                Err(e) => return Some(format!("{e:#}")),
            }
        }
        let primaries: Vec<usize> = (0..infos.len())
            .filter(|&i| infos[i].get("role").map(String::as_str) == Some("master"))
            .collect();
        let [p] = primaries[..] else {
            let names: Vec<&str> = primaries
                .iter()
                .map(|&i| self.nodes[i].name.as_str())
                .collect();
            return Some(format!("{} primaries: {names:?}", primaries.len()));
        };
        let primary = &self.nodes[p];
        let offset = infos[p].get("master_repl_offset").cloned();
        let index_of: HashMap<String, usize> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.addr(), i))
            .collect();
        for (i, f) in infos.iter().enumerate().filter(|(i, _)| *i != p) {
            let name = &self.nodes[i].name;
            // Each replica reaches the primary through replicas (after a FAILOVER the
            // other replicas stay with the old primary, which now replicates the new one).
            let mut at = i;
            for _ in 0..self.nodes.len() {
                if at == p {
                    break;
                }
                let g = &infos[at];
                let of = format!(
                    "{}:{}",
                    g.get("master_host").map_or("?", String::as_str),
                    g.get("master_port").map_or("?", String::as_str)
                );
                let Some(&next) = index_of.get(&of) else {
                    return Some(format!(
                        "{} replicates {of}, no node of this run",
                        self.nodes[at].name
                    ));
                };
                if g.get("master_link_status").map(String::as_str) != Some("up") {
                    return Some(format!(
                        "{}: link to {} not up",
                        self.nodes[at].name, self.nodes[next].name
                    ));
                }
                at = next;
            }
            if at != p {
                return Some(format!("{name} does not reach {} (a loop)", primary.name));
            }
            if f.get("slave_repl_offset") != offset.as_ref() {
                return Some(format!(
                    "{name} at offset {:?}, {} at {offset:?}",
                    f.get("slave_repl_offset"),
                    primary.name
                ));
            }
        }
        None
    }
}

/// Says in the run's notes which nodes refused `CLIENT CAPA redirect` (servers before
/// Valkey 8 do): clients went on without it, so replicas answered `-READONLY`, not
/// `-REDIRECT`.
pub fn note_capa(replies: &std::collections::BTreeMap<String, String>, notes: &mut Vec<String>) {
    let refused: Vec<String> = replies
        .iter()
        .filter(|(_, r)| r.as_str() != "OK")
        .map(|(n, r)| format!("{n}: {r}"))
        .collect();
    if refused.is_empty() {
        tracing::info!("CLIENT CAPA redirect accepted by {} nodes", replies.len());
    } else {
        notes.push(format!(
            "CLIENT CAPA redirect refused, clients went on without it ({})",
            refused.join("; ")
        ));
    }
}
