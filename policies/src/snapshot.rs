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
use crate::registry::{
    ORGANIZATION_MAGIC, Organization, PROJECT_MAGIC, ProjectRegistration, TOMBSTONE_MAGIC,
    Tombstone,
};

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

    /// Check every rule: each fact's own rules, then the parser's (the
    /// issuer key id's shape, a delta's base below its sequence, ids
    /// strictly increasing in each list, no id both a key and a
    /// tombstone): whether [`Snapshot::encode`] succeeds.
    pub fn check(&self) -> Result<(), RecordError> {
        self.encode().map(drop)
    }

    /// The canonical bytes (the ones that are signed), after checking:
    /// each fact by its own encoding, the whole by the writer.
    pub fn encode(&self) -> Result<Vec<u8>, RecordError> {
        let mut w =
            SnapshotWriter::new(&self.issuer_key_id, self.sequence, self.base, self.made_at);
        w.reserve(64 + 110 * self.keys.len());
        for o in &self.organizations {
            w.add(&o.encode()?)?;
        }
        for r in &self.keys {
            w.add(&r.encode()?)?;
        }
        for p in &self.projects {
            w.add(&p.encode()?)?;
        }
        for t in &self.tombstones {
            w.add(&t.encode()?)?;
        }
        w.finish()
    }

    /// Decode canonical bytes; refuses anything `encode` would not produce.
    pub fn decode(bytes: &[u8]) -> Result<Snapshot, RecordError> {
        let mut all = Collect::default();
        let header = visit(bytes, &mut all)?;
        Ok(all.into_snapshot(header))
    }
}

/// Canonical snapshot bytes made one fact at a time from facts already in
/// their canonical bytes (as a store keeps them, signed): a snapshot of a
/// million keys is then never a million decoded facts at once. Facts come
/// kind after kind (organizations, key records, project registrations,
/// tombstones), each kind by increasing id; [`SnapshotWriter::finish`]
/// checks the whole with the parser every validator uses, so a writer can
/// produce nothing a validator would refuse as not canonical.
#[derive(Debug, Clone)]
pub struct SnapshotWriter {
    out: Vec<u8>,
    /// The list being written (0..4: organizations, keys, projects,
    /// tombstones) and where its count goes.
    list: usize,
    count_at: usize,
    count: u32,
    failed: bool,
}

impl SnapshotWriter {
    /// A full snapshot (`base` none) or a delta, with this header.
    pub fn new(issuer_key_id: &str, sequence: u64, base: Option<u64>, made_at: u64) -> Self {
        let mut out = Vec::new();
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.push(SNAPSHOT_FORMAT);
        put_str(&mut out, issuer_key_id);
        out.extend_from_slice(&sequence.to_be_bytes());
        put_opt(&mut out, base.as_ref(), |o, b| {
            o.extend_from_slice(&b.to_be_bytes())
        });
        out.extend_from_slice(&made_at.to_be_bytes());
        let count_at = out.len();
        out.extend_from_slice(&[0; 4]);
        SnapshotWriter {
            out,
            list: 0,
            count_at,
            count: 0,
            // A longer id would not even encode its length; any other bad
            // header is refused by the check at the end.
            failed: issuer_key_id.len() > 64,
        }
    }

    /// Room for `bytes` more bytes.
    pub fn reserve(&mut self, bytes: usize) {
        self.out.reserve(bytes);
    }

    /// One fact's canonical bytes, after the facts of its kind with lower
    /// ids and the facts of the kinds before it. Its kind is told by its
    /// magic; everything else is checked at the end.
    pub fn add(&mut self, canonical: &[u8]) -> Result<(), RecordError> {
        let list = match canonical.get(..3) {
            Some(m) if m == ORGANIZATION_MAGIC => 0,
            Some(m) if m == crate::record::MAGIC => 1,
            Some(m) if m == PROJECT_MAGIC => 2,
            Some(m) if m == TOMBSTONE_MAGIC => 3,
            _ => 4,
        };
        let len = u32::try_from(canonical.len()).ok();
        let (Some(len), false, true) = (len, self.failed, (self.list..4).contains(&list)) else {
            self.failed = true;
            return Err(RecordError::NotCanonical);
        };
        while self.list < list {
            self.close_list();
        }
        self.count = self.count.saturating_add(1);
        self.out.extend_from_slice(&len.to_be_bytes());
        self.out.extend_from_slice(canonical);
        Ok(())
    }

