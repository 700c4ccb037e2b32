//! The nodes once joined, in either mode: a cluster ([`Admin`]) or a standalone primary
//! with replicas ([`StandaloneAdmin`]). The run forms one and, in the final phase, waits
//! for it to agree again; [`workload_client`] is the client that mode's workload drives.

use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use faultline_workloads::{ClientConfig, ClusterClient, KeyClient, StandaloneClient};
use tokio::time::Instant;

use crate::backend::{Backend, NodeSpec};
use crate::cluster::{self, Admin, Layout};
use crate::scenario::Mode;
use crate::standalone::{self, StandaloneAdmin};

/// Admin connections to the joined nodes.
pub enum Formed {
    /// A Redis Cluster.
    Cluster(Admin),
    /// One primary and its replicas.
    Standalone(StandaloneAdmin),
}

impl Formed {
    /// Starts every node and joins them as `mode` says.
    ///
    /// # Errors
    /// A server that cannot start or dies, or no agreement by `deadline`.
    pub async fn start(
        mode: Mode,
        backend: &mut dyn Backend,
        layout: &Layout,
        deadline: Instant,
    ) -> Result<Formed> {
        Ok(match mode {
            Mode::Cluster => {
                Formed::Cluster(cluster::start_and_form(backend, layout, deadline).await?)
            }
            Mode::Standalone => {
                Formed::Standalone(standalone::start_and_form(backend, deadline).await?)
            }
        })
    }

    /// Waits until the nodes agree again (any slot map; any primary).
    ///
    /// # Errors
    /// At `deadline`, the last disagreement seen.
    pub async fn wait_agreed(&mut self, deadline: Instant) -> Result<()> {
        match self {
            Formed::Cluster(admin) => admin.wait_agreed(None, deadline).await,
            Formed::Standalone(admin) => admin.wait_agreed(deadline).await,
        }
    }
}

/// The workload's client for `mode`: a [`ClusterClient`] with its slot map read, or a
/// [`StandaloneClient`] that has found the primary (also returned as such, for its
/// `CLIENT CAPA redirect` answers).
///
/// # Errors
/// If no node gives a slot map, or no node calls itself primary.
pub async fn workload_client(
    mode: Mode,
    config: ClientConfig,
    nodes: &[NodeSpec],
) -> Result<(Arc<dyn KeyClient>, Option<Arc<StandaloneClient>>)> {
    let addrs: Vec<(String, String)> = nodes.iter().map(|n| (n.name.clone(), n.addr())).collect();
    Ok(match mode {
        Mode::Cluster => {
            let c = ClusterClient::new(config, &addrs);
            c.refresh_slots().await.context("reading the slot map")?;
            (Arc::new(c), None)
        }
        Mode::Standalone => {
            let c = Arc::new(StandaloneClient::new(config, &addrs, &nodes[0].addr()));
            c.find_primary()
                .await
                .map_err(|e| anyhow!("finding the primary: {e}"))?;
            (c.clone(), Some(c))
        }
    })
}
