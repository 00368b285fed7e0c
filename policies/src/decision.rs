//! The validation decision, for one signed record (`evaluate`) or for a set
//! of records verified in advance (`Validator`).
//!
//! Deny reasons are checked in this fixed order; the first failing check is
//! the answer: malformed, bad checksum, unknown key, secret mismatch, record
//! signature invalid, wrong organization, disabled, expired, scope not
//! granted, project not granted.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::key::{ParseError, hash_key, hashes_equal, parse_key};
use crate::record::{KeyLevel, KeyRecord, KeyStatus, Scope};

/// A record in canonical bytes with its issuer's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRecord {
    /// Canonical bytes of a [`KeyRecord`].
    pub canonical: Vec<u8>,
    /// Ed25519 signature over `canonical` (64 bytes).
    pub signature: Vec<u8>,
    /// Id of the signing issuer key.
    pub issuer_key_id: String,
}

/// A trusted issuer public key, as given by a caller (unchecked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerKey {
    /// 16 lowercase hex characters: first 8 bytes of SHA-256(public key).
    pub id: String,
    /// Ed25519 public key bytes.
    pub public_key: Vec<u8>,
}

/// Why an issuer key is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IssuerError {
    /// Not a valid, non-weak Ed25519 public key.
    #[error("not a valid ed25519 public key")]
    BadPublicKey,
    /// Id does not match the key.
    #[error("issuer key id does not match the public key")]
    IdMismatch,
}

/// One validation request.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    /// The key as presented (any string).
    pub presented_key: String,
    /// The organization owning `project`, from the caller's registry.
    pub organization: String,
    /// The project to act on.
    pub project: String,
    /// The action asked for.
    pub action: Scope,
    /// Seconds since the epoch.
    pub now: u64,
}

impl core::fmt::Debug for Request {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Request")
            .field("presented_key", &"<redacted>")
            .field("organization", &self.organization)
            .field("project", &self.project)
            .field("action", &self.action)
            .field("now", &self.now)
            .finish()
    }
}

/// Why a request is denied, in checking order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, thiserror::Error)]
pub enum DenyReason {
    /// Not shaped like a key.
    #[error("malformed key")]
    Malformed,
    /// Checksum mismatch.
    #[error("bad checksum")]
    BadChecksum,
    /// No record for the id.
    #[error("unknown key")]
    UnknownKey,
    /// Wrong secret.
    #[error("secret mismatch")]
    SecretMismatch,
    /// Signature or record bytes invalid.
    #[error("record signature invalid")]
    RecordSignatureInvalid,
    /// Other organization.
    #[error("wrong organization")]
    WrongOrganization,
    /// Disabled key.
    #[error("key disabled")]
    Disabled,
    /// Past `expires_at`.
    #[error("key expired")]
    Expired,
    /// Scope missing.
    #[error("scope not granted")]
    ScopeNotGranted,
    /// Project not allowed.
    #[error("project not granted")]
    ProjectNotGranted,
}

impl DenyReason {
    /// Every reason, in checking order.
    pub const ALL: [DenyReason; 10] = [
        DenyReason::Malformed,
        DenyReason::BadChecksum,
        DenyReason::UnknownKey,
        DenyReason::SecretMismatch,
        DenyReason::RecordSignatureInvalid,
        DenyReason::WrongOrganization,
        DenyReason::Disabled,
        DenyReason::Expired,
        DenyReason::ScopeNotGranted,
        DenyReason::ProjectNotGranted,
    ];

    /// The reason's name as written in WIT and JSON (`unknown-key`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::Malformed => "malformed",
            DenyReason::BadChecksum => "bad-checksum",
            DenyReason::UnknownKey => "unknown-key",
            DenyReason::SecretMismatch => "secret-mismatch",
            DenyReason::RecordSignatureInvalid => "record-signature-invalid",
            DenyReason::WrongOrganization => "wrong-organization",
            DenyReason::Disabled => "disabled",
            DenyReason::Expired => "expired",
            DenyReason::ScopeNotGranted => "scope-not-granted",
            DenyReason::ProjectNotGranted => "project-not-granted",
        }
    }
}

/// What may be logged about an allowed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    /// Key id.
    pub key_id: String,
    /// Key label.
    pub name: String,
    /// Owning organization.
    pub organization: String,
    /// Level.
    pub level: KeyLevel,
    /// Record version that allowed it.
    pub record_version: u64,
    /// Expiry time, if any.
    pub expires_at: Option<u64>,
}

/// The answer to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed.
    Allow(Allowed),
    /// Denied for one reason.
    Deny(DenyReason),
}

