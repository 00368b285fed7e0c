//! The one seam that writes the store. Every fact is encoded by the
//! component (which refuses one that breaks a rule), signed with the issuer
//! key, and committed with its audit events in one transaction, flushed and
//! synced. Nothing else in keygate writes the store; a replicated store
//! would plug in here.

use std::collections::{BTreeMap, VecDeque};

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
#[derive(Debug, Default, Clone)]
pub(crate) struct Written {
    base: u64,
    sequence: u64,
    keys: BTreeMap<String, KeyRecord>,
    projects: BTreeMap<String, ProjectRegistration>,
    organizations: BTreeMap<String, Organization>,
    tombstones: BTreeMap<String, Tombstone>,
}

impl Written {
    /// Take in the facts of the commits after these (a tombstone removes
    /// its key; a newer version replaces an older one).
    fn absorb(&mut self, later: Written) {
        self.sequence = later.sequence;
        self.keys.extend(later.keys);
        self.projects.extend(later.projects);
        self.organizations.extend(later.organizations);
        for (id, t) in later.tombstones {
            self.keys.remove(&id);
            self.tombstones.insert(id, t);
        }
    }

    fn facts(&self) -> usize {
        self.keys.len() + self.projects.len() + self.organizations.len() + self.tombstones.len()
    }

    fn into_delta(self, issuer_key_id: String, made_at: u64) -> Snapshot {
        Snapshot {
            issuer_key_id,
            sequence: self.sequence,
            base: Some(self.base),
            made_at,
            organizations: self.organizations.into_values().collect(),
            keys: self.keys.into_values().collect(),
            projects: self.projects.into_values().collect(),
            tombstones: self.tombstones.into_values().collect(),
        }
    }
}

/// What a long-running process keeps of its own writes: its last commits
/// one by one (at most [`Kept::RECENT_FACTS`] facts), from which a delta
/// since any of their bases is made without scanning the store.
#[derive(Debug, Default)]
pub(crate) struct Kept {
    recent: VecDeque<Written>,
    recent_facts: usize,
}

impl Kept {
    /// About 10 MB of decoded facts at most.
    const RECENT_FACTS: usize = 16_384;

    fn remember(&mut self, commit: Written) {
        if self
            .recent
            .back()
            .is_some_and(|last| last.sequence != commit.base)
        {
            // A commit this process did not see the one before of.
            self.recent.clear();
            self.recent_facts = 0;
        }
        self.recent_facts += commit.facts();
        self.recent.push_back(commit);
        while self.recent_facts > Self::RECENT_FACTS {
            match self.recent.pop_front() {
                Some(old) => self.recent_facts -= old.facts(),
                None => break,
            }
        }
    }
}

impl Keygate {
    /// Keep the facts this process writes, so that [`Keygate::recent_delta`]
    /// can make a delta of them (a long-running service keeping validators
    /// current, and answering validators elsewhere); off by default.
    pub fn keep_written(&mut self, on: bool) {
        self.written = on.then(Kept::default);
    }

    /// A signed delta from sequence `base` to the store's sequence made of
    /// the commits this process remembers (the last ones, see
    /// [`Keygate::keep_written`]), when it remembers every commit since
    /// `base`; else `None` (make one with [`Keygate::snapshot`], which reads
    /// the whole store).
    pub fn recent_delta(&mut self, base: u64, at: u64) -> Result<Option<super::SnapshotFile>> {
        let sequence = self.store.sequence()?;
        let Some(kept) = self.written.as_ref() else {
            return Ok(None);
        };
        let Some(start) = kept.recent.iter().position(|w| w.base == base) else {
            return Ok(None);
        };
        if base >= sequence || kept.recent.back().map(|w| w.sequence) != Some(sequence) {
            return Ok(None);
        }
        let mut merged = Written {
            base,
            sequence: base,
            ..Written::default()
        };
        for w in kept.recent.iter().skip(start) {
            merged.absorb(w.clone());
        }
        let snap = merged.into_delta(self.issuer.id().to_string(), at);
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
        if let (Some(before), Some((keys, projects, tombstones, organizations)), Some(k)) =
            (before, kept, self.written.as_mut())
        {
            let mut commit = Written {
                base: before,
                sequence: before,
                ..Written::default()
            };
            commit.absorb(Written {
                base: before,
                sequence: after,
                keys: keys.into_iter().map(|r| (r.id.clone(), r)).collect(),
                projects: projects.into_iter().map(|p| (p.id.clone(), p)).collect(),
                organizations: organizations
                    .into_iter()
                    .map(|o| (o.slug.clone(), o))
                    .collect(),
                tombstones: tombstones.into_iter().map(|t| (t.id.clone(), t)).collect(),
            });
            k.remember(commit);
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
