//! The validation decision, for one request with its signed evidence
//! (`evaluate`) or for a set of facts verified in advance (`Validator`).
//!
//! Deny reasons are checked in this fixed order; the first failing check is
//! the answer: malformed, bad checksum, unknown key (no record, or a valid
//! tombstone), secret mismatch, record signature invalid, unknown project,
//! project registration invalid, project deleted, wrong organization,
//! unknown organization, organization registration invalid, organization
//! deleted, predates organization, disabled, not yet valid, expired,
//! lifetime exceeds policy, scope not granted, project not granted.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use ed25519_dalek::{Signature, StreamVerifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::held::{HeldKey, KeyTable};
use crate::key::{ParseError, hash_key, hashes_equal, parse_key};
use crate::record::{KeyLevel, KeyRecord, KeyStatus, Scope};
use crate::registry::{Body, Organization, ProjectRegistration, Tombstone};
use crate::snapshot::{
    Header, MAX_HEADER, Parser, SIGNATURE_LEN, Snapshot, SnapshotError, SnapshotInfo, Visitor,
    decode_hex, split_file,
};

/// A fact in canonical bytes with its issuer's signature: a key record, a
/// project registration or a key tombstone (told apart by their magic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRecord {
    /// Canonical bytes of a [`KeyRecord`], [`ProjectRegistration`] or [`Tombstone`].
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

/// One validation request. The project's organization is not part of it: it
/// comes from the project's signed registration.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    /// The key as presented (any string).
    pub presented_key: String,
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
    /// No record for the id, or the key was deleted (a valid tombstone).
    #[error("unknown key")]
    UnknownKey,
    /// Wrong secret.
    #[error("secret mismatch")]
    SecretMismatch,
    /// The key's record or tombstone fails its signature or is not canonical.
    #[error("record signature invalid")]
    RecordSignatureInvalid,
    /// No registration for the requested project.
    #[error("unknown project")]
    UnknownProject,
    /// The project's registration fails its signature, is not canonical, or
    /// names another project.
    #[error("project registration invalid")]
    ProjectRegistrationInvalid,
    /// The project was deleted.
    #[error("project deleted")]
    ProjectDeleted,
    /// The project belongs to another organization.
    #[error("wrong organization")]
    WrongOrganization,
    /// No registration for the key's organization.
    #[error("unknown organization")]
    UnknownOrganization,
    /// The organization's registration fails its signature, is not
    /// canonical, or names another organization.
    #[error("organization registration invalid")]
    OrganizationRegistrationInvalid,
    /// The organization was deleted.
    #[error("organization deleted")]
    OrganizationDeleted,
    /// The key or the project was made before its organization was
    /// registered: it belongs to an earlier organization of the same slug.
    #[error("key or project older than its organization")]
    PredatesOrganization,
    /// Disabled key.
    #[error("key disabled")]
    Disabled,
    /// The request's time is before the key was created.
    #[error("key not yet valid")]
    NotYetValid,
    /// Past `expires_at`.
    #[error("key expired")]
    Expired,
    /// The key's lifetime (creation to `expires_at`, or no expiry) breaks
    /// its organization's current key policy.
    #[error("key lifetime exceeds the organization's key policy")]
    LifetimeExceedsPolicy,
    /// Scope missing.
    #[error("scope not granted")]
    ScopeNotGranted,
    /// Project not allowed.
    #[error("project not granted")]
    ProjectNotGranted,
}

impl DenyReason {
    /// Every reason, in checking order.
    pub const ALL: [DenyReason; 19] = [
        DenyReason::Malformed,
        DenyReason::BadChecksum,
        DenyReason::UnknownKey,
        DenyReason::SecretMismatch,
        DenyReason::RecordSignatureInvalid,
        DenyReason::UnknownProject,
        DenyReason::ProjectRegistrationInvalid,
        DenyReason::ProjectDeleted,
        DenyReason::WrongOrganization,
        DenyReason::UnknownOrganization,
        DenyReason::OrganizationRegistrationInvalid,
        DenyReason::OrganizationDeleted,
        DenyReason::PredatesOrganization,
        DenyReason::Disabled,
        DenyReason::NotYetValid,
        DenyReason::Expired,
        DenyReason::LifetimeExceedsPolicy,
        DenyReason::ScopeNotGranted,
        DenyReason::ProjectNotGranted,
    ];

