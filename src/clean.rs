//! `faultline clean`: removes what runs left behind.
//!
//! Two passes. First the ledgers (see [`crate::ledger`]) of runs whose faultline process is
//! gone: everything they list goes. Then a sweep for names only a run could have made
//! (`fl-<6 hex>-...` namespaces, `fl<6 hex>h` host links, containers and Docker networks
//! labelled `faultline.run=<6 hex>`) whose run has no live owner, in
//! case a run died before writing its ledger. Resources of a run whose owner is still
//! alive are never touched.

use std::collections::HashSet;

use anyhow::anyhow;

use crate::cli::CleanArgs;
use crate::exit::{self, Failure};
use crate::ledger::{Ledger, RunId};
use crate::sys;

/// `faultline clean`.
///
/// # Errors
/// Bad input for a malformed `--run`; harness error if something could not be removed.
pub fn command(args: &CleanArgs) -> Result<u8, Failure> {
    let only = match &args.run {
        Some(s) => Some(RunId::parse(s).ok_or_else(|| {
            Failure::bad_input(anyhow!(
                "--run takes a six-hex-digit run id like 3fa9c1, got {s:?}"
            ))
        })?),
        None => None,
    };
    if let Some(file) = &args.live {
        return live_hosts(file, only.as_ref(), args.dry_run);
    }
    let wanted = |id: &RunId| only.as_ref().is_none_or(|o| o == id);
    let (ledgers, problems) = Ledger::load_all();
    for p in problems {
        eprintln!("faultline: unreadable ledger {p}");
    }
    let live: HashSet<RunId> = ledgers
        .iter()
        .filter(|l| l.owner_alive())
        .map(|l| l.run_id.clone())
        .collect();
    let mut actions = Vec::new();
    let mut failed = false;
    for ledger in ledgers.iter().filter(|l| wanted(&l.run_id)) {
        if live.contains(&ledger.run_id) {
            println!(
                "run {}: still running (pid {}), left alone",
                ledger.run_id, ledger.owner_pid
            );
            continue;
        }
        let label = if ledger.keep {
            " (kept with --keep)"
        } else {
            ""
        };
        if args.dry_run {
            let others: String = ledger
                .resources
                .iter()
                .map(|(kind, names)| format!(", {} {names:?}", kind.replace('_', " ")))
                .collect();
            actions.push(format!(
                "run {}{label}: would remove namespaces {:?}, links {:?}{others}",
                ledger.run_id, ledger.netns, ledger.host_links
            ));
            continue;
        }
        for line in crate::backend::release(ledger) {
            failed |= line.starts_with("could not");
            actions.push(format!("run {}{label}: {line}", ledger.run_id));
        }
    }

    // Sweep names that only a run makes, for runs without a ledger.
    let netns = sys::netns_list().map_err(Failure::from)?;
    for ns in netns {
        let Some(id) = RunId::of_netns(&ns) else {
            continue;
        };
        if live.contains(&id) || !wanted(&id) {
            continue;
        }
        if args.dry_run {
            actions.push(format!("would remove namespace {ns} (no ledger)"));
            continue;
        }
        for pid in sys::netns_pids(&ns) {
            sys::kill9(pid);
            actions.push(format!("killed pid {pid} in {ns}"));
        }
        match sys::ip(&["netns", "del", &ns]) {
            Ok(_) => actions.push(format!("deleted namespace {ns} (no ledger)")),
            Err(e) => {
                failed = true;
                actions.push(format!("could not delete namespace {ns}: {e:#}"));
            }
        }
    }
    for link in sys::host_links().map_err(Failure::from)? {
        let Some(id) = RunId::of_host_link(&link) else {
            continue;
        };
        if live.contains(&id) || !wanted(&id) {
            continue;
        }
        if args.dry_run {
            actions.push(format!("would remove link {link} (no ledger)"));
            continue;
        }
        match sys::delete_link(&link) {
            Ok(_) => actions.push(format!("deleted link {link} (no ledger)")),
            Err(e) => {
                failed = true;
                actions.push(format!("could not delete link {link}: {e:#}"));
            }
        }
    }
    // Containers and networks labelled with a run id, likewise (docker backend).
    let (containers, networks) = crate::backend::docker::leftovers(&live, &wanted);
    if args.dry_run {
        actions.extend(
            containers
                .iter()
                .map(|c| format!("would remove container {c} (no ledger)")),
        );
        actions.extend(
            networks
                .iter()
                .map(|n| format!("would remove Docker network {n} (no ledger)")),
        );
    } else {
        for line in crate::backend::docker::remove(&containers, &networks) {
            failed |= line.starts_with("could not");
            actions.push(format!("{line} (no ledger)"));
        }
    }
    if actions.is_empty() {
        println!("nothing to clean");
    }
    for a in &actions {
        println!("{a}");
    }
    Ok(if failed {
        exit::HARNESS_ERROR
    } else {
        exit::VALID
    })
}

/// `faultline clean --live HOSTS_FILE`: only the hosts of that file ([`crate::live::clean`]).
fn live_hosts(file: &std::path::Path, only: Option<&RunId>, dry_run: bool) -> Result<u8, Failure> {
    use crate::live::hosts::HostsFile;
    if let Err(e) = HostsFile::load(file) {
        return Err(Failure::bad_input(anyhow!("{e}")));
    }
    let (lines, failed) = crate::live::clean::clean(file, only, dry_run).map_err(Failure::from)?;
    if lines.is_empty() {
        println!("nothing to clean on the hosts of {}", file.display());
    }
    for l in &lines {
        println!("{l}");
    }
    Ok(if failed {
        exit::HARNESS_ERROR
    } else {
        exit::VALID
    })
}
