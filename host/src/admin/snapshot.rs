//! Snapshots of the store for validators elsewhere: every verified fact,
//! signed as a whole with the store's sequence number.

use subtle::ConstantTimeEq;

use crate::error::{Error, Result};
use crate::runtime::WriterHandle;
use crate::runtime::bindings::{RecordError, SignedBody, Snapshot, SnapshotInfo};
use crate::schema::change;

use super::{KEY_RECORD, KEY_TOMBSTONE, Keygate, ORGANIZATION, PROJECT_REGISTRATION};

/// A snapshot file just made.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotFile {
    /// The file: canonical bytes, then the 64-byte ed25519 signature.
    pub bytes: Vec<u8>,
    /// Its header and counts.
    pub info: SnapshotInfo,
}

impl Keygate {
    /// A full snapshot of the store at `at`: every organization, every live
    /// key record, every project registration and every tombstone, each verified first (a
    /// tampered fact is never re-signed into a snapshot: the snapshot is
    /// refused with [`Error::Tampered`]), signed as a whole.
    ///
    /// With `since`, a delta: only the facts changed after that sequence
    /// (facts whose change was not recorded are included: applying an
    /// unchanged fact again changes nothing), to be applied on a validator
    /// holding exactly sequence `since`.
    pub fn snapshot(&mut self, at: u64, since: Option<u64>) -> Result<SnapshotFile> {
        let sequence = self.store.sequence()?;
        if let Some(base) = since
            && base >= sequence
        {
            return Err(Error::NothingSince {
                since: base,
                sequence,
            });
        }
        // A throw-away instance writes the file: its memory grows to the
        // file's size, and a WebAssembly memory never shrinks. Facts go to
        // it in their stored canonical bytes, a batch at a time, and are
        // read from the store as they are used: a million keys are never a
        // million decoded records in memory at once.
        let mut m = self.new_module()?;
        let issuer_id = self.issuer.id().to_string();
        let w = m.snapshot_writer(&issuer_id, sequence, since, at)?;
        let mut facts = Facts {
            w,
            batch: Vec::with_capacity(Facts::BATCH),
        };
        for item in self.store.each_organization() {
            let (slug, signed) = item?;
            match self.stored_fact(change::ORGANIZATION, ORGANIZATION, &slug, &signed, since)? {
                None => continue,
                Some(SignedBody::Organization(_)) => facts.push(&mut m, signed.canonical),
                Some(_) => return Err(tampered(ORGANIZATION, &slug)),
            }
            .or_else(|e| self.refused(e))?;
        }
        for item in self.store.each_key() {
            let (id, signed) = item?;
            // A record beside a tombstone is not live (the tombstone wins).
            if self.store.is_deleted(&id)? {
                continue;
            }
            match self.stored_fact(change::KEY, KEY_RECORD, &id, &signed, since)? {
                None => continue,
                // Only keys their organization's listing holds are live.
                Some(SignedBody::Key(r)) => {
                    if !self.store.key_listed(&r.organization, &id)? {
                        continue;
                    }
                    facts.push(&mut m, signed.canonical)
                }
                Some(_) => return Err(tampered(KEY_RECORD, &id)),
            }
            .or_else(|e| self.refused(e))?;
        }
        for item in self.store.each_project() {
            let (id, signed) = item?;
            match self.stored_fact(change::PROJECT, PROJECT_REGISTRATION, &id, &signed, since)? {
                None => continue,
                Some(SignedBody::Project(_)) => facts.push(&mut m, signed.canonical),
                Some(_) => return Err(tampered(PROJECT_REGISTRATION, &id)),
            }
            .or_else(|e| self.refused(e))?;
        }
        for item in self.store.each_tombstone() {
            let (id, signed) = item?;
            match self.stored_fact(change::TOMBSTONE, KEY_TOMBSTONE, &id, &signed, since)? {
                None => continue,
                Some(SignedBody::Tombstone(_)) => facts.push(&mut m, signed.canonical),
                Some(_) => return Err(tampered(KEY_TOMBSTONE, &id)),
            }
            .or_else(|e| self.refused(e))?;
        }
        facts.flush(&mut m).or_else(|e| self.refused(e))?;
        let bytes = match m.snapshot_writer_finish(facts.w)? {
            Ok(b) => b,
            Err(e) => return Err(self.policy(e)),
        };
        self.sign_checked(&mut m, bytes)
    }