    /// Whether the caller failed to authenticate or was refused.
    pub fn class(self) -> DenyClass {
        match self {
            DenyReason::Malformed
            | DenyReason::BadChecksum
            | DenyReason::UnknownKey
            | DenyReason::SecretMismatch
            | DenyReason::RecordSignatureInvalid => DenyClass::Unauthenticated,
            DenyReason::UnknownProject
            | DenyReason::ProjectRegistrationInvalid
            | DenyReason::ProjectDeleted
            | DenyReason::WrongOrganization
            | DenyReason::UnknownOrganization
            | DenyReason::OrganizationRegistrationInvalid
            | DenyReason::OrganizationDeleted
            | DenyReason::PredatesOrganization
            | DenyReason::Disabled
            | DenyReason::NotYetValid
            | DenyReason::Expired
            | DenyReason::LifetimeExceedsPolicy
            | DenyReason::ScopeNotGranted
            | DenyReason::ProjectNotGranted => DenyClass::Forbidden,
        }
    }

    /// The reason's name as written in WIT and JSON (`unknown-key`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::Malformed => "malformed",
            DenyReason::BadChecksum => "bad-checksum",
            DenyReason::UnknownKey => "unknown-key",
            DenyReason::SecretMismatch => "secret-mismatch",
            DenyReason::RecordSignatureInvalid => "record-signature-invalid",
            DenyReason::UnknownProject => "unknown-project",
            DenyReason::ProjectRegistrationInvalid => "project-registration-invalid",
            DenyReason::ProjectDeleted => "project-deleted",
            DenyReason::WrongOrganization => "wrong-organization",
            DenyReason::UnknownOrganization => "unknown-organization",
            DenyReason::OrganizationRegistrationInvalid => "organization-registration-invalid",
            DenyReason::OrganizationDeleted => "organization-deleted",
            DenyReason::PredatesOrganization => "predates-organization",
            DenyReason::Disabled => "disabled",
            DenyReason::NotYetValid => "not-yet-valid",
            DenyReason::Expired => "expired",
            DenyReason::LifetimeExceedsPolicy => "lifetime-exceeds-policy",
            DenyReason::ScopeNotGranted => "scope-not-granted",
            DenyReason::ProjectNotGranted => "project-not-granted",
        }
    }
}

/// How a gateway answers a deny: whether the caller failed to present a
/// live key of this issuer, or presented one that may not do this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyClass {
    /// No live, genuine key was presented (HTTP 401): malformed, bad
    /// checksum, unknown or deleted key, wrong secret, forged record.
    Unauthenticated,
    /// A genuine key that may not do this, here, now (HTTP 403). An unknown
    /// or deleted project is in this class too, so that a status never tells
    /// a key of one organization which project ids exist in another.
    Forbidden,
}

