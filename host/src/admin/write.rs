//! The one seam that writes the store. Every fact is encoded by the
//! component (which refuses one that breaks a rule), signed with the issuer
//! key, and committed with its audit events in one transaction, flushed and
//! synced. Nothing else in keygate writes the store; a replicated store
//! would plug in here.

use crate::error::Result;
use crate::runtime::bindings::{
    KeyRecord, ProjectRegistration, SignedBody, SignedRecord, Tombstone,
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
    /// Tombstones of keys to delete.
    pub tombstones: Vec<Tombstone>,
    /// Audit events.
    pub audit: Vec<AuditEvent>,
    /// A new store schema version (only migration sets it).
    pub schema: Option<u32>,
}

impl Keygate {
    /// Check, encode and sign every fact of `change`, then commit it
    /// atomically. Returns the store's new sequence number.
    pub(crate) fn apply(&mut self, change: Change) -> Result<u64> {
        let mut batch = Batch {
            audit: change.audit,
            schema: change.schema,
            ..Batch::default()
        };
        for r in change.keys {
            let id = r.id.clone();
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
            batch
                .delete_keys
                .push((id, self.sign(SignedBody::Tombstone(t))?));
        }
        self.store.commit(batch)
    }

    fn sign(&mut self, body: SignedBody) -> Result<SignedRecord> {
        let canonical = match self.module.encode(&body)? {
            Ok(bytes) => bytes,
            Err(e) => return Err(self.policy(e)),
        };
        Ok(self.issuer.sign(canonical))
    }
}
