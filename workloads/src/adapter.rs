//! A real client library behind an adapter process: [`AdapterClient`] speaks the line
//! protocol of `adapters/PROTOCOL.md` to a child process that drives one library (redis-py,
//! valkey-py, GLIDE, redis-rs's cluster client), and is a [`KeyClient`], so every workload
//! drives it unchanged and records invoke and completion in the same history.
//!
//! The adapter is the harness's, not the server's: a crash, a line that is not the
//! protocol, or an op left unanswered long past its time-out ends the run as a harness
//! error ([`AdapterClient::failure`], the adapter's stderr tail attached), never as an op
//! outcome a checker could blame on the server. An op the adapter does not answer within
//! the op time-out is `info` (the library may still have it in flight).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _};
use redis::{Cmd, Value};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::Outcome;
use crate::key_client::{BoxFuture, KeyClient, Route};

/// The protocol version the hello line names; an adapter answering another one is refused.
pub const PROTOCOL_VERSION: u64 = 1;

/// How to start one adapter and what to tell it.
#[derive(Debug, Clone)]
pub struct AdapterSpec {
    /// The client's name (`redis-py`), as scenarios and the history name it.
    pub client: String,
    /// The program and its arguments (the run id among them, so the process is the run's).
    pub program: PathBuf,
    /// Arguments after the program.
    pub args: Vec<String>,
    /// Where the adapter's stderr goes (in the run directory).
    pub stderr_file: PathBuf,
    /// `cluster` or `standalone`.
    pub mode: String,
    /// `ip:port` of every node.
    pub nodes: Vec<String>,
    /// Budget for one op; the adapter is told it and answers `info` past it.
    pub op_timeout: Duration,
    /// The scenario's configuration for the library (`workload.client_config`), as is.
    pub config: serde_json::Value,
    /// Budget for the adapter to start and connect (the hello answer).
    pub start_timeout: Duration,
    /// An op unanswered this long past its time-out means the adapter hangs.
    pub hang_grace: Duration,
}

/// What the adapter said about itself in its hello answer.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct AdapterHello {
    /// The library's package name.
    pub library: String,
    /// The library's version.
    pub version: String,
}

/// An op waiting for its answer.
struct Pending {
    sent: Instant,
    reply: Option<oneshot::Sender<Outcome>>,
}

/// What the reader, writer and watchdog share.
struct Shared {
    pending: Mutex<HashMap<u64, Pending>>,
    failure: Mutex<Option<String>>,
    failed: CancellationToken,
    /// Set by [`AdapterClient::shutdown`]: the adapter's exit is expected from then on.
    closing: std::sync::atomic::AtomicBool,
    stderr_file: PathBuf,
}

impl Shared {
    /// Marks the adapter failed (first reason wins) and answers every waiting op `info`.
    fn fail(&self, reason: String) {
        {
            let mut f = self.failure.lock().unwrap();
            if f.is_none() {
                let tail = stderr_tail(&self.stderr_file);
                *f = Some(if tail.is_empty() {
                    format!("{reason} (its stderr is empty)")
                } else {
                    format!("{reason}; its stderr ends:\n{tail}")
                });
            }
        }
        self.failed.cancel();
        for (_, p) in self.pending.lock().unwrap().drain() {
            if let Some(tx) = p.reply {
                let _ = tx.send(info("adapter failed"));
            }
        }
    }
}

/// A client library driven through its adapter process. Dropping it kills the process
/// group; [`AdapterClient::shutdown`] first lets the adapter close its connections.
pub struct AdapterClient {
    client: String,
    hello: AdapterHello,
    op_timeout: Duration,
    next_id: AtomicU64,
    lines: Mutex<Option<mpsc::UnboundedSender<String>>>,
    shared: Arc<Shared>,
    child: tokio::sync::Mutex<tokio::process::Child>,
    pid: i32,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl AdapterClient {
    /// Starts the adapter, sends the hello line and waits for its answer.
    ///
    /// # Errors
    /// The program could not start, or did not answer the hello within
    /// `spec.start_timeout` with a hello of this protocol (its stderr tail attached).
    pub async fn start(spec: &AdapterSpec) -> anyhow::Result<AdapterClient> {
        let stderr = std::fs::File::create(&spec.stderr_file)
            .with_context(|| format!("creating {}", spec.stderr_file.display()))?;
        let mut cmd = tokio::process::Command::new(&spec.program);
        cmd.args(&spec.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true)
            .process_group(0);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                // Dies with faultline even when faultline is killed outright.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().with_context(|| {
            format!(
                "starting the {} adapter ({})",
                spec.client,
                spec.program.display()
            )
        })?;
        let pid = child.id().context("the adapter has no pid")? as i32;
        let stdin = child.stdin.take().context("adapter stdin")?;
        let stdout = child.stdout.take().context("adapter stdout")?;
        let shared = Arc::new(Shared {
            pending: Mutex::new(HashMap::new()),
            failure: Mutex::new(None),
            failed: CancellationToken::new(),
            closing: std::sync::atomic::AtomicBool::new(false),
            stderr_file: spec.stderr_file.clone(),
        });