    /// The canonical bytes to sign, once every rule a validator checks
    /// holds.
    pub fn finish(mut self) -> Result<Vec<u8>, RecordError> {
        if self.failed {
            return Err(RecordError::NotCanonical);
        }
        while self.list < 4 {
            self.close_list();
        }
        visit(&self.out, &mut Skip)?;
        Ok(self.out)
    }

    /// Write the current list's count and open the next list.
    fn close_list(&mut self) {
        self.out[self.count_at..self.count_at + 4].copy_from_slice(&self.count.to_be_bytes());
        self.list += 1;
        self.count = 0;
        if self.list < 4 {
            self.count_at = self.out.len();
            self.out.extend_from_slice(&[0; 4]);
        }
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
    /// How many facts list `list` (0..4: organizations, keys, projects,
    /// tombstones) says it holds, before them: not trusted yet (the
    /// signature is checked at the end).
    fn count(&mut self, _list: usize, _n: u32) {}
    fn organization(&mut self, o: Organization);
    fn key(&mut self, r: KeyRecord);
    fn project(&mut self, p: ProjectRegistration);
    fn tombstone(&mut self, t: Tombstone);
    /// The canonical bytes of the fact of list `list` just handed over.
    fn fact_bytes(&mut self, _list: usize, _canonical: &[u8]) {}
    /// The file can no longer be accepted (its signature cannot verify):
    /// keep nothing more of it.
    fn stop_keeping(&mut self) {}
}

/// Keeps nothing: for checks and counts.
pub(crate) struct Skip;

impl Visitor for Skip {
    fn organization(&mut self, _: Organization) {}
    fn key(&mut self, _: KeyRecord) {}
    fn project(&mut self, _: ProjectRegistration) {}
    fn tombstone(&mut self, _: Tombstone) {}
}

/// Every fact, decoded.
#[derive(Default)]
pub(crate) struct Collect {
    organizations: Vec<Organization>,
    keys: Vec<KeyRecord>,
    projects: Vec<ProjectRegistration>,
    tombstones: Vec<Tombstone>,
}

impl Collect {
    pub(crate) fn into_snapshot(self, header: Header) -> Snapshot {
        Snapshot {
            issuer_key_id: header.issuer_key_id,
            sequence: header.sequence,
            base: header.base,
            made_at: header.made_at,
            organizations: self.organizations,
            keys: self.keys,
            projects: self.projects,
            tombstones: self.tombstones,
        }
    }
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

/// The longest header a snapshot can have: magic, format, the issuer key
/// id (16 characters after its length), sequence, a present base, made-at.
/// Every canonical snapshot is longer (its four list counts follow).
pub(crate) const MAX_HEADER: usize = 3 + 1 + 2 + 16 + 8 + 1 + 8 + 8;

/// Longer than any canonical fact: the largest, a key record selecting
/// [`crate::record::MAX_SELECTED`] projects of 64 characters, is about
/// 69 KB (tested).
pub(crate) const MAX_FACT: usize = 1 << 17;

/// Where [`Parser`] stands in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Header,
    /// Before the count of list `0..4` (organizations, keys, projects,
    /// tombstones).
    Count(usize),
    /// Inside list `list`, `left` facts to go.
    Facts {
        list: usize,
        left: u32,
    },
    Done,
}

/// Decodes canonical snapshot bytes given in pieces of any size, one fact
/// at a time, checking every snapshot rule on the way (the
/// issuer key id's shape, a delta's base below its sequence, each fact's
/// own rules, ids strictly increasing in each list, no id both a key and a
/// tombstone). A fact split between pieces waits, alone, for the next one:
/// nothing else of the file is kept. An error may come after some facts
/// were handed over: a visitor applies nothing before the end.
#[derive(Debug)]
pub(crate) struct Parser {
    step: Step,
    header: Option<Header>,
    /// Bytes of a fact (or the header) not yet whole.
    pending: Vec<u8>,
    /// The previous fact's id in the current list.
    last: Option<Vec<u8>>,
    /// Key ids (11 bytes each), to refuse a tombstone of a carried key.
    key_ids: KeyIds,
    carried: bool,
}

impl Parser {
    pub(crate) fn new() -> Parser {
        Parser {
            step: Step::Header,
            header: None,
            pending: Vec::new(),
            last: None,
            key_ids: KeyIds::default(),
            carried: false,
        }
    }

