//! Signed facts besides key records: project registrations and key
//! tombstones. Each has one canonical encoding, distinguished from the others
//! by its magic bytes, so a signature over one kind can never be read as
//! another.
//!
//! # Project registration, format 1
//!
//! | # | field        | encoding                                             |
//! |---|--------------|------------------------------------------------------|
//! | 0 | magic        | the 3 bytes `KGP`                                    |
//! | 1 | format       | `u8` = 1                                             |
//! | 2 | id           | `str`, project id (1–64 of `A-Za-z0-9_-`)            |
//! | 3 | organization | `str`, slug                                          |
//! | 4 | name         | `str` (trimmed, 1–100 characters, no control or invisible character) |
//! | 5 | created-at   | `u64`                                                |
//! | 6 | deleted-at   | `opt<u64>`, at or after `created-at`                 |
//! | 7 | version      | `u64` ≥ 1, +1 on every change                        |
//!
//! # Key tombstone, format 1
//!
//! | # | field        | encoding                                             |
//! |---|--------------|------------------------------------------------------|
//! | 0 | magic        | the 3 bytes `KGT`                                    |
//! | 1 | format       | `u8` = 1                                             |
//! | 2 | id           | `str`, key id (11 base62 characters)                 |
//! | 3 | organization | `opt<str>`, slug (absent when the record was unreadable) |
//! | 4 | deleted-at   | `u64`                                                |
//! | 5 | last-version | `u64`, the last record version (0 when unreadable)   |
//!
//! `str`, `opt` and integers are encoded as in [`crate::record`]. Decoding
//! accepts exactly what encoding produces.

use alloc::string::String;
use alloc::vec::Vec;

use crate::key::valid_key_id;
use crate::record::{
    FORMAT_VERSION, KeyRecord, Reader, RecordError, check_name, put_opt, put_str,
    valid_organization, valid_project_id,
};

/// First bytes of a canonical project registration.
pub const PROJECT_MAGIC: &[u8; 3] = b"KGP";
/// First bytes of a canonical key tombstone.
pub const TOMBSTONE_MAGIC: &[u8; 3] = b"KGT";

/// A project of an organization, as registered by the issuer. A deleted
/// project stays registered (ids are never reused), marked deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectRegistration {
    /// Project id.
    pub id: String,
    /// Owning organization slug.
    pub organization: String,
    /// Label.
    pub name: String,
    /// Registration time.
    pub created_at: u64,
    /// Deletion time, once deleted.
    pub deleted_at: Option<u64>,
    /// Version, from 1.
    pub version: u64,
}

/// What remains of a deleted key: its id can never validate again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tombstone {
    /// The deleted key's id.
    pub id: String,
    /// Its organization, when its record could be read.
    pub organization: Option<String>,
    /// Deletion time.
    pub deleted_at: u64,
    /// The last record version (0 when the record could not be read).
    pub last_version: u64,
}

/// Any signed fact, told apart by its magic bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// A key record.
    Key(KeyRecord),
    /// A project registration.
    Project(ProjectRegistration),
    /// A key tombstone.
    Tombstone(Tombstone),
}

impl Body {
    /// The canonical bytes of this fact, after checking its rules.
    pub fn encode(&self) -> Result<Vec<u8>, RecordError> {
        match self {
            Body::Key(r) => r.encode(),
            Body::Project(p) => p.encode(),
            Body::Tombstone(t) => t.encode(),
        }
    }

    /// Decode canonical bytes of any kind.
    pub fn decode(bytes: &[u8]) -> Result<Body, RecordError> {
        match bytes.get(..3) {
            Some(m) if m == crate::record::MAGIC => KeyRecord::decode(bytes).map(Body::Key),
            Some(m) if m == PROJECT_MAGIC => ProjectRegistration::decode(bytes).map(Body::Project),
            Some(m) if m == TOMBSTONE_MAGIC => Tombstone::decode(bytes).map(Body::Tombstone),
            _ => Err(RecordError::NotCanonical),
        }
    }
}

/// Register a project: check the organization, the id and the name, and
/// return the normalised version-1 registration (name trimmed).
pub fn register_project(
    id: &str,
    organization: &str,
    name: &str,
    now: u64,
) -> Result<ProjectRegistration, RecordError> {
    let reg = ProjectRegistration {
        id: String::from(id),
        organization: String::from(organization),
        name: String::from(name.trim()),
        created_at: now,
        deleted_at: None,
        version: 1,
    };
    // The untrimmed name decides between "empty" and "control character".
    if !valid_organization(organization) {
        return Err(RecordError::BadOrganization);
    }
    check_name(name)?;
    reg.check()?;
    Ok(reg)
}