        let (tx, rx) = mpsc::unbounded_channel::<String>();
        let (hello_tx, hello_rx) = oneshot::channel::<Result<AdapterHello, String>>();
        let writer = tokio::spawn(write_lines(stdin, rx, shared.clone()));
        let reader = tokio::spawn(read_lines(stdout, shared.clone(), hello_tx));
        let watchdog = tokio::spawn(watch(shared.clone(), spec.op_timeout + spec.hang_grace));
        let mut client = AdapterClient {
            client: spec.client.clone(),
            hello: AdapterHello {
                library: String::new(),
                version: String::new(),
            },
            op_timeout: spec.op_timeout,
            next_id: AtomicU64::new(1),
            lines: Mutex::new(Some(tx)),
            shared,
            child: tokio::sync::Mutex::new(child),
            pid,
            tasks: vec![writer, reader, watchdog],
        };
        let hello = serde_json::json!({
            "type": "hello",
            "protocol": PROTOCOL_VERSION,
            "client": spec.client,
            "mode": spec.mode,
            "nodes": spec.nodes,
            "op_timeout_ms": spec.op_timeout.as_millis() as u64,
            "config": spec.config,
        });
        client.send(hello.to_string());
        let answer = tokio::select! {
            a = tokio::time::timeout(spec.start_timeout, hello_rx) => Some(a),
            _ = client.shared.failed.cancelled() => None,
        };
        match answer {
            Some(Ok(Ok(Ok(hello)))) => client.hello = hello,
            Some(Ok(Ok(Err(e)))) => client
                .shared
                .fail(format!("the adapter refused the hello: {e}")),
            // The reader failed the adapter and said why.
            Some(Ok(Err(_))) | None => {}
            Some(Err(_)) => client.shared.fail(format!(
                "the adapter did not answer the hello within {:?}",
                spec.start_timeout
            )),
        }
        if let Some(f) = client.failure() {
            client.kill();
            bail!("the {} adapter failed to start: {f}", spec.client);
        }
        Ok(client)
    }

    /// The client's name.
    pub fn client(&self) -> &str {
        &self.client
    }

    /// The library and version the adapter reported.
    pub fn hello(&self) -> &AdapterHello {
        &self.hello
    }

    /// Why the adapter failed (crash, protocol violation, hang), if it did: a harness
    /// error, with its stderr tail.
    pub fn failure(&self) -> Option<String> {
        self.shared.failure.lock().unwrap().clone()
    }

    /// Cancelled when the adapter fails.
    pub fn failed(&self) -> CancellationToken {
        self.shared.failed.clone()
    }

    /// Closes the adapter's stdin (its signal to close its connections and exit 0), waits
    /// up to `grace` for it, then kills its process group.
    pub async fn shutdown(&self, grace: Duration) {
        self.shared.closing.store(true, Ordering::SeqCst);
        self.lines.lock().unwrap().take();
        let mut child = self.child.lock().await;
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            self.kill();
            let _ = child.wait().await;
        }
    }

    fn kill(&self) {
        // SAFETY: plain syscall; the group is the adapter's own (process_group(0)).
        unsafe {
            libc::killpg(self.pid, libc::SIGKILL);
        }
    }

    fn send(&self, line: String) -> bool {
        match self.lines.lock().unwrap().as_ref() {
            Some(tx) => tx.send(line).is_ok(),
            None => false,
        }
    }

    async fn run(&self, key: &[u8], cmd: &Cmd) -> Outcome {
        if self.shared.failed.is_cancelled() {
            // Never sent. The pause keeps a failed adapter from turning the client loop
            // into a busy loop that starves the task which stops the run.
            tokio::time::sleep(Duration::from_millis(100)).await;
            return Outcome::Fail {
                error: "adapter failed before the op was sent".into(),
                node: None,
                redirects: Vec::new(),
            };
        }
        let argv: Vec<String> = cmd
            .args_iter()
            .map(|a| match a {
                redis::Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
                _ => "0".into(),
            })
            .collect();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.shared.pending.lock().unwrap().insert(
            id,
            Pending {
                sent: Instant::now(),
                reply: Some(tx),
            },
        );
        let line = serde_json::json!({
            "type": "op",
            "id": id,
            "f": argv.first().map(|s| s.to_ascii_lowercase()).unwrap_or_default(),
            "key": String::from_utf8_lossy(key),
            "value": argv.get(1..).unwrap_or_default(),
            "argv": argv,
        });
        if !self.send(line.to_string()) {
            self.shared.pending.lock().unwrap().remove(&id);
            return Outcome::Fail {
                error: "adapter closed before the op was sent".into(),
                node: None,
                redirects: Vec::new(),
            };
        }
        // The adapter bounds the op by the same time-out and answers info itself; a little
        // slack keeps its answer ahead of ours.
        match tokio::time::timeout(self.op_timeout + Duration::from_millis(200), rx).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => info("adapter failed"),
            Err(_) => {
                // Left pending: the watchdog calls the adapter hung if it never answers.
                if let Some(p) = self.shared.pending.lock().unwrap().get_mut(&id) {
                    p.reply = None;
                }
                info("timeout")
            }
        }
    }
}

