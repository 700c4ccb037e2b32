//! Histories written by other tools, read as faultline [`Op`]s; and faultline histories
//! written for them (Jepsen `history.edn`).
//!
//! [`detect`] tells the format from the content alone:
//! - faultline JSONL: a line starting `{"`;
//! - Jepsen `history.edn` (and Porcupine's kv logs, which are the same op maps): EDN maps,
//!   one per line or in one vector;
//! - Porcupine's etcd logs (Jepsen 0.0.x console output):
//!   `INFO  jepsen.util - <process>\t:<type>\t:<f>\t<value>`.
//!
//! Op maps become [`Op`]s field by field: `:process` (an integer, or `:nemesis`), `:type`,
//! `:f` (its name), `:key` (a string, or any value written as EDN text), `:value` (EDN to
//! JSON: keywords become their names, vectors arrays, `nil` null), `:time` (nanoseconds),
//! `:index`; `:node` and `:error` as strings; anything else into [`Op::extra`]. In an etcd
//! log an `:info` or `:fail` completion whose value is a keyword (`:timed-out`) keeps the
//! invoke's value and carries the keyword as its `error`. Times absent from the file are the
//! op's position, which keeps real-time order.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::edn::{self, Edn};
use crate::op::{Op, OpType, Process};

/// A history file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// faultline's `history.jsonl`.
    Jsonl,
    /// Jepsen's `history.edn` (EDN op maps), also Porcupine's kv logs.
    JepsenEdn,
    /// Porcupine's etcd logs (`INFO  jepsen.util - ...`).
    EtcdLog,
}

impl Format {
    /// A name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "faultline JSONL",
            Format::JepsenEdn => "Jepsen EDN",
            Format::EtcdLog => "Jepsen etcd log",
        }
    }
}

/// Why a history file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    /// The content matches no format faultline reads.
    #[error("not a history faultline reads (faultline JSONL, Jepsen history.edn, a Porcupine etcd log or kv EDN): {0}")]
    Unrecognised(String),
    /// A line or form is malformed.
    #[error("line {line}: {message}")]
    Bad {
        /// 1-based line.
        line: usize,
        /// What was wrong.
        message: String,
    },
}

fn bad(line: usize, message: impl Into<String>) -> ImportError {
    ImportError::Bad {
        line,
        message: message.into(),
    }
}

/// The format of `text`, from its first non-blank, non-comment line.
///
/// # Errors
/// [`ImportError::Unrecognised`] naming what the file starts with.
pub fn detect(text: &str) -> Result<Format, ImportError> {
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with(';'))
        .ok_or_else(|| ImportError::Unrecognised("the file is empty".into()))?;
    if first.starts_with("{\"") || first == "{" && text.contains("\"type\"") {
        return Ok(Format::Jsonl);
    }
    if first.starts_with('{') || first.starts_with('[') {
        return Ok(Format::JepsenEdn);
    }
    if text.lines().any(|l| etcd_fields(l).is_some()) {
        return Ok(Format::EtcdLog);
    }
    let shown: String = first.chars().take(60).collect();
    Err(ImportError::Unrecognised(format!(
        "it starts with {shown:?}"
    )))
}

/// Reads `text` in `format`.
///
/// # Errors
/// The first malformed line or form, with its line number.
pub fn parse(text: &str, format: Format) -> Result<Vec<Op>, ImportError> {
    match format {
        Format::Jsonl => parse_jsonl(text),
        Format::JepsenEdn => parse_edn(text),
        Format::EtcdLog => parse_etcd(text),
    }
}

fn parse_jsonl(text: &str) -> Result<Vec<Op>, ImportError> {
    let mut ops = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let last = lines.iter().rposition(|l| !l.trim().is_empty());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Op>(line) {
            Ok(op) => ops.push(op),
            // A torn last line is what a killed run leaves: read what came before it.
            Err(_) if Some(i) == last => {}
            Err(e) => return Err(bad(i + 1, e.to_string())),
        }
    }
    Ok(ops)
}

