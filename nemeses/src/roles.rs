//! Who is primary right now, as the nodes themselves say.
//!
//! Every node is asked for `CLUSTER NODES` at once, with a short time-out (paused, killed
//! and partitioned nodes must not hold a fault up); each node's role is what most of the
//! answering views say. Faults that target `primaries` or `replicas`, and failovers, read
//! this snapshot. Standalone nodes (`mode: standalone`) refuse `CLUSTER NODES` ("cluster
//! support disabled"); their roles come from each node's own `INFO replication` instead.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use faultline_history::{ClusterView, ReplicationInfo};
use faultline_workloads::query::query_text;

use crate::control::NodeInfo;
use crate::target::node_order;

/// Roles at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roles {
    /// Primaries, in name order.
    pub primaries: Vec<String>,
    /// Replicas, in name order.
    pub replicas: Vec<String>,
    /// Primary -> its replicas, in name order.
    pub replicas_of: BTreeMap<String, Vec<String>>,
}

impl Roles {
    /// Roles from `(node, primary it replicates)` pairs (`None` = primary).
    pub fn from_pairs(pairs: &[(&str, Option<&str>)]) -> Roles {
        let mut roles = Roles::default();
        for (node, primary) in pairs {
            match primary {
                None => roles.primaries.push(node.to_string()),
                Some(p) => {
                    roles.replicas.push(node.to_string());
                    roles
                        .replicas_of
                        .entry(p.to_string())
                        .or_default()
                        .push(node.to_string());
                }
            }
        }
        roles.primaries.sort_by_key(|x| node_order(x));
        roles.replicas.sort_by_key(|x| node_order(x));
        for v in roles.replicas_of.values_mut() {
            v.sort_by_key(|x| node_order(x));
        }
        roles
    }
}

/// Asks one node for its `CLUSTER NODES` text.
///
/// # Errors
/// Connection failure, time-out or error reply, as text.
pub async fn cluster_nodes(node: &NodeInfo, timeout: Duration) -> Result<String, String> {
    query_text(&node.addr(), redis::cmd("CLUSTER").arg("NODES"), timeout).await
}

/// Roles of standalone nodes, each from its own `INFO replication`: `role:master` is a
/// primary, `role:slave` a replica of the node at `master_host:master_port`.
///
/// # Errors
/// If no node answers.
pub async fn observe_standalone(nodes: &[NodeInfo], timeout: Duration) -> Result<Roles, String> {
    let mut tasks = tokio::task::JoinSet::new();
    for node in nodes {
        let node = node.clone();
        tasks.spawn(async move {
            let text =
                query_text::<String>(&node.addr(), redis::cmd("INFO").arg("replication"), timeout)
                    .await;
            (node.name, text)
        });
    }
    let by_addr: HashMap<String, String> =
        nodes.iter().map(|n| (n.addr(), n.name.clone())).collect();
    let mut pairs: Vec<(String, Option<String>)> = Vec::new();
    let mut errors = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let Ok((name, text)) = joined else { continue };
        let text = match text {
            Ok(t) => t,
            Err(e) => {
                errors.push(format!("{name}: {e}"));
                continue;
            }
        };
        let info = ReplicationInfo::parse(&text);
        if info.is_primary() {
            pairs.push((name, None));
        } else if let Some(p) = info.primary_addr().and_then(|a| by_addr.get(&a)) {
            pairs.push((name, Some(p.clone())));
        }
    }
    if pairs.is_empty() {
        return Err(format!(
            "no node answered INFO replication ({})",
            errors.join("; ")
        ));
    }
    let borrowed: Vec<(&str, Option<&str>)> = pairs
        .iter()
        .map(|(n, p)| (n.as_str(), p.as_deref()))
        .collect();
    Ok(Roles::from_pairs(&borrowed))
}

/// Roles by majority of the views that answer within `timeout`.
///
/// # Errors
/// If no node answers.
pub async fn observe(nodes: &[NodeInfo], timeout: Duration) -> Result<Roles, String> {
    let mut tasks = tokio::task::JoinSet::new();
    for node in nodes {
        let node = node.clone();
        tasks.spawn(async move { cluster_nodes(&node, timeout).await });
    }
    let by_addr: HashMap<String, String> =
        nodes.iter().map(|n| (n.addr(), n.name.clone())).collect();
    // node -> (role -> votes); a role is None for primary or Some(primary name).
    let mut votes: BTreeMap<String, HashMap<Option<String>, usize>> = BTreeMap::new();
    let mut errors = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let text = match joined {
            Ok(Ok(text)) => text,
            Ok(Err(e)) => {
                errors.push(e);
                continue;
            }
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        };
        let Ok(view) = ClusterView::parse(&text) else {
            continue;
        };
        let id_to_name: HashMap<&str, &String> = view
            .nodes
            .iter()
            .filter_map(|l| by_addr.get(&l.addr).map(|n| (l.id.as_str(), n)))
            .collect();
        for line in &view.nodes {
            let Some(name) = id_to_name.get(line.id.as_str()) else {
                continue;
            };
            let role = if line.is_primary() {
                None
            } else if let Some(p) = line.primary_id.as_deref().and_then(|p| id_to_name.get(p)) {
                Some((*p).clone())
            } else {
                continue;
            };
            *votes
                .entry((*name).clone())
                .or_default()
                .entry(role)
                .or_default() += 1;
        }
    }
    if votes.is_empty()
        && errors
            .iter()
            .any(|e| e.contains("cluster support disabled"))
    {
        return observe_standalone(nodes, timeout).await;
    }
    if votes.is_empty() {
        return Err(format!(
            "no node answered CLUSTER NODES ({})",
            errors.join("; ")
        ));
    }
    let pairs: Vec<(String, Option<String>)> = votes
        .into_iter()
        .map(|(node, roles)| {
            let role = roles
                .into_iter()
                .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
                .map(|(r, _)| r)
                .unwrap_or(None);
            (node, role)
        })
        .collect();
    let borrowed: Vec<(&str, Option<&str>)> = pairs
        .iter()
        .map(|(n, p)| (n.as_str(), p.as_deref()))
        .collect();
    Ok(Roles::from_pairs(&borrowed))
}