impl Drop for AdapterClient {
    fn drop(&mut self) {
        self.kill();
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl KeyClient for AdapterClient {
    fn execute<'a>(&'a self, key: &'a [u8], cmd: &'a Cmd) -> BoxFuture<'a, Outcome> {
        Box::pin(self.run(key, cmd))
    }

    /// A library routes its own way: the route's session, fresh connections and start
    /// node are faultline's client's knobs and do not apply.
    fn execute_routed<'a>(
        &'a self,
        key: &'a [u8],
        cmd: &'a Cmd,
        _route: Route,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(self.run(key, cmd))
    }
}

/// What a library's error reply proves. A library retries inside one call (after a
/// broken connection, on MOVED/ASK, on TRYAGAIN) and shows only the last error, so an
/// error at the end does not prove that an earlier attempt of the same call did not
/// apply: recorded `fail`, an add that did apply would be blamed on the server
/// ("failed but present"). Only NOSCRIPT is kept a `fail`: the register workload loads
/// the script and runs the op again on it, as with faultline's own client.
fn library_error(error: String) -> Outcome {
    if error.starts_with("NOSCRIPT") {
        Outcome::Fail {
            error,
            node: None,
            redirects: Vec::new(),
        }
    } else {
        info(&error)
    }
}

fn info(error: &str) -> Outcome {
    Outcome::Info {
        error: error.into(),
        node: None,
        redirects: Vec::new(),
    }
}

/// Feeds lines to the adapter's stdin; ends (closing stdin) when the sender is dropped.
async fn write_lines(
    mut stdin: tokio::process::ChildStdin,
    mut rx: mpsc::UnboundedReceiver<String>,
    shared: Arc<Shared>,
) {
    while let Some(mut line) = rx.recv().await {
        line.push('\n');
        if let Err(e) = stdin.write_all(line.as_bytes()).await {
            shared.fail(format!(
                "the adapter exited or closed its stdin (writing to it failed: {e})"
            ));
            return;
        }
    }
    let _ = stdin.shutdown().await;
}

/// One line the adapter wrote.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    id: Option<u64>,
    #[serde(default)]
    value: serde_json::Value,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    library: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    protocol: Option<u64>,
    /// The adapter's own measure of the op, for its overhead; not recorded.
    #[serde(default)]
    #[allow(dead_code)]
    latency_us: Option<u64>,
}