impl DenyClass {
    /// The class's name as written in WIT and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            DenyClass::Unauthenticated => "unauthenticated",
            DenyClass::Forbidden => "forbidden",
        }
    }

    /// The HTTP status a gateway answers with: 401 or 403.
    pub fn http_status(self) -> u16 {
        match self {
            DenyClass::Unauthenticated => 401,
            DenyClass::Forbidden => 403,
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

    /// Whether `signature` over `message` verifies (strictly) against any
    /// trusted key.
    pub fn verify_any(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let sig = Signature::from_bytes(signature);
        self.keys
            .iter()
            .any(|(_, vk)| vk.verify_strict(message, &sig).is_ok())
    }

    /// Check a snapshot file's encoding and signature, then decode it; the
    /// issuer key id inside must be the one whose signature verifies.
    pub fn open_snapshot(&self, file: &[u8]) -> Result<Snapshot, SnapshotError> {
        let (header, all) = Opening::whole(self, file, crate::snapshot::Collect::default())?;
        Ok(all.into_snapshot(header))
    }

    /// [`TrustedIssuers::open_snapshot`]'s checks, keeping only the counts
    /// (no fact is kept in memory).
    pub fn inspect_snapshot(&self, file: &[u8]) -> Result<SnapshotInfo, SnapshotError> {
        Ok(Opening::whole(self, file, crate::snapshot::Skip)?.0.info())
    }

    /// Whether this exact key is trusted under this id.
    fn holds(&self, id: &str, key: &VerifyingKey) -> bool {
        self.keys.iter().any(|(i, k)| i == id && k == key)
    }

    /// Verify and decode a signed fact of any kind.
    pub fn open(&self, signed: &SignedRecord) -> Result<Body, LoadError> {
        if !self.verify(signed) {
            return Err(LoadError::SignatureInvalid);
        }
        Body::decode(&signed.canonical).map_err(|_| LoadError::NotCanonical)
    }
}

/// A snapshot file being opened: its canonical bytes arrive in pieces,
/// are decoded one fact at a time into `V` and hashed for the signature
/// check as they come, so that no copy of the whole file is ever needed.
/// The signature (the file's last 64 bytes) comes first: ed25519 hashes
/// its `R` and the public key before the message.
///
/// Refusals, in this order: bytes that are not a canonical snapshot
/// (`NotCanonical`, as soon as a piece shows it), then a signature that is
/// missing, malformed, by no trusted key under the header's issuer key id,
/// or wrong (`SignatureInvalid`, at the end).
struct Opening<V> {
    trusted: TrustedIssuers,
    signature: Option<[u8; SIGNATURE_LEN]>,
    parser: Parser,
    into: V,
    check: Check,
    failed: Option<SnapshotError>,
}

/// The signature check of an [`Opening`].
enum Check {
    /// The header is not whole yet: the bytes so far, to hash once the
    /// signer is known.
    Waiting(Vec<u8>),
    /// Hashing with the key the header names (boxed: the hash state is
    /// large, and an opening holds one check).
    Hashing(Box<(String, VerifyingKey, StreamVerifier)>),
    /// The header names no trusted key, or the signature is malformed:
    /// refused at the end.
    Refused,
}

impl<V: Visitor> Opening<V> {
    fn new(trusted: TrustedIssuers, signature: &[u8], into: V) -> Self {
        Opening {
            trusted,
            signature: signature.try_into().ok(),
            parser: Parser::new(),
            into,
            check: Check::Waiting(Vec::new()),
            failed: None,
        }
    }

    /// A whole snapshot file: canonical bytes, then the signature.
    fn whole(trusted: &TrustedIssuers, file: &[u8], into: V) -> Result<(Header, V), SnapshotError> {
        let (canonical, signature) = split_file(file)?;
        let mut opening = Opening::new(trusted.clone(), signature, into);
        opening.feed(canonical)?;
        let (header, into, _) = opening.finish()?;
        Ok((header, into))
    }

    fn feed(&mut self, mut piece: &[u8]) -> Result<(), SnapshotError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if let Check::Waiting(before) = &mut self.check {
            // Only as much as makes the header whole, so that the signer is
            // known (or known to be untrusted) before any fact is kept.
            let (head, rest) =
                piece.split_at(MAX_HEADER.saturating_sub(before.len()).min(piece.len()));
            before.extend_from_slice(head);
            self.parse(head)?;
            let Some(id) = self.parser.header().map(|h| h.issuer_key_id.clone()) else {
                return Ok(());
            };
            let before = core::mem::replace(&mut self.check, Check::Refused);
            let Check::Waiting(before) = before else {
                return Ok(());
            };
            self.check = self.start_check(&id, &before);
            if matches!(self.check, Check::Refused) {
                self.into.stop_keeping();
            }
            piece = rest;
        }
        self.parse(piece)?;
        if let Check::Hashing(h) = &mut self.check {
            h.2.update(piece);
        }
        Ok(())
    }

    fn parse(&mut self, piece: &[u8]) -> Result<(), SnapshotError> {
        if self.parser.feed(piece, &mut self.into).is_err() {
            self.failed = Some(SnapshotError::NotCanonical);
            return Err(SnapshotError::NotCanonical);
        }
        Ok(())
    }

    /// Start hashing with the trusted key named `id`, over `before`.
    fn start_check(&self, id: &str, before: &[u8]) -> Check {
        let Some((id, key)) = self.trusted.keys.iter().find(|(i, _)| i == id) else {
            return Check::Refused;
        };
        match self
            .signature
            .as_ref()
            .and_then(|s| stream_verifier(key, s))
        {
            Some(mut v) => {
                v.update(before);
                Check::Hashing(Box::new((id.clone(), *key, v)))
            }
            None => Check::Refused,
        }
    }

    /// The header, what `V` gathered, and the key that signed.
    fn finish(self) -> Result<(Header, V, (String, VerifyingKey)), SnapshotError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let header = self
            .parser
            .finish()
            .map_err(|_| SnapshotError::NotCanonical)?;
        match self.check {
            Check::Hashing(h) => match h.2.finalize_and_verify() {
                Ok(()) => Ok((header, self.into, (h.0, h.1))),
                Err(_) => Err(SnapshotError::SignatureInvalid),
            },
            Check::Waiting(_) | Check::Refused => Err(SnapshotError::SignatureInvalid),
        }
    }
}

