//! Admin operations over an open store, every rule and every decision taken
//! by the embedded component. This is the library a Rust service embeds; the
//! `keygate` binary is a thin command-line front end over it.
//!
//! - [`write`]: the one seam that writes the store (check and encode in the
//!   component, sign, commit).
//! - [`projects`], [`keys`]: the operations.
//! - [`views`]: what listings show.
//! - [`verify`]: one decision, by the component's `evaluate`.

use std::path::{Path, PathBuf};

use crate::cache::CacheOutcome;
use crate::datadir::{self, DataDir, DirState};
use crate::error::{Error, Result};
use crate::issuer::{self, Issuer, IssuerSecret};
use crate::runtime::bindings::{
    IssuerKey, LoadError, RecordError, Scope, SignedBody, SignedRecord,
};
use crate::runtime::{Module, Runtime};
use crate::schema::AuditEvent;
use crate::store::Store;

pub mod api;
pub mod keys;
pub mod migrate;
pub mod orgs;
pub mod projects;
pub mod snapshot;
pub mod tokens;
pub mod verify;
pub mod views;
mod write;

pub use api::AdminApi;
pub use keys::{Access, Created, KeySpec};
pub use migrate::Migrated;
pub use orgs::{OrgDeleted, PolicySet};
pub use snapshot::SnapshotFile;
pub use tokens::{AdminToken, IssuedToken};
pub use verify::{Verdict, decision_json};
pub use views::{
    AccessView, KeyPolicyView, KeyView, OrgView, ProjectList, ProjectView, audit_from_json,
    audit_json, expiry_rule_text, parse_rfc3339, rfc3339,
};

/// The deployment prefix used when `init` is not given one.
pub const DEFAULT_PREFIX: &str = "kg";

/// Where a store lives: its data directory and, optionally, an issuer key
/// file kept outside it (so that write access to the data directory does
/// not include the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The data directory.
    pub dir: PathBuf,
    /// The issuer key file; `None` means `DATA_DIR/issuer.key`.
    pub issuer_key: Option<PathBuf>,
}

impl Location {
    /// A data directory with its issuer key inside it.
    pub fn new(dir: impl Into<PathBuf>) -> Location {
        Location {
            dir: dir.into(),
            issuer_key: None,
        }
    }

    /// Keep the issuer key in `path` instead.
    pub fn with_issuer_key(mut self, path: impl Into<PathBuf>) -> Location {
        self.issuer_key = Some(path.into());
        self
    }

    fn issuer_path(&self) -> PathBuf {
        self.issuer_key
            .clone()
            .unwrap_or_else(|| self.dir.join(issuer::FILE))
    }

    /// Refuse an issuer key kept inside keygate's own folders of the data
    /// directory, which keygate itself replaces or removes.
    fn check(&self) -> Result<()> {
        if let Some(k) = &self.issuer_key
            && [datadir::DB_DIR, datadir::CACHE_DIR, datadir::INIT_DIR]
                .iter()
                .any(|own| k.starts_with(self.dir.join(own)))
        {
            return Err(Error::Issuer(format!(
                "the issuer key `{}` cannot be kept inside keygate's own folders of the data directory (db, cache, init.tmp)",
                k.display()
            )));
        }
        Ok(())
    }
}

/// An open keygate: the locked data directory, the store, the issuer key and
/// an instance of the component.
pub struct Keygate {
    store: Store,
    module: Module,
    runtime: Runtime,
    /// What this process wrote, when asked to keep it (the service).
    written: Option<write::Kept>,
    /// Who acts, as audit events name them.
    actor: Option<String>,
    issuer: Issuer,
    prefix: String,
    /// Set when this call initialised the store: where its issuer key came
    /// from (so a failed first command removes a key it generated).
    created: Option<NewIssuer>,
    cache: CacheOutcome,
    // Dropped last: the lock outlives the store.
    dir: DataDir,
}

/// Where the issuer key of a store initialised by this call came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewIssuer {
    /// Generated into the data directory.
    GeneratedHere,
    /// Generated at this path outside the data directory.
    GeneratedAt(PathBuf),
    /// An existing key file was used: one left by an interrupted init in the
    /// data directory, or the operator's own file outside it.
    Existing(PathBuf),
}

/// The platform's default data directory: `<user data dir>/keygate`.
pub fn default_data_dir() -> Option<PathBuf> {
    dirs::data_dir().map(|d| d.join("keygate"))
}

