//! Slot migration under load: a range of slots moves from a drawn source primary to another
//! primary the way `redis-cli --cluster reshard` does it, one slot at a time:
//!
//! 1. `CLUSTER SETSLOT s IMPORTING <source-id>` on the target,
//! 2. `CLUSTER SETSLOT s MIGRATING <target-id>` on the source,
//! 3. `CLUSTER GETKEYSINSLOT s <batch>` + `MIGRATE host port "" 0 <ms> KEYS ...` on the
//!    source until the slot is empty,
//! 4. a pause (`ask_window_ms`): the slot's keys are on the target, the slot still on the
//!    source, so clients touching them are sent `-ASK` to the target,
//! 5. `CLUSTER SETSLOT s NODE <target-id>` on the target, the source, then every other
//!    primary.
//!
//! Nothing lasts, so there is no heal; but a migration cut short must not leave a slot
//! `MIGRATING`/`IMPORTING` for the final reads. A slot whose step failed is finished (its
//! remaining keys moved, `SETSLOT NODE` everywhere) or, when none of its keys had moved,
//! rolled back (`SETSLOT STABLE`); if neither works the fault returns a [`Heal`]
//! (`settle-slots`) that retries. The final phase of a run that migrates slots also sweeps
//! every primary for markers left behind ([`heal_all`]) before the final reads.

use std::fmt;
use std::time::{Duration, Instant};

use faultline_history::bounds::Bounded;
use faultline_history::ClusterView;
use faultline_history::FaultOps;
use faultline_workloads::query::{self, error_text};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redis::aio::MultiplexedConnection;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{json, Value};

use crate::control::NodeInfo;
use crate::fault::{Applied, BoxFuture, Ctx, Fault, Heal, Outcome};
use crate::package::{FaultPackage, ModeNeed, Needs, Sweep, SweepWhen};
use crate::roles::cluster_nodes;
use crate::spec::Target;
use crate::target;

/// Which slots move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotChoice {
    /// This many contiguous slots of the source, starting at a slot that holds keys (so
    /// clients meet ASK), or at the start of one of its ranges when it holds none.
    Count(u16),
    /// Exactly these slots (inclusive); the source is their owner.
    Range(u16, u16),
}

impl Default for SlotChoice {
    fn default() -> Self {
        SlotChoice::Count(16)
    }
}

impl fmt::Display for SlotChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlotChoice::Count(n) => write!(f, "{n}"),
            SlotChoice::Range(a, b) => write!(f, "[{a}, {b}]"),
        }
    }
}

impl Serialize for SlotChoice {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            SlotChoice::Count(n) => s.serialize_u16(*n),
            SlotChoice::Range(a, b) => [*a, *b].serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for SlotChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SlotChoice;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a count of slots (1 to 16384) or a range [first, last] (0 to 16383)")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SlotChoice, E> {
                if !(1..=16384).contains(&v) {
                    return Err(E::custom(format!(
                        "slots: a count must be between 1 and 16384, got {v}"
                    )));
                }
                Ok(SlotChoice::Count(v as u16))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SlotChoice, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SlotChoice, A::Error> {
                let a: i64 = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::custom("slots: a range needs [first, last]"))?;
                let b: i64 = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::custom("slots: a range needs [first, last]"))?;
                if seq.next_element::<i64>()?.is_some() {
                    return Err(de::Error::custom("slots: a range is [first, last]"));
                }
                if !(0..16384).contains(&a) || !(0..16384).contains(&b) || a > b {
                    return Err(de::Error::custom(format!(
                        "slots: [{a}, {b}] is not a range of slots 0 to 16383, first <= last"
                    )));
                }
                Ok(SlotChoice::Range(a as u16, b as u16))
            }
        }
        d.deserialize_any(V)
    }
}

/// A slot migration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrateSlotsSpec {
    /// A count of slots (default 16) or a range `[first, last]`.
    #[serde(default)]
    pub slots: SlotChoice,
    /// The source is drawn among these primaries (default `primaries`); the target is
    /// drawn among the other primaries.
    #[serde(default = "primaries")]
    pub from: Target,
    /// Keys per `MIGRATE` (default 10).
    #[serde(default = "ten")]
    pub batch: Bounded<1, 10_000>,
    /// Milliseconds between moving a slot's keys and handing the slot over: the window in
    /// which clients are sent `-ASK` (default 100).
    #[serde(default = "hundred")]
    pub ask_window_ms: Bounded<0, 60_000>,
    /// `MIGRATE`'s own time-out in milliseconds (default 5000).
    #[serde(default = "five_thousand")]
    pub migrate_timeout_ms: Bounded<1, 600_000>,
}