impl ProjectRegistration {
    /// Whether the project was deleted.
    pub fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }

    /// The next version of this registration, deleted at `now`.
    pub fn delete(&self, now: u64) -> Result<ProjectRegistration, RecordError> {
        self.check()?;
        if self.is_deleted() {
            return Err(RecordError::ProjectDeleted);
        }
        let mut next = self.clone();
        next.deleted_at = Some(now.max(self.created_at));
        next.version = self.version.checked_add(1).ok_or(RecordError::BadVersion)?;
        Ok(next)
    }

    /// Check every rule a registration obeys.
    pub fn check(&self) -> Result<(), RecordError> {
        if !valid_project_id(&self.id) {
            return Err(RecordError::BadProjectId(self.id.clone()));
        }
        if !valid_organization(&self.organization) {
            return Err(RecordError::BadOrganization);
        }
        if check_name(&self.name)? != self.name {
            return Err(RecordError::NotCanonical);
        }
        if self.deleted_at.is_some_and(|d| d < self.created_at) {
            return Err(RecordError::NotCanonical);
        }
        if self.version == 0 {
            return Err(RecordError::BadVersion);
        }
        Ok(())
    }

    /// The canonical bytes, after checking the rules.
    pub fn encode(&self) -> Result<Vec<u8>, RecordError> {
        self.check()?;
        let mut out = Vec::with_capacity(64 + self.name.len());
        out.extend_from_slice(PROJECT_MAGIC);
        out.push(FORMAT_VERSION);
        put_str(&mut out, &self.id);
        put_str(&mut out, &self.organization);
        put_str(&mut out, &self.name);
        out.extend_from_slice(&self.created_at.to_be_bytes());
        put_opt(&mut out, self.deleted_at.as_ref(), |o, t| {
            o.extend_from_slice(&t.to_be_bytes())
        });
        out.extend_from_slice(&self.version.to_be_bytes());
        Ok(out)
    }

    /// Decode canonical bytes; refuses anything `encode` would not produce.
    pub fn decode(bytes: &[u8]) -> Result<ProjectRegistration, RecordError> {
        let mut r = Reader::new(bytes);
        if r.take(3)? != PROJECT_MAGIC || r.u8()? != FORMAT_VERSION {
            return Err(RecordError::NotCanonical);
        }
        let reg = ProjectRegistration {
            id: r.str()?,
            organization: r.str()?,
            name: r.str()?,
            created_at: r.u64()?,
            deleted_at: r.opt(|r| r.u64())?,
            version: r.u64()?,
        };
        if !r.done() {
            return Err(RecordError::NotCanonical);
        }
        reg.check()?;
        Ok(reg)
    }
}

/// The tombstone of a key deleted at `now`. `record` is its last record, when
/// it could be read; without one, only the id is kept.
pub fn make_tombstone(
    id: &str,
    record: Option<&KeyRecord>,
    now: u64,
) -> Result<Tombstone, RecordError> {
    if record.is_some_and(|r| r.id != id) {
        return Err(RecordError::BadKeyId);
    }
    let t = Tombstone {
        id: String::from(id),
        organization: record.map(|r| r.organization.clone()),
        deleted_at: now,
        last_version: record.map_or(0, |r| r.version),
    };
    t.check()?;
    Ok(t)
}

impl Tombstone {
    /// Check every rule a tombstone obeys.
    pub fn check(&self) -> Result<(), RecordError> {
        if !valid_key_id(&self.id) {
            return Err(RecordError::BadKeyId);
        }
        if self
            .organization
            .as_deref()
            .is_some_and(|o| !valid_organization(o))
        {
            return Err(RecordError::BadOrganization);
        }
        Ok(())
    }

    /// The canonical bytes, after checking the rules.
    pub fn encode(&self) -> Result<Vec<u8>, RecordError> {
        self.check()?;
        let mut out = Vec::with_capacity(48);
        out.extend_from_slice(TOMBSTONE_MAGIC);
        out.push(FORMAT_VERSION);
        put_str(&mut out, &self.id);
        put_opt(&mut out, self.organization.as_ref(), |o, s| put_str(o, s));
        out.extend_from_slice(&self.deleted_at.to_be_bytes());
        out.extend_from_slice(&self.last_version.to_be_bytes());
        Ok(out)
    }

    /// Decode canonical bytes; refuses anything `encode` would not produce.
    pub fn decode(bytes: &[u8]) -> Result<Tombstone, RecordError> {
        let mut r = Reader::new(bytes);
        if r.take(3)? != TOMBSTONE_MAGIC || r.u8()? != FORMAT_VERSION {
            return Err(RecordError::NotCanonical);
        }
        let t = Tombstone {
            id: r.str()?,
            organization: r.opt(|r| r.str())?,
            deleted_at: r.u64()?,
            last_version: r.u64()?,
        };
        if !r.done() {
            return Err(RecordError::NotCanonical);
        }
        t.check()?;
        Ok(t)
    }
}