/// Seconds since the epoch, now; an error (never 0) if the clock cannot be read.
pub fn now() -> Result<u64> {
    unix_seconds(std::time::SystemTime::now())
}

/// Seconds since the epoch of `t`; before 1970 is a clock error.
pub fn unix_seconds(t: std::time::SystemTime) -> Result<u64> {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| Error::Clock("it reads a time before 1970".into()))
}

fn random<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b)
        .map_err(|e| Error::System(format!("the OS random source failed: {e}")))?;
    Ok(b)
}

impl Keygate {
    /// Open the store at `loc`. With `create`, a missing or empty directory
    /// is initialised with the default prefix ([`Keygate::created`] then says so).
    pub fn open(loc: &Location, create: bool) -> Result<Keygate> {
        loc.check()?;
        let dir = DataDir::lock(&loc.dir, create)?;
        match dir.state()? {
            DirState::Store => {}
            DirState::Missing | DirState::Empty if create => {
                return Self::init_in(dir, loc, DEFAULT_PREFIX);
            }
            DirState::Missing | DirState::Empty => return Err(Error::NoStore(loc.dir.clone())),
            DirState::Foreign => return Err(Error::Foreign(loc.dir.clone())),
        }
        let secret = IssuerSecret::load(&loc.issuer_path()).map_err(|e| {
            match (&loc.issuer_key, e) {
                (None, Error::Issuer(msg)) if !loc.issuer_path().exists() => Error::Issuer(format!(
                    "{msg}; if this store's issuer key is kept outside the data directory, give its path"
                )),
                (_, e) => e,
            }
        })?;
        let store = Store::open(&dir)?;
        Self::assemble(dir, loc, store, secret)
    }

    /// An open store with its component instance and checked issuer: the
    /// issuer key must be the one the store was created with.
    fn assemble(
        dir: DataDir,
        loc: &Location,
        store: Store,
        secret: IssuerSecret,
    ) -> Result<Keygate> {
        let (runtime, cache) =
            Runtime::cached(&loc.dir.join(datadir::CACHE_DIR), secret.cache_key())?;
        let mut module = runtime.instantiate()?;
        let issuer = Issuer::new(secret, &mut module)?;
        if store.issuer_id()? != issuer.id() {
            return Err(Error::Issuer(format!(
                "`{}` is not the issuer key this store was created with (store issuer {}, file issuer {})",
                loc.issuer_path().display(),
                store.issuer_id()?,
                issuer.id()
            )));
        }
        let prefix = store.prefix()?;
        Ok(Keygate {
            store,
            module,
            runtime,
            written: None,
            actor: None,
            issuer,
            prefix,
            created: None,
            cache,
            dir,
        })
    }

    /// Initialise a new store in a missing or empty directory.
    pub fn init(loc: &Location, prefix: &str) -> Result<Keygate> {
        loc.check()?;
        let dir = DataDir::lock(&loc.dir, true)?;
        match dir.state()? {
            DirState::Missing | DirState::Empty => Self::init_in(dir, loc, prefix),
            DirState::Store => Err(Error::AlreadyInitialised(loc.dir.clone())),
            DirState::Foreign => Err(Error::Foreign(loc.dir.clone())),
        }
    }

    /// Build the store in `init.tmp/`, then move it into place with one
    /// rename of `db/` (after the issuer key, if that is new and kept here).
    fn init_in(dir: DataDir, loc: &Location, prefix: &str) -> Result<Keygate> {
        let issuer_path = loc.issuer_path();
        // An issuer key already there is kept: one left by an interrupted
        // init (no record was ever signed with it), or one the operator keeps
        // outside the data directory. A new one stays in memory until the
        // prefix has been checked.
        let (secret, new_issuer) = if issuer_path.exists() {
            match IssuerSecret::load(&issuer_path) {
                Ok(s) => (s, NewIssuer::Existing(issuer_path)),
                Err(e) => {
                    dir.abandon_init(false);
                    return Err(e);
                }
            }
        } else {
            let new = match loc.issuer_key {
                Some(_) => NewIssuer::GeneratedAt(issuer_path),
                None => NewIssuer::GeneratedHere,
            };
            match IssuerSecret::random() {
                Ok(s) => (s, new),
                Err(e) => {
                    dir.abandon_init(false);
                    return Err(e);
                }
            }
        };
        let mut wrote_external = None;
        match Self::build_new(dir, loc, prefix, secret, new_issuer, &mut wrote_external) {
            Ok(kg) => Ok(kg),
            Err((dir, e)) => {
                // Leave the directory, and an issuer key path outside it, as
                // they were found.
                if let Some(path) = wrote_external {
                    let _ = std::fs::remove_file(&path);
                }
                if let Some(dir) = dir {
                    dir.abandon_init(true);
                }
                Err(e)
            }
        }
    }

