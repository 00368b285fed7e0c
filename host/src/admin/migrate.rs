//! Migration of a store written by an older keygate. Schema 1 (keygate
//! 0.1): key records already signed in today's format, the project registry
//! and key deletions unsigned JSON. Schema 2: organizations were only the
//! strings that keys and projects named. Migration signs the registry and
//! deletions as they stand (from 1) and registers every organization that a
//! verified fact names, with no key policy (from 1 or 2), in one
//! transaction that also sets the current schema: whoever runs it vouches
//! for the registry as it is at that moment. Nothing in a 0.1 store can tell it
//! apart from a current store that a writer of the data directory rewrote in
//! the 0.1 layout, so migration first shows what it would sign and signs only
//! when asked again (`apply`).

use serde::Deserialize;

use crate::datadir::{DataDir, DirState};
use crate::error::{Error, Result};
use crate::issuer::IssuerSecret;
use crate::runtime::bindings::Tombstone;
use crate::schema::{self, SCHEMA_VERSION};
use crate::store::Store;

use super::views::ProjectView;
use super::write::Change;
use super::{KEY_RECORD, KEY_TOMBSTONE, Keygate, Location, PROJECT_REGISTRATION, event, now};
use crate::runtime::bindings::SignedBody;

/// A project as schema 1 stored it (`1` + JSON).
#[derive(Debug, Deserialize)]
struct ProjectV1 {
    id: String,
    organization: String,
    name: String,
    created_at: u64,
    deleted_at: Option<u64>,
}

/// A deleted key as schema 1 stored it (`1` + JSON).
#[derive(Debug, Deserialize)]
struct DeletedKeyV1 {
    id: String,
    organization: String,
    deleted_at: u64,
    last_version: u64,
}

/// What a migration signs (or signed, when applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// The schema version found.
    pub from: u32,
    /// Whether it was applied (signed and committed).
    pub applied: bool,
    /// The project registrations to sign (deleted ones included).
    pub projects: Vec<ProjectView>,
    /// The ids of the deleted keys whose tombstones are signed.
    pub tombstones: Vec<String>,
    /// The organizations registered (slugs named by verified facts).
    pub organizations: Vec<String>,
    /// How many live keys are listed under their organization (schema 4's
    /// `keys_by_org`, made from the records that verify).
    pub listed_keys: usize,
}

impl Keygate {
    /// Migrate the store at `loc` to the current schema: with `apply`, sign
    /// and commit; without, only say what would be signed. A store already
    /// at the current schema is left alone (`from` says so).
    pub fn migrate(loc: &Location, apply: bool) -> Result<Migrated> {
        loc.check()?;
        let dir = DataDir::lock(&loc.dir, false)?;
        match dir.state()? {
            DirState::Store => {}
            DirState::Foreign => return Err(Error::Foreign(loc.dir.clone())),
            DirState::Missing | DirState::Empty => return Err(Error::NoStore(loc.dir.clone())),
        }
        let store = Store::open_any(&dir)?;
        let from = store.schema()?;
        if from == SCHEMA_VERSION {
            return Ok(Migrated {
                from,
                applied: false,
                projects: Vec::new(),
                tombstones: Vec::new(),
                organizations: Vec::new(),
                listed_keys: 0,
            });
        }
        if !(1..=3).contains(&from) {
            return Err(Error::Corrupt {
                path: loc.dir.clone(),
                why: format!("schema version {from} cannot be migrated by this keygate"),
            });
        }
        let secret = IssuerSecret::load(&loc.issuer_path())?;
        let mut kg = Keygate::assemble(dir, loc, store, secret)?;
        kg.migrate_from(from, now()?, apply)
    }

    fn migrate_from(&mut self, from: u32, at: u64, apply: bool) -> Result<Migrated> {
        let mut change = Change::default();
        if from <= 2 {
            self.register_named_organizations(from, at, &mut change)?;
        }
        // Schema 4: each live key listed under the organization its
        // verified record names (an unverified record is no live key).
        for (id, signed) in self.store.keys()? {
            if self.store.is_deleted(&id)? {
                continue;
            }
            if let Ok(SignedBody::Key(r)) = self.open_signed(KEY_RECORD, &id, &signed) {
                change.index.push((r.organization, id));
            }
        }
        let migrated = Migrated {
            from,
            applied: apply,
            projects: change
                .projects
                .iter()
                .cloned()
                .map(ProjectView::from)
                .collect(),
            tombstones: change.tombstones.iter().map(|t| t.id.clone()).collect(),
            organizations: change
                .organizations
                .iter()
                .map(|o| o.slug.clone())
                .collect(),
            listed_keys: change.index.len(),
        };
        if !apply {
            return Ok(migrated);
        }
        change.audit.push(event(
            at,
            "store.migrate",
            None,
            &format!("schema {SCHEMA_VERSION}"),
            Some(format!(
                "from schema {from}: {} project registrations, {} key tombstones and {} organizations signed; {} keys listed under their organizations",
                migrated.projects.len(),
                migrated.tombstones.len(),
                migrated.organizations.len(),
                migrated.listed_keys
            )),
        ));
        change.schema = Some(SCHEMA_VERSION);
        self.apply(change)?;
        Ok(migrated)
    }

