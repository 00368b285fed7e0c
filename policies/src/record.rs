//! Key records, the rules every record obeys, and their one canonical
//! byte encoding (the bytes that are signed).
//!
//! # Canonical encoding, format version 1
//!
//! All integers are big-endian. `str` is a `u16` byte length followed by that
//! many bytes of UTF-8. `opt<T>` is a tag byte `0` (absent) or `1` followed by
//! `T`. Nothing follows the last field.
//!
//! | # | field        | encoding                                                   |
//! |---|--------------|------------------------------------------------------------|
//! | 0 | magic        | the 3 bytes `KGR`                                          |
//! | 1 | format       | `u8` = 1                                                   |
//! | 2 | id           | `str` (11 base62 characters)                               |
//! | 3 | organization | `str` (slug)                                               |
//! | 4 | name         | `str` (trimmed, 1–100 characters, no control or invisible character) |
//! | 5 | level        | `u8` 0 = organization; 1 = project, then `str` project id  |
//! | 6 | scopes       | `u8` count ≥ 1, then one `u8` per scope, strictly increasing (0 = trigger-workflows) |
//! | 7 | access       | `u8` 0 = all projects; 1 = selected, then `u16` count ≥ 1 and that many `str`, strictly increasing bytewise |
//! | 8 | created-at   | `u64` seconds since the epoch                              |
//! | 9 | expiry       | `u8` 0 = never; 1 = days, then `u16` days (7–90)           |
//! |10 | expires-at   | `opt<u64>`                                                 |
//! |11 | status       | `u8` 0 = active, 1 = disabled                              |
//! |12 | key-hash     | 32 bytes, SHA-256 of the key string                        |
//! |13 | version      | `u64` ≥ 1                                                  |
//! |14 | rotated-from | `opt<str>` key id                                          |
//! |15 | rotated-to   | `opt<str>` key id                                          |
//!
//! Decoding accepts exactly the bytes that encoding produces: unknown tags,
//! unsorted or repeated set members, trailing bytes and records that break a
//! rule are all refused, so `encode(decode(b)) == b` for every accepted `b`.

use alloc::string::String;
use alloc::vec::Vec;

use crate::key::valid_key_id;

/// Seconds in a day, for expiry policies.
pub const DAY: u64 = 86_400;
/// Fewest days a fixed expiry may last.
pub const MIN_EXPIRY_DAYS: u16 = 7;
/// Most days a fixed expiry may last.
pub const MAX_EXPIRY_DAYS: u16 = 90;
/// Longest name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest organization slug.
pub const MAX_ORG_LEN: usize = 63;
/// Longest project id.
pub const MAX_PROJECT_ID_LEN: usize = 64;
/// Most projects in one selection.
pub const MAX_SELECTED: usize = 1024;
/// Longest grace period an old key keeps after rotation.
pub const MAX_GRACE_SECONDS: u64 = 7 * DAY;
/// The current canonical format version.
pub const FORMAT_VERSION: u8 = 1;
/// First bytes of a canonical key record.
pub const MAGIC: &[u8; 3] = b"KGR";

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Start workflow executions.
    TriggerWorkflows,
}

impl Scope {
    /// Every scope, in canonical order.
    pub const ALL: [Scope; 1] = [Scope::TriggerWorkflows];

    /// The scope's name as written in WIT, the CLI and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::TriggerWorkflows => "trigger-workflows",
        }
    }

    /// The scope with this name.
    pub fn from_name(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == name)
    }

    fn tag(self) -> u8 {
        match self {
            Scope::TriggerWorkflows => 0,
        }
    }

    fn from_tag(tag: u8) -> Option<Scope> {
        match tag {
            0 => Some(Scope::TriggerWorkflows),
            _ => None,
        }
    }
}

/// How long a key stays valid after creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryPolicy {
    /// No time limit.
    Never,
    /// This many days (7–90) after creation.
    Days(u16),
}

/// Which projects of its organization a key may act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectAccess {
    /// Every project of the organization, present and future.
    AllProjects,
    /// Only these projects.
    Selected(Vec<String>),
}

/// Where a key was created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLevel {
    /// Organization-level.
    Organization,
    /// Project-level, owned by this project.
    Project(String),
}

/// Administrative status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    /// May validate.
    Active,
    /// Switched off by an administrator.
    Disabled,
}

