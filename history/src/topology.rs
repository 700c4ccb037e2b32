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
//!
//! ## Change-only storage
//!
//! At 100 nodes a reply is ~10 KB and most polls repeat the node's previous one, except
//! for the liveness fields (`ping-sent`, `pong-recv`) of a few lines. So the observer
//! ([`ChangeEncoder`]) writes a reply in one of three forms, all reading back to the same
//! text ([`Reconstructor`], [`for_each_observation`], [`read_topology`]):
//!
//! - **full**: `"cluster_nodes":"<raw reply>"`, as every line was before. The first reply
//!   of each observer, a reply whose line count changed, a reply whose changes would cost
//!   more than half its text, and at least one reply per observer every
//!   [`FULL_EVERY_NS`] (so a person reading the file finds a whole reply nearby).
//! - **reference**: `"same_as_ns":B` and no text: identical, byte for byte, to the same
//!   observer's previous reply, which arrived at `B` (its `time_ns`).
//! - **change**: `"same_as_ns":B,"changed":[[i,"<line>"],[j,ping,pong],...]`: the reply at
//!   `B` with line `i` (0-based, lines split at `\n`) replaced by the text given, and line
//!   `j` differing only in its `ping-sent` and `pong-recv` fields (5th and 6th), given as
//!   the two numbers.
//!
//! A reader keeps each observer's last reply text; a `same_as_ns` that does not name the
//! observer's last reply is a malformed line. Failed polls (`"error"`) are never a base and
//! do not break a chain. `INFO replication` lines (standalone) are always full. Old logs
//! (full lines only) read as before.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::cluster_nodes::{ClusterView, ParseError};
use crate::reader::{hold_back, JsonlFile, ReadError, Skipped};

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
    /// The raw `CLUSTER NODES` reply (a full line; see the module's change-only storage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_nodes: Option<String>,
    /// Change-only storage: this reply is the same observer's previous reply, which
    /// arrived at this time, with [`Observation::changed`] applied (none: identical).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_as_ns: Option<u64>,
    /// The lines that differ from the reply at [`Observation::same_as_ns`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<LineChange>,
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
            same_as_ns: None,
            changed: Vec::new(),
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
            same_as_ns: None,
            changed: Vec::new(),
            info_replication: None,
            addr: None,
            error: Some(error.into()),
            latency_us: None,
            extra: Map::new(),
        }
    }

    /// A successful poll stored as the observer's reply at `base_ns` with `changed`
    /// applied (see the module's change-only storage).
    pub fn same_as(
        time_ns: u64,
        observer: impl Into<String>,
        base_ns: u64,
        changed: Vec<LineChange>,
    ) -> Self {
        Observation {
            time_ns,
            observer: observer.into(),
            cluster_nodes: None,
            same_as_ns: Some(base_ns),
            changed,
            info_replication: None,
            addr: None,
            error: None,
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
            same_as_ns: None,
            changed: Vec::new(),
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

    /// Whether this line stores its reply as a reference to an earlier one (its text is
    /// known only through a [`Reconstructor`]).
    pub fn is_reference(&self) -> bool {
        self.same_as_ns.is_some()
    }
}

/// One line of a reply that differs from the base reply (see the module's change-only
/// storage). In JSON, `[i,"<line>"]` or `[i,ping_sent,pong_recv]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LineChange {
    /// Line `i` is this text.
    Line(usize, String),
    /// Line `i` is the base's line `i` with these `ping-sent` and `pong-recv` fields.
    Liveness(usize, u64, u64),
}

/// Keep at least one full reply per observer this often (nanoseconds), so a person
/// reading `topology.jsonl` finds a whole reply within a minute of any line.
pub const FULL_EVERY_NS: u64 = 60_000_000_000;

/// The fields of a `CLUSTER NODES` line that only say when the last ping went out and
/// the last pong came in (0-based, split at single spaces).
const PING_FIELD: usize = 4;
const PONG_FIELD: usize = 5;

/// What a reply changed against the observer's previous one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The observer's first reply.
    First,
    /// Byte for byte the previous reply.
    Same,
    /// Only `ping-sent`/`pong-recv` fields differ: the cluster's shape is as before.
    Liveness,
    /// Anything else: flags, roles, epochs, links, slots, nodes.
    Shape,
}

