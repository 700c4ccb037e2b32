//! Every workload faultline can drive, by the name scenarios give it
//! (`workload: name: set`).
//!
//! Adding a workload is one file (a type implementing [`Workload`]) and one line in
//! [`WORKLOADS`]; scenario parsing and `faultline run` read the names from here.

use anyhow::{anyhow, Result};

use crate::set::SetWorkload;
use crate::workload::{Workload, WorkloadParams};

/// One workload: its scenario name and how to build it for a run.
pub struct Entry {
    /// The name scenarios use.
    pub name: &'static str,
    /// Builds the workload for one run.
    pub build: fn(WorkloadParams) -> Box<dyn Workload>,
}

impl Entry {
    const fn new(name: &'static str, build: fn(WorkloadParams) -> Box<dyn Workload>) -> Entry {
        Entry { name, build }
    }
}

/// Every workload, the default first.
pub const WORKLOADS: &[Entry] = &[Entry::new("set", |p| Box::new(SetWorkload::new(p)))];

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

/// Builds the workload called `name` from `params`.
///
/// # Errors
/// Names the choices when `name` is not a workload.
pub fn by_name(name: &str, params: WorkloadParams) -> Result<Box<dyn Workload>> {
    let entry = WORKLOADS.iter().find(|e| e.name == name).ok_or_else(|| {
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
    fn every_workload_builds_and_names_its_checkers() {
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
            assert!(!w.checkers().is_empty(), "{name} names no checker");
            assert_eq!(lookup(name), Some(*name));
        }
        let mut sorted = NAMES.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), NAMES.len(), "a workload name is listed twice");
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
