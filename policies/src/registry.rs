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
//! # Organization, format 1
//!
//! | # | field        | encoding                                             |
//! |---|--------------|------------------------------------------------------|
//! | 0 | magic        | the 3 bytes `KGO`                                    |
//! | 1 | format       | `u8` = 1                                             |
//! | 2 | slug         | `str`, organization slug                             |
//! | 3 | name         | `str` (trimmed, 1–100 characters, no control or invisible character) |
//! | 4 | key expiry   | `u8` 0 = optional; 1 = required; 2 = at most, then `u16` days (7–90) |
//! | 5 | created-at   | `u64`                                                |
//! | 6 | deleted-at   | `opt<u64>`, at or after `created-at`                 |
//! | 7 | version      | `u64` ≥ 1, +1 on every change                        |
//!
//! `str`, `opt` and integers are encoded as in [`crate::record`]. Decoding
//! accepts exactly what encoding produces.

use alloc::string::String;
use alloc::vec::Vec;

use crate::key::valid_key_id;
use crate::record::{
    DAY, ExpiryPolicy, FORMAT_VERSION, KeyRecord, MAX_EXPIRY_DAYS, MIN_EXPIRY_DAYS, Reader,
    RecordError, check_name, put_opt, put_str, valid_organization, valid_project_id,
};

/// First bytes of a canonical project registration.
pub const PROJECT_MAGIC: &[u8; 3] = b"KGP";
/// First bytes of a canonical key tombstone.
pub const TOMBSTONE_MAGIC: &[u8; 3] = b"KGT";
/// First bytes of a canonical organization.
pub const ORGANIZATION_MAGIC: &[u8; 3] = b"KGO";

/// What an organization demands of its keys' expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExpiryRule {
    /// Keys may never expire.
    #[default]
    Optional,
    /// Every key must expire (any allowed number of days).
    Required,
    /// Every key must expire at most this many days (7 to 90) after its
    /// creation.
    AtMost(u16),
}

/// An organization's rules for its keys. They hold at creation (a key that
/// breaks them is not made) and at use: a key whose lifetime (from its
/// creation to its `expires-at`) breaks the organization's current policy
/// is denied, as GitHub does for fine-grained tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyPolicy {
    /// The expiry rule.
    pub expiry: ExpiryRule,
}

impl KeyPolicy {
    /// Check the policy's own bounds.
    pub fn check(&self) -> Result<(), RecordError> {
        match self.expiry {
            ExpiryRule::AtMost(d) if !(MIN_EXPIRY_DAYS..=MAX_EXPIRY_DAYS).contains(&d) => {
                Err(RecordError::MaxExpiryOutOfRange(d))
            }
            _ => Ok(()),
        }
    }

