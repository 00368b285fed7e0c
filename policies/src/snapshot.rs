//! Snapshots: every fact a validator needs, signed as a whole, with the
//! store's sequence number; and deltas, which carry what changed between two
//! sequence numbers and apply only on top of exactly their base.
//!
//! # Snapshot, format 2
//!
//! | # | field        | encoding                                                   |
//! |---|--------------|------------------------------------------------------------|
//! | 0 | magic        | the 3 bytes `KGS`                                          |
//! | 1 | format       | `u8` = 2 (format 1, without organizations, is refused)     |
//! | 2 | issuer       | `str`, the signing issuer key id (16 lowercase hex)        |
//! | 3 | sequence     | `u64`, the store's admin-write counter it reflects         |
//! | 4 | base         | `opt<u64>`: absent for a full snapshot; for a delta, the sequence it applies on, lower than `sequence` |
//! | 5 | made-at      | `u64`, when it was made                                    |
//! | 6 | organizations | `u32` count, then per organization `u32` length and its canonical bytes, slugs strictly increasing |
//! | 7 | keys         | the same for key records, ids strictly increasing          |
//! | 8 | projects     | the same for project registrations                         |
//! | 9 | tombstones   | the same for key tombstones; no id is both a key and a tombstone |
//!
//! The file is the canonical bytes followed by the 64-byte ed25519 signature
//! over them. A full snapshot holds every organization and every project
//! registration (deleted ones included), every live key record and every
//! tombstone; a delta holds
//! the facts that changed after its base.

use alloc::string::String;
use alloc::vec::Vec;

use crate::record::{KeyRecord, Reader, RecordError, put_opt, put_str};
use crate::registry::{Organization, ProjectRegistration, Tombstone};

/// First bytes of a canonical snapshot.
pub const SNAPSHOT_MAGIC: &[u8; 3] = b"KGS";
/// The snapshot format this crate writes and reads.
pub const SNAPSHOT_FORMAT: u8 = 2;
/// Length of the signature at the end of a snapshot file.
pub const SIGNATURE_LEN: usize = 64;

/// A snapshot or a delta, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Id of the issuer key that signs it.
    pub issuer_key_id: String,
    /// The store sequence number it reflects.
    pub sequence: u64,
    /// For a delta, the sequence it applies on; `None` for a full snapshot.
    pub base: Option<u64>,
    /// When it was made.
    pub made_at: u64,
    /// Organizations, deleted ones included (in a delta, the changed ones).
    pub organizations: Vec<Organization>,
    /// Key records (live ones; in a delta, the changed ones).
    pub keys: Vec<KeyRecord>,
    /// Project registrations, deleted ones included.
    pub projects: Vec<ProjectRegistration>,
    /// Key tombstones.
    pub tombstones: Vec<Tombstone>,
}

/// What a snapshot holds, for callers that want to log or check it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Its sequence number.
    pub sequence: u64,
    /// The base of a delta.
    pub base: Option<u64>,
    /// When it was made.
    pub made_at: u64,
    /// How many organizations it carries.
    pub organizations: u32,
    /// How many key records it carries.
    pub keys: u32,
    /// How many project registrations.
    pub projects: u32,
    /// How many tombstones.
    pub tombstones: u32,
}

/// Why a snapshot or delta is refused. The validator keeps what it held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Too short, or its bytes are not a canonical snapshot.
    #[error("not a canonical keygate snapshot")]
    NotCanonical,
    /// The signature does not verify against a trusted issuer key.
    #[error("snapshot signature invalid")]
    SignatureInvalid,
    /// Its sequence is not higher than the one held (a rollback, or a replay).
    #[error("snapshot sequence {got} is not newer than the held {held}")]
    NotNewer {
        /// The held sequence.
        held: u64,
        /// The snapshot's.
        got: u64,
    },
    /// A delta whose base is not the held sequence (or nothing is held).
    #[error("delta applies on sequence {base}, but the held sequence is {held:?}")]
    BaseMismatch {
        /// The held sequence, if any.
        held: Option<u64>,
        /// The delta's base.
        base: u64,
    },
}

impl Snapshot {
    /// Counts and header.
    pub fn info(&self) -> SnapshotInfo {
        let n = |len: usize| u32::try_from(len).unwrap_or(u32::MAX);
        SnapshotInfo {
            sequence: self.sequence,
            base: self.base,
            made_at: self.made_at,
            organizations: n(self.organizations.len()),
            keys: n(self.keys.len()),
            projects: n(self.projects.len()),
            tombstones: n(self.tombstones.len()),
        }
    }