fn primaries() -> Target {
    Target::Primaries
}
fn ten() -> Bounded<1, 10_000> {
    Bounded(10)
}
fn hundred() -> Bounded<0, 60_000> {
    Bounded(100)
}
fn five_thousand() -> Bounded<1, 600_000> {
    Bounded(5000)
}

impl Default for MigrateSlotsSpec {
    fn default() -> Self {
        MigrateSlotsSpec {
            slots: SlotChoice::default(),
            from: primaries(),
            batch: ten(),
            ask_window_ms: hundred(),
            migrate_timeout_ms: five_thousand(),
        }
    }
}

/// The migrate-slots fault.
pub struct MigrateSlots(MigrateSlotsSpec);

impl MigrateSlots {
    /// A migration with these parameters.
    pub fn new(spec: MigrateSlotsSpec) -> MigrateSlots {
        MigrateSlots(spec)
    }
}

impl Fault for MigrateSlots {
    fn apply<'a>(&'a self, ctx: &'a Ctx, draw: u64) -> BoxFuture<'a, Applied> {
        Box::pin(self.run(ctx, draw))
    }
}

/// One primary as the migration addresses it.
#[derive(Debug, Clone)]
struct Primary {
    info: NodeInfo,
    id: String,
    slots: Vec<(u16, u16)>,
}

/// The plan: who gives, who takes, which slots, who else must learn the new owner.
#[derive(Debug, Clone)]
struct Plan {
    source: Primary,
    target: Primary,
    others: Vec<Primary>,
    first: u16,
    last: u16,
}

impl MigrateSlots {
    async fn run(&self, ctx: &Ctx, draw: u64) -> Applied {
        let spec = &self.0;
        let params = json!({ "slots": spec.slots.to_string(), "from": spec.from.to_string() });
        let plan = match plan(ctx, spec, draw).await {
            Ok(p) => p,
            Err(e) => return Applied::failed(params, e),
        };
        let mut value = json!({
            "from": plan.source.info.name,
            "to": plan.target.info.name,
            "first_slot": plan.first,
            "last_slot": plan.last,
            "batch": spec.batch.get(),
            "ask_window_ms": spec.ask_window_ms.get(),
        });
        let mover = match Mover::connect(&plan, spec, ctx.query_timeout).await {
            Ok(m) => m,
            Err(e) => return Applied::failed(value, e),
        };
        let started = Instant::now();
        let mut moved_slots = 0u32;
        let mut moved_keys = 0u64;
        let mut failure = None;
        for slot in plan.first..=plan.last {
            match mover.move_slot(slot).await {
                Ok(keys) => {
                    moved_slots += 1;
                    moved_keys += keys;
                }
                Err((keys, e)) => {
                    moved_keys += keys;
                    failure = Some((slot, e));
                    break;
                }
            }
        }
        value["moved_slots"] = json!(moved_slots);
        value["moved_keys"] = json!(moved_keys);
        value["took_ms"] = json!(started.elapsed().as_millis() as u64);
        let Some((slot, error)) = failure else {
            return Applied {
                outcome: Outcome::Ok,
                value,
                error: None,
                heal: None,
            };
        };
        // Cut short: leave no slot half-moved.
        value["failed_slot"] = json!(slot);
        let settled = mover.settle(slot).await;
        value["settled"] = json!(settled.as_ref().map_or_else(|e| e.clone(), Clone::clone));
        let heal: Option<Box<dyn Heal>> = match settled {
            Ok(_) => None,
            Err(_) => Some(Box::new(Settle)),
        };
        Applied {
            // Some slots may have moved: the cluster did change, partly.
            outcome: if moved_slots > 0 {
                Outcome::Info
            } else {
                Outcome::Fail
            },
            value,
            error: Some(format!("slot {slot}: {error}")),
            heal,
        }
    }
}

