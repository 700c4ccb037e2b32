//! The iptables rules and scripts of the faults that own a chain (partition in INPUT,
//! delay and loss in OUTPUT): one renderer, one install script per hook, one flush.
//!
//! A fault writes its rules for one node as `iptables-restore --noflush` input
//! ([`restore_input`]), where declaring the chain (`:FL-<id> - [0:0]`) flushes that chain
//! and no other and the whole input commits or nothing does; the install script then
//! hooks the chain first in its built-in chain unless a hook is already there.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Child;

use serde_json::{json, Value};

use crate::control::NodeInfo;
use crate::fault::{Applied, Ctx, Heal, Outcome};
use crate::spec::Ports;

/// Reads `iptables-restore` input on stdin into the chain named by `$1`, then hooks the
/// chain first in INPUT unless a hook is already there. `iptables-restore` cannot test
/// for a rule (a `-D` of a missing rule fails the whole commit), hence the shell.
pub(crate) const INSTALL_INPUT: &str = r#"iptables-restore -w --noflush && { iptables -w -C INPUT -j "$1" 2>/dev/null || iptables -w -I INPUT 1 -j "$1"; }"#;

/// As [`INSTALL_INPUT`], hooked in OUTPUT.
pub(crate) const INSTALL_OUTPUT: &str = r#"iptables-restore -w --noflush && { iptables -w -C OUTPUT -j "$1" 2>/dev/null || iptables -w -I OUTPUT 1 -j "$1"; }"#;

/// For a prepared fault: makes sure the chain named by `$1` exists and is hooked first in
/// INPUT (creating it empty if not: an empty chain drops nothing), then becomes
/// `iptables-restore --noflush` waiting for its input. All but the input's `COMMIT` is
/// written before the fault's instant ([`Installers`]).
pub(crate) const PREPARE_INPUT: &str = r#"{ iptables -w -C INPUT -j "$1" 2>/dev/null || { iptables -w -N "$1" 2>/dev/null; iptables -w -I INPUT 1 -j "$1"; }; } && exec iptables-restore -w --noflush"#;

/// As [`PREPARE_INPUT`], hooked in OUTPUT.
pub(crate) const PREPARE_OUTPUT: &str = r#"{ iptables -w -C OUTPUT -j "$1" 2>/dev/null || { iptables -w -N "$1" 2>/dev/null; iptables -w -I OUTPUT 1 -j "$1"; }; } && exec iptables-restore -w --noflush"#;

/// Flushes the iptables chain named by `$1` and prints `flushed`, or prints `absent` if
/// there is no such chain (iptables-nft and iptables-legacy both say "No chain/target/match
/// by that name"); any other failure is an error. One iptables call: listing the table
/// first would double a heal's time.
pub(crate) const FLUSH_CHAIN: &str = r#"if err=$(iptables -w -F "$1" 2>&1); then echo flushed
else case $err in *"No chain"*) echo absent ;; *) echo "$err" >&2; exit 1 ;; esac; fi"#;

/// Which address of a packet names the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// The source (`-s`): packets from the peer, in INPUT.
    Source,
    /// The destination (`-d`): packets to the peer, in OUTPUT.
    Destination,
}

/// The `iptables-restore --noflush` input that makes `chain` in node `me` apply `target`
/// (`-j DROP`, ...) to its packets with each of `peers` (an empty `peers` empties the
/// chain).
///
/// With `ports`, only TCP with either port in the set matches: the peer's port (`me`'s
/// connections to it) and `me`'s own (the peer's connections to `me`). Ephemeral ports
/// lie far above both.
pub fn restore_input(
    chain: &str,
    me: &NodeInfo,
    peers: &[&NodeInfo],
    ports: Ports,
    peer: Peer,
    target: &str,
) -> String {
    let flag = match peer {
        Peer::Source => "-s",
        Peer::Destination => "-d",
    };
    let mut text = format!("*filter\n:{chain} - [0:0]\n");
    for other in peers {
        let pair = match ports {
            Ports::All => None,
            Ports::Bus => Some((me.bus_port, other.bus_port)),
            Ports::Client => Some((me.port, other.port)),
        };
        let port_match = match pair {
            None => String::new(),
            Some((a, b)) if a == b => format!(" -p tcp -m multiport --ports {a}"),
            Some((a, b)) => format!(" -p tcp -m multiport --ports {},{}", a.min(b), a.max(b)),
        };
        text.push_str(&format!(
            "-A {chain} {flag} {}/32{port_match} {target}\n",
            other.ip
        ));
    }
    text.push_str("COMMIT\n");
    text
}

