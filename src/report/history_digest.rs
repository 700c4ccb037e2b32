//! What the report needs from `history.jsonl`, read in one streaming pass.
//!
//! A 1,000,000-op history is two million lines; holding each as an [`Op`] (with its
//! `serde_json::Value`) costs gigabytes, so client ops are parsed into a borrowed line type
//! that skips `value` and kept as a few integers each. Nemesis ops are few and are kept
//! whole, because the fault timeline shows their exact parameters.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::{Context, Result};
use faultline_history::{Op, OpType, Process};
use serde::Deserialize;

/// One client op, invoke and completion joined.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Completion {
    /// When the invoke was recorded, in ns on the history's clock.
    pub invoke_ns: u64,
    /// Completion time minus invoke time, in ns.
    pub latency_ns: u64,
    /// Index into [`HistoryDigest::functions`].
    pub f: u8,
    /// `Ok`, `Fail` or `Info`.
    pub outcome: OpType,
}

impl Completion {
    /// When the completion was recorded.
    pub fn complete_ns(&self) -> u64 {
        self.invoke_ns + self.latency_ns
    }
}

/// A nemesis action: its invoke and (if the run got that far) its completion, whole.
#[derive(Debug, Clone)]
pub struct NemesisAction {
    /// The invoke line.
    pub invoke: Op,
    /// The completion line, if recorded.
    pub completion: Option<Op>,
}

impl NemesisAction {
    /// Whether this action undoes faults (the heals and the final phase's sweeps, as the
    /// fault packages name them), as opposed to applying one.
    pub fn is_heal(&self) -> bool {
        faultline_nemeses::registry::op_catalog().is_heal(&self.invoke.f)
    }

    /// When it ended: the completion's time, or the invoke's if there is none.
    pub fn end_ns(&self) -> u64 {
        self.completion
            .as_ref()
            .map_or(self.invoke.time_ns, |c| c.time_ns)
    }
}

/// One interval during which a fault was in force, for the shaded bands of the plots.
#[derive(Debug, Clone, PartialEq)]
pub struct Band {
    /// The fault (`partition`, `kill`, ...).
    pub f: String,
    /// From the fault's invoke ...
    pub start_ns: u64,
    /// ... to the completion of the heal that undid it (or of the fault itself, for a
    /// fault with no heal such as a failover).
    pub end_ns: u64,
}

/// One redirect hop a client followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedirectHop {
    /// When the op that followed it completed.
    pub time_ns: u64,
    /// Index into [`HistoryDigest::redirect_kinds`].
    pub kind: u8,
}

/// The history, digested for plots and the fault timeline.
#[derive(Debug, Clone, Default)]
pub struct HistoryDigest {
    /// Every completed client op, in completion order.
    pub completions: Vec<Completion>,
    /// The client functions seen (`add`, `read`), indexed by [`Completion::f`].
    pub functions: Vec<String>,
    /// Every nemesis action, in invoke order.
    pub nemesis: Vec<NemesisAction>,
    /// Every redirect hop, in completion order.
    pub redirects: Vec<RedirectHop>,
    /// The redirect kinds seen (`MOVED`, `ASK`, ...), indexed by [`RedirectHop::kind`].
    pub redirect_kinds: Vec<String>,
    /// Client invokes that never completed (a killed run).
    pub unfinished: u64,
    /// The last time in the history, ns.
    pub end_ns: u64,
    /// Lines that could not be read (a torn last line), as notes.
    pub notes: Vec<String>,
}

/// The fields of a history line the plots need; `value` and the rest are skipped unparsed.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(default)]
    time_ns: u64,
    process: Process,
    #[serde(rename = "type")]
    kind: OpType,
    #[serde(borrow)]
    f: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    redirects: Vec<Hop<'a>>,
}

/// The fast path: a client line exactly as faultline's recorder writes it (fields in
/// `Op`'s order, no escapes in `f`, no redirects), read without serde's machinery, which
/// matters in debug builds (every test run writes a report). Anything else returns
/// `None` and goes through serde.
fn scan(text: &str) -> Option<Line<'_>> {
    let rest = text.strip_prefix("{\"index\":")?;
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    let rest = rest.strip_prefix(",\"time_ns\":")?;
    let (time_ns, rest) = number(rest)?;
    let rest = rest.strip_prefix(",\"process\":")?;
    let (process, rest) = number(rest)?;
    let rest = rest.strip_prefix(",\"type\":\"")?;
    let (kind, rest) = rest.split_once('"')?;
    let kind = match kind {
        "invoke" => OpType::Invoke,
        "ok" => OpType::Ok,
        "fail" => OpType::Fail,
        "info" => OpType::Info,
        _ => return None,
    };
    let rest = rest.strip_prefix(",\"f\":\"")?;
    let (f, rest) = rest.split_once('"')?;
    if f.contains('\\') || rest.contains("\"redirects\":") {
        return None;
    }
    Some(Line {
        time_ns,
        process: Process::Client(process),
        kind,
        f: std::borrow::Cow::Borrowed(f),
        redirects: Vec::new(),
    })
}