/// Reads every node's view, draws the source and the target, and picks the slots.
async fn plan(ctx: &Ctx, spec: &MigrateSlotsSpec, draw: u64) -> Result<Plan, String> {
    let roles = ctx.roles().await?;
    let nodes = ctx.control.nodes();
    let mut primaries = Vec::new();
    for name in &roles.primaries {
        let info = nodes
            .iter()
            .find(|n| &n.name == name)
            .ok_or_else(|| format!("unknown node {name}"))?
            .clone();
        let text = cluster_nodes(&info, ctx.query_timeout)
            .await
            .map_err(|e| format!("{name}: CLUSTER NODES: {e}"))?;
        let view = ClusterView::parse(&text).map_err(|e| format!("{name}: {e}"))?;
        let me = view
            .myself()
            .ok_or_else(|| format!("{name}: CLUSTER NODES has no myself line"))?;
        primaries.push(Primary {
            info,
            id: me.id.clone(),
            slots: me.slots.clone(),
        });
    }
    if primaries.len() < 2 {
        return Err(format!(
            "a migration needs two primaries; there are {:?}",
            roles.primaries
        ));
    }
    let mut rng = StdRng::seed_from_u64(draw);
    let (source, first, last) = match spec.slots {
        SlotChoice::Range(a, b) => {
            let owner = primaries
                .iter()
                .find(|p| p.slots.iter().any(|(x, y)| *x <= a && b <= *y))
                .ok_or_else(|| {
                    format!("slots {a}-{b} do not all belong to one primary right now")
                })?;
            (owner.clone(), a, b)
        }
        SlotChoice::Count(count) => {
            let wanted = target::resolve(&spec.from, None, &ctx.names(), Some(&roles), draw)?;
            let candidates: Vec<&Primary> = primaries
                .iter()
                .filter(|p| wanted.contains(&p.info.name) && !p.slots.is_empty())
                .collect();
            if candidates.is_empty() {
                return Err(format!("no primary among {wanted:?} owns slots"));
            }
            let source = candidates[rng.random_range(0..candidates.len())].clone();
            let start = occupied_slot(&source, ctx.query_timeout, &mut rng)
                .await
                .unwrap_or(source.slots[0].0);
            let (_, range_end) = source
                .slots
                .iter()
                .copied()
                .find(|(x, y)| *x <= start && start <= *y)
                .unwrap_or(source.slots[0]);
            let last = (u32::from(start) + u32::from(count) - 1).min(u32::from(range_end)) as u16;
            (source, start, last)
        }
    };
    let others: Vec<Primary> = primaries
        .into_iter()
        .filter(|p| p.id != source.id)
        .collect();
    let pick = rng.random_range(0..others.len());
    let target = others[pick].clone();
    let others = others
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i != pick)
        .map(|(_, p)| p)
        .collect();
    Ok(Plan {
        source,
        target,
        others,
        first,
        last,
    })
}

/// A slot of `primary` that holds keys right now (drawn among the first few `SCAN` finds),
/// so the migration meets the clients; `None` when it holds none or does not answer.
async fn occupied_slot(primary: &Primary, timeout: Duration, rng: &mut StdRng) -> Option<u16> {
    let mut conn = connect(&primary.info.addr(), timeout).await.ok()?;
    let (_, keys): (String, Vec<String>) = redis::cmd("SCAN")
        .arg(0)
        .arg("COUNT")
        .arg(1000)
        .query_async(&mut conn)
        .await
        .ok()?;
    let mut slots = Vec::new();
    for key in keys.iter().take(64) {
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut conn)
            .await
            .ok()?;
        if primary.slots.iter().any(|(a, b)| *a <= slot && slot <= *b) {
            slots.push(slot);
        }
    }
    slots.sort_unstable();
    slots.dedup();
    (!slots.is_empty()).then(|| slots[rng.random_range(0..slots.len())])
}

async fn connect(addr: &str, timeout: Duration) -> Result<MultiplexedConnection, String> {
    query::connect(addr, timeout, Some(timeout))
        .await
        .map_err(|e| format!("{addr}: {e}"))
}

/// Open connections to every primary taking part, and the commands of one slot's move.
struct Mover<'p> {
    plan: &'p Plan,
    spec: &'p MigrateSlotsSpec,
    source: MultiplexedConnection,
    target: MultiplexedConnection,
    /// Everyone who must learn the new owner, target and source first.
    announce: Vec<(String, MultiplexedConnection)>,
}