fn parse_edn(text: &str) -> Result<Vec<Op>, ImportError> {
    let mut reader = edn::Reader::new(text);
    let mut ops = Vec::new();
    let to_err = |e: edn::EdnError| bad(e.line, format!("column {}: {}", e.column, e.message));
    while let Some(form) = reader.next_value().map_err(to_err)? {
        let line = reader.value_line();
        match form {
            Edn::Vector(items) | Edn::List(items) => {
                for item in &items {
                    ops.push(op_from_map(item, line, ops.len())?);
                }
            }
            map => ops.push(op_from_map(&map, line, ops.len())?),
        }
    }
    Ok(ops)
}

fn op_from_map(map: &Edn, line: usize, position: usize) -> Result<Op, ImportError> {
    let Edn::Map(entries) = map else {
        return Err(bad(line, format!("expected an op map, found {map}")));
    };
    let process = match map.get("process") {
        Some(Edn::Int(n)) if *n >= 0 => Process::Client(*n as u64),
        Some(Edn::Keyword(k)) if k == "nemesis" => Process::Nemesis,
        Some(other) => {
            return Err(bad(
                line,
                format!(":process {other} is not a client number or :nemesis"),
            ))
        }
        None => return Err(bad(line, "op map without :process")),
    };
    let kind = match map.get("type").and_then(Edn::as_keyword) {
        Some(t) => op_type(t)
            .ok_or_else(|| bad(line, format!(":type :{t} is not invoke, ok, fail or info")))?,
        None => return Err(bad(line, "op map without a :type keyword")),
    };
    let f = match map.get("f") {
        Some(Edn::Keyword(k) | Edn::Symbol(k) | Edn::Str(k)) => k.clone(),
        Some(other) => other.to_string(),
        None => return Err(bad(line, "op map without :f")),
    };
    let mut op = Op::new(process, kind, f);
    op.index = position as u64;
    op.time_ns = position as u64;
    for (k, v) in entries {
        let name = match k {
            Edn::Keyword(n) => n.as_str(),
            _ => continue,
        };
        match name {
            "process" | "type" | "f" => {}
            "key" => {
                op.key = Some(match v {
                    Edn::Str(s) => s.clone(),
                    other => other.to_string(),
                })
            }
            "value" => op.value = edn::to_json(v),
            "time" => {
                if let Edn::Int(t) = v {
                    op.time_ns = (*t).max(0) as u64;
                }
            }
            "index" => {
                if let Edn::Int(i) = v {
                    op.index = (*i).max(0) as u64;
                }
            }
            "node" => op.node = Some(plain(v)),
            "error" => op.error = Some(plain(v)),
            "redirects" => {
                op.redirects = serde_json::from_value(edn::to_json(v))
                    .map_err(|e| bad(line, format!(":redirects {v}: {e}")))?
            }
            other => {
                op.extra.insert(other.to_string(), edn::to_json(v));
            }
        }
    }
    Ok(op)
}

fn plain(v: &Edn) -> String {
    match v {
        Edn::Str(s) | Edn::Keyword(s) => s.clone(),
        other => other.to_string(),
    }
}

fn op_type(name: &str) -> Option<OpType> {
    Some(match name {
        "invoke" => OpType::Invoke,
        "ok" => OpType::Ok,
        "fail" => OpType::Fail,
        "info" => OpType::Info,
        _ => return None,
    })
}

/// `(process, type, f, value)` of an etcd log line, if it is one.
fn etcd_fields(line: &str) -> Option<(&str, &str, &str, &str)> {
    let rest = line.strip_prefix("INFO")?.trim_start();
    let rest = rest.strip_prefix("jepsen.util")?.trim_start();
    let rest = rest.strip_prefix('-')?.trim_start();
    // Fields are separated by tabs, or by runs of spaces in some logs; the value (the
    // rest of the line) may itself hold spaces (`[3 0]`).
    let mut rest = rest;
    let mut field = || {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (f, r) = rest.split_at(end);
        rest = r.trim_start();
        f
    };
    let process = field();
    let kind = field().strip_prefix(':')?;
    let f = field().strip_prefix(':')?;
    if process.is_empty() || kind.is_empty() || f.is_empty() {
        return None;
    }
    Some((process, kind, f, rest.trim_end()))
}