/// One observer's writer side of change-only storage: turns each reply into the
/// cheapest of the three forms that reads back to it exactly.
#[derive(Debug, Default)]
pub struct ChangeEncoder {
    /// The previous reply and when it arrived.
    base: Option<(u64, String)>,
    /// When the last full reply was written.
    full_ns: u64,
}

impl ChangeEncoder {
    /// A new encoder (its first reply is written full).
    pub fn new() -> ChangeEncoder {
        ChangeEncoder::default()
    }

    /// The observation for a reply `text` of `observer` at `time_ns`, and what changed.
    /// Replies must be handed over in the order they are written.
    pub fn encode(&mut self, time_ns: u64, observer: &str, text: String) -> (Observation, Change) {
        let Some((base_ns, base)) = self.base.as_ref() else {
            self.full_ns = time_ns;
            self.base = Some((time_ns, text.clone()));
            return (Observation::reply(time_ns, observer, text), Change::First);
        };
        let base_ns = *base_ns;
        let (changed, change) = if *base == text {
            (Some(Vec::new()), Change::Same)
        } else {
            match diff(base, &text) {
                Some(changed) => {
                    let shape = changed.iter().any(|c| matches!(c, LineChange::Line(..)));
                    let change = if shape {
                        Change::Shape
                    } else {
                        Change::Liveness
                    };
                    (Some(changed), change)
                }
                None => (None, Change::Shape),
            }
        };
        let due_full = time_ns.saturating_sub(self.full_ns) >= FULL_EVERY_NS;
        let observation = match changed {
            Some(changed) if !due_full => Observation::same_as(time_ns, observer, base_ns, changed),
            _ => {
                self.full_ns = time_ns;
                Observation::reply(time_ns, observer, text.clone())
            }
        };
        self.base = Some((time_ns, text));
        (observation, change)
    }
}

/// The changes that turn `base` into `text`, or `None` when a full reply is cheaper (or
/// the line count differs).
fn diff(base: &str, text: &str) -> Option<Vec<LineChange>> {
    let old: Vec<&str> = base.split('\n').collect();
    let new: Vec<&str> = text.split('\n').collect();
    if old.len() != new.len() {
        return None;
    }
    let mut out = Vec::new();
    let mut cost = 0usize;
    for (i, (a, b)) in old.iter().zip(&new).enumerate() {
        if a == b {
            continue;
        }
        match liveness_only(a, b) {
            Some((ping, pong)) => {
                cost += 24;
                out.push(LineChange::Liveness(i, ping, pong));
            }
            None => {
                cost += b.len() + 8;
                out.push(LineChange::Line(i, (*b).to_string()));
            }
        }
        if cost > text.len() / 2 {
            return None;
        }
    }
    Some(out)
}

/// `Some((ping, pong))` when `b` is `a` with other `ping-sent`/`pong-recv` numbers
/// (written exactly as a `u64` prints, so the line reads back byte for byte).
fn liveness_only(a: &str, b: &str) -> Option<(u64, u64)> {
    let fa: Vec<&str> = a.split(' ').collect();
    let fb: Vec<&str> = b.split(' ').collect();
    if fa.len() != fb.len() || fa.len() <= PONG_FIELD {
        return None;
    }
    let same_elsewhere = fa
        .iter()
        .zip(&fb)
        .enumerate()
        .all(|(i, (x, y))| i == PING_FIELD || i == PONG_FIELD || x == y);
    let number = |s: &str| s.parse::<u64>().ok().filter(|n| n.to_string() == s);
    match (
        same_elsewhere,
        number(fb[PING_FIELD]),
        number(fb[PONG_FIELD]),
    ) {
        (true, Some(ping), Some(pong)) => Some((ping, pong)),
        _ => None,
    }
}

