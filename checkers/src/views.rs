//! The topology log parsed once for the topology checkers: each observer's views in time
//! order, and the names of the nodes behind the ids.
//!
//! Held compactly, because a 100-node run polls ~10 KB replies hundreds of times a
//! second: the log is read one line at a time ([`Views::read`], change-only lines
//! restored by [`faultline_history::for_each_observation`]), a reply's lines are shared
//! with the same observer's previous reply where they are equal ([`Reply`]), and a parsed
//! view equal to the previous one (ping/pong times are not part of it) is the same
//! [`Arc`].

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use faultline_history::{for_each_observation, ClusterView, Observation, ReadError, Skipped};

use crate::run_data::node_order;

/// The raw text of one reply, as lines (split at `\n`), each shared with the observer's
/// previous reply when equal.
#[derive(Clone, Debug)]
pub(crate) struct Reply(Arc<[Arc<str>]>);

impl Reply {
    /// The lines, as `str::lines` gives them (no empty piece after a final newline; a
    /// `\r` before a newline stays, which every caller trims).
    pub(crate) fn lines(&self) -> impl Iterator<Item = &str> {
        let n = match self.0.last() {
            Some(l) if l.is_empty() => self.0.len() - 1,
            _ => self.0.len(),
        };
        self.0[..n].iter().map(|l| &**l)
    }
}

/// One poll of one observer, parsed.
pub(crate) enum Sample {
    /// The node answered with a view that parses.
    View {
        /// When the reply arrived.
        time_ns: u64,
        /// The raw reply, for excerpts.
        text: Reply,
        /// The parsed reply.
        view: Arc<ClusterView>,
    },
    /// The poll failed, or the reply did not parse: nothing is known about this moment,
    /// so it ends every episode of this observer ("consecutive observations").
    Failed {
        /// When the failure was seen.
        time_ns: u64,
    },
}

impl Sample {
    pub(crate) fn time_ns(&self) -> u64 {
        match self {
            Sample::View { time_ns, .. } | Sample::Failed { time_ns } => *time_ns,
        }
    }
}

/// One node's polls, in time order.
pub(crate) struct ObserverViews {
    pub(crate) name: String,
    pub(crate) samples: Vec<Sample>,
    /// The latest `CLUSTER NODES` reply, parsed or not, and when it arrived.
    pub(crate) last_reply: Option<(u64, String)>,
}

/// Node id -> node name, learned from each observer's own `myself` line.
#[derive(Debug, Default)]
pub(crate) struct Names {
    by_id: HashMap<String, String>,
}

impl Names {
    /// The node's name, or the first 8 characters of its id for a node no observer
    /// called itself (a node that was never polled, or an id it had before a reset).
    pub(crate) fn of(&self, id: &str) -> String {
        self.by_id
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.chars().take(8).collect())
    }

    /// The names of several ids, in node order.
    pub(crate) fn sorted<'s, I: IntoIterator<Item = &'s str>>(&self, ids: I) -> Vec<String> {
        let mut names: Vec<String> = ids.into_iter().map(|id| self.of(id)).collect();
        names.sort_by(|a, b| node_order(a).cmp(&node_order(b)));
        names
    }
}

/// Every observer's parsed polls.
pub(crate) struct Views {
    /// Observers in node order.
    pub(crate) observers: Vec<ObserverViews>,
    pub(crate) names: Names,
    /// Polls with a reply that parsed.
    pub(crate) ok: usize,
    /// Polls that failed.
    pub(crate) failed: usize,
    /// Replies that did not parse (counted as failed polls too).
    pub(crate) unparsed: usize,
    /// The latest time of any observation.
    pub(crate) last_ns: Option<u64>,
    /// Every observation without a `CLUSTER NODES` reply (failed polls, and standalone
    /// runs' `INFO replication` polls), in file order.
    pub(crate) other: Vec<Observation>,
}