/// One `iptables-restore` per node, started in the node's namespace before a fault's
/// instant ([`PREPARE_INPUT`] / [`PREPARE_OUTPUT`]) and already holding its rules: what
/// is left for the instant is the `COMMIT` line, which `iptables-restore` answers with one
/// kernel transaction per namespace. Dropped uncommitted, they are killed: nothing is
/// installed.
pub(crate) struct Installers {
    children: Vec<(String, Result<Child, String>)>,
}

/// Starts an installer per `(node, restore input)` with `script` (chain name `chain`),
/// on the blocking pool, and writes each its input but the final `COMMIT`.
pub(crate) async fn start_installers(
    ctx: &Ctx,
    script: &'static str,
    chain: &str,
    inputs: Vec<(String, String)>,
) -> Installers {
    let control = ctx.control.clone();
    let chain = chain.to_string();
    let start = move || {
        let children = inputs
            .into_iter()
            .map(|(node, input)| {
                let body = input.strip_suffix(COMMIT).unwrap_or(&input).to_string();
                let child = control
                    .spawn_in_netns(&node, "sh", &["-c", script, "sh", &chain])
                    .map_err(|e| format!("{e:#}"))
                    .and_then(|mut child| {
                        let pipe = child.stdin.as_mut().ok_or("no stdin")?;
                        pipe.write_all(body.as_bytes())
                            .map_err(|e| format!("writing the rules: {e}"))?;
                        Ok(child)
                    });
                (node, child)
            })
            .collect();
        Installers { children }
    };
    match tokio::task::spawn_blocking(start).await {
        Ok(installers) => installers,
        Err(e) => Installers {
            children: vec![("*".into(), Err(format!("starting installers: {e}")))],
        },
    }
}

/// The end of every `iptables-restore` input [`restore_input`] renders.
const COMMIT: &str = "COMMIT\n";

impl Installers {
    /// Commits every node's rules at once (each `COMMIT` written, then every installer
    /// waited for). Per node: ok, or why its rules may not be in.
    pub(crate) fn commit(mut self) -> Vec<(String, Result<String, String>)> {
        let mut children = std::mem::take(&mut self.children);
        for (_, child) in &mut children {
            if let Ok(c) = child {
                // An installer that already failed cannot read it; its exit says why.
                if let Some(pipe) = c.stdin.as_mut() {
                    let _ = pipe.write_all(COMMIT.as_bytes());
                }
            }
        }
        wait_committed(&mut children);
        children
            .into_iter()
            .map(|(node, child)| {
                let result = child.and_then(|mut c| {
                    drop(c.stdin.take());
                    let out = c.wait_with_output().map_err(|e| e.to_string())?;
                    if out.status.success() {
                        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
                    } else {
                        Err(format!(
                            "iptables-restore failed ({}): {}",
                            out.status,
                            String::from_utf8_lossy(&out.stderr).trim()
                        ))
                    }
                });
                (node, result)
            })
            .collect()
    }
}

/// Waits (bounded) until every installer has committed, and if all have, marks the fault
/// in effect ([`crate::instant::in_effect_now`]). `iptables-restore` commits each table
/// at its `COMMIT` line, in the `sendmsg` that hands the kernel its batch, then reads on:
/// an installer whose pipe is empty and which is blocked reading its stdin again has its
/// rules in the kernel. Its exit comes later (closing its netlink socket waits for the
/// kernel), so waiting for the exit alone would overstate the effect by that much.
fn wait_committed(children: &mut [(String, Result<Child, String>)]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut pending: Vec<usize> = (0..children.len()).collect();
    while !pending.is_empty() {
        let mut failed = false;
        pending.retain(|&i| match &mut children[i].1 {
            Err(_) => {
                failed = true;
                false
            }
            Ok(c) => match c.try_wait() {
                Ok(Some(status)) => {
                    failed |= !status.success();
                    false
                }
                Ok(None) => !c.stdin.as_ref().is_some_and(|p| reading_again(c.id(), p)),
                Err(_) => {
                    failed = true;
                    false
                }
            },
        });
        if failed {
            // Its exit status tells; the fault is not known to be in effect everywhere.
            return;
        }
        if pending.is_empty() {
            crate::instant::in_effect_now();
            return;
        }
        if std::time::Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(std::time::Duration::from_micros(100));
    }
}

