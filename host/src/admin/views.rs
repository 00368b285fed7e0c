//! What listings show: key and project metadata, never a secret or a hash.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::runtime::bindings::{
    EffectiveStatus, ExpiryPolicy, ExpiryRule, KeyLevel, KeyRecord, Organization, ProjectAccess,
    ProjectRegistration,
};
use crate::schema::AuditEvent;

use super::Keygate;

/// Everything a listing shows about a key. Never the secret or its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyView {
    /// Key id.
    pub id: String,
    /// Label.
    pub name: String,
    /// Owning organization.
    pub organization: String,
    /// `organization` or `project`.
    pub level: String,
    /// Owning project of a project-level key.
    pub project: Option<String>,
    /// Scope names.
    pub scopes: Vec<String>,
    /// `all-projects`, or the selected project ids.
    pub access: AccessView,
    /// `active` or `inactive`.
    pub status: String,
    /// Why inactive: `disabled`, `not-yet-valid`, `expired`,
    /// `lifetime-exceeds-policy`, `signature-invalid`, or the organization's
    /// state (`unknown-organization`, `organization-deleted`,
    /// `organization-registration-invalid`).
    pub inactive_reason: Option<String>,
    /// `never` or `<N>d`.
    pub expiry_policy: String,
    /// Expiry time (seconds since the epoch), if any.
    pub expires_at: Option<u64>,
    /// Creation time.
    pub created_at: u64,
    /// The key this one replaced.
    pub rotated_from: Option<String>,
    /// The key that replaced this one.
    pub rotated_to: Option<String>,
    /// Record version.
    pub version: u64,
    /// When the key last allowed a request (recorded at most once a
    /// minute), if it ever did.
    #[serde(default)]
    pub last_used_at: Option<u64>,
}

/// Project access as listed. In JSON always an object:
/// `{"all_projects": true, "projects": []}` or `{"all_projects": false,
/// "projects": ["prj_…"]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "AccessJson", try_from = "AccessJson")]
pub enum AccessView {
    /// `"all-projects"`.
    All(String),
    /// The selected project ids.
    Selected(Vec<String>),
}

/// [`AccessView`]'s JSON shape.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessJson {
    all_projects: bool,
    projects: Vec<String>,
}

impl From<AccessView> for AccessJson {
    fn from(a: AccessView) -> Self {
        match a {
            AccessView::All(_) => AccessJson {
                all_projects: true,
                projects: Vec::new(),
            },
            AccessView::Selected(projects) => AccessJson {
                all_projects: false,
                projects,
            },
        }
    }
}

impl TryFrom<AccessJson> for AccessView {
    type Error = &'static str;
    fn try_from(a: AccessJson) -> Result<Self, Self::Error> {
        match (a.all_projects, a.projects.is_empty()) {
            (true, true) => Ok(AccessView::All("all-projects".into())),
            (false, false) => Ok(AccessView::Selected(a.projects)),
            _ => Err("all_projects and projects disagree"),
        }
    }
}

impl std::fmt::Display for AccessView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccessView::All(s) => f.write_str(s),
            AccessView::Selected(ids) => f.write_str(&ids.join(",")),
        }
    }
}

/// A project as listed (from its verified, signed registration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectView {
    /// Project id.
    pub id: String,
    /// Owning organization.
    pub organization: String,
    /// Label.
    pub name: String,
    /// Registration time.
    pub created_at: u64,
    /// Deletion time, if deleted.
    pub deleted_at: Option<u64>,
    /// Registration version.
    pub version: u64,
}

impl From<ProjectRegistration> for ProjectView {
    fn from(p: ProjectRegistration) -> Self {
        ProjectView {
            id: p.id,
            organization: p.organization,
            name: p.name,
            created_at: p.created_at,
            deleted_at: p.deleted_at,
            version: p.version,
        }
    }
}

/// An organization's key policy as listed and as the admin API takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPolicyView {
    /// Every key must expire.
    pub require_expiry: bool,
    /// Keys last at most this many days (implies `require_expiry`).
    pub max_expiry_days: Option<u16>,
}

impl KeyPolicyView {
    /// The component's rule (a maximum implies that expiry is required).
    pub fn rule(self) -> ExpiryRule {
        match (self.require_expiry, self.max_expiry_days) {
            (false, None) => ExpiryRule::Optional,
            (true, None) => ExpiryRule::Required,
            (_, Some(d)) => ExpiryRule::AtMost(d),
        }
    }
}

impl From<ExpiryRule> for KeyPolicyView {
    fn from(rule: ExpiryRule) -> Self {
        match rule {
            ExpiryRule::Optional => KeyPolicyView {
                require_expiry: false,
                max_expiry_days: None,
            },
            ExpiryRule::Required => KeyPolicyView {
                require_expiry: true,
                max_expiry_days: None,
            },
            ExpiryRule::AtMost(d) => KeyPolicyView {
                require_expiry: true,
                max_expiry_days: Some(d),
            },
        }
    }
}