    /// The steps of [`Keygate::init_in`] after the issuer secret is known;
    /// on failure, hands the locked directory back for cleaning up.
    fn build_new(
        dir: DataDir,
        loc: &Location,
        prefix: &str,
        secret: IssuerSecret,
        new_issuer: NewIssuer,
        wrote_external: &mut Option<PathBuf>,
    ) -> std::result::Result<Keygate, (Option<DataDir>, Error)> {
        macro_rules! or_return {
            ($dir:expr, $e:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(e) => return Err((Some($dir), e.into())),
                }
            };
        }
        let at = or_return!(dir, now());
        let init = or_return!(dir, dir.fresh_init_dir());
        let (runtime, cache) = or_return!(
            dir,
            Runtime::cached(&loc.dir.join(datadir::CACHE_DIR), secret.cache_key())
        );
        let mut module = or_return!(dir, runtime.instantiate());
        if or_return!(dir, module.make_key(prefix, &[0; 40])).is_err() {
            return Err((Some(dir), Error::BadPrefix(prefix.to_string())));
        }
        if prefix == tokens::TOKEN_PREFIX {
            // API keys must never look like the service's admin tokens.
            return Err((Some(dir), Error::ReservedPrefix(prefix.to_string())));
        }
        match &new_issuer {
            NewIssuer::GeneratedAt(path) => {
                or_return!(dir, secret.write_new(path));
                *wrote_external = Some(path.clone());
            }
            NewIssuer::GeneratedHere => {
                or_return!(dir, secret.write_new(&init.join(issuer::FILE)));
            }
            NewIssuer::Existing(_) => {}
        }
        let generated = new_issuer == NewIssuer::GeneratedHere;
        let issuer = or_return!(dir, Issuer::new(secret, &mut module));
        let store = or_return!(
            dir,
            Store::create(
                &loc.dir,
                &init.join(datadir::DB_DIR),
                prefix,
                issuer.id(),
                at
            )
        );
        let mut kg = Keygate {
            store,
            module,
            runtime,
            written: None,
            actor: None,
            issuer,
            prefix: prefix.to_string(),
            created: Some(new_issuer),
            cache,
            dir,
        };
        let issuer_id = kg.issuer.id().to_string();
        let first = kg.apply(write::Change {
            audit: vec![event(
                at,
                "init",
                None,
                &issuer_id,
                Some(format!("prefix {prefix}")),
            )],
            ..write::Change::default()
        });
        // Close the new database, then put it in place.
        let Keygate {
            store,
            module,
            runtime,
            written: _,
            actor: _,
            issuer,
            prefix,
            created,
            cache,
            dir,
        } = kg;
        drop(store);
        or_return!(dir, first);
        if generated {
            or_return!(dir, dir.install(&init.join(issuer::FILE), issuer::FILE));
        }
        if let Err(e) = dir.install(&init.join(datadir::DB_DIR), datadir::DB_DIR) {
            if generated {
                let _ = std::fs::remove_file(dir.path().join(issuer::FILE));
            }
            return Err((Some(dir), e));
        }
        let store = match Store::open(&dir) {
            Ok(s) => s,
            // The store is in place: it is not taken apart here.
            Err(e) => return Err((None, e)),
        };
        Ok(Keygate {
            store,
            module,
            runtime,
            written: None,
            actor: None,
            issuer,
            prefix,
            created,
            cache,
            dir,
        })
    }

    /// Tell local commands refused by the lock that a service at `url`
    /// holds this store.
    pub fn announce_server(&self, url: &str) -> Result<()> {
        self.dir.announce(url)
    }

    /// Another instance of the component this store runs (compiled once):
    /// for validators that serve requests beside the admin instance.
    pub fn new_module(&self) -> Result<Module> {
        Ok(self.runtime.instantiate()?)
    }

    /// Whether this call initialised the store.
    pub fn created(&self) -> bool {
        self.created.is_some()
    }

    /// Where the issuer key came from, when this call initialised the store.
    pub fn new_issuer(&self) -> Option<&NewIssuer> {
        self.created.as_ref()
    }

    /// Undo a store this process just initialised (after a failed command),
    /// leaving the directory, and an issuer key path outside it, as they were
    /// found.
    pub fn discard_if_created(self) {
        if let Some(new_issuer) = self.created {
            let Keygate { store, dir, .. } = self;
            drop(store);
            if let NewIssuer::GeneratedAt(path) = &new_issuer {
                let _ = std::fs::remove_file(path);
                if let Some(parent) = path.parent() {
                    let _ = issuer::sync_dir(parent);
                }
            }
            dir.discard_new_store(new_issuer == NewIssuer::GeneratedHere);
        }
    }

    /// What happened to the compiled-code cache when this store was opened
    /// (a refused file means someone else wrote it: the caller should warn).
    pub fn cache_outcome(&self) -> &CacheOutcome {
        &self.cache
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The deployment key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The issuer key.
    pub fn issuer(&self) -> &Issuer {
        &self.issuer
    }

    /// The store, for reading.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The admin write sequence number.
    pub fn sequence(&self) -> Result<u64> {
        self.store.sequence()
    }

    /// The component instance, for callers that want the raw policy calls.
    pub fn module(&mut self) -> &mut Module {
        &mut self.module
    }

    pub(crate) fn trusted(&self) -> [IssuerKey; 1] {
        [self.issuer.trusted()]
    }

    /// Verify a stored signed fact with the component and decode it; a fact
    /// that fails, or that names another id than the one it is stored under,
    /// is [`Error::Tampered`].
    fn open_signed(
        &mut self,
        kind: &'static str,
        id: &str,
        signed: &SignedRecord,
    ) -> Result<SignedBody> {
        let trusted = self.trusted();
        let tampered = || Error::Tampered {
            kind,
            id: id.to_string(),
        };
        let body = match self.module.open(signed, &trusted)? {
            Ok(b) => b,
            Err(LoadError::SignatureInvalid | LoadError::NotCanonical | LoadError::Forgotten) => {
                return Err(tampered());
            }
        };
        if names(&body, kind, id) {
            Ok(body)
        } else {
            Err(tampered())
        }
    }

    /// A policy error from the component, with its code and message.
    fn policy(&mut self, e: RecordError) -> Error {
        match self.module.record_error_text(&e) {
            Ok(t) => Error::Policy {
                code: t.code,
                message: t.message,
            },
            Err(e) => Error::Runtime(e),
        }
    }

    /// The scope with this name, asked of the component.
    pub fn scope(&mut self, name: &str) -> Result<Scope> {
        self.refuse_key_like(&[name])?;
        if let Some(s) = self.module.scope_named(name)? {
            return Ok(s);
        }
        let mut known = Vec::new();
        for s in self.module.scopes()? {
            known.push(self.module.scope_name(s)?);
        }
        Err(Error::UnknownScope {
            name: name.to_string(),
            known: known.join(", "),
        })
    }

    /// Refuse, without echoing it, any text that looks like an API key or
    /// an admin token (the component's `looks-like-key`): names, ids and
    /// organizations end up in signed records, listings, the audit log and
    /// error messages, where no secret may go.
    pub(crate) fn refuse_key_like(&mut self, texts: &[&str]) -> Result<()> {
        for t in texts {
            if self.module.looks_like_key(t, Some(&self.prefix))?
                || self.module.looks_like_key(t, Some(tokens::TOKEN_PREFIX))?
            {
                return Err(Error::KeyLooking);
            }
        }
        Ok(())
    }

    /// The name of a scope, from the component.
    pub fn scope_name(&mut self, scope: Scope) -> Result<String> {
        Ok(self.module.scope_name(scope)?)
    }

    /// Audit events, oldest first, optionally of one organization.
    pub fn audit(&mut self, organization: Option<&str>) -> Result<Vec<AuditEvent>> {
        if let Some(org) = organization {
            self.organization(org)?;
        }
        Ok(self
            .store
            .audit()?
            .into_iter()
            .filter(|e| organization.is_none() || e.organization.as_deref() == organization)
            .collect())
    }
}

