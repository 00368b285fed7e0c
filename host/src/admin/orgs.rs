//! Organizations: signed registrations of a slug with its key policy. Keys
//! and projects exist only in a live organization; the policy's rule is the
//! component's (`admits`), at creation, at rotation and in every decision.

use crate::error::{Error, Result};
use crate::runtime::bindings::{KeyLevel, KeyPolicy, KeyRecord, Organization, SignedBody};

use super::views::{KeyPolicyView, OrgView};
use super::write::Change;
use super::{KEY_RECORD, Keygate, ORGANIZATION, event};

/// What deleting an organization took with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgDeleted {
    /// The organization, now deleted.
    pub organization: OrgView,
    /// The ids of its projects deleted with it.
    pub projects: Vec<String>,
    /// The ids of its keys deleted with it.
    pub keys: Vec<String>,
}

/// What changing a key policy did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySet {
    /// The organization, as it now is.
    pub organization: OrgView,
    /// Whether anything changed.
    pub changed: bool,
}

impl Keygate {
    /// Register an organization; its name defaults to its slug.
    pub fn create_organization(
        &mut self,
        slug: &str,
        name: Option<&str>,
        at: u64,
    ) -> Result<OrgView> {
        self.refuse_key_like(&[slug, name.unwrap_or("")])?;
        let org = match self
            .module
            .register_organization(slug, name.unwrap_or(slug), at)?
        {
            Ok(o) => o,
            Err(e) => return Err(self.policy(e)),
        };
        if let Some(signed) = self.store.organization(slug)? {
            return Err(match self.open_signed(ORGANIZATION, slug, &signed)? {
                SignedBody::Organization(o) if o.deleted_at.is_some() => {
                    Error::OrganizationDeleted(slug.to_string())
                }
                _ => Error::OrganizationExists(slug.to_string()),
            });
        }
        // A key or project is an organization's only if it is not older
        // than the organization: that holds only while the clock does not
        // run behind the store's own writes (a restored VM, a wrong clock).
        if let Some(last) = self.store.last_audit()?
            && at < last.at
        {
            return Err(Error::Clock(format!(
                "it reads {}, before the store's last write ({}); an organization registered now could claim keys made after it",
                super::rfc3339(at),
                super::rfc3339(last.at)
            )));
        }
        if let Some(trace) = self.trace_of(slug)? {
            return Err(Error::OrganizationRecordMissing {
                slug: slug.to_string(),
                trace,
            });
        }
        self.apply(Change {
            organizations: vec![org.clone()],
            audit: vec![event(
                at,
                "org.create",
                Some(slug),
                slug,
                Some(org.name.clone()),
            )],
            ..Change::default()
        })?;
        // Nothing can be its own yet: anything older is not (see
        // `trace_of`), so no listing is read.
        Ok(OrgView::from_parts(
            org,
            Some(super::views::OrgCounts {
                projects: 0,
                keys: 0,
                keys_outside_policy: Vec::new(),
            }),
        ))
    }

    /// What in the store names `slug` although it has no organization
    /// record: then its record was removed from the data directory, and
    /// registering the slug again would look like bringing back its keys
    /// without its key policy. Two lookups, not a scan of the store (an
    /// organization is created in constant time at any size): the slug's
    /// recorded change, and its listing of keys. Neither is the guarantee:
    /// a key or project made before an organization's registration is
    /// never its own (`predates-organization`, in the component), whatever
    /// traces were hidden; these checks make the damage visible.
    fn trace_of(&mut self, slug: &str) -> Result<Option<String>> {
        use crate::schema::change;
        if self.store.changed_at(change::ORGANIZATION, slug)?.is_some() {
            return Ok(Some("a recorded change".into()));
        }
        if let Some(id) = self.store.org_key_ids(slug)?.first() {
            return Ok(Some(format!("`{id}`")));
        }
        Ok(None)
    }

    /// An organization's registration, verified (deleted ones too); an
    /// unknown slug is refused with the nearest live one, if close.
    pub(crate) fn organization(&mut self, slug: &str) -> Result<Organization> {
        self.refuse_key_like(&[slug])?;
        // A slug that breaks the rules gets the rule's message.
        if let Err(e) = self.module.register_organization(slug, "-", 0)? {
            return Err(self.policy(e));
        }
        let Some(signed) = self.store.organization(slug)? else {
            return Err(Error::UnknownOrganization {
                slug: slug.to_string(),
                suggestion: self.nearest_organization(slug)?,
            });
        };
        match self.open_signed(ORGANIZATION, slug, &signed)? {
            SignedBody::Organization(o) => Ok(o),
            _ => Err(Error::Tampered {
                kind: ORGANIZATION,
                id: slug.to_string(),
            }),
        }
    }

