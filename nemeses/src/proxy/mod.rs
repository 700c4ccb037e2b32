//! The cluster bus proxy: every node's bus traffic through the harness, message by
//! message, so faults can delay, drop, duplicate or hold particular messages on particular
//! connections (the machine has no netem, and netem cannot tell a PONG from a PING).
//!
//! Module map:
//! - [`frame`]: cutting the byte stream into bus messages and reading their headers
//!   (pure; on anything that is not the bus it stops and passes bytes through).
//! - [`link`]: [`Link`], a message's sender, receiver, and which of the pair's two
//!   connections carries it.
//! - [`rule`]: [`Rule`]s and their verdicts (pass, delay, drop, duplicate, hold).
//! - [`bus_proxy`]: [`BusProxy`], the listeners and the handle: rules in and out at run
//!   time, what is held now ([`BusProxy::held`], [`BusProxy::wait_held`]), counters.
//! - `conn`: one proxied connection, both directions.
//! - [`held`], [`stats`]: what is held and released; what was carried and how fast.
//! - [`netns`]: sockets made inside a node's network namespace.
//! - [`spec`], [`fault`]: the scenario's `bus: proxy` and the `bus-delay`, `bus-drop` and
//!   `bus-hold` faults.
//! - [`stale_failover`]: `failover-while-held`, a failover fired while a PONG from the
//!   node about to be promoted is held for an observer (seeds 000 and 002).
//!
//! How traffic flows, for node B at 10.77.N.12 (the same in every namespace):
//!
//! ```text
//! A (10.77.N.11) --connect 10.77.N.12:17379--> proxy listener, made inside B's namespace
//!                                              | frames, rules
//!                 proxy --connect 10.77.N.12:16379, from inside B's namespace--> B's bus
//! ```
//!
//! B announces 17379 as its bus port (`cluster-announce-bus-port`), so every peer (and
//! `CLUSTER MEET ip port 17379`) reaches the proxy; its own address is announced too
//! (`cluster-announce-ip`), because B sees the proxy's onward connections come from its
//! own address and would otherwise take that for the peer's. On loopback every node has
//! its own proxy port on 127.0.0.1 and no namespace is involved.

pub mod bus_proxy;
mod conn;
pub mod fault;
pub mod frame;
pub mod held;
pub mod link;
pub mod netns;
pub mod rule;
pub mod spec;
pub mod stale_failover;
pub mod stats;

pub use bus_proxy::{BusProxy, ProxyNode, Removed};
pub use frame::{Header, MsgType};
pub use held::{HeldMessage, Released};
pub use link::Link;
pub use rule::{Match, Opener, Rule, RuleId, Verdict};
pub use spec::{BusDelaySpec, BusDropSpec, BusHoldSpec, BusMode, DelayMs, OpenedBy};
pub use stats::Stats;
