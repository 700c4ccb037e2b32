//! `faultline clean --live HOSTS_FILE`: reads the ledgers runs wrote on the hosts of a
//! live cluster ([`super::remote`]) and reverts what killed runs left there: dead-men
//! stopped, chains unhooked and deleted, faultline's qdiscs removed, stopped servers
//! continued, killed servers started with the host's command. Runs whose faultline
//! process still lives on this machine are left alone.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, Result};

use super::hosts::HostsFile;
use super::remote::{self, Change, LEDGER_DIR};
use super::ssh::Dest;
use crate::ledger::{Ledger, RunId};

/// What `clean --live` did (or would do), one line each, and whether anything failed.
pub fn clean(file: &Path, only: Option<&RunId>, dry_run: bool) -> Result<(Vec<String>, bool)> {
    let hosts = HostsFile::load(file).map_err(|e| anyhow!("{e}"))?;
    let (ledgers, _) = Ledger::load_all();
    let alive: Vec<String> = ledgers
        .iter()
        .filter(|l| l.owner_alive())
        .map(|l| l.run_id.to_string())
        .collect();
    let dir = std::env::temp_dir().join(format!("faultline-clean-{}", std::process::id()));
    let mut lines = Vec::new();
    let mut failed = false;
    // Nodes sharing a destination share its ledgers: read each destination once.
    let mut seen: BTreeMap<Vec<String>, ()> = BTreeMap::new();
    for entry in &hosts.nodes {
        let dest = Dest::new(&hosts, entry, &dir);
        if seen.insert(dest.command_line(&[]), ()).is_some() {
            continue;
        }
        let listing = match dest.sh(
            &format!("cd {LEDGER_DIR} 2>/dev/null || exit 0; for f in *.ledger; do [ -f \"$f\" ] && {{ echo \"== $f\"; cat \"$f\"; }}; done; true"),
            None,
        ) {
            Ok(t) => t,
            Err(e) => {
                failed = true;
                lines.push(format!("{}: could not read its ledgers: {e:#}", entry.node));
                continue;
            }
        };
        for (run, text) in split_listing(&listing) {
            if only.is_some_and(|o| o.as_str() != run) {
                continue;
            }
            if alive.contains(&run) {
                lines.push(format!(
                    "{}: run {run} still running here, left alone",
                    entry.node
                ));
                continue;
            }
            let (entries, deadmen) = match remote::parse_ledger(&text) {
                Ok(x) => x,
                Err(e) => {
                    failed = true;
                    lines.push(format!(
                        "{}: run {run}: ledger not understood, left alone: {e:#}",
                        entry.node
                    ));
                    continue;
                }
            };
            let mut script = String::new();
            for pid in &deadmen {
                script.push_str(&format!("kill -KILL -{pid} 2>/dev/null\n"));
            }
            // Servers back first, then the network; a chain or qdisc once.
            let mut ordered = entries.clone();
            ordered.sort_by_key(|e| {
                (
                    !matches!(e.change, Change::Killed | Change::Stopped { .. }),
                    e.seq,
                )
            });
            let mut undone: Vec<Change> = Vec::new();
            for e in &ordered {
                if undone.contains(&e.change) && !matches!(e.change, Change::Killed) {
                    continue;
                }
                let start = hosts.entry(&e.node).and_then(|h| h.start_command());
                if matches!(e.change, Change::Killed) && start.is_none() {
                    failed = true;
                    lines.push(format!(
                        "{}: run {run}: {} was killed and the hosts file gives no command to start it",
                        entry.node, e.node
                    ));
                }
                script.push_str(&e.change.revert(start));
                undone.push(e.change.clone());
                lines.push(format!(
                    "{}: run {run}: {} {} ({})",
                    entry.node,
                    if dry_run { "would revert" } else { "reverted" },
                    e.change.line(),
                    e.node
                ));
            }
            script.push_str(&format!(
                "rm -f {} {LEDGER_DIR}/{run}.*.revert\n",
                remote::ledger_path(&run)
            ));
            if entries.is_empty() && deadmen.is_empty() {
                lines.push(format!("{}: run {run}: empty ledger removed", entry.node));
            }
            if !dry_run {
                if let Err(e) = dest.sh(&script, None) {
                    failed = true;
                    lines.push(format!(
                        "{}: run {run}: could not revert: {e:#}",
                        entry.node
                    ));
                }
            }
        }
        dest.close();
    }
    let _ = std::fs::remove_dir(&dir);
    Ok((lines, failed))
}

/// `== <run>.ledger` headers and the text under each.
fn split_listing(listing: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in listing.lines() {
        if let Some(name) = line.strip_prefix("== ") {
            let run = name.trim_end_matches(".ledger").to_string();
            out.push((run, String::new()));
        } else if let Some((_, text)) = out.last_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    out.retain(|(run, _)| RunId::parse(run).is_some());
    out
}
