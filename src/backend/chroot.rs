//! Running a server from a root filesystem with the local backend: between fork and exec,
//! the child gets a private mount namespace, the run directory bind-mounted into the root
//! at its own absolute path (so config, data and log paths read the same inside and out),
//! the host's `/proc` and `/dev` bound in, and then `chroot`s. Nothing is mounted in the
//! host's namespace, so nothing needs unmounting: the mounts vanish with the process.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{Context, Result};
use nix::mount::{mount, MsFlags};

/// Everything [`Chroot::enter`] needs, prepared before fork (no allocation after it).
pub struct Chroot {
    root: CString,
    /// (source, target inside the root) bind mounts.
    binds: Vec<(CString, CString)>,
}

impl Chroot {
    /// Prepares entering `root` with `run_dir` visible inside; creates the mount points.
    ///
    /// # Errors
    /// If the root does not exist or a mount point cannot be made.
    pub fn new(root: &Path, run_dir: &Path) -> Result<Chroot> {
        if !root.join("usr/bin").is_dir() {
            anyhow::bail!(
                "root filesystem {} is missing or incomplete",
                root.display()
            );
        }
        let run_dir = std::path::absolute(run_dir).context("resolving the run directory")?;
        let mut binds = Vec::new();
        for src in [run_dir.as_path(), Path::new("/proc"), Path::new("/dev")] {
            let target = root.join(src.strip_prefix("/").unwrap_or(src));
            std::fs::create_dir_all(&target)
                .with_context(|| format!("creating mount point {}", target.display()))?;
            binds.push((cstring(src)?, cstring(&target)?));
        }
        Ok(Chroot {
            root: cstring(root)?,
            binds,
        })
    }

    /// In the forked child: private mount namespace, bind mounts, chroot, `cd /`. Only
    /// system calls, as a `pre_exec` hook requires.
    ///
    /// # Errors
    /// The failing system call's errno.
    pub fn enter(&self) -> std::io::Result<()> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
        // Mounts made below must not propagate back to the host's namespace.
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )?;
        for (src, target) in &self.binds {
            mount(
                Some(src.as_c_str()),
                target.as_c_str(),
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )?;
        }
        nix::unistd::chroot(self.root.as_c_str())?;
        nix::unistd::chdir("/")?;
        Ok(())
    }
}

fn cstring(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes()).with_context(|| format!("{} has a NUL", p.display()))
}