/// Kinds of signed facts, as named in messages.
pub(crate) const KEY_RECORD: &str = "key record";
/// See [`KEY_RECORD`].
pub(crate) const PROJECT_REGISTRATION: &str = "project registration";
/// See [`KEY_RECORD`].
pub(crate) const KEY_TOMBSTONE: &str = "key tombstone";
pub(crate) const ORGANIZATION: &str = "organization";

/// Whether a fact is of `kind` and names `id` (a value stored under the
/// wrong id or tree is caught this way).
fn names(body: &SignedBody, kind: &str, id: &str) -> bool {
    match body {
        SignedBody::Key(r) => r.id == id && kind == KEY_RECORD,
        SignedBody::Project(p) => p.id == id && kind == PROJECT_REGISTRATION,
        SignedBody::Tombstone(t) => t.id == id && kind == KEY_TOMBSTONE,
        SignedBody::Organization(o) => o.slug == id && kind == ORGANIZATION,
    }
}

fn event(
    at: u64,
    action: &str,
    organization: Option<&str>,
    subject: &str,
    detail: Option<String>,
) -> AuditEvent {
    AuditEvent {
        sequence: 0,
        at,
        action: action.to_string(),
        organization: organization.map(str::to_string),
        subject: subject.to_string(),
        detail,
        actor: None,
        chain: None,
    }
}

