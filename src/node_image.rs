//! The Docker image of faultline's own node (`flavor: faultline` on `--backend docker`):
//! made offline from the very binary a local run would start, so both backends run the
//! same node. No Debian root is needed: the image holds the node, `sleep` (the network
//! sandbox container's entrypoint) and the shared libraries `ldd` names for both, at their
//! host paths, imported with `docker import` (no registry, no Dockerfile).
//!
//! The tag is a hash of the node binary's bytes (`faultline/faultline-node:<hash>`), so a
//! rebuilt node gets a new image and an unchanged one is reused. The oldest images beyond
//! [`KEEP`] are removed when a new one is made (a debug and a release build side by side
//! keep theirs).

use std::collections::BTreeSet;
use std::hash::Hasher;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::rootfs::RootFs;

/// The image repository.
pub const REPOSITORY: &str = "faultline/faultline-node";

/// Where the node sits inside the image (what the docker backend runs).
pub const BINARY_IN_IMAGE: &str = "/usr/bin/faultline-node";

/// How many node images are kept.
pub const KEEP: usize = 3;

/// The image of `binary` (version `version`), made now if Docker does not have it.
///
/// # Errors
/// The binary cannot be read, `ldd` fails on it, or `docker import` fails.
pub fn ensure(binary: &Path, version: &str) -> Result<RootFs> {
    let image = format!("{REPOSITORY}:{}", tag(binary)?);
    let rootfs = RootFs {
        flavor: "faultline".to_string(),
        version: version.to_string(),
        // Nothing is extracted: the local backend runs the host binary itself.
        tree: PathBuf::new(),
        image: image.clone(),
    };
    if crate::rootfs::image_exists(&image) {
        return Ok(rootfs);
    }
    eprintln!(
        "faultline: making the node image {image} from {} (once per node build)",
        binary.display()
    );
    let staging = Staging::new()?;
    let root = staging.0.as_path();
    let sleep = crate::sys::which(Path::new("sleep")).context("sleep is not on PATH")?;
    let mut files: BTreeSet<PathBuf> = BTreeSet::new();
    for program in [binary, sleep.as_path()] {
        files.extend(libraries(program)?);
    }
    place(root, binary, Path::new(BINARY_IN_IMAGE))?;
    place(root, &sleep, Path::new("/bin/sleep"))?;
    for lib in &files {
        place(root, lib, lib)?;
    }
    for dir in ["tmp", "etc"] {
        std::fs::create_dir_all(root.join(dir)).context("staging the image's directories")?;
    }
    import(root, &image)?;
    prune(&image);
    Ok(rootfs)
}

/// A directory the image is staged in, removed when dropped.
struct Staging(PathBuf);

impl Staging {
    fn new() -> Result<Staging> {
        let dir = std::env::temp_dir().join(format!(
            "faultline-node-image-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("making the staging directory {}", dir.display()))?;
        Ok(Staging(dir))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A hash of the binary's bytes, as 16 hex digits.
fn tag(binary: &Path) -> Result<String> {
    let mut file = std::fs::File::open(binary)
        .with_context(|| format!("reading {} to tag its image", binary.display()))?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", binary.display()))?;
        if n == 0 {
            break;
        }
        hasher.write(&buf[..n]);
    }
    Ok(format!("{:016x}", hasher.finish()))
}

/// The shared libraries (and the loader) `ldd` lists for a program, as absolute paths.
fn libraries(program: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(program)
        .output()
        .context("running ldd (libc-bin) to find the node's libraries")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // A static binary: nothing to carry.
        if text.contains("not a dynamic executable") || out.stderr.is_empty() {
            return Ok(Vec::new());
        }
        bail!(
            "ldd {} failed: {}",
            program.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse_ldd(&text, program)
}

/// The paths in `ldd` output: `name => /path (addr)` and `/path (addr)` lines.
fn parse_ldd(text: &str, program: &Path) -> Result<Vec<PathBuf>> {
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.contains("=> not found") {
            bail!(
                "{} needs a library this machine lacks: {line}",
                program.display()
            );
        }
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    Ok(libs)
}

/// Copies `from` (following links) to `to` inside `root`.
fn place(root: &Path, from: &Path, to: &Path) -> Result<()> {
    let dest = root.join(to.strip_prefix("/").unwrap_or(to));
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("staging {}", dir.display()))?;
    }
    std::fs::copy(from, &dest)
        .with_context(|| format!("copying {} into the image", from.display()))?;
    Ok(())
}

/// `tar -c root | docker import - image`.
fn import(root: &Path, image: &str) -> Result<()> {
    let mut tar = Command::new("tar")
        .args(["-C"])
        .arg(root)
        .args(["--numeric-owner", "--owner=0", "--group=0", "-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .context("running tar")?;
    let stdout = tar.stdout.take().context("tar's output")?;
    let out = Command::new("docker")
        .args([
            "import",
            "--change",
            "LABEL faultline.node-image=1",
            "-",
            image,
        ])
        .stdin(stdout)
        .output()
        .context("running docker import (is Docker running? `faultline doctor`)")?;
    let tar_status = tar.wait().context("waiting for tar")?;
    if !tar_status.success() || !out.status.success() {
        bail!(
            "making {image} failed (tar: {tar_status}; docker import: {}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Removes node images beyond the newest [`KEEP`] (never `keep`); an image a container
/// still uses stays (Docker refuses).
fn prune(keep: &str) {
    let Ok(out) = Command::new("docker")
        .args(["images", REPOSITORY, "--format", "{{.Repository}}:{{.Tag}}"])
        .output()
    else {
        return;
    };
    // `docker images` lists the newest first.
    let old: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|i| *i != keep)
        .skip(KEEP - 1)
        .map(str::to_string)
        .collect();
    for image in old {
        let _ = Command::new("docker")
            .args(["rmi", &image])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_lines_give_library_paths() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f1)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f2)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f3)\n";
        let libs = parse_ldd(text, Path::new("x")).unwrap();
        assert_eq!(
            libs,
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        let missing = parse_ldd("\tlibfoo.so.1 => not found\n", Path::new("x"));
        assert!(missing.unwrap_err().to_string().contains("libfoo.so.1"));
    }
}
