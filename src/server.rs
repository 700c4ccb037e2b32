//! Which server a run starts: the host's binary, or one inside a root filesystem.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};

use crate::flavor::Flavor;
use crate::rootfs::RootFs;
use crate::scenario::{BackendName, Scenario};
use crate::sys;

/// The server a run starts, resolved from the scenario's flavor, `cluster.binary`,
/// `cluster.version` and backend.
#[derive(Debug, Clone)]
pub struct Server {
    /// The binary; a path inside `rootfs` when there is one.
    pub binary: PathBuf,
    /// Its version, as the binary reports it.
    pub version: String,
    /// The root filesystem it runs from, if not the host's.
    pub rootfs: Option<RootFs>,
}

impl Server {
    /// Resolves the server. The local backend prefers the host's binary (when
    /// `cluster.version` is absent or matches it) and otherwise chroots into a cached root;
    /// the docker backend always runs an image (of `cluster.version`, else of the host
    /// binary's version). Missing roots and images are built (`docker/build-rootfs`).
    ///
    /// # Errors
    /// If no binary, root or image can be found or built for the request.
    pub fn resolve(scenario: &Scenario, flavor: &dyn Flavor) -> Result<Server> {
        let wanted = scenario.cluster.version.as_deref();
        let docker = scenario.backend == BackendName::Docker;
        if docker && scenario.cluster.binary.is_some() && flavor.name() != "faultline" {
            bail!("cluster.binary names a host binary, which the docker backend cannot run; use cluster.version");
        }
        let host = host_binary(scenario, flavor).and_then(|b| Ok((flavor.version(&b)?, b)));
        if docker && flavor.name() == "faultline" {
            // Our own node: an image of the very binary a local run would start.
            let (version, binary) = host?;
            if wanted.is_some_and(|w| w != version) {
                bail!(
                    "cluster.version asks for faultline-node {}, but {} is {version}: drop cluster.version (the docker image is made from that binary)",
                    wanted.unwrap_or_default(),
                    binary.display()
                );
            }
            let rootfs = crate::node_image::ensure(&binary, &version)?;
            return Ok(Server {
                binary: PathBuf::from(crate::node_image::BINARY_IN_IMAGE),
                version,
                rootfs: Some(rootfs),
            });
        }
        if !docker {
            match (&host, wanted) {
                (Ok((v, b)), None) => return Ok(Self::host(b, v)),
                (Ok((v, b)), Some(w)) if v == w => return Ok(Self::host(b, v)),
                (Err(_), None) => return host.map(|(v, b)| Self::host(&b, &v)),
                _ => {}
            }
        }
        let version = match (wanted, &host) {
            (Some(w), _) => w.to_string(),
            (None, Ok((v, _))) => v.clone(),
            (None, Err(e)) => bail!(
                "set cluster.version (or a matrix target's version): the host has no {} to take it from ({e:#})",
                flavor.name()
            ),
        };
        let rootfs = RootFs::ensure(flavor.name(), &version, docker)?;
        Ok(Server {
            binary: PathBuf::from("/usr/bin").join(flavor.default_binary()),
            version: rootfs.version.clone(),
            rootfs: Some(rootfs),
        })
    }

    fn host(binary: &std::path::Path, version: &str) -> Server {
        Server {
            binary: binary.to_path_buf(),
            version: version.to_string(),
            rootfs: None,
        }
    }
}

/// The host binary a scenario names (`cluster.binary`, a path or a name on PATH), else the
/// flavor's default binary on PATH.
///
/// # Errors
/// If it does not exist, with how to install the flavor.
pub fn host_binary(scenario: &Scenario, flavor: &dyn Flavor) -> Result<PathBuf> {
    if scenario.cluster.binary.is_none() {
        if let Some(b) = flavor.bundled_binary() {
            return Ok(b);
        }
    }
    let name = scenario
        .cluster
        .binary
        .clone()
        .unwrap_or_else(|| PathBuf::from(flavor.default_binary()));
    if name.components().count() > 1 {
        if !name.is_file() {
            bail!("cluster.binary {} does not exist", name.display());
        }
        return Ok(name);
    }
    sys::which(&name).ok_or_else(|| {
        anyhow!(
            "{} is not on PATH; {}",
            name.display(),
            flavor.install_hint()
        )
    })
}
