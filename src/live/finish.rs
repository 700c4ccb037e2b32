//! After a live run: the postflight (the topology against the preflight's, who is primary
//! now, whether every slot is covered; with `restore_roles`, the original primaries failed
//! back), and the sandbox's clean-up (every key with the run's prefix deleted, no other).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use faultline_history::info_replication::ReplicationInfo;
use faultline_history::ClusterView;
use faultline_workloads::query::query_text;
use redis::Value as Reply;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::discover::Target;
use crate::cluster::Admin;
use crate::scenario::Mode;
use crate::standalone::StandaloneAdmin;

/// Budget for one postflight question.
const TIMEOUT: Duration = Duration::from_secs(2);
/// How long a fail-back may take.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(20);
/// How a shard whose slots several nodes serve now is described (the start of its text).
const SPLIT: &str = "split: ";
/// Keys per `SCAN` step.
const SCAN_COUNT: usize = 1000;

/// Up to `limit` keys on the node at `addr` whose names start with `prefix` (a full
/// `SCAN ... MATCH <prefix>*` of its keyspace; the prefix holds no glob character).
///
/// # Errors
/// The node does not answer.
pub async fn scan_prefix(addr: &str, prefix: &str, limit: usize) -> Result<Vec<String>> {
    let mut found = Vec::new();
    let mut cursor = "0".to_string();
    loop {
        let (next, keys): (String, Vec<String>) = query_text(
            addr,
            redis::cmd("SCAN")
                .arg(&cursor)
                .arg("MATCH")
                .arg(format!("{prefix}*"))
                .arg("COUNT")
                .arg(SCAN_COUNT),
            TIMEOUT,
        )
        .await
        .map_err(|e| anyhow!("SCAN on {addr}: {e}"))?;
        // MATCH is a glob: keep only true prefixes (the prefix has no glob character, so
        // this is the same set; the check keeps it so if that ever changes).
        found.extend(keys.into_iter().filter(|k| k.starts_with(prefix)));
        if found.len() >= limit || next == "0" {
            found.truncate(limit);
            return Ok(found);
        }
        cursor = next;
    }
}

/// The postflight and the clean-up; returns `postflight.json`'s content and notes for
/// results.json. Never fails: what could not be done is said.
pub async fn finish(target: &Target, restore_roles: bool) -> (Value, Vec<String>) {
    let mut notes = Vec::new();
    let before = primaries_before(target);
    let mut after = primaries_now(target).await;
    let mut restored = Value::Null;
    if restore_roles {
        restored = match restore(target, &before, &after).await {
            Ok(v) => v,
            Err(e) => {
                notes.push(format!("live cluster: restoring roles failed: {e:#}"));
                json!({"error": format!("{e:#}")})
            }
        };
        after = primaries_now(target).await;
    }
    let mut changed = Vec::new();
    if let Ok(now) = &after.primaries {
        for (shard, was) in &before {
            let is = now.get(shard).cloned().unwrap_or_else(|| "nobody".into());
            if &is != was {
                changed.push(json!({"shard": shard, "before": was, "now": is}));
                notes.push(format!(
                    "live cluster: {shard} was served by {was}, now by {is}{}",
                    if restore_roles {
                        ""
                    } else if is.starts_with(SPLIT) {
                        " (slots moved by a migration stay where they are)"
                    } else {
                        " (--restore-roles fails it back)"
                    }
                ));
            }
        }
    }
    if let Some(p) = &after.problem {
        notes.push(format!("live cluster postflight: {p}"));
    }
    if let Err(e) = &after.primaries {
        notes.push(format!("live cluster postflight: {e}"));
    }
    let cleanup = match clean_up(target, &after).await {
        Ok((deleted, left)) => {
            if left > 0 {
                notes.push(format!(
                    "live cluster: {left} keys with the run's prefix {} could not be deleted",
                    target.key_prefix
                ));
            }
            json!({"deleted": deleted, "left": left})
        }
        Err(e) => {
            notes.push(format!(
                "live cluster: deleting the run's keys ({}*) failed: {e:#}",
                target.key_prefix
            ));
            json!({"error": format!("{e:#}")})
        }
    };
    let report = json!({
        "primaries_before": before,
        "primaries_now": after.primaries.as_ref().ok(),
        "slots_covered": after.slots_covered,
        "unreachable": after.unreachable,
        "same_nodes": after.same_nodes,
        "problem": after.problem,
        "changed": changed,
        "restore_roles": restored,
        "cleanup": cleanup,
    });
    (report, notes)
}

/// What the cluster looks like now.
struct Now {
    /// Shard (as `slots A-B` or `primary` in standalone mode) -> the node serving it
    /// (`split: ...` when a migration left its slots with several nodes).
    primaries: Result<HashMap<String, String>, String>,
    /// Every node that serves some slot now (standalone: every node calling itself
    /// primary): where the run's keys are deleted.
    serving: Vec<String>,
    /// Every slot has a primary (standalone: one primary).
    slots_covered: Option<bool>,
    /// Nodes that did not answer.
    unreachable: Vec<String>,
    /// The node set is the preflight's.
    same_nodes: Option<bool>,
    /// Whatever else is wrong (a disagreement).
    problem: Option<String>,
}

