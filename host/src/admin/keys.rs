//! Keys: creation (the one moment a secret exists), listing, status changes,
//! rotation and deletion.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{Error, Result};
use crate::runtime::IssuedKey;
use crate::runtime::bindings::{
    CreateRequest, ExpiryPolicy, KeyLevel, KeyRecord, KeyStatus, Organization, ProjectAccess,
    SignedBody, SignedRecord,
};
use crate::schema::AuditEvent;

use super::views::KeyView;
use super::write::Change;
use super::{KEY_RECORD, Keygate, event, random};

/// Which projects a new key may act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Org-level, every project of the organization.
    AllProjects,
    /// Org-level, these projects (each must exist in the organization).
    Selected(Vec<String>),
    /// Project-level, owned by this project.
    OwnProject(String),
}

/// A key to create.
#[derive(Debug, Clone)]
pub struct KeySpec {
    /// Organization (required for org-level keys; checked for project-level).
    pub organization: Option<String>,
    /// Label.
    pub name: String,
    /// Project access.
    pub access: Access,
    /// Expiry policy.
    pub expiry: ExpiryPolicy,
    /// Scope names (`trigger-workflows`), resolved by the component.
    pub scopes: Vec<String>,
}

/// A key just created or rotated in: the only moment its secret exists.
#[derive(Debug)]
pub struct Created {
    /// The key string (shown once) and id.
    pub issued: IssuedKey,
    /// Its metadata.
    pub view: KeyView,
}

impl Keygate {
    /// A key id given by a caller, with or without the deployment's prefix
    /// (`kg_8MlaSOg1Skx`, as a key starts: the id is public), else refused
    /// without being echoed if it looks like a key (the prefix and `_` with
    /// anything else after it, or a whole key).
    pub fn key_id_arg(&mut self, arg: &str) -> Result<String> {
        let arg = match arg
            .strip_prefix(self.prefix.as_str())
            .and_then(|rest| rest.strip_prefix('_'))
        {
            Some(id) if id.len() == 11 && id.bytes().all(|b| b.is_ascii_alphanumeric()) => id,
            _ => arg,
        };
        if self.module.looks_like_key(arg, Some(&self.prefix))? {
            return Err(Error::KeyLooking);
        }
        Ok(arg.to_string())
    }

    /// The stored, not yet verified record of a live key id given by a
    /// caller. A tombstone ends a key whatever sits under its id in the keys
    /// tree (a record put back there is not trusted to bring it back).
    fn live_key(&mut self, id: &str) -> Result<(String, SignedRecord)> {
        let id = self.key_id_arg(id)?;
        if self.store.tombstone(&id)?.is_some() {
            return Err(Error::KeyDeleted(id));
        }
        match self.store.key(&id)? {
            Some(signed) => Ok((id, signed)),
            None => Err(Error::UnknownKey(id)),
        }
    }

    /// A live key's record, its signature verified by the component.
    fn verified(&mut self, id: &str) -> Result<KeyRecord> {
        let (id, signed) = self.live_key(id)?;
        match self.open_signed(KEY_RECORD, &id, &signed)? {
            SignedBody::Key(r) => Ok(r),
            _ => Err(Error::Tampered {
                kind: KEY_RECORD,
                id,
            }),
        }
    }

    fn new_key(&mut self) -> Result<IssuedKey> {
        for _ in 0..8 {
            let issued = self
                .module
                .make_key(&self.prefix, &random::<40>()?)?
                .map_err(|_| Error::Corrupt {
                    path: self.dir().to_path_buf(),
                    why: "its key prefix is invalid".into(),
                })?;
            if !self.store.key_id_used(&issued.id)? {
                return Ok(issued);
            }
        }
        Err(Error::System("could not draw an unused key id".into()))
    }

    fn check_create(&mut self, req: &CreateRequest) -> Result<KeyRecord> {
        match self.module.check_create(req)? {
            Ok(r) => Ok(r),
            Err(e) => Err(self.policy(e)),
        }
    }

    /// Create a key. The record is committed and flushed before this returns;
    /// the caller shows `issued` once and forgets it.
    pub fn create_key(&mut self, spec: KeySpec, at: u64) -> Result<Created> {
        let mut out = self.create_keys(vec![spec], at)?;
        out.pop()
            .unwrap_or_else(|| Err(Error::System("no key was created".into())))
    }

    /// Create several keys in one commit: one transaction and one flush and
    /// sync for all of them (group commit). Each spec is checked on its own
    /// and gets its own answer, in order; the ones that pass are committed
    /// together, and none is returned before that commit reached the disk.
    /// `Err` only when the commit itself failed: then no key was created
    /// and no secret exists anywhere.
    pub fn create_keys(&mut self, specs: Vec<KeySpec>, at: u64) -> Result<Vec<Result<Created>>> {
        let actor = self.actor.clone();
        self.create_keys_by(specs.into_iter().map(|s| (s, actor.clone())).collect(), at)
    }

