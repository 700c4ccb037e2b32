//! [`Frame`]: one RESP value, as clients send commands and as the node answers. Replies
//! are written in RESP2 ([`Frame::encode`]) or, to a client that sent `HELLO 3`, in RESP3
//! ([`Frame::encode3`]: `_` for null, `%` maps, `~` sets); maps and sets are flat arrays
//! in RESP2, as Redis sends them.

use std::fmt::Write as _;

/// A RESP2 value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// `+text`.
    Simple(String),
    /// `-text`: an error reply (the first word is its code: `ERR`, `MOVED`, ...).
    Error(String),
    /// `:n`.
    Integer(i64),
    /// `$len` then the bytes.
    Bulk(Vec<u8>),
    /// `$-1`: no value.
    Null,
    /// `*n` then n frames.
    Array(Vec<Frame>),
    /// RESP3 `%n` then n key/value pairs (RESP2: a flat array of 2n frames).
    Map(Vec<(Frame, Frame)>),
    /// RESP3 `~n` then n frames (RESP2: an array).
    Set(Vec<Frame>),
}

/// Why bytes are not RESP.
#[derive(Debug)]
pub struct ProtocolError(pub String);

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Protocol error: {}", self.0)
    }
}

impl std::error::Error for ProtocolError {}

impl Frame {
    /// `+OK`.
    pub fn ok() -> Frame {
        Frame::Simple("OK".into())
    }

    /// An error reply from its text (`ERR ...`, `MOVED ...`).
    pub fn err(text: impl Into<String>) -> Frame {
        Frame::Error(text.into())
    }

    /// A bulk string from text.
    pub fn bulk(text: impl AsRef<[u8]>) -> Frame {
        Frame::Bulk(text.as_ref().to_vec())
    }

    /// A command as an array of bulk strings (how replication re-sends writes).
    pub fn command(args: &[Vec<u8>]) -> Frame {
        Frame::Array(args.iter().map(|a| Frame::Bulk(a.clone())).collect())
    }

    /// Parses one frame from the start of `buf`.
    ///
    /// # Returns
    /// `Ok(None)` when `buf` holds only part of a frame; otherwise the frame and how many
    /// bytes it took. A line not starting with a RESP type byte is an inline command
    /// (words split on spaces), as `redis-cli` and telnet users send.
    ///
    /// # Errors
    /// When the bytes cannot be RESP.
    pub fn parse(buf: &[u8]) -> Result<Option<(Frame, usize)>, ProtocolError> {
        let mut pos = 0;
        match parse_at(buf, &mut pos, 0)? {
            Some(f) => Ok(Some((f, pos))),
            None => Ok(None),
        }
    }