    /// The header, once the pieces given held it whole.
    pub(crate) fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }

    /// The next piece of the canonical bytes.
    pub(crate) fn feed(&mut self, piece: &[u8], v: &mut impl Visitor) -> Result<(), RecordError> {
        if self.pending.is_empty() {
            let used = self.advance(piece, v)?;
            self.pending.extend_from_slice(&piece[used..]);
        } else {
            let mut buf = core::mem::take(&mut self.pending);
            buf.extend_from_slice(piece);
            let used = self.advance(&buf, v)?;
            buf.drain(..used);
            self.pending = buf;
        }
        Ok(())
    }

    /// The end of the bytes: the header, if they were a whole canonical
    /// snapshot.
    pub(crate) fn finish(mut self) -> Result<Header, RecordError> {
        if self.step != Step::Done || !self.pending.is_empty() || self.carried {
            return Err(RecordError::NotCanonical);
        }
        self.header.take().ok_or(RecordError::NotCanonical)
    }

    /// Decode every whole item at the start of `buf`; how many bytes that
    /// used. Bytes after the last list are an error at once.
    fn advance(&mut self, buf: &[u8], v: &mut impl Visitor) -> Result<usize, RecordError> {
        let mut r = Reader::new(buf);
        loop {
            let rest = &buf[r.pos..];
            match self.step {
                Step::Header => {
                    if rest.len() < MAX_HEADER {
                        return Ok(r.pos);
                    }
                    let header = read_header(&mut r)?;
                    if !v.header(&header) {
                        return Err(RecordError::NotCanonical);
                    }
                    self.header = Some(header);
                    self.step = Step::Count(0);
                }
                Step::Count(list) => {
                    if rest.len() < 4 {
                        return Ok(r.pos);
                    }
                    let n = r.u32()?;
                    if let Some(h) = self.header.as_mut() {
                        h.counts[list] = n;
                    }
                    v.count(list, n);
                    self.last = None;
                    self.step = match n {
                        0 => after(list),
                        left => Step::Facts { list, left },
                    };
                }
                Step::Facts { list, left } => {
                    let Some(len) = rest.get(..4) else {
                        return Ok(r.pos);
                    };
                    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]);
                    let len = usize::try_from(len).map_err(|_| RecordError::NotCanonical)?;
                    // Refused at once: a fact cut between pieces waits for
                    // the next piece, and no fact is longer.
                    if len > MAX_FACT {
                        return Err(RecordError::NotCanonical);
                    }
                    if rest.len() - 4 < len {
                        return Ok(r.pos);
                    }
                    r.u32()?;
                    self.fact(list, r.take(len)?, v)?;
                    self.step = match left {
                        1 => after(list),
                        left => Step::Facts {
                            list,
                            left: left - 1,
                        },
                    };
                }
                Step::Done if rest.is_empty() => return Ok(r.pos),
                Step::Done => return Err(RecordError::NotCanonical),
            }
        }
    }

    /// One fact of list `list`: decoded with its own rules, in order,
    /// handed over.
    fn fact(&mut self, list: usize, bytes: &[u8], v: &mut impl Visitor) -> Result<(), RecordError> {
        match list {
            0 => {
                let o = Organization::decode(bytes)?;
                self.in_order(o.slug.as_bytes())?;
                v.organization(o);
            }
            1 => {
                let k = KeyRecord::decode(bytes)?;
                self.in_order(k.id.as_bytes())?;
                if let Ok(id) = k.id.as_bytes().try_into() {
                    self.key_ids.push(id);
                }
                v.key(k);
            }
            2 => {
                let p = ProjectRegistration::decode(bytes)?;
                self.in_order(p.id.as_bytes())?;
                v.project(p);
            }
            _ => {
                let t = Tombstone::decode(bytes)?;
                self.in_order(t.id.as_bytes())?;
                self.carried |= <&[u8; crate::key::ID_LEN]>::try_from(t.id.as_bytes())
                    .is_ok_and(|id| self.key_ids.contains(id));
                v.tombstone(t);
            }
        }
        v.fact_bytes(list, bytes);
        Ok(())
    }

    /// Ids strictly increase within each list.
    fn in_order(&mut self, id: &[u8]) -> Result<(), RecordError> {
        if self.last.as_deref().is_some_and(|last| id <= last) {
            return Err(RecordError::NotCanonical);
        }
        let last = self.last.get_or_insert_with(Vec::new);
        last.clear();
        last.extend_from_slice(id);
        Ok(())
    }
}