/// The stored description of a key. Holds the key's SHA-256, never the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// Public key id.
    pub id: String,
    /// Owning organization slug.
    pub organization: String,
    /// Label.
    pub name: String,
    /// Organization-level or project-level.
    pub level: KeyLevel,
    /// Granted scopes, sorted, unique, non-empty.
    pub scopes: Vec<Scope>,
    /// Project access.
    pub access: ProjectAccess,
    /// Creation time, seconds since the epoch.
    pub created_at: u64,
    /// Expiry policy chosen at creation.
    pub expiry: ExpiryPolicy,
    /// Valid strictly before this instant, if set.
    pub expires_at: Option<u64>,
    /// Administrative status.
    pub status: KeyStatus,
    /// SHA-256 of the key string.
    pub key_hash: [u8; 32],
    /// Record version, from 1.
    pub version: u64,
    /// The key this one replaced by rotation.
    pub rotated_from: Option<String>,
    /// The key that replaced this one by rotation.
    pub rotated_to: Option<String>,
}

/// Why a creation request or a record breaks the rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Key id shape.
    #[error("key id must be 11 base62 characters")]
    BadKeyId,
    /// Organization slug shape.
    #[error(
        "organization must be 1 to 63 lowercase letters, digits or dashes, not starting or ending with a dash"
    )]
    BadOrganization,
    /// Empty name.
    #[error("name is empty")]
    NameEmpty,
    /// Name over [`MAX_NAME_CHARS`].
    #[error("name is longer than 100 characters")]
    NameTooLong,
    /// Control or invisible formatting character in the name.
    #[error("name contains a control or invisible formatting character")]
    NameControlCharacter,
    /// No scope.
    #[error("at least one scope is required")]
    NoScope,
    /// Empty selection.
    #[error("a selected-projects key needs at least one project")]
    EmptyProjectSelection,
    /// Bad project id (carried).
    #[error("`{0}` is not a valid project id")]
    BadProjectId(String),
    /// Project-level access other than its own project.
    #[error("a project-level key acts on exactly its own project")]
    ProjectLevelAccess,
    /// Expiry days out of range (carried).
    #[error("expiry of {0} days is outside the policy (7 to 90 days, or never)")]
    ExpiryOutOfRange(u16),
    /// Hash length.
    #[error("key hash must be 32 bytes")]
    BadKeyHash,
    /// `expires-at` inconsistent with the policy.
    #[error("expiry time does not follow from the expiry policy")]
    InconsistentExpiry,
    /// Version 0.
    #[error("record version must be at least 1")]
    BadVersion,
    /// Not canonical bytes.
    #[error("bytes are not a canonical key record")]
    NotCanonical,
    /// Rotation grace over [`MAX_GRACE_SECONDS`].
    #[error("grace period is longer than 7 days")]
    GraceTooLong,
    /// The key was already rotated.
    #[error("key was already rotated")]
    AlreadyRotated,
    /// A disabled key cannot be rotated (enable it first).
    #[error("a disabled key cannot be rotated; enable it first")]
    KeyDisabled,
    /// The project is deleted; it cannot change any more.
    #[error("the project was deleted")]
    ProjectDeleted,
    /// The organization's key policy requires every key to expire.
    #[error("the organization's key policy requires an expiry")]
    ExpiryRequired,
    /// The organization's key policy allows at most this many days (carried).
    #[error("the organization's key policy allows keys of at most {0} days")]
    ExpiryExceedsPolicy(u16),
    /// The organization was deleted; it cannot change or get keys any more.
    #[error("the organization was deleted")]
    OrganizationDeleted,
    /// The key was made before its organization was registered.
    #[error(
        "the key is older than its organization (it belongs to an earlier organization of the same slug)"
    )]
    PredatesOrganization,
    /// A key policy's maximum outside 7 to 90 days (carried).
    #[error("a key policy's maximum expiry of {0} days is outside 7 to 90 days")]
    MaxExpiryOutOfRange(u16),
}