/// A stream verifier that accepts exactly what `verify_strict` accepts:
/// the stream verifier leaves out `verify_strict`'s refusal of an `R` that
/// does not decompress or is of small order, and of a public key of small
/// order, so they are checked here first (the scalar's canonical form is
/// checked by both).
pub(crate) fn stream_verifier(
    key: &VerifyingKey,
    signature: &[u8; SIGNATURE_LEN],
) -> Option<StreamVerifier> {
    let r: &[u8; 32] = signature[..32].try_into().ok()?;
    let r = VerifyingKey::from_bytes(r).ok()?;
    if r.is_weak() || key.is_weak() {
        return None;
    }
    key.verify_stream(&Signature::from_bytes(signature)).ok()
}

/// A snapshot file given to a [`Validator`] in pieces
/// ([`Validator::begin_snapshot`], [`SnapshotStream::feed`],
/// [`Validator::finish_snapshot`]): the file is never copied whole, so a
/// runtime whose memory never shrinks (a WebAssembly guest) keeps only
/// what the validator holds.
pub struct SnapshotStream(Opening<Staged>);

impl core::fmt::Debug for SnapshotStream {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SnapshotStream")
            .field("failed", &self.0.failed)
            .finish_non_exhaustive()
    }
}

impl SnapshotStream {
    /// The next piece of the file's canonical bytes (everything before its
    /// last 64 bytes), in order, of any size. Refused as soon as the bytes
    /// so far cannot begin a canonical snapshot; every later piece, and the
    /// finish, are refused the same way.
    pub fn feed(&mut self, piece: &[u8]) -> Result<(), SnapshotError> {
        self.0.feed(piece)
    }

    /// [`SnapshotStream::feed`] for a piece given as hex text (an even
    /// number of digits).
    pub fn feed_hex(&mut self, piece: &str) -> Result<(), SnapshotError> {
        match decode_hex(piece) {
            Some(bytes) => self.0.feed(&bytes),
            None => {
                self.0.failed = Some(SnapshotError::NotCanonical);
                Err(SnapshotError::NotCanonical)
            }
        }
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

/// A request seen through borrows: what every check reads, so that the hot
/// path (`Validator::authorize`) copies no string.
struct Ask<'a> {
    presented_key: &'a str,
    project: &'a str,
    action: Scope,
    now: u64,
}

impl<'a> From<&'a Request> for Ask<'a> {
    fn from(r: &'a Request) -> Self {
        Ask {
            presented_key: &r.presented_key,
            project: &r.project,
            action: r.action,
            now: r.now,
        }
    }
}

/// The project checks: a registration for the requested project that is
/// not deleted.
fn project_step<'r>(
    reg: Option<&'r ProjectRegistration>,
    req: &Ask<'_>,
) -> Result<&'r ProjectRegistration, DenyReason> {
    let reg = reg.ok_or(DenyReason::UnknownProject)?;
    if reg.id != req.project {
        return Err(DenyReason::ProjectRegistrationInvalid);
    }
    if reg.is_deleted() {
        return Err(DenyReason::ProjectDeleted);
    }
    Ok(reg)
}

/// The organization checks: the project's organization is the key's, its
/// registration is held, names it and is not deleted, and neither the key
/// nor the project was made before it (they would belong to an earlier
/// organization of the same slug, whose record was removed).
fn organization_step<'o>(
    record: &impl KeyFacts,
    project: &ProjectRegistration,
    org: Option<&'o Organization>,
) -> Result<&'o Organization, DenyReason> {
    if record.organization() != project.organization {
        return Err(DenyReason::WrongOrganization);
    }
    let org = org.ok_or(DenyReason::UnknownOrganization)?;
    if org.slug != record.organization() {
        return Err(DenyReason::OrganizationRegistrationInvalid);
    }
    if org.is_deleted() {
        return Err(DenyReason::OrganizationDeleted);
    }
    if !org.owns_since(record.created_at()) || !org.owns_since(project.created_at) {
        return Err(DenyReason::PredatesOrganization);
    }
    Ok(org)
}

/// What the rules read of a key: a decoded record ([`evaluate`]) and a held
/// one ([`Validator`], in `held.rs`) answer alike, so the rules are
/// written once.
pub(crate) trait KeyFacts {
    fn organization(&self) -> &str;
    fn disabled(&self) -> bool;
    fn created_at(&self) -> u64;
    fn expires_at(&self) -> Option<u64>;
    fn has_scope(&self, scope: Scope) -> bool;
    fn grants_project(&self, project: &str) -> bool;
}

