//! The clients' connections: one multiplexed connection per key (a node's address, or
//! a variant of it), opened on first use and dropped after it breaks.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use redis::aio::MultiplexedConnection;

/// One connection slot, replaced after it breaks.
struct Conn {
    /// Bumped on every reconnect, so a stale error cannot drop a fresh connection.
    generation: u64,
    conn: Option<MultiplexedConnection>,
}

/// Connections by key, shared by every task of a client.
#[derive(Default)]
pub(crate) struct Pool {
    conns: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Conn>>>>,
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
        let cell = self
            .conns
            .lock()
            .unwrap()
            .entry(key.to_string())
            .or_insert_with(|| {
                Arc::new(tokio::sync::Mutex::new(Conn {
                    generation: 0,
                    conn: None,
                }))
            })
            .clone();
        let mut slot = cell.lock().await;
        if let Some(conn) = &slot.conn {
            return Ok((slot.generation, conn.clone()));
        }
        let conn = open().await?;
        slot.generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        slot.conn = Some(conn.clone());
        Ok((slot.generation, conn))
    }

    /// Forgets the connection under `key` if it is still the one of `generation` (a
    /// reconnect since then is left alone).
    pub(crate) fn drop_connection(&self, key: &str, generation: u64) {
        let cell = self.conns.lock().unwrap().get(key).cloned();
        if let Some(cell) = cell {
            if let Ok(mut slot) = cell.try_lock() {
                if slot.generation == generation {
                    slot.conn = None;
                }
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
