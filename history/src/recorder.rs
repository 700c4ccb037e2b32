//! The single writer of `history.jsonl`.
//!
//! Every client task and the nemesis record through one [`Recorder`]. It numbers ops and
//! stamps their time under one lock, so `index` order is time order, and appends them to a
//! buffer that a background thread flushes every [`FLUSH_EVERY`]: a run killed at any
//! moment leaves a readable prefix of its history (at most one torn line at the end, which
//! [`crate::read_jsonl`] skips).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant};

use crate::Op;

/// How often buffered ops reach the file.
pub const FLUSH_EVERY: Duration = Duration::from_millis(20);

/// Appends ops to a history file. Cheap to clone; all clones write to the same file.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

struct Inner {
    t0: Instant,
    state: Mutex<State>,
    closed: AtomicBool,
}

struct State {
    next_index: u64,
    out: BufWriter<File>,
    /// The first write error; later ops are dropped and [`Recorder::close`] reports it.
    error: Option<io::Error>,
}

impl Recorder {
    /// Creates (truncating) the history file at `path`. Times are measured from now.
    ///
    /// # Errors
    /// If the file cannot be created.
    pub fn create(path: &Path) -> io::Result<Recorder> {
        Self::create_at(path, Instant::now())
    }

    /// Like [`Recorder::create`], with times measured from `t0` (the run's start), so the
    /// history shares a clock with the topology log and the nemesis schedule.
    ///
    /// # Errors
    /// If the file cannot be created.
    pub fn create_at(path: &Path, t0: Instant) -> io::Result<Recorder> {
        let file = File::create(path)?;
        let inner = Arc::new(Inner {
            t0,
            state: Mutex::new(State {
                next_index: 0,
                out: BufWriter::with_capacity(256 * 1024, file),
                error: None,
            }),
            closed: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&inner);
        thread::Builder::new()
            .name("history-flush".into())
            .spawn(move || flush_loop(weak))?;
        Ok(Recorder { inner })
    }

    /// Nanoseconds since the history's clock started.
    pub fn now_ns(&self) -> u64 {
        self.inner.t0.elapsed().as_nanos() as u64
    }

    /// The instant the history's clock counts from.
    pub fn t0(&self) -> Instant {
        self.inner.t0
    }

    /// Numbers and timestamps `op`, appends it, and returns it as written.
    pub fn record(&self, mut op: Op) -> Op {
        let mut state = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
        op.index = state.next_index;
        op.time_ns = self.now_ns();
        state.next_index += 1;
        if state.error.is_none() {
            let result = serde_json::to_writer(&mut state.out, &op)
                .map_err(io::Error::from)
                .and_then(|()| state.out.write_all(b"\n"));
            if let Err(e) = result {
                state.error = Some(e);
            }
        }
        op
    }

    /// How many ops have been recorded.
    pub fn len(&self) -> u64 {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .next_index
    }

    /// Whether nothing has been recorded yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes everything buffered to the file now.
    ///
    /// # Errors
    /// The first write error seen so far.
    pub fn flush(&self) -> io::Result<()> {
        let mut state = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
        flush_state(&mut state)
    }

    /// Flushes, stops the flusher and reports any write error seen during the run.
    ///
    /// # Errors
    /// The first write error of the whole run.
    pub fn close(&self) -> io::Result<()> {
        self.inner.closed.store(true, Ordering::Release);
        let mut state = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
        flush_state(&mut state)?;
        state.out.get_ref().sync_data()
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
        let mut state = inner.state.lock().unwrap_or_else(|p| p.into_inner());
        let _ = flush_state(&mut state);
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
    use crate::{read_jsonl, OpType, Process};

    #[test]
    fn ops_are_numbered_in_order_and_reach_the_file_without_close() {
        let dir = std::env::temp_dir().join(format!("faultline-rec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("history.jsonl");
        let rec = Recorder::create(&path).unwrap();
        for i in 0..100u64 {
            rec.record(Op::new(Process::Client(i % 4), OpType::Invoke, "add").with_value(i));
        }
        // The flusher alone must get them to disk: a killed run never calls close().
        std::thread::sleep(FLUSH_EVERY * 5);
        let file = read_jsonl::<Op>(&path).unwrap();
        assert_eq!(file.records.len(), 100);
        for (i, op) in file.records.iter().enumerate() {
            assert_eq!(op.index, i as u64);
        }
        assert!(file
            .records
            .windows(2)
            .all(|w| w[0].time_ns <= w[1].time_ns));
        rec.close().unwrap();
    }
}
