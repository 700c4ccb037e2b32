//! `log-pattern`: node log lines that match the signature of a known bug.
//!
//! Jepsen reads server logs too: a server sometimes says plainly what went wrong. The
//! signatures here are evidence of a bug, not of a fault the harness injected, so any
//! match makes the verdict invalid and names the node, the line numbers and the text:
//!
//! - **stale-message-flip** (valkey-io/valkey#1015, fixed in Valkey 8.1.1; seed 002): the
//!   node logs `Ignore stale message from <id> ... gossip config epoch: X, current config
//!   epoch: Y`, yet keeps processing that message and, within the same moment, logs `Node
//!   <id> ... is now a replica of node <id>` for the very sender it called stale. The
//!   fixed server drops the stale message, so the second line cannot follow from it. A
//!   flip to a node whose promotion (`Node <id> ... is now a primary`) was logged between
//!   the two lines follows from that newer news, not from the stale message, and is not a
//!   match (seen on faultline-node: a stale claim ignored, the shard's replica promoted,
//!   then the old primary's fresh demotion 1.1 s later).
//! - **crash-report**: `=== REDIS BUG REPORT START` / `=== VALKEY BUG REPORT START`, what
//!   the server prints on an assertion failure or a crash signal (never on the SIGKILL of
//!   the kill fault).
//!
//! Lines are paired within [`crate::Tolerances::log_pattern_window_ms`] by their
//! timestamps (`pid:role 12 Mar 2024 10:11:12.345 * ...`); where a timestamp does not
//! parse, within [`LINE_WINDOW`] lines.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::checker::Input;
use crate::{Checker, CheckerResult, RunData, Validity};

/// The checker's name in `results.json`.
pub const NAME: &str = "log-pattern";

/// How many lines apart two lines of one signature may be when a timestamp is missing.
pub const LINE_WINDOW: usize = 20;

/// How many matches a result lists.
const EXAMPLES: usize = 20;

const STALE: &str = "Ignore stale message from ";
const FLIP_PREFIX: &str = "Node ";
const FLIP_MIDDLE: &str = " is now a replica of node ";
const PROMOTED: &str = " is now a primary";
const CRASH: &str = " BUG REPORT START";

/// Scans every node's log for known-bug signatures. Skipped without node logs.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogPattern;

/// One signature match.
struct Match {
    signature: &'static str,
    issue: &'static str,
    node: String,
    /// 1-based line numbers.
    lines: Vec<usize>,
    text: Vec<String>,
    /// What it means, with node names.
    meaning: String,
    /// For a stale-message flip: the flipped node's id and its new primary's.
    flip: Option<(String, String)>,
}