impl RecordError {
    /// The error's name as written in WIT and JSON (`name-empty`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            RecordError::BadKeyId => "bad-key-id",
            RecordError::BadOrganization => "bad-organization",
            RecordError::NameEmpty => "name-empty",
            RecordError::NameTooLong => "name-too-long",
            RecordError::NameControlCharacter => "name-control-character",
            RecordError::NoScope => "no-scope",
            RecordError::EmptyProjectSelection => "empty-project-selection",
            RecordError::BadProjectId(_) => "bad-project-id",
            RecordError::ProjectLevelAccess => "project-level-access",
            RecordError::ExpiryOutOfRange(_) => "expiry-out-of-range",
            RecordError::BadKeyHash => "bad-key-hash",
            RecordError::InconsistentExpiry => "inconsistent-expiry",
            RecordError::BadVersion => "bad-version",
            RecordError::NotCanonical => "not-canonical",
            RecordError::GraceTooLong => "grace-too-long",
            RecordError::AlreadyRotated => "already-rotated",
            RecordError::KeyDisabled => "key-disabled",
            RecordError::ProjectDeleted => "project-deleted",
            RecordError::ExpiryRequired => "expiry-required",
            RecordError::ExpiryExceedsPolicy(_) => "expiry-exceeds-policy",
            RecordError::OrganizationDeleted => "organization-deleted",
            RecordError::MaxExpiryOutOfRange(_) => "max-expiry-out-of-range",
            RecordError::PredatesOrganization => "predates-organization",
        }
    }
}

/// A key's status at a given time, for listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EffectiveStatus {
    /// Would validate (subject to organization, scope and project).
    Active,
    /// Inactive: disabled by an administrator (reported before expiry).
    Disabled,
    /// Inactive: the time asked about is before the key was created.
    NotYetValid,
    /// Inactive: past its expiry time.
    Expired,
}

/// A request to create a record, before normalisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRequest {
    /// Key id from [`crate::make_key`].
    pub id: String,
    /// Organization slug.
    pub organization: String,
    /// Label (trimmed here).
    pub name: String,
    /// Level.
    pub level: KeyLevel,
    /// Scopes (sorted and de-duplicated here).
    pub scopes: Vec<Scope>,
    /// Access (normalised here).
    pub access: ProjectAccess,
    /// Expiry policy.
    pub expiry: ExpiryPolicy,
    /// Creation time.
    pub now: u64,
    /// SHA-256 of the key string (32 bytes).
    pub key_hash: Vec<u8>,
    /// The key being replaced, when rotating.
    pub rotated_from: Option<String>,
}

/// Whether `org` is a valid organization slug.
pub fn valid_organization(org: &str) -> bool {
    let b = org.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_ORG_LEN
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Whether `id` is a valid project id: 1 to 64 of `A-Za-z0-9_-`.
pub fn valid_project_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_PROJECT_ID_LEN
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

/// Whether `c` is a control character (Unicode Cc) or an invisible
/// formatting character (Unicode Cf: zero-width spaces and joiners,
/// bidirectional overrides and isolates, the soft hyphen, the byte-order
/// mark...): characters that make a name display differently from what it
/// holds. Names refuse them; displays escape them.
pub fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c as u32,
            0x00AD
                | 0x0600..=0x0605
                | 0x061C
                | 0x06DD
                | 0x070F
                | 0x0890..=0x0891
                | 0x08E2
                | 0x180E
                | 0x200B..=0x200F
                | 0x202A..=0x202E
                | 0x2060..=0x2064
                | 0x2066..=0x206F
                | 0xFEFF
                | 0xFFF9..=0xFFFB
                | 0x110BD
                | 0x110CD
                | 0x13430..=0x1343F
                | 0x1BCA0..=0x1BCA3
                | 0x1D173..=0x1D17A
                | 0xE0001
                | 0xE0020..=0xE007F
        )
}

/// Check a name as given (before trimming) and return it trimmed.
pub fn check_name(name: &str) -> Result<&str, RecordError> {
    let trimmed = name.trim();
    if trimmed.chars().any(is_hidden) {
        return Err(RecordError::NameControlCharacter);
    }
    if trimmed.is_empty() {
        return Err(RecordError::NameEmpty);
    }
    if trimmed.chars().count() > MAX_NAME_CHARS {
        return Err(RecordError::NameTooLong);
    }
    Ok(trimmed)
}

/// Check an expiry policy's bounds.
pub fn check_expiry(expiry: ExpiryPolicy) -> Result<(), RecordError> {
    match expiry {
        ExpiryPolicy::Days(d) if !(MIN_EXPIRY_DAYS..=MAX_EXPIRY_DAYS).contains(&d) => {
            Err(RecordError::ExpiryOutOfRange(d))
        }
        _ => Ok(()),
    }
}