    /// A live organization, verified, or why not.
    pub(crate) fn live_organization(&mut self, slug: &str) -> Result<Organization> {
        let org = self.organization(slug)?;
        if org.deleted_at.is_some() {
            return Err(Error::OrganizationDeleted(slug.to_string()));
        }
        Ok(org)
    }

    /// The live organization whose slug is nearest to `slug` (a typo), if
    /// any is close: Jaro-Winkler similarity of at least 0.8, as clap
    /// suggests subcommands.
    fn nearest_organization(&mut self, slug: &str) -> Result<Option<String>> {
        let mut best: Option<(f64, String)> = None;
        for (other, signed) in self.store.organizations()? {
            let score = strsim::jaro_winkler(slug, &other);
            if score < 0.8 || best.as_ref().is_some_and(|(b, _)| *b >= score) {
                continue;
            }
            if let Ok(SignedBody::Organization(o)) = self.open_signed(ORGANIZATION, &other, &signed)
                && o.deleted_at.is_none()
            {
                best = Some((score, other));
            }
        }
        Ok(best.map(|(_, s)| s))
    }

    /// Every live organization, by slug; registrations that fail
    /// verification are returned apart, never listed as trusted.
    pub fn list_organizations(&mut self) -> Result<(Vec<OrgView>, Vec<String>)> {
        let mut live = Vec::new();
        let mut untrusted = Vec::new();
        for (slug, signed) in self.store.organizations()? {
            match self.open_signed(ORGANIZATION, &slug, &signed) {
                Ok(SignedBody::Organization(o)) => {
                    if o.deleted_at.is_none() {
                        live.push(o);
                    }
                }
                Ok(_) | Err(Error::Tampered { .. }) => untrusted.push(slug),
                Err(e) => return Err(e),
            }
        }
        let views = live
            .into_iter()
            .map(|o| OrgView::from_parts(o, None))
            .collect();
        Ok((views, untrusted))
    }

    /// One organization (deleted ones too), with its live projects and
    /// keys counted and the keys that its key policy now denies.
    pub fn show_organization(&mut self, slug: &str, at: u64) -> Result<OrgView> {
        let org = self.organization(slug)?;
        self.org_view(org, at)
    }

    fn org_view(&mut self, org: Organization, at: u64) -> Result<OrgView> {
        if org.deleted_at.is_some() {
            return Ok(OrgView::from_parts(org, None));
        }
        let projects = self.list_projects(&org.slug)?.projects.len();
        // The listing judged every key by the policy already (the
        // component's `admits`, as decisions do).
        let keys = self.list_keys(&org.slug, None, at)?;
        let mut outside: Vec<String> = keys
            .iter()
            .filter(|k| k.inactive_reason.as_deref() == Some("lifetime-exceeds-policy"))
            .map(|k| k.id.clone())
            .collect();
        outside.sort();
        let counts = super::views::OrgCounts {
            projects: projects as u64,
            keys: keys.len() as u64,
            keys_outside_policy: outside,
        };
        Ok(OrgView::from_parts(org, Some(counts)))
    }

    /// Set an organization's key policy (and, when given, its name). Keys
    /// that break the new policy are denied from then on (`org show` lists
    /// them); lifting it lets them in again.
    pub fn set_key_policy(
        &mut self,
        slug: &str,
        policy: KeyPolicyView,
        name: Option<&str>,
        at: u64,
    ) -> Result<PolicySet> {
        let expiry = policy.rule();
        self.refuse_key_like(&[name.unwrap_or("")])?;
        let org = self.live_organization(slug)?;
        let next = match self
            .module
            .amend_organization(&org, KeyPolicy { expiry }, name)?
        {
            Ok(o) => o,
            Err(e) => return Err(self.policy(e)),
        };
        if next.key_policy == org.key_policy && next.name == org.name {
            return Ok(PolicySet {
                organization: self.org_view(org, at)?,
                changed: false,
            });
        }
        let detail = super::views::expiry_rule_text(expiry);
        self.apply(Change {
            organizations: vec![next.clone()],
            audit: vec![event(at, "org.policy", Some(slug), slug, Some(detail))],
            ..Change::default()
        })?;
        Ok(PolicySet {
            organization: self.org_view(next, at)?,
            changed: true,
        })
    }