/// A key policy in words: `expiry optional`, `expiry required`, `expiry
/// at most 30 days`.
pub fn expiry_rule_text(rule: ExpiryRule) -> String {
    match rule {
        ExpiryRule::Optional => "expiry optional".into(),
        ExpiryRule::Required => "expiry required".into(),
        ExpiryRule::AtMost(1) => "expiry at most 1 day".into(),
        ExpiryRule::AtMost(d) => format!("expiry at most {d} days"),
    }
}

/// What `org show` counts in a live organization.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrgCounts {
    /// Live projects.
    pub projects: u64,
    /// Live keys.
    pub keys: u64,
    /// Ids of the keys the current key policy denies (that would validate
    /// but for it), in id order.
    pub keys_outside_policy: Vec<String>,
}

/// An organization as listed (from its verified, signed registration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgView {
    /// Slug.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Its key policy.
    pub key_policy: KeyPolicyView,
    /// Registration time.
    pub created_at: u64,
    /// Deletion time, if deleted.
    pub deleted_at: Option<u64>,
    /// Registration version.
    pub version: u64,
    /// Live projects (`org show` of a live organization).
    #[serde(default)]
    pub projects: Option<u64>,
    /// Live keys (`org show` of a live organization).
    #[serde(default)]
    pub keys: Option<u64>,
    /// Keys the key policy now denies (`org show` of a live organization).
    #[serde(default)]
    pub keys_outside_policy: Option<Vec<String>>,
}

impl OrgView {
    /// A view of a verified registration, with counts when made.
    pub fn from_parts(o: Organization, counts: Option<OrgCounts>) -> OrgView {
        OrgView {
            slug: o.slug,
            name: o.name,
            key_policy: o.key_policy.expiry.into(),
            created_at: o.created_at,
            deleted_at: o.deleted_at,
            version: o.version,
            projects: counts.as_ref().map(|c| c.projects),
            keys: counts.as_ref().map(|c| c.keys),
            keys_outside_policy: counts.map(|c| c.keys_outside_policy),
        }
    }

    /// The policy in words.
    pub fn policy_text(&self) -> String {
        expiry_rule_text(self.key_policy.rule())
    }

    /// The JSON the CLI's `--json` and the service answer with.
    pub fn to_json(&self) -> serde_json::Value {
        let mut j = serde_json::json!(self);
        j["created_at"] = serde_json::json!(rfc3339(self.created_at));
        j["deleted_at"] = serde_json::json!(self.deleted_at.map(rfc3339));
        j
    }

    /// Read back what [`OrgView::to_json`] wrote.
    pub fn from_json(v: serde_json::Value) -> Option<OrgView> {
        serde_json::from_value(times_to_seconds(v, &["created_at", "deleted_at"])?).ok()
    }
}

/// The projects of an organization, and the ids of stored registrations
/// that failed verification (not trusted, so their organization is unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectList {
    /// Live projects, verified.
    pub projects: Vec<ProjectView>,
    /// Registrations that failed their signature check.
    pub untrusted: Vec<String>,
}

impl Keygate {
    /// A key's listing view at `at`; statuses come from the component.
    pub(crate) fn view(&mut self, r: &KeyRecord, at: u64) -> Result<KeyView> {
        let org = self.org_state(&r.organization)?;
        let mut v = self.view_in(r, &org, at)?;
        // A record its organization's listing does not hold decides as no
        // record at all (see `schema`): say so rather than "active".
        if !self.store.key_listed(&r.organization, &r.id)? {
            v.status = "inactive".into();
            v.inactive_reason = Some("unknown-key".into());
        }
        Ok(v)
    }

