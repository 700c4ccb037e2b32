//! The clients' connections: one multiplexed connection per key (a node's address, or
//! a variant of it), opened on first use and dropped after it breaks.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use redis::aio::MultiplexedConnection;

/// One connection slot, replaced after it breaks.
#[derive(Default)]
struct Conn {
    /// The connection and its generation (bumped on every reconnect, so a stale error
    /// cannot drop a fresh connection). Read on every op: a plain lock held for a clone.
    current: Mutex<Option<(u64, MultiplexedConnection)>>,
    /// Held while opening, so one opener at a time per key; the others wait and share.
    opening: tokio::sync::Mutex<()>,
}

/// Connections by key, shared by every task of a client.
#[derive(Default)]
pub(crate) struct Pool {
    conns: Mutex<HashMap<String, Arc<Conn>>>,
    generations: AtomicU64,
}

impl Pool {
    /// The connection under `key` and its generation, opened with `open` if there is
    /// none (one opener at a time per key; the others wait and share it).
    ///
    /// # Errors
    /// `open`'s error.
    pub(crate) async fn get<F, Fut>(
        &self,
        key: &str,
        open: F,
    ) -> Result<(u64, MultiplexedConnection), String>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<MultiplexedConnection, String>>,
    {
        let cell = {
            let mut conns = self.conns.lock().unwrap();
            match conns.get(key) {
                Some(cell) => cell.clone(),
                None => conns.entry(key.to_string()).or_default().clone(),
            }
        };
        if let Some(c) = cell.current.lock().unwrap().clone() {
            return Ok(c);
        }
        let _opening = cell.opening.lock().await;
        if let Some(c) = cell.current.lock().unwrap().clone() {
            return Ok(c);
        }
        let conn = open().await?;
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        *cell.current.lock().unwrap() = Some((generation, conn.clone()));
        Ok((generation, conn))
    }

    /// Forgets the connection under `key` if it is still the one of `generation` (a
    /// reconnect since then is left alone).
    pub(crate) fn drop_connection(&self, key: &str, generation: u64) {
        let cell = self.conns.lock().unwrap().get(key).cloned();
        if let Some(cell) = cell {
            let mut current = cell.current.lock().unwrap();
            if current.as_ref().is_some_and(|(g, _)| *g == generation) {
                *current = None;
            }
        }
    }

    /// Forgets every connection whose key ends with `suffix` (a session's: the next op
    /// opens them anew; the old ones close when their last user drops them).
    pub(crate) fn forget_suffix(&self, suffix: &str) {
        self.conns
            .lock()
            .unwrap()
            .retain(|key, _| !key.ends_with(suffix));
    }
}
