//! A small EDN reader and writer: enough of Clojure's data notation for Jepsen's
//! `history.edn` and Porcupine's kv logs (one op map per line, or a vector of them).
//!
//! The reader takes nil, booleans, integers (with an `N` suffix), floats (with `M`),
//! strings with escapes, characters, keywords, symbols, lists, vectors, maps, sets, tagged
//! values (`#inst "..."`, kept with their tag), `#_` discards and `;` comments; commas are
//! whitespace. Every error names the line and column where it happened.

use std::fmt::{self, Write as _};

/// One EDN value.
#[derive(Debug, Clone, PartialEq)]
pub enum Edn {
    /// `nil`.
    Nil,
    /// `true` / `false`.
    Bool(bool),
    /// An integer that fits in 64 bits.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string.
    Str(String),
    /// A character (`\a`, `\newline`).
    Char(char),
    /// A keyword, without its colon (`:invoke` is `Keyword("invoke")`).
    Keyword(String),
    /// A symbol.
    Symbol(String),
    /// `( ... )`.
    List(Vec<Edn>),
    /// `[ ... ]`.
    Vector(Vec<Edn>),
    /// `{ ... }`, in the order written.
    Map(Vec<(Edn, Edn)>),
    /// `#{ ... }`.
    Set(Vec<Edn>),
    /// `#tag value`.
    Tagged(String, Box<Edn>),
}

impl Edn {
    /// The value under keyword `key` when this is a map.
    pub fn get(&self, key: &str) -> Option<&Edn> {
        match self {
            Edn::Map(entries) => entries.iter().find_map(|(k, v)| match k {
                Edn::Keyword(name) if name == key => Some(v),
                _ => None,
            }),
            _ => None,
        }
    }

    /// The keyword's name, if this is one.
    pub fn as_keyword(&self) -> Option<&str> {
        match self {
            Edn::Keyword(k) => Some(k),
            _ => None,
        }
    }
}

/// Where reading EDN failed, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct EdnError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// What was wrong.
    pub message: String,
}

/// Reads every top-level value in `text`.
///
/// # Errors
/// The first syntax error, with its line and column.
pub fn parse_all(text: &str) -> Result<Vec<Edn>, EdnError> {
    let mut r = Reader::new(text);
    let mut out = Vec::new();
    while let Some(v) = r.next_value()? {
        out.push(v);
    }
    Ok(out)
}