    /// The organization a key is judged by in listings: its verified, live
    /// record, or the deny reason a decision would give for it.
    pub(crate) fn org_state(&mut self, slug: &str) -> Result<Result<Organization, &'static str>> {
        match self.organization(slug) {
            Ok(o) if o.deleted_at.is_some() => Ok(Err("organization-deleted")),
            Ok(o) => Ok(Ok(o)),
            Err(crate::Error::UnknownOrganization { .. }) => Ok(Err("unknown-organization")),
            Err(crate::Error::Tampered { .. }) => Ok(Err("organization-registration-invalid")),
            Err(e) => Err(e),
        }
    }

    /// A key's view, judged by `org` (see [`Keygate::org_state`]): the
    /// component's status at `at`, then, for a key that would otherwise be
    /// active, its organization and key policy (the order of the deny
    /// reasons).
    pub(crate) fn view_in(
        &mut self,
        r: &KeyRecord,
        org: &Result<Organization, &'static str>,
        at: u64,
    ) -> Result<KeyView> {
        let (status, reason) = match self.module.status_at(r, at)? {
            EffectiveStatus::Active => match org {
                Err(code) => ("inactive", Some(*code)),
                Ok(o) => match self.module.admits(o, r)? {
                    Ok(()) => ("active", None),
                    Err(crate::runtime::bindings::RecordError::PredatesOrganization) => {
                        ("inactive", Some("predates-organization"))
                    }
                    Err(_) => ("inactive", Some("lifetime-exceeds-policy")),
                },
            },
            EffectiveStatus::Disabled => ("inactive", Some("disabled")),
            EffectiveStatus::NotYetValid => ("inactive", Some("not-yet-valid")),
            EffectiveStatus::Expired => ("inactive", Some("expired")),
        };
        let (status, reason) = (status.to_string(), reason.map(str::to_string));
        let mut scopes = Vec::with_capacity(r.scopes.len());
        for s in &r.scopes {
            scopes.push(self.scope_name(*s)?);
        }
        Ok(KeyView {
            id: r.id.clone(),
            name: r.name.clone(),
            organization: r.organization.clone(),
            level: match r.level {
                KeyLevel::Organization => "organization",
                KeyLevel::Project(_) => "project",
            }
            .to_string(),
            project: match &r.level {
                KeyLevel::Organization => None,
                KeyLevel::Project(p) => Some(p.clone()),
            },
            scopes,
            access: match &r.access {
                ProjectAccess::AllProjects => AccessView::All("all-projects".into()),
                ProjectAccess::Selected(ids) => AccessView::Selected(ids.clone()),
            },
            status,
            inactive_reason: reason,
            expiry_policy: match r.expiry {
                ExpiryPolicy::Never => "never".into(),
                ExpiryPolicy::Days(d) => format!("{d}d"),
            },
            expires_at: r.expires_at,
            created_at: r.created_at,
            rotated_from: r.rotated_from.clone(),
            rotated_to: r.rotated_to.clone(),
            version: r.version,
            last_used_at: self.store.last_used(&r.id)?,
        })
    }
}

/// RFC 3339 UTC time, to the second, as every JSON output writes times.
/// RFC 3339 ends at 9999-12-31T23:59:59Z; a later time (a far `--at`, a
/// damaged record) is written `@SECONDS` rather than fail.
pub fn rfc3339(secs: u64) -> String {
    const LAST_RFC3339: u64 = 253_402_300_799;
    if secs > LAST_RFC3339 {
        return format!("@{secs}");
    }
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}

/// The inverse of [`rfc3339`].
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    if let Some(secs) = text.strip_prefix('@') {
        return secs.parse().ok();
    }
    humantime::parse_rfc3339(text)
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// Replace the RFC 3339 strings under `fields` of a JSON object by seconds.
fn times_to_seconds(mut v: serde_json::Value, fields: &[&str]) -> Option<serde_json::Value> {
    for f in fields {
        let slot = v.get_mut(*f)?;
        if let Some(text) = slot.as_str() {
            *slot = serde_json::json!(parse_rfc3339(text)?);
        }
    }
    Some(v)
}

impl KeyView {
    /// The JSON the CLI's `--json` and the service answer with.
    pub fn to_json(&self) -> serde_json::Value {
        let mut j = serde_json::json!(self);
        j["expires_at"] = serde_json::json!(self.expires_at.map(rfc3339));
        j["created_at"] = serde_json::json!(rfc3339(self.created_at));
        j["last_used_at"] = serde_json::json!(self.last_used_at.map(rfc3339));
        j
    }

    /// Read back what [`KeyView::to_json`] wrote (other fields are ignored).
    pub fn from_json(v: serde_json::Value) -> Option<KeyView> {
        serde_json::from_value(times_to_seconds(
            v,
            &["expires_at", "created_at", "last_used_at"],
        )?)
        .ok()
    }
}

impl ProjectView {
    /// The JSON the CLI's `--json` and the service answer with (times in
    /// RFC 3339, as everywhere).
    pub fn to_json(&self) -> serde_json::Value {
        let mut j = serde_json::json!(self);
        j["created_at"] = serde_json::json!(rfc3339(self.created_at));
        j["deleted_at"] = serde_json::json!(self.deleted_at.map(rfc3339));
        j
    }

    /// Read back what [`ProjectView::to_json`] wrote.
    pub fn from_json(v: serde_json::Value) -> Option<ProjectView> {
        serde_json::from_value(times_to_seconds(v, &["created_at", "deleted_at"])?).ok()
    }
}

/// An audit event as JSON (its time in RFC 3339).
pub fn audit_json(e: &AuditEvent) -> serde_json::Value {
    let mut j = serde_json::json!(e);
    j["at"] = serde_json::json!(rfc3339(e.at));
    j
}

/// Read back what [`audit_json`] wrote.
pub fn audit_from_json(v: serde_json::Value) -> Option<AuditEvent> {
    serde_json::from_value(times_to_seconds(v, &["at"])?).ok()
}
