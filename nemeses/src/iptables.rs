//! The iptables rules and scripts of the faults that own a chain (partition in INPUT,
//! delay and loss in OUTPUT): one renderer, one install script per hook, one flush.
//!
//! A fault writes its rules for one node as `iptables-restore --noflush` input
//! ([`restore_input`]), where declaring the chain (`:FL-<id> - [0:0]`) flushes that chain
//! and no other and the whole input commits or nothing does; the install script then
//! hooks the chain first in its built-in chain unless a hook is already there.

use std::collections::BTreeMap;

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