fn parse_etcd(text: &str) -> Result<Vec<Op>, ImportError> {
    let mut ops: Vec<Op> = Vec::new();
    // The invoke value of each process's pending op, for info/fail lines that say only
    // `:timed-out`.
    let mut pending: std::collections::HashMap<Process, Value> = Default::default();
    for (i, line) in text.lines().enumerate() {
        let Some((process, kind, f, value)) = etcd_fields(line) else {
            continue;
        };
        let lineno = i + 1;
        let process = match process {
            "nemesis" | ":nemesis" => Process::Nemesis,
            p => Process::Client(
                p.parse()
                    .map_err(|_| bad(lineno, format!("process {p:?} is not a number")))?,
            ),
        };
        let kind = op_type(kind)
            .ok_or_else(|| bad(lineno, format!(":{kind} is not invoke, ok, fail or info")))?;
        let parsed = if value.is_empty() {
            Edn::Nil
        } else {
            let mut forms = edn::parse_all(value)
                .map_err(|e| bad(lineno, format!("value {value:?}: {}", e.message)))?;
            if forms.len() != 1 {
                return Err(bad(lineno, format!("value {value:?} is not one EDN form")));
            }
            forms.remove(0)
        };
        let position = ops.len() as u64;
        let mut op = Op::new(process, kind, f);
        op.index = position;
        op.time_ns = position;
        match (&parsed, kind) {
            (Edn::Keyword(k), OpType::Info | OpType::Fail) => {
                op.value = pending.get(&process).cloned().unwrap_or(Value::Null);
                op.error = Some(k.clone());
            }
            _ => op.value = edn::to_json(&parsed),
        }
        if kind == OpType::Invoke {
            pending.insert(process, op.value.clone());
        } else {
            pending.remove(&process);
        }
        ops.push(op);
    }
    if ops.is_empty() {
        return Err(bad(1, "no `INFO  jepsen.util - ` op lines"));
    }
    Ok(ops)
}

/// Writes `ops` as Jepsen `history.edn`: one op map per line, with `:index`, `:time`
/// (nanoseconds), `:type`, `:process` (`:nemesis` for the nemesis), `:f` and `:value`
/// first, then `:key`, `:node`, `:error` and every other field of the line, keys as
/// keywords. [`parse`] reads it back as the same ops.
pub fn to_edn(ops: &[Op]) -> String {
    let mut out = String::with_capacity(ops.len() * 96);
    for op in ops {
        let kind = match op.kind {
            OpType::Invoke => "invoke",
            OpType::Ok => "ok",
            OpType::Fail => "fail",
            OpType::Info => "info",
        };
        let process = match op.process {
            Process::Client(n) => n.to_string(),
            Process::Nemesis => ":nemesis".to_string(),
        };
        let f = keyword_or_string(&op.f);
        let _ = write!(
            out,
            "{{:index {}, :time {}, :type :{kind}, :process {process}, :f {f}, :value {}",
            op.index,
            op.time_ns,
            edn::from_json(&op.value)
        );
        if let Some(key) = &op.key {
            let _ = write!(out, ", :key {}", Edn::Str(key.clone()));
        }
        if let Some(node) = &op.node {
            let _ = write!(out, ", :node {}", Edn::Str(node.clone()));
        }
        if let Some(error) = &op.error {
            let _ = write!(out, ", :error {}", Edn::Str(error.clone()));
        }
        if !op.redirects.is_empty() {
            let redirects = serde_json::to_value(&op.redirects).unwrap_or(Value::Null);
            let _ = write!(out, ", :redirects {}", edn::from_json(&redirects));
        }
        let extra: &Map<String, Value> = &op.extra;
        for (k, v) in extra {
            if is_keyword_name(k) {
                let _ = write!(out, ", :{k} {}", edn::from_json(v));
            }
        }
        out.push_str("}\n");
    }
    out
}

fn is_keyword_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| {
            c.is_alphanumeric()
                || matches!(c, '-' | '_' | '?' | '!' | '*' | '+' | '.' | '<' | '>' | '=')
        })
}

