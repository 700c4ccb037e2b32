//! The single writer of `history.jsonl`.
//!
//! Every client task and the nemesis record through one [`Recorder`]. It numbers ops and
//! stamps their time under one lock, so `index` order is time order, and appends them
//! through a [`JsonlAppender`], whose thread flushes every [`FLUSH_EVERY`]: a run killed at
//! any moment leaves a readable prefix of its history (at most one torn line at the end,
//! which [`crate::read_jsonl`] skips).

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub use crate::appender::FLUSH_EVERY;
use crate::{JsonlAppender, Op, Process};

/// Appends ops to a history file. Cheap to clone; all clones write to the same file.
#[derive(Clone)]
pub struct Recorder {
    t0: Instant,
    /// The next index; held while an op is numbered, stamped and appended, so index order
    /// is time order and file order.
    next: Arc<Mutex<u64>>,
    out: JsonlAppender,
    /// Nemesis ops recorded so far: the topology observer polls faster after each.
    nemesis_ops: Arc<AtomicU64>,
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
        Ok(Recorder {
            t0,
            next: Arc::new(Mutex::new(0)),
            out: JsonlAppender::create(path)?,
            nemesis_ops: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Nanoseconds since the history's clock started.
    pub fn now_ns(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }

    /// The instant the history's clock counts from.
    pub fn t0(&self) -> Instant {
        self.t0
    }

    /// Numbers and timestamps `op`, appends it, and returns it as written.
    pub fn record(&self, mut op: Op) -> Op {
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        op.index = *next;
        op.time_ns = self.now_ns();
        *next += 1;
        self.out.append(&op);
        if op.process == Process::Nemesis {
            self.nemesis_ops.fetch_add(1, Ordering::Relaxed);
        }
        op
    }

    /// How many nemesis ops (faults, heals, their completions) have been recorded: a
    /// counter that changes whenever the nemesis acts, for the topology observer.
    pub fn nemesis_ops(&self) -> u64 {
        self.nemesis_ops.load(Ordering::Relaxed)
    }

    /// How many ops have been recorded.
    pub fn len(&self) -> u64 {
        *self.next.lock().unwrap_or_else(|p| p.into_inner())
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
        self.out.flush()
    }

    /// Flushes, stops the flusher and reports any write error seen during the run.
    ///
    /// # Errors
    /// The first write error of the whole run.
    pub fn close(&self) -> io::Result<()> {
        self.out.close()
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
