//! The single writer of `history.jsonl`.
//!
//! Every client task and the nemesis record through one [`Recorder`]. An op is serialized
//! by its caller (everything but its index and time), then numbered, stamped and copied
//! onto the file's pending buffer under one short lock, so `index` order is time order
//! and file order. A [`JsonlAppender`]'s writer thread writes the buffer every
//! [`FLUSH_EVERY`]: a run killed at any moment leaves a readable prefix of its history (at
//! most one torn line at the end, which [`crate::read_jsonl`] skips).

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::appender::with_json;
pub use crate::appender::FLUSH_EVERY;
use crate::op::Body;
use crate::{JsonlAppender, Op, Process};

/// Appends ops to a history file. Cheap to clone; all clones write to the same file.
#[derive(Clone)]
pub struct Recorder {
    t0: Instant,
    /// Its line numbers are the ops' indexes.
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
    ///
    /// The line is byte for byte `serde_json::to_string(&op)` with its index and time.
    pub fn record(&self, mut op: Op) -> Op {
        let stamped = with_json(&Body(&op), |body| {
            self.out.append_with(|index, line| {
                let time_ns = self.now_ns();
                // `{"index":I,"time_ns":T,` then the body past its opening brace.
                // (itoa, not `write!`: the formatting machinery was a visible share of
                // the client's CPU at a few hundred thousand lines a second.)
                let mut digits = itoa::Buffer::new();
                line.extend_from_slice(b"{\"index\":");
                line.extend_from_slice(digits.format(index).as_bytes());
                line.extend_from_slice(b",\"time_ns\":");
                line.extend_from_slice(digits.format(time_ns).as_bytes());
                line.push(b',');
                line.extend_from_slice(&body[1..]);
                (index, time_ns)
            })
        });
        match stamped {
            Ok((index, time_ns)) => {
                op.index = index;
                op.time_ns = time_ns;
            }
            // Not expected (an Op always serializes); numbered and written the slow way.
            Err(_) => {
                self.out.append_with(|index, line| {
                    op.index = index;
                    op.time_ns = self.now_ns();
                    let _ = serde_json::to_writer(line, &op);
                });
            }
        }
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
        self.out.lines()
    }

    /// Whether nothing has been recorded yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes everything recorded so far to the file now.
    ///
    /// # Errors
    /// The first write error seen so far.
    pub fn flush(&self) -> io::Result<()> {
        self.out.flush()
    }

    /// Flushes, stops the writer thread and reports any write error seen during the run.
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

    #[test]
    fn concurrent_recorders_write_each_op_as_serde_would_in_index_order() {
        let dir = std::env::temp_dir().join(format!("faultline-rec2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("history.jsonl");
        let rec = Recorder::create(&path).unwrap();
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let rec = rec.clone();
                std::thread::spawn(move || {
                    (0..2000u64)
                        .map(|i| {
                            let mut op =
                                Op::new(Process::Client(t), OpType::Invoke, "add").with_value(i);
                            if i % 3 == 0 {
                                op.key = Some(format!("s{i}"));
                                op.extra.insert("route".into(), serde_json::json!(i));
                            }
                            rec.record(op)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut returned: Vec<Op> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        rec.close().unwrap();
        returned.sort_by_key(|op| op.index);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), returned.len());
        for (i, (line, op)) in lines.iter().zip(&returned).enumerate() {
            assert_eq!(op.index, i as u64);
            assert_eq!(*line, serde_json::to_string(op).unwrap());
        }
        assert!(returned.windows(2).all(|w| w[0].time_ns <= w[1].time_ns));
        assert_eq!(rec.len(), 8000);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
