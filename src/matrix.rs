//! `faultline matrix`: one scenario on several server versions, or driven by several
//! clients (`--clients`), verdicts side by side.
//!
//! Each target (`flavor[:version]`) runs as a normal run (its own run directory under
//! `STORE/<scenario>/`); the host's binary serves a target whose version it has, a cached
//! root filesystem or image the others (built offline when missing, see
//! [`crate::rootfs`]). The table (rows = checkers, columns = targets, then overall) is
//! printed and written with `matrix.json` to `STORE/matrix/<UTC timestamp>/`, which also
//! links each run directory. With `--clients`, each target runs once per client (same
//! seed, same fault schedule), and the table adds the `client-errors` checker's measures
//! per column: error window p50 / max, failed and indeterminate ops, errors by kind, and
//! the `lost-writes` count. Exit code: the worst target: invalid over harness error over
//! unknown over valid, so an anomaly found anywhere gates a release.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use faultline_checkers::Validity;
use serde_json::json;

use crate::cli::{MatrixArgs, RunArgs};
use crate::exit::{self, Failure};
use crate::scenario::{ClientName, FlavorName, Scenario};

/// One column of the matrix: a flavor and, optionally, a version (else the host's), and
/// with `--clients` the client that drives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The server kind.
    pub flavor: FlavorName,
    /// A version (`8.1.1`) or Debian suite (`sid`); `None` runs the host's binary.
    pub version: Option<String>,
    /// The client (`--clients`); `None` keeps the scenario's.
    pub client: Option<ClientName>,
}

/// Parses `faultline,redis-py,glide`.
///
/// # Errors
/// Names the bad entry.
pub fn parse_clients(text: &str) -> Result<Vec<ClientName>, String> {
    let out: Vec<ClientName> = text
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(ClientName::parse)
        .collect::<Result<_, _>>()?;
    if out.is_empty() {
        return Err("no clients; give e.g. --clients faultline,redis-py,glide".into());
    }
    if out.contains(&ClientName::Adapter) {
        return Err(
            "`adapter` needs the scenario's adapter_command; name it in the scenario".into(),
        );
    }
    Ok(out)
}

impl Target {
    /// Parses `redis:7.0.15,valkey:8.1.1,valkey` into targets.
    ///
    /// # Errors
    /// Names the bad entry.
    pub fn parse_list(text: &str) -> Result<Vec<Target>, String> {
        let mut out = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (flavor, version) = match entry.split_once(':') {
                Some((f, v)) if !v.is_empty() => (f, Some(v.to_string())),
                Some(_) => return Err(format!("target {entry:?} has an empty version")),
                None => (entry, None),
            };
            let flavor = FlavorName::parse(flavor).map_err(|e| format!("target {entry:?}: {e}"))?;
            if let Some(v) = &version {
                let ok = v
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '~'));
                if !ok {
                    return Err(format!(
                        "target {entry:?}: version {v:?} has odd characters"
                    ));
                }
            }
            out.push(Target {
                flavor,
                version,
                client: None,
            });
        }
        if out.is_empty() {
            return Err("no targets; give e.g. --targets redis:7.0.15,valkey:8.0.1".into());
        }
        Ok(out)
    }

    /// `valkey:8.1.1` (or `valkey` for the host's), then `/redis-py` with a client.
    pub fn label(&self) -> String {
        let server = match &self.version {
            Some(v) => format!("{}:{v}", self.flavor),
            None => self.flavor.to_string(),
        };
        match self.client {
            Some(c) => format!("{server}/{c}"),
            None => server,
        }
    }
}

/// How one target ended.
enum Cell {
    Ran(crate::run::RunOutcome),
    Failed(String),
}

