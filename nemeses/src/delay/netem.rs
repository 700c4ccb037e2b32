//! tc netem, where the kernel has it: the first choice for `delay` and `loss`.
//!
//! In each sender's namespace, on the device that routes to the peers, the fault installs
//! a `prio` root qdisc with [`BANDS`] bands (`1:`; the default priomap only uses the first
//! three, so ordinary traffic is untouched), a netem qdisc on the fault's own band
//! ([`Band::Delay`] `1:4`, [`Band::Loss`] `1:5`) and u32 filters that send the link's
//! packets there (destination address, and with `ports` the same source-or-destination port
//! match as the iptables rules). A fixed delay is `delay D`; a range `[a, b]` is `delay
//! (a+b)/2 (b-a)/2`, netem's uniform jitter, which reorders packets as the delayer does.
//! Loss is `loss P%`. netem draws from the kernel's random numbers, not the run's seed:
//! ops record `"seeded": false`.
//!
//! Healing one fault removes its filters and its band's netem; [`HEAL_ALL`] removes the
//! root qdisc wherever it is faultline's (`prio 1:` in a namespace the run created).
//!
//! Where netem (or prio) is missing, the script reports [`UNAVAILABLE`] and leaves nothing
//! behind, and a fault whose `mechanism` is `auto` falls back to the NFQUEUE delayer or
//! iptables `statistic` (see the module above).

use serde::{Deserialize, Serialize};

use crate::control::NodeInfo;
use crate::proxy::spec::DelayMs;
use crate::spec::Ports;

/// Bands of the root prio qdisc: the three ordinary ones plus one per fault kind.
pub const BANDS: u8 = 5;

/// What the install script prints when the kernel lacks prio or netem.
pub const UNAVAILABLE: &str = "netem-unavailable:";

/// What the install script prints when it is done.
pub const INSTALLED: &str = "installed";

/// Which mechanism a `delay` or `loss` fault uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mechanism {
    /// netem where the kernel has it, else the fallback (the default).
    #[default]
    Auto,
    /// netem or nothing: the fault fails, saying why, where netem is missing.
    Netem,
    /// Never netem: the NFQUEUE delayer for `delay`, iptables `statistic` for `loss`.
    Fallback,
}

impl Mechanism {
    /// Whether this is the default, for `skip_serializing_if`.
    pub fn is_auto(&self) -> bool {
        *self == Mechanism::Auto
    }
}

/// The band, and so the netem qdisc and filter priority, a fault kind owns in the root
/// prio qdisc; a delay and a loss can act on one sender at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Band {
    /// `1:4`, netem handle `40:`, filter priority 4.
    Delay,
    /// `1:5`, netem handle `50:`, filter priority 5.
    Loss,
}

impl Band {
    fn number(self) -> u8 {
        match self {
            Band::Delay => 4,
            Band::Loss => 5,
        }
    }
}

/// netem's arguments for a delay range, in microseconds so a half-millisecond midpoint
/// stays exact. Queue limit raised well above netem's 1000 packets, as the delayer's.
pub fn delay_args(d: DelayMs) -> String {
    let (min, max) = (d.min * 1000, d.max * 1000);
    let mid = (min + max) / 2;
    let jitter = (max - min) / 2;
    if jitter == 0 {
        format!("delay {mid}us limit 100000")
    } else {
        format!("delay {mid}us {jitter}us limit 100000")
    }
}

/// netem's arguments for a loss probability in (0, 1].
pub fn loss_args(p: f64) -> String {
    format!("loss {}%", trim_float(p * 100.0))
}