/// Ids in increasing order, kept in chunks of a fixed size: no copy of
/// the whole list as it grows (a WebAssembly memory keeps every page it
/// ever touched), and nothing reserved from a count not yet trusted.
#[derive(Debug, Default)]
struct KeyIds {
    chunks: Vec<Vec<[u8; crate::key::ID_LEN]>>,
}

impl KeyIds {
    const CHUNK: usize = 4096;

    /// Add an id above every one held.
    fn push(&mut self, id: [u8; crate::key::ID_LEN]) {
        match self.chunks.last_mut() {
            Some(last) if last.len() < Self::CHUNK => last.push(id),
            _ => {
                let mut chunk = Vec::with_capacity(Self::CHUNK);
                chunk.push(id);
                self.chunks.push(chunk);
            }
        }
    }

    fn contains(&self, id: &[u8; crate::key::ID_LEN]) -> bool {
        let c = self
            .chunks
            .partition_point(|ch| ch.first().is_some_and(|first| first <= id))
            .saturating_sub(1);
        self.chunks
            .get(c)
            .is_some_and(|ch| ch.binary_search(id).is_ok())
    }
}

/// The step after list `list`.
fn after(list: usize) -> Step {
    if list >= 3 {
        Step::Done
    } else {
        Step::Count(list + 1)
    }
}

fn read_header(r: &mut Reader<'_>) -> Result<Header, RecordError> {
    if r.take(3)? != SNAPSHOT_MAGIC || r.u8()? != SNAPSHOT_FORMAT {
        return Err(RecordError::NotCanonical);
    }
    let header = Header {
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
    Ok(header)
}

/// Decode whole canonical snapshot bytes with a [`Parser`].
pub(crate) fn visit(bytes: &[u8], v: &mut impl Visitor) -> Result<Header, RecordError> {
    let mut parser = Parser::new();
    parser.feed(bytes, v)?;
    parser.finish()
}

fn valid_issuer_key_id(id: &str) -> bool {
    let id = id.as_bytes();
    id.len() == 16
        && id
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
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

#[cfg(test)]
mod key_ids_tests {
    use super::KeyIds;
    use alloc::format;

    fn id(n: u32) -> [u8; crate::key::ID_LEN] {
        format!("{:011}", n * 2).as_bytes().try_into().unwrap()
    }

    #[test]
    fn ids_in_chunks_are_found_and_only_they() {
        let mut ids = KeyIds::default();
        let n = 3 * KeyIds::CHUNK as u32 + 7;
        for i in 0..n {
            ids.push(id(i));
        }
        assert_eq!(ids.chunks.len(), 4);
        for i in 0..n {
            assert!(ids.contains(&id(i)), "{i}");
            // Odd numbers sit between held ids; 2n is past the last.
            let between: [u8; crate::key::ID_LEN] =
                format!("{:011}", i * 2 + 1).as_bytes().try_into().unwrap();
            assert!(!ids.contains(&between), "{i}");
        }
        assert!(!ids.contains(&id(n)));
        assert!(!ids.contains(b"-----------"));
        assert!(!KeyIds::default().contains(&id(0)));
    }
}
