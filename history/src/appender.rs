//! Appending JSON lines while a run goes: the writer under `history.jsonl` (through the
//! [`crate::Recorder`]) and `topology.jsonl`.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread;
use std::time::Duration;

use serde::Serialize;

/// How often buffered lines reach the file.
pub const FLUSH_EVERY: Duration = Duration::from_millis(20);

/// Appends JSON lines to a file from any thread; cheap to clone.
///
/// Lines go to a buffer under a lock and a background thread flushes it every
/// [`FLUSH_EVERY`], so writers never wait on the disk and a killed process leaves at most
/// one torn line (which [`crate::read_jsonl`] skips). The first write error is kept and
/// returned by [`JsonlAppender::close`]; later lines are dropped.
#[derive(Clone)]
pub struct JsonlAppender {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    closed: AtomicBool,
}

struct State {
    out: BufWriter<File>,
    lines: u64,
    error: Option<io::Error>,
}

impl JsonlAppender {
    /// Creates (truncating) the file at `path`.
    ///
    /// # Errors
    /// If the file cannot be created or the flusher thread cannot start.
    pub fn create(path: &Path) -> io::Result<JsonlAppender> {
        let file = File::create(path)?;
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                out: BufWriter::with_capacity(256 * 1024, file),
                lines: 0,
                error: None,
            }),
            closed: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&inner);
        thread::Builder::new()
            .name("jsonl-flush".into())
            .spawn(move || flush_loop(weak))?;
        Ok(JsonlAppender { inner })
    }

    /// Appends one record as a line.
    pub fn append<T: Serialize>(&self, record: &T) {
        let mut state = self.inner.lock();
        if state.error.is_some() {
            return;
        }
        let result = serde_json::to_writer(&mut state.out, record)
            .map_err(io::Error::from)
            .and_then(|()| state.out.write_all(b"\n"));
        match result {
            Ok(()) => state.lines += 1,
            Err(e) => state.error = Some(e),
        }
    }

    /// How many lines were appended.
    pub fn lines(&self) -> u64 {
        self.inner.lock().lines
    }

    /// Writes everything buffered to the file now.
    ///
    /// # Errors
    /// The first write error seen so far.
    pub fn flush(&self) -> io::Result<()> {
        flush_state(&mut self.inner.lock())
    }

    /// Flushes, stops the flusher and syncs the file.
    ///
    /// # Errors
    /// The first write error since the file was created.
    pub fn close(&self) -> io::Result<()> {
        self.inner.closed.store(true, Ordering::Release);
        let mut state = self.inner.lock();
        flush_state(&mut state)?;
        state.out.get_ref().sync_data()
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn flush_state(state: &mut State) -> io::Result<()> {
    if let Some(e) = &state.error {
        return Err(io::Error::new(e.kind(), e.to_string()));
    }
    if let Err(e) = state.out.flush() {
        let copy = io::Error::new(e.kind(), e.to_string());
        state.error = Some(e);
        return Err(copy);
    }
    Ok(())
}

fn flush_loop(weak: Weak<Inner>) {
    loop {
        thread::sleep(FLUSH_EVERY);
        let Some(inner) = weak.upgrade() else { return };
        if inner.closed.load(Ordering::Acquire) {
            return;
        }
        let _ = flush_state(&mut inner.lock());
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(state) = self.state.get_mut() {
            let _ = state.out.flush();
        }
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
