//! Every workload faultline can drive, by the name scenarios give it
//! (`workload: name: set`).
//!
//! Adding a workload is one file (a type implementing [`Workload`]) and one line in
//! [`WORKLOADS`]; scenario parsing and `faultline run` read the names from here.

use anyhow::{anyhow, Result};

use crate::counter::CounterWorkload;
use crate::list_append::ListAppendWorkload;
use crate::register::RegisterWorkload;
use crate::set::SetWorkload;
use crate::workload::{Workload, WorkloadParams};

/// One workload: its scenario name and how to build it for a run.
pub struct Entry {
    /// The name scenarios use.
    pub name: &'static str,
    /// The op functions (`f`) that only this workload writes: how a history with no
    /// scenario beside it tells which workload made it ([`infer`]).
    pub functions: &'static [&'static str],
    /// The checkers (by their registry names in `faultline-checkers`) that judge this
    /// workload's history; no other workload's runs are judged by them.
    pub checkers: &'static [&'static str],
    /// Builds the workload for one run.
    pub build: fn(WorkloadParams) -> Box<dyn Workload>,
}

impl Entry {
    const fn new(
        name: &'static str,
        functions: &'static [&'static str],
        checkers: &'static [&'static str],
        build: fn(WorkloadParams) -> Box<dyn Workload>,
    ) -> Entry {
        Entry {
            name,
            functions,
            checkers,
            build,
        }
    }
}

/// Every workload, the default first.
pub const WORKLOADS: &[Entry] = &[
    Entry::new("set", &["add"], &["lost-writes"], |p| {
        Box::new(SetWorkload::new(p))
    }),
    Entry::new("register", &["write", "cas"], &["linearizable"], |p| {
        Box::new(RegisterWorkload::new(p))
    }),
    Entry::new("counter", &["incr"], &["counter"], |p| {
        Box::new(CounterWorkload::new(p))
    }),
    Entry::new("list-append", &["append"], &["list-append"], |p| {
        Box::new(ListAppendWorkload::new(p))
    }),
];

/// The workloads' names, in [`WORKLOADS`] order (for scenario errors and help).
pub const NAMES: &[&str] = &names();

const fn names() -> [&'static str; WORKLOADS.len()] {
    let mut out = [""; WORKLOADS.len()];
    let mut i = 0;
    while i < WORKLOADS.len() {
        out[i] = WORKLOADS[i].name;
        i += 1;
    }
    out
}

/// The registry's own spelling of `name`, if it is a workload.
pub fn lookup(name: &str) -> Option<&'static str> {
    NAMES.iter().copied().find(|n| *n == name)
}

/// The workload whose own op functions (`Entry::functions`) the first of `functions`
/// that is one belongs to: for a history with no scenario beside it. `None` when none is
/// (a history of reads only, or of no workload of ours).
pub fn infer<'a>(functions: impl IntoIterator<Item = &'a str>) -> Option<&'static str> {
    functions.into_iter().find_map(|f| {
        WORKLOADS
            .iter()
            .find(|e| e.functions.contains(&f))
            .map(|e| e.name)
    })
}

/// The registry entry of the workload called `name`.
pub fn entry(name: &str) -> Option<&'static Entry> {
    WORKLOADS.iter().find(|e| e.name == name)
}

/// Every checker name some workload claims (each judges its own workload's runs only).
pub fn claimed_checkers() -> impl Iterator<Item = &'static str> {
    WORKLOADS.iter().flat_map(|e| e.checkers).copied()
}

/// Builds the workload called `name` from `params`.
///
/// # Errors
/// Names the choices when `name` is not a workload.
pub fn by_name(name: &str, params: WorkloadParams) -> Result<Box<dyn Workload>> {
    let entry = entry(name).ok_or_else(|| {
        anyhow!(
            "unknown workload {name:?}; choose one of {}",
            NAMES.join(", ")
        )
    })?;
    Ok((entry.build)(params))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_workload_builds_and_its_entry_names_its_checkers() {
        assert_eq!(NAMES.len(), WORKLOADS.len());
        for name in NAMES {
            let w = by_name(
                name,
                WorkloadParams {
                    keys: 4,
                    concurrency: 1,
                    rate: None,
                    seed: 0,
                    ..Default::default()
                },
            )
            .unwrap();
            drop(w);
            let checkers = entry(name).unwrap().checkers;
            assert!(!checkers.is_empty(), "{name} names no checker");
            assert_eq!(lookup(name), Some(*name));
        }
        let mut sorted = NAMES.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), NAMES.len(), "a workload name is listed twice");
    }

    #[test]
    fn a_history_tells_its_workload_by_its_writes() {
        assert_eq!(infer(["read", "add"]), Some("set"));
        assert_eq!(infer(["read", "cas"]), Some("register"));
        assert_eq!(infer(["incr"]), Some("counter"));
        assert_eq!(infer(["append", "read"]), Some("list-append"));
        assert_eq!(infer(["read"]), None);
        let mut all: Vec<&str> = WORKLOADS
            .iter()
            .flat_map(|e| e.functions)
            .copied()
            .collect();
        all.sort_unstable();
        let n = all.len();
        all.dedup();
        assert_eq!(all.len(), n, "two workloads claim one op function");
    }

    #[test]
    fn an_unknown_name_lists_the_choices() {
        let params = WorkloadParams {
            keys: 1,
            concurrency: 1,
            rate: None,
            seed: 0,
            ..Default::default()
        };
        let e = by_name("queue", params).err().unwrap().to_string();
        assert!(e.contains("\"queue\"") && e.contains("set"), "{e}");
        assert_eq!(lookup("queue"), None);
    }
}