/// Whether installer `pid` has consumed everything written to `pipe` and is blocked
/// reading its stdin (`/proc/PID/syscall`: `read` on fd 0).
fn reading_again(pid: u32, pipe: &std::process::ChildStdin) -> bool {
    use std::os::fd::AsRawFd;
    let mut unread: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int; the pipe is open for as long as `pipe` lives.
    let r = unsafe { libc::ioctl(pipe.as_raw_fd(), libc::FIONREAD, &mut unread) };
    if r != 0 || unread != 0 {
        return false;
    }
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/syscall")) else {
        return false;
    };
    let mut fields = text.split_whitespace();
    fields.next() == Some(libc::SYS_read.to_string().as_str()) && fields.next() == Some("0x0")
}

impl Drop for Installers {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            if let Ok(c) = child {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Flushes `chain` in each of `nodes` ([`FLUSH_CHAIN`]), all at once. Returns the nodes
/// where it was flushed (nodes without it are skipped) and, per node that failed, why.
pub(crate) async fn flush(
    ctx: &Ctx,
    chain: &str,
    nodes: Vec<String>,
) -> (Vec<String>, Vec<String>) {
    let jobs = nodes.into_iter().map(|n| (n, None)).collect();
    let mut flushed = Vec::new();
    let mut errors = Vec::new();
    for (node, result) in ctx.sh_in_each(FLUSH_CHAIN, chain, jobs).await {
        match result.as_deref().map(str::trim) {
            Ok("flushed") => flushed.push(node),
            Ok("absent") => {}
            Ok(other) => errors.push(format!("{node}: unexpected output {other:?}")),
            Err(e) => errors.push(format!("{node}: {e}")),
        }
    }
    (flushed, errors)
}

/// Flushes each of `chains` in each of `nodes` ([`flush`], chain after chain). Returns the
/// nodes where any chain was flushed, once each, in node order, and the failures, each
/// naming its chain and node.
pub(crate) async fn flush_chains(
    ctx: &Ctx,
    chains: &[String],
    nodes: &[String],
) -> (Vec<String>, Vec<String>) {
    let mut flushed: Vec<String> = Vec::new();
    let mut errors = Vec::new();
    for chain in chains {
        let (done, failed) = flush(ctx, chain, nodes.to_vec()).await;
        for n in done {
            if !flushed.contains(&n) {
                flushed.push(n);
            }
        }
        errors.extend(failed.into_iter().map(|e| format!("flushing {chain}: {e}")));
    }
    flushed.sort_by_key(|n| crate::target::node_order(n));
    (flushed, errors)
}

/// A fault's outcome from each node's install result: ok when every node took its rules,
/// info (with the failures under `failed` in `value`) when any did not; healed either
/// way, since a node that failed may still hold some rules.
pub(crate) fn applied(
    mut value: Value,
    results: Vec<(String, Result<String, String>)>,
    heal: Box<dyn Heal>,
) -> Applied {
    let failed: BTreeMap<String, String> = results
        .into_iter()
        .filter_map(|(node, r)| r.err().map(|e| (node, e)))
        .collect();
    let (outcome, error) = if failed.is_empty() {
        (Outcome::Ok, None)
    } else {
        let error = failed
            .iter()
            .map(|(n, e)| format!("{n}: {e}"))
            .collect::<Vec<_>>()
            .join("; ");
        value["failed"] = json!(failed);
        (Outcome::Info, Some(error))
    };
    Applied {
        outcome,
        value,
        error,
        heal: Some(heal),
    }
}
