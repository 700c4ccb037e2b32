//! Partitions against real namespaces and real servers: exactly the links a grudge names
//! are cut (checked with TCP from inside the namespaces, every ordered pair), the host
//! keeps reaching every node, port-limited cuts leave the other port alone, one-way cuts
//! are one-way where TCP can tell, and healing leaves the run's chain empty and nothing
//! else in the namespaces' firewall changed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Instant;

use common::{with_cluster_lock, Cluster};
use faultline_history::bounds::Bounded;
use faultline_nemeses::partition::{chain_name, heal_all, Partition};
use faultline_nemeses::spec::{PartitionSpec, Ports, Shape, Target};
use faultline_nemeses::{Applied, Fault, NodeInfo, Outcome};
use serde_json::Value;

/// A probe's time-out: a dropped SYN (or SYN-ACK) shows as `timeout` giving up.
const PROBE_TIMEOUT_S: &str = "1";
/// `timeout`'s exit code when the command ran out of time.
const TIMED_OUT: i32 = 124;

impl Cluster {
    /// The host's address on the run's subnet (10.77.N.1): where clients come from.
    fn host_ip(&self) -> Ipv4Addr {
        let [a, b, c, _] = self.nodes()[0].ip.octets();
        Ipv4Addr::new(a, b, c, 1)
    }

    /// `iptables ARGS` inside a node's namespace.
    fn iptables(&self, node: &str, program: &str, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.netns(node), program])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?} in {node}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The source addresses `node`'s chain drops, by rule.
    fn chain_sources(&self, node: &str) -> Vec<String> {
        let chain = chain_name(self.run_id.as_str());
        self.iptables(node, "iptables", &["-S", &chain])
            .lines()
            .filter(|l| l.starts_with("-A "))
            .map(|l| {
                let mut words = l.split_whitespace();
                words.find(|w| *w == "-s").unwrap();
                words.next().unwrap().trim_end_matches("/32").to_string()
            })
            .collect()
    }
}

/// How a TCP connection attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// Connected.
    Open,
    /// No answer in time: a SYN or SYN-ACK was dropped.
    TimedOut,
    /// Refused or another failure.
    Failed(i32),
}

/// Tries one TCP connection, from inside `netns` (or the host's namespace for `None`).
fn probe(netns: Option<&str>, ip: Ipv4Addr, port: u16) -> Reach {
    let script = format!("exec 3<>/dev/tcp/{ip}/{port}");
    let mut cmd = Command::new(if netns.is_some() { "ip" } else { "timeout" });
    if let Some(ns) = netns {
        cmd.args(["netns", "exec", ns, "timeout"]);
    }
    let status = cmd
        .args([PROBE_TIMEOUT_S, "bash", "-c", &script])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    match status.code() {
        Some(0) => Reach::Open,
        Some(TIMED_OUT) => Reach::TimedOut,
        other => Reach::Failed(other.unwrap_or(-1)),
    }
}

/// One connection attempt: from node (or the host, `None`) to node, port.
type Link = (Option<String>, String, u16);

