//! The data directory: keygate's own lock, what the directory holds, and the
//! crash-safe creation and removal of a store in it.
//!
//! ```text
//! DATA_DIR/
//!   keygate.lock   held (flock) by the one keygate process using the store
//!   db/            sled database; its presence is what makes a store
//!   issuer.key     ed25519 issuer seed, mode 0600 (unless kept elsewhere)
//!   cache/         authenticated compiled-component cache (safe to delete)
//!   init.tmp/      a store being built or removed (a crash may leave it)
//! ```
//!
//! A store comes into being with one `rename` of a complete, synced `db/`
//! (built in `init.tmp/`), so a crash during the first command leaves either
//! no store or a whole one. A directory that holds only keygate's own names
//! and no `db/` is treated as empty: its leftovers are reused or replaced.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::issuer::{self, sync_dir};

/// Subdirectory holding the sled database.
pub const DB_DIR: &str = "db";
/// Subdirectory holding the compiled component cache.
pub const CACHE_DIR: &str = "cache";
/// keygate's lock file.
pub const LOCK_FILE: &str = "keygate.lock";
/// Where a new store is built, and an abandoned one taken apart.
pub const INIT_DIR: &str = "init.tmp";
/// How long to wait for another keygate process before giving up.
pub const LOCK_WAIT: Duration = Duration::from_secs(1);

/// Every name keygate writes in a data directory.
const OWN_NAMES: [&str; 5] = [DB_DIR, CACHE_DIR, LOCK_FILE, INIT_DIR, issuer::FILE];

/// What a data directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirState {
    /// Does not exist.
    Missing,
    /// Exists and holds nothing, or only keygate's own leftovers (no `db/`).
    Empty,
    /// Holds a keygate database.
    Store,
    /// Holds something keygate did not write.
    Foreign,
}

/// The error for one of keygate's own names that is a link or the wrong
/// kind of file.
pub fn not_own(dir: &Path, name: &str) -> Error {
    Error::Corrupt {
        path: dir.to_path_buf(),
        why: format!(
            "`{name}` is not a directory keygate made (a symbolic link or another kind of file); keygate does not follow links in its data directory"
        ),
    }
}

/// Look at a data directory without changing it.
pub fn dir_state(dir: &Path) -> Result<DirState> {
    let entries = match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(DirState::Missing),
        Err(e) => {
            return Err(Error::System(format!(
                "cannot read the data directory `{}`: {e}",
                dir.display()
            )));
        }
        Ok(entries) => entries,
    };
    // keygate never follows a link in its data directory: a `db` that is a
    // symbolic link would make sled write wherever it points.
    match std::fs::symlink_metadata(dir.join(DB_DIR)) {
        Ok(m) if m.is_dir() => return Ok(DirState::Store),
        Ok(_) => return Err(not_own(dir, DB_DIR)),
        Err(_) => {}
    }
    for entry in entries {
        let entry = entry.map_err(|e| {
            Error::System(format!(
                "cannot read the data directory `{}`: {e}",
                dir.display()
            ))
        })?;
        let name = entry.file_name();
        if !OWN_NAMES.iter().any(|own| name == *own) {
            return Ok(DirState::Foreign);
        }
    }
    Ok(DirState::Empty)
}

/// Whether the open `file` is the file now at `path`.
fn same_file(file: &File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), std::fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (file, path);
        true
    }
}

/// What `keygate serve` writes in the lock file, before its URL.
const SERVE_ANNOUNCE: &str = "keygate serve ";

/// The URL a running `keygate serve` announced in the lock file, if the
/// file holds exactly that, on a loopback address. The directory is
/// untrusted: anything else (bigger, another shape, an address that does
/// not parse or is not loopback) is ignored.
fn served_by(path: &Path) -> Option<String> {
    let bytes = crate::fsutil::read_bounded(&path.join(LOCK_FILE), 128, false).ok()?;
    let text = std::str::from_utf8(&bytes).ok()?;
    let addr = text.strip_prefix(SERVE_ANNOUNCE)?.strip_suffix('\n')?;
    let addr = addr.strip_prefix("http://")?;
    let sock: std::net::SocketAddr = addr.parse().ok()?;
    // Only a loopback address is repeated: a writer of the data directory
    // holding the lock must not steer an operator (and their admin token)
    // to an address of its choosing.
    sock.ip().is_loopback().then(|| format!("http://{sock}"))
}

/// A data directory locked by this process (released on drop).
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    lock: Option<File>,
    created: bool,
}