    /// Schema 1 or 2: sign the registry and deletions (from 1) and register
    /// every organization a verified fact names.
    fn register_named_organizations(
        &mut self,
        from: u32,
        at: u64,
        change: &mut Change,
    ) -> Result<()> {
        self.refuse_newer_traces(from)?;
        if from == 1 {
            self.sign_v1_registry(change)?;
        }
        // Every organization a verified fact names: the registry being
        // signed (from 1) or already signed (from 2), and the key records.
        // An unverified fact vouches for nothing and is skipped.
        // Each is registered as of its oldest fact: a key or project older
        // than its organization is denied (it would belong to an earlier
        // organization of the same slug).
        let mut slugs = std::collections::BTreeMap::<String, u64>::new();
        let mut named = |slug: String, since: u64| {
            let e = slugs.entry(slug).or_insert(since);
            *e = (*e).min(since);
        };
        for p in &change.projects {
            named(p.organization.clone(), p.created_at);
        }
        for t in &change.tombstones {
            if let Some(o) = &t.organization {
                named(o.clone(), t.deleted_at);
            }
        }
        if from == 2 {
            for (id, signed) in self.store.projects()? {
                if let Ok(SignedBody::Project(p)) =
                    self.open_signed(PROJECT_REGISTRATION, &id, &signed)
                {
                    named(p.organization, p.created_at);
                }
            }
            for (id, signed) in self.store.tombstones()? {
                if let Ok(SignedBody::Tombstone(t)) = self.open_signed(KEY_TOMBSTONE, &id, &signed)
                    && let Some(o) = t.organization
                {
                    named(o, t.deleted_at);
                }
            }
        }
        for (id, signed) in self.store.keys()? {
            if let Ok(SignedBody::Key(r)) = self.open_signed(KEY_RECORD, &id, &signed) {
                named(r.organization, r.created_at);
            }
        }
        for (slug, since) in slugs {
            if self.store.organization(&slug)?.is_some() {
                continue;
            }
            match self
                .module
                .register_organization(&slug, &slug, since.min(at))?
            {
                Ok(o) => change.organizations.push(o),
                Err(e) => {
                    return Err(in_migration(
                        format!("organization `{slug}`"),
                        self.policy(e),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Refuse a store that a keygate of the current schema wrote, made to
    /// look older (its schema number lowered and its organization records
    /// removed, to have them registered again without their key policy):
    /// an older store never held an organization record, a change of one,
    /// or an `org.` audit event, and its audit chain verifies (an event
    /// removed from the middle breaks it).
    fn refuse_newer_traces(&mut self, from: u32) -> Result<()> {
        let path = self.dir().to_path_buf();
        let refuse = |what: &str| Error::Corrupt {
            path: path.clone(),
            why: format!(
                "it says schema {from}, but {what}, which only a keygate of schema 3 or later writes: it was not written by an older keygate, and migrating it would register organizations without their key policy; restore the store from a backup"
            ),
        };
        if !self.store.organizations()?.is_empty() {
            return Err(refuse("it holds organization records"));
        }
        if self.store.any_change_of(schema::change::ORGANIZATION)? {
            return Err(refuse("it records changes of organizations"));
        }
        match self.verify_audit() {
            Ok(_) => {}
            Err(Error::AuditBroken(seq)) => {
                return Err(refuse(&format!(
                    "its audit log does not verify at event {seq}"
                )));
            }
            Err(e) => return Err(e),
        }
        if self.store.audit()?.iter().any(|e| {
            e.action.starts_with("org.")
                || (3..=SCHEMA_VERSION).any(|v| e.subject == format!("schema {v}"))
        }) {
            return Err(refuse("its audit log records organizations"));
        }
        Ok(())
    }

    /// Schema 1's unsigned registry and deletions, as facts to sign.
    fn sign_v1_registry(&mut self, change: &mut Change) -> Result<()> {
        let path = self.dir().to_path_buf();
        let damaged = |what: String| Error::Corrupt {
            path: path.clone(),
            why: format!("{what} cannot be migrated: it is damaged"),
        };
        for (key, value) in self.store.raw(crate::schema::tree::PROJECTS)? {
            let what = || format!("project `{}`", String::from_utf8_lossy(&key));
            let p: ProjectV1 = schema::decode_json(&value)
                .filter(|p: &ProjectV1| {
                    p.id.as_bytes() == key.as_slice() && schema::is_project_id(&key)
                })
                .ok_or_else(|| damaged(what()))?;
            let mut reg =
                match self
                    .module
                    .register_project(&p.id, &p.organization, &p.name, p.created_at)?
                {
                    Ok(r) => r,
                    Err(e) => return Err(in_migration(what(), self.policy(e))),
                };
            if let Some(d) = p.deleted_at {
                reg = match self.module.delete_project(&reg, d)? {
                    Ok(r) => r,
                    Err(e) => return Err(in_migration(what(), self.policy(e))),
                };
            }
            change.projects.push(reg);
        }
        for (key, value) in self.store.raw(crate::schema::tree::DELETED_KEYS)? {
            let d: DeletedKeyV1 = schema::decode_json(&value)
                .filter(|d: &DeletedKeyV1| {
                    d.id.as_bytes() == key.as_slice() && schema::is_key_id(&key)
                })
                .ok_or_else(|| {
                    damaged(format!("deleted key `{}`", String::from_utf8_lossy(&key)))
                })?;
            // Checked (and refused if it breaks a rule) when encoded.
            change.tombstones.push(Tombstone {
                id: d.id,
                organization: Some(d.organization).filter(|o| !o.is_empty()),
                deleted_at: d.deleted_at,
                last_version: d.last_version,
            });
        }
        Ok(())
    }
}

/// A policy error met while migrating, naming what it was met on.
fn in_migration(what: String, e: Error) -> Error {
    match e {
        Error::Policy { code, message } => Error::Policy {
            code,
            message: format!("{what} cannot be migrated: {message}"),
        },
        other => other,
    }
}
