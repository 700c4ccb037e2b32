//! Server versions the host does not have: a Debian root filesystem with the server
//! installed, built offline by `docker/build-rootfs` (debootstrap, no image registry),
//! cached under `/var/cache/faultline/rootfs/` and imported into Docker as
//! `faultline/<flavor>:<version>`.
//!
//! The docker backend runs the image; the local backend can chroot into the extracted tree
//! (see [`crate::backend::local`]). Which Debian suite carries which version is known for
//! the versions the project tests against ([`SUITES`]); any other one is reached by naming
//! the suite instead of a version (`valkey:sid`), and the version is read from the binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// The builder script, carried inside the binary so `faultline` needs no checkout.
const BUILD_SCRIPT: &str = include_str!("../docker/build-rootfs");

/// Default cache directory (override with `FAULTLINE_CACHE`).
pub const DEFAULT_CACHE: &str = "/var/cache/faultline";

/// Debian suites the builder knows, in the order they are tried.
pub const SUITE_NAMES: &[&str] = &["bookworm", "bookworm-backports", "trixie", "sid"];

/// Known (flavor, version, suite) triples, from Debian's archive: what a target like
/// `valkey:8.1.1` is built from without trying every suite.
pub const SUITES: &[(&str, &str, &str)] = &[
    ("redis", "7.0.15", "bookworm"),
    ("valkey", "8.0.1", "bookworm-backports"),
    ("valkey", "8.1.1", "trixie"),
    ("redis", "8.0.2", "trixie"),
];

/// A server version in a root filesystem: the extracted tree and the Docker image made
/// from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootFs {
    /// `redis` or `valkey`.
    pub flavor: String,
    /// The server's version, as its binary reports it.
    pub version: String,
    /// The extracted root (for chroot).
    pub tree: PathBuf,
    /// `faultline/<flavor>:<version>`.
    pub image: String,
}

impl RootFs {
    /// The root filesystem cache directory.
    pub fn cache_dir() -> PathBuf {
        let base = std::env::var_os("FAULTLINE_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CACHE));
        base.join("rootfs")
    }

    /// The cached root for `flavor` at `version` (a version, or a suite name), built (and
    /// imported into Docker when `docker` is true) if it is not there yet.
    ///
    /// # Errors
    /// If no suite is known for the version, or the build fails.
    pub fn ensure(flavor: &str, version: &str, docker: bool) -> Result<RootFs> {
        let cache = Self::cache_dir();
        // An image the user built (docker/Dockerfile.*) needs no root filesystem.
        if docker && !SUITE_NAMES.contains(&version) && image_exists(&image_name(flavor, version)) {
            return Ok(Self::at(&cache, flavor, version));
        }
        let suite = match suite_for(&cache, flavor, version) {
            Some(s) => s,
            None => bail!(
                "no Debian suite is known to carry {flavor} {version}; name a suite instead \
                 ({flavor}:{}) or install that version on the host, or build \
                 faultline/{flavor}:{version} from docker/Dockerfile.{flavor}",
                SUITE_NAMES.join(format!(", {flavor}:").as_str())
            ),
        };
        let cached_version = if SUITE_NAMES.contains(&version) {
            read_version(&cache, flavor, &suite)
        } else {
            Some(version.to_string())
        };
        if let Some(v) = cached_version {
            let found = Self::at(&cache, flavor, &v);
            if found.tree.join("usr/bin").is_dir() && (!docker || image_exists(&found.image)) {
                return Ok(found);
            }
        }
        let version_built = build(flavor, &suite)?;
        if !SUITE_NAMES.contains(&version) && version_built != version {
            bail!("suite {suite} now carries {flavor} {version_built}, not {version}");
        }
        Ok(Self::at(&cache, flavor, &version_built))
    }

    /// One line for `faultline doctor`: which versions are cached, where.
    pub fn describe_cache() -> String {
        let cache = Self::cache_dir();
        let mut built: Vec<String> = std::fs::read_dir(&cache)
            .map(|d| {
                d.flatten()
                    .filter_map(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        let stem = name.strip_suffix(".tar")?;
                        (!stem.starts_with("base-")).then(|| stem.replacen('-', ":", 1))
                    })
                    .collect()
            })
            .unwrap_or_default();
        built.sort();
        if built.is_empty() {
            format!(
                "none cached in {} yet (built on first use by docker/build-rootfs)",
                cache.display()
            )
        } else {
            format!("{} in {}", built.join(", "), cache.display())
        }
    }