    /// [`Keygate::create_keys`] with each key's own actor for its audit
    /// event (the service batches requests of several admin tokens).
    pub(crate) fn create_keys_by(
        &mut self,
        specs: Vec<(KeySpec, Option<String>)>,
        at: u64,
    ) -> Result<Vec<Result<Created>>> {
        // Organizations read (and verified) once per batch, not per key.
        let mut orgs: BTreeMap<String, Organization> = BTreeMap::new();
        let mut ids: BTreeSet<String> = BTreeSet::new();
        let mut prepared: Vec<Result<(IssuedKey, KeyRecord)>> = Vec::with_capacity(specs.len());
        let mut change = Change::default();
        for (spec, actor) in specs {
            let p = self.prepare_key(spec, at, &mut orgs, &mut ids);
            if let Ok((_, record)) = &p {
                change.keys.push(record.clone());
                let mut ev = event(
                    at,
                    "key.create",
                    Some(&record.organization),
                    &record.id,
                    Some(record.name.clone()),
                );
                ev.actor = actor;
                change.audit.push(ev);
            }
            prepared.push(p);
        }
        if !change.keys.is_empty() {
            self.apply(change)?;
        }
        let mut out = Vec::with_capacity(prepared.len());
        for p in prepared {
            out.push(match p {
                Ok((issued, record)) => {
                    let org = orgs
                        .get(&record.organization)
                        .cloned()
                        .ok_or("unknown-organization");
                    self.view_in(&record, &org, at)
                        .map(|view| Created { issued, view })
                }
                Err(e) => Err(e),
            });
        }
        Ok(out)
    }

    /// Check one key to create and make its secret and record (nothing is
    /// written). `orgs` holds the organizations verified so far in this
    /// batch; `ids` the ids drawn so far.
    fn prepare_key(
        &mut self,
        spec: KeySpec,
        at: u64,
        orgs: &mut BTreeMap<String, Organization>,
        ids: &mut BTreeSet<String>,
    ) -> Result<(IssuedKey, KeyRecord)> {
        self.refuse_key_like(&[&spec.name])?;
        let mut scopes = Vec::with_capacity(spec.scopes.len());
        for s in &spec.scopes {
            scopes.push(self.scope(s)?);
        }
        let (organization, level, access) = match &spec.access {
            Access::OwnProject(pid) => {
                let project = match &spec.organization {
                    Some(org) => self.project_of(pid, org)?,
                    None => self.live_project(pid)?,
                };
                (
                    project.organization,
                    KeyLevel::Project(pid.clone()),
                    ProjectAccess::AllProjects,
                )
            }
            other => {
                let org = spec.organization.clone().ok_or(Error::NeedsOrganization)?;
                let access = match other {
                    Access::Selected(ids) => {
                        self.batch_organization(&org, orgs)?;
                        for pid in ids {
                            self.project_of(pid, &org)?;
                        }
                        ProjectAccess::Selected(ids.clone())
                    }
                    _ => ProjectAccess::AllProjects,
                };
                (org, KeyLevel::Organization, access)
            }
        };
        let org = self.batch_organization(&organization, orgs)?;
        let issued = loop {
            let issued = self.new_key()?;
            if ids.insert(issued.id.clone()) {
                break issued;
            }
        };
        let record = self.check_create(&CreateRequest {
            id: issued.id.clone(),
            organization,
            name: spec.name,
            level,
            scopes,
            access,
            expiry: spec.expiry,
            now: at,
            key_hash: issued.key_hash.clone(),
            rotated_from: None,
        })?;
        self.admit_in(&org, &record)?;
        Ok((issued, record))
    }

    /// A live organization, verified once per batch.
    fn batch_organization(
        &mut self,
        slug: &str,
        orgs: &mut BTreeMap<String, Organization>,
    ) -> Result<Organization> {
        if let Some(o) = orgs.get(slug) {
            return Ok(o.clone());
        }
        let o = self.live_organization(slug)?;
        orgs.insert(slug.to_string(), o.clone());
        Ok(o)
    }