/// The previous reply of one observer, for sharing.
#[derive(Default)]
struct Previous {
    text: String,
    reply: Option<Reply>,
    view: Option<Arc<ClusterView>>,
}

/// Builds [`Views`] one observation at a time.
#[derive(Default)]
struct Builder {
    by_observer: BTreeMap<(usize, String), ObserverViews>,
    previous: HashMap<String, Previous>,
    names: Names,
    ok: usize,
    failed: usize,
    unparsed: usize,
    last_ns: Option<u64>,
    other: Vec<Observation>,
}

impl Builder {
    fn push(&mut self, mut o: Observation) {
        self.last_ns = Some(self.last_ns.map_or(o.time_ns, |t| t.max(o.time_ns)));
        let key = (o.observer.len(), o.observer.clone());
        let entry = self
            .by_observer
            .entry(key)
            .or_insert_with(|| ObserverViews {
                name: o.observer.clone(),
                samples: Vec::new(),
                last_reply: None,
            });
        let Some(text) = o.cluster_nodes.take() else {
            self.failed += 1;
            entry.samples.push(Sample::Failed { time_ns: o.time_ns });
            self.other.push(o);
            return;
        };
        if entry
            .last_reply
            .as_ref()
            .is_none_or(|(t, _)| *t <= o.time_ns)
        {
            match &mut entry.last_reply {
                Some((t, last)) => {
                    *t = o.time_ns;
                    last.clone_from(&text);
                }
                None => entry.last_reply = Some((o.time_ns, text.clone())),
            }
        }
        let previous = self.previous.entry(o.observer.clone()).or_default();
        let (reply, view) = match (&previous.reply, &previous.view) {
            (Some(reply), Some(view)) if previous.text == text => (reply.clone(), Ok(view.clone())),
            _ => {
                let reply = share_lines(previous.reply.as_ref(), &text);
                let view = ClusterView::parse(&text).map(|v| match &previous.view {
                    Some(p) if **p == v => p.clone(),
                    _ => Arc::new(v),
                });
                (reply, view)
            }
        };
        let sample = match view {
            Ok(view) => {
                if let Some(me) = view.myself() {
                    self.names
                        .by_id
                        .entry(me.id.clone())
                        .or_insert_with(|| o.observer.clone());
                }
                self.ok += 1;
                previous.reply = Some(reply.clone());
                previous.view = Some(view.clone());
                previous.text = text;
                Sample::View {
                    time_ns: o.time_ns,
                    text: reply,
                    view,
                }
            }
            Err(_) => {
                self.unparsed += 1;
                self.failed += 1;
                Sample::Failed { time_ns: o.time_ns }
            }
        };
        entry.samples.push(sample);
    }

    fn finish(self) -> Views {
        let observers = self
            .by_observer
            .into_values()
            .map(|mut o| {
                o.samples.sort_by_key(Sample::time_ns);
                o
            })
            .collect();
        Views {
            observers,
            names: self.names,
            ok: self.ok,
            failed: self.failed,
            unparsed: self.unparsed,
            last_ns: self.last_ns,
            other: self.other,
        }
    }
}

/// `text` as lines, each the previous reply's line `i` when equal.
fn share_lines(previous: Option<&Reply>, text: &str) -> Reply {
    let lines: Vec<Arc<str>> = text
        .split('\n')
        .enumerate()
        .map(|(i, line)| match previous.and_then(|p| p.0.get(i)) {
            Some(p) if **p == *line => p.clone(),
            _ => Arc::from(line),
        })
        .collect();
    Reply(lines.into())
}

impl Views {
    /// Parses every observation, grouping by observer and sorting each group by time.
    pub(crate) fn parse(topology: &[Observation]) -> Views {
        let mut b = Builder::default();
        for o in topology {
            b.push(o.clone());
        }
        b.finish()
    }

