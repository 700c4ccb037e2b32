//! [`Aof`]: the append-only file (`appendonly yes`): every write this node applies, as
//! RESP commands, written to the file (the OS's page cache) before the client's reply is
//! sent, and replayed at start. A SIGKILL therefore loses nothing it acknowledged, as
//! with Redis's `appendfsync everysec`; a machine crash could lose the last second (the
//! file is fsynced once a second). A full sync from a primary rewrites the file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::db::Db;
use crate::frame::Frame;

/// The open file.
pub struct Aof {
    path: PathBuf,
    file: File,
    dirty: bool,
}

impl Aof {
    /// Opens (creating) the file and replays it into `db`.
    ///
    /// # Errors
    /// When the file cannot be read, opened, or is not RESP.
    pub fn open(path: &Path, db: &mut Db) -> Result<Aof> {
        if let Ok(bytes) = std::fs::read(path) {
            let mut at = 0;
            while at < bytes.len() {
                match Frame::parse(&bytes[at..])
                    .with_context(|| format!("reading {}", path.display()))?
                {
                    Some((f, n)) => {
                        crate::command::apply_write(db, &f.into_args()?);
                        at += n;
                    }
                    // A command cut short by a crash: the rest is dropped, as Redis's
                    // `aof-load-truncated yes` does.
                    None => break,
                }
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(Aof {
            path: path.to_path_buf(),
            file,
            dirty: false,
        })
    }

    /// Appends one write.
    pub fn append(&mut self, args: &[Vec<u8>]) {
        let mut out = Vec::new();
        Frame::command(args).encode(&mut out);
        let _ = self.file.write_all(&out);
        self.dirty = true;
    }

    /// Replaces the file with a snapshot (after a full sync).
    pub fn rewrite(&mut self, snapshot: &[Frame]) {
        let mut out = Vec::new();
        for f in snapshot {
            f.encode(&mut out);
        }
        let tmp = self.path.with_extension("tmp");
        if std::fs::write(&tmp, &out).is_ok() && std::fs::rename(&tmp, &self.path).is_ok() {
            if let Ok(f) = OpenOptions::new().append(true).open(&self.path) {
                self.file = f;
            }
        }
        self.dirty = true;
    }

    /// fsync, once a second.
    pub fn sync(&mut self) {
        if std::mem::take(&mut self.dirty) {
            let _ = self.file.sync_data();
        }
    }
}