    fn at(cache: &Path, flavor: &str, version: &str) -> RootFs {
        RootFs {
            flavor: flavor.to_string(),
            version: version.to_string(),
            tree: cache.join(format!("{flavor}-{version}")),
            image: image_name(flavor, version),
        }
    }
}

/// `faultline/<flavor>:<version>`.
pub fn image_name(flavor: &str, version: &str) -> String {
    format!("faultline/{flavor}:{version}")
}

/// The suite to build `flavor` `version` from: the version itself if it names a suite, a
/// cached build that gave that version, or the known table.
fn suite_for(cache: &Path, flavor: &str, version: &str) -> Option<String> {
    if SUITE_NAMES.contains(&version) {
        return Some(version.to_string());
    }
    for suite in SUITE_NAMES {
        if read_version(cache, flavor, suite).as_deref() == Some(version) {
            return Some(suite.to_string());
        }
    }
    SUITES
        .iter()
        .find(|(f, v, _)| *f == flavor && *v == version)
        .map(|(_, _, s)| s.to_string())
}

/// The version a suite gave: line 1 of `<flavor>-<suite>.version` (line 2 is the
/// snapshot date of the Release file it was built from).
fn read_version(cache: &Path, flavor: &str, suite: &str) -> Option<String> {
    let text = std::fs::read_to_string(cache.join(format!("{flavor}-{suite}.version"))).ok()?;
    let first = text.lines().next().unwrap_or_default().trim().to_string();
    Some(first).filter(|v| !v.is_empty())
}

/// Whether Docker has `image`.
pub fn image_exists(image: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", image])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs the builder (its progress goes to our stderr); returns the version it built.
fn build(flavor: &str, suite: &str) -> Result<String> {
    eprintln!("faultline: building the {flavor} root filesystem from Debian {suite} (cached for next time)");
    let out = Command::new("bash")
        .args(["-c", BUILD_SCRIPT, "build-rootfs", flavor, suite])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("running docker/build-rootfs (bash)")?;
    if !out.status.success() {
        bail!(
            "docker/build-rootfs {flavor} {suite} failed ({}); its output is above",
            out.status
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let image = text.lines().last().unwrap_or_default();
    match image.rsplit_once(':') {
        Some((_, v)) if !v.is_empty() => Ok(v.to_string()),
        _ => bail!("docker/build-rootfs printed no image name: {text:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_versions_and_suite_names_find_a_suite() {
        let none = Path::new("/nonexistent");
        assert_eq!(
            suite_for(none, "valkey", "8.1.1").as_deref(),
            Some("trixie")
        );
        assert_eq!(
            suite_for(none, "valkey", "8.0.1").as_deref(),
            Some("bookworm-backports")
        );
        assert_eq!(suite_for(none, "redis", "sid").as_deref(), Some("sid"));
        assert_eq!(suite_for(none, "redis", "1.2.3"), None);
    }

    #[test]
    fn the_version_is_line_one_of_the_version_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("valkey-sid.version"),
            "8.1.4\nsnapshot: 2025-05-20T08:14:52Z\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("redis-bookworm.version"), "7.0.15\n").unwrap();
        assert_eq!(
            read_version(dir.path(), "valkey", "sid").as_deref(),
            Some("8.1.4")
        );
        assert_eq!(
            read_version(dir.path(), "redis", "bookworm").as_deref(),
            Some("7.0.15")
        );
        assert_eq!(
            suite_for(dir.path(), "valkey", "8.1.4").as_deref(),
            Some("sid")
        );
    }

    #[test]
    fn images_are_named_by_flavor_and_version() {
        assert_eq!(image_name("valkey", "8.0.1"), "faultline/valkey:8.0.1");
    }
}