    /// Reads the topology log at `path` one line at a time (change-only lines restored),
    /// as [`Views::parse`] would see the whole file. Returns the torn last line too.
    ///
    /// # Errors
    /// As [`for_each_observation`].
    pub(crate) fn read(path: &Path) -> Result<(Views, Option<Skipped>), ReadError> {
        let mut b = Builder::default();
        let skipped = for_each_observation(path, |o| b.push(o))?;
        Ok((b.finish(), skipped))
    }

    /// Whether the log holds standalone observations (`INFO replication`) and no cluster
    /// views to judge.
    pub(crate) fn is_standalone(&self) -> bool {
        self.ok + self.unparsed == 0 && self.other.iter().any(|o| o.info_replication.is_some())
    }

    /// The details every topology checker reports about its input.
    pub(crate) fn input_counts(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "observers": self.observers.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(),
            "observations": self.ok + self.failed,
            "failed_observations": self.failed,
        });
        if self.unparsed > 0 {
            v["unparsed_observations"] = self.unparsed.into();
        }
        v
    }
}

/// The lines of a raw reply that describe the given node ids, trimmed.
pub(crate) fn lines_about(text: &Reply, ids: &[&str]) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| ids.iter().any(|id| l.starts_with(id)))
        .map(str::to_string)
        .collect()
}

/// A whole raw reply as lines, at most `max` of them.
pub(crate) fn trimmed(text: &Reply, max: usize) -> Vec<String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut out: Vec<String> = lines.iter().take(max).map(|l| l.to_string()).collect();
    if lines.len() > max {
        out.push(format!("... {} more lines", lines.len() - max));
    }
    out
}

/// `12.345 s`, a time on the run's clock for summaries.
pub(crate) fn secs(ns: u64) -> String {
    format!("{:.3} s", ns as f64 / 1e9)
}

/// Whole milliseconds between two times, rounded.
pub(crate) fn millis(from_ns: u64, to_ns: u64) -> u64 {
    (to_ns.saturating_sub(from_ns) + 500_000) / 1_000_000
}