impl Checker for LogPattern {
    fn name(&self) -> &'static str {
        NAME
    }

    fn needs(&self) -> &'static [Input] {
        &[Input::NodeLogs]
    }

    fn reads_history(&self) -> bool {
        false
    }

    fn check(&self, run: &RunData) -> CheckerResult {
        let window_ms = run.tolerances.log_pattern_window_ms;
        let mut matches = Vec::new();
        let mut lines_read = 0usize;
        for log in &run.logs {
            lines_read += log.lines.len();
            // Sender id -> (line index, time) of its latest "stale" line.
            let mut stale: HashMap<&str, (usize, Option<i64>)> = HashMap::new();
            // Node id -> line index of its latest promotion.
            let mut promoted: HashMap<&str, usize> = HashMap::new();
            for (i, line) in log.lines.iter().enumerate() {
                if line.contains(CRASH) {
                    matches.push(Match {
                        signature: "crash-report",
                        issue: "server crash or assertion",
                        node: log.node.clone(),
                        lines: vec![i + 1],
                        text: vec![line.clone()],
                        meaning: format!("{} printed a crash report", log.node),
                        flip: None,
                    });
                    continue;
                }
                if let Some(id) = after(line, STALE) {
                    stale.insert(id, (i, log_time_ms(line)));
                    continue;
                }
                if let Some(id) = promotion(line) {
                    promoted.insert(id, i);
                    continue;
                }
                let Some((node, primary)) = flip(line) else {
                    continue;
                };
                let Some(&(at, t)) = stale.get(node) else {
                    continue;
                };
                if promoted.get(primary).is_some_and(|&p| p > at) {
                    // Its new primary was promoted since: the flip follows from that.
                    continue;
                }
                let close = match (t, log_time_ms(line)) {
                    (Some(a), Some(b)) => b - a <= window_ms as i64 && b >= a,
                    _ => i - at <= LINE_WINDOW,
                };
                if close {
                    stale.remove(node);
                    matches.push(Match {
                        signature: "stale-message-flip",
                        issue: "valkey-io/valkey#1015",
                        node: log.node.clone(),
                        lines: vec![at + 1, i + 1],
                        text: vec![log.lines[at].clone(), line.clone()],
                        meaning: String::new(),
                        flip: Some((node.to_string(), primary.to_string())),
                    });
                }
            }
        }
        if matches.iter().any(|m| m.flip.is_some()) {
            // Names only when there is something to name: parsing the topology log is
            // the dearest part of this checker.
            let views = run.views();
            for m in &mut matches {
                if let Some((node, primary)) = &m.flip {
                    let name = |id: &str| views.names.of(id);
                    m.meaning = format!(
                        "{} called a message from {} stale, then made {} a replica of {}",
                        m.node,
                        name(node),
                        name(node),
                        name(primary)
                    );
                }
            }
        }
        let summary = if matches.is_empty() {
            format!(
                "no known-bug signature in {} lines of {} node logs",
                lines_read,
                run.logs.len()
            )
        } else {
            let named: Vec<String> = matches
                .iter()
                .take(3)
                .map(|m| {
                    let lines: Vec<String> = m.lines.iter().map(usize::to_string).collect();
                    format!(
                        "{} (logs/{}/server.log:{}, {})",
                        m.meaning,
                        m.node,
                        lines.join(","),
                        m.issue
                    )
                })
                .collect();
            let more = if matches.len() > 3 { "; ..." } else { "" };
            format!("{} matches: {}{more}", matches.len(), named.join("; "))
        };
        let listed: Vec<Value> = matches
            .iter()
            .take(EXAMPLES)
            .map(|m| {
                json!({
                    "signature": m.signature,
                    "issue": m.issue,
                    "node": m.node,
                    "lines": m.lines,
                    "text": m.text,
                    "meaning": m.meaning,
                })
            })
            .collect();
        let valid = if matches.is_empty() {
            Validity::Valid
        } else {
            Validity::Invalid
        };
        CheckerResult::new(valid)
            .with("summary", summary)
            .with("match_count", matches.len())
            .with("matches", listed)
            .with(
                "logs",
                run.logs.iter().map(|l| l.node.clone()).collect::<Vec<_>>(),
            )
            .with("lines_read", lines_read)
            .with("window_ms", window_ms)
    }
}

/// The 40-character node id right after `marker` in `line`.
fn after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let at = line.find(marker)? + marker.len();
    node_id(line.get(at..)?)
}

/// A node id at the start of `s`.
fn node_id(s: &str) -> Option<&str> {
    let id = s.get(..40)?;
    id.bytes().all(|b| b.is_ascii_hexdigit()).then_some(id)
}

/// `Node <id> (...) is now a replica of node <id>`: (node, its new primary).
fn flip(line: &str) -> Option<(&str, &str)> {
    let middle = line.find(FLIP_MIDDLE)?;
    let start = line[..middle].rfind(FLIP_PREFIX)? + FLIP_PREFIX.len();
    let node = node_id(&line[start..])?;
    let primary = node_id(&line[middle + FLIP_MIDDLE.len()..])?;
    Some((node, primary))
}

/// `Node <id> (...) is now a primary`: the promoted node.
fn promotion(line: &str) -> Option<&str> {
    let end = line.strip_suffix(PROMOTED).map(str::len)?;
    let start = line[..end].rfind(FLIP_PREFIX)? + FLIP_PREFIX.len();
    node_id(&line[start..])
}

