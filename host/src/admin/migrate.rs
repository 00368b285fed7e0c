//! Migration of a store written by keygate 0.1 (schema 1). Its key records
//! are already signed in today's format; its project registry and key
//! deletions were unsigned JSON. Migration signs them as they stand, in one
//! transaction that also sets schema 2: whoever runs it vouches for the
//! registry as it is at that moment.

use serde::Deserialize;

use crate::datadir::{DataDir, DirState};
use crate::error::{Error, Result};
use crate::issuer::IssuerSecret;
use crate::runtime::bindings::Tombstone;
use crate::schema::{self, SCHEMA_VERSION};
use crate::store::Store;

use super::write::Change;
use super::{Keygate, Location, event, now};

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

/// What a migration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// The schema version found.
    pub from: u32,
    /// Project registrations signed (deleted ones included).
    pub projects: usize,
    /// Of which deleted.
    pub deleted_projects: usize,
    /// Key tombstones signed.
    pub tombstones: usize,
}

impl Keygate {
    /// Migrate the store at `loc` to the current schema. A store already at
    /// the current schema is left alone (`from` says so).
    pub fn migrate(loc: &Location) -> Result<Migrated> {
        let dir = DataDir::lock(&loc.dir, false)?;
        match dir.state()? {
            DirState::Store => {}
            DirState::Foreign => return Err(Error::Foreign(loc.dir.clone())),
            DirState::Missing | DirState::Empty => return Err(Error::NoStore(loc.dir.clone())),
        }
        let secret = IssuerSecret::load(&loc.issuer_path())?;
        let store = Store::open_any(&dir)?;
        let from = store.schema()?;
        if from == SCHEMA_VERSION {
            return Ok(Migrated {
                from,
                projects: 0,
                deleted_projects: 0,
                tombstones: 0,
            });
        }
        if from != 1 {
            return Err(Error::Corrupt {
                path: loc.dir.clone(),
                why: format!("schema version {from} cannot be migrated by this keygate"),
            });
        }
        let mut kg = Keygate::assemble(dir, loc, store, secret)?;
        kg.migrate_v1(now()?)
    }

    fn migrate_v1(&mut self, at: u64) -> Result<Migrated> {
        let path = self.dir().to_path_buf();
        let damaged = |what: String| Error::Corrupt {
            path: path.clone(),
            why: format!("{what} cannot be migrated: it is damaged"),
        };
        let mut change = Change::default();
        let mut deleted_projects = 0;
        for (key, value) in self.store.raw(crate::schema::tree::PROJECTS)? {
            let p: ProjectV1 = schema::decode_json(&value)
                .filter(|p: &ProjectV1| p.id.as_bytes() == key.as_slice())
                .ok_or_else(|| damaged(format!("project `{}`", String::from_utf8_lossy(&key))))?;
            let mut reg =
                match self
                    .module
                    .register_project(&p.id, &p.organization, &p.name, p.created_at)?
                {
                    Ok(r) => r,
                    Err(e) => return Err(self.policy(e)),
                };
            if let Some(d) = p.deleted_at {
                reg = match self.module.delete_project(&reg, d)? {
                    Ok(r) => r,
                    Err(e) => return Err(self.policy(e)),
                };
                deleted_projects += 1;
            }
            change.projects.push(reg);
        }
        for (key, value) in self.store.raw(crate::schema::tree::DELETED_KEYS)? {
            let d: DeletedKeyV1 = schema::decode_json(&value)
                .filter(|d: &DeletedKeyV1| d.id.as_bytes() == key.as_slice())
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
        let migrated = Migrated {
            from: 1,
            projects: change.projects.len(),
            deleted_projects,
            tombstones: change.tombstones.len(),
        };
        change.audit.push(event(
            at,
            "store.migrate",
            None,
            &format!("schema {SCHEMA_VERSION}"),
            Some(format!(
                "from schema 1: {} project registrations and {} key tombstones signed",
                migrated.projects, migrated.tombstones
            )),
        ));
        change.schema = Some(SCHEMA_VERSION);
        self.apply(change)?;
        Ok(migrated)
    }
}