/// Reads the adapter's answers and completes the ops they name. End of output, a line
/// that is not the protocol, or an answer to no op fails the adapter.
async fn read_lines(
    stdout: tokio::process::ChildStdout,
    shared: Arc<Shared>,
    hello_tx: oneshot::Sender<Result<AdapterHello, String>>,
) {
    let mut hello_tx = Some(hello_tx);
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let line = match lines.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) if shared.closing.load(Ordering::SeqCst) => return,
            Ok(None) => {
                shared.fail("the adapter closed its output (exited)".into());
                return;
            }
            Err(e) => {
                shared.fail(format!("reading the adapter's output failed ({e})"));
                return;
            }
        };
        let answer: Answer = match serde_json::from_str(&line) {
            Ok(a) => a,
            Err(e) => {
                shared.fail(format!(
                    "the adapter wrote a line that is not the protocol ({e}): {}",
                    clip(&line)
                ));
                return;
            }
        };
        let outcome = match answer.kind.as_str() {
            "hello" => {
                let reply = match (answer.protocol, answer.library, answer.version) {
                    (Some(PROTOCOL_VERSION), Some(library), Some(version)) => {
                        Ok(AdapterHello { library, version })
                    }
                    (p, _, _) => Err(format!(
                        "hello answer needs protocol {PROTOCOL_VERSION}, library and version (protocol {p:?})"
                    )),
                };
                match hello_tx.take() {
                    Some(tx) => {
                        let _ = tx.send(reply);
                        continue;
                    }
                    None => {
                        shared.fail("the adapter said hello twice".into());
                        return;
                    }
                }
            }
            "error" => {
                let e = answer.error.unwrap_or_default();
                match hello_tx.take() {
                    Some(tx) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                    None => {
                        shared.fail(format!("the adapter reported an error: {e}"));
                        return;
                    }
                }
            }
            "ok" => Outcome::Ok {
                value: to_value(&answer.value),
                node: None,
                redirects: Vec::new(),
            },
            "fail" => library_error(answer.error.unwrap_or_else(|| "error".into())),
            "info" => info(answer.error.as_deref().unwrap_or("unknown")),
            other => {
                shared.fail(format!(
                    "the adapter wrote an answer of unknown type {other:?}: {}",
                    clip(&line)
                ));
                return;
            }
        };
        let Some(id) = answer.id else {
            shared.fail(format!(
                "the adapter answered without an id: {}",
                clip(&line)
            ));
            return;
        };
        let pending = shared.pending.lock().unwrap().remove(&id);
        match pending {
            Some(p) => {
                if let Some(tx) = p.reply {
                    let _ = tx.send(outcome);
                }
            }
            None => {
                shared.fail(format!(
                    "the adapter answered op {id}, which it was not sent or had answered"
                ));
                return;
            }
        }
    }
}

/// Fails the adapter when an op stays unanswered longer than `limit`.
async fn watch(shared: Arc<Shared>, limit: Duration) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let oldest = shared
            .pending
            .lock()
            .unwrap()
            .iter()
            .map(|(id, p)| (p.sent, *id))
            .min();
        if let Some((sent, id)) = oldest {
            if sent.elapsed() > limit {
                shared.fail(format!(
                    "the adapter hangs: op {id} unanswered after {:.1} s",
                    sent.elapsed().as_secs_f64()
                ));
                return;
            }
        }
    }
}

/// A JSON reply as the library gave it, as the reply value the generators read: text is a
/// bulk string, `true` is OK, arrays keep their order.
pub fn to_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(true) => Value::Okay,
        serde_json::Value::Bool(false) => Value::Int(0),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::BulkString(s.as_bytes().to_vec()),
        serde_json::Value::Array(items) => Value::Array(items.iter().map(to_value).collect()),
        serde_json::Value::Object(_) => Value::SimpleString(v.to_string()),
    }
}

/// The last 2 KB of the adapter's stderr.
fn stderr_tail(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let start = bytes.len().saturating_sub(2048);
    String::from_utf8_lossy(&bytes[start..])
        .trim_end()
        .to_string()
}

fn clip(line: &str) -> String {
    let mut s: String = line.chars().take(200).collect();
    if s.len() < line.len() {
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replies_map_to_values() {
        assert_eq!(to_value(&json!(null)), Value::Nil);
        assert_eq!(to_value(&json!(3)), Value::Int(3));
        assert_eq!(to_value(&json!(true)), Value::Okay);
        assert_eq!(
            to_value(&json!(["1", 2])),
            Value::Array(vec![Value::BulkString(b"1".to_vec()), Value::Int(2)])
        );
    }
}
