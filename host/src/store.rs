//! The sled store in the data directory.
//!
//! ```text
//! DATA_DIR/
//!   db/          sled database (trees: see `schema`)
//!   issuer.key   ed25519 issuer key, mode 0600
//!   cache/       compiled component cache (safe to delete)
//! ```
//!
//! Every admin change is one sled transaction over all the trees it touches,
//! followed by `flush()` before the command reports success (and before a new
//! secret is printed).

use std::path::{Path, PathBuf};

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::error::{Error, Result};
use crate::runtime::bindings::SignedRecord;
use crate::schema::{self, AuditEvent, DeletedKey, Project, meta, tree};

/// Subdirectory holding the sled database.
pub const DB_DIR: &str = "db";
/// How long to wait for another process's lock before giving up.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(1);
/// Subdirectory holding the compiled component cache.
pub const CACHE_DIR: &str = "cache";

/// An open store. Holding it holds sled's exclusive lock on the database.
pub struct Store {
    dir: PathBuf,
    db: sled::Db,
    meta: sled::Tree,
    keys: sled::Tree,
    deleted: sled::Tree,
    projects: sled::Tree,
    audit: sled::Tree,
}

/// What a data directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirState {
    /// Does not exist.
    Missing,
    /// Exists and is empty.
    Empty,
    /// Holds a keygate database.
    Store,
    /// Holds something else.
    Foreign,
}

/// Look at a data directory without changing it.
pub fn dir_state(dir: &Path) -> Result<DirState> {
    match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DirState::Missing),
        Err(e) => Err(Error::System(format!(
            "cannot read the data directory `{}`: {e}",
            dir.display()
        ))),
        Ok(mut entries) => {
            if dir.join(DB_DIR).is_dir() {
                Ok(DirState::Store)
            } else if entries.next().is_none() {
                Ok(DirState::Empty)
            } else {
                Ok(DirState::Foreign)
            }
        }
    }
}

/// One change to the key trees, committed with others atomically.
#[derive(Debug, Default)]
pub struct Batch {
    /// Key records to write (id, signed record).
    pub put_keys: Vec<(String, SignedRecord)>,
    /// Key ids to delete, with their tombstones.
    pub delete_keys: Vec<DeletedKey>,
    /// Projects to write.
    pub put_projects: Vec<Project>,
    /// Audit events (their sequence numbers are assigned on commit).
    pub audit: Vec<AuditEvent>,
}

fn sled_error(dir: &Path, e: sled::Error) -> Error {
    match e {
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
            Error::Locked(dir.to_path_buf())
        }
        sled::Error::Corruption { .. } => Error::Corrupt {
            path: dir.to_path_buf(),
            why: "sled reports corruption".into(),
        },
        other => Error::System(format!("storage error in `{}`: {other}", dir.display())),
    }
}

impl Store {
    /// Open an existing store; checks its marker and schema version.
    pub fn open(dir: &Path) -> Result<Store> {
        match dir_state(dir)? {
            DirState::Store => {}
            DirState::Missing | DirState::Empty => return Err(Error::NoStore(dir.to_path_buf())),
            DirState::Foreign => return Err(Error::Foreign(dir.to_path_buf())),
        }
        let store = Self::open_db(dir)?;
        let corrupt = |why: &str| Error::Corrupt {
            path: dir.to_path_buf(),
            why: why.into(),
        };
        match store
            .meta
            .get(meta::MAGIC)
            .map_err(|e| sled_error(dir, e))?
        {
            Some(v) if v.as_ref() == meta::MAGIC_VALUE => {}
            Some(_) => return Err(Error::Foreign(dir.to_path_buf())),
            None => return Err(corrupt("it has no keygate marker (an interrupted init?)")),
        }
        let schema = store
            .meta
            .get(meta::SCHEMA)
            .map_err(|e| sled_error(dir, e))?
            .and_then(|v| v.as_ref().try_into().ok().map(u32::from_be_bytes))
            .ok_or_else(|| corrupt("its schema version is missing"))?;
        if schema != schema::SCHEMA_VERSION {
            return Err(corrupt(&format!(
                "schema version {schema} is not supported by this keygate (it reads version {})",
                schema::SCHEMA_VERSION
            )));
        }
        Ok(store)
    }

