//! The run's own network, shared by the local and docker backends: a bridge in a
//! namespace of its own (the hub), a veth from the host to it, and one veth from it into
//! each node's network namespace.
//!
//! ```text
//! host ns:      fl<id>h 10.77.N.1  (the harness's way in)
//!                   |  veth
//! fl-<id>-hub:   up0 -- br0 -- n1, n2, ...
//!                               |  veth
//! fl-<id>-n1:                  eth0 10.77.N.11
//! ```
//!
//! The bridge sits in a namespace of its own so that no rule in the host's firewall (Docker
//! sets the host's FORWARD policy to DROP, and br_netfilter applies it to bridged frames)
//! can touch node-to-node traffic, and so that the run needs no rule in the host at all.
//! Every namespace and the host link are in the run's ledger before they exist; deleting
//! the namespaces deletes every link with them.

use std::net::Ipv4Addr;

use anyhow::{Context, Result};

use crate::ledger::{Ledger, RunId};
use crate::sys;

/// Makes the run's hub namespace, its bridge and the host's link to it, on a subnet
/// chosen for the run; returns the subnet as `10.77.N` (without its last octet).
///
/// # Errors
/// Any step fails (not root, no free subnet); what was made is in the ledger.
pub fn make(id: &RunId, ledger: &mut Ledger) -> Result<String> {
    let hub = id.hub_netns();
    let host_link = id.host_link();
    sys::ip(&["netns", "add", &hub]).context("creating the run's hub namespace (are you root?)")?;
    ledger.netns.push(hub.clone());
    ledger.save()?;
    sys::ip_batch(
        &hub,
        &[
            "link set lo up".into(),
            "link add br0 type bridge".into(),
            "link set br0 up".into(),
        ],
    )?;
    // Choosing a subnet and claiming it must not race another run doing the same.
    let (_lock, net) = super::subnet::choose(id)?;
    ledger.host_links.push(host_link.clone());
    ledger.save()?;
    sys::ip(&[
        "link", "add", &host_link, "type", "veth", "peer", "name", "up0", "netns", &hub,
    ])?;
    sys::ip(&["addr", "add", &format!("{net}.1/24"), "dev", &host_link])?;
    sys::ip(&["link", "set", &host_link, "up"])?;
    drop(_lock);
    sys::ip_batch(&hub, &["link set up0 master br0 up".into()])?;
    Ok(net)
}

/// Plugs the node `name`'s namespace `netns` (named, under /run/netns) into the hub: a
/// veth `name` on the bridge, `eth0` with address `ip` inside, both up, and `lo` up.
///
/// # Errors
/// An `ip` command fails.
pub fn plug(id: &RunId, name: &str, netns: &str, ip: Ipv4Addr) -> Result<()> {
    sys::ip_batch(
        &id.hub_netns(),
        &[
            format!("link add {name} type veth peer name eth0 netns {netns}"),
            format!("link set {name} master br0 up"),
        ],
    )
    .with_context(|| format!("linking {name} to the run's bridge"))?;
    sys::ip_batch(
        netns,
        &[
            "link set lo up".into(),
            format!("addr add {ip}/24 dev eth0"),
            "link set eth0 up".into(),
        ],
    )
    .with_context(|| format!("addressing {name} ({ip})"))
}