impl<'p> Mover<'p> {
    async fn connect(
        plan: &'p Plan,
        spec: &'p MigrateSlotsSpec,
        timeout: Duration,
    ) -> Result<Mover<'p>, String> {
        // MIGRATE waits for the target itself: the source's replies may take that long.
        let long = timeout.max(Duration::from_millis(spec.migrate_timeout_ms.get() + 1000));
        let source = connect(&plan.source.info.addr(), long).await?;
        let target = connect(&plan.target.info.addr(), timeout).await?;
        let mut announce = vec![
            (plan.target.info.name.clone(), target.clone()),
            (plan.source.info.name.clone(), source.clone()),
        ];
        for p in &plan.others {
            // A primary that cannot be told learns the owner from gossip.
            if let Ok(c) = connect(&p.info.addr(), timeout).await {
                announce.push((p.info.name.clone(), c));
            }
        }
        Ok(Mover {
            plan,
            spec,
            source,
            target,
            announce,
        })
    }

    /// Moves one slot. Returns the keys moved, or how many had moved when it failed.
    async fn move_slot(&self, slot: u16) -> Result<u64, (u64, String)> {
        let (src, dst) = (&self.plan.source, &self.plan.target);
        let mut target = self.target.clone();
        let mut source = self.source.clone();
        redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("IMPORTING")
            .arg(&src.id)
            .query_async::<()>(&mut target)
            .await
            .map_err(|e| {
                (
                    0,
                    format!("{}: SETSLOT IMPORTING: {}", dst.info.name, error_text(&e)),
                )
            })?;
        redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("MIGRATING")
            .arg(&dst.id)
            .query_async::<()>(&mut source)
            .await
            .map_err(|e| {
                (
                    0,
                    format!("{}: SETSLOT MIGRATING: {}", src.info.name, error_text(&e)),
                )
            })?;
        let keys = self.move_keys(slot).await?;
        if keys > 0 {
            tokio::time::sleep(Duration::from_millis(self.spec.ask_window_ms.get())).await;
        }
        self.hand_over(slot).await.map_err(|e| (keys, e))?;
        Ok(keys)
    }

    /// `GETKEYSINSLOT` + `MIGRATE ... KEYS` until the slot is empty on the source.
    async fn move_keys(&self, slot: u16) -> Result<u64, (u64, String)> {
        let mut source = self.source.clone();
        let dst = &self.plan.target.info;
        let mut moved = 0u64;
        loop {
            let keys: Vec<Vec<u8>> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(self.spec.batch.get())
                .query_async(&mut source)
                .await
                .map_err(|e| (moved, format!("GETKEYSINSLOT: {}", error_text(&e))))?;
            if keys.is_empty() {
                return Ok(moved);
            }
            let mut migrate = redis::cmd("MIGRATE");
            migrate
                .arg(dst.ip.to_string())
                .arg(dst.port)
                .arg("")
                .arg(0)
                .arg(self.spec.migrate_timeout_ms.get());
            // A node that asks for a password (a live cluster's) is given it.
            if let Some(c) = faultline_workloads::access::credentials(&dst.addr()) {
                match &c.username {
                    Some(user) => migrate.arg("AUTH2").arg(user).arg(&c.password),
                    None => migrate.arg("AUTH").arg(&c.password),
                };
            }
            migrate.arg("KEYS").arg(&keys);
            migrate
                .query_async::<String>(&mut source)
                .await
                .map_err(|e| (moved, format!("MIGRATE: {}", error_text(&e))))?;
            moved += keys.len() as u64;
        }
    }

    /// `SETSLOT NODE <target>` on the target, the source, then the other primaries. The
    /// target and the source must take it; the others may learn it from gossip.
    async fn hand_over(&self, slot: u16) -> Result<(), String> {
        for (i, (name, conn)) in self.announce.iter().enumerate() {
            let mut conn = conn.clone();
            let r = redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg("NODE")
                .arg(&self.plan.target.id)
                .query_async::<()>(&mut conn)
                .await;
            if let Err(e) = r {
                if i < 2 {
                    return Err(format!("{name}: SETSLOT NODE: {}", error_text(&e)));
                }
            }
        }
        Ok(())
    }

    /// Leaves `slot` stable after a failed step: finished if any of its keys is already
    /// on the target, otherwise rolled back. Returns what was done.
    async fn settle(&self, slot: u16) -> Result<String, String> {
        let mut target = self.target.clone();
        let on_target: u64 = redis::cmd("CLUSTER")
            .arg("COUNTKEYSINSLOT")
            .arg(slot)
            .query_async(&mut target)
            .await
            .map_err(|e| format!("COUNTKEYSINSLOT on the target: {}", error_text(&e)))?;
        if on_target == 0 {
            for (name, conn) in self.announce.iter().take(2) {
                let mut conn = conn.clone();
                redis::cmd("CLUSTER")
                    .arg("SETSLOT")
                    .arg(slot)
                    .arg("STABLE")
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(|e| format!("{name}: SETSLOT STABLE: {}", error_text(&e)))?;
            }
            return Ok(format!("slot {slot} rolled back (no key had moved)"));
        }
        // MIGRATE's RESTORE-ASKING only lands on a target that imports the slot.
        let _ = redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("IMPORTING")
            .arg(&self.plan.source.id)
            .query_async::<()>(&mut target)
            .await;
        let keys = self.move_keys(slot).await.map_err(|(_, e)| e)?;
        self.hand_over(slot).await?;
        Ok(format!(
            "slot {slot} finished ({keys} more keys moved, owner {})",
            self.plan.target.info.name
        ))
    }
}