/// Applies `changed` to `base`.
fn apply(base: &str, changed: &[LineChange]) -> Result<String, String> {
    if changed.is_empty() {
        return Ok(base.to_string());
    }
    let mut lines: Vec<std::borrow::Cow<'_, str>> =
        base.split('\n').map(std::borrow::Cow::Borrowed).collect();
    for change in changed {
        let i = match change {
            LineChange::Line(i, _) | LineChange::Liveness(i, ..) => *i,
        };
        let Some(line) = lines.get_mut(i) else {
            return Err(format!(
                "changed line {i} is past the base's {} lines",
                lines.len()
            ));
        };
        match change {
            LineChange::Line(_, text) => *line = text.clone().into(),
            LineChange::Liveness(_, ping, pong) => {
                let mut fields: Vec<String> = line.split(' ').map(str::to_string).collect();
                if fields.len() <= PONG_FIELD {
                    return Err(format!("line {i} of the base has no ping/pong fields"));
                }
                fields[PING_FIELD] = ping.to_string();
                fields[PONG_FIELD] = pong.to_string();
                *line = fields.join(" ").into();
            }
        }
    }
    Ok(lines.join("\n"))
}

/// The reader's side of change-only storage: fills in the text of reference and change
/// lines from each observer's previous reply.
#[derive(Debug, Default)]
pub struct Reconstructor {
    /// Each observer's last reply and when it arrived.
    last: HashMap<String, (u64, String)>,
}

impl Reconstructor {
    /// A reader with no replies seen yet.
    pub fn new() -> Reconstructor {
        Reconstructor::default()
    }

    /// Turns `o` into its full form (`cluster_nodes` set, `same_as_ns` and `changed`
    /// cleared), as if the observer had written it whole. Lines must come in file order.
    ///
    /// # Errors
    /// If `o` refers to a reply that is not its observer's last one.
    pub fn restore(&mut self, o: &mut Observation) -> Result<(), String> {
        if let Some(base_ns) = o.same_as_ns {
            let text = match self.last.get(&o.observer) {
                Some((at, base)) if *at == base_ns => apply(base, &o.changed)?,
                Some((at, _)) => {
                    return Err(format!(
                        "{} refers to its reply at {base_ns} ns, but its last reply was at {at} ns",
                        o.observer
                    ))
                }
                None => {
                    return Err(format!(
                        "{} refers to its reply at {base_ns} ns, but no earlier reply of it is in the log",
                        o.observer
                    ))
                }
            };
            o.same_as_ns = None;
            o.changed = Vec::new();
            o.cluster_nodes = Some(text);
        }
        if let Some(text) = &o.cluster_nodes {
            match self.last.get_mut(&o.observer) {
                Some(slot) => {
                    slot.0 = o.time_ns;
                    slot.1.clone_from(text);
                }
                None => {
                    self.last
                        .insert(o.observer.clone(), (o.time_ns, text.clone()));
                }
            }
        }
        Ok(())
    }
}

/// Calls `each` with every observation of the topology log at `path`, in file order, in
/// full form (change-only lines restored by a [`Reconstructor`]). Same rules as
/// [`crate::read_jsonl`]: blank lines ignored, a torn last line skipped and returned.
///
/// # Errors
/// [`ReadError::Io`] if the file cannot be read; [`ReadError::BadLine`] if a line other
/// than the last is not an observation, or refers to a reply that is not its observer's
/// last.
pub fn for_each_observation(
    path: &Path,
    mut each: impl FnMut(Observation),
) -> Result<Option<Skipped>, ReadError> {
    let io_err = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let reader = BufReader::with_capacity(1 << 20, File::open(path).map_err(io_err)?);
    let mut pending: Option<Skipped> = None;
    let mut restore = Reconstructor::new();
    for (i, line) in reader.split(b'\n').enumerate() {
        let line = line.map_err(io_err)?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let parsed = serde_json::from_slice::<Observation>(&line);
        if let Some(mut o) = hold_back(path, &mut pending, i + 1, parsed)? {
            restore
                .restore(&mut o)
                .map_err(|message| ReadError::BadLine {
                    path: path.to_path_buf(),
                    line: i + 1,
                    message,
                })?;
            each(o);
        }
    }
    Ok(pending)
}

