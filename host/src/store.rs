//! The sled database of a data directory (see [`crate::datadir`] for the
//! directory itself and [`crate::schema`] for every tree and encoding).
//!
//! Reading is public; writing is not: the only writer is the crate's write
//! seam (`admin::write`), which has every fact checked and encoded by the
//! component and signed before it reaches [`Store::commit`]. Every change is
//! one sled transaction over all the trees it touches, followed by `flush()`
//! and an `fsync` before the caller reports success (and before a new secret
//! is printed).

use std::path::{Path, PathBuf};

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::datadir::{DB_DIR, DataDir};
use crate::error::{Error, Result};
use crate::runtime::bindings::SignedRecord;
use crate::schema::{self, AuditEvent, meta, tree};

/// An open store. Holding it holds sled's exclusive lock on the database;
/// it is only opened under keygate's own lock ([`DataDir`]).
pub struct Store {
    dir: PathBuf,
    db_path: PathBuf,
    db: sled::Db,
    meta: sled::Tree,
    keys: sled::Tree,
    deleted: sled::Tree,
    projects: sled::Tree,
    organizations: sled::Tree,
    audit: sled::Tree,
    changes: sled::Tree,
    tokens: sled::Tree,
    last_used: sled::Tree,
    by_org: sled::Tree,
}

/// Makes a change-index entry's tag from the fact's kind, id, the
/// sequence of its change and its stored value (the issuer's
/// `change_tag`).
pub(crate) type ChangeTagger<'a> = dyn Fn(u8, &str, u64, &[u8]) -> [u8; 32] + 'a;

