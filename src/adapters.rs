//! The client adapters shipped in `adapters/` (the protocol: `adapters/PROTOCOL.md`):
//! which program runs each [`ClientName`], and with what.
//!
//! The Python adapters are carried inside the binary (`include_str!`) and written into the
//! run directory (`adapter/`), then run by the Python of the adapters' virtual environment
//! (`scripts/install-deps` makes it at [`DEFAULT_VENV`]; `FAULTLINE_VENV` points
//! elsewhere). The redis-rs adapter is the workspace binary `faultline-redis-rs-adapter`,
//! found beside the `faultline` binary. Every adapter gets `--run-id <id>` (ignored by
//! it), so its command line names the run it belongs to.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use faultline_workloads::adapter::AdapterSpec;

use crate::scenario::{ClientName, Mode, Scenario};

/// Where `scripts/install-deps` creates the adapters' Python environment.
pub const DEFAULT_VENV: &str = "/var/cache/faultline/venv";
/// Names another Python environment for the adapters.
pub const VENV_ENV: &str = "FAULTLINE_VENV";
/// The redis-rs adapter's binary name.
pub const REDIS_RS_BIN: &str = "faultline-redis-rs-adapter";

const PROTOCOL_PY: &str = include_str!("../adapters/python/protocol.py");
const REDIS_FAMILY_PY: &str = include_str!("../adapters/python/redis_family.py");
const REDIS_PY: &str = include_str!("../adapters/python/redis_py.py");
const VALKEY_PY: &str = include_str!("../adapters/python/valkey_py.py");
const GLIDE_PY: &str = include_str!("../adapters/python/glide_py.py");

/// The adapters' Python environment.
pub fn venv() -> PathBuf {
    std::env::var_os(VENV_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_VENV))
}

/// The Python module of a Python adapter.
fn python_module(client: ClientName) -> Option<(&'static str, &'static str)> {
    match client {
        ClientName::RedisPy => Some(("redis_py.py", REDIS_PY)),
        ClientName::ValkeyPy => Some(("valkey_py.py", VALKEY_PY)),
        ClientName::Glide => Some(("glide_py.py", GLIDE_PY)),
        _ => None,
    }
}

/// How to start the scenario's client adapter for run `run_id` in `run_dir`, against the
/// nodes at `nodes` (`ip:port`).
///
/// # Errors
/// faultline's own client has no adapter; a missing Python environment or adapter binary
/// is named with the command that installs it.
pub fn spec(
    scenario: &Scenario,
    run_dir: &Path,
    run_id: &str,
    nodes: Vec<String>,
) -> Result<AdapterSpec> {
    let client = scenario.workload.client;
    let run_arg = ["--run-id".to_string(), run_id.to_string()];
    let (program, args) = match client {
        ClientName::Faultline => bail!("faultline's own client runs in-process, not as an adapter"),
        ClientName::RedisPy | ClientName::ValkeyPy | ClientName::Glide => {
            let python = venv().join("bin/python3");
            if !python.exists() {
                bail!(
                    "the {client} adapter needs the adapters' Python environment, and {} is \
                     missing: run scripts/install-deps (or set {VENV_ENV})",
                    python.display()
                );
            }
            let dir = run_dir.join("adapter");
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let (file, text) = python_module(client).expect("a Python adapter");
            let support = [
                ("protocol.py", PROTOCOL_PY),
                ("redis_family.py", REDIS_FAMILY_PY),
            ];
            for (name, text) in support.into_iter().chain([(file, text)]) {
                std::fs::write(dir.join(name), text)
                    .with_context(|| format!("writing {}", dir.join(name).display()))?;
            }
            let mut args = vec![dir.join(file).display().to_string()];
            args.extend(run_arg);
            (python, args)
        }
        ClientName::RedisRs => {
            let exe = std::env::current_exe().context("finding the faultline binary")?;
            let bin = exe.with_file_name(REDIS_RS_BIN);
            if !bin.exists() {
                bail!(
                    "the redis-rs adapter {} is missing: build it with `cargo build --bin {REDIS_RS_BIN}`",
                    bin.display()
                );
            }
            (bin, run_arg.to_vec())
        }
        ClientName::Adapter => {
            let command = scenario
                .workload
                .adapter_command
                .as_ref()
                .context("client: adapter needs adapter_command")?;
            let mut args = command[1..].to_vec();
            args.extend(run_arg);
            (PathBuf::from(&command[0]), args)
        }
    };
    Ok(AdapterSpec {
        client: client.to_string(),
        program,
        args,
        stderr_file: run_dir.join("adapter.stderr"),
        mode: match scenario.mode {
            Mode::Cluster => "cluster",
            Mode::Standalone => "standalone",
        }
        .into(),
        nodes,
        op_timeout: Duration::from_millis(scenario.workload.op_timeout_ms.get()),
        config: scenario
            .workload
            .client_config
            .clone()
            .unwrap_or_else(|| serde_json::json!({})),
        start_timeout: Duration::from_secs(30),
        hang_grace: Duration::from_secs(10),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_python_client_has_its_module() {
        for c in [ClientName::RedisPy, ClientName::ValkeyPy, ClientName::Glide] {
            let (file, text) = python_module(c).unwrap();
            assert!(text.contains("protocol.serve(Library())"), "{file}");
        }
        assert!(python_module(ClientName::RedisRs).is_none());
    }
}