/// Slot ranges as Redis prints them: `0-5460 5461`.
pub(crate) fn ranges_text(ranges: &[(u16, u16)]) -> String {
    ranges
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Sorts and merges overlapping or adjacent ranges.
pub(crate) fn normalize(mut ranges: Vec<(u16, u16)>) -> Vec<(u16, u16)> {
    ranges.sort_unstable();
    let mut out: Vec<(u16, u16)> = Vec::with_capacity(ranges.len());
    for (a, b) in ranges {
        match out.last_mut() {
            Some(last) if u32::from(a) <= u32::from(last.1) + 1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// The slots in both of two normalized range lists.
pub(crate) fn intersect(x: &[(u16, u16)], y: &[(u16, u16)]) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < x.len() && j < y.len() {
        let a = x[i].0.max(y[j].0);
        let b = x[i].1.min(y[j].1);
        if a <= b {
            out.push((a, b));
        }
        if x[i].1 < y[j].1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// How many slots the ranges hold.
pub(crate) fn slot_count(ranges: &[(u16, u16)]) -> u64 {
    ranges
        .iter()
        .map(|&(a, b)| u64::from(b) - u64::from(a) + 1)
        .sum()
}

/// Whether a slot lies in normalized ranges.
pub(crate) fn contains(ranges: &[(u16, u16)], slot: u16) -> bool {
    ranges.iter().any(|&(a, b)| a <= slot && slot <= b)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Node ids for hand-written views: `id(1)` is 40 hex characters.
    pub(crate) fn id(n: u8) -> String {
        format!("{n:x}").repeat(40)[..40].to_string()
    }

    /// A 3x1 view as node `me` sees it, in the real `CLUSTER NODES` format: n1..n3
    /// primaries with a third of the slots each, n4..n6 their replicas. `edit` changes
    /// lines by node number before they are printed.
    pub(crate) fn view_3x1(me: u8, edit: &dyn Fn(u8, &mut Line)) -> String {
        let mut out = String::new();
        for n in 1..=6u8 {
            let mut line = if n <= 3 {
                let (a, b) = [(0, 5460), (5461, 10922), (10923, 16383)][usize::from(n - 1)];
                Line {
                    flags: "master".into(),
                    primary: None,
                    epoch: u64::from(n),
                    slots: format!("{a}-{b}"),
                }
            } else {
                Line {
                    flags: "slave".into(),
                    primary: Some(n - 3),
                    epoch: u64::from(n - 3),
                    slots: String::new(),
                }
            };
            edit(n, &mut line);
            let flags = if n == me {
                format!("myself,{}", line.flags)
            } else {
                line.flags.clone()
            };
            let primary = line.primary.map_or("-".to_string(), id);
            out.push_str(&format!(
                "{} 10.77.0.{}:6379@16379 {flags} {primary} 0 1426238317239 {} connected {}\n",
                id(n),
                10 + n,
                line.epoch,
                line.slots
            ));
        }
        out
    }

    /// n4's line once it is primary of 0-5460 at epoch 7.
    fn promote_n4(l: &mut Line) {
        l.flags = "master".into();
        l.primary = None;
        l.epoch = 7;
        l.slots = "0-5460".into();
    }

    /// `me`'s view once n4 is promoted and n1 has lost its slots but still says master.
    pub(crate) fn n4_promoted(me: u8) -> String {
        view_3x1(me, &|n, l| match n {
            1 => l.slots.clear(),
            4 => promote_n4(l),
            _ => {}
        })
    }

    /// `me`'s view after n4 took over from n1: n4 primary of 0-5460 at epoch 7, n1 its
    /// replica.
    pub(crate) fn n4_took_over_from_n1(me: u8) -> String {
        view_3x1(me, &|n, l| match n {
            1 => {
                l.flags = "slave".into();
                l.primary = Some(4);
                l.slots.clear();
            }
            4 => promote_n4(l),
            _ => {}
        })
    }

    /// The editable parts of one line.
    pub(crate) struct Line {
        pub(crate) flags: String,
        pub(crate) primary: Option<u8>,
        pub(crate) epoch: u64,
        pub(crate) slots: String,
    }

    /// Observations of every node at `t` ms, each seeing the healthy 3x1 cluster.
    pub(crate) fn healthy_round(t_ms: u64) -> Vec<Observation> {
        (1..=6)
            .map(|n| Observation::reply(t_ms * 1_000_000, format!("n{n}"), view_3x1(n, &|_, _| {})))
            .collect()
    }

    #[test]
    fn range_helpers() {
        assert_eq!(
            normalize(vec![(5, 9), (0, 4), (20, 30), (25, 26)]),
            vec![(0, 9), (20, 30)]
        );
        assert_eq!(
            intersect(&[(0, 10), (20, 30)], &[(5, 25)]),
            vec![(5, 10), (20, 25)]
        );
        assert_eq!(slot_count(&[(0, 16383)]), 16384);
        assert_eq!(ranges_text(&[(0, 5460), (7, 7)]), "0-5460 7");
        assert!(contains(&[(3, 4)], 4) && !contains(&[(3, 4)], 5));
        assert_eq!(millis(1_000_000, 44_600_000), 44);
    }

    #[test]
    fn names_come_from_myself_lines_and_unknown_ids_are_shortened() {
        let a = format!(
            "{} 10.0.0.1:6379@16379 myself,master - 0 0 1 connected 0-16383",
            id(1)
        );
        let obs = vec![
            Observation::reply(1, "n1", a),
            Observation::failed(2, "n2", "x"),
        ];
        let views = Views::parse(&obs);
        assert_eq!(views.names.of(&id(1)), "n1");
        assert_eq!(views.names.of(&id(2)), "22222222");
        assert_eq!(views.ok, 1);
        assert_eq!(views.failed, 1);
        assert_eq!(views.observers.len(), 2);
    }
}
