//! The nodes once joined, in either mode: a cluster ([`Admin`]) or a standalone primary
//! with replicas ([`StandaloneAdmin`]). The run forms one and, in the final phase, waits
//! for it to agree again.

use anyhow::Result;
use tokio::time::Instant;

use crate::backend::Backend;
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