/// Which node served each shard at the preflight.
fn primaries_before(target: &Target) -> HashMap<String, String> {
    target
        .nodes
        .iter()
        .filter(|n| n.role == "primary")
        .map(|n| (shard_name(target.mode, &n.slots), n.name.clone()))
        .collect()
}

fn shard_name(mode: Mode, slots: &[(u16, u16)]) -> String {
    match mode {
        Mode::Standalone => "the primary role".into(),
        Mode::Cluster => {
            let ranges: Vec<String> = slots.iter().map(|(a, b)| format!("{a}-{b}")).collect();
            format!("slots {}", ranges.join(","))
        }
    }
}

async fn primaries_now(target: &Target) -> Now {
    let name_of_addr: HashMap<&str, &str> = target
        .nodes
        .iter()
        .map(|n| (n.addr.as_str(), n.name.as_str()))
        .collect();
    let mut unreachable = Vec::new();
    match target.mode {
        Mode::Cluster => {
            let name_of_id: HashMap<&str, &str> = target
                .nodes
                .iter()
                .filter_map(|n| Some((n.id.as_deref()?, n.name.as_str())))
                .collect();
            let mut view = None;
            for n in &target.nodes {
                match query_text::<String>(&n.addr, redis::cmd("CLUSTER").arg("NODES"), TIMEOUT)
                    .await
                {
                    Ok(text) => {
                        if view.is_none() {
                            view = ClusterView::parse(&text).ok();
                        }
                    }
                    Err(_) => unreachable.push(n.name.clone()),
                }
            }
            let Some(view) = view else {
                return Now {
                    primaries: Err("no node answered CLUSTER NODES".into()),
                    serving: Vec::new(),
                    slots_covered: None,
                    unreachable,
                    same_nodes: None,
                    problem: None,
                };
            };
            let owners = view.slot_owners();
            let name = |id: Option<&str>| match id {
                Some(id) => name_of_id.get(id).copied().unwrap_or(id).to_string(),
                None => "nobody".to_string(),
            };
            let mut map = HashMap::new();
            for n in target.nodes.iter().filter(|n| n.role == "primary") {
                // Who serves the shard's slots now: one name, or (slots moved by a
                // migration) every owner with its count of the shard's slots.
                let mut counts: Vec<(String, usize)> = Vec::new();
                for &(a, b) in &n.slots {
                    for owner in &owners[usize::from(a)..=usize::from(b)] {
                        let owner = name(*owner);
                        match counts.iter_mut().find(|(o, _)| *o == owner) {
                            Some((_, c)) => *c += 1,
                            None => counts.push((owner, 1)),
                        }
                    }
                }
                counts.sort_by(|x, y| y.1.cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
                let owner = match counts.as_slice() {
                    [] => "nobody".to_string(),
                    [(one, _)] => one.clone(),
                    many => {
                        let parts: Vec<String> = many
                            .iter()
                            .map(|(o, c)| format!("{o} ({c} slots)"))
                            .collect();
                        format!("{SPLIT}{}", parts.join(", "))
                    }
                };
                map.insert(shard_name(Mode::Cluster, &n.slots), owner);
            }
            let mut serving: Vec<String> =
                owners.iter().flatten().map(|id| name(Some(id))).collect();
            serving.sort_unstable();
            serving.dedup();
            let mut ids: Vec<&str> = view.nodes.iter().map(|l| l.id.as_str()).collect();
            let mut before: Vec<&str> = name_of_id.keys().copied().collect();
            ids.sort_unstable();
            before.sort_unstable();
            let specs = target.specs();
            let mut admin = Admin::new(&specs);
            let problem = match admin.learn_ids().await {
                Ok(()) => admin.disagreement(None).await,
                Err(e) => Some(format!("{e:#}")),
            };
            Now {
                primaries: Ok(map),
                serving,
                slots_covered: Some(view.unowned_slots() == 0),
                unreachable,
                same_nodes: Some(ids == before),
                problem,
            }
        }
        Mode::Standalone => {
            let mut primary = Vec::new();
            for n in &target.nodes {
                match query_text::<String>(&n.addr, redis::cmd("INFO").arg("replication"), TIMEOUT)
                    .await
                {
                    Ok(t) if ReplicationInfo::parse(&t).is_primary() => {
                        primary.push(name_of_addr[n.addr.as_str()].to_string());
                    }
                    Ok(_) => {}
                    Err(_) => unreachable.push(n.name.clone()),
                }
            }
            let problem = StandaloneAdmin::attach(&target.specs())
                .disagreement()
                .await;
            let covered = primary.len() == 1;
            Now {
                serving: primary.clone(),
                primaries: match primary.as_slice() {
                    [one] => Ok(HashMap::from([(
                        shard_name(Mode::Standalone, &[]),
                        one.clone(),
                    )])),
                    many => Err(format!("{} primaries: {many:?}", many.len())),
                },
                slots_covered: Some(covered),
                unreachable,
                same_nodes: None,
                problem,
            }
        }
    }
}

/// Fails every shard whose primary moved back to its original primary: `CLUSTER
/// FAILOVER` on the original (now a replica), or standalone `FAILOVER TO` it on the
/// current primary; then waits until the cluster agrees.
async fn restore(target: &Target, before: &HashMap<String, String>, now: &Now) -> Result<Value> {
    let now = now
        .primaries
        .as_ref()
        .map_err(|e| anyhow!("cannot tell who is primary: {e}"))?;
    let node = |name: &str| target.nodes.iter().find(|n| n.name == name);
    let mut done = Vec::new();
    for (shard, was) in before {
        let Some(is) = now.get(shard) else { continue };
        if is == was {
            continue;
        }
        if is.starts_with(SPLIT) {
            // A migration moved some of its slots: no fail-over brings them back.
            done.push(json!({"shard": shard, "skipped": format!(
                "its slots are served by several nodes now ({is}); a fail-back does not move slots"
            )}));
            continue;
        }
        let original = node(was).ok_or_else(|| anyhow!("no node {was}"))?;
        let reply = match target.mode {
            Mode::Cluster => {
                query_text::<String>(
                    &original.addr,
                    redis::cmd("CLUSTER").arg("FAILOVER"),
                    TIMEOUT,
                )
                .await
            }
            Mode::Standalone => {
                let current = node(is).ok_or_else(|| anyhow!("no node {is}"))?;
                let (ip, port) = original
                    .addr
                    .rsplit_once(':')
                    .ok_or_else(|| anyhow!("bad address {}", original.addr))?;
                query_text::<String>(
                    &current.addr,
                    redis::cmd("FAILOVER")
                        .arg("TO")
                        .arg(ip)
                        .arg(port)
                        .arg("TIMEOUT")
                        .arg(5000),
                    TIMEOUT,
                )
                .await
            }
        }
        .map_err(|e| anyhow!("failing {shard} back to {was}: {e}"))?;
        wait_primary(target, &original.addr).await?;
        done.push(json!({"shard": shard, "to": was, "from": is, "reply": reply}));
    }
    let specs = target.specs();
    let deadline = Instant::now() + RESTORE_TIMEOUT;
    match target.mode {
        Mode::Cluster => {
            let mut admin = Admin::new(&specs);
            admin.learn_ids().await?;
            admin.wait_agreed(None, deadline).await?;
        }
        Mode::Standalone => {
            StandaloneAdmin::attach(&specs)
                .wait_agreed(deadline)
                .await?
        }
    }
    Ok(Value::Array(done))
}

/// Waits until the node at `addr` calls itself primary.
async fn wait_primary(target: &Target, addr: &str) -> Result<()> {
    let deadline = Instant::now() + RESTORE_TIMEOUT;
    loop {
        let primary = match target.mode {
            Mode::Cluster => {
                query_text::<String>(addr, redis::cmd("CLUSTER").arg("NODES"), TIMEOUT)
                    .await
                    .ok()
                    .and_then(|t| ClusterView::parse(&t).ok())
                    .and_then(|v| v.myself().map(|m| m.is_primary()))
            }
            Mode::Standalone => {
                query_text::<String>(addr, redis::cmd("INFO").arg("replication"), TIMEOUT)
                    .await
                    .ok()
                    .map(|t| ReplicationInfo::parse(&t).is_primary())
            }
        };
        if primary == Some(true) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{addr} did not become primary within {RESTORE_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Deletes every key with the run's prefix from every node serving as primary now, then
/// scans every node (replicas too) until none holds one; returns (deleted, still there).
async fn clean_up(target: &Target, now: &Now) -> Result<(usize, usize)> {
    if let Err(e) = &now.primaries {
        bail!("cannot tell who is primary: {e}");
    }
    let primaries = &now.serving;
    let addr = |name: &str| {
        target
            .nodes
            .iter()
            .find(|n| n.name == name)
            .map(|n| n.addr.clone())
            .ok_or_else(|| anyhow!("{name} is no node of the preflight"))
    };
    let mut deleted = 0;
    for name in primaries {
        let addr = addr(name)?;
        for key in scan_prefix(&addr, &target.key_prefix, usize::MAX).await? {
            let n: Reply = query_text(&addr, redis::cmd("UNLINK").arg(&key), TIMEOUT)
                .await
                .map_err(|e| anyhow!("UNLINK {key} on {name}: {e}"))?;
            if matches!(n, Reply::Int(1)) {
                deleted += 1;
            }
        }
    }
    // The deletes reach the replicas asynchronously: count what is left on every node,
    // replicas included, until none is or the bound passes.
    let deadline = Instant::now() + REPLICAS_CATCH_UP;
    loop {
        let mut left = 0;
        for node in &target.nodes {
            left += scan_prefix(&node.addr, &target.key_prefix, usize::MAX)
                .await?
                .len();
        }
        if left == 0 || Instant::now() >= deadline {
            return Ok((deleted, left));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How long the replicas get to apply the run's deletes before what they still hold is
/// counted as left behind.
const REPLICAS_CATCH_UP: Duration = Duration::from_secs(10);