    /// Create the database of a new store and write its metadata.
    pub fn create(dir: &Path, prefix: &str, issuer_id: &str, now: u64) -> Result<Store> {
        let store = Self::open_db(dir)?;
        let res: Result<(), TransactionError<()>> = store.meta.transaction(|m| {
            m.insert(meta::SCHEMA, &schema::SCHEMA_VERSION.to_be_bytes())?;
            m.insert(meta::PREFIX, prefix.as_bytes())?;
            m.insert(meta::ISSUER, issuer_id.as_bytes())?;
            m.insert(meta::SEQUENCE, &schema::u64_key(0))?;
            m.insert(meta::CREATED, &schema::u64_key(now))?;
            // The marker last: a store without it was never finished.
            m.insert(meta::MAGIC, meta::MAGIC_VALUE)?;
            Ok(())
        });
        res.map_err(|e| match e {
            TransactionError::Storage(e) => sled_error(dir, e),
            TransactionError::Abort(()) => Error::System("store initialisation aborted".into()),
        })?;
        store.flush()?;
        Ok(store)
    }

    fn open_db(dir: &Path) -> Result<Store> {
        // Admin commands hold the lock for milliseconds: wait up to a second
        // for another keygate process before reporting the store as locked.
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let db = loop {
            // No background flusher: every commit flushes (and fsyncs) itself.
            let config = sled::Config::new()
                .path(dir.join(DB_DIR))
                .flush_every_ms(None);
            match config.open().map_err(|e| sled_error(dir, e)) {
                Err(Error::Locked(_)) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                other => break other?,
            }
        };
        let t = |name: &str| db.open_tree(name).map_err(|e| sled_error(dir, e));
        Ok(Store {
            meta: t(tree::META)?,
            keys: t(tree::KEYS)?,
            deleted: t(tree::DELETED_KEYS)?,
            projects: t(tree::PROJECTS)?,
            audit: t(tree::AUDIT)?,
            db,
            dir: dir.to_path_buf(),
        })
    }

    fn err(&self, e: sled::Error) -> Error {
        sled_error(&self.dir, e)
    }