/// A streaming reader over EDN text: [`Reader::next_value`] gives one top-level value at a
/// time, with the line it started on from [`Reader::value_line`].
pub struct Reader<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
    column: usize,
    start_line: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `text`.
    pub fn new(text: &'a str) -> Reader<'a> {
        Reader {
            text,
            pos: 0,
            line: 1,
            column: 1,
            start_line: 1,
        }
    }

    /// The line the value last returned by [`Reader::next_value`] started on.
    pub fn value_line(&self) -> usize {
        self.start_line
    }

    /// The next top-level value, or `None` at the end of the text.
    ///
    /// # Errors
    /// A syntax error, with line and column.
    pub fn next_value(&mut self) -> Result<Option<Edn>, EdnError> {
        loop {
            self.skip_ws();
            if self.peek().is_none() {
                return Ok(None);
            }
            self.start_line = self.line;
            if let Some(v) = self.read()? {
                return Ok(Some(v));
            }
        }
    }

    fn err(&self, message: impl Into<String>) -> EdnError {
        EdnError {
            line: self.line,
            column: self.column,
            message: message.into(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            if c.is_whitespace() || c == ',' {
                self.bump();
            } else if c == ';' {
                while let Some(c) = self.bump() {
                    if c == '\n' {
                        break;
                    }
                }
            } else {
                break;
            }
        }
    }

    /// One value; `None` for a `#_` discard that consumed its value.
    fn read(&mut self) -> Result<Option<Edn>, EdnError> {
        self.skip_ws();
        let c = self
            .peek()
            .ok_or_else(|| self.err("unexpected end of input"))?;
        let v = match c {
            '(' => {
                self.bump();
                Edn::List(self.read_seq(')')?)
            }
            '[' => {
                self.bump();
                Edn::Vector(self.read_seq(']')?)
            }
            '{' => {
                self.bump();
                let (line, column) = (self.line, self.column);
                let items = self.read_seq('}')?;
                if items.len() % 2 != 0 {
                    return Err(EdnError {
                        line,
                        column,
                        message: "a map needs an even number of forms (a key without a value)"
                            .into(),
                    });
                }
                let mut it = items.into_iter();
                let mut entries = Vec::new();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    entries.push((k, v));
                }
                Edn::Map(entries)
            }
            ')' | ']' | '}' => return Err(self.err(format!("unmatched '{c}'"))),
            '"' => {
                self.bump();
                Edn::Str(self.read_string()?)
            }
            '\\' => {
                self.bump();
                Edn::Char(self.read_char()?)
            }
            '#' => {
                self.bump();
                match self.peek() {
                    Some('{') => {
                        self.bump();
                        Edn::Set(self.read_seq('}')?)
                    }
                    Some('_') => {
                        self.bump();
                        self.read_required()?;
                        return Ok(None);
                    }
                    Some(c) if c.is_alphabetic() => {
                        let tag = self.read_token();
                        let value = self.read_required()?;
                        Edn::Tagged(tag, Box::new(value))
                    }
                    _ => return Err(self.err("unsupported dispatch after '#'")),
                }
            }
            ':' => {
                self.bump();
                let name = self.read_token();
                if name.is_empty() {
                    return Err(self.err("a keyword needs a name after ':'"));
                }
                Edn::Keyword(name)
            }
            _ => {
                let (line, column) = (self.line, self.column);
                let token = self.read_token();
                if token.is_empty() {
                    return Err(self.err(format!("unexpected character {c:?}")));
                }
                atom(&token).map_err(|message| EdnError {
                    line,
                    column,
                    message,
                })?
            }
        };
        Ok(Some(v))
    }

    fn read_required(&mut self) -> Result<Edn, EdnError> {
        loop {
            if let Some(v) = self.read()? {
                return Ok(v);
            }
        }
    }

    fn read_seq(&mut self, close: char) -> Result<Vec<Edn>, EdnError> {
        let mut out = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                None => return Err(self.err(format!("unexpected end of input: '{close}' missing"))),
                Some(c) if c == close => {
                    self.bump();
                    return Ok(out);
                }
                Some(_) => {
                    if let Some(v) = self.read()? {
                        out.push(v);
                    }
                }
            }
        }
    }

    fn read_token(&mut self) -> String {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_whitespace() || matches!(c, ',' | '(' | ')' | '[' | ']' | '{' | '}' | '"' | ';')
            {
                break;
            }
            self.bump();
        }
        self.text[start..self.pos].to_string()
    }

    fn read_string(&mut self) -> Result<String, EdnError> {
        let mut s = String::new();
        loop {
            let c = self
                .bump()
                .ok_or_else(|| self.err("unexpected end of input inside a string"))?;
            match c {
                '"' => return Ok(s),
                '\\' => {
                    let e = self
                        .bump()
                        .ok_or_else(|| self.err("unexpected end of input inside a string"))?;
                    s.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        'b' => '\u{8}',
                        'f' => '\u{c}',
                        '"' => '"',
                        '\\' => '\\',
                        'u' => {
                            let mut code = 0u32;
                            for _ in 0..4 {
                                let d = self
                                    .bump()
                                    .and_then(|h| h.to_digit(16))
                                    .ok_or_else(|| self.err("bad \\u escape in a string"))?;
                                code = code * 16 + d;
                            }
                            char::from_u32(code)
                                .ok_or_else(|| self.err("bad \\u escape in a string"))?
                        }
                        other => return Err(self.err(format!("unknown escape \\{other}"))),
                    });
                }
                c => s.push(c),
            }
        }
    }

    fn read_char(&mut self) -> Result<char, EdnError> {
        let first = self
            .bump()
            .ok_or_else(|| self.err("unexpected end of input after '\\'"))?;
        let mut name = String::from(first);
        name.push_str(&self.read_token());
        Ok(match name.as_str() {
            "newline" => '\n',
            "space" => ' ',
            "tab" => '\t',
            "return" => '\r',
            "formfeed" => '\u{c}',
            "backspace" => '\u{8}',
            n if n.chars().count() == 1 => first,
            n if n.starts_with('u') && n.len() == 5 => u32::from_str_radix(&n[1..], 16)
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| self.err(format!("bad character \\{n}")))?,
            n => return Err(self.err(format!("unknown character \\{n}"))),
        })
    }
}

fn atom(token: &str) -> Result<Edn, String> {
    match token {
        "nil" => return Ok(Edn::Nil),
        "true" => return Ok(Edn::Bool(true)),
        "false" => return Ok(Edn::Bool(false)),
        _ => {}
    }
    let first = token.chars().next().unwrap_or(' ');
    let numeric = first.is_ascii_digit()
        || ((first == '-' || first == '+') && token[1..].starts_with(|c: char| c.is_ascii_digit()));
    if !numeric {
        return Ok(Edn::Symbol(token.to_string()));
    }
    if let Some(int) = token.strip_suffix('N') {
        return int
            .parse::<i64>()
            .map(Edn::Int)
            .map_err(|_| format!("integer {token} does not fit in 64 bits"));
    }
    if let Ok(i) = token.parse::<i64>() {
        return Ok(Edn::Int(i));
    }
    let float = token.strip_suffix('M').unwrap_or(token);
    float
        .parse::<f64>()
        .map(Edn::Float)
        .map_err(|_| format!("not a number: {token}"))
}