/// Check a creation request and return the normalised version-1 record.
/// Rules are checked in field order; the first broken one is returned.
pub fn check_create(req: CreateRequest) -> Result<KeyRecord, RecordError> {
    // Normalise, then let `KeyRecord::check` apply every rule in field order.
    let mut scopes = req.scopes;
    scopes.sort();
    scopes.dedup();
    let access = match (&req.level, req.access) {
        (KeyLevel::Project(own), ProjectAccess::AllProjects) => {
            ProjectAccess::Selected(alloc::vec![own.clone()])
        }
        (_, ProjectAccess::Selected(mut ids)) => {
            ids.sort();
            ids.dedup();
            ProjectAccess::Selected(ids)
        }
        (_, access) => access,
    };
    // An overflowing expiry leaves `expires_at` empty, which `check` reports
    // as inconsistent with a fixed-days policy.
    let expires_at = match req.expiry {
        ExpiryPolicy::Never => None,
        ExpiryPolicy::Days(d) => req.now.checked_add(u64::from(d) * DAY),
    };
    let key_hash = <[u8; 32]>::try_from(req.key_hash.as_slice()).ok();
    let record = KeyRecord {
        id: req.id,
        organization: req.organization,
        name: String::from(req.name.trim()),
        level: req.level,
        scopes,
        access,
        created_at: req.now,
        expiry: req.expiry,
        expires_at,
        status: KeyStatus::Active,
        key_hash: key_hash.unwrap_or_default(),
        version: 1,
        rotated_from: req.rotated_from,
        rotated_to: None,
    };
    record.check()?;
    key_hash.ok_or(RecordError::BadKeyHash)?;
    Ok(record)
}

impl KeyRecord {
    /// The key's status at `now`: disabled, else not yet valid
    /// (`now < created_at`), else expired (`now >= expires_at`), else active.
    /// The same order as the deny reasons.
    pub fn status_at(&self, now: u64) -> EffectiveStatus {
        if self.status == KeyStatus::Disabled {
            EffectiveStatus::Disabled
        } else if now < self.created_at {
            EffectiveStatus::NotYetValid
        } else if self.expires_at.is_some_and(|t| now >= t) {
            EffectiveStatus::Expired
        } else {
            EffectiveStatus::Active
        }
    }

    /// Whether the key may act on `project` of its own organization: a
    /// project-level key only on its project, an org-level key on all
    /// projects or on its selection.
    pub fn grants_project(&self, project: &str) -> bool {
        match (&self.level, &self.access) {
            (KeyLevel::Project(own), _) => own == project,
            (KeyLevel::Organization, ProjectAccess::AllProjects) => true,
            (KeyLevel::Organization, ProjectAccess::Selected(ids)) => {
                ids.binary_search_by(|p| p.as_str().cmp(project)).is_ok()
            }
        }
    }

    /// The next version of this record with `status`.
    pub fn with_status(&self, status: KeyStatus) -> Result<KeyRecord, RecordError> {
        self.check()?;
        let mut next = self.clone();
        next.status = status;
        next.version = self.version.checked_add(1).ok_or(RecordError::BadVersion)?;
        Ok(next)
    }

    /// The next version of this record after rotation to `successor`: it
    /// expires at `now + grace_seconds` (or earlier, if it already did) and
    /// names its successor. Grace is at most 7 days.
    pub fn retire(
        &self,
        successor: &str,
        now: u64,
        grace_seconds: u64,
    ) -> Result<KeyRecord, RecordError> {
        self.check()?;
        if grace_seconds > MAX_GRACE_SECONDS {
            return Err(RecordError::GraceTooLong);
        }
        // Already rotated first: enabling would not help then.
        if self.rotated_to.is_some() {
            return Err(RecordError::AlreadyRotated);
        }
        if self.status == KeyStatus::Disabled {
            return Err(RecordError::KeyDisabled);
        }
        if !valid_key_id(successor) || successor == self.id {
            return Err(RecordError::BadKeyId);
        }
        let end = now
            .checked_add(grace_seconds)
            .ok_or(RecordError::InconsistentExpiry)?;
        let mut next = self.clone();
        next.expires_at = Some(self.expires_at.map_or(end, |t| t.min(end)));
        next.rotated_to = Some(String::from(successor));
        next.version = self.version.checked_add(1).ok_or(RecordError::BadVersion)?;
        next.check()?;
        Ok(next)
    }