/// A leading decimal number and what follows it.
fn number(text: &str) -> Option<(u64, &str)> {
    let end = text
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(text.len());
    Some((text[..end].parse().ok()?, &text[end..]))
}

#[derive(Deserialize)]
struct Hop<'a> {
    #[serde(borrow)]
    kind: std::borrow::Cow<'a, str>,
}

impl HistoryDigest {
    /// Reads `path` in one pass.
    ///
    /// # Errors
    /// If the file cannot be read. Lines that do not parse are skipped with a note (the
    /// checkers, not the report, judge a damaged history).
    pub fn read(path: &Path) -> Result<HistoryDigest> {
        let file = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut digest = HistoryDigest::default();
        let mut open: HashMap<u64, (u64, u8)> = HashMap::new();
        let mut nemesis_open: Option<usize> = None;
        let mut buf = String::new();
        let mut line_no = 0u64;
        let mut bad = 0u64;
        loop {
            buf.clear();
            let n = reader
                .read_line(&mut buf)
                .with_context(|| format!("reading {}", path.display()))?;
            if n == 0 {
                break;
            }
            line_no += 1;
            let text = buf.trim_end();
            if text.is_empty() {
                continue;
            }
            let parsed = match scan(text) {
                Some(fast) => Ok(fast),
                None => serde_json::from_str::<Line>(text),
            };
            let line: Line = match parsed {
                Ok(l) => l,
                Err(e) => {
                    bad += 1;
                    if bad == 1 {
                        digest.notes.push(format!(
                            "{}:{line_no}: unreadable line skipped by the report ({e})",
                            path.file_name().unwrap_or_default().to_string_lossy()
                        ));
                    }
                    continue;
                }
            };
            digest.end_ns = digest.end_ns.max(line.time_ns);
            match line.process {
                Process::Nemesis => {
                    let op: Op = match serde_json::from_str(text) {
                        Ok(op) => op,
                        Err(_) => continue,
                    };
                    if op.kind == OpType::Invoke {
                        digest.nemesis.push(NemesisAction {
                            invoke: op,
                            completion: None,
                        });
                        nemesis_open = Some(digest.nemesis.len() - 1);
                    } else if let Some(i) = nemesis_open.take() {
                        digest.nemesis[i].completion = Some(op);
                    }
                }
                Process::Client(p) => {
                    if line.kind == OpType::Invoke {
                        let f = digest.function_index(&line.f);
                        open.insert(p, (line.time_ns, f));
                        continue;
                    }
                    let Some((invoke_ns, f)) = open.remove(&p) else {
                        continue;
                    };
                    digest.completions.push(Completion {
                        invoke_ns,
                        latency_ns: line.time_ns.saturating_sub(invoke_ns),
                        f,
                        outcome: line.kind,
                    });
                    for hop in &line.redirects {
                        let kind = digest.redirect_kind_index(&hop.kind);
                        digest.redirects.push(RedirectHop {
                            time_ns: line.time_ns,
                            kind,
                        });
                    }
                }
            }
        }
        if bad > 1 {
            digest
                .notes
                .push(format!("{bad} unreadable history lines in all"));
        }
        digest.unfinished = open.len() as u64;
        Ok(digest)
    }

    fn function_index(&mut self, f: &str) -> u8 {
        index_of(&mut self.functions, f)
    }

    fn redirect_kind_index(&mut self, kind: &str) -> u8 {
        index_of(&mut self.redirect_kinds, kind)
    }