impl DataDir {
    /// Lock `path` for a command that needs a store. With `create`, a
    /// missing directory is created (mode 0700) and an empty one accepted;
    /// without, they are [`Error::NoStore`]. A foreign directory is refused
    /// before anything is written in it. Waits up to [`LOCK_WAIT`] for
    /// another keygate process.
    pub fn lock(path: &Path, create: bool) -> Result<DataDir> {
        let mut created = false;
        match dir_state(path)? {
            DirState::Foreign => return Err(Error::Foreign(path.to_path_buf())),
            DirState::Missing | DirState::Empty if !create => {
                return Err(Error::NoStore(path.to_path_buf()));
            }
            DirState::Missing => {
                std::fs::create_dir_all(path).map_err(|e| {
                    Error::System(format!(
                        "cannot create the data directory `{}`: {e}",
                        path.display()
                    ))
                })?;
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700));
                }
                created = true;
            }
            DirState::Empty | DirState::Store => {}
        }
        let deadline = Instant::now() + LOCK_WAIT;
        let file = loop {
            if !path.is_dir() {
                return Err(Error::NoStore(path.to_path_buf()));
            }
            // A planted symlink or FIFO is refused, never followed or
            // waited on.
            let file = crate::fsutil::open_regular(
                &path.join(LOCK_FILE),
                std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true),
                false,
            )
            .map_err(|e| {
                Error::System(format!(
                    "cannot open the lock file in `{}`: {e}",
                    path.display()
                ))
            })?;
            match file.try_lock() {
                // The holder before us may have removed the lock file (it
                // discarded a store it had just made): then our lock is on a
                // file nobody else will open, so take the new one.
                Ok(()) if same_file(&file, &path.join(LOCK_FILE)) => break file,
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(match served_by(path) {
                        Some(url) => Error::Served {
                            path: path.to_path_buf(),
                            url,
                        },
                        None => Error::Locked(path.to_path_buf()),
                    });
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(Error::System(format!(
                        "cannot lock the data directory `{}`: {e}",
                        path.display()
                    )));
                }
            }
        };
        // Whatever a former holder announced is over.
        let _ = file.set_len(0);
        Ok(DataDir {
            path: path.to_path_buf(),
            lock: Some(file),
            created,
        })
    }

    /// Say, in the lock file, that a `keygate serve` at `url` holds the
    /// store, so that a local command refused by the lock can point to it.
    /// The next holder empties the file.
    pub fn announce(&self, url: &str) -> Result<()> {
        use std::io::Write;
        let Some(mut file) = self.lock.as_ref() else {
            return Ok(());
        };
        file.set_len(0)
            .and_then(|()| file.write_all(format!("{SERVE_ANNOUNCE}{url}\n").as_bytes()))
            .map_err(|e| {
                Error::System(format!(
                    "cannot write the lock file in `{}`: {e}",
                    self.path.display()
                ))
            })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this process created the directory itself.
    pub fn created_dir(&self) -> bool {
        self.created
    }

    /// What the directory holds now (under the lock, nobody else changes it).
    pub fn state(&self) -> Result<DirState> {
        dir_state(&self.path)
    }

    /// Remove what a crashed keygate or sled left half-written: an unfinished
    /// `init.tmp/`, and sled's incomplete snapshot files (`db/snap.*.generating`,
    /// which sled 0.34 would read back as corruption: spacejam/sled#1527).
    /// Only called under the lock, before sled is opened.
    pub fn clear_leftovers(&self) -> Result<()> {
        let io = |e: std::io::Error| {
            Error::System(format!(
                "cannot clear leftovers of an interrupted keygate in `{}`: {e}",
                self.path.display()
            ))
        };
        let init = self.path.join(INIT_DIR);
        match std::fs::symlink_metadata(&init) {
            // A real directory goes with its contents; anything else planted
            // under the name (a link, a file, a FIFO) is unlinked, never
            // followed.
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&init).map_err(io)?,
            Ok(_) => std::fs::remove_file(&init).map_err(io)?,
            Err(_) => {}
        }
        let db = self.path.join(DB_DIR);
        if let Ok(entries) = std::fs::read_dir(&db) {
            for entry in entries {
                let name = entry.map_err(io)?.file_name();
                let name = name.to_string_lossy();
                if name.starts_with("snap.") && name.ends_with(".generating") {
                    std::fs::remove_file(db.join(name.as_ref())).map_err(io)?;
                }
            }
        }
        Ok(())
    }

    /// Where a new store is built: an empty `init.tmp/`.
    pub fn fresh_init_dir(&self) -> Result<PathBuf> {
        self.clear_leftovers()?;
        let init = self.path.join(INIT_DIR);
        std::fs::create_dir(&init)
            .map_err(|e| Error::System(format!("cannot create `{}`: {e}", init.display())))?;
        Ok(init)
    }

    /// Move `from` (inside `init.tmp/`) to `name` in the directory and sync
    /// the directory, so the rename survives a crash.
    pub fn install(&self, from: &Path, name: &str) -> Result<()> {
        let to = self.path.join(name);
        std::fs::rename(from, &to)
            .and_then(|()| sync_dir(&self.path))
            .map_err(|e| Error::System(format!("cannot install `{}`: {e}", to.display())))
    }

    /// Undo an init that failed before its database was in place: remove
    /// `init.tmp/` and, when this process made them, the cache, the lock file
    /// and the directory itself. `made_files` is false when the failure came
    /// before anything was written.
    pub fn abandon_init(mut self, made_files: bool) {
        let _ = self.clear_leftovers();
        if made_files || self.created {
            let _ = std::fs::remove_dir_all(self.path.join(CACHE_DIR));
        }
        let _ = std::fs::remove_file(self.path.join(LOCK_FILE));
        self.lock = None;
        if self.created {
            let _ = std::fs::remove_dir(&self.path);
        }
    }

    /// Take apart a store this process just created (its first command
    /// failed): `db/` leaves in one rename, then the rest goes. A crash in
    /// between leaves only keygate's own leftovers, never half a store.
    /// `issuer_generated` says whether `issuer.key` here is new too.
    pub fn discard_new_store(mut self, issuer_generated: bool) {
        let trash = self.path.join(INIT_DIR);
        let _ = std::fs::remove_dir_all(&trash);
        if std::fs::create_dir(&trash).is_ok() {
            let _ = std::fs::rename(self.path.join(DB_DIR), trash.join(DB_DIR));
            let _ = sync_dir(&self.path);
        }
        if issuer_generated {
            let _ = std::fs::remove_file(self.path.join(issuer::FILE));
        }
        let _ = std::fs::remove_dir_all(&trash);
        let _ = std::fs::remove_dir_all(self.path.join(CACHE_DIR));
        let _ = std::fs::remove_file(self.path.join(LOCK_FILE));
        self.lock = None;
        if self.created {
            let _ = std::fs::remove_dir(&self.path);
        }
    }
}