fn keyword_or_string(s: &str) -> String {
    if is_keyword_name(s) {
        format!(":{s}")
    } else {
        Edn::Str(s.to_string()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ETCD: &str = "INFO  jepsen.util - 0\t:invoke\t:read\tnil\n\
INFO  jepsen.util - 1\t:invoke\t:write\t4\n\
INFO  jepsen.util - 0\t:ok\t:read\tnil\n\
some other log line\n\
INFO  jepsen.util - 2\t:invoke\t:cas\t[4 1]\n\
INFO  jepsen.util - 1\t:info\t:write\t:timed-out\n\
INFO  jepsen.util - 2\t:fail\t:cas\t[4 1]\n\
INFO  jepsen.util - 3   :invoke :cas    [1 2]\n";

    #[test]
    fn detects_each_format() {
        assert_eq!(
            detect("{\"index\":0,\"process\":1}\n").unwrap(),
            Format::Jsonl
        );
        assert_eq!(detect("\n{:type :invoke}\n").unwrap(), Format::JepsenEdn);
        assert_eq!(detect("[{:type :invoke}]").unwrap(), Format::JepsenEdn);
        assert_eq!(
            detect("; comment\n{:process 0}").unwrap(),
            Format::JepsenEdn
        );
        assert_eq!(detect(ETCD).unwrap(), Format::EtcdLog);
        assert!(matches!(detect(""), Err(ImportError::Unrecognised(_))));
        assert!(matches!(
            detect("hello\n"),
            Err(ImportError::Unrecognised(_))
        ));
    }

    #[test]
    fn etcd_log_lines_become_ops_and_timeouts_keep_the_invoke_value() {
        let ops = parse(ETCD, Format::EtcdLog).unwrap();
        assert_eq!(ops.len(), 7);
        assert_eq!(
            ops[6].value,
            serde_json::json!([1, 2]),
            "space-separated fields"
        );
        assert_eq!(ops[1].f, "write");
        assert_eq!(ops[1].value, Value::from(4));
        assert_eq!(ops[2].value, Value::Null);
        assert_eq!(ops[3].value, serde_json::json!([4, 1]));
        assert_eq!(ops[4].kind, OpType::Info);
        assert_eq!(ops[4].value, Value::from(4));
        assert_eq!(ops[4].error.as_deref(), Some("timed-out"));
        assert_eq!(ops[5].kind, OpType::Fail);
        assert_eq!(ops[5].error, None);
        assert_eq!(ops[5].time_ns, 5);
    }

    #[test]
    fn kv_maps_become_keyed_ops() {
        let text = "{:process 0, :type :invoke, :f :get, :key \"4\", :value nil}\n\
{:process 0, :type :ok, :f :get, :key \"4\", :value \"x 0 1 y\"}\n";
        let ops = parse(text, detect(text).unwrap()).unwrap();
        assert_eq!(ops[1].key.as_deref(), Some("4"));
        assert_eq!(ops[1].value, Value::from("x 0 1 y"));
        assert_eq!(ops[1].kind, OpType::Ok);
        assert_eq!(ops[1].process, Process::Client(0));
    }

    #[test]
    fn bad_input_names_the_line() {
        let e = parse(
            "{:process 0, :type :invoke, :f :get}\n{:process 0 :type}",
            Format::JepsenEdn,
        )
        .unwrap_err();
        assert!(matches!(e, ImportError::Bad { line: 2, .. }), "{e}");
        let e = parse("{:process x, :type :invoke, :f :get}", Format::JepsenEdn).unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
        let e = parse("{:process 1, :type :begin, :f :get}", Format::JepsenEdn).unwrap_err();
        assert!(e.to_string().contains(":begin"), "{e}");
        let e = parse(
            "{\"process\":1}\n{\"process\":2,\"type\":\"ok\",\"f\":\"x\"}",
            Format::Jsonl,
        )
        .unwrap_err();
        assert!(matches!(e, ImportError::Bad { line: 1, .. }), "{e}");
    }

    #[test]
    fn edn_export_round_trips() {
        let text = r#"{"index":0,"time_ns":5,"process":3,"type":"invoke","f":"cas","key":"r1","value":[1,2]}
{"index":1,"time_ns":9,"process":3,"type":"fail","f":"cas","key":"r1","value":[1,2],"node":"n1","error":"x\"y","redirects":[{"kind":"MOVED","slot":7,"from":"a:1","to":"b:2"}]}
{"index":2,"time_ns":10,"process":"nemesis","type":"info","f":"partition","value":null,"shape":"halves","nodes":["n1"]}
"#;
        let ops = parse(text, Format::Jsonl).unwrap();
        let edn = to_edn(&ops);
        assert_eq!(detect(&edn).unwrap(), Format::JepsenEdn);
        let back = parse(&edn, Format::JepsenEdn).unwrap();
        assert_eq!(back, ops);
    }
}
