//! Projects: signed registrations of a project id in an organization.

use crate::error::{Error, Result};
use crate::runtime::bindings::{KeyLevel, ProjectRegistration, SignedBody};

use super::views::{ProjectList, ProjectView};
use super::write::Change;
use super::{KEY_RECORD, Keygate, PROJECT_REGISTRATION, event, random};

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A new project id: `prj_` and 64 random bits in 11 base62 digits.
fn new_project_id() -> Result<String> {
    let mut n = u64::from_be_bytes(random::<8>()?);
    let mut digits = [b'0'; 11];
    for d in digits.iter_mut().rev() {
        *d = BASE62[(n % 62) as usize];
        n /= 62;
    }
    Ok(format!("prj_{}", String::from_utf8_lossy(&digits)))
}

impl Keygate {
    /// Register a project in an organization.
    pub fn create_project(
        &mut self,
        organization: &str,
        name: &str,
        at: u64,
    ) -> Result<ProjectView> {
        self.refuse_key_like(&[organization, name])?;
        self.live_organization(organization)?;
        let mut id = new_project_id()?;
        while self.store.project(&id)?.is_some() {
            id = new_project_id()?;
        }
        let reg = match self.module.register_project(&id, organization, name, at)? {
            Ok(r) => r,
            Err(e) => return Err(self.policy(e)),
        };
        self.apply(Change {
            projects: vec![reg.clone()],
            audit: vec![event(
                at,
                "project.create",
                Some(organization),
                &reg.id,
                Some(reg.name.clone()),
            )],
            ..Change::default()
        })?;
        Ok(reg.into())
    }

    /// A project's registration, its signature verified (deleted ones too).
    pub(crate) fn registration(&mut self, id: &str) -> Result<ProjectRegistration> {
        self.refuse_key_like(&[id])?;
        let Some(signed) = self.store.project(id)? else {
            return Err(Error::UnknownProject(id.to_string()));
        };
        match self.open_signed(PROJECT_REGISTRATION, id, &signed)? {
            SignedBody::Project(p) => Ok(p),
            _ => Err(Error::Tampered {
                kind: PROJECT_REGISTRATION,
                id: id.to_string(),
            }),
        }
    }

    /// A live project, verified, or why not.
    pub fn live_project(&mut self, id: &str) -> Result<ProjectView> {
        let reg = self.registration(id)?;
        if reg.deleted_at.is_some() {
            return Err(Error::ProjectDeleted(id.to_string()));
        }
        Ok(reg.into())
    }

    /// A live project of `organization`, or why not.
    pub(crate) fn project_of(&mut self, id: &str, organization: &str) -> Result<ProjectView> {
        let p = self.live_project(id)?;
        if p.organization != organization {
            return Err(Error::ProjectInOtherOrganization {
                project: id.to_string(),
                owner: p.organization,
                asked: organization.to_string(),
            });
        }
        Ok(p)
    }

    /// The live projects of an organization, oldest first; registrations
    /// that fail verification are reported apart, never listed as trusted.
    pub fn list_projects(&mut self, organization: &str) -> Result<ProjectList> {
        self.projects_of(organization, false)
    }

    /// [`Keygate::list_projects`]; with `strict`, every registration in
    /// the store is verified and any that fails is reported (an organization
    /// deleted with its projects must not miss one whose bytes were made to
    /// claim another organization); otherwise a registration that claims
    /// another organization is skipped before any signature work, so that
    /// a listing costs a decode per project, not an ed25519 check.
    pub(crate) fn projects_of(&mut self, organization: &str, strict: bool) -> Result<ProjectList> {
        let org = self.live_organization(organization)?;
        let mut list = ProjectList {
            projects: Vec::new(),
            untrusted: Vec::new(),
        };
        for (id, signed) in self.store.projects()? {
            if !strict
                && let Ok(SignedBody::Project(claimed)) = self.module.decode(&signed.canonical)?
                && claimed.organization != organization
            {
                continue;
            }
            match self.open_signed(PROJECT_REGISTRATION, &id, &signed) {
                Ok(SignedBody::Project(p)) => {
                    // A project older than its organization belongs to an
                    // earlier one of the same slug: it is not listed (and
                    // every key is denied on it).
                    if p.organization == organization
                        && p.deleted_at.is_none()
                        && p.created_at >= org.created_at
                    {
                        list.projects.push(p.into());
                    }
                }
                Ok(_) | Err(Error::Tampered { .. }) => list.untrusted.push(id),
                Err(e) => return Err(e),
            }
        }
        list.projects
            .sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(list)
    }

    /// Delete a project and, in the same transaction, its project-level keys.
    /// Returns the project and the ids of the keys deleted with it.
    pub fn delete_project(&mut self, id: &str, at: u64) -> Result<(ProjectView, Vec<String>)> {
        let reg = self.registration(id)?;
        if reg.deleted_at.is_some() {
            return Err(Error::ProjectDeleted(id.to_string()));
        }
        let deleted = match self.module.delete_project(&reg, at)? {
            Ok(r) => r,
            Err(e) => return Err(self.policy(e)),
        };
        let own = KeyLevel::Project(id.to_string());
        let mut tombstones = Vec::new();
        // Every record of the store that says it is this project's, listed
        // or not: a deletion must not rely on the unsigned listing (a
        // record taken out of it would outlive its project, and come back
        // with the listing entry and an older registration). Records that
        // say otherwise are skipped before any signature work.
        for (key_id, signed) in self.store.keys()? {
            match self.module.decode(&signed.canonical)? {
                Ok(SignedBody::Key(r)) if r.level == own => {}
                _ => continue,
            }
            // A verified project-level record of this project goes, with its
            // last version in the tombstone. An unverified one that claims
            // to be one goes too (deleting can only take away), without it.
            let record = match self.open_signed(KEY_RECORD, &key_id, &signed) {
                Ok(SignedBody::Key(r)) if r.level == own => Some(r),
                Ok(_) | Err(Error::Tampered { .. }) => None,
                Err(e) => return Err(e),
            };
            let tomb = match self.module.make_tombstone(&key_id, record.as_ref(), at)? {
                Ok(t) => t,
                Err(e) => return Err(self.policy(e)),
            };
            tombstones.push(tomb);
        }
        let ids: Vec<String> = tombstones.iter().map(|t| t.id.clone()).collect();
        let org = deleted.organization.clone();
        let mut audit = vec![event(
            at,
            "project.delete",
            Some(&org),
            id,
            Some(match ids.len() {
                1 => "1 key deleted".to_string(),
                n => format!("{n} keys deleted"),
            }),
        )];
        audit.extend(ids.iter().map(|k| {
            event(
                at,
                "key.delete",
                Some(&org),
                k,
                Some(format!("with project {id}")),
            )
        }));
        self.apply(Change {
            projects: vec![deleted.clone()],
            tombstones,
            audit,
            ..Change::default()
        })?;
        Ok((deleted.into(), ids))
    }
}
