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

/// How one op reaches the servers (the client mix, [`crate::workload::ClientMix`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Route {
    /// `Some(id)`: over connections of process `id`'s own (one per node, `CLIENT CAPA`
    /// declared on each as on the shared ones); `None`: the client's shared connections.
    pub session: Option<u64>,
    /// Close the session's connections first: every hop of this op connects anew.
    pub fresh: bool,
    /// Start at node `i % nodes` (in name order) instead of the one last learned of.
    pub start: Option<usize>,
}

/// The pool-key suffix of session `id`'s connections.
pub(crate) fn session_suffix(id: u64) -> String {
    format!(" #{id}")
}

impl Route {
    /// The route as the history records it on the op's invoke (`None` for the default).
    pub fn to_json(&self) -> Option<serde_json::Value> {
        (*self != Route::default()).then(|| {
            serde_json::json!({
                "session": self.session,
                "fresh": self.fresh,
                "start": self.start,
            })
        })
    }

    /// The pool key of `addr`'s connection on this route.
    pub(crate) fn conn_key(&self, addr: &str) -> String {
        match self.session {
            Some(id) => format!("{addr}{}", session_suffix(id)),
            None => addr.to_string(),
        }
    }
}

/// A client that runs single-key commands.
pub trait KeyClient: Send + Sync {
    /// Sends `cmd`, which touches `key`, to the node that should run it, following
    /// redirects within the op time-out.
    fn execute<'a>(&'a self, key: &'a [u8], cmd: &'a Cmd) -> BoxFuture<'a, Outcome>;

    /// As [`KeyClient::execute`], along `route`.
    fn execute_routed<'a>(
        &'a self,
        key: &'a [u8],
        cmd: &'a Cmd,
        route: Route,
    ) -> BoxFuture<'a, Outcome>;

    /// Sends each `(key, cmd)` of `ops`, on the default route, as [`KeyClient::execute`]
    /// would; outcomes in `ops`' order. A client that can pipelines the commands bound for
    /// one node; this default sends them each on their own, all at once.
    fn execute_batch<'a>(&'a self, ops: &'a [(&'a [u8], &'a Cmd)]) -> BoxFuture<'a, Vec<Outcome>> {
        Box::pin(futures_util::future::join_all(
            ops.iter().map(|(key, cmd)| self.execute(key, cmd)),
        ))
    }
}

impl KeyClient for ClusterClient {
    fn execute<'a>(&'a self, key: &'a [u8], cmd: &'a Cmd) -> BoxFuture<'a, Outcome> {
        Box::pin(ClusterClient::execute_routed(
            self,
            key,
            cmd,
            Route::default(),
        ))
    }

    fn execute_routed<'a>(
        &'a self,
        key: &'a [u8],
        cmd: &'a Cmd,
        route: Route,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(ClusterClient::execute_routed(self, key, cmd, route))
    }

    fn execute_batch<'a>(&'a self, ops: &'a [(&'a [u8], &'a Cmd)]) -> BoxFuture<'a, Vec<Outcome>> {
        Box::pin(ClusterClient::execute_batch(self, ops))
    }
}

/// A shared client is a client (callers hold `Arc`s).
impl<T: KeyClient + ?Sized> KeyClient for std::sync::Arc<T> {
    fn execute<'a>(&'a self, key: &'a [u8], cmd: &'a Cmd) -> BoxFuture<'a, Outcome> {
        (**self).execute(key, cmd)
    }

    fn execute_routed<'a>(
        &'a self,
        key: &'a [u8],
        cmd: &'a Cmd,
        route: Route,
    ) -> BoxFuture<'a, Outcome> {
        (**self).execute_routed(key, cmd, route)
    }

    fn execute_batch<'a>(&'a self, ops: &'a [(&'a [u8], &'a Cmd)]) -> BoxFuture<'a, Vec<Outcome>> {
        (**self).execute_batch(ops)
    }
}