    /// Check every rule a stored record obeys (see the module docs).
    pub fn check(&self) -> Result<(), RecordError> {
        if !valid_key_id(&self.id) {
            return Err(RecordError::BadKeyId);
        }
        if !valid_organization(&self.organization) {
            return Err(RecordError::BadOrganization);
        }
        if check_name(&self.name)? != self.name {
            return Err(RecordError::NotCanonical);
        }
        if let KeyLevel::Project(p) = &self.level
            && !valid_project_id(p)
        {
            return Err(RecordError::BadProjectId(p.clone()));
        }
        if self.scopes.is_empty() {
            return Err(RecordError::NoScope);
        }
        if !strictly_increasing(&self.scopes) {
            return Err(RecordError::NotCanonical);
        }
        match (&self.level, &self.access) {
            (KeyLevel::Project(_), ProjectAccess::AllProjects) => {
                return Err(RecordError::ProjectLevelAccess);
            }
            (level, ProjectAccess::Selected(ids)) => {
                if ids.is_empty() {
                    return Err(RecordError::EmptyProjectSelection);
                }
                if let Some(bad) = ids.iter().find(|p| !valid_project_id(p)) {
                    return Err(RecordError::BadProjectId(bad.clone()));
                }
                if ids.len() > MAX_SELECTED || !strictly_increasing(ids) {
                    return Err(RecordError::NotCanonical);
                }
                if let KeyLevel::Project(own) = level
                    && (ids.len() != 1 || &ids[0] != own)
                {
                    return Err(RecordError::ProjectLevelAccess);
                }
            }
            (KeyLevel::Organization, ProjectAccess::AllProjects) => {}
        }
        check_expiry(self.expiry)?;
        if let ExpiryPolicy::Days(d) = self.expiry {
            // A fixed policy always has an expiry time, never later than the
            // policy allows (rotation may bring it earlier).
            let limit = self
                .created_at
                .checked_add(u64::from(d) * DAY)
                .ok_or(RecordError::InconsistentExpiry)?;
            match self.expires_at {
                Some(t) if t <= limit => {}
                _ => return Err(RecordError::InconsistentExpiry),
            }
        }
        if self.version == 0 {
            return Err(RecordError::BadVersion);
        }
        for id in [&self.rotated_from, &self.rotated_to].into_iter().flatten() {
            if !valid_key_id(id) {
                return Err(RecordError::BadKeyId);
            }
        }
        Ok(())
    }

    /// The canonical bytes of this record, after checking its rules.
    pub fn encode(&self) -> Result<Vec<u8>, RecordError> {
        self.check()?;
        let mut out = Vec::with_capacity(160);
        out.extend_from_slice(MAGIC);
        out.push(FORMAT_VERSION);
        put_str(&mut out, &self.id);
        put_str(&mut out, &self.organization);
        put_str(&mut out, &self.name);
        match &self.level {
            KeyLevel::Organization => out.push(0),
            KeyLevel::Project(p) => {
                out.push(1);
                put_str(&mut out, p);
            }
        }
        // check() bounds the counts: at most one of each scope, MAX_SELECTED projects.
        out.push(self.scopes.len() as u8);
        out.extend(self.scopes.iter().map(|s| s.tag()));
        match &self.access {
            ProjectAccess::AllProjects => out.push(0),
            ProjectAccess::Selected(ids) => {
                out.push(1);
                out.extend_from_slice(&(ids.len() as u16).to_be_bytes());
                for id in ids {
                    put_str(&mut out, id);
                }
            }
        }
        out.extend_from_slice(&self.created_at.to_be_bytes());
        match self.expiry {
            ExpiryPolicy::Never => out.push(0),
            ExpiryPolicy::Days(d) => {
                out.push(1);
                out.extend_from_slice(&d.to_be_bytes());
            }
        }
        put_opt(&mut out, self.expires_at.as_ref(), |o, t| {
            o.extend_from_slice(&t.to_be_bytes())
        });
        out.push(match self.status {
            KeyStatus::Active => 0,
            KeyStatus::Disabled => 1,
        });
        out.extend_from_slice(&self.key_hash);
        out.extend_from_slice(&self.version.to_be_bytes());
        put_opt(&mut out, self.rotated_from.as_ref(), |o, s| put_str(o, s));
        put_opt(&mut out, self.rotated_to.as_ref(), |o, s| put_str(o, s));
        Ok(out)
    }