    /// Check every rule: the issuer key id's shape, a delta's base below its
    /// sequence, every fact's own rules, ids strictly increasing in each
    /// list, and no id both a key and a tombstone.
    pub fn check(&self) -> Result<(), RecordError> {
        if !valid_issuer_key_id(&self.issuer_key_id) {
            return Err(RecordError::NotCanonical);
        }
        if self.base.is_some_and(|b| b >= self.sequence) {
            return Err(RecordError::NotCanonical);
        }
        for o in &self.organizations {
            o.check()?;
        }
        for r in &self.keys {
            r.check()?;
        }
        for p in &self.projects {
            p.check()?;
        }
        for t in &self.tombstones {
            t.check()?;
        }
        let keys: Vec<&str> = self.keys.iter().map(|r| r.id.as_str()).collect();
        let projects: Vec<&str> = self.projects.iter().map(|p| p.id.as_str()).collect();
        let tombs: Vec<&str> = self.tombstones.iter().map(|t| t.id.as_str()).collect();
        let orgs: Vec<&str> = self.organizations.iter().map(|o| o.slug.as_str()).collect();
        if [orgs, keys, projects, tombs]
            .iter()
            .any(|ids| !ids.windows(2).all(|w| w[0] < w[1]))
        {
            return Err(RecordError::NotCanonical);
        }
        if self.tombstones.iter().any(|t| {
            self.keys
                .binary_search_by(|r| r.id.as_str().cmp(&t.id))
                .is_ok()
        }) {
            return Err(RecordError::NotCanonical);
        }
        Ok(())
    }

    /// The canonical bytes (the ones that are signed), after checking.
    pub fn encode(&self) -> Result<Vec<u8>, RecordError> {
        self.check()?;
        let mut out = Vec::with_capacity(64 + 200 * self.keys.len());
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.push(SNAPSHOT_FORMAT);
        put_str(&mut out, &self.issuer_key_id);
        out.extend_from_slice(&self.sequence.to_be_bytes());
        put_opt(&mut out, self.base.as_ref(), |o, b| {
            o.extend_from_slice(&b.to_be_bytes())
        });
        out.extend_from_slice(&self.made_at.to_be_bytes());
        put_list(
            &mut out,
            self.organizations.iter().map(Organization::encode),
        )?;
        put_list(&mut out, self.keys.iter().map(KeyRecord::encode))?;
        put_list(
            &mut out,
            self.projects.iter().map(ProjectRegistration::encode),
        )?;
        put_list(&mut out, self.tombstones.iter().map(Tombstone::encode))?;
        Ok(out)
    }

    /// Decode canonical bytes; refuses anything `encode` would not produce.
    pub fn decode(bytes: &[u8]) -> Result<Snapshot, RecordError> {
        let mut all = Collect::default();
        let header = visit(bytes, &mut all)?;
        Ok(Snapshot {
            issuer_key_id: header.issuer_key_id,
            sequence: header.sequence,
            base: header.base,
            made_at: header.made_at,
            organizations: all.organizations,
            keys: all.keys,
            projects: all.projects,
            tombstones: all.tombstones,
        })
    }
}

/// A snapshot's header, and how many facts of each kind followed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) issuer_key_id: String,
    pub(crate) sequence: u64,
    pub(crate) base: Option<u64>,
    pub(crate) made_at: u64,
    pub(crate) counts: [u32; 4],
}

impl Header {
    pub(crate) fn info(&self) -> SnapshotInfo {
        let [organizations, keys, projects, tombstones] = self.counts;
        SnapshotInfo {
            sequence: self.sequence,
            base: self.base,
            made_at: self.made_at,
            organizations,
            keys,
            projects,
            tombstones,
        }
    }
}

/// Where [`visit`] hands each fact, in file order, once it passed its own
/// rules and its place in the order: nothing is materialised but what the
/// visitor keeps (a validator holds a million keys in its compact form,
/// never as a million decoded records at once).
pub(crate) trait Visitor {
    /// The header, before any fact; `false` stops the decoding there.
    fn header(&mut self, _header: &Header) -> bool {
        true
    }
    fn organization(&mut self, o: Organization);
    fn key(&mut self, r: KeyRecord);
    fn project(&mut self, p: ProjectRegistration);
    fn tombstone(&mut self, t: Tombstone);
}

#[derive(Default)]
struct Collect {
    organizations: Vec<Organization>,
    keys: Vec<KeyRecord>,
    projects: Vec<ProjectRegistration>,
    tombstones: Vec<Tombstone>,
}

impl Visitor for Collect {
    fn organization(&mut self, o: Organization) {
        self.organizations.push(o);
    }
    fn key(&mut self, r: KeyRecord) {
        self.keys.push(r);
    }
    fn project(&mut self, p: ProjectRegistration) {
        self.projects.push(p);
    }
    fn tombstone(&mut self, t: Tombstone) {
        self.tombstones.push(t);
    }
}