impl fmt::Display for Edn {
    /// Writes the value as EDN that [`parse_all`] reads back as the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Edn::Nil => f.write_str("nil"),
            Edn::Bool(b) => write!(f, "{b}"),
            Edn::Int(i) => write!(f, "{i}"),
            Edn::Float(x) if x.is_finite() => {
                let s = format!("{x:?}");
                f.write_str(&s)
            }
            Edn::Float(x) => write!(
                f,
                "##{}",
                if x.is_nan() {
                    "NaN"
                } else if *x > 0.0 {
                    "Inf"
                } else {
                    "-Inf"
                }
            ),
            Edn::Str(s) => write_string(f, s),
            Edn::Char(c) => match c {
                '\n' => f.write_str("\\newline"),
                ' ' => f.write_str("\\space"),
                '\t' => f.write_str("\\tab"),
                '\r' => f.write_str("\\return"),
                c => write!(f, "\\{c}"),
            },
            Edn::Keyword(k) => write!(f, ":{k}"),
            Edn::Symbol(s) => f.write_str(s),
            Edn::List(items) => write_seq(f, "(", items, ")"),
            Edn::Vector(items) => write_seq(f, "[", items, "]"),
            Edn::Set(items) => write_seq(f, "#{", items, "}"),
            Edn::Map(entries) => {
                f.write_char('{')?;
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k} {v}")?;
                }
                f.write_char('}')
            }
            Edn::Tagged(tag, v) => write!(f, "#{tag} {v}"),
        }
    }
}

fn write_seq(f: &mut fmt::Formatter<'_>, open: &str, items: &[Edn], close: &str) -> fmt::Result {
    f.write_str(open)?;
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_char(' ')?;
        }
        write!(f, "{item}")?;
    }
    f.write_str(close)
}

fn write_string(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\t' => f.write_str("\\t")?,
            '\r' => f.write_str("\\r")?,
            c if (c as u32) < 0x20 => write!(f, "\\u{:04x}", c as u32)?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

/// JSON to EDN: objects become maps with keyword keys, arrays vectors.
pub fn from_json(v: &serde_json::Value) -> Edn {
    use serde_json::Value;
    match v {
        Value::Null => Edn::Nil,
        Value::Bool(b) => Edn::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Edn::Int(i),
            None => Edn::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Edn::Str(s.clone()),
        Value::Array(items) => Edn::Vector(items.iter().map(from_json).collect()),
        Value::Object(map) => Edn::Map(
            map.iter()
                .map(|(k, v)| (Edn::Keyword(k.clone()), from_json(v)))
                .collect(),
        ),
    }
}

/// EDN to JSON: keywords and symbols become their names as strings, lists and sets
/// arrays, maps objects (keys written as their EDN text unless strings or keywords),
/// tagged values their value.
pub fn to_json(v: &Edn) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Edn::Nil => Value::Null,
        Edn::Bool(b) => Value::Bool(*b),
        Edn::Int(i) => Value::from(*i),
        Edn::Float(x) => serde_json::Number::from_f64(*x).map_or(Value::Null, Value::Number),
        Edn::Str(s) => Value::String(s.clone()),
        Edn::Char(c) => Value::String(c.to_string()),
        Edn::Keyword(k) => Value::String(k.clone()),
        Edn::Symbol(s) => Value::String(s.clone()),
        Edn::List(items) | Edn::Vector(items) | Edn::Set(items) => {
            Value::Array(items.iter().map(to_json).collect())
        }
        Edn::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        Edn::Str(s) | Edn::Keyword(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Edn::Tagged(_, v) => to_json(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_jepsen_op_map() {
        let v = parse_all(
            r#"{:type :invoke, :f :cas, :value [1 2], :process 3, :time 12N, :key "k\"1"} ; c"#,
        )
        .unwrap();
        assert_eq!(v.len(), 1);
        let m = &v[0];
        assert_eq!(m.get("type"), Some(&Edn::Keyword("invoke".into())));
        assert_eq!(
            m.get("value"),
            Some(&Edn::Vector(vec![Edn::Int(1), Edn::Int(2)]))
        );
        assert_eq!(m.get("time"), Some(&Edn::Int(12)));
        assert_eq!(m.get("key"), Some(&Edn::Str("k\"1".into())));
    }

    #[test]
    fn reads_every_kind_and_writes_it_back() {
        let text = r#"[nil true false -7 2.5 "a\nb" \x \newline :ns/kw sym (1 2) #{3} {:a {"b" [4]}} #inst "2026-12-02" #_ ignored 9]"#;
        let v = parse_all(text).unwrap();
        assert_eq!(v.len(), 1);
        let again = parse_all(&v[0].to_string()).unwrap();
        assert_eq!(again, v);
        match &v[0] {
            Edn::Vector(items) => assert_eq!(items.len(), 15),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = parse_all("{:a 1}\n{:b 2 :c}").unwrap_err();
        assert_eq!((e.line, e.column), (2, 2), "{e}");
        let e = parse_all("[1 2").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.contains("']' missing"), "{e}");
        let e = parse_all("\n  \"abc").unwrap_err();
        assert_eq!(e.line, 2);
        let e = parse_all("(1 2))").unwrap_err();
        assert_eq!((e.line, e.column), (1, 6));
        let e = parse_all("99999999999999999999999N").unwrap_err();
        assert!(e.message.contains("64 bits"), "{e}");
    }

    #[test]
    fn json_round_trip() {
        let j = serde_json::json!({"a": [1, null, "x", {"b": true}], "c": 1.5});
        assert_eq!(to_json(&from_json(&j)), j);
    }
}