    /// Delete an organization. Refused while it has live projects or keys,
    /// unless `cascade`: then its projects and every key are deleted in the
    /// same transaction. The slug is never registered again.
    pub fn delete_organization(
        &mut self,
        slug: &str,
        cascade: bool,
        at: u64,
    ) -> Result<OrgDeleted> {
        let org = self.live_organization(slug)?;
        let projects = self.projects_of(slug, true)?;
        // A registration that does not verify may be one of this
        // organization's projects, whatever organization its bytes claim:
        // deleting around it would leave it live once restored. The
        // operator decides first.
        if let Some(id) = projects.untrusted.first() {
            return Err(Error::Tampered {
                kind: super::PROJECT_REGISTRATION,
                id: id.clone(),
            });
        }
        // Its listing, and every record of the store that names it but is
        // not listed (taken out of the listing): a deletion must not rely
        // on the unsigned listing, or a record taken out of it would
        // outlive its organization. Other records are only decoded.
        let mut keys: std::collections::BTreeSet<String> = self
            .list_keys(slug, None, at)?
            .into_iter()
            .map(|k| k.id)
            .collect();
        for (id, signed) in self.store.keys()? {
            if !keys.contains(&id)
                && let Ok(SignedBody::Key(r)) = self.module.decode(&signed.canonical)?
                && r.organization == slug
            {
                keys.insert(id);
            }
        }
        if !cascade && (!projects.projects.is_empty() || !keys.is_empty()) {
            return Err(Error::OrganizationNotEmpty {
                slug: slug.to_string(),
                projects: projects.projects.len(),
                keys: keys.len(),
            });
        }
        let deleted = match self.module.delete_organization(&org, at)? {
            Ok(o) => o,
            Err(e) => return Err(self.policy(e)),
        };
        let mut change = Change::default();
        let mut project_ids = Vec::new();
        for p in &projects.projects {
            let reg = self.registration(&p.id)?;
            match self.module.delete_project(&reg, at)? {
                Ok(r) => change.projects.push(r),
                Err(e) => return Err(self.policy(e)),
            }
            project_ids.push(p.id.clone());
        }
        let mut key_ids = Vec::new();
        let mut key_details = Vec::new();
        for id in &keys {
            // Untrusted records of this organization go too, without their
            // last version (deleting can only take away).
            let Some(signed) = self.store.key(id)? else {
                continue;
            };
            let record = match self.open_signed(KEY_RECORD, id, &signed) {
                Ok(SignedBody::Key(r)) => Some(r),
                Ok(_) | Err(Error::Tampered { .. }) => None,
                Err(e) => return Err(e),
            };
            // Its name for the audit log: from the verified record, else
            // from what the bytes claim.
            let shown = match &record {
                Some(r) => Some(r.clone()),
                None => match self.module.decode(&signed.canonical)? {
                    Ok(SignedBody::Key(r)) => Some(r),
                    _ => None,
                },
            };
            let detail = match shown {
                Some(r) => {
                    let level = match r.level {
                        KeyLevel::Project(_) => "project key",
                        KeyLevel::Organization => "key",
                    };
                    format!("{} ({level}, with organization {slug})", r.name)
                }
                None => format!("(key, with organization {slug})"),
            };
            match self.module.make_tombstone(id, record.as_ref(), at)? {
                Ok(t) => change.tombstones.push(t),
                Err(e) => return Err(self.policy(e)),
            }
            key_ids.push(id.clone());
            key_details.push(detail);
        }
        let count = |n: usize, what: &str| match n {
            1 => format!("1 {what}"),
            n => format!("{n} {what}s"),
        };
        change.audit.push(event(
            at,
            "org.delete",
            Some(slug),
            slug,
            Some(format!(
                "{} and {} deleted",
                count(project_ids.len(), "project"),
                count(key_ids.len(), "key")
            )),
        ));
        for id in &project_ids {
            change.audit.push(event(
                at,
                "project.delete",
                Some(slug),
                id,
                Some(format!("with organization {slug}")),
            ));
        }
        for (id, detail) in key_ids.iter().zip(key_details) {
            change
                .audit
                .push(event(at, "key.delete", Some(slug), id, Some(detail)));
        }
        change.organizations.push(deleted.clone());
        self.apply(change)?;
        Ok(OrgDeleted {
            organization: OrgView::from_parts(deleted, None),
            projects: project_ids,
            keys: key_ids,
        })
    }

    /// Refuse a key record its organization's policy does not admit (at
    /// creation and rotation: the rule `evaluate` applies at use).
    pub(crate) fn admit(&mut self, record: &KeyRecord) -> Result<()> {
        let org = self.live_organization(&record.organization)?;
        self.admit_in(&org, record)
    }

    /// The same, with the key's organization already read and verified.
    pub(crate) fn admit_in(&mut self, org: &Organization, record: &KeyRecord) -> Result<()> {
        match self.module.admits(org, record)? {
            Ok(()) => Ok(()),
            Err(e) => Err(self.policy(e)),
        }
    }
}