    fn corrupt(&self, why: String) -> Error {
        Error::Corrupt {
            path: self.dir.clone(),
            why,
        }
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Flush everything to stable storage. sled's own flush writes its log
    /// with `sync_file_range`, which neither flushes the drive's write cache
    /// nor the file's metadata; the `fsync` of sled's data file that follows
    /// does both, so a committed change survives a power loss too.
    pub fn flush(&self) -> Result<()> {
        self.db.flush().map_err(|e| self.err(e))?;
        std::fs::File::open(self.dir.join(DB_DIR).join("db"))
            .and_then(|f| f.sync_all())
            .map_err(|e| {
                Error::System(format!(
                    "cannot sync the store in `{}` to disk: {e}",
                    self.dir.display()
                ))
            })
    }

    fn meta_str(&self, key: &[u8], what: &str) -> Result<String> {
        let v = self.meta.get(key).map_err(|e| self.err(e))?;
        v.and_then(|v| String::from_utf8(v.to_vec()).ok())
            .ok_or_else(|| self.corrupt(format!("its {what} is missing or damaged")))
    }

    /// The deployment key prefix.
    pub fn prefix(&self) -> Result<String> {
        self.meta_str(meta::PREFIX, "key prefix")
    }

    /// The issuer key id recorded at init.
    pub fn issuer_id(&self) -> Result<String> {
        self.meta_str(meta::ISSUER, "issuer key id")
    }

    /// The admin write sequence number.
    pub fn sequence(&self) -> Result<u64> {
        let v = self.meta.get(meta::SEQUENCE).map_err(|e| self.err(e))?;
        v.and_then(|v| schema::read_u64(&v))
            .ok_or_else(|| self.corrupt("its sequence number is missing or damaged".into()))
    }

    /// A key's signed record; damaged values are corruption, not absence.
    pub fn key(&self, id: &str) -> Result<Option<SignedRecord>> {
        match self.keys.get(id.as_bytes()).map_err(|e| self.err(e))? {
            None => Ok(None),
            Some(v) => schema::decode_signed(&v)
                .map(Some)
                .ok_or_else(|| self.corrupt(format!("the stored value of key `{id}` is damaged"))),
        }
    }

    /// Whether a key id was ever used (live or deleted).
    pub fn key_id_used(&self, id: &str) -> Result<bool> {
        Ok(self
            .keys
            .contains_key(id.as_bytes())
            .map_err(|e| self.err(e))?
            || self
                .deleted
                .contains_key(id.as_bytes())
                .map_err(|e| self.err(e))?)
    }

    /// The tombstone of a deleted key.
    pub fn deleted_key(&self, id: &str) -> Result<Option<DeletedKey>> {
        match self.deleted.get(id.as_bytes()).map_err(|e| self.err(e))? {
            None => Ok(None),
            Some(v) => schema::decode_json(&v)
                .map(Some)
                .ok_or_else(|| self.corrupt(format!("the tombstone of key `{id}` is damaged"))),
        }
    }

    /// Every live key's signed record, in id order.
    pub fn keys(&self) -> Result<Vec<(String, SignedRecord)>> {
        let mut out = Vec::new();
        for item in self.keys.iter() {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if !schema::is_key_id(&k) {
                return Err(self.corrupt("the keys tree holds a malformed key id".into()));
            }
            let id = String::from_utf8_lossy(&k).into_owned();
            let signed = schema::decode_signed(&v).ok_or_else(|| {
                self.corrupt(format!("the stored value of key `{id}` is damaged"))
            })?;
            out.push((id, signed));
        }
        Ok(out)
    }

    /// A project (deleted ones included).
    pub fn project(&self, id: &str) -> Result<Option<Project>> {
        match self.projects.get(id.as_bytes()).map_err(|e| self.err(e))? {
            None => Ok(None),
            Some(v) => schema::decode_json(&v).map(Some).ok_or_else(|| {
                self.corrupt(format!("the stored value of project `{id}` is damaged"))
            }),
        }
    }

    /// Every project (deleted ones included), in id order.
    pub fn projects(&self) -> Result<Vec<Project>> {
        let mut out = Vec::new();
        for item in self.projects.iter() {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if !schema::is_project_id(&k) {
                return Err(self.corrupt("the projects tree holds a malformed project id".into()));
            }
            out.push(
                schema::decode_json(&v)
                    .ok_or_else(|| self.corrupt("a stored project is damaged".into()))?,
            );
        }
        Ok(out)
    }

    /// Every audit event, oldest first.
    pub fn audit(&self) -> Result<Vec<AuditEvent>> {
        let mut out = Vec::new();
        for item in self.audit.iter() {
            let (_, v) = item.map_err(|e| self.err(e))?;
            out.push(
                schema::decode_json(&v)
                    .ok_or_else(|| self.corrupt("an audit event is damaged".into()))?,
            );
        }
        Ok(out)
    }

    /// Apply a batch atomically, then flush. Returns the last sequence number.
    pub fn commit(&self, batch: Batch) -> Result<u64> {
        let res: Result<u64, TransactionError<String>> = (
            &self.meta,
            &self.keys,
            &self.deleted,
            &self.projects,
            &self.audit,
        )
            .transaction(|(m, keys, deleted, projects, audit)| {
                let mut seq = m
                    .get(meta::SEQUENCE)?
                    .and_then(|v| schema::read_u64(&v))
                    .ok_or_else(|| {
                        ConflictableTransactionError::Abort("sequence number damaged".to_string())
                    })?;
                for (id, signed) in &batch.put_keys {
                    keys.insert(id.as_bytes(), schema::encode_signed(signed))?;
                }
                for d in &batch.delete_keys {
                    keys.remove(d.id.as_bytes())?;
                    deleted.insert(d.id.as_bytes(), schema::encode_json(d))?;
                }
                for p in &batch.put_projects {
                    projects.insert(p.id.as_bytes(), schema::encode_json(p))?;
                }
                for ev in &batch.audit {
                    seq += 1;
                    let ev = AuditEvent {
                        sequence: seq,
                        ..ev.clone()
                    };
                    audit.insert(&schema::u64_key(seq), schema::encode_json(&ev))?;
                }
                if batch.audit.is_empty() {
                    seq += 1;
                }
                m.insert(meta::SEQUENCE, &schema::u64_key(seq))?;
                Ok(seq)
            });
        let seq = res.map_err(|e| match e {
            TransactionError::Storage(e) => self.err(e),
            TransactionError::Abort(why) => self.corrupt(why),
        })?;
        self.flush()?;
        Ok(seq)
    }
}