/// Finishes or rolls back whatever a migration left half-moved ([`heal_all`]).
struct Settle;

impl Heal for Settle {
    fn name(&self) -> &'static str {
        <MigrateSlots as FaultPackage>::OPS.heals[0]
    }

    fn heal<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<Value, String>> {
        Box::pin(heal_all(ctx))
    }
}

/// One `[slot->-id]` (migrating) or `[slot-<-id]` (importing) marker of a node's own line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Marker {
    slot: u16,
    /// `true` for migrating (the node gives), `false` for importing (it takes).
    migrating: bool,
    /// The other side's node id.
    peer: String,
}

/// The markers on the `myself` line of a raw `CLUSTER NODES` reply.
fn markers(text: &str) -> Vec<Marker> {
    let Some(me) = text.lines().find(|l| {
        l.split_whitespace()
            .nth(2)
            .is_some_and(|f| f.contains("myself"))
    }) else {
        return Vec::new();
    };
    me.split_whitespace()
        .filter_map(|w| w.strip_prefix('[')?.strip_suffix(']'))
        .filter_map(|m| {
            let (slot, migrating, peer) = if let Some((a, b)) = m.split_once("->-") {
                (a, true, b)
            } else {
                let (a, b) = m.split_once("-<-")?;
                (a, false, b)
            };
            Some(Marker {
                slot: slot.parse().ok()?,
                migrating,
                peer: peer.to_string(),
            })
        })
        .collect()
}