impl KeyFacts for KeyRecord {
    fn organization(&self) -> &str {
        &self.organization
    }
    fn disabled(&self) -> bool {
        self.status == KeyStatus::Disabled
    }
    fn created_at(&self) -> u64 {
        self.created_at
    }
    fn expires_at(&self) -> Option<u64> {
        self.expires_at
    }
    fn has_scope(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
    fn grants_project(&self, project: &str) -> bool {
        KeyRecord::grants_project(self, project)
    }
}

/// The checks after the secret, the signature, the project and the
/// organization: status, creation time, expiry, the organization's key
/// policy, scope, project.
fn rules(record: &impl KeyFacts, org: &Organization, req: &Ask<'_>) -> Result<(), DenyReason> {
    if record.disabled() {
        return Err(DenyReason::Disabled);
    }
    if req.now < record.created_at() {
        return Err(DenyReason::NotYetValid);
    }
    if record.expires_at().is_some_and(|t| req.now >= t) {
        return Err(DenyReason::Expired);
    }
    if org
        .key_policy
        .permits(record.created_at(), record.expires_at())
        .is_err()
    {
        return Err(DenyReason::LifetimeExceedsPolicy);
    }
    if !record.has_scope(req.action) {
        return Err(DenyReason::ScopeNotGranted);
    }
    if !record.grants_project(req.project) {
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

fn allowed_held(record: HeldKey<'_>) -> Decision {
    Decision::Allow(Allowed {
        key_id: record.id().into(),
        name: record.name().into(),
        organization: record.organization().into(),
        level: record.level(),
        record_version: record.version(),
        expires_at: record.expires_at(),
    })
}

/// Everything a store holds that one decision depends on, as signed bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evidence {
    /// The record stored under the presented key's id, if any.
    pub key: Option<SignedRecord>,
    /// The tombstone stored under the presented key's id, if any.
    pub tombstone: Option<SignedRecord>,
    /// The registration of the requested project, if any.
    pub project: Option<SignedRecord>,
    /// The registration of the key's organization, if any.
    pub organization: Option<SignedRecord>,
}

/// Decide one request against its evidence, verifying every signature.
pub fn evaluate(req: &Request, evidence: &Evidence, trusted: &TrustedIssuers) -> Decision {
    match evaluate_inner(req, evidence, trusted) {
        Ok(r) => allowed(&r),
        Err(reason) => Decision::Deny(reason),
    }
}

fn evaluate_inner(
    req: &Request,
    evidence: &Evidence,
    trusted: &TrustedIssuers,
) -> Result<KeyRecord, DenyReason> {
    let id = parse_step(&req.presented_key)?;
    let refuse = |reason| {
        // Every early answer costs the same hash-and-compare as a wrong secret.
        let _ = secret_matches(&req.presented_key, &DUMMY_HASH);
        Err(reason)
    };
    if let Some(t) = &evidence.tombstone {
        return match trusted.open(t) {
            Ok(Body::Tombstone(Tombstone { id: dead, .. })) if dead == id => {
                refuse(DenyReason::UnknownKey)
            }
            _ => refuse(DenyReason::RecordSignatureInvalid),
        };
    }
    let Some(signed) = &evidence.key else {
        return refuse(DenyReason::UnknownKey);
    };
    let record = match KeyRecord::decode(&signed.canonical) {
        Ok(r) if r.id == id => r,
        Ok(_) => return refuse(DenyReason::UnknownKey),
        Err(_) => return refuse(DenyReason::RecordSignatureInvalid),
    };
    if !secret_matches(&req.presented_key, &record.key_hash) {
        return Err(DenyReason::SecretMismatch);
    }
    if !trusted.verify(signed) {
        return Err(DenyReason::RecordSignatureInvalid);
    }
    let registration = match &evidence.project {
        None => None,
        Some(p) => match trusted.open(p) {
            Ok(Body::Project(reg)) => Some(reg),
            _ => return Err(DenyReason::ProjectRegistrationInvalid),
        },
    };
    let ask = Ask::from(req);
    let project = project_step(registration.as_ref(), &ask)?;
    // Before the organization's evidence is opened, so that a damaged
    // registration of another organization never hides this reason.
    if record.organization != project.organization {
        return Err(DenyReason::WrongOrganization);
    }
    let org = match &evidence.organization {
        None => None,
        Some(o) => match trusted.open(o) {
            Ok(Body::Organization(org)) => Some(org),
            _ => return Err(DenyReason::OrganizationRegistrationInvalid),
        },
    };
    let org = organization_step(&record, project, org.as_ref())?;
    rules(&record, org, &ask)?;
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
    /// Held version is the same or newer (or the fact is already known).
    Stale,
}

/// Verified facts held in memory: key records, project registrations and
/// the ids of deleted keys, loaded one by one or from a snapshot (with its
/// sequence). `check` and `authorize` do no signature work.
#[derive(Debug, Clone, Default)]
pub struct Validator {
    trusted: TrustedIssuers,
    keys: KeyTable,
    projects: BTreeMap<String, ProjectRegistration>,
    organizations: BTreeMap<String, Organization>,
    forgotten: BTreeMap<String, Option<Tombstone>>,
    /// The sequence and time of the last snapshot or delta applied.
    snapshot: Option<(u64, u64)>,
}

/// A snapshot being loaded, before anything is applied. Nothing is trusted
/// before the signature verifies at the end, so what is kept meanwhile
/// costs about what the file does: a full snapshot's keys go straight into
/// a fresh compact table (never a million decoded records at once), every
/// other fact stays in its canonical bytes, decoded again only once the
/// file is accepted. A file that can no longer be accepted (its header
/// names no trusted key, or a sequence the validator cannot take) keeps
/// nothing at all while it is read to its end.
#[derive(Default)]
struct Staged {
    /// The sequence the validator held when the load began.
    held: Option<u64>,
    /// Refused by its header against `held`.
    refused: Option<SnapshotError>,
    keep: bool,
    full: bool,
    /// The key count the file announces (not trusted).
    key_count: Option<u32>,
    keys: KeyTable,
    /// Canonical bytes of the other facts, one after the other, with each
    /// one's list and end.
    raw: Vec<u8>,
    ends: Vec<(u8, usize)>,
}

impl Staged {
    fn new(held: Option<u64>) -> Self {
        Staged {
            held,
            keep: true,
            ..Staged::default()
        }
    }
}

impl Visitor for Staged {
    fn header(&mut self, h: &Header) -> bool {
        self.full = h.base.is_none();
        self.refused = match (h.base, self.held) {
            (None, Some(held)) if h.sequence <= held => Some(SnapshotError::NotNewer {
                held,
                got: h.sequence,
            }),
            (Some(base), held) if held != Some(base) => {
                Some(SnapshotError::BaseMismatch { held, base })
            }
            _ => None,
        };
        if self.refused.is_some() {
            self.stop_keeping();
        }
        true
    }
    fn count(&mut self, list: usize, n: u32) {
        if list == 1 {
            self.key_count = Some(n);
        }
    }
    fn organization(&mut self, _: Organization) {}
    fn key(&mut self, r: KeyRecord) {
        if self.keep && self.full {
            // Reserved at the first key, not at the count: by then the
            // signer is known to be trusted (else nothing is kept).
            if let Some(n) = self.key_count.take() {
                self.keys.reserve(n);
            }
            // A full snapshot's ids strictly increase, and no tombstone of
            // it names a key it carries (checked by the parser).
            self.keys.push_sorted(&r);
        }
    }
    fn project(&mut self, _: ProjectRegistration) {}
    fn tombstone(&mut self, _: Tombstone) {}
    fn fact_bytes(&mut self, list: usize, canonical: &[u8]) {
        if self.keep && !(self.full && list == 1) {
            self.raw.extend_from_slice(canonical);
            self.ends.push((list as u8, self.raw.len()));
        }
    }
    fn stop_keeping(&mut self) {
        self.keep = false;
        self.keys = KeyTable::default();
        self.raw = Vec::new();
        self.ends = Vec::new();
    }
}

/// Hold a registration (a project's or an organization's) unless the held
/// one is as new or newer, or deleted: deleted stays deleted.
fn hold<T: Registration>(held: &mut BTreeMap<String, T>, fact: T) -> LoadOutcome {
    match held.get(fact.key()) {
        Some(h) if h.version() >= fact.version() || h.is_deleted() => LoadOutcome::Stale,
        h => {
            let outcome = if h.is_some() {
                LoadOutcome::Replaced
            } else {
                LoadOutcome::Added
            };
            held.insert(String::from(fact.key()), fact);
            outcome
        }
    }
}

/// What [`hold`] needs of a registration.
trait Registration {
    fn key(&self) -> &str;
    fn version(&self) -> u64;
    fn is_deleted(&self) -> bool;
}

impl Registration for ProjectRegistration {
    fn key(&self) -> &str {
        &self.id
    }
    fn version(&self) -> u64 {
        self.version
    }
    fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }
}

impl Registration for Organization {
    fn key(&self) -> &str {
        &self.slug
    }
    fn version(&self) -> u64 {
        self.version
    }
    fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }
}