    /// A snapshot write stopped by `e`: a policy refusal in words, any
    /// other error as it is.
    fn refused(&mut self, e: Refusal) -> Result<()> {
        Err(match e {
            Refusal::Policy(e) => self.policy(e),
            Refusal::Other(e) => e,
        })
    }

    /// Encode a snapshot or delta in the component, sign it as a whole,
    /// and check the file as a validator would.
    pub(crate) fn seal(&mut self, snap: &Snapshot) -> Result<SnapshotFile> {
        // A fresh instance for the whole snapshot: lowering it grows the
        // guest's memory to the size of every fact decoded (hundreds of MB
        // at a million keys), and a WebAssembly memory never shrinks, so
        // the long-lived instance would keep that size for the life of the
        // process. Dropped at the end of this call, with its memory.
        let mut m = self.new_module()?;
        let bytes = match m.encode_snapshot(snap)? {
            Ok(b) => b,
            Err(e) => return Err(self.policy(e)),
        };
        self.sign_checked(&mut m, bytes)
    }

    /// Sign canonical snapshot bytes and check the file as a validator
    /// would, in `m`.
    fn sign_checked(
        &mut self,
        m: &mut crate::runtime::Module,
        mut bytes: Vec<u8>,
    ) -> Result<SnapshotFile> {
        let signed = self.issuer.sign(bytes.clone());
        bytes.extend_from_slice(&signed.signature);
        match m.inspect_snapshot(&bytes, &self.trusted())? {
            Ok(info) => Ok(SnapshotFile { bytes, info }),
            Err(e) => Err(Error::System(format!(
                "the snapshot just made does not verify ({e:?})"
            ))),
        }
    }
}

/// Facts on their way to a `snapshot-writer`, a batch at a time (one call
/// into the component per fact would cost more than the fact).
struct Facts {
    w: WriterHandle,
    batch: Vec<Vec<u8>>,
}

/// Why a fact could not be written.
enum Refusal {
    Policy(RecordError),
    Other(Error),
}

impl From<Error> for Refusal {
    fn from(e: Error) -> Self {
        Refusal::Other(e)
    }
}

impl Facts {
    const BATCH: usize = 1024;

    fn push(&mut self, m: &mut crate::runtime::Module, canonical: Vec<u8>) -> Result<(), Refusal> {
        self.batch.push(canonical);
        if self.batch.len() >= Self::BATCH {
            self.flush(m)?;
        }
        Ok(())
    }

    fn flush(&mut self, m: &mut crate::runtime::Module) -> Result<(), Refusal> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let added = m
            .snapshot_writer_add(self.w, &self.batch)
            .map_err(Error::from)?;
        self.batch.clear();
        added.map_err(Refusal::Policy)
    }
}

impl Keygate {
    /// A stored fact for a snapshot, or for a delta since `since`; `None`
    /// when a delta leaves it out.
    ///
    /// Its change-index entry is checked once: the entry's tag (an HMAC
    /// under a key only the issuer secret gives, over the kind, the id, the
    /// sequence and these exact stored bytes) proves keygate wrote these
    /// bytes at that sequence. Such a fact is decoded without checking its
    /// signature again (an ed25519 check in the component costs about 60
    /// µs: a minute at a million keys), and a delta leaves it out when it
    /// last changed at or before the base. Any other fact is signature-
    /// checked as everywhere and always included: an entry lowered,
    /// planted, or put back without its fact includes the fact (applying an
    /// unchanged fact again changes nothing).
    fn stored_fact(
        &mut self,
        change_kind: u8,
        kind: &'static str,
        id: &str,
        signed: &crate::runtime::bindings::SignedRecord,
        since: Option<u64>,
    ) -> Result<Option<SignedBody>> {
        let vouched = match self.store.changed_at(change_kind, id)? {
            Some((at, Some(tag))) => crate::schema::encode_signed(signed)
                .ok()
                .filter(|value| {
                    bool::from(
                        self.issuer
                            .change_tag(change_kind, id, at, value)
                            .ct_eq(&tag),
                    )
                })
                .map(|_| at),
            _ => None,
        };
        if let (Some(at), Some(base)) = (vouched, since)
            && at <= base
        {
            return Ok(None);
        }
        if vouched.is_some()
            && let Ok(body) = self.module.decode(&signed.canonical)?
            && super::names(&body, kind, id)
        {
            return Ok(Some(body));
        }
        self.open_signed(kind, id, signed).map(Some)
    }
}

fn tampered(kind: &'static str, id: &str) -> Error {
    Error::Tampered {
        kind,
        id: id.to_string(),
    }
}
