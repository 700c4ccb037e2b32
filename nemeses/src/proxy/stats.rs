//! What the proxy carried, and how long it took: counters by verdict and type, the time a
//! passing message spends inside the proxy, and the PING -> PONG round trip it observes.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::frame::Header;

/// Samples kept per timing (the most recent ones).
const SAMPLES_KEPT: usize = 100_000;

/// A timing's distribution, in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Number of samples (all of them, even beyond those kept).
    pub count: u64,
    /// Mean of the kept samples.
    pub mean_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Largest.
    pub max_us: f64,
}

/// A snapshot of the proxy's counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Connections accepted from nodes.
    pub connections_accepted: u64,
    /// Connections open now.
    pub connections_open: u64,
    /// Accepted connections that could not be carried on to the node's real bus port
    /// (the node was down): closed at once, as the node itself would have refused.
    pub onward_failures: u64,
    /// Connections closed by the proxy because a drop rule that lost messages on them
    /// was removed.
    pub connections_reset: u64,
    /// Whole messages read.
    pub frames: u64,
    /// Bytes of whole messages read.
    pub bytes: u64,
    /// Directions of connections that stopped looking like the bus and were passed on raw.
    pub raw_streams: u64,
    /// Bytes passed on raw.
    pub raw_bytes: u64,
    /// Messages no rule held back.
    pub passed: u64,
    /// Messages delayed.
    pub delayed: u64,
    /// Messages held until released.
    pub held: u64,
    /// Messages dropped.
    pub dropped: u64,
    /// Messages sent twice.
    pub duplicated: u64,
    /// Messages with a Valkey light header.
    pub light: u64,
    /// Messages read, by type name.
    pub by_type: BTreeMap<String, u64>,
    /// From a passing message read whole to written on: the proxy's own added time.
    pub dwell: Summary,
    /// From a PING or MEET written to its receiver to the receiver's PONG read back, on
    /// the same connection: the receiver's turnaround, no proxy time included.
    pub ping_rtt: Summary,
}

#[derive(Default)]
pub(crate) struct Recorder {
    pub(crate) stats: Stats,
    /// Connections closed so far (open = accepted - closed).
    pub(crate) closed: u64,
    dwell: Samples,
    ping_rtt: Samples,
}

#[derive(Default)]
struct Samples {
    count: u64,
    kept: Vec<f64>,
    next: usize,
}

impl Samples {
    fn add(&mut self, d: Duration) {
        let us = d.as_secs_f64() * 1e6;
        self.count += 1;
        if self.kept.len() < SAMPLES_KEPT {
            self.kept.push(us);
        } else {
            self.kept[self.next] = us;
            self.next = (self.next + 1) % SAMPLES_KEPT;
        }
    }

    fn summary(&self) -> Summary {
        if self.kept.is_empty() {
            return Summary::default();
        }
        let mut v = self.kept.clone();
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Summary {
            count: self.count,
            mean_us: v.iter().sum::<f64>() / v.len() as f64,
            p50_us: at(0.5),
            p99_us: at(0.99),
            max_us: v[v.len() - 1],
        }
    }
}

impl Recorder {
    pub(crate) fn frame(&mut self, len: usize, header: Option<&Header>) {
        self.stats.frames += 1;
        self.stats.bytes += len as u64;
        if header.is_some_and(|h| h.light) {
            self.stats.light += 1;
        }
        let name = header.map_or_else(|| "unreadable".to_string(), |h| h.msg_type.name());
        *self.stats.by_type.entry(name).or_default() += 1;
    }

    pub(crate) fn dwell(&mut self, d: Duration) {
        self.dwell.add(d);
    }

    pub(crate) fn ping_rtt(&mut self, d: Duration) {
        self.ping_rtt.add(d);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let mut s = self.stats.clone();
        s.connections_open = s.connections_accepted - self.closed;
        s.dwell = self.dwell.summary();
        s.ping_rtt = self.ping_rtt.summary();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_known_samples() {
        let mut s = Samples::default();
        for us in 1..=100u64 {
            s.add(Duration::from_micros(us));
        }
        let sum = s.summary();
        assert_eq!(sum.count, 100);
        assert!((sum.mean_us - 50.5).abs() < 1e-6);
        assert!((sum.p50_us - 51.0).abs() < 1e-6 || (sum.p50_us - 50.0).abs() < 1e-6);
        assert!((sum.max_us - 100.0).abs() < 1e-6);
        assert_eq!(Samples::default().summary(), Summary::default());
    }
}