/// Probes every ordered pair of nodes on each of `ports`, and the host to every node on
/// each, all at once.
fn matrix(c: &Cluster, ports: &[u16]) -> BTreeMap<Link, Reach> {
    let nodes = c.nodes();
    let mut links: Vec<(Link, Ipv4Addr)> = Vec::new();
    for to in &nodes {
        for &port in ports {
            links.push(((None, to.name.clone(), port), to.ip));
            for from in nodes.iter().filter(|f| f.name != to.name) {
                links.push(((Some(from.name.clone()), to.name.clone(), port), to.ip));
            }
        }
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = links
            .into_iter()
            .map(|(link, ip)| {
                let ns = link.0.as_ref().map(|f| c.netns(f));
                s.spawn(move || {
                    let reach = probe(ns.as_deref(), ip, link.2);
                    (link, reach)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Asserts that exactly the links in `cut` time out and every other one connects.
fn assert_cut_exactly(seen: &BTreeMap<Link, Reach>, cut: &BTreeSet<Link>, when: &str) {
    for (link, reach) in seen {
        let want = if cut.contains(link) {
            Reach::TimedOut
        } else {
            Reach::Open
        };
        assert_eq!(*reach, want, "{when}: {link:?}");
    }
}

/// The grudge of an applied partition, from its recorded value.
fn grudge(applied: &Applied) -> BTreeMap<String, BTreeSet<String>> {
    serde_json::from_value(applied.value["grudge"].clone()).unwrap()
}

/// The node-to-node links (on `ports`) whose TCP handshake cannot complete under
/// `grudge`: `a` connecting to `b` needs `b` to take `a`'s SYN and `a` to take `b`'s
/// SYN-ACK, so either direction's drop cuts it.
fn handshake_cuts(
    grudge: &BTreeMap<String, BTreeSet<String>>,
    nodes: &[NodeInfo],
    ports: &[u16],
) -> BTreeSet<Link> {
    let drops = |a: &str, b: &str| grudge.get(a).is_some_and(|d| d.contains(b));
    let mut cut = BTreeSet::new();
    for a in nodes {
        for b in nodes.iter().filter(|b| b.name != a.name) {
            if drops(&a.name, &b.name) || drops(&b.name, &a.name) {
                for &port in ports {
                    cut.insert((Some(a.name.clone()), b.name.clone(), port));
                }
            }
        }
    }
    cut
}

fn partition(shape: Shape, target: Target, ports: Ports) -> Partition {
    Partition::new(PartitionSpec {
        shape,
        target,
        count: None,
        ports,
    })
}

/// The rules in `node`'s chain, or none while the chain does not exist yet.
fn chain_rules_if_any(c: &Cluster, node: &str) -> usize {
    let out = Command::new("ip")
        .args(["netns", "exec", &c.netns(node), "iptables", "-S"])
        .arg(chain_name(c.run_id.as_str()))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("-A "))
        .count()
}

/// A partition prepared ahead of its instant (inside a gate, as the runner applies it)
/// installs nothing before the instant, records its invoke at the instant, and then holds
/// exactly its grudge, as the same partition applied at once does.
#[test]
fn a_prepared_partition_installs_nothing_before_its_instant_and_its_exact_cut_at_it() {
    with_cluster_lock(async {
        use faultline_history::{Op, OpType, Process, Recorder};
        use faultline_nemeses::instant::Gate;
        use std::sync::Arc;

        let c = Cluster::redis(3, 0).await;
        let nodes = c.nodes();
        let dir = tempfile::tempdir().unwrap();
        let recorder = Recorder::create(&dir.path().join("history.jsonl")).unwrap();
        let due = Instant::now() + std::time::Duration::from_millis(800);
        let invoke = Op::new(Process::Nemesis, OpType::Invoke, "partition");
        let gate = Arc::new(Gate::new(
            due,
            recorder.clone(),
            tokio_util::sync::CancellationToken::new(),
            invoke,
        ));
        let fault = partition(Shape::Isolate, Target::One, Ports::All);
        let apply = gate.scope(fault.apply(&c.ctx, 7));
        // Watch the chains while the fault prepares; an observation that ended before the
        // instant must have seen no rule.
        let watch = async {
            let mut seen_before = 0;
            while Instant::now() < due {
                for n in &nodes {
                    let c = &c;
                    let name = n.name.clone();
                    let rules = tokio::task::spawn_blocking({
                        let ns = c.netns(&name);
                        let chain = chain_name(c.run_id.as_str());
                        move || {
                            let out = Command::new("ip")
                                .args(["netns", "exec", &ns, "iptables", "-S", &chain])
                                .output()
                                .unwrap();
                            String::from_utf8_lossy(&out.stdout)
                                .lines()
                                .filter(|l| l.starts_with("-A "))
                                .count()
                        }
                    })
                    .await
                    .unwrap();
                    if Instant::now() < due {
                        assert_eq!(rules, 0, "{name} held rules before the fault's instant");
                        seen_before += 1;
                    }
                }
            }
            seen_before
        };
        let (applied, seen_before) = tokio::join!(apply, watch);
        assert!(seen_before > 0, "no observation ended before the instant");
        assert_eq!(applied.outcome, Outcome::Ok, "{:?}", applied.error);
        let fired = gate.fired().expect("the prepared partition fired");
        assert!(fired.effect >= fired.late);
        assert_eq!(fired.invoke.f, "partition");
        assert!(fired.invoke.extra["late_ms"].is_number());
        assert_eq!(
            recorder.len(),
            1,
            "only the invoke; the runner records the completion"
        );

        // Exactly the grudge, as for a partition applied at once.
        let g = grudge(&applied);
        for n in &nodes {
            let want = g.get(&n.name).map_or(0, BTreeSet::len);
            assert_eq!(chain_rules_if_any(&c, &n.name), want, "{}'s rules", n.name);
        }
        let ports = [nodes[0].port];
        let cut = handshake_cuts(&g, &nodes, &ports);
        assert_cut_exactly(&matrix(&c, &ports), &cut, "prepared, in effect");

        let healed = applied.heal.expect("healed").heal(&c.ctx).await.unwrap();
        assert_eq!(healed["flushed"], 3, "{healed}");
        assert_cut_exactly(&matrix(&c, &ports), &BTreeSet::new(), "after heal");
        c.finish();
    });
}

#[test]
fn isolate_cuts_exactly_the_isolated_nodes_links_and_heal_restores_them() {
    with_cluster_lock(async {
        let c = Cluster::redis(3, 0).await;
        let nodes = c.nodes();
        let ports = [nodes[0].port, nodes[0].bus_port];
        assert_cut_exactly(&matrix(&c, &ports), &BTreeSet::new(), "before");

        let applied = partition(Shape::Isolate, Target::One, Ports::All)
            .apply(&c.ctx, 7)
            .await;
        assert_eq!(applied.outcome, Outcome::Ok, "{:?}", applied.error);
        let v = &applied.value;
        assert_eq!(v["shape"], "isolate");
        assert_eq!(v["ports"], "all");
        assert_eq!(v["target"], "one");
        assert_eq!(v["mechanism"], "iptables");
        let lonely = v["nodes"][0].as_str().unwrap().to_string();
        assert_eq!(v["nodes"].as_array().unwrap().len(), 1);
        let others: Vec<String> = nodes
            .iter()
            .map(|n| n.name.clone())
            .filter(|n| *n != lonely)
            .collect();
        assert_eq!(v["components"], serde_json::json!([[lonely], others]));
        assert_eq!(v["rules"], 4);

        // The isolated node and the others, both ways, on both ports: nothing else.
        let mut cut = BTreeSet::new();
        for other in &others {
            for &port in &ports {
                cut.insert((Some(lonely.clone()), other.clone(), port));
                cut.insert((Some(other.clone()), lonely.clone(), port));
            }
        }
        assert_eq!(cut, handshake_cuts(&grudge(&applied), &nodes, &ports));
        let during = matrix(&c, &ports);
        assert_cut_exactly(&during, &cut, "during");
        assert!(
            during
                .iter()
                .any(|((from, to, _), r)| from.is_none() && *to == lonely && *r == Reach::Open),
            "the host {} still reaches the isolated node",
            c.host_ip()
        );

        let heal = applied.heal.expect("a partition is healed");
        assert_eq!(heal.name(), "heal");
        let healed = heal.heal(&c.ctx).await.unwrap();
        assert_eq!(healed["flushed"], 3, "{healed}");
        for n in &nodes {
            assert!(
                c.chain_sources(&n.name).is_empty(),
                "{}'s chain emptied",
                n.name
            );
        }
        assert_cut_exactly(&matrix(&c, &ports), &BTreeSet::new(), "after heal");
        c.finish();
    });
}

#[test]
fn bus_partition_cuts_the_bus_port_and_leaves_the_client_port() {
    with_cluster_lock(async {
        let c = Cluster::redis(3, 0).await;
        let nodes = c.nodes();
        let (client, bus) = (nodes[0].port, nodes[0].bus_port);
        // Every node is a primary here: the target goes through the roles snapshot.
        let applied = Partition::new(PartitionSpec {
            shape: Shape::Isolate,
            target: Target::Primaries,
            count: Some(Bounded(1)),
            ports: Ports::Bus,
        })
        .apply(&c.ctx, 3)
        .await;
        assert_eq!(applied.outcome, Outcome::Ok, "{:?}", applied.error);
        assert_eq!(applied.value["ports"], "bus");
        assert_eq!(applied.value["target"], "primaries");
        assert_eq!(applied.value["count"], 1);
        let cut = handshake_cuts(&grudge(&applied), &nodes, &[bus]);
        assert_eq!(cut.len(), 4, "one node's bus links, both ways: {cut:?}");
        assert_cut_exactly(&matrix(&c, &[client, bus]), &cut, "bus cut");
        heal_all(&c.ctx).await.unwrap();
        assert_cut_exactly(&matrix(&c, &[client, bus]), &BTreeSet::new(), "healed");
        c.finish();
    });
}

/// Sockets in SYN-RECV inside `netns`, as `peer address` strings: a SYN arrived from
/// there and was answered.
fn syn_recv_from(c: &Cluster, node: &str) -> Vec<String> {
    c.iptables(node, "ss", &["-Htn", "state", "syn-recv"])
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .map(|peer| peer.rsplit_once(':').unwrap().0.to_string())
        .collect()
}

/// Packets the run's chain in `node` dropped from `peer`, per its rule's counter.
fn dropped_from(c: &Cluster, node: &str, peer: Ipv4Addr) -> u64 {
    let chain = chain_name(c.run_id.as_str());
    c.iptables(node, "iptables", &["-L", &chain, "-v", "-x", "-n"])
        .lines()
        .find(|l| l.split_whitespace().nth(7) == Some(peer.to_string().as_str()))
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .unwrap_or(0)
}

#[test]
fn one_way_target_drops_what_others_send_while_its_own_packets_still_arrive() {
    // What TCP can show: a handshake needs both directions, so n2 -> n1 and n1 -> n2 both
    // time out. The direction shows in who received what: n1 -> n2 leaves n2 holding a
    // half-open connection from n1 (its SYN arrived, the SYN-ACK did not come back),
    // while n2 -> n1 leaves no trace in n1 and ticks n1's drop counter for n2 instead.
    with_cluster_lock(async {
        let c = Cluster::redis(3, 0).await;
        let nodes = c.nodes();
        let (n1, n2, n3) = (&nodes[0], &nodes[1], &nodes[2]);
        let applied = partition(Shape::OneWay, Target::Nodes(vec!["n1".into()]), Ports::All)
            .apply(&c.ctx, 0)
            .await;
        assert_eq!(applied.outcome, Outcome::Ok, "{:?}", applied.error);
        assert_eq!(applied.value["nodes"], serde_json::json!(["n1"]));
        assert_eq!(
            applied.value["grudge"],
            serde_json::json!({"n1": ["n2", "n3"]})
        );
        assert!(applied.value.get("components").is_none());
        assert!(c.chain_sources("n2").is_empty() && c.chain_sources("n3").is_empty());

        let port = n1.port;
        // Existing bus connections keep both counters moving; take a baseline.
        let before = dropped_from(&c, "n1", n2.ip);
        assert_eq!(probe(Some(&c.netns("n2")), n1.ip, port), Reach::TimedOut);
        assert!(
            dropped_from(&c, "n1", n2.ip) > before,
            "n1 dropped n2's SYNs"
        );
        assert!(
            !syn_recv_from(&c, "n1").contains(&n2.ip.to_string()),
            "n2's SYN never reached n1's stack"
        );

        assert!(!syn_recv_from(&c, "n2").contains(&n1.ip.to_string()));
        assert_eq!(probe(Some(&c.netns("n1")), n2.ip, port), Reach::TimedOut);
        assert!(
            syn_recv_from(&c, "n2").contains(&n1.ip.to_string()),
            "n1's SYN reached n2, which answered into the void"
        );

        // The others still talk to each other, and the host to everyone.
        assert_eq!(probe(Some(&c.netns("n2")), n3.ip, port), Reach::Open);
        assert_eq!(probe(Some(&c.netns("n3")), n2.ip, port), Reach::Open);
        for n in [n1, n2, n3] {
            assert_eq!(probe(None, n.ip, port), Reach::Open, "host -> {}", n.name);
        }
        let healed = applied.heal.unwrap().heal(&c.ctx).await.unwrap();
        assert_eq!(healed["flushed"], 3, "every node was written: {healed}");
        assert!(c.chain_sources("n1").is_empty());
        assert_eq!(probe(Some(&c.netns("n2")), n1.ip, port), Reach::Open);
        assert_eq!(probe(Some(&c.netns("n1")), n2.ip, port), Reach::Open);
        c.finish();
    });
}

/// A namespace's rules as `iptables-save` prints them, without comments and counters,
/// by table, tables with nothing in them left out.
fn ruleset(c: &Cluster, node: &str) -> BTreeMap<String, Vec<String>> {
    let text = c.iptables(node, "iptables-save", &[]);
    let mut tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines() {
        if line.starts_with('#') || line == "COMMIT" {
            continue;
        }
        if let Some(t) = line.strip_prefix('*') {
            current = t.to_string();
            tables.entry(current.clone()).or_default();
        } else {
            let line = match line.rsplit_once(" [") {
                Some((decl, _)) if line.starts_with(':') => decl.to_string(),
                _ => line.to_string(),
            };
            tables.entry(current.clone()).or_default().push(line);
        }
    }
    // A table with only built-in chains at policy ACCEPT is as good as absent (nft
    // creates tables on first use).
    tables.retain(|_, lines| {
        lines
            .iter()
            .any(|l| !(l.starts_with(':') && l.ends_with(" ACCEPT")))
    });
    tables
}

#[test]
fn heal_all_empties_every_chain_and_touches_nothing_else() {
    with_cluster_lock(async {
        let c = Cluster::redis(3, 0).await;
        let nodes = c.nodes();
        let chain = chain_name(c.run_id.as_str());
        let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
        let ip_of: BTreeMap<String, String> = nodes
            .iter()
            .map(|n| (n.name.clone(), n.ip.to_string()))
            .collect();
        // Someone else's rules in the namespace, which nothing of ours may touch.
        c.iptables("n2", "iptables", &["-N", "OTHER"]);
        c.iptables(
            "n2",
            "iptables",
            &["-A", "OTHER", "-s", "192.0.2.7", "-j", "DROP"],
        );
        c.iptables(
            "n2",
            "iptables",
            &["-A", "INPUT", "-s", "192.0.2.8", "-j", "DROP"],
        );
        c.iptables(
            "n2",
            "iptables",
            &[
                "-t",
                "nat",
                "-A",
                "OUTPUT",
                "-d",
                "192.0.2.9",
                "-j",
                "RETURN",
            ],
        );
        let baseline: Vec<_> = names.iter().map(|n| ruleset(&c, n)).collect();

        // Nothing to flush yet: not an error.
        let none = heal_all(&c.ctx).await.unwrap();
        assert_eq!(none["flushed"], 0, "{none}");

        // Two partitions without a heal between: the second replaces the first whole.
        for (shape, draw) in [(Shape::Halves, 1), (Shape::MajoritiesRing, 2)] {
            let applied = partition(shape, Target::One, Ports::All)
                .apply(&c.ctx, draw)
                .await;
            assert_eq!(applied.outcome, Outcome::Ok, "{:?}", applied.error);
            let g = grudge(&applied);
            for n in &names {
                let mut want: Vec<String> = g
                    .get(n)
                    .map(|d| d.iter().map(|p| ip_of[p].clone()).collect())
                    .unwrap_or_default();
                want.sort();
                let mut got = c.chain_sources(n);
                got.sort();
                assert_eq!(got, want, "{shape:?}: {n}'s chain");
            }
            assert_eq!(
                applied.value["rules"].as_u64().unwrap() as usize,
                g.values().map(BTreeSet::len).sum::<usize>()
            );
        }

        // Healing works whatever the server is doing: it is the namespace that filters.
        c.ctx.control.pause("n3").unwrap();
        let healed = heal_all(&c.ctx).await.unwrap();
        c.ctx.control.resume("n3").unwrap();
        assert_eq!(healed["nodes"], serde_json::json!(names), "{healed}");
        assert_eq!(healed["flushed"], 3);

        let hook = format!("-A INPUT -j {chain}");
        for (n, before) in names.iter().zip(&baseline) {
            assert!(c.chain_sources(n).is_empty(), "{n}: {chain} is empty");
            let mut after = ruleset(&c, n);
            let filter = after.get_mut("filter").expect("filter table");
            let input: Vec<&String> = filter
                .iter()
                .filter(|l| l.starts_with("-A INPUT "))
                .collect();
            assert_eq!(
                input.first().map(|s| s.as_str()),
                Some(hook.as_str()),
                "{n}: hooked first"
            );
            assert_eq!(
                filter.iter().filter(|l| **l == hook).count(),
                1,
                "{n}: hooked once"
            );
            filter.retain(|l| *l != hook && *l != format!(":{chain} -"));
            after.retain(|_, lines| {
                lines
                    .iter()
                    .any(|l| !(l.starts_with(':') && l.ends_with(" ACCEPT")))
            });
            assert_eq!(
                &after, before,
                "{n}: nothing but the chain and its hook changed"
            );
        }
        c.finish();
    });
}

#[test]
fn apply_time_on_six_nodes() {
    // From apply() being called to every namespace's rules installed (apply returns when
    // the last exec has), for the two whole-cluster-touching shapes. Printed, with a
    // generous bound only: timings on a shared two-core machine are evidence.
    with_cluster_lock(async {
        let c = Cluster::redis(3, 1).await;
        for (shape, target) in [
            (Shape::Isolate, Target::Primaries),
            (Shape::Halves, Target::All),
        ] {
            let mut samples = Vec::new();
            let mut heals = Vec::new();
            for draw in 0..5 {
                let t = Instant::now();
                let applied = partition(shape, target.clone(), Ports::All)
                    .apply(&c.ctx, draw)
                    .await;
                let took = t.elapsed();
                assert_eq!(applied.outcome, Outcome::Ok, "{:?}", applied.error);
                samples.push(took.as_secs_f64() * 1000.0);
                let rules: usize = c
                    .nodes()
                    .iter()
                    .map(|n| c.chain_sources(&n.name).len())
                    .sum();
                assert_eq!(Value::from(rules), applied.value["rules"]);
                let t = Instant::now();
                applied.heal.unwrap().heal(&c.ctx).await.unwrap();
                heals.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            eprintln!(
                "{shape:?} on 6 nodes: apply {} ms; heal {} ms",
                samples
                    .iter()
                    .map(|s| format!("{s:.0}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                heals
                    .iter()
                    .map(|s| format!("{s:.0}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            );
            assert!(samples.iter().all(|ms| *ms < 5000.0), "{samples:?}");
        }
        c.finish();
    });
}