/// What [`Validator::authorize`] answers on an allow: the least a gateway
/// needs to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorized {
    /// The key id.
    pub key_id: String,
    /// The record version that allowed it.
    pub record_version: u64,
    /// When the key stops being valid, if ever.
    pub expires_at: Option<u64>,
}

impl Validator {
    /// A validator trusting these issuer keys (invalid ones are ignored).
    pub fn new(trusted: &[IssuerKey]) -> Self {
        Validator {
            trusted: TrustedIssuers::new(trusted),
            ..Validator::default()
        }
    }

    /// Verify and hold a signed fact. A key record or registration replaces
    /// an older version, never the reverse; a deleted project stays deleted;
    /// a tombstone removes its key for good.
    pub fn load(&mut self, signed: &SignedRecord) -> Result<LoadOutcome, LoadError> {
        match self.trusted.open(signed)? {
            Body::Key(record) => {
                if self.forgotten.contains_key(&record.id) {
                    return Err(LoadError::Forgotten);
                }
                match self.keys.version(&record.id) {
                    Some(held) if held >= record.version => Ok(LoadOutcome::Stale),
                    held => {
                        let outcome = if held.is_some() {
                            LoadOutcome::Replaced
                        } else {
                            LoadOutcome::Added
                        };
                        self.keys.put(&record);
                        Ok(outcome)
                    }
                }
            }
            Body::Project(reg) => Ok(hold(&mut self.projects, reg)),
            Body::Organization(org) => Ok(hold(&mut self.organizations, org)),
            Body::Tombstone(t) => {
                self.keys.remove(&t.id);
                match self.forgotten.insert(t.id.clone(), Some(t)) {
                    Some(Some(_)) => Ok(LoadOutcome::Stale),
                    _ => Ok(LoadOutcome::Added),
                }
            }
        }
    }