    /// The intervals during which faults were in force: each fault from its invoke until
    /// the completion of the heal that undid it (a scheduled heal names its fault's step,
    /// `of_step`; a heal that names none, such as a final sweep, undoes every fault still
    /// open). In a sequential schedule a fault followed by another fault before any heal
    /// (a failover, which has no heal) lasts from its invoke to its own completion; in a
    /// composed step (`group`) faults overlap, and one of a kind that has no heal lasts to
    /// its own completion. A fault never healed lasts to the end of the history.
    pub fn bands(&self) -> Vec<Band> {
        fn band(fault: &NemesisAction, end_ns: u64) -> Band {
            Band {
                f: fault.invoke.f.clone(),
                start_ns: fault.invoke.time_ns,
                end_ns,
            }
        }
        let catalog = faultline_nemeses::registry::op_catalog();
        let mut bands = Vec::new();
        let mut open: Vec<&NemesisAction> = Vec::new();
        for action in &self.nemesis {
            if action.is_heal() {
                let closed: Vec<&NemesisAction> = match action.invoke.extra.get("of_step") {
                    Some(step) => {
                        let (undone, rest) = open
                            .into_iter()
                            .partition(|f| f.invoke.extra.get("step") == Some(step));
                        open = rest;
                        undone
                    }
                    None => std::mem::take(&mut open),
                };
                bands.extend(closed.into_iter().map(|f| band(f, action.end_ns())));
                continue;
            }
            let composed = action.invoke.extra.contains_key("group");
            if !composed {
                bands.extend(open.drain(..).map(|f| band(f, f.end_ns())));
            }
            let failed = action
                .completion
                .as_ref()
                .is_some_and(|c| c.kind == OpType::Fail);
            if failed {
                continue;
            }
            let lasts = catalog
                .kinds()
                .iter()
                .find(|k| k.starts.contains(&action.invoke.f.as_str()))
                .is_none_or(|k| !k.heals.is_empty());
            if composed && !lasts {
                bands.push(band(action, action.end_ns()));
                continue;
            }
            open.push(action);
        }
        bands.extend(
            open.into_iter()
                .map(|f| band(f, self.end_ns.max(f.end_ns()))),
        );
        bands.sort_by_key(|b| b.start_ns);
        bands
    }

    /// Client op counts by outcome: (ok, fail, info).
    pub fn outcome_counts(&self) -> (u64, u64, u64) {
        let mut counts = (0, 0, 0);
        for c in &self.completions {
            match c.outcome {
                OpType::Ok => counts.0 += 1,
                OpType::Fail => counts.1 += 1,
                _ => counts.2 += 1,
            }
        }
        counts
    }

    /// The fault mechanisms the nemesis reported (`iptables`, `nfqueue`, `bus-proxy`,
    /// ...), in first-seen order.
    pub fn mechanisms(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for action in &self.nemesis {
            for op in std::iter::once(&action.invoke).chain(action.completion.as_ref()) {
                let found = op
                    .value
                    .get("mechanism")
                    .or_else(|| op.extra.get("mechanism"))
                    .and_then(|m| m.as_str());
                if let Some(m) = found {
                    if !out.iter().any(|o| o == m) {
                        out.push(m.to_string());
                    }
                }
            }
        }
        out
    }
}

