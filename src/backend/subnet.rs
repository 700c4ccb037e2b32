//! Run subnets: each run takes a /24 of its own under `FAULTLINE_SUBNET_PREFIX` (default
//! 10.77), one that overlaps no address or route on this machine. Both the local and the
//! docker backend take theirs here, under one lock, so concurrent runs of either never
//! pick the same one.

use std::fs::{self, File};
use std::net::Ipv4Addr;

use anyhow::{bail, Result};
use nix::fcntl::{Flock, FlockArg};

use crate::ledger::{state_dir, RunId};
use crate::sys;

/// First two octets of run subnets; override with `FAULTLINE_SUBNET_PREFIX` (e.g. `10.78`).
pub const DEFAULT_SUBNET_PREFIX: &str = "10.77";

/// A free /24 for run `id`, as its first three octets (`10.77.N`), and the lock that
/// must be held until the subnet is claimed (an address or route on it exists).
///
/// # Errors
/// A malformed prefix, the lock, or no free /24 under the prefix.
pub fn choose(id: &RunId) -> Result<(Flock<File>, String)> {
    let lock = subnet_lock()?;
    let prefix = subnet_prefix()?;
    let third = free_subnet(&prefix, id)?;
    Ok((lock, format!("{prefix}.{third}")))
}

fn subnet_lock() -> Result<Flock<File>> {
    let dir = state_dir();
    fs::create_dir_all(&dir)?;
    let file = File::create(dir.join("subnet.lock"))?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| anyhow::anyhow!("locking subnet.lock: {e}"))
}

fn subnet_prefix() -> Result<String> {
    let prefix =
        std::env::var("FAULTLINE_SUBNET_PREFIX").unwrap_or_else(|_| DEFAULT_SUBNET_PREFIX.into());
    let ok = prefix.split('.').count() == 2 && prefix.split('.').all(|o| o.parse::<u8>().is_ok());
    if !ok {
        bail!("FAULTLINE_SUBNET_PREFIX must be two octets like 10.77, got {prefix:?}");
    }
    Ok(prefix)
}

/// A /24 under `prefix` that overlaps no address or route on this machine, starting from a
/// spot derived from the run id so concurrent runs tend not to probe the same ones.
fn free_subnet(prefix: &str, id: &RunId) -> Result<u8> {
    let mut taken = Vec::new();
    for args in [
        &["-4", "-o", "addr", "show"][..],
        &["-4", "route", "show", "table", "all"][..],
    ] {
        for word in sys::ip(args)?.split_whitespace() {
            if let Some(net) = parse_cidr(word) {
                taken.push(net);
            }
        }
    }
    let start = u32::from_str_radix(id.as_str(), 16).unwrap_or(0) % 254;
    for k in 0..254u32 {
        let third = ((start + k) % 254 + 1) as u8;
        let base: Ipv4Addr = format!("{prefix}.{third}.0").parse()?;
        if !taken
            .iter()
            .any(|&(net, len)| overlaps((base, 24), (net, len)))
        {
            return Ok(third);
        }
    }
    bail!("no free /24 left under {prefix}.0.0/16; set FAULTLINE_SUBNET_PREFIX to another range")
}

fn parse_cidr(word: &str) -> Option<(Ipv4Addr, u8)> {
    let (addr, len) = word.split_once('/')?;
    Some((addr.parse().ok()?, len.parse().ok().filter(|l| *l <= 32)?))
}

fn overlaps(a: (Ipv4Addr, u8), b: (Ipv4Addr, u8)) -> bool {
    let len = a.1.min(b.1);
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    };
    (u32::from(a.0) & mask) == (u32::from(b.0) & mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_is_by_the_shorter_prefix() {
        let n = |s: &str| parse_cidr(s).unwrap();
        assert!(overlaps(n("10.77.3.0/24"), n("10.77.3.1/24")));
        assert!(overlaps(n("10.77.3.0/24"), n("10.0.0.0/8")));
        assert!(!overlaps(n("10.77.3.0/24"), n("10.77.4.0/24")));
        assert!(!overlaps(n("10.77.3.0/24"), n("192.0.2.2/24")));
        assert!(overlaps(n("10.77.3.0/24"), n("0.0.0.0/0")));
    }
}