    /// Forget a deleted id for good (without a signed tombstone: forgetting
    /// can only take away); returns whether a record was held.
    pub fn forget(&mut self, id: &str) -> bool {
        self.forgotten.entry(String::from(id)).or_insert(None);
        self.keys.remove(id)
    }

    /// Decide one request against the held facts.
    pub fn check(&self, req: &Request) -> Decision {
        match self.decide(&Ask::from(req)) {
            Ok(record) => allowed_held(record),
            Err(r) => Decision::Deny(r),
        }
    }

    /// The hot path: decide from the presented key and the project id alone
    /// (the organization comes from the held registration), answering only
    /// what a gateway logs.
    pub fn authorize(
        &self,
        presented_key: &str,
        project: &str,
        action: Scope,
        now: u64,
    ) -> Result<Authorized, DenyReason> {
        let ask = Ask {
            presented_key,
            project,
            action,
            now,
        };
        self.decide(&ask).map(|r| Authorized {
            key_id: r.id().into(),
            record_version: r.version(),
            expires_at: r.expires_at(),
        })
    }

    fn decide(&self, req: &Ask<'_>) -> Result<HeldKey<'_>, DenyReason> {
        let id = parse_step(req.presented_key)?;
        let Some(record) = self.keys.get(id) else {
            let _ = secret_matches(req.presented_key, &DUMMY_HASH);
            return Err(DenyReason::UnknownKey);
        };
        if !secret_matches(req.presented_key, record.key_hash()) {
            return Err(DenyReason::SecretMismatch);
        }
        let project = project_step(self.projects.get(req.project), req)?;
        let org = organization_step(
            &record,
            project,
            self.organizations.get(record.organization()),
        )?;
        rules(&record, org, req)?;
        Ok(record)
    }

    /// Load a snapshot file (signature checked once, over the whole file):
    /// a full snapshot replaces everything held, atomically; a delta applies
    /// on top of exactly its base. Refused (keeping everything held) when
    /// the bytes are not canonical, the signature fails, the sequence is not
    /// newer than the held one, or a delta's base is not the held sequence
    /// (checked in that order).
    pub fn load_snapshot(&mut self, file: &[u8]) -> Result<SnapshotInfo, SnapshotError> {
        let (canonical, signature) = split_file(file)?;
        let mut stream = self.begin_snapshot(signature);
        stream.feed(canonical)?;
        self.finish_snapshot(stream)
    }

    /// [`Validator::load_snapshot`] for a file given as hex text.
    pub fn load_snapshot_hex(&mut self, text: &str) -> Result<SnapshotInfo, SnapshotError> {
        let file = decode_hex(text).ok_or(SnapshotError::NotCanonical)?;
        self.load_snapshot(&file)
    }

    /// Start loading a snapshot file given in pieces: `signature` is the
    /// file's last 64 bytes; feed the bytes before them to the stream, then
    /// [`Validator::finish_snapshot`]. Nothing held changes before the
    /// finish, and the validator answers as before meanwhile.
    pub fn begin_snapshot(&self, signature: &[u8]) -> SnapshotStream {
        SnapshotStream(Opening::new(
            self.trusted.clone(),
            signature,
            Staged::new(self.sequence()),
        ))
    }

    /// Check what was fed and apply it, as [`Validator::load_snapshot`]
    /// does the whole file.
    pub fn finish_snapshot(
        &mut self,
        stream: SnapshotStream,
    ) -> Result<SnapshotInfo, SnapshotError> {
        let (header, staged, (signer, key)) = stream.0.finish()?;
        // The stream may come from another validator: this one must trust
        // the key too.
        if !self.trusted.holds(&signer, &key) {
            return Err(SnapshotError::SignatureInvalid);
        }
        // Decided against the sequence held when the load began (facts were
        // not kept past a refusing header) and against the one held now.
        if let Some(refused) = staged.refused {
            return Err(refused);
        }
        let held = self.sequence();
        match (header.base, held) {
            (None, Some(held)) if header.sequence <= held => {
                return Err(SnapshotError::NotNewer {
                    held,
                    got: header.sequence,
                });
            }
            (Some(base), held) if held != Some(base) => {
                return Err(SnapshotError::BaseMismatch { held, base });
            }
            _ => {}
        }
        // Signed and applicable: decode what was kept in its bytes (each
        // decoded once already, when it was checked).
        let (mut organizations, mut keys, mut projects, mut tombstones) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut start = 0;
        for (list, end) in staged.ends {
            let bytes = &staged.raw[start..end];
            start = end;
            let decoded = match list {
                0 => Organization::decode(bytes).map(|o| organizations.push(o)),
                1 => KeyRecord::decode(bytes).map(|r| keys.push(r)),
                2 => ProjectRegistration::decode(bytes).map(|p| projects.push(p)),
                _ => Tombstone::decode(bytes).map(|t| tombstones.push(t)),
            };
            // The same bytes decoded once already.
            if decoded.is_err() {
                return Err(SnapshotError::NotCanonical);
            }
        }
        // Everything checked: apply (nothing above touched what is held).
        if header.base.is_none() {
            self.keys = staged.keys;
            self.projects = BTreeMap::new();
            self.organizations = BTreeMap::new();
            self.forgotten = BTreeMap::new();
        }
        self.keys
            .remove_all(tombstones.iter().map(|t| t.id.as_str()));
        for t in tombstones {
            self.forgotten.insert(t.id.clone(), Some(t));
        }
        let forgotten = &self.forgotten;
        self.keys
            .merge(keys.into_iter().filter(|r| !forgotten.contains_key(&r.id)));
        for p in projects {
            hold(&mut self.projects, p);
        }
        for o in organizations {
            hold(&mut self.organizations, o);
        }
        self.snapshot = Some((header.sequence, header.made_at));
        Ok(header.info())
    }

    /// The sequence of the last snapshot or delta loaded, if any.
    pub fn sequence(&self) -> Option<u64> {
        self.snapshot.map(|(seq, _)| seq)
    }

    /// When the last snapshot or delta loaded was made, if any: an embedder
    /// refuses to answer from data older than it accepts.
    pub fn snapshot_time(&self) -> Option<u64> {
        self.snapshot.map(|(_, at)| at)
    }

    /// How many key records are held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key record is held.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// How many project registrations are held.
    pub fn project_count(&self) -> usize {
        self.projects.len()
    }

    /// How many organizations are held.
    pub fn organization_count(&self) -> usize {
        self.organizations.len()
    }
}