fn trim_float(x: f64) -> String {
    let s = format!("{x:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The u32 matches of the filters for one peer: by destination address, and with `ports`
/// one filter per port and direction (source or destination), as iptables' `multiport
/// --ports` matches either.
fn matches(me: &NodeInfo, peer: &NodeInfo, ports: Ports) -> Vec<String> {
    let dst = format!("match ip dst {}/32", peer.ip);
    let pair = match ports {
        Ports::All => return vec![dst],
        Ports::Bus => (me.bus_port, peer.bus_port),
        Ports::Client => (me.port, peer.port),
    };
    let mut set = vec![pair.0, pair.1];
    set.sort_unstable();
    set.dedup();
    let mut out = Vec::new();
    for p in set {
        for dir in ["dport", "sport"] {
            out.push(format!("{dst} match ip {dir} {p} 0xffff"));
        }
    }
    out
}

/// The shell script (for `sh -s` in the sender's namespace) that makes the sender's
/// packets to `peers` go through netem with `args` on `band`. It prints [`INSTALLED`] and
/// the device, or [`UNAVAILABLE`] and the kernel's words when prio or netem is missing (and
/// then leaves nothing behind); any other failure is a non-zero exit with the error on
/// stderr. Replaces what the same band held before.
pub fn install_script(
    me: &NodeInfo,
    peers: &[&NodeInfo],
    ports: Ports,
    band: Band,
    args: &str,
) -> String {
    let Some(first) = peers.first() else {
        return "echo 'no peers' >&2; exit 1\n".to_string();
    };
    let b = band.number();
    let mut s = String::new();
    s.push_str(&format!(
        "dev=$(ip -o route get {ip} | sed -n 's/.* dev \\([^ ]*\\).*/\\1/p')\n\
         [ -n \"$dev\" ] || {{ echo 'no route to {ip}' >&2; exit 1; }}\n",
        ip = first.ip
    ));
    // A qdisc kind the kernel lacks is the fallback's cue, not an error.
    s.push_str(
        "try() { if out=$(\"$@\" 2>&1); then return 0; fi\n\
         case $out in *nknown*|*\"not found\"*|*\"No such file\"*) \
         echo \"netem-unavailable: $out\"; exit 0 ;; esac\n\
         echo \"$* : $out\" >&2; exit 1; }\n",
    );
    s.push_str(&format!(
        "if ! tc qdisc show dev \"$dev\" | grep -q '^qdisc prio 1: root'; then\n\
         try tc qdisc add dev \"$dev\" root handle 1: prio bands {BANDS} priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1\n\
         new_root=1\nfi\n"
    ));
    s.push_str(&format!(
        "tc filter del dev \"$dev\" parent 1: prio {b} 2>/dev/null\n\
         tc qdisc del dev \"$dev\" parent 1:{b} handle {b}0: 2>/dev/null\n\
         if ! out=$(tc qdisc add dev \"$dev\" parent 1:{b} handle {b}0: netem {args} 2>&1); then\n\
         [ -n \"${{new_root:-}}\" ] && tc qdisc del dev \"$dev\" root 2>/dev/null\n\
         case $out in *nknown*|*\"not found\"*|*\"No such file\"*) echo \"netem-unavailable: $out\"; exit 0 ;; esac\n\
         echo \"netem {args}: $out\" >&2; exit 1\nfi\n"
    ));
    for peer in peers {
        for m in matches(me, peer, ports) {
            s.push_str(&format!(
                "try tc filter add dev \"$dev\" parent 1: protocol ip prio {b} u32 {m} flowid 1:{b}\n"
            ));
        }
    }
    s.push_str("echo \"installed $dev\"\n");
    s
}

/// The script that undoes one fault's band in a node: its filters and its netem go; the
/// root qdisc goes too unless the other band still has filters. Prints the devices it
/// touched.
pub fn heal_script(band: Band) -> String {
    let b = band.number();
    format!(
        "for dev in $(ls /sys/class/net); do\n\
         tc qdisc show dev \"$dev\" 2>/dev/null | grep -q '^qdisc prio 1: root' || continue\n\
         tc filter del dev \"$dev\" parent 1: prio {b} 2>/dev/null\n\
         tc qdisc del dev \"$dev\" parent 1:{b} handle {b}0: 2>/dev/null\n\
         [ -z \"$(tc filter show dev \"$dev\" parent 1:)\" ] && tc qdisc del dev \"$dev\" root\n\
         echo \"$dev\"\ndone\n"
    )
}

/// The script that removes faultline's root qdisc from every device of a node (the final
/// phase's guarantee): prints the devices it cleared. The namespace is the run's own, so a
/// `prio 1:` root there is faultline's.
pub const HEAL_ALL: &str = "for dev in $(ls /sys/class/net); do
tc qdisc show dev \"$dev\" 2>/dev/null | grep -q '^qdisc prio 1: root' || continue
tc qdisc del dev \"$dev\" root && echo \"$dev\"
done
";

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, last: u8) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            ip: format!("10.77.3.{last}").parse().unwrap(),
            port: 6379,
            bus_port: 16379,
        }
    }

    #[test]
    fn delay_range_is_midpoint_and_uniform_jitter() {
        assert_eq!(
            delay_args(DelayMs { min: 100, max: 100 }),
            "delay 100000us limit 100000"
        );
        assert_eq!(
            delay_args(DelayMs { min: 50, max: 151 }),
            "delay 100500us 50500us limit 100000"
        );
        assert_eq!(loss_args(0.3), "loss 30%");
        assert_eq!(loss_args(0.00125), "loss 0.125%");
    }

    #[test]
    fn install_script_routes_only_the_links_packets_to_the_band() {
        let me = node("n1", 11);
        let (a, b) = (node("n2", 12), node("n3", 13));
        let s = install_script(&me, &[&a, &b], Ports::Client, Band::Delay, "delay 5000us");
        assert!(s.contains("ip -o route get 10.77.3.12"));
        assert!(s.contains("root handle 1: prio bands 5 priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1"));
        assert!(s.contains("parent 1:4 handle 40: netem delay 5000us"));
        for ip in ["10.77.3.12", "10.77.3.13"] {
            for dir in ["dport", "sport"] {
                let f = format!(
                    "try tc filter add dev \"$dev\" parent 1: protocol ip prio 4 u32 match ip dst {ip}/32 match ip {dir} 6379 0xffff flowid 1:4"
                );
                assert!(s.contains(&f), "{f} missing from\n{s}");
            }
        }
        let all = install_script(&me, &[&a], Ports::All, Band::Loss, "loss 30%");
        assert!(all.contains("prio 5 u32 match ip dst 10.77.3.12/32 flowid 1:5"));
        assert!(all.contains("parent 1:5 handle 50: netem loss 30%"));
        assert!(!all.contains("dport"));
    }

    #[test]
    fn heal_touches_only_the_band() {
        let h = heal_script(Band::Loss);
        assert!(h.contains("tc filter del dev \"$dev\" parent 1: prio 5"));
        assert!(h.contains("parent 1:5 handle 50:"));
        // The root goes only once no filter of either band is left.
        assert!(h.contains(
            "[ -z \"$(tc filter show dev \"$dev\" parent 1:)\" ] && tc qdisc del dev \"$dev\" root"
        ));
    }

    #[test]
    fn mechanism_parses_lowercase_with_auto_default() {
        assert_eq!(Mechanism::default(), Mechanism::Auto);
        let m: Mechanism = serde_json::from_str("\"fallback\"").unwrap();
        assert_eq!(m, Mechanism::Fallback);
        assert!(serde_json::from_str::<Mechanism>("\"tc\"").is_err());
    }
}
