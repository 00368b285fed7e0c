//! Snapshots of the store for validators elsewhere: every verified fact,
//! signed as a whole with the store's sequence number.

use subtle::ConstantTimeEq;

use crate::error::{Error, Result};
use crate::runtime::bindings::{SignedBody, Snapshot, SnapshotInfo};
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
        let mut snap = Snapshot {
            issuer_key_id: self.issuer.id().to_string(),
            sequence,
            base: since,
            made_at: at,
            organizations: Vec::new(),
            keys: Vec::new(),
            projects: Vec::new(),
            tombstones: Vec::new(),
        };
        let mut dead = std::collections::BTreeSet::new();
        for (id, signed) in self.store.tombstones()? {
            dead.insert(id.clone());
            if !in_delta(
                &self.store,
                &self.issuer,
                since,
                change::TOMBSTONE,
                &id,
                &signed,
            )? {
                continue;
            }
            match self.open_stored(change::TOMBSTONE, KEY_TOMBSTONE, &id, &signed)? {
                SignedBody::Tombstone(t) => snap.tombstones.push(t),
                _ => return Err(tampered(KEY_TOMBSTONE, &id)),
            }
        }
        for (id, signed) in self.store.keys()? {
            // A record beside a tombstone is not live (the tombstone wins).
            if dead.contains(&id)
                || !in_delta(&self.store, &self.issuer, since, change::KEY, &id, &signed)?
            {
                continue;
            }
            match self.open_stored(change::KEY, KEY_RECORD, &id, &signed)? {
                // Only keys their organization's listing holds are live.
                SignedBody::Key(r) => {
                    if self.store.key_listed(&r.organization, &id)? {
                        snap.keys.push(r);
                    }
                }
                _ => return Err(tampered(KEY_RECORD, &id)),
            }
        }
        for (id, signed) in self.store.projects()? {
            if !in_delta(
                &self.store,
                &self.issuer,
                since,
                change::PROJECT,
                &id,
                &signed,
            )? {
                continue;
            }
            match self.open_stored(change::PROJECT, PROJECT_REGISTRATION, &id, &signed)? {
                SignedBody::Project(p) => snap.projects.push(p),
                _ => return Err(tampered(PROJECT_REGISTRATION, &id)),
            }
        }
        for (slug, signed) in self.store.organizations()? {
            if !in_delta(
                &self.store,
                &self.issuer,
                since,
                change::ORGANIZATION,
                &slug,
                &signed,
            )? {
                continue;
            }
            match self.open_stored(change::ORGANIZATION, ORGANIZATION, &slug, &signed)? {
                SignedBody::Organization(o) => snap.organizations.push(o),
                _ => return Err(tampered(ORGANIZATION, &slug)),
            }
        }
        self.seal(&snap)
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
        let mut bytes = match m.encode_snapshot(snap)? {
            Ok(b) => b,
            Err(e) => return Err(self.policy(e)),
        };
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

/// Whether a fact belongs in a snapshot (always) or in a delta since
/// `since`: it is left out only when its change-index entry says it last
/// changed at or before the base and the entry's tag proves it belongs to
/// the value stored now. An entry lowered, planted, or put back without its
/// fact includes the fact (applying an unchanged fact again changes
/// nothing).
impl Keygate {
    /// A stored fact, for a snapshot: when its change-index tag (an HMAC
    /// under a key only the issuer secret gives, over the kind, the id, the
    /// sequence and these exact stored bytes) verifies, keygate wrote these
    /// bytes, and they are decoded without checking their signature again
    /// (an ed25519 check in the component costs about 60 µs: a minute at a
    /// million keys); otherwise the signature is checked as everywhere.
    fn open_stored(
        &mut self,
        change_kind: u8,
        kind: &'static str,
        id: &str,
        signed: &crate::runtime::bindings::SignedRecord,
    ) -> Result<SignedBody> {
        if let Some((at, Some(tag))) = self.store.changed_at(change_kind, id)?
            && let Ok(value) = crate::schema::encode_signed(signed)
            && bool::from(
                self.issuer
                    .change_tag(change_kind, id, at, &value)
                    .ct_eq(&tag),
            )
            && let Ok(body) = self.module.decode(&signed.canonical)?
            && super::names(&body, kind, id)
        {
            return Ok(body);
        }
        self.open_signed(kind, id, signed)
    }
}

fn in_delta(
    store: &crate::store::Store,
    issuer: &crate::issuer::Issuer,
    since: Option<u64>,
    kind: u8,
    id: &str,
    signed: &crate::runtime::bindings::SignedRecord,
) -> Result<bool> {
    let Some(base) = since else {
        return Ok(true);
    };
    let Some((at, Some(tag))) = store.changed_at(kind, id)? else {
        return Ok(true);
    };
    let Ok(value) = crate::schema::encode_signed(signed) else {
        return Ok(true);
    };
    let genuine: bool = issuer.change_tag(kind, id, at, &value).ct_eq(&tag).into();
    Ok(!genuine || at > base)
}

fn tampered(kind: &'static str, id: &str) -> Error {
    Error::Tampered {
        kind,
        id: id.to_string(),
    }
}