    /// Whether a key with this creation time and `expires-at` keeps the
    /// policy: the one rule used at creation, rotation and every decision.
    pub fn permits(&self, created_at: u64, expires_at: Option<u64>) -> Result<(), RecordError> {
        match (self.expiry, expires_at) {
            (ExpiryRule::Optional, _) => Ok(()),
            (ExpiryRule::Required | ExpiryRule::AtMost(_), None) => {
                Err(RecordError::ExpiryRequired)
            }
            (ExpiryRule::Required, Some(_)) => Ok(()),
            (ExpiryRule::AtMost(d), Some(at)) => {
                if at.saturating_sub(created_at) > u64::from(d) * DAY {
                    Err(RecordError::ExpiryExceedsPolicy(d))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Whether a key created now with this expiry policy keeps the policy
    /// (for creation forms: the same rule as [`KeyPolicy::permits`]).
    pub fn permits_expiry(&self, expiry: ExpiryPolicy) -> Result<(), RecordError> {
        match expiry {
            ExpiryPolicy::Never => self.permits(0, None),
            ExpiryPolicy::Days(d) => self.permits(0, Some(u64::from(d) * DAY)),
        }
    }
}

/// An organization, as registered by the issuer, with its key policy. A
/// deleted organization stays registered (slugs are never reused), marked
/// deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    /// Slug.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Rules for its keys.
    pub key_policy: KeyPolicy,
    /// Registration time.
    pub created_at: u64,
    /// Deletion time, once deleted.
    pub deleted_at: Option<u64>,
    /// Version, from 1.
    pub version: u64,
}

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
    /// An organization.
    Organization(Organization),
}

impl Body {
    /// The canonical bytes of this fact, after checking its rules.
    pub fn encode(&self) -> Result<Vec<u8>, RecordError> {
        match self {
            Body::Key(r) => r.encode(),
            Body::Project(p) => p.encode(),
            Body::Tombstone(t) => t.encode(),
            Body::Organization(o) => o.encode(),
        }
    }

    /// Decode canonical bytes of any kind.
    pub fn decode(bytes: &[u8]) -> Result<Body, RecordError> {
        match bytes.get(..3) {
            Some(m) if m == crate::record::MAGIC => KeyRecord::decode(bytes).map(Body::Key),
            Some(m) if m == PROJECT_MAGIC => ProjectRegistration::decode(bytes).map(Body::Project),
            Some(m) if m == TOMBSTONE_MAGIC => Tombstone::decode(bytes).map(Body::Tombstone),
            Some(m) if m == ORGANIZATION_MAGIC => {
                Organization::decode(bytes).map(Body::Organization)
            }
            _ => Err(RecordError::NotCanonical),
        }
    }
}

/// The rules a registration's life obeys: deleted (if at all) not before
/// it was created, and a version from 1.
fn check_lifecycle(
    created_at: u64,
    deleted_at: Option<u64>,
    version: u64,
) -> Result<(), RecordError> {
    if deleted_at.is_some_and(|d| d < created_at) {
        return Err(RecordError::NotCanonical);
    }
    if version == 0 {
        return Err(RecordError::BadVersion);
    }
    Ok(())
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
        check_lifecycle(self.created_at, self.deleted_at, self.version)
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

/// Register an organization: check the slug and the name, and return the
/// normalised version-1 registration (name trimmed, no key policy).
pub fn register_organization(
    slug: &str,
    name: &str,
    now: u64,
) -> Result<Organization, RecordError> {
    if !valid_organization(slug) {
        return Err(RecordError::BadOrganization);
    }
    let org = Organization {
        slug: String::from(slug),
        name: String::from(check_name(name)?),
        key_policy: KeyPolicy::default(),
        created_at: now,
        deleted_at: None,
        version: 1,
    };
    org.check()?;
    Ok(org)
}

impl Organization {
    /// Whether the organization was deleted.
    pub fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }

    /// The next version, deleted at `now`.
    pub fn delete(&self, now: u64) -> Result<Organization, RecordError> {
        self.check()?;
        if self.is_deleted() {
            return Err(RecordError::OrganizationDeleted);
        }
        let mut next = self.clone();
        next.deleted_at = Some(now.max(self.created_at));
        next.version = self.version.checked_add(1).ok_or(RecordError::BadVersion)?;
        Ok(next)
    }

    /// The next version, with another key policy (and, when given, another
    /// name, checked and trimmed).
    pub fn amend(
        &self,
        policy: KeyPolicy,
        name: Option<&str>,
    ) -> Result<Organization, RecordError> {
        self.check()?;
        if self.is_deleted() {
            return Err(RecordError::OrganizationDeleted);
        }
        policy.check()?;
        let mut next = self.clone();
        next.key_policy = policy;
        if let Some(name) = name {
            next.name = String::from(check_name(name)?);
        }
        next.version = self.version.checked_add(1).ok_or(RecordError::BadVersion)?;
        next.check()?;
        Ok(next)
    }

    /// Whether a fact made at `created_at` can be this organization's: not
    /// before its registration (an older one belongs to an earlier
    /// organization of the same slug).
    pub fn owns_since(&self, created_at: u64) -> bool {
        created_at >= self.created_at
    }

    /// Whether a key record may be made, kept by rotation, or used under
    /// this organization: it belongs to it, the organization is not
    /// deleted, the key is not older than the organization, and the record
    /// keeps the key policy.
    pub fn admits(&self, record: &KeyRecord) -> Result<(), RecordError> {
        if record.organization != self.slug {
            return Err(RecordError::BadOrganization);
        }
        if self.is_deleted() {
            return Err(RecordError::OrganizationDeleted);
        }
        if !self.owns_since(record.created_at) {
            return Err(RecordError::PredatesOrganization);
        }
        self.key_policy
            .permits(record.created_at, record.expires_at)
    }

    /// Check every rule an organization obeys.
    pub fn check(&self) -> Result<(), RecordError> {
        if !valid_organization(&self.slug) {
            return Err(RecordError::BadOrganization);
        }
        if check_name(&self.name)? != self.name {
            return Err(RecordError::NotCanonical);
        }
        self.key_policy.check()?;
        check_lifecycle(self.created_at, self.deleted_at, self.version)
    }

    /// The canonical bytes, after checking the rules.
    pub fn encode(&self) -> Result<Vec<u8>, RecordError> {
        self.check()?;
        let mut out = Vec::with_capacity(64 + self.name.len());
        out.extend_from_slice(ORGANIZATION_MAGIC);
        out.push(FORMAT_VERSION);
        put_str(&mut out, &self.slug);
        put_str(&mut out, &self.name);
        match self.key_policy.expiry {
            ExpiryRule::Optional => out.push(0),
            ExpiryRule::Required => out.push(1),
            ExpiryRule::AtMost(d) => {
                out.push(2);
                out.extend_from_slice(&d.to_be_bytes());
            }
        }
        out.extend_from_slice(&self.created_at.to_be_bytes());
        put_opt(&mut out, self.deleted_at.as_ref(), |o, t| {
            o.extend_from_slice(&t.to_be_bytes())
        });
        out.extend_from_slice(&self.version.to_be_bytes());
        Ok(out)
    }

    /// Decode canonical bytes; refuses anything `encode` would not produce.
    pub fn decode(bytes: &[u8]) -> Result<Organization, RecordError> {
        let mut r = Reader::new(bytes);
        if r.take(3)? != ORGANIZATION_MAGIC || r.u8()? != FORMAT_VERSION {
            return Err(RecordError::NotCanonical);
        }
        let slug = r.str()?;
        let name = r.str()?;
        let expiry = match r.u8()? {
            0 => ExpiryRule::Optional,
            1 => ExpiryRule::Required,
            2 => ExpiryRule::AtMost(r.u16()?),
            _ => return Err(RecordError::NotCanonical),
        };
        let org = Organization {
            slug,
            name,
            key_policy: KeyPolicy { expiry },
            created_at: r.u64()?,
            deleted_at: r.opt(|r| r.u64())?,
            version: r.u64()?,
        };
        if !r.done() {
            return Err(RecordError::NotCanonical);
        }
        org.check()?;
        Ok(org)
    }
}