impl Decision {
    /// The deny reason, if denied.
    pub fn deny_reason(&self) -> Option<DenyReason> {
        match self {
            Decision::Allow(_) => None,
            Decision::Deny(r) => Some(*r),
        }
    }
}

/// The id of an issuer public key: hex of the first 8 bytes of its SHA-256.
pub fn issuer_key_id(public_key: &[u8]) -> Result<String, IssuerError> {
    verifying_key(public_key)?;
    Ok(key_id_of(public_key))
}

/// Hex of the first 8 bytes of SHA-256(`public_key`), unchecked.
fn key_id_of(public_key: &[u8]) -> String {
    let digest = Sha256::digest(public_key);
    let mut id = String::with_capacity(16);
    for b in &digest[..8] {
        id.push(char::from(HEX[usize::from(b >> 4)]));
        id.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    id
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn verifying_key(public_key: &[u8]) -> Result<VerifyingKey, IssuerError> {
    let bytes: [u8; 32] = public_key
        .try_into()
        .map_err(|_| IssuerError::BadPublicKey)?;
    let vk = VerifyingKey::from_bytes(&bytes).map_err(|_| IssuerError::BadPublicKey)?;
    if vk.is_weak() {
        return Err(IssuerError::BadPublicKey);
    }
    Ok(vk)
}

/// Check a trusted issuer key: valid, not weak, and its id matches.
pub fn check_issuer_key(key: &IssuerKey) -> Result<(), IssuerError> {
    if issuer_key_id(&key.public_key)? != key.id {
        return Err(IssuerError::IdMismatch);
    }
    Ok(())
}

/// A set of checked issuer keys.
#[derive(Debug, Clone, Default)]
pub struct TrustedIssuers {
    keys: Vec<(String, VerifyingKey)>,
}

impl TrustedIssuers {
    /// Keep the keys that pass [`check_issuer_key`]; the others are ignored,
    /// so a bad key can only reduce what is trusted.
    pub fn new(keys: &[IssuerKey]) -> Self {
        let keys = keys
            .iter()
            .filter_map(|k| {
                let vk = verifying_key(&k.public_key).ok()?;
                (key_id_of(&k.public_key) == k.id).then(|| (k.id.clone(), vk))
            })
            .collect();
        TrustedIssuers { keys }
    }

    /// How many keys are trusted.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether `signed` carries a valid strict Ed25519 signature by a trusted key.
    pub fn verify(&self, signed: &SignedRecord) -> bool {
        let Ok(sig) = <[u8; 64]>::try_from(signed.signature.as_slice()) else {
            return false;
        };
        let sig = Signature::from_bytes(&sig);
        self.keys
            .iter()
            .filter(|(id, _)| *id == signed.issuer_key_id)
            .any(|(_, vk)| vk.verify_strict(&signed.canonical, &sig).is_ok())
    }

    /// Verify and decode a signed record.
    pub fn open(&self, signed: &SignedRecord) -> Result<KeyRecord, LoadError> {
        if !self.verify(signed) {
            return Err(LoadError::SignatureInvalid);
        }
        KeyRecord::decode(&signed.canonical).map_err(|_| LoadError::NotCanonical)
    }
}

/// A hash that no key hashes to in practice, compared against when the id is
/// unknown so that an unknown id costs the same work as a wrong secret.
const DUMMY_HASH: [u8; 32] = [0xA5; 32];

fn parse_step(presented: &str) -> Result<&str, DenyReason> {
    parse_key(presented).map_err(|e| match e {
        ParseError::Malformed => DenyReason::Malformed,
        ParseError::BadChecksum => DenyReason::BadChecksum,
    })
}

/// Hash the presented key and compare it with `stored` in constant time.
fn secret_matches(presented: &str, stored: &[u8; 32]) -> bool {
    hashes_equal(&hash_key(presented), stored)
}

/// The checks after the secret and signature: organization, status, expiry,
/// scope, project.
fn rules(record: &KeyRecord, req: &Request) -> Result<(), DenyReason> {
    if record.organization != req.organization {
        return Err(DenyReason::WrongOrganization);
    }
    if record.status == KeyStatus::Disabled {
        return Err(DenyReason::Disabled);
    }
    if record.expires_at.is_some_and(|t| req.now >= t) {
        return Err(DenyReason::Expired);
    }
    if !record.scopes.contains(&req.action) {
        return Err(DenyReason::ScopeNotGranted);
    }
    if !record.grants_project(&req.project) {
        return Err(DenyReason::ProjectNotGranted);
    }
    Ok(())
}

fn allowed(record: &KeyRecord) -> Decision {
    Decision::Allow(Allowed {
        key_id: record.id.clone(),
        name: record.name.clone(),
        organization: record.organization.clone(),
        level: record.level.clone(),
        record_version: record.version,
        expires_at: record.expires_at,
    })
}

/// Decide one request against the record stored for the presented key's id
/// (`None` when there is none), verifying the record's signature.
pub fn evaluate(
    req: &Request,
    record: Option<&SignedRecord>,
    trusted: &TrustedIssuers,
) -> Decision {
    match evaluate_inner(req, record, trusted) {
        Ok(r) => allowed(&r),
        Err(reason) => Decision::Deny(reason),
    }
}

fn evaluate_inner(
    req: &Request,
    signed: Option<&SignedRecord>,
    trusted: &TrustedIssuers,
) -> Result<KeyRecord, DenyReason> {
    let id = parse_step(&req.presented_key)?;
    let decoded = signed.map(|s| KeyRecord::decode(&s.canonical));
    let (signed, record) = match (signed, decoded) {
        (Some(s), Some(Ok(r))) if r.id == id => (s, r),
        (Some(_), Some(Err(_))) => {
            // Bytes that are not a record: compare anyway, then refuse them.
            let _ = secret_matches(&req.presented_key, &DUMMY_HASH);
            return Err(DenyReason::RecordSignatureInvalid);
        }
        _ => {
            let _ = secret_matches(&req.presented_key, &DUMMY_HASH);
            return Err(DenyReason::UnknownKey);
        }
    };
    if !secret_matches(&req.presented_key, &record.key_hash) {
        return Err(DenyReason::SecretMismatch);
    }
    if !trusted.verify(signed) {
        return Err(DenyReason::RecordSignatureInvalid);
    }
    rules(&record, req)?;
    Ok(record)
}

/// Why [`Validator::load`] refused a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// Signature invalid.
    #[error("record signature invalid")]
    SignatureInvalid,
    /// Signed bytes are not a canonical record.
    #[error("signed bytes are not a canonical record")]
    NotCanonical,
    /// The id was forgotten.
    #[error("key id was deleted and cannot be loaded again")]
    Forgotten,
}

/// What [`Validator::load`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadOutcome {
    /// New id.
    Added,
    /// Newer version replaced the held one.
    Replaced,
    /// Held version is the same or newer.
    Stale,
}