/// What `audit verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCheck {
    /// Events whose link verified.
    pub chained: usize,
    /// Events written before the chain existed (only ever at the start).
    pub older: usize,
}

impl Keygate {
    /// Record that keys allowed requests (key id, time). Display only: a
    /// use already recorded less than a minute before is not written again.
    pub fn record_uses(&mut self, uses: &[(String, u64)]) -> Result<()> {
        let mut fresh = Vec::new();
        for (id, at) in uses {
            if self
                .store
                .last_used(id)?
                .is_none_or(|last| at.saturating_sub(last) >= 60)
            {
                fresh.push((id.clone(), *at));
            }
        }
        if fresh.is_empty() {
            return Ok(());
        }
        self.store.record_uses(&fresh)
    }

    /// Name who acts in the audit events this instance writes.
    pub fn set_actor(&mut self, actor: impl Into<String>) {
        self.actor = Some(actor.into());
    }

    /// Stamp the audit events of a batch with their sequence numbers, the
    /// actor and their chain links, then commit it. Only this process
    /// writes (keygate's lock), so the sequences the store will give are
    /// known; the store refuses the batch if they are not.
    pub(crate) fn commit_batch(&mut self, mut batch: crate::store::Batch) -> Result<u64> {
        let mut seq = self.store.sequence()?;
        let mut prev = self
            .store
            .last_audit()?
            .and_then(|e| e.chain)
            .unwrap_or_default();
        for ev in &mut batch.audit {
            seq += 1;
            ev.sequence = seq;
            if ev.actor.is_none() {
                ev.actor.clone_from(&self.actor);
            }
            ev.chain = None;
            let link = self
                .issuer
                .audit_link(&prev, &crate::schema::encode_json(ev));
            ev.chain = Some(link.clone());
            prev = link;
        }
        let issuer = &self.issuer;
        self.store.commit(batch, &|kind, id, seq, value| {
            issuer.change_tag(kind, id, seq, value)
        })
    }

    /// Check the audit log's chain: every event after the first chained one
    /// must carry the link the issuer secret gives. An edited event, or one
    /// removed from the middle, is found (the error names its sequence).
    pub fn verify_audit(&mut self) -> Result<AuditCheck> {
        use subtle::ConstantTimeEq;
        let mut check = AuditCheck {
            chained: 0,
            older: 0,
        };
        let mut prev = String::new();
        for ev in self.store.audit()? {
            let Some(link) = ev.chain.clone() else {
                if check.chained == 0 {
                    check.older += 1;
                    continue;
                }
                return Err(Error::AuditBroken(ev.sequence));
            };
            let mut bare = ev.clone();
            bare.chain = None;
            let expected = self
                .issuer
                .audit_link(&prev, &crate::schema::encode_json(&bare));
            if !bool::from(expected.as_bytes().ct_eq(link.as_bytes())) {
                return Err(Error::AuditBroken(ev.sequence));
            }
            check.chained += 1;
            prev = link;
        }
        Ok(check)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn a_clock_before_1970_is_an_error_never_time_zero() {
        let before = UNIX_EPOCH - Duration::from_secs(1);
        match unix_seconds(before) {
            Err(Error::Clock(why)) => assert!(why.contains("before 1970")),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            unix_seconds(UNIX_EPOCH + Duration::from_secs(7)).unwrap(),
            7
        );
        assert!(now().unwrap() > 1_700_000_000);
    }
}