/// Decode canonical snapshot bytes one fact at a time, checking every rule
/// of [`Snapshot::check`] on the way (the issuer key id's shape, a delta's
/// base below its sequence, each fact's own rules, ids strictly increasing
/// in each list, no id both a key and a tombstone). An error may come after
/// some facts were handed over: a visitor applies nothing before the end.
pub(crate) fn visit(bytes: &[u8], v: &mut impl Visitor) -> Result<Header, RecordError> {
    let mut r = Reader::new(bytes);
    if r.take(3)? != SNAPSHOT_MAGIC || r.u8()? != SNAPSHOT_FORMAT {
        return Err(RecordError::NotCanonical);
    }
    let mut header = Header {
        issuer_key_id: r.str()?,
        sequence: r.u64()?,
        base: r.opt(|r| r.u64())?,
        made_at: r.u64()?,
        counts: [0; 4],
    };
    if !valid_issuer_key_id(&header.issuer_key_id)
        || header.base.is_some_and(|b| b >= header.sequence)
    {
        return Err(RecordError::NotCanonical);
    }
    if !v.header(&header) {
        return Err(RecordError::NotCanonical);
    }
    header.counts[0] = each(
        &mut r,
        Organization::decode,
        |o| o.slug.as_bytes(),
        |o| v.organization(o),
    )?;
    // Key ids, kept (11 bytes each) to refuse a tombstone of a carried key.
    let mut key_ids: Vec<[u8; crate::key::ID_LEN]> = Vec::new();
    header.counts[1] = each(
        &mut r,
        KeyRecord::decode,
        |k| k.id.as_bytes(),
        |k| {
            if let Ok(id) = k.id.as_bytes().try_into() {
                key_ids.push(id);
            }
            v.key(k)
        },
    )?;
    header.counts[2] = each(
        &mut r,
        ProjectRegistration::decode,
        |p| p.id.as_bytes(),
        |p| v.project(p),
    )?;
    let mut carried = false;
    header.counts[3] = each(
        &mut r,
        Tombstone::decode,
        |t| t.id.as_bytes(),
        |t| {
            carried |= <&[u8; crate::key::ID_LEN]>::try_from(t.id.as_bytes())
                .is_ok_and(|id| key_ids.binary_search(id).is_ok());
            v.tombstone(t)
        },
    )?;
    if carried || !r.done() {
        return Err(RecordError::NotCanonical);
    }
    Ok(header)
}

fn valid_issuer_key_id(id: &str) -> bool {
    let id = id.as_bytes();
    id.len() == 16
        && id
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// One list: a `u32` count, then each fact's length and canonical bytes,
/// decoded (with its own rules) and handed to `to`, ids strictly
/// increasing. Returns the count.
fn each<T>(
    r: &mut Reader<'_>,
    decode: impl Fn(&[u8]) -> Result<T, RecordError>,
    id: impl Fn(&T) -> &[u8],
    mut to: impl FnMut(T),
) -> Result<u32, RecordError> {
    let n = r.u32()?;
    let mut last: Vec<u8> = Vec::new();
    for i in 0..n {
        let len = usize::try_from(r.u32()?).map_err(|_| RecordError::NotCanonical)?;
        let fact = decode(r.take(len)?)?;
        let this = id(&fact);
        if i > 0 && this <= last.as_slice() {
            return Err(RecordError::NotCanonical);
        }
        last.clear();
        last.extend_from_slice(this);
        to(fact);
    }
    Ok(n)
}

/// Split a snapshot file into its canonical bytes and its signature.
pub fn split_file(file: &[u8]) -> Result<(&[u8], &[u8; SIGNATURE_LEN]), SnapshotError> {
    let at = file
        .len()
        .checked_sub(SIGNATURE_LEN)
        .ok_or(SnapshotError::NotCanonical)?;
    let (canonical, sig) = file.split_at(at);
    let sig: &[u8; SIGNATURE_LEN] = sig.try_into().map_err(|_| SnapshotError::NotCanonical)?;
    if canonical.get(..3) != Some(SNAPSHOT_MAGIC.as_slice()) {
        return Err(SnapshotError::NotCanonical);
    }
    Ok((canonical, sig))
}

/// Decode lowercase or uppercase hex, as runtimes that pass strings far
/// faster than byte lists send a snapshot (wasmtime-py: about 2.6 ns per
/// character against 2.5 µs per byte). `None` on anything else.
pub fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let b = text.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    b.chunks_exact(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

fn put_list(
    out: &mut Vec<u8>,
    items: impl ExactSizeIterator<Item = Result<Vec<u8>, RecordError>>,
) -> Result<(), RecordError> {
    let n = u32::try_from(items.len()).map_err(|_| RecordError::NotCanonical)?;
    out.extend_from_slice(&n.to_be_bytes());
    for item in items {
        let bytes = item?;
        let len = u32::try_from(bytes.len()).map_err(|_| RecordError::NotCanonical)?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&bytes);
    }
    Ok(())
}
