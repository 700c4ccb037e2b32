//! Reading `history.jsonl` one op at a time, without holding it.
//!
//! [`for_each_op`] has [`crate::read_jsonl`]'s rules (blank lines ignored, a torn last
//! line skipped and reported, a malformed line before the last one an error naming file
//! and line) but hands each op to a callback, in one reused [`Op`], with the byte offset
//! its line starts at; [`op_at`] reads one line back by that offset. A line exactly as
//! the [`crate::Recorder`] writes a client op (fields in [`Op`]'s order, no escapes, no
//! redirects or extra fields, an integer, string, `null` or array value) is read by hand;
//! anything else goes through serde, so both give the same [`Op`].

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use serde_json::Value;

use crate::reader::{hold_back, ReadError, Skipped};
use crate::{Op, OpType, Process};

/// Calls `each(offset, op)` for every op of the history at `path`, in file order.
/// Returns the torn last line, if there was one (it is not handed to `each`).
///
/// # Errors
/// [`ReadError::Io`] if the file cannot be read; [`ReadError::BadLine`] if a line other
/// than the last non-blank one is not an op (the ops before it have been handed out).
pub fn for_each_op(
    path: &Path,
    mut each: impl FnMut(u64, &Op),
) -> Result<Option<Skipped>, ReadError> {
    let io_err = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io_err)?;
    let mut op = Op::new(Process::Client(0), OpType::Invoke, "");
    let mut pending: Option<Skipped> = None;
    // `buf[start..end]` is unread; `base` is the file offset of `buf[0]`.
    let mut buf = vec![0u8; 1 << 22];
    let (mut start, mut end, mut base) = (0usize, 0usize, 0u64);
    let (mut eof, mut number) = (false, 0usize);
    loop {
        let line = match memchr::memchr(b'\n', &buf[start..end]) {
            Some(i) => &buf[start..start + i],
            None if eof && start < end => &buf[start..end],
            None if eof => break,
            None => {
                buf.copy_within(start..end, 0);
                base += start as u64;
                end -= start;
                start = 0;
                if end == buf.len() {
                    buf.resize(buf.len() * 2, 0);
                }
                match file.read(&mut buf[end..]).map_err(io_err)? {
                    0 => eof = true,
                    n => end += n,
                }
                continue;
            }
        };
        let at = base + start as u64;
        // Past the newline (or, for a last line without one, to the end).
        start = (start + line.len() + 1).min(end);
        number += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let parsed = parse_into(line, &mut op);
        if hold_back(path, &mut pending, number, parsed)?.is_some() {
            each(at, &op);
        }
    }
    Ok(pending)
}

/// The op whose line starts at byte `offset` of `path` (an offset [`for_each_op`] gave).
///
/// # Errors
/// If the file cannot be read there, or the line there is not an op.
pub fn op_at(path: &Path, offset: u64) -> Result<Op, ReadError> {
    let io_err = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io_err)?;
    file.seek(SeekFrom::Start(offset)).map_err(io_err)?;
    let mut line = Vec::new();
    BufReader::new(file)
        .read_until(b'\n', &mut line)
        .map_err(io_err)?;
    let line = line.strip_suffix(b"\n").unwrap_or(&line);
    let mut op = Op::new(Process::Client(0), OpType::Invoke, "");
    parse_into(line, &mut op).map_err(|e| ReadError::BadLine {
        path: path.to_path_buf(),
        line: 0,
        message: format!("at byte {offset}: {e}"),
    })?;
    Ok(op)
}

/// Parses one line into `op`, reusing its buffers when the line is in the recorder's own
/// shape.
fn parse_into(line: &[u8], op: &mut Op) -> Result<(), serde_json::Error> {
    if let Ok(text) = std::str::from_utf8(line) {
        if scan(text.trim_end_matches(|c: char| c.is_ascii_whitespace()), op).is_some() {
            return Ok(());
        }
    }
    *op = serde_json::from_slice(line)?;
    Ok(())
}