fn index_of(list: &mut Vec<String>, name: &str) -> u8 {
    if let Some(i) = list.iter().position(|x| x == name) {
        return i as u8;
    }
    if list.len() >= u8::MAX as usize {
        return u8::MAX;
    }
    list.push(name.to_string());
    (list.len() - 1) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(lines: &[&str]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        (dir, path)
    }

    #[test]
    fn the_fast_path_reads_what_serde_reads_and_leaves_the_rest_to_it() {
        for line in [
            r#"{"index":0,"time_ns":10,"process":1,"type":"invoke","f":"add","key":"s1","value":1}"#,
            r#"{"index":3,"time_ns":40,"process":12,"type":"info","f":"add","key":"s1","value":1,"error":"timed out"}"#,
        ] {
            let fast = scan(line).expect("fast path");
            let slow: Line = serde_json::from_str(line).unwrap();
            assert_eq!(
                (fast.time_ns, fast.process, fast.kind, fast.f),
                (slow.time_ns, slow.process, slow.kind, slow.f)
            );
        }
        for line in [
            r#"{"index":1,"time_ns":20,"process":"nemesis","type":"invoke","f":"partition","value":null}"#,
            r#"{"index":3,"time_ns":40,"process":1,"type":"ok","f":"add","redirects":[{"kind":"MOVED","from":"a","to":"b"}]}"#,
            r#"{"time_ns":40,"index":3,"process":1,"type":"ok","f":"add"}"#,
            r#"{"index":3,"time_ns":40,"process":1,"type":"ok","f":"a\"dd"}"#,
        ] {
            assert!(scan(line).is_none(), "{line}");
        }
    }

    #[test]
    fn joins_invokes_to_completions_and_bands_run_from_fault_to_heal() {
        let (_dir, path) = write(&[
            r#"{"index":0,"time_ns":10,"process":1,"type":"invoke","f":"add","key":"s1","value":1}"#,
            r#"{"index":1,"time_ns":20,"process":"nemesis","type":"invoke","f":"partition","value":null}"#,
            r#"{"index":2,"time_ns":25,"process":"nemesis","type":"ok","f":"partition","value":{"mechanism":"iptables"}}"#,
            r#"{"index":3,"time_ns":40,"process":1,"type":"info","f":"add","key":"s1","value":1,"redirects":[{"kind":"MOVED","slot":1,"from":"a","to":"b"}]}"#,
            r#"{"index":4,"time_ns":50,"process":"nemesis","type":"invoke","f":"heal","value":null}"#,
            r#"{"index":5,"time_ns":60,"process":"nemesis","type":"ok","f":"heal","value":null}"#,
            r#"{"index":6,"time_ns":70,"process":"nemesis","type":"invoke","f":"failover","value":null}"#,
            r#"{"index":7,"time_ns":80,"process":"nemesis","type":"ok","f":"failover","value":null}"#,
            r#"{"index":8,"time_ns":90,"process":2,"type":"invoke","f":"read","key":"s1"}"#,
            r#"{"index":9,"time_ns":95,"pro"#,
        ]);
        let d = HistoryDigest::read(&path).unwrap();
        assert_eq!(d.completions.len(), 1);
        assert_eq!(d.completions[0].invoke_ns, 10);
        assert_eq!(d.completions[0].latency_ns, 30);
        assert_eq!(d.completions[0].outcome, OpType::Info);
        assert_eq!(d.redirect_kinds, ["MOVED"]);
        assert_eq!(d.redirects[0].time_ns, 40);
        assert_eq!(d.unfinished, 1);
        assert_eq!(d.notes.len(), 1, "{:?}", d.notes);
        assert_eq!(d.mechanisms(), ["iptables"]);
        let bands = d.bands();
        assert_eq!(bands.len(), 2, "{bands:?}");
        assert_eq!((bands[0].start_ns, bands[0].end_ns), (20, 60));
        assert_eq!(bands[1].f, "failover");
        assert_eq!((bands[1].start_ns, bands[1].end_ns), (70, 90));
    }

    #[test]
    fn composed_faults_overlap_and_each_heal_closes_its_own_step() {
        let (_dir, path) = write(&[
            r#"{"index":0,"time_ns":10,"process":"nemesis","type":"invoke","f":"delay","value":null,"step":0,"group":0,"lane":0}"#,
            r#"{"index":1,"time_ns":12,"process":"nemesis","type":"ok","f":"delay","value":null}"#,
            r#"{"index":2,"time_ns":14,"process":"nemesis","type":"invoke","f":"partition","value":null,"step":1,"group":0,"lane":1}"#,
            r#"{"index":3,"time_ns":16,"process":"nemesis","type":"ok","f":"partition","value":null}"#,
            r#"{"index":4,"time_ns":20,"process":"nemesis","type":"invoke","f":"standalone-failover","value":null,"step":2,"group":0,"lane":2}"#,
            r#"{"index":5,"time_ns":30,"process":"nemesis","type":"ok","f":"standalone-failover","value":null}"#,
            r#"{"index":6,"time_ns":40,"process":"nemesis","type":"invoke","f":"heal","value":null,"of_step":1,"lane":1}"#,
            r#"{"index":7,"time_ns":45,"process":"nemesis","type":"ok","f":"heal","value":null}"#,
            r#"{"index":8,"time_ns":50,"process":"nemesis","type":"invoke","f":"heal","value":null,"of_step":0,"lane":0}"#,
            r#"{"index":9,"time_ns":60,"process":"nemesis","type":"ok","f":"heal","value":null}"#,
        ]);
        let bands = HistoryDigest::read(&path).unwrap().bands();
        let got: Vec<(&str, u64, u64)> = bands
            .iter()
            .map(|b| (b.f.as_str(), b.start_ns, b.end_ns))
            .collect();
        assert_eq!(
            got,
            vec![
                ("delay", 10, 60),
                ("partition", 14, 45),
                ("standalone-failover", 20, 30)
            ]
        );
    }

    #[test]
    fn settle_slots_is_a_heal_not_a_fault_band() {
        let (_dir, path) = write(&[
            r#"{"index":0,"time_ns":20,"process":"nemesis","type":"invoke","f":"migrate-slots","value":null}"#,
            r#"{"index":1,"time_ns":30,"process":"nemesis","type":"info","f":"migrate-slots","value":null}"#,
            r#"{"index":2,"time_ns":40,"process":"nemesis","type":"invoke","f":"settle-slots","value":null}"#,
            r#"{"index":3,"time_ns":50,"process":"nemesis","type":"ok","f":"settle-slots","value":null}"#,
        ]);
        let bands = HistoryDigest::read(&path).unwrap().bands();
        assert_eq!(bands.len(), 1, "{bands:?}");
        assert_eq!(bands[0].f, "migrate-slots");
        assert_eq!((bands[0].start_ns, bands[0].end_ns), (20, 50));
    }
}