/// Verified records held in memory; `check` does no signature work.
#[derive(Debug, Clone, Default)]
pub struct Validator {
    trusted: TrustedIssuers,
    records: BTreeMap<String, KeyRecord>,
    forgotten: BTreeSet<String>,
}

impl Validator {
    /// A validator trusting these issuer keys (invalid ones are ignored).
    pub fn new(trusted: &[IssuerKey]) -> Self {
        Validator {
            trusted: TrustedIssuers::new(trusted),
            records: BTreeMap::new(),
            forgotten: BTreeSet::new(),
        }
    }

    /// Verify and hold a record; newer versions replace older, never the reverse.
    pub fn load(&mut self, signed: &SignedRecord) -> Result<LoadOutcome, LoadError> {
        let record = self.trusted.open(signed)?;
        if self.forgotten.contains(&record.id) {
            return Err(LoadError::Forgotten);
        }
        match self.records.get(&record.id) {
            Some(held) if held.version >= record.version => Ok(LoadOutcome::Stale),
            Some(_) => {
                self.records.insert(record.id.clone(), record);
                Ok(LoadOutcome::Replaced)
            }
            None => {
                self.records.insert(record.id.clone(), record);
                Ok(LoadOutcome::Added)
            }
        }
    }

    /// Forget a deleted id for good; returns whether it was held.
    pub fn forget(&mut self, id: &str) -> bool {
        self.forgotten.insert(String::from(id));
        self.records.remove(id).is_some()
    }

    /// Decide one request against the held records.
    pub fn check(&self, req: &Request) -> Decision {
        let id = match parse_step(&req.presented_key) {
            Ok(id) => id,
            Err(r) => return Decision::Deny(r),
        };
        let Some(record) = self.records.get(id) else {
            let _ = secret_matches(&req.presented_key, &DUMMY_HASH);
            return Decision::Deny(DenyReason::UnknownKey);
        };
        if !secret_matches(&req.presented_key, &record.key_hash) {
            return Decision::Deny(DenyReason::SecretMismatch);
        }
        match rules(record, req) {
            Ok(()) => allowed(record),
            Err(r) => Decision::Deny(r),
        }
    }

    /// How many records are held.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The held record for an id.
    pub fn get(&self, id: &str) -> Option<&KeyRecord> {
        self.records.get(id)
    }
}