/// The time of a log line in ms (from a fixed origin), from the server's default
/// `pid:role DD Mon YYYY HH:MM:SS.mmm <level> message` format.
fn log_time_ms(line: &str) -> Option<i64> {
    let mut f = line.split_ascii_whitespace();
    let _pid_role = f.next()?;
    let day: i64 = f.next()?.parse().ok()?;
    let month = match f.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = f.next()?.parse().ok()?;
    let clock = f.next()?;
    let (hms, ms) = clock.split_once('.')?;
    let mut hms = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    let ms: i64 = ms.parse().ok()?;
    Some((((days_from_civil(year, month, day) * 24 + h) * 60 + m) * 60 + s) * 1000 + ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::tests::{healthy_round, id};

    /// Node ids as the logs print them: n1 = id(1), n4 = id(4).
    fn log(lines: &[&str]) -> String {
        lines
            .iter()
            .map(|l| {
                l.replace("<n1>", &id(1))
                    .replace("<n4>", &id(4))
                    .replace("<s>", &id(9))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    const STALE_LINE: &str = "1234:M 12 Mar 2024 10:11:12.345 * Ignore stale message from <n4> (n4) in shard <s>; gossip config epoch: 7, current config epoch: 8";
    const FLIP_LINE: &str = "1234:M 12 Mar 2024 10:11:12.345 * Node <n4> () is now a replica of node <n1> () in shard <s>";

    fn run(text: &str) -> RunData {
        RunData::from_topology(healthy_round(0)).with_log("n3", text)
    }

    #[test]
    fn stale_message_followed_by_a_flip_of_that_node_is_invalid() {
        let text = log(&[
            "1234:M 12 Mar 2024 10:11:10.000 * Cluster state changed: ok",
            STALE_LINE,
            FLIP_LINE,
        ]);
        let r = LogPattern.check(&run(&text));
        assert_eq!(r.valid, Validity::Invalid, "{r:?}");
        let m = &r.details["matches"][0];
        assert_eq!(m["signature"], "stale-message-flip");
        assert_eq!(m["node"], "n3");
        assert_eq!(m["lines"], json!([2, 3]));
        assert_eq!(m["issue"], "valkey-io/valkey#1015");
        assert_eq!(
            m["meaning"],
            "n3 called a message from n4 stale, then made n4 a replica of n1"
        );
        let s = r.details["summary"].as_str().unwrap();
        assert!(s.contains("logs/n3/server.log:2,3"), "{s}");
    }

    #[test]
    fn a_flip_of_another_node_or_outside_the_window_is_not_a_match() {
        let other = FLIP_LINE
            .replace("Node <n4>", "Node <n1>")
            .replace("node <n1>", "node <n4>");
        let late = FLIP_LINE.replace("10:11:12.345", "10:11:19.000");
        for lines in [
            vec![STALE_LINE, other.as_str()],
            vec![STALE_LINE, late.as_str()],
            vec![FLIP_LINE],
        ] {
            let r = LogPattern.check(&run(&log(&lines)));
            assert_eq!(r.valid, Validity::Valid, "{lines:?}: {r:?}");
            assert_eq!(r.details["match_count"], 0);
        }
    }

    #[test]
    fn a_flip_to_a_node_promoted_after_the_stale_line_is_not_a_match() {
        let promoted = "1234:M 12 Mar 2024 10:11:12.700 * Node <n1> is now a primary";
        let flip = FLIP_LINE.replace("10:11:12.345", "10:11:13.400");
        let r = LogPattern.check(&run(&log(&[STALE_LINE, promoted, &flip])));
        assert_eq!(r.valid, Validity::Valid, "{r:?}");
        // A promotion before the stale line changes nothing.
        let r = LogPattern.check(&run(&log(&[promoted, STALE_LINE, &flip])));
        assert_eq!(r.valid, Validity::Invalid, "{r:?}");
    }

    #[test]
    fn a_crash_report_is_invalid() {
        let text = "1:M 01 Jan 2025 00:00:00.000 # === REDIS BUG REPORT START: Cut & paste starting from here ===";
        let r = LogPattern.check(&RunData::default().with_log("n2", text));
        assert_eq!(r.valid, Validity::Invalid, "{r:?}");
        assert_eq!(r.details["matches"][0]["signature"], "crash-report");
    }

    #[test]
    fn timestamps_parse_across_a_day_boundary() {
        let a = log_time_ms("1:M 31 Dec 2024 23:59:59.900 * x").unwrap();
        let b = log_time_ms("1:M 01 Jan 2025 00:00:00.100 * x").unwrap();
        assert_eq!(b - a, 200);
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert!(log_time_ms("no time here at all").is_none());
    }
}
