//! What a workload needs of a client: send one command that touches one key, and get back
//! its outcome in Jepsen's terms with every redirect followed on the way.
//!
//! Every workload runs unchanged over a cluster ([`crate::ClusterClient`]) and over a
//! standalone primary with replicas ([`crate::StandaloneClient`]), so the history and the
//! final reads keep one shape and the `lost-writes` checker reads both alike.

use std::future::Future;
use std::pin::Pin;

use redis::Cmd;

use crate::client::{ClusterClient, Outcome};

/// A boxed future, so clients can be trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A client that runs single-key commands.
pub trait KeyClient: Send + Sync {
    /// Sends `cmd`, which touches `key`, to the node that should run it, following
    /// redirects within the op time-out.
    fn execute<'a>(&'a self, key: &'a [u8], cmd: &'a Cmd) -> BoxFuture<'a, Outcome>;
}

impl KeyClient for ClusterClient {
    fn execute<'a>(&'a self, key: &'a [u8], cmd: &'a Cmd) -> BoxFuture<'a, Outcome> {
        Box::pin(ClusterClient::execute(self, key, cmd))
    }
}

/// A shared client is a client (callers hold `Arc`s).
impl<T: KeyClient + ?Sized> KeyClient for std::sync::Arc<T> {
    fn execute<'a>(&'a self, key: &'a [u8], cmd: &'a Cmd) -> BoxFuture<'a, Outcome> {
        (**self).execute(key, cmd)
    }
}