    /// Every key of an organization (org-level and project-level); with a
    /// project, only the keys that can act on it. Records that fail their
    /// signature check are listed as inactive (`signature-invalid`).
    pub fn list_keys(
        &mut self,
        organization: &str,
        project: Option<&str>,
        at: u64,
    ) -> Result<Vec<KeyView>> {
        let org = Ok(self.live_organization(organization)?);
        if let Some(pid) = project {
            self.project_of(pid, organization)?;
        }
        let mut out = Vec::new();
        // The organization's listing, not a scan of every key: what it
        // names is read and verified; a record naming another organization
        // is not this one's (and an unlisted record is no live key).
        for id in self.store.org_key_ids(organization)? {
            if self.store.tombstone(&id)?.is_some() {
                continue;
            }
            let Some(signed) = self.store.key(&id)? else {
                continue;
            };
            if let Ok(SignedBody::Key(claimed)) = self.module.decode(&signed.canonical)?
                && claimed.organization != organization
            {
                continue;
            }
            let record = match self.open_signed(KEY_RECORD, &id, &signed) {
                Ok(SignedBody::Key(r)) => r,
                Ok(_) | Err(Error::Tampered { .. }) => {
                    // Untrusted: show only what is needed to find and delete it.
                    if let Ok(SignedBody::Key(r)) = self.module.decode(&signed.canonical)?
                        && r.organization == organization
                    {
                        let mut v = self.view_in(&r, &org, at)?;
                        v.id = id;
                        v.status = "inactive".into();
                        v.inactive_reason = Some("signature-invalid".into());
                        out.push(v);
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            if record.organization != organization {
                continue;
            }
            if let Some(pid) = project
                && !self.module.grants_project(&record, pid)?
            {
                continue;
            }
            out.push(self.view_in(&record, &org, at)?);
        }
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(out)
    }

    /// One key's metadata.
    pub fn show_key(&mut self, id: &str, at: u64) -> Result<KeyView> {
        let r = self.verified(id)?;
        self.view(&r, at)
    }

    /// Disable or re-enable a key. Returns the view and whether it changed.
    pub fn set_status(&mut self, id: &str, status: KeyStatus, at: u64) -> Result<(KeyView, bool)> {
        let r = self.verified(id)?;
        if r.status == status {
            let v = self.view(&r, at)?;
            return Ok((v, false));
        }
        let next = match self.module.set_status(&r, status)? {
            Ok(n) => n,
            Err(e) => return Err(self.policy(e)),
        };
        let action = match status {
            KeyStatus::Active => "key.enable",
            KeyStatus::Disabled => "key.disable",
        };
        let audit: AuditEvent = event(at, action, Some(&next.organization), &next.id, None);
        self.apply(Change {
            keys: vec![next.clone()],
            audit: vec![audit],
            ..Change::default()
        })?;
        let v = self.view(&next, at)?;
        Ok((v, true))
    }

    /// Rotate a key: a new key with the same settings; the old one keeps
    /// working for `grace_seconds` (at most 7 days), then expires. The rules
    /// (a disabled or already rotated key does not rotate) are the
    /// component's `retire`. Both records change in one transaction.
    /// Returns the new key and the old key's new metadata.
    pub fn rotate_key(
        &mut self,
        id: &str,
        grace_seconds: u64,
        expiry: Option<ExpiryPolicy>,
        at: u64,
    ) -> Result<(Created, KeyView)> {
        let old = self.verified(id)?;
        let issued = self.new_key()?;
        let retired = match self.module.retire(&old, &issued.id, at, grace_seconds)? {
            Ok(r) => r,
            Err(e) => return Err(self.policy(e)),
        };
        let new = self.check_create(&CreateRequest {
            id: issued.id.clone(),
            organization: old.organization.clone(),
            name: old.name.clone(),
            level: old.level.clone(),
            scopes: old.scopes.clone(),
            access: old.access.clone(),
            expiry: expiry.unwrap_or(old.expiry),
            now: at,
            key_hash: issued.key_hash.clone(),
            rotated_from: Some(old.id.clone()),
        })?;
        self.admit(&new)?;
        self.apply(Change {
            keys: vec![new.clone(), retired.clone()],
            audit: vec![event(
                at,
                "key.rotate",
                Some(&old.organization),
                &old.id,
                Some(format!("to {}", new.id)),
            )],
            ..Change::default()
        })?;
        let view = self.view(&new, at)?;
        let old_view = self.view(&retired, at)?;
        Ok((Created { issued, view }, old_view))
    }

    /// Delete a key; it stops validating at once and its id never validates
    /// again (a signed tombstone). Tampered records can be deleted too (that
    /// is how an operator gets rid of them). Returns the tombstone's
    /// organization, when known.
    pub fn delete_key(&mut self, id: &str, at: u64) -> Result<Option<String>> {
        let (id, signed) = self.live_key(id)?;
        let record = match self.open_signed(KEY_RECORD, &id, &signed) {
            Ok(SignedBody::Key(r)) => Some(r),
            Ok(_) | Err(Error::Tampered { .. }) => None,
            Err(e) => return Err(e),
        };
        let tomb = match self.module.make_tombstone(&id, record.as_ref(), at)? {
            Ok(t) => t,
            Err(e) => return Err(self.policy(e)),
        };
        let organization = tomb.organization.clone();
        self.apply(Change {
            tombstones: vec![tomb],
            audit: vec![event(
                at,
                "key.delete",
                organization.as_deref(),
                &id,
                record.as_ref().map(|r| r.name.clone()),
            )],
            ..Change::default()
        })?;
        Ok(organization)
    }
}