/// The hand-written reader: `None` (with `op` in any state) for anything not in the
/// recorder's exact shape.
fn scan(text: &str, op: &mut Op) -> Option<()> {
    let rest = text.strip_prefix("{\"index\":")?;
    let (index, rest) = number(rest)?;
    let rest = rest.strip_prefix(",\"time_ns\":")?;
    let (time_ns, rest) = number(rest)?;
    let rest = rest.strip_prefix(",\"process\":")?;
    let (process, rest) = if let Some(rest) = rest.strip_prefix("\"nemesis\"") {
        (Process::Nemesis, rest)
    } else {
        let (p, rest) = number(rest)?;
        (Process::Client(p), rest)
    };
    let rest = rest.strip_prefix(",\"type\":")?;
    let (kind, rest) = plain_string(rest)?;
    let kind = match kind {
        "invoke" => OpType::Invoke,
        "ok" => OpType::Ok,
        "fail" => OpType::Fail,
        "info" => OpType::Info,
        _ => return None,
    };
    let rest = rest.strip_prefix(",\"f\":")?;
    let (f, rest) = plain_string(rest)?;
    let (key, rest) = match rest.strip_prefix(",\"key\":") {
        Some(rest) => {
            let (k, rest) = plain_string(rest)?;
            (Some(k), rest)
        }
        None => (None, rest),
    };
    let rest = rest.strip_prefix(",\"value\":")?;
    let (value, rest) = value(rest)?;
    let (node, rest) = optional_string(rest, ",\"node\":")?;
    let (error, rest) = optional_string(rest, ",\"error\":")?;
    if rest != "}" {
        return None;
    }
    op.index = index;
    op.time_ns = time_ns;
    op.process = process;
    op.kind = kind;
    set(&mut op.f, f);
    set_opt(&mut op.key, key);
    op.value = value;
    set_opt(&mut op.node, node);
    set_opt(&mut op.error, error);
    op.redirects.clear();
    op.extra.clear();
    Some(())
}

fn set(to: &mut String, from: &str) {
    to.clear();
    to.push_str(from);
}

fn set_opt(to: &mut Option<String>, from: Option<&str>) {
    match (to.as_mut(), from) {
        (Some(s), Some(f)) => set(s, f),
        (_, f) => *to = f.map(str::to_string),
    }
}

/// `,"name":"text"` if `rest` starts with `field` (which includes the comma and colon).
fn optional_string<'a>(rest: &'a str, field: &str) -> Option<(Option<&'a str>, &'a str)> {
    match rest.strip_prefix(field) {
        Some(rest) => {
            let (s, rest) = plain_string(rest)?;
            Some((Some(s), rest))
        }
        None => Some((None, rest)),
    }
}

/// A JSON string with no escapes and no control characters, and what follows it.
fn plain_string(text: &str) -> Option<(&str, &str)> {
    let bytes = text.as_bytes();
    if bytes.first() != Some(&b'"') {
        return None;
    }
    for (i, &b) in bytes[1..].iter().enumerate() {
        match b {
            b'"' => return Some((&text[1..1 + i], &text[i + 2..])),
            b'\\' | 0..=0x1f => return None,
            _ => {}
        }
    }
    None
}

