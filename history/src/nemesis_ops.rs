//! What each fault kind writes into the history, for the readers of it.
//!
//! The nemesis records every action as an op under process `nemesis` whose `f` names the
//! action: a fault applied (`partition`), undone (`heal`, `restart`), or a final-phase
//! sweep (`heal-all`, `settle-slots`). Each fault package declares its [`FaultOps`]; the
//! nemeses registry collects them into one [`NemesisOps`] catalog
//! (`faultline_nemeses::registry::op_catalog`), which the checkers and the report ask
//! instead of matching names themselves. This crate holds only the data, so the checkers
//! stay free of the nemeses.

/// The op names one fault kind writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultOps {
    /// The kind's name in scenarios (`kind: partition`).
    pub kind: &'static str,
    /// The `f` of the ops that apply it.
    pub starts: &'static [&'static str],
    /// The `f` of the ops that undo one application (empty for a fault that does not last).
    pub heals: &'static [&'static str],
    /// The `f` of the final phase's sweeps that undo whatever is left of it.
    pub sweeps: &'static [&'static str],
    /// Whether applying it is a manual failover whose outcome the `failover` checker judges.
    pub failover: bool,
    /// Whether a failover is expected to fail while it is in force (the `failover`
    /// checker counts such failures apart instead of as findings).
    pub disrupts_failover: bool,
}

impl FaultOps {
    /// A kind applied by the ops `starts` and named after the first; not healed, swept,
    /// a failover nor disrupting one until the builders below say so.
    pub const fn new(starts: &'static [&'static str]) -> FaultOps {
        FaultOps {
            kind: starts[0],
            starts,
            heals: &[],
            sweeps: &[],
            failover: false,
            disrupts_failover: false,
        }
    }

    /// Undone by the ops `heals`.
    pub const fn with_heals(mut self, heals: &'static [&'static str]) -> FaultOps {
        self.heals = heals;
        self
    }

    /// Swept by the final phase's ops `sweeps`.
    pub const fn with_sweeps(mut self, sweeps: &'static [&'static str]) -> FaultOps {
        self.sweeps = sweeps;
        self
    }

    /// A manual failover.
    pub const fn failing_over(mut self) -> FaultOps {
        self.failover = true;
        self
    }

    /// A fault under which failovers are expected to fail.
    pub const fn disrupting_failovers(mut self) -> FaultOps {
        self.disrupts_failover = true;
        self
    }
}

/// Every fault kind's op names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NemesisOps {
    kinds: &'static [FaultOps],
}

impl NemesisOps {
    /// A catalog of these kinds.
    pub const fn new(kinds: &'static [FaultOps]) -> NemesisOps {
        NemesisOps { kinds }
    }

    /// Every kind.
    pub fn kinds(&self) -> &'static [FaultOps] {
        self.kinds
    }

    /// Whether op `f` undoes faults: a heal or a sweep.
    pub fn is_heal(&self, f: &str) -> bool {
        self.kinds
            .iter()
            .any(|k| k.heals.contains(&f) || k.sweeps.contains(&f))
    }

    /// Whether op `f` applies a manual failover.
    pub fn is_failover(&self, f: &str) -> bool {
        self.kinds
            .iter()
            .any(|k| k.failover && k.starts.contains(&f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: &[FaultOps] = &[
        FaultOps::new(&["partition"])
            .with_heals(&["heal"])
            .with_sweeps(&["heal-all"])
            .disrupting_failovers(),
        FaultOps::new(&["failover"]).failing_over(),
    ];

    #[test]
    fn heals_and_sweeps_heal_and_failovers_are_named() {
        let ops = NemesisOps::new(KINDS);
        assert!(ops.is_heal("heal") && ops.is_heal("heal-all"));
        assert!(!ops.is_heal("partition") && !ops.is_heal("heal-bus"));
        assert!(ops.is_failover("failover") && !ops.is_failover("partition"));
        assert!(!NemesisOps::default().is_heal("heal"));
    }
}
