//! The one seam that writes the store. Every fact is encoded by the
//! component (which refuses one that breaks a rule), signed with the issuer
//! key, and committed with its audit events in one transaction, flushed and
//! synced. Nothing else in keygate writes the store; a replicated store
//! would plug in here.

use std::collections::BTreeMap;

use crate::error::Result;
use crate::runtime::bindings::{
    KeyRecord, Organization, ProjectRegistration, SignedBody, SignedRecord, Snapshot, Tombstone,
};
use crate::schema::AuditEvent;
use crate::store::Batch;

use super::Keygate;

/// One admin change: new versions of key records and registrations, new
/// tombstones (which remove their keys), and what to audit.
#[derive(Debug, Default)]
pub(crate) struct Change {
    /// Key records to write.
    pub keys: Vec<KeyRecord>,
    /// Project registrations to write.
    pub projects: Vec<ProjectRegistration>,
    /// Organizations to write.
    pub organizations: Vec<Organization>,
    /// Tombstones of keys to delete.
    pub tombstones: Vec<Tombstone>,
    /// Audit events.
    pub audit: Vec<AuditEvent>,
    /// A new store schema version (only migration sets it).
    pub schema: Option<u32>,
    /// Keys to list under their organization without writing their
    /// records (only migration sets it; written keys are listed anyway).
    pub index: Vec<(String, String)>,
}

/// The facts written by consecutive commits of this process, from sequence
/// `base` to `sequence`: what a validator holding `base` needs, without
/// scanning the store (see [`Keygate::keep_written`]).
#[derive(Debug, Default)]
pub(crate) struct Written {
    base: u64,
    sequence: u64,
    keys: BTreeMap<String, KeyRecord>,
    projects: BTreeMap<String, ProjectRegistration>,
    organizations: BTreeMap<String, Organization>,
    tombstones: BTreeMap<String, Tombstone>,
}

impl Keygate {
    /// Keep the facts this process writes, so that [`Keygate::written_delta`]
    /// can make a delta of them (a long-running service keeping validators
    /// current); off by default.
    pub fn keep_written(&mut self, on: bool) {
        self.written = on.then(Written::default);
    }

    /// A signed delta from sequence `held` to the store's sequence, made of
    /// the facts this process wrote since then, when it wrote every change
    /// in between (else `None`: make one with [`Keygate::snapshot`]).
    /// Taking it starts a new record.
    pub fn written_delta(&mut self, held: u64, at: u64) -> Result<Option<super::SnapshotFile>> {
        let Some(w) = self.written.as_mut() else {
            return Ok(None);
        };
        let w = std::mem::take(w);
        if w.base != held || w.sequence != self.store.sequence()? || w.sequence <= held {
            return Ok(None);
        }
        let snap = Snapshot {
            issuer_key_id: self.issuer.id().to_string(),
            sequence: w.sequence,
            base: Some(held),
            made_at: at,
            organizations: w.organizations.into_values().collect(),
            keys: w.keys.into_values().collect(),
            projects: w.projects.into_values().collect(),
            tombstones: w.tombstones.into_values().collect(),
        };
        self.seal(&snap).map(Some)
    }

    /// Check, encode and sign every fact of `change`, then commit it
    /// atomically. Returns the store's new sequence number.
    pub(crate) fn apply(&mut self, change: Change) -> Result<u64> {
        let before = match self.written {
            Some(_) => Some(self.store.sequence()?),
            None => None,
        };
        let kept = before.map(|_| {
            (
                change.keys.clone(),
                change.projects.clone(),
                change.tombstones.clone(),
                change.organizations.clone(),
            )
        });
        let mut batch = Batch {
            audit: change.audit,
            schema: change.schema,
            index_keys: change.index,
            ..Batch::default()
        };
        for r in change.keys {
            let id = r.id.clone();
            batch.index_keys.push((r.organization.clone(), id.clone()));
            batch.put_keys.push((id, self.sign(SignedBody::Key(r))?));
        }
        for p in change.projects {
            let id = p.id.clone();
            batch
                .put_projects
                .push((id, self.sign(SignedBody::Project(p))?));
        }
        for t in change.tombstones {
            let id = t.id.clone();
            if let Some(org) = &t.organization {
                batch.unindex_keys.push((org.clone(), id.clone()));
            }
            batch
                .delete_keys
                .push((id, self.sign(SignedBody::Tombstone(t))?));
        }
        for o in change.organizations {
            let slug = o.slug.clone();
            batch
                .put_organizations
                .push((slug, self.sign(SignedBody::Organization(o))?));
        }
        let after = self.commit_batch(batch)?;
        if let (Some(before), Some((keys, projects, tombstones, organizations)), Some(w)) =
            (before, kept, self.written.as_mut())
        {
            if w.sequence != before || w.sequence == 0 {
                // A gap (or the first commit): start again from here.
                *w = Written {
                    base: before,
                    ..Written::default()
                };
            }
            w.sequence = after;
            for r in keys {
                w.keys.insert(r.id.clone(), r);
            }
            for p in projects {
                w.projects.insert(p.id.clone(), p);
            }
            for o in organizations {
                w.organizations.insert(o.slug.clone(), o);
            }
            for t in tombstones {
                w.keys.remove(&t.id);
                w.tombstones.insert(t.id.clone(), t);
            }
        }
        Ok(after)
    }

    fn sign(&mut self, body: SignedBody) -> Result<SignedRecord> {
        let canonical = match self.module.encode(&body)? {
            Ok(bytes) => bytes,
            Err(e) => return Err(self.policy(e)),
        };
        Ok(self.issuer.sign(canonical))
    }
}