    /// Appends the frame's RESP2 wire form to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.encode_as(out, false);
    }

    /// Appends the frame's RESP3 wire form to `out` (`HELLO 3`).
    pub fn encode3(&self, out: &mut Vec<u8>) {
        self.encode_as(out, true);
    }

    fn encode_as(&self, out: &mut Vec<u8>, resp3: bool) {
        let header = |out: &mut Vec<u8>, kind: char, n: usize| {
            let mut s = String::new();
            let _ = write!(s, "{kind}{n}\r\n");
            out.extend_from_slice(s.as_bytes());
        };
        match self {
            Frame::Simple(s) => {
                out.push(b'+');
                out.extend_from_slice(s.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            Frame::Error(s) => {
                out.push(b'-');
                out.extend_from_slice(s.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            Frame::Integer(n) => {
                let mut s = String::new();
                let _ = write!(s, ":{n}\r\n");
                out.extend_from_slice(s.as_bytes());
            }
            Frame::Bulk(b) => {
                let mut s = String::new();
                let _ = write!(s, "${}\r\n", b.len());
                out.extend_from_slice(s.as_bytes());
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            Frame::Null if resp3 => out.extend_from_slice(b"_\r\n"),
            Frame::Null => out.extend_from_slice(b"$-1\r\n"),
            Frame::Array(items) => {
                header(out, '*', items.len());
                for i in items {
                    i.encode_as(out, resp3);
                }
            }
            Frame::Set(items) => {
                header(out, if resp3 { '~' } else { '*' }, items.len());
                for i in items {
                    i.encode_as(out, resp3);
                }
            }
            Frame::Map(pairs) => {
                if resp3 {
                    header(out, '%', pairs.len());
                } else {
                    header(out, '*', 2 * pairs.len());
                }
                for (k, v) in pairs {
                    k.encode_as(out, resp3);
                    v.encode_as(out, resp3);
                }
            }
        }
    }

    /// The frame as a command's arguments (an array of bulk strings).
    ///
    /// # Errors
    /// When it is anything else.
    pub fn into_args(self) -> Result<Vec<Vec<u8>>, ProtocolError> {
        match self {
            Frame::Array(items) => items
                .into_iter()
                .map(|f| match f {
                    Frame::Bulk(b) => Ok(b),
                    Frame::Simple(s) => Ok(s.into_bytes()),
                    Frame::Integer(n) => Ok(n.to_string().into_bytes()),
                    other => Err(ProtocolError(format!(
                        "expected a bulk string, got {other:?}"
                    ))),
                })
                .collect(),
            other => Err(ProtocolError(format!("expected an array, got {other:?}"))),
        }
    }
}

/// Deepest nesting accepted (commands are flat; replies a few levels deep).
const MAX_DEPTH: usize = 8;
/// Longest bulk string accepted (Redis's `proto-max-bulk-len` default).
const MAX_BULK: usize = 512 << 20;

fn line(buf: &[u8], pos: &mut usize) -> Option<Vec<u8>> {
    let start = *pos;
    let end = buf[start..].windows(2).position(|w| w == b"\r\n")?;
    *pos = start + end + 2;
    Some(buf[start..start + end].to_vec())
}

fn number(text: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            ProtocolError(format!(
                "invalid length {:?}",
                String::from_utf8_lossy(text)
            ))
        })
}

fn parse_at(buf: &[u8], pos: &mut usize, depth: usize) -> Result<Option<Frame>, ProtocolError> {
    if depth > MAX_DEPTH {
        return Err(ProtocolError("nesting too deep".into()));
    }
    let Some(&kind) = buf.get(*pos) else {
        return Ok(None);
    };
    if !matches!(kind, b'+' | b'-' | b':' | b'$' | b'*') {
        // Inline command: one line of space-separated words.
        let Some(l) = line(buf, pos) else {
            return Ok(None);
        };
        let words = l
            .split(|&b| b == b' ')
            .filter(|w| !w.is_empty())
            .map(|w| Frame::Bulk(w.to_vec()))
            .collect();
        return Ok(Some(Frame::Array(words)));
    }
    let mut p = *pos + 1;
    let Some(l) = line(buf, &mut p) else {
        return Ok(None);
    };
    let text = || String::from_utf8_lossy(&l).into_owned();
    let frame = match kind {
        b'+' => Frame::Simple(text()),
        b'-' => Frame::Error(text()),
        b':' => Frame::Integer(number(&l)?),
        b'$' => {
            let n = number(&l)?;
            if n < 0 {
                Frame::Null
            } else {
                let n = n as usize;
                if n > MAX_BULK {
                    return Err(ProtocolError("invalid bulk length".into()));
                }
                if buf.len() < p + n + 2 {
                    return Ok(None);
                }
                let b = buf[p..p + n].to_vec();
                p += n + 2;
                Frame::Bulk(b)
            }
        }
        _ => {
            let n = number(&l)?;
            if n < 0 {
                Frame::Null
            } else {
                let mut items = Vec::with_capacity((n as usize).min(1024));
                for _ in 0..n {
                    match parse_at(buf, &mut p, depth + 1)? {
                        Some(f) => items.push(f),
                        None => return Ok(None),
                    }
                }
                Frame::Array(items)
            }
        }
    };
    *pos = p;
    Ok(Some(frame))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_partial() {
        let f = Frame::Array(vec![
            Frame::bulk("SET"),
            Frame::bulk("k"),
            Frame::Integer(3),
        ]);
        let mut out = Vec::new();
        f.encode(&mut out);
        assert_eq!(Frame::parse(&out).unwrap().unwrap(), (f, out.len()));
        assert!(Frame::parse(&out[..out.len() - 1]).unwrap().is_none());
    }

    #[test]
    fn inline_commands_are_words() {
        let (f, n) = Frame::parse(b"PING  hello\r\n").unwrap().unwrap();
        assert_eq!(n, 13);
        assert_eq!(
            f.into_args().unwrap(),
            vec![b"PING".to_vec(), b"hello".to_vec()]
        );
    }
}