/// A decimal u64 (no sign, no leading zeros) and what follows it.
fn number(text: &str) -> Option<(u64, &str)> {
    let bytes = text.as_bytes();
    let mut n = 0u64;
    let mut len = 0;
    while let Some(&b) = bytes.get(len) {
        if !b.is_ascii_digit() {
            break;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        len += 1;
    }
    if len == 0 || (len > 1 && bytes[0] == b'0') {
        return None;
    }
    Some((n, &text[len..]))
}

/// The value: an integer or a plain string by hand, `null`, an array through serde.
fn value(text: &str) -> Option<(Value, &str)> {
    match text.as_bytes().first()? {
        b'n' => Some((Value::Null, text.strip_prefix("null")?)),
        b'"' => {
            let (s, rest) = plain_string(text)?;
            Some((Value::String(s.to_string()), rest))
        }
        b'-' => {
            let (n, rest) = number(&text[1..])?;
            let n = i64::try_from(n).ok()?.checked_neg()?;
            if n == 0 {
                return None;
            }
            float_follows(rest)?;
            Some((Value::from(n), rest))
        }
        b'0'..=b'9' => {
            let (n, rest) = number(text)?;
            float_follows(rest)?;
            Some((Value::from(n), rest))
        }
        b'[' => {
            // An array delimits itself: the stream stops right after its `]`.
            let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
            let v = stream.next()?.ok()?;
            Some((v, &text[stream.byte_offset()..]))
        }
        _ => None,
    }
}

/// `None` if a number continues as a float (`.` or an exponent), which serde reads.
fn float_follows(rest: &str) -> Option<()> {
    match rest.as_bytes().first() {
        Some(b'.' | b'e' | b'E') => None,
        _ => Some(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read_jsonl;

    fn file(name: &str, text: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("faultline-op-stream-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("history.jsonl");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Lines in and just outside the recorder's shape: the hand reader and serde must
    /// agree on every one.
    const LINES: &[&str] = &[
        r#"{"index":0,"time_ns":1,"process":0,"type":"invoke","f":"add","key":"k","value":1}"#,
        r#"{"index":1,"time_ns":2,"process":0,"type":"ok","f":"add","key":"k","value":1,"node":"n1"}"#,
        r#"{"index":2,"time_ns":3,"process":3,"type":"fail","f":"add","key":"k","value":-7,"node":"n2","error":"CLUSTERDOWN"}"#,
        r#"{"index":3,"time_ns":4,"process":3,"type":"invoke","f":"read","key":"k","value":null}"#,
        r#"{"index":4,"time_ns":5,"process":3,"type":"ok","f":"read","key":"k","value":["1","2", 3,[]],"node":"n1"}"#,
        r#"{"index":5,"time_ns":6,"process":"nemesis","type":"invoke","f":"partition","value":null,"nodes":["n1"]}"#,
        r#"{"index":6,"time_ns":7,"process":4,"type":"info","f":"add","key":"k\"q","value":1.5,"error":"timed out"}"#,
        r#"{"index":7,"time_ns":8,"process":4,"type":"ok","f":"add","key":"k","value":"x\u0041","redirects":[{"kind":"MOVED","slot":1,"from":"a","to":"b"}]}"#,
        r#"{"time_ns":9,"index":8,"process":5,"type":"invoke","f":"add","value":18446744073709551615}"#,
        r#"{"index":9,"time_ns":10,"process":5,"type":"ok","f":"add","key":"k","value":-9223372036854775808}"#,
        r#"{"index":10,"time_ns":11,"process":5,"type":"ok","f":"add","key":"k","value":1e3}  "#,
        r#"{"index":11,"time_ns":12,"process":6,"type":"invoke","f":"add","key":"ü","value":"-0"}"#,
    ];

    #[test]
    fn the_hand_reader_and_serde_give_the_same_ops_and_offsets_find_them_again() {
        let text = LINES.join("\n") + "\n";
        let path = file("same", &text);
        let expected = read_jsonl::<Op>(&path).unwrap().records;
        let mut got = Vec::new();
        let torn = for_each_op(&path, |at, op| got.push((at, op.clone()))).unwrap();
        assert!(torn.is_none());
        assert_eq!(got.len(), expected.len());
        for ((at, op), want) in got.iter().zip(&expected) {
            assert_eq!(op, want);
            assert_eq!(&op_at(&path, *at).unwrap(), want);
        }
    }

    #[test]
    fn torn_last_line_and_bad_middle_line_as_read_jsonl() {
        let torn = format!("{}\n\n{}\n{{\"index\":2,\"ti", LINES[0], LINES[1]);
        let path = file("torn", &torn);
        let mut n = 0;
        let skipped = for_each_op(&path, |_, _| n += 1).unwrap().unwrap();
        let reference = read_jsonl::<Op>(&path).unwrap().skipped.unwrap();
        assert_eq!((n, &skipped), (2, &reference));

        let torn_value = format!("{}\n{}", LINES[0], &LINES[1][..LINES[1].len() - 12]);
        let path = file("torn-value", &torn_value);
        let skipped = for_each_op(&path, |_, _| {}).unwrap().unwrap();
        assert_eq!(skipped, read_jsonl::<Op>(&path).unwrap().skipped.unwrap());

        let no_newline = format!("{}\n{}", LINES[0], LINES[1]);
        let path = file("no-newline", &no_newline);
        let mut n = 0;
        assert!(for_each_op(&path, |_, _| n += 1).unwrap().is_none());
        assert_eq!(n, 2);

        let path = file("middle", &format!("{}\nnope\n{}\n", LINES[0], LINES[1]));
        let err = for_each_op(&path, |_, _| {}).unwrap_err();
        assert!(matches!(err, ReadError::BadLine { line: 2, .. }), "{err}");
        assert_eq!(
            err.to_string(),
            read_jsonl::<Op>(&path).unwrap_err().to_string()
        );
    }

    #[test]
    fn a_line_longer_than_the_read_buffer_is_read_whole() {
        let members: Vec<String> = (0..700_000).map(|i| format!("\"{i}\"")).collect();
        let read = format!(
            r#"{{"index":1,"time_ns":2,"process":0,"type":"ok","f":"read","key":"k","value":[{}]}}"#,
            members.join(",")
        );
        assert!(read.len() > 1 << 22);
        let path = file("long", &format!("{}\n{read}\n{}\n", LINES[0], LINES[1]));
        let mut got = Vec::new();
        for_each_op(&path, |at, op| {
            got.push((at, op.value.as_array().map(Vec::len)))
        })
        .unwrap();
        let second = LINES[0].len() as u64 + 1;
        let third = second + read.len() as u64 + 1;
        assert_eq!(got, [(0, None), (second, Some(700_000)), (third, None)]);
    }
}
