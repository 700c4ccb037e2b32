//! The few calls of the Docker Engine API that the docker backend makes over the daemon's
//! unix socket instead of through the `docker` command: the command cannot create a
//! container with Docker's networking disabled (`NetworkDisabled`), and that is what a
//! node's sandbox is (see [`super::docker`]).
//!
//! One request per connection (`Connection: close`), HTTP/1.1, the reply read to its end;
//! a chunked body is decoded. The socket is `DOCKER_HOST` when that names a `unix://`
//! path, else `/var/run/docker.sock`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

/// The daemon's socket when `DOCKER_HOST` does not name one.
const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// How long one call may take (a start on a loaded machine takes seconds).
const TIMEOUT: Duration = Duration::from_secs(120);

fn socket() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_string))
        .unwrap_or_else(|| DEFAULT_SOCKET.to_string())
}

/// `method path` with `body` as JSON; returns the status and the body.
///
/// # Errors
/// The socket cannot be reached or the reply is not HTTP.
fn call(method: &str, path: &str, body: Option<&Value>) -> Result<(u16, String)> {
    let socket = socket();
    let mut stream = UnixStream::connect(&socket)
        .with_context(|| format!("connecting to the Docker daemon at {socket} (is it running?)"))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    let mut reply = Vec::new();
    stream
        .read_to_end(&mut reply)
        .with_context(|| format!("reading the Docker daemon's reply to {method} {path}"))?;
    parse(&reply).with_context(|| format!("the Docker daemon's reply to {method} {path}"))
}

/// The status and the (de-chunked) body of one HTTP/1.1 reply.
fn parse(reply: &[u8]) -> Result<(u16, String)> {
    let text = String::from_utf8_lossy(reply);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("no end of headers in {:?}", truncate(&text)))?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("no status in {:?}", truncate(head)))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_string()
    };
    Ok((status, body))
}

/// A chunked body's content.
fn dechunk(mut rest: &str) -> Result<String> {
    let mut out = String::new();
    loop {
        let (size, after) = rest
            .split_once("\r\n")
            .ok_or_else(|| anyhow!("a chunk without its size line"))?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| anyhow!("a chunk size {size:?}"))?;
        if size == 0 {
            return Ok(out);
        }
        let chunk = after
            .get(..size)
            .ok_or_else(|| anyhow!("a chunk cut short"))?;
        out.push_str(chunk);
        rest = after[size..].trim_start_matches("\r\n");
    }
}

fn truncate(s: &str) -> &str {
    let end = s.char_indices().nth(200).map_or(s.len(), |(i, _)| i);
    &s[..end]
}

/// The daemon's own message in an error reply, else the body.
fn message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| truncate(body.trim()).to_string())
}

/// Creates the container `name` from `config` (the Engine API's container configuration).
///
/// # Errors
/// The daemon refuses (its message), or cannot be reached.
pub fn create(name: &str, config: &Value) -> Result<()> {
    let (status, body) = call(
        "POST",
        &format!("/containers/create?name={name}"),
        Some(config),
    )?;
    if status != 201 {
        bail!("creating container {name}: {}", message(&body));
    }
    Ok(())
}

/// Starts the container `name`.
///
/// # Errors
/// The daemon refuses (its message), or cannot be reached.
pub fn start(name: &str) -> Result<()> {
    let (status, body) = call("POST", &format!("/containers/{name}/start"), None)?;
    // 304: it was already running.
    if status != 204 && status != 304 {
        bail!("starting container {name}: {}", message(&body));
    }
    Ok(())
}

/// The host pid of the container `name`'s process; `None` when it is not running.
///
/// # Errors
/// The daemon refuses (its message: no such container), or cannot be reached.
pub fn pid(name: &str) -> Result<Option<i32>> {
    let (status, body) = call("GET", &format!("/containers/{name}/json"), None)?;
    if status != 200 {
        bail!("inspecting container {name}: {}", message(&body));
    }
    let info: Value = serde_json::from_str(&body)
        .with_context(|| format!("inspecting container {name}: {}", truncate(&body)))?;
    Ok(info["State"]["Pid"]
        .as_i64()
        .filter(|&pid| pid > 0)
        .map(|pid| pid as i32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read_with_and_without_chunks() {
        let plain = b"HTTP/1.1 201 Created\r\nContent-Length: 9\r\n\r\n{\"Id\":1}\n";
        assert_eq!(parse(plain).unwrap(), (201, "{\"Id\":1}\n".to_string()));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n";
        assert_eq!(parse(chunked).unwrap(), (200, "{\"a\":1}".to_string()));
        let empty = b"HTTP/1.1 204 No Content\r\nApi-Version: 1.41\r\n\r\n";
        assert_eq!(parse(empty).unwrap(), (204, String::new()));
        assert!(parse(b"garbage").is_err());
        assert_eq!(
            message("{\"message\":\"No such image: x\"}"),
            "No such image: x"
        );
    }
}