/// Every observation of the topology log at `path`, in full form ([`for_each_observation`]
/// collected; holds every reply's text, so for small logs and tests).
///
/// # Errors
/// As [`for_each_observation`].
pub fn read_topology(path: &Path) -> Result<JsonlFile<Observation>, ReadError> {
    let mut records = Vec::new();
    let skipped = for_each_observation(path, |o| records.push(o))?;
    Ok(JsonlFile { records, skipped })
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

    /// A 3x1 reply in Valkey 8.0's format as node `me` sees it, with `pong` as every
    /// peer's pong-recv and `edit` applied to the lines.
    fn reply(me: usize, pong: u64, edit: &dyn Fn(usize, &mut Vec<String>)) -> String {
        let mut out = String::new();
        for n in 1..=6usize {
            let id = format!("{n:x}").repeat(40);
            let mut f: Vec<String> = vec![
                id,
                format!("10.77.0.{}:6379@16379", 10 + n),
                if n <= 3 { "master" } else { "slave" }.to_string(),
                if n <= 3 {
                    "-".to_string()
                } else {
                    format!("{:x}", n - 3).repeat(40)
                },
                "0".to_string(),
                (pong + n as u64).to_string(),
                (if n <= 3 { n } else { n - 3 }).to_string(),
                "connected".to_string(),
            ];
            if n <= 3 {
                f.push(["0-5460", "5461-10922", "10923-16383"][n - 1].to_string());
            }
            if n == me {
                f[2] = format!("myself,{}", f[2]);
                f[4] = "0".into();
                f[5] = "0".into();
            }
            edit(n, &mut f);
            out.push_str(&f.join(" "));
            out.push('\n');
        }
        out
    }

    fn encode_all(replies: &[(u64, &str, String)]) -> Vec<Observation> {
        let mut encoders: HashMap<String, ChangeEncoder> = HashMap::new();
        replies
            .iter()
            .map(|(t, observer, text)| {
                if text.is_empty() {
                    return Observation::failed(*t, *observer, "timed out");
                }
                encoders
                    .entry(observer.to_string())
                    .or_default()
                    .encode(*t, observer, text.clone())
                    .0
            })
            .collect()
    }

    fn write_and_read(lines: &[Observation]) -> JsonlFile<Observation> {
        let dir = std::env::temp_dir().join(format!(
            "faultline-topology-change-only-{}-{}",
            std::process::id(),
            lines.len()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(TOPOLOGY_FILE);
        let text: String = lines
            .iter()
            .map(|o| serde_json::to_string(o).unwrap() + "\n")
            .collect();
        std::fs::write(&path, text).unwrap();
        let file = read_topology(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        file
    }

    #[test]
    fn change_only_lines_read_back_to_every_raw_reply() {
        let fail_n1 = |n: usize, f: &mut Vec<String>| {
            if n == 1 {
                f[2] = "master,fail?".into();
            }
        };
        let promoted = |n: usize, f: &mut Vec<String>| match n {
            1 => {
                f[2] = "slave,fail".into();
                f[3] = "4".repeat(40);
                f.truncate(8);
            }
            4 => {
                f[2] = "master".into();
                f[3] = "-".into();
                f[6] = "7".into();
                f.push("0-5460".into());
            }
            _ => {}
        };
        let mut grown = reply(2, 200, &|_, _| {});
        grown.push_str(&format!(
            "{} 10.77.0.17:6379@16379 master - 0 0 0 connected\n",
            "7".repeat(40)
        ));
        let raw: Vec<(u64, &str, String)> = vec![
            (10, "n2", reply(2, 100, &|_, _| {})),
            (11, "n3", reply(3, 100, &|_, _| {})),
            (20, "n2", reply(2, 100, &|_, _| {})), // same
            (21, "n3", reply(3, 150, &|_, _| {})), // liveness
            (30, "n2", String::new()),             // failed poll
            (40, "n2", reply(2, 100, &|_, _| {})), // same as the reply before the failure
            (41, "n3", reply(3, 160, &fail_n1)),   // shape and liveness
            (50, "n2", reply(2, 170, &promoted)),  // a failover
            (51, "n3", reply(3, 170, &promoted)),
            (60, "n2", grown),                    // a node more: full
            (61, "n3", reply(3, 170, &promoted)), // same
        ];
        let lines = encode_all(&raw);
        // The forms chosen.
        assert!(lines[0].cluster_nodes.is_some() && lines[1].cluster_nodes.is_some());
        assert_eq!(lines[2].same_as_ns, Some(10));
        assert!(lines[2].changed.is_empty() && lines[2].cluster_nodes.is_none());
        assert!(lines[3]
            .changed
            .iter()
            .all(|c| matches!(c, LineChange::Liveness(..))));
        assert_eq!(lines[5].same_as_ns, Some(20));
        assert!(lines[6]
            .changed
            .iter()
            .any(|c| matches!(c, LineChange::Line(..))));
        assert!(lines[9].cluster_nodes.is_some());
        assert_eq!(lines[10].same_as_ns, Some(51));
        // A reference costs a fraction of the text.
        let sizes: Vec<usize> = lines
            .iter()
            .map(|o| serde_json::to_string(o).unwrap().len())
            .collect();
        assert!(sizes[2] * 5 < sizes[0], "{sizes:?}");

        let file = write_and_read(&lines);
        assert!(file.skipped.is_none());
        assert_eq!(file.records.len(), raw.len());
        for ((t, observer, text), o) in raw.iter().zip(&file.records) {
            assert_eq!((o.time_ns, o.observer.as_str()), (*t, *observer));
            if text.is_empty() {
                assert_eq!(o.error.as_deref(), Some("timed out"));
            } else {
                assert_eq!(o.cluster_nodes.as_deref(), Some(text.as_str()), "at {t}");
                assert!(o.same_as_ns.is_none() && o.changed.is_empty());
            }
        }
    }

    #[test]
    fn encoder_reports_what_changed() {
        let mut e = ChangeEncoder::new();
        let first = reply(1, 5, &|_, _| {});
        assert_eq!(e.encode(1, "n1", first.clone()).1, Change::First);
        assert_eq!(e.encode(2, "n1", first).1, Change::Same);
        assert_eq!(
            e.encode(3, "n1", reply(1, 9, &|_, _| {})).1,
            Change::Liveness
        );
        let flagged = reply(1, 9, &|n, f| {
            if n == 2 {
                f[7] = "disconnected".into();
            }
        });
        assert_eq!(e.encode(4, "n1", flagged).1, Change::Shape);
    }

    #[test]
    fn liveness_numbers_that_would_not_print_back_are_kept_as_text() {
        let a = "x 1:1@2 master - 0 17 1 connected";
        assert_eq!(
            liveness_only(a, "x 1:1@2 master - 0 18 1 connected"),
            Some((0, 18))
        );
        assert_eq!(liveness_only(a, "x 1:1@2 master - 0 018 1 connected"), None);
        assert_eq!(liveness_only(a, "x 1:1@2 master - 0 18 2 connected"), None);
        assert_eq!(liveness_only(a, "x 1:1@2  master - 0 18 1 connected"), None);
    }

    #[test]
    fn a_full_reply_is_written_at_least_every_full_every_ns() {
        let mut e = ChangeEncoder::new();
        let text = reply(1, 5, &|_, _| {});
        assert!(e.encode(0, "n1", text.clone()).0.cluster_nodes.is_some());
        assert!(e.encode(1, "n1", text.clone()).0.is_reference());
        let late = e.encode(FULL_EVERY_NS, "n1", text.clone()).0;
        assert!(late.cluster_nodes.is_some() && !late.is_reference());
        assert!(e.encode(FULL_EVERY_NS + 1, "n1", text).0.is_reference());
    }

    #[test]
    fn a_reference_to_a_reply_that_is_not_the_last_is_a_bad_line() {
        let lines = [
            Observation::reply(1, "n1", "a"),
            Observation::reply(2, "n1", "b"),
            Observation::same_as(3, "n1", 1, Vec::new()),
        ];
        let dir =
            std::env::temp_dir().join(format!("faultline-topology-badref-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(TOPOLOGY_FILE);
        let text: String = lines
            .iter()
            .map(|o| serde_json::to_string(o).unwrap() + "\n")
            .collect();
        std::fs::write(&path, text).unwrap();
        let err = read_topology(&path).unwrap_err().to_string();
        assert!(
            err.contains(":3:") && err.contains("last reply was at 2 ns"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_change_only_forms_are_as_documented() {
        let r = Observation::same_as(7, "n1", 5, Vec::new()).with_latency_us(9);
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"time_ns":7,"observer":"n1","same_as_ns":5,"latency_us":9}"#
        );
        let c = Observation::same_as(
            8,
            "n1",
            7,
            vec![
                LineChange::Line(2, "x y".into()),
                LineChange::Liveness(4, 0, 17),
            ],
        );
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(
            text,
            r#"{"time_ns":8,"observer":"n1","same_as_ns":7,"changed":[[2,"x y"],[4,0,17]]}"#
        );
        assert_eq!(serde_json::from_str::<Observation>(&text).unwrap(), c);
    }
}