    /// Decode canonical bytes. Refuses anything `encode` would not produce.
    pub fn decode(bytes: &[u8]) -> Result<KeyRecord, RecordError> {
        let mut r = Reader::new(bytes);
        if r.take(3)? != MAGIC || r.u8()? != FORMAT_VERSION {
            return Err(RecordError::NotCanonical);
        }
        let id = r.str()?;
        let organization = r.str()?;
        let name = r.str()?;
        let level = match r.u8()? {
            0 => KeyLevel::Organization,
            1 => KeyLevel::Project(r.str()?),
            _ => return Err(RecordError::NotCanonical),
        };
        let n = r.u8()?;
        let mut scopes = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            scopes.push(Scope::from_tag(r.u8()?).ok_or(RecordError::NotCanonical)?);
        }
        let access = match r.u8()? {
            0 => ProjectAccess::AllProjects,
            1 => {
                let n = usize::from(r.u16()?);
                if n > MAX_SELECTED {
                    return Err(RecordError::NotCanonical);
                }
                let mut ids = Vec::with_capacity(n);
                for _ in 0..n {
                    ids.push(r.str()?);
                }
                ProjectAccess::Selected(ids)
            }
            _ => return Err(RecordError::NotCanonical),
        };
        let created_at = r.u64()?;
        let expiry = match r.u8()? {
            0 => ExpiryPolicy::Never,
            1 => ExpiryPolicy::Days(r.u16()?),
            _ => return Err(RecordError::NotCanonical),
        };
        let expires_at = r.opt(|r| r.u64())?;
        let status = match r.u8()? {
            0 => KeyStatus::Active,
            1 => KeyStatus::Disabled,
            _ => return Err(RecordError::NotCanonical),
        };
        let key_hash: [u8; 32] = r
            .take(32)?
            .try_into()
            .map_err(|_| RecordError::NotCanonical)?;
        let version = r.u64()?;
        let rotated_from = r.opt(|r| r.str())?;
        let rotated_to = r.opt(|r| r.str())?;
        if !r.done() {
            return Err(RecordError::NotCanonical);
        }
        let record = KeyRecord {
            id,
            organization,
            name,
            level,
            scopes,
            access,
            created_at,
            expiry,
            expires_at,
            status,
            key_hash,
            version,
            rotated_from,
            rotated_to,
        };
        record.check()?;
        Ok(record)
    }
}

pub(crate) fn strictly_increasing<T: Ord>(items: &[T]) -> bool {
    items.windows(2).all(|w| w[0] < w[1])
}

pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    // Every string in a checked record is far shorter than 64 KiB.
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

pub(crate) fn put_opt<T>(out: &mut Vec<u8>, v: Option<&T>, put: impl FnOnce(&mut Vec<u8>, &T)) {
    match v {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            put(out, v);
        }
    }
}

pub(crate) struct Reader<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`.
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }
    /// Whether every byte was read.
    pub(crate) fn done(&self) -> bool {
        self.pos == self.bytes.len()
    }
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        let end = self.pos.checked_add(n).ok_or(RecordError::NotCanonical)?;
        let s = self
            .bytes
            .get(self.pos..end)
            .ok_or(RecordError::NotCanonical)?;
        self.pos = end;
        Ok(s)
    }
    pub(crate) fn u8(&mut self) -> Result<u8, RecordError> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16, RecordError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, RecordError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, RecordError> {
        let b: [u8; 8] = self
            .take(8)?
            .try_into()
            .map_err(|_| RecordError::NotCanonical)?;
        Ok(u64::from_be_bytes(b))
    }
    pub(crate) fn str(&mut self) -> Result<String, RecordError> {
        let n = usize::from(self.u16()?);
        let b = self.take(n)?;
        core::str::from_utf8(b)
            .map(String::from)
            .map_err(|_| RecordError::NotCanonical)
    }
    pub(crate) fn opt<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, RecordError>,
    ) -> Result<Option<T>, RecordError> {
        match self.u8()? {
            0 => Ok(None),
            1 => f(self).map(Some),
            _ => Err(RecordError::NotCanonical),
        }
    }
}