/// `faultline matrix`.
///
/// # Errors
/// Bad input (254) for a bad scenario or target list; harness error (255) if the matrix
/// directory cannot be written. A target whose run fails is a column marked `error`.
pub async fn command(args: MatrixArgs) -> Result<u8, Failure> {
    let mut base = Scenario::load(&args.scenario).map_err(Failure::bad_input)?;
    let servers = match &args.targets {
        Some(t) => {
            Target::parse_list(t).map_err(|e| Failure::bad_input(anyhow!("--targets: {e}")))?
        }
        None => vec![Target {
            flavor: base.flavor,
            version: base.cluster.version.clone(),
            client: None,
        }],
    };
    let clients = match &args.clients {
        Some(c) => {
            Some(parse_clients(c).map_err(|e| Failure::bad_input(anyhow!("--clients: {e}")))?)
        }
        None => None,
    };
    let targets: Vec<Target> = match &clients {
        Some(clients) => servers
            .iter()
            .flat_map(|t| {
                clients.iter().map(|c| Target {
                    client: Some(*c),
                    ..t.clone()
                })
            })
            .collect(),
        None => servers,
    };
    for c in clients.iter().flatten() {
        let mut probe = base.clone();
        probe.workload.client = *c;
        if let Some((_, _, message)) = probe.mode_conflict() {
            return Err(Failure::bad_input(anyhow!("--clients {c}: {message}")));
        }
    }
    if let Some(b) = args.backend {
        base.backend = b;
    }
    if let Some(t) = args.time_limit {
        if !t.is_finite() || t <= 0.0 {
            return Err(Failure::bad_input(anyhow!(
                "--time-limit must be greater than 0, got {t}"
            )));
        }
        base.time_limit.0 = t;
    }
    if let Some(seed) = args.seed {
        base.seed = Some(seed);
    }
    // One seed for every column, so they face the same schedule.
    let base = base.resolve();
    let dir = crate::store::create_run_dir(&args.store, "matrix")?;
    let run_args = RunArgs::store_only(args.store.clone());
    let mut cells = Vec::new();
    for target in &targets {
        if cells
            .iter()
            .any(|c| matches!(c, Cell::Ran(o) if o.interrupted))
        {
            cells.push(Cell::Failed("not run: the matrix was interrupted".into()));
            continue;
        }
        let mut scenario = base.clone();
        scenario.flavor = target.flavor;
        scenario.cluster.version = target.version.clone();
        if let Some(c) = target.client {
            scenario.workload.client = c;
        }
        eprintln!("faultline: matrix: {} ...", target.label());
        let cell = match crate::run::run_scenario(scenario, &run_args).await {
            Ok(outcome) => Cell::Ran(outcome),
            Err(f) => {
                eprintln!(
                    "faultline: matrix: {}: error: {:#}",
                    target.label(),
                    f.error
                );
                Cell::Failed(format!("{:#}", f.error))
            }
        };
        cells.push(cell);
    }

    let table = render(&targets, &cells);
    println!("{table}");
    std::fs::write(dir.join("matrix.txt"), format!("{table}\n"))
        .with_context(|| format!("writing {}", dir.join("matrix.txt").display()))?;
    let mut columns = Vec::new();
    for (target, cell) in targets.iter().zip(&cells) {
        let label = target.label();
        columns.push(match cell {
            Cell::Ran(o) => {
                let link = dir.join(label.replace([':', '/'], "-"));
                let _ = std::os::unix::fs::symlink(relative_to(&dir, &o.run_dir), &link);
                json!({
                    "target": label,
                    "client": target.client.map(|c| c.to_string()),
                    "client_measures": client_measures(&o.results),
                    "version": o.version,
                    "run_dir": o.run_dir,
                    "seconds": o.seconds,
                    "valid": o.results.valid,
                    "checkers": o.results.checkers.iter()
                        .map(|(k, v)| (k.clone(), json!(v.valid)))
                        .collect::<BTreeMap<_, _>>(),
                })
            }
            Cell::Failed(e) => json!({ "target": label, "error": e }),
        });
    }
    let doc = json!({
        "scenario": base.name,
        "seed": base.seed(),
        "backend": format!("{:?}", base.backend).to_lowercase(),
        "time_limit_s": base.time_limit.get(),
        "targets": columns,
    });
    std::fs::write(
        dir.join("matrix.json"),
        serde_json::to_vec_pretty(&doc).context("encoding matrix.json")?,
    )
    .with_context(|| format!("writing {}", dir.join("matrix.json").display()))?;
    println!("matrix: {}", dir.display());
    Ok(worst(&cells))
}

