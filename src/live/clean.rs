//! `faultline clean --live HOSTS_FILE`: reads the ledgers runs wrote on the hosts of a
//! live cluster ([`super::remote`]) and reverts what killed runs left there: dead-men
//! stopped, chains unhooked and deleted, faultline's qdiscs removed, stopped servers
//! continued, killed servers started with the host's command. Runs whose faultline
//! process still lives on this machine are left alone.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, Result};

use super::hosts::HostsFile;
use super::remote::{self, Change, Entry, LEDGER_DIR};
use super::ssh::Dest;
use crate::ledger::{Ledger, RunId};

/// What `clean --live` did (or would do), one line each, and whether anything failed.
///
/// Every ledger line names its node, and each change is reverted on that node's host
/// (a host's ledger may list several nodes, and hosts may share a filesystem); a change
/// seen in several ledgers (one run numbers its changes once) is reverted once.
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
    // One destination per distinct ssh command line; each node's index into `dests`.
    let mut dests: Vec<Dest> = Vec::new();
    let mut node_dest: BTreeMap<String, usize> = BTreeMap::new();
    for entry in &hosts.nodes {
        let dest = Dest::new(&hosts, entry, &dir);
        let i = match dests
            .iter()
            .position(|d| d.command_line(&[]) == dest.command_line(&[]))
        {
            Some(i) => i,
            None => {
                dests.push(dest);
                dests.len() - 1
            }
        };
        node_dest.insert(entry.node.clone(), i);
    }
    // Per run: its changes by seq, its dead-men, and the destinations holding its files.
    type Found = (BTreeMap<u64, Entry>, Vec<remote::DeadMan>, Vec<usize>);
    let mut runs: BTreeMap<String, Found> = BTreeMap::new();
    for (i, dest) in dests.iter().enumerate() {
        let listing = match dest.sh(
            &format!("cd {LEDGER_DIR} 2>/dev/null || exit 0; for f in *.ledger; do [ -f \"$f\" ] && {{ echo \"== $f\"; cat \"$f\"; }}; done; true"),
            None,
        ) {
            Ok(t) => t,
            Err(e) => {
                failed = true;
                lines.push(format!("{}: could not read its ledgers: {e:#}", dest.node));
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
                    dest.node
                ));
                continue;
            }
            match remote::parse_ledger(&text) {
                Ok((entries, deadmen)) => {
                    let found = runs.entry(run).or_default();
                    for e in entries {
                        found.0.insert(e.seq, e);
                    }
                    for d in deadmen {
                        if !found.1.contains(&d) {
                            found.1.push(d);
                        }
                    }
                    found.2.push(i);
                }
                Err(e) => {
                    failed = true;
                    lines.push(format!(
                        "{}: run {run}: ledger not understood, left alone: {e:#}",
                        dest.node
                    ));
                }
            }
        }
    }
    for (run, (entries, deadmen, holders)) in runs {
        // Per destination: stop the dead-men, then servers back first, then the network;
        // a chain or qdisc once per destination.
        let mut scripts: BTreeMap<usize, String> = BTreeMap::new();
        let mut undone: Vec<(usize, Change)> = Vec::new();
        for d in &deadmen {
            let Some(&i) = node_dest.get(&d.node) else {
                continue;
            };
            scripts
                .entry(i)
                .or_default()
                .push_str(&format!("kill -KILL -{} 2>/dev/null\n", d.pid));
        }
        let mut ordered: Vec<&Entry> = entries.values().collect();
        ordered.sort_by_key(|e| {
            (
                !matches!(e.change, Change::Killed | Change::Stopped { .. }),
                e.seq,
            )
        });
        for e in ordered {
            let Some(&i) = node_dest.get(&e.node) else {
                failed = true;
                lines.push(format!(
                    "run {run}: {} ({}) is on a node the hosts file does not list: left alone",
                    e.change.line(),
                    e.node
                ));
                continue;
            };
            if !matches!(e.change, Change::Killed) && undone.contains(&(i, e.change.clone())) {
                continue;
            }
            let start = hosts.entry(&e.node).and_then(|h| h.start_command());
            if matches!(e.change, Change::Killed) && start.is_none() {
                failed = true;
                lines.push(format!(
                    "run {run}: {} was killed and the hosts file gives no command to start it",
                    e.node
                ));
            }
            scripts
                .entry(i)
                .or_default()
                .push_str(&e.change.revert(start));
            undone.push((i, e.change.clone()));
            lines.push(format!(
                "{}: run {run}: {} {}",
                e.node,
                if dry_run { "would revert" } else { "reverted" },
                e.change.line(),
            ));
        }
        for i in holders {
            scripts.entry(i).or_default();
        }
        if entries.is_empty() {
            lines.push(format!("run {run}: empty ledger removed"));
        }
        if dry_run {
            continue;
        }
        // Reverts everywhere first, then the files (a dead-man left running would read
        // its line gone and do nothing).
        for (i, script) in &scripts {
            if let Err(e) = dests[*i].sh(script, None) {
                failed = true;
                lines.push(format!(
                    "{}: run {run}: could not revert: {e:#}",
                    dests[*i].node
                ));
            }
        }
        for i in scripts.keys() {
            let rm = format!(
                "rm -f {} {LEDGER_DIR}/{run}.*.revert\n",
                remote::ledger_path(&run)
            );
            if let Err(e) = dests[*i].sh(&rm, None) {
                failed = true;
                lines.push(format!(
                    "{}: run {run}: could not remove its ledger: {e:#}",
                    dests[*i].node
                ));
            }
        }
    }
    for d in &dests {
        d.close();
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