/// Leaves no slot `MIGRATING` or `IMPORTING` on any primary: a slot whose target already
/// holds some of its keys is finished (the rest moved, `SETSLOT NODE` everywhere), any
/// other is rolled back (`SETSLOT STABLE` on both sides); an importing marker whose source
/// does not migrate is cleared. The final phase runs it before the final reads when the
/// scenario migrates slots, so an interrupted migration never reaches them.
///
/// # Errors
/// If no node answers, or a slot could not be settled (the others are still tried).
pub async fn heal_all(ctx: &Ctx) -> Result<Value, String> {
    let roles = ctx.roles().await?;
    let nodes = ctx.control.nodes();
    let mut primaries: Vec<(Primary, Vec<Marker>)> = Vec::new();
    for name in &roles.primaries {
        let Some(info) = nodes.iter().find(|n| &n.name == name).cloned() else {
            continue;
        };
        let text = cluster_nodes(&info, ctx.query_timeout)
            .await
            .map_err(|e| format!("{name}: CLUSTER NODES: {e}"))?;
        let view = ClusterView::parse(&text).map_err(|e| format!("{name}: {e}"))?;
        let Some(me) = view.myself() else { continue };
        primaries.push((
            Primary {
                info,
                id: me.id.clone(),
                slots: me.slots.clone(),
            },
            markers(&text),
        ));
    }
    let spec = MigrateSlotsSpec::default();
    let mut settled = Vec::new();
    let mut errors = Vec::new();
    for (source, marks) in &primaries {
        for m in marks.iter().filter(|m| m.migrating) {
            let Some((target, _)) = primaries.iter().find(|(p, _)| p.id == m.peer) else {
                errors.push(format!(
                    "slot {}: {} migrates it to {}, which is no primary",
                    m.slot, source.info.name, m.peer
                ));
                continue;
            };
            let plan = Plan {
                source: source.clone(),
                target: target.clone(),
                others: primaries
                    .iter()
                    .map(|(p, _)| p.clone())
                    .filter(|p| p.id != source.id && p.id != target.id)
                    .collect(),
                first: m.slot,
                last: m.slot,
            };
            let done = match Mover::connect(&plan, &spec, ctx.query_timeout).await {
                Ok(mover) => mover.settle(m.slot).await,
                Err(e) => Err(e),
            };
            match done {
                Ok(d) => settled.push(d),
                Err(e) => errors.push(format!("slot {}: {e}", m.slot)),
            }
        }
    }
    // Importing markers left without a migrating source.
    for (target, marks) in &primaries {
        for m in marks.iter().filter(|m| !m.migrating) {
            let source_migrates = primaries.iter().any(|(p, pm)| {
                p.id == m.peer && pm.iter().any(|x| x.migrating && x.slot == m.slot)
            });
            if source_migrates {
                continue; // settled above
            }
            let r = async {
                let mut conn = connect(&target.info.addr(), ctx.query_timeout).await?;
                redis::cmd("CLUSTER")
                    .arg("SETSLOT")
                    .arg(m.slot)
                    .arg("STABLE")
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(|e| error_text(&e))
            }
            .await;
            match r {
                Ok(()) => settled.push(format!(
                    "slot {} no longer importing on {}",
                    m.slot, target.info.name
                )),
                Err(e) => errors.push(format!("slot {} on {}: {e}", m.slot, target.info.name)),
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    Ok(json!({ "settled": settled }))
}

impl FaultPackage for MigrateSlots {
    type Spec = MigrateSlotsSpec;
    const OPS: FaultOps = FaultOps::new(&["migrate-slots"])
        .with_heals(&["settle-slots"])
        .with_sweeps(&["settle-slots"]);
    const NEEDS: Needs = Needs {
        mode: ModeNeed::Cluster,
        bus_proxy: false,
        node_host: false,
    };
    /// Only in runs that migrate slots: no slot left MIGRATING / IMPORTING for the final
    /// reads.
    const SWEEP: Option<Sweep> = Some(Sweep {
        op: "settle-slots",
        when: SweepWhen::KindInScenario,
        run: sweep,
    });
    fn targets(spec: &MigrateSlotsSpec) -> Vec<(&'static str, &Target)> {
        vec![("from", &spec.from)]
    }
    fn build(spec: &MigrateSlotsSpec) -> Box<dyn Fault> {
        Box::new(MigrateSlots::new(spec.clone()))
    }
}

fn sweep(ctx: &Ctx) -> BoxFuture<'_, Result<Value, String>> {
    Box::pin(heal_all(ctx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_come_from_the_myself_line_only() {
        let text = "aaa 10.0.0.1:6379@16379 myself,master - 0 0 1 connected 0-5460 [5461-<-bbb] [7->-ccc]\n\
                    bbb 10.0.0.2:6379@16379 master - 0 0 2 connected 5461-10922 [5461->-aaa]\n";
        assert_eq!(
            markers(text),
            vec![
                Marker {
                    slot: 5461,
                    migrating: false,
                    peer: "bbb".into()
                },
                Marker {
                    slot: 7,
                    migrating: true,
                    peer: "ccc".into()
                },
            ]
        );
        assert!(
            markers("aaa 10.0.0.1:6379@16379 myself,master - 0 0 1 connected 0-16383\n").is_empty()
        );
    }

    #[test]
    fn slots_are_a_count_or_a_range() {
        let s: MigrateSlotsSpec = serde_json::from_str(r#"{"slots": 64}"#).unwrap();
        assert_eq!(s.slots, SlotChoice::Count(64));
        let s: MigrateSlotsSpec = serde_json::from_str(r#"{"slots": [100, 199]}"#).unwrap();
        assert_eq!(s.slots, SlotChoice::Range(100, 199));
        assert_eq!(
            serde_json::to_value(&s).unwrap()["slots"],
            json!([100, 199])
        );
        for bad in [
            r#"{"slots": 0}"#,
            r#"{"slots": [5, 3]}"#,
            r#"{"slots": [1, 16384]}"#,
        ] {
            assert!(
                serde_json::from_str::<MigrateSlotsSpec>(bad).is_err(),
                "{bad}"
            );
        }
        let d = MigrateSlotsSpec::default();
        assert_eq!(d.slots, SlotChoice::Count(16));
        assert_eq!(d.from, Target::Primaries);
    }
}