/// Rows = checkers (every one that ran anywhere), columns = targets; then overall, the
/// version that actually ran and the run's seconds. `-` = the checker did not run there.
fn render(targets: &[Target], cells: &[Cell]) -> String {
    let checkers: BTreeSet<&String> = cells
        .iter()
        .filter_map(|c| match c {
            Cell::Ran(o) => Some(o.results.checkers.keys()),
            Cell::Failed(_) => None,
        })
        .flatten()
        .collect();
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut header = vec!["checker".to_string()];
    header.extend(targets.iter().map(Target::label));
    rows.push(header);
    for name in &checkers {
        let mut row = vec![name.to_string()];
        for cell in cells {
            row.push(match cell {
                Cell::Ran(o) => o
                    .results
                    .checkers
                    .get(*name)
                    .map_or("-".into(), |r| r.valid.as_str().to_string()),
                Cell::Failed(_) => "error".into(),
            });
        }
        rows.push(row);
    }
    let mut overall = vec!["overall".to_string()];
    let mut version = vec!["version".to_string()];
    let mut secs = vec!["seconds".to_string()];
    for cell in cells {
        match cell {
            Cell::Ran(o) => {
                overall.push(o.results.valid.as_str().to_string());
                version.push(o.version.clone());
                secs.push(format!("{:.1}", o.seconds));
            }
            Cell::Failed(_) => {
                overall.push("error".into());
                version.push("-".into());
                secs.push("-".into());
            }
        }
    }
    rows.extend([overall, version, secs]);
    if targets.iter().any(|t| t.client.is_some()) {
        for (name, field) in CLIENT_ROWS {
            let mut row = vec![name.to_string()];
            for cell in cells {
                row.push(match cell {
                    Cell::Ran(o) => measure_text(&client_measures(&o.results)[field]),
                    Cell::Failed(_) => "-".into(),
                });
            }
            rows.push(row);
        }
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|r| {
            r.iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The per-client rows of the table: label and field of [`client_measures`].
const CLIENT_ROWS: &[(&str, &str)] = &[
    ("error window p50 ms", "error_window_p50_ms"),
    ("error window max ms", "error_window_max_ms"),
    ("promotions", "promotions"),
    ("ok ops", "ok"),
    ("failed during faults", "failed_during_faults"),
    ("indeterminate during faults", "indeterminate_during_faults"),
    ("errors by kind", "errors_by_kind"),
    ("late READONLY", "late_readonly"),
    ("lost writes", "lost_writes"),
];

/// What a client did in one run, from the `client-errors` and `lost-writes` results.
pub fn client_measures(results: &faultline_checkers::Results) -> serde_json::Value {
    let ce = results
        .checkers
        .get(faultline_checkers::client_errors::NAME);
    let get = |k: &str| {
        ce.and_then(|r| r.details.get(k).cloned())
            .unwrap_or(serde_json::Value::Null)
    };
    let lost = results
        .checkers
        .get("lost-writes")
        .and_then(|r| r.details.get("lost_count").cloned())
        .unwrap_or(serde_json::Value::Null);
    json!({
        "error_window_p50_ms": get("error_window_p50_ms"),
        "error_window_max_ms": get("error_window_max_ms"),
        "promotions": get("promotions").as_array().map(|a| a.len()),
        "ok": get("ok"),
        "failed_during_faults": get("failed_during_faults"),
        "indeterminate_during_faults": get("indeterminate_during_faults"),
        "errors_by_kind": get("errors_by_kind"),
        "late_readonly": get("late_readonly_count"),
        "lost_writes": lost,
    })
}

/// A measure as a table cell: `-` when absent, `READONLY 3, timeout 2` for counts by kind.
fn measure_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "-".into(),
        serde_json::Value::Object(m) if m.is_empty() => "none".into(),
        serde_json::Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

/// Invalid anywhere wins, then a target that could not run, then unknown.
fn worst(cells: &[Cell]) -> u8 {
    let mut any_error = false;
    let mut v = Validity::Valid;
    for cell in cells {
        match cell {
            Cell::Ran(o) => v = v.worst(o.results.valid),
            Cell::Failed(_) => any_error = true,
        }
    }
    match (v, any_error) {
        (Validity::Invalid, _) => exit::INVALID,
        (_, true) => exit::HARNESS_ERROR,
        (v, false) => exit::for_validity(v),
    }
}

fn relative_to(dir: &Path, target: &Path) -> PathBuf {
    // The matrix directory is STORE/matrix/<stamp>/, runs are STORE/<scenario>/<stamp>/.
    match (dir.parent().and_then(Path::parent), target.parent()) {
        (Some(store), Some(_)) => match target.strip_prefix(store) {
            Ok(rel) => Path::new("../..").join(rel),
            Err(_) => std::path::absolute(target).unwrap_or_else(|_| target.to_path_buf()),
        },
        _ => target.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_with_and_without_versions() {
        let t = Target::parse_list("redis:7.0.15, valkey:sid,valkey").unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].label(), "redis:7.0.15");
        assert_eq!(t[1].version.as_deref(), Some("sid"));
        assert_eq!(t[2].version, None);
        assert!(Target::parse_list("mysql:8").unwrap_err().contains("mysql"));
        assert!(Target::parse_list("redis:").is_err());
        assert!(Target::parse_list("redis:7;rm").is_err());
        assert!(Target::parse_list("").is_err());
    }

    #[test]
    fn clients_parse_and_label_their_columns() {
        let c = parse_clients("faultline, redis-py,glide").unwrap();
        assert_eq!(
            c,
            vec![
                ClientName::Faultline,
                ClientName::RedisPy,
                ClientName::Glide
            ]
        );
        assert!(parse_clients("jedis").unwrap_err().contains("jedis"));
        assert!(parse_clients("adapter").is_err());
        let t = Target {
            flavor: FlavorName::Valkey,
            version: None,
            client: Some(ClientName::RedisRs),
        };
        assert_eq!(t.label(), "valkey/redis-rs");
    }

    #[test]
    fn run_links_are_relative_to_the_store() {
        let rel = relative_to(
            Path::new("store/matrix/20260101T000000.000Z"),
            Path::new("store/smoke/20260101T000001.000Z"),
        );
        assert_eq!(rel, Path::new("../../smoke/20260101T000001.000Z"));
    }
}
