//! `topology.jsonl`: what each node said the cluster looked like, over time.
//!
//! The topology observer asks every node for `CLUSTER NODES` every few tens of
//! milliseconds and appends each reply, raw, as one [`Observation`] (in `mode: standalone`,
//! `INFO replication` instead, as `info_replication` with the node's `addr`). Checkers parse the
//! text later ([`crate::ClusterView`]); keeping it raw means a parser fix re-checks old
//! runs, and a person can read the exact reply a verdict rests on.
//!
//! The bugs this log exists for (redis/redis#13018, valkey-io/valkey#1015) show only in
//! one node's view and only for 43 ms to 2.6 s, so the log is written while the run goes
//! ([`crate::JsonlAppender`], flushed every [`crate::appender::FLUSH_EVERY`]): a killed run
//! leaves a readable prefix, like `history.jsonl`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::cluster_nodes::{ClusterView, ParseError};

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
    /// In standalone mode (no cluster), the raw `INFO replication` reply instead: who the
    /// node says it replicates (`role`, `master_host`, `master_port`, `master_link_status`,
    /// `master_failover_state`, its replicas). `{"time_ns","observer","info_replication"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info_replication: Option<String>,
    /// The observer's own `ip:port`, on standalone lines: `INFO replication` names a
    /// replica's primary by address only, so a checker needs it to tie names to addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
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
            info_replication: None,
            addr: None,
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
            info_replication: None,
            addr: None,
            error: Some(error.into()),
            latency_us: None,
            extra: Map::new(),
        }
    }

    /// A successful `INFO replication` poll of a standalone node.
    pub fn replication(time_ns: u64, observer: impl Into<String>, text: impl Into<String>) -> Self {
        Observation {
            time_ns,
            observer: observer.into(),
            cluster_nodes: None,
            info_replication: Some(text.into()),
            addr: None,
            error: None,
            latency_us: None,
            extra: Map::new(),
        }
    }

    /// Builder: the observer's own address (standalone lines).
    pub fn with_addr(mut self, addr: impl Into<String>) -> Self {
        self.addr = Some(addr.into());
        self
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn standalone_lines_carry_info_replication_and_old_lines_still_read() {
        let line = r#"{"time_ns":9,"observer":"n2","info_replication":"role:slave"}"#;
        let o: Observation = serde_json::from_str(line).unwrap();
        assert_eq!(o.info_replication.as_deref(), Some("role:slave"));
        assert!(o.cluster_nodes.is_none() && o.view().is_none());
        assert_eq!(serde_json::to_string(&o).unwrap(), line);
        let r = Observation::replication(9, "n2", "role:slave");
        assert_eq!(serde_json::to_string(&r).unwrap(), line);
        let old: Observation =
            serde_json::from_str(r#"{"time_ns":5,"observer":"n3","cluster_nodes":"abc"}"#).unwrap();
        assert!(old.info_replication.is_none());
    }
}
