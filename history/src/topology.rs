//! `topology.jsonl`: what each node said the cluster looked like, over time.
//!
//! The topology observer asks every node for `CLUSTER NODES` every few tens of
//! milliseconds and appends each reply, raw, as one [`Observation`]. Checkers parse the
//! text later ([`crate::ClusterView`]); keeping it raw means a parser fix re-checks old
//! runs, and a person can read the exact reply a verdict rests on.
//!
//! The bugs this log exists for (redis/redis#13018, valkey-io/valkey#1015) show only in
//! one node's view and only for 43 ms to 2.6 s, so the log is written while the run goes
//! ([`JsonlAppender`], flushed every [`crate::recorder::FLUSH_EVERY`]): a killed run
//! leaves a readable prefix, like `history.jsonl`.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::cluster_nodes::{ClusterView, ParseError};
use crate::recorder::FLUSH_EVERY;

/// The topology log's name inside a run directory.
pub const TOPOLOGY_FILE: &str = "topology.jsonl";

/// One line of `topology.jsonl`: one node's answer (or failure to answer) to
/// `CLUSTER NODES`.
///
/// `{"time_ns":1523000,"observer":"n3","cluster_nodes":"<raw reply>","latency_us":310}`;
/// a failed poll has `"error"` instead of `"cluster_nodes"`. Fields beyond these are kept
/// in [`Observation::extra`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// When the reply (or the error) arrived, in nanoseconds on the history's clock, so
    /// views line up with the ops of `history.jsonl`.
    pub time_ns: u64,
    /// The node that was asked (`n3`): the view is this node's own.
    pub observer: String,
    /// The raw `CLUSTER NODES` reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_nodes: Option<String>,
    /// Why there is no reply (connection refused, time-out, error reply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Round trip of the request in microseconds: the view was taken somewhere in
    /// `[time_ns - latency, time_ns]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<u64>,
    /// Anything else on the line.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Observation {
    /// A successful poll.
    pub fn reply(time_ns: u64, observer: impl Into<String>, text: impl Into<String>) -> Self {
        Observation {
            time_ns,
            observer: observer.into(),
            cluster_nodes: Some(text.into()),
            error: None,
            latency_us: None,
            extra: Map::new(),
        }
    }

    /// A failed poll.
    pub fn failed(time_ns: u64, observer: impl Into<String>, error: impl Into<String>) -> Self {
        Observation {
            time_ns,
            observer: observer.into(),
            cluster_nodes: None,
            error: Some(error.into()),
            latency_us: None,
            extra: Map::new(),
        }
    }

    /// Builder: the request's round trip.
    pub fn with_latency_us(mut self, latency_us: u64) -> Self {
        self.latency_us = Some(latency_us);
        self
    }

    /// The parsed view, when the poll got a reply.
    ///
    /// # Returns
    /// `None` for a failed poll; `Some(Err)` for a reply that does not parse.
    pub fn view(&self) -> Option<Result<ClusterView, ParseError>> {
        self.cluster_nodes.as_deref().map(ClusterView::parse)
    }
}

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

    #[test]
    fn design_example_round_trips_and_failures_have_error() {
        let line = r#"{"time_ns":5,"observer":"n3","cluster_nodes":"abc"}"#;
        let o: Observation = serde_json::from_str(line).unwrap();
        assert_eq!(o.observer, "n3");
        assert_eq!(o.cluster_nodes.as_deref(), Some("abc"));
        assert_eq!(serde_json::to_string(&o).unwrap(), line);

        let failed = Observation::failed(7, "n1", "timed out").with_latency_us(200_000);
        let text = serde_json::to_string(&failed).unwrap();
        assert_eq!(
            text,
            r#"{"time_ns":7,"observer":"n1","error":"timed out","latency_us":200000}"#
        );
        assert!(failed.view().is_none());
        let extra = r#"{"time_ns":1,"observer":"n2","error":"x","round":4}"#;
        let o: Observation = serde_json::from_str(extra).unwrap();
        assert_eq!(o.extra["round"], 4);
        assert_eq!(serde_json::to_string(&o).unwrap(), extra);
    }

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