/// One change to the trees, committed atomically. Values are signed already.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// Key records to write (id, signed record).
    pub put_keys: Vec<(String, SignedRecord)>,
    /// Key ids to delete, with their signed tombstones.
    pub delete_keys: Vec<(String, SignedRecord)>,
    /// Project registrations to write (id, signed registration).
    pub put_projects: Vec<(String, SignedRecord)>,
    /// Organizations to write (slug, signed organization).
    pub put_organizations: Vec<(String, SignedRecord)>,
    /// Audit events (their sequence numbers are assigned on commit).
    pub audit: Vec<AuditEvent>,
    /// A new schema version, written in the same transaction (migration).
    pub schema: Option<u32>,
    /// Admin token records to write (id, record signed by the issuer).
    pub put_tokens: Vec<(String, SignedRecord)>,
    /// Keys to list under their organization (slug, key id).
    pub index_keys: Vec<(String, String)>,
    /// Keys to take out of their organization's listing (slug, key id).
    pub unindex_keys: Vec<(String, String)>,
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
    /// Open the existing store of a locked data directory; checks its marker
    /// and schema version. Leftovers of a crash are cleared first.
    pub fn open(dir: &DataDir) -> Result<Store> {
        let store = Self::open_any(dir)?;
        match store.schema()? {
            schema::SCHEMA_VERSION => Ok(store),
            found @ (1..=3) => Err(Error::OldSchema {
                path: dir.path().to_path_buf(),
                found,
            }),
            other if other > schema::SCHEMA_VERSION => Err(store.corrupt(format!(
                "it has schema version {other}, written by a newer keygate (this one reads version {})",
                schema::SCHEMA_VERSION
            ))),
            other => Err(store.corrupt(format!(
                "schema version {other} is not supported by this keygate (it reads version {})",
                schema::SCHEMA_VERSION
            ))),
        }
    }

    /// The store's schema version.
    pub fn schema(&self) -> Result<u32> {
        self.meta
            .get(meta::SCHEMA)
            .map_err(|e| self.err(e))?
            .and_then(|v| v.as_ref().try_into().ok().map(u32::from_be_bytes))
            .ok_or_else(|| self.corrupt("its schema version is missing".into()))
    }

    /// Open a keygate store of any schema version (for migration).
    pub(crate) fn open_any(dir: &DataDir) -> Result<Store> {
        dir.clear_leftovers()?;
        let store = Self::open_db(dir.path(), &dir.path().join(DB_DIR))?;
        let path = dir.path();
        let corrupt = |why: &str| Error::Corrupt {
            path: path.to_path_buf(),
            why: why.into(),
        };
        match store
            .meta
            .get(meta::MAGIC)
            .map_err(|e| sled_error(path, e))?
        {
            Some(v) if v.as_ref() == meta::MAGIC_VALUE => {}
            Some(_) => return Err(Error::Foreign(path.to_path_buf())),
            None => return Err(corrupt("it has no keygate marker")),
        }
        Ok(store)
    }

    /// The raw values of a tree, for migrating an older schema.
    pub(crate) fn raw(&self, name: &str) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let t = match name {
            tree::PROJECTS => &self.projects,
            tree::DELETED_KEYS => &self.deleted,
            _ => return Err(self.corrupt(format!("no tree `{name}` to migrate"))),
        };
        t.iter()
            .map(|item| {
                let (k, v) = item.map_err(|e| self.err(e))?;
                Ok((k.to_vec(), v.to_vec()))
            })
            .collect()
    }

    /// Create a new database at `db_path` (inside `init.tmp/`, renamed into
    /// place by the caller) and write its metadata, flushed and synced.
    pub(crate) fn create(
        dir: &Path,
        db_path: &Path,
        prefix: &str,
        issuer_id: &str,
        now: u64,
    ) -> Result<Store> {
        let store = Self::open_db(dir, db_path)?;
        let res: Result<(), TransactionError<()>> = store.meta.transaction(|m| {
            m.insert(meta::SCHEMA, &schema::SCHEMA_VERSION.to_be_bytes())?;
            m.insert(meta::PREFIX, prefix.as_bytes())?;
            m.insert(meta::ISSUER, issuer_id.as_bytes())?;
            m.insert(meta::SEQUENCE, &schema::u64_key(0))?;
            m.insert(meta::CREATED, &schema::u64_key(now))?;
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

    fn open_db(dir: &Path, db_path: &Path) -> Result<Store> {
        // keygate's own lock is held; sled's lock can still be busy for a
        // moment if a process outside keygate opened the database.
        let deadline = std::time::Instant::now() + crate::datadir::LOCK_WAIT;
        let db = loop {
            // No background flusher: every commit flushes (and fsyncs) itself.
            // A page cache of 8 MiB, not sled's default 1 GiB: a full
            // snapshot reads every key once, and a service holding that in
            // memory for nothing dominated its resident size (the OS caches
            // the file anyway). sled counts its cache by serialized size: a
            // service at a million keys held 346 MB of live heap with
            // 64 MiB set, 187 MB with 16 MiB; 8 MiB took 14 MB less RSS
            // than 16 for the same start time (4 MiB: 8 MB less again, and
            // a second slower).
            let config = sled::Config::new()
                .path(db_path)
                .flush_every_ms(None)
                .cache_capacity(8 * 1024 * 1024);
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
            organizations: t(tree::ORGANIZATIONS)?,
            audit: t(tree::AUDIT)?,
            changes: t(tree::CHANGES)?,
            tokens: t(tree::ADMIN_TOKENS)?,
            last_used: t(tree::LAST_USED)?,
            by_org: t(tree::KEYS_BY_ORG)?,
            db,
            dir: dir.to_path_buf(),
            db_path: db_path.to_path_buf(),
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
    fn flush(&self) -> Result<()> {
        self.db.flush().map_err(|e| self.err(e))?;
        std::fs::File::open(self.db_path.join("db"))
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

    fn signed(&self, t: &sled::Tree, id: &str, what: &str) -> Result<Option<SignedRecord>> {
        match t.get(id.as_bytes()).map_err(|e| self.err(e))? {
            None => Ok(None),
            Some(v) => schema::decode_signed(&v).map(Some).ok_or_else(|| {
                self.corrupt(format!("the stored value of {what} `{id}` is damaged"))
            }),
        }
    }

    fn all_signed(
        &self,
        t: &sled::Tree,
        is_id: fn(&[u8]) -> bool,
        what: &'static str,
    ) -> Result<Vec<(String, SignedRecord)>> {
        self.each_signed(t, is_id, what).collect()
    }

    /// A tree's ids and signed values, in id order, read as they are used
    /// (a snapshot of a million keys never holds them all at once). The
    /// iterator keeps its own handle on the tree, not a borrow of the store.
    fn each_signed(
        &self,
        t: &sled::Tree,
        is_id: fn(&[u8]) -> bool,
        what: &'static str,
    ) -> impl Iterator<Item = Result<(String, SignedRecord)>> + use<> {
        let dir = self.dir.clone();
        t.iter().map(move |item| {
            let corrupt = |why: String| Error::Corrupt {
                path: dir.clone(),
                why,
            };
            let (k, v) = item.map_err(|e| sled_error(&dir, e))?;
            if !is_id(&k) {
                return Err(corrupt(format!("the {what} tree holds a malformed id")));
            }
            let id = String::from_utf8_lossy(&k).into_owned();
            let signed = schema::decode_signed(&v)
                .ok_or_else(|| corrupt(format!("the stored value of {what} `{id}` is damaged")))?;
            Ok((id, signed))
        })
    }

    /// [`Store::keys`], read as used.
    pub fn each_key(&self) -> impl Iterator<Item = Result<(String, SignedRecord)>> + use<> {
        self.each_signed(&self.keys, schema::is_key_id, "key")
    }

    /// [`Store::tombstones`], read as used.
    pub fn each_tombstone(&self) -> impl Iterator<Item = Result<(String, SignedRecord)>> + use<> {
        self.each_signed(&self.deleted, schema::is_key_id, "deleted key")
    }

    /// [`Store::projects`], read as used.
    pub fn each_project(&self) -> impl Iterator<Item = Result<(String, SignedRecord)>> + use<> {
        self.each_signed(&self.projects, schema::is_project_id, "project")
    }

    /// [`Store::organizations`], read as used.
    pub fn each_organization(
        &self,
    ) -> impl Iterator<Item = Result<(String, SignedRecord)>> + use<> {
        self.each_signed(&self.organizations, schema::is_org_slug, "organization")
    }

    /// A key's signed record; damaged values are corruption, not absence.
    pub fn key(&self, id: &str) -> Result<Option<SignedRecord>> {
        self.signed(&self.keys, id, "key")
    }

    /// A deleted key's signed tombstone.
    pub fn tombstone(&self, id: &str) -> Result<Option<SignedRecord>> {
        self.signed(&self.deleted, id, "deleted key")
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

    /// Every live key's signed record, in id order.
    pub fn keys(&self) -> Result<Vec<(String, SignedRecord)>> {
        self.all_signed(&self.keys, schema::is_key_id, "key")
    }

    /// The ids its organization's listing holds (entries that do not end
    /// in a key id name nothing and are skipped), in id order.
    pub fn org_key_ids(&self, slug: &str) -> Result<Vec<String>> {
        let prefix = schema::org_prefix(slug);
        let mut out = Vec::new();
        for item in self.by_org.scan_prefix(&prefix) {
            let (k, _) = item.map_err(|e| self.err(e))?;
            let id = &k[prefix.len()..];
            if schema::is_key_id(id) {
                out.push(String::from_utf8_lossy(id).into_owned());
            }
        }
        Ok(out)
    }

    /// Whether a key id has a deletion (of any schema: not decoded).
    pub fn is_deleted(&self, id: &str) -> Result<bool> {
        self.deleted
            .contains_key(id.as_bytes())
            .map_err(|e| self.err(e))
    }

    /// Whether an organization's listing holds a key.
    pub fn key_listed(&self, slug: &str, id: &str) -> Result<bool> {
        self.by_org
            .contains_key(schema::org_key(slug, id))
            .map_err(|e| self.err(e))
    }

    /// Every tombstone, in id order.
    pub fn tombstones(&self) -> Result<Vec<(String, SignedRecord)>> {
        self.all_signed(&self.deleted, schema::is_key_id, "deleted key")
    }

    /// A project's signed registration (deleted ones included).
    pub fn project(&self, id: &str) -> Result<Option<SignedRecord>> {
        self.signed(&self.projects, id, "project")
    }

    /// Every project registration (deleted ones included), in id order.
    pub fn projects(&self) -> Result<Vec<(String, SignedRecord)>> {
        self.all_signed(&self.projects, schema::is_project_id, "project")
    }

    /// An organization's signed registration (deleted ones included).
    pub fn organization(&self, slug: &str) -> Result<Option<SignedRecord>> {
        self.signed(&self.organizations, slug, "organization")
    }

    /// Every organization (deleted ones included), in slug order.
    pub fn organizations(&self) -> Result<Vec<(String, SignedRecord)>> {
        self.all_signed(&self.organizations, schema::is_org_slug, "organization")
    }

    /// Whether the `changes` tree records any fact of this kind.
    pub fn any_change_of(&self, kind: u8) -> Result<bool> {
        Ok(self
            .changes
            .scan_prefix([kind])
            .next()
            .transpose()
            .map_err(|e| self.err(e))?
            .is_some())
    }

    /// The sequence of a fact's last change and its tag (see
    /// [`crate::issuer::Issuer::change_tag`]), if recorded (facts written
    /// before changes were recorded have none; entries written before they
    /// were tagged have no tag). Not trusted until the tag is checked.
    pub fn changed_at(&self, kind: u8, id: &str) -> Result<Option<(u64, Option<[u8; 32]>)>> {
        let v = self
            .changes
            .get(schema::change_key(kind, id))
            .map_err(|e| self.err(e))?;
        Ok(v.and_then(|v| {
            let seq = schema::read_u64(v.get(..8)?)?;
            match v.len() {
                8 => Some((seq, None)),
                40 => Some((seq, v[8..].try_into().ok())),
                _ => None,
            }
        }))
    }

    /// An admin token's stored record (its signature not yet checked).
    pub fn admin_token(&self, id: &str) -> Result<Option<SignedRecord>> {
        self.signed(&self.tokens, id, "admin token")
    }

    /// Every admin token record, in id order.
    pub fn admin_tokens(&self) -> Result<Vec<(String, SignedRecord)>> {
        self.all_signed(&self.tokens, schema::is_key_id, "admin token")
    }

    /// When a key last allowed a request, if recorded.
    pub fn last_used(&self, id: &str) -> Result<Option<u64>> {
        let v = self.last_used.get(id.as_bytes()).map_err(|e| self.err(e))?;
        Ok(v.and_then(|v| schema::read_u64(&v)))
    }

    /// Record uses (key id, time): each key keeps its latest. Not an admin
    /// write (no sequence, no audit); flushed like one.
    pub(crate) fn record_uses(&self, uses: &[(String, u64)]) -> Result<()> {
        for (id, at) in uses {
            let newer = self
                .last_used
                .fetch_and_update(id.as_bytes(), |old| {
                    let old = old.and_then(schema::read_u64).unwrap_or(0);
                    Some(schema::u64_key(old.max(*at)).to_vec())
                })
                .map_err(|e| self.err(e))?;
            let _ = newer;
        }
        self.flush()
    }

    /// The newest audit event, if any.
    pub fn last_audit(&self) -> Result<Option<AuditEvent>> {
        match self.audit.last().map_err(|e| self.err(e))? {
            None => Ok(None),
            Some((_, v)) => schema::decode_json(&v)
                .map(Some)
                .ok_or_else(|| self.corrupt("an audit event is damaged".into())),
        }
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

    /// Apply a batch atomically, then flush and sync. Returns the last
    /// sequence number. Only the write seam calls this; `tag` makes each
    /// change-index entry's tag (kind, id, sequence, stored value).
    pub(crate) fn commit(&self, batch: Batch, tag: &ChangeTagger<'_>) -> Result<u64> {
        // Encode everything first: a value that does not fit is refused
        // before anything is written.
        let enc = |list: &[(String, SignedRecord)]| -> Result<Vec<(String, Vec<u8>)>> {
            list.iter()
                .map(|(id, s)| {
                    schema::encode_signed(s)
                        .map(|v| (id.clone(), v))
                        .map_err(|e| Error::System(format!("cannot store `{id}`: {e}")))
                })
                .collect()
        };
        let put_keys = enc(&batch.put_keys)?;
        let delete_keys = enc(&batch.delete_keys)?;
        let put_projects = enc(&batch.put_projects)?;
        let put_tokens = enc(&batch.put_tokens)?;
        let put_orgs = enc(&batch.put_organizations)?;
        let res: Result<u64, TransactionError<String>> = (
            &self.meta,
            &self.keys,
            &self.deleted,
            &self.projects,
            &self.audit,
            &self.changes,
            &self.tokens,
            &self.organizations,
            &self.by_org,
        )
            .transaction(
                |(m, keys, deleted, projects, audit, changes, tokens, orgs, by_org)| {
                    let mut seq = m
                        .get(meta::SEQUENCE)?
                        .and_then(|v| schema::read_u64(&v))
                        .ok_or_else(|| {
                            ConflictableTransactionError::Abort(
                                "sequence number damaged".to_string(),
                            )
                        })?;
                    for (id, value) in &put_keys {
                        keys.insert(id.as_bytes(), value.as_slice())?;
                    }
                    for (id, value) in &delete_keys {
                        keys.remove(id.as_bytes())?;
                        deleted.insert(id.as_bytes(), value.as_slice())?;
                    }
                    for (id, value) in &put_projects {
                        projects.insert(id.as_bytes(), value.as_slice())?;
                    }
                    for (id, value) in &put_tokens {
                        tokens.insert(id.as_bytes(), value.as_slice())?;
                    }
                    for (slug, value) in &put_orgs {
                        orgs.insert(slug.as_bytes(), value.as_slice())?;
                    }
                    for (slug, id) in &batch.unindex_keys {
                        by_org.remove(schema::org_key(slug, id))?;
                    }
                    for (slug, id) in &batch.index_keys {
                        by_org.insert(schema::org_key(slug, id), &[])?;
                    }
                    for ev in &batch.audit {
                        seq += 1;
                        // A chained event was linked for the sequence it would
                        // get: any other is a write keygate did not expect.
                        if ev.chain.is_some() && ev.sequence != seq {
                            return Err(ConflictableTransactionError::Abort(
                                "the audit sequence moved under a write".to_string(),
                            ));
                        }
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
                    let entry = |kind: u8, id: &str, value: &[u8]| -> Vec<u8> {
                        let mut e = schema::u64_key(seq).to_vec();
                        e.extend_from_slice(&tag(kind, id, seq, value));
                        e
                    };
                    use schema::change::{KEY, ORGANIZATION, PROJECT, TOMBSTONE};
                    for (id, value) in &put_keys {
                        changes.insert(schema::change_key(KEY, id), entry(KEY, id, value))?;
                    }
                    for (id, value) in &delete_keys {
                        changes.remove(schema::change_key(KEY, id))?;
                        changes.insert(
                            schema::change_key(TOMBSTONE, id),
                            entry(TOMBSTONE, id, value),
                        )?;
                    }
                    for (id, value) in &put_projects {
                        changes
                            .insert(schema::change_key(PROJECT, id), entry(PROJECT, id, value))?;
                    }
                    for (slug, value) in &put_orgs {
                        changes.insert(
                            schema::change_key(ORGANIZATION, slug),
                            entry(ORGANIZATION, slug, value),
                        )?;
                    }
                    if let Some(v) = batch.schema {
                        m.insert(meta::SCHEMA, &v.to_be_bytes())?;
                    }
                    Ok(seq)
                },
            );
        let seq = res.map_err(|e| match e {
            TransactionError::Storage(e) => self.err(e),
            TransactionError::Abort(why) => self.corrupt(why),
        })?;
        self.flush()?;
        Ok(seq)
    }
}
