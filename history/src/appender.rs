//! Appending JSON lines while a run goes: the writer under `history.jsonl` (through the
//! [`crate::Recorder`]) and `topology.jsonl`.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread;
use std::time::Duration;

use serde::Serialize;

/// How often buffered lines reach the file.
pub const FLUSH_EVERY: Duration = Duration::from_millis(20);

/// Pending bytes past which the writer thread is woken before its next tick, so a fast
/// producer does not pile up memory between ticks.
const WAKE_AT: usize = 4 << 20;

/// Appends JSON lines to a file from any thread; cheap to clone.
///
/// A line is serialized by its caller outside any lock, then copied under a short lock
/// onto the end of a pending buffer. A dedicated writer thread swaps the whole buffer out
/// every [`FLUSH_EVERY`] (sooner when it grows past a few MB) and writes it to the file
/// outside that lock, so callers never wait on the disk or on each other's serialization,
/// and a killed process leaves at most one torn line (which [`crate::read_jsonl`] skips).
/// The first write error is kept and returned by [`JsonlAppender::flush`] and
/// [`JsonlAppender::close`]; later lines are dropped.
#[derive(Clone)]
pub struct JsonlAppender {
    inner: Arc<Inner>,
}

struct Inner {
    /// Lines appended and not yet handed to the file.
    state: Mutex<State>,
    /// Wakes the writer thread early (a big pending buffer, or close).
    wake: Condvar,
    /// The file; held while a swapped-out buffer is written, so writes stay in order.
    file: Mutex<File>,
    closed: AtomicBool,
}

struct State {
    pending: Vec<u8>,
    lines: u64,
    error: Option<io::Error>,
}

thread_local! {
    /// Each thread's serialization buffer, reused from line to line.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Serializes `record` as JSON into this thread's scratch buffer and hands it to `f`.
///
/// # Errors
/// The serializer's (a map with non-string keys, a failing `Serialize` impl).
pub(crate) fn with_json<T: Serialize + ?Sized, R>(
    record: &T,
    f: impl FnOnce(&[u8]) -> R,
) -> io::Result<R> {
    SCRATCH.with(|cell| {
        // A re-entrant call (a Serialize impl that records) gets a buffer of its own.
        let mut own = Vec::new();
        let mut borrowed = cell.try_borrow_mut();
        let buf = match borrowed.as_deref_mut() {
            Ok(b) => b,
            Err(_) => &mut own,
        };
        buf.clear();
        serde_json::to_writer(&mut *buf, record).map_err(io::Error::from)?;
        Ok(f(buf))
    })
}

impl JsonlAppender {
    /// Creates (truncating) the file at `path`.
    ///
    /// # Errors
    /// If the file cannot be created or the writer thread cannot start.
    pub fn create(path: &Path) -> io::Result<JsonlAppender> {
        let file = File::create(path)?;
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                pending: Vec::with_capacity(256 * 1024),
                lines: 0,
                error: None,
            }),
            wake: Condvar::new(),
            file: Mutex::new(file),
            closed: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&inner);
        thread::Builder::new()
            .name("jsonl-writer".into())
            .spawn(move || write_loop(weak))?;
        Ok(JsonlAppender { inner })
    }

    /// Appends one record as a line.
    pub fn append<T: Serialize>(&self, record: &T) {
        let result = with_json(record, |json| {
            self.append_with(|_, out| out.extend_from_slice(json));
        });
        if let Err(e) = result {
            self.inner.lock().error.get_or_insert(e);
        }
    }

    /// Appends one line that `write` puts into the buffer (without its newline), under
    /// the appender's lock: `write` gets the line's number (from 0) and should only copy
    /// bytes. What it returns is returned.
    pub fn append_with<R>(&self, write: impl FnOnce(u64, &mut Vec<u8>) -> R) -> R {
        let mut state = self.inner.lock();
        let number = state.lines;
        let r = write(number, &mut state.pending);
        state.pending.push(b'\n');
        state.lines += 1;
        if state.error.is_some() {
            state.pending.clear();
        }
        let wake = state.pending.len() >= WAKE_AT;
        drop(state);
        if wake {
            self.inner.wake.notify_one();
        }
        r
    }

    /// How many lines were appended.
    pub fn lines(&self) -> u64 {
        self.inner.lock().lines
    }

    /// Writes everything appended so far to the file now.
    ///
    /// # Errors
    /// The first write error seen so far.
    pub fn flush(&self) -> io::Result<()> {
        self.inner.write_pending()
    }

    /// Flushes, stops the writer thread and syncs the file.
    ///
    /// # Errors
    /// The first write error since the file was created.
    pub fn close(&self) -> io::Result<()> {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.wake.notify_one();
        self.inner.write_pending()?;
        let file = self.inner.file.lock().unwrap_or_else(|p| p.into_inner());
        file.sync_data()
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Swaps the pending lines out and writes them, holding the file (not the lines'
    /// lock) while writing.
    fn write_pending(&self) -> io::Result<()> {
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let mut batch = {
            let mut state = self.lock();
            if let Some(e) = &state.error {
                return Err(io::Error::new(e.kind(), e.to_string()));
            }
            let capacity = state.pending.capacity();
            std::mem::replace(&mut state.pending, Vec::with_capacity(capacity))
        };
        if batch.is_empty() {
            return Ok(());
        }
        let result = file.write_all(&batch);
        batch.clear();
        if let Err(e) = result {
            let copy = io::Error::new(e.kind(), e.to_string());
            let mut state = self.lock();
            state.pending.clear();
            state.error.get_or_insert(e);
            return Err(copy);
        }
        Ok(())
    }
}

fn write_loop(weak: Weak<Inner>) {
    loop {
        {
            let Some(inner) = weak.upgrade() else { return };
            let state = inner.lock();
            if inner.closed.load(Ordering::Acquire) {
                return;
            }
            if state.pending.len() < WAKE_AT {
                let _ = inner.wake.wait_timeout(state, FLUSH_EVERY);
            }
        }
        let Some(inner) = weak.upgrade() else { return };
        if inner.closed.load(Ordering::Acquire) {
            return;
        }
        let _ = inner.write_pending();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.write_pending();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read_jsonl;
    use crate::topology::{Observation, TOPOLOGY_FILE};

    #[test]
    fn appender_lines_reach_the_file_without_close() {
        let dir = std::env::temp_dir().join(format!("faultline-topo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(TOPOLOGY_FILE);
        let log = JsonlAppender::create(&path).unwrap();
        for i in 0..50u64 {
            log.append(&Observation::reply(i, "n1", "text"));
        }
        assert_eq!(log.lines(), 50);
        // The flusher alone gets them to disk: a killed run never calls close().
        std::thread::sleep(FLUSH_EVERY * 5);
        let file = read_jsonl::<Observation>(&path).unwrap();
        assert_eq!(file.records.len(), 50);
        assert_eq!(file.records[49].time_ns, 49);
        log.close().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
