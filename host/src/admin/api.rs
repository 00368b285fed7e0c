//! The admin operations as one interface, served by a local store
//! ([`Keygate`]) or by a running `keygate serve` ([`crate::client::Client`]),
//! so that a front end (the CLI) runs the same code against either.

use serde_json::Value;

use crate::error::Result;
use crate::runtime::bindings::{ExpiryPolicy, IssuerKey, KeyStatus};
use crate::schema::AuditEvent;

use super::{
    Created, KeyPolicyView, KeySpec, KeyView, Keygate, OrgDeleted, OrgView, PolicySet, ProjectList,
    ProjectView, SnapshotFile,
};

/// Every admin operation the CLI offers on a store. Times (`at`) are the
/// caller's for a local store; a service uses its own clock.
pub trait AdminApi {
    /// Register an organization (its name defaults to its slug).
    fn create_organization(&mut self, slug: &str, name: Option<&str>, at: u64) -> Result<OrgView>;
    /// The live organizations, and the slugs of registrations that do not
    /// verify.
    fn list_organizations(&mut self) -> Result<(Vec<OrgView>, Vec<String>)>;
    /// One organization (deleted ones too), with counts when live.
    fn show_organization(&mut self, slug: &str, at: u64) -> Result<OrgView>;
    /// Set an organization's key policy (and name).
    fn set_key_policy(
        &mut self,
        slug: &str,
        policy: KeyPolicyView,
        name: Option<&str>,
        at: u64,
    ) -> Result<PolicySet>;
    /// Delete an organization (with `cascade`, its projects and keys too).
    fn delete_organization(&mut self, slug: &str, cascade: bool, at: u64) -> Result<OrgDeleted>;
    /// Register a project.
    fn create_project(&mut self, organization: &str, name: &str, at: u64) -> Result<ProjectView>;
    /// The live projects of an organization.
    fn list_projects(&mut self, organization: &str) -> Result<ProjectList>;
    /// A live project.
    fn show_project(&mut self, id: &str) -> Result<ProjectView>;
    /// Delete a project and its project-level keys.
    fn delete_project(&mut self, id: &str, at: u64) -> Result<(ProjectView, Vec<String>)>;
    /// Create a key (shown once).
    fn create_key(&mut self, spec: KeySpec, at: u64) -> Result<Created>;
    /// The keys of an organization (or of one of its projects).
    fn list_keys(
        &mut self,
        organization: &str,
        project: Option<&str>,
        at: u64,
    ) -> Result<Vec<KeyView>>;
    /// One key.
    fn show_key(&mut self, id: &str, at: u64) -> Result<KeyView>;
    /// Disable or enable a key; whether it changed.
    fn set_status(&mut self, id: &str, status: KeyStatus, at: u64) -> Result<(KeyView, bool)>;
    /// Rotate a key (with another expiry policy, or the old one's): the new
    /// key (shown once) and the old key's view.
    fn rotate_key(
        &mut self,
        id: &str,
        grace_seconds: u64,
        expiry: Option<ExpiryPolicy>,
        at: u64,
    ) -> Result<(Created, KeyView)>;
    /// Delete a key; its organization when its record could be read.
    fn delete_key(&mut self, id: &str, at: u64) -> Result<Option<String>>;
    /// The audit log (of one organization).
    fn audit(&mut self, organization: Option<&str>) -> Result<Vec<AuditEvent>>;
    /// The issuer public key validators pin.
    fn issuer_key(&mut self) -> Result<IssuerKey>;
    /// One decision, as [`super::decision_json`] writes it: now, or as of
    /// `at` (an operator's question; the service asks for an admin token).
    fn verify_json(
        &mut self,
        presented: &str,
        project: &str,
        action: &str,
        at: Option<u64>,
    ) -> Result<Value>;
    /// A signed snapshot, or a delta since a sequence.
    fn snapshot_file(&mut self, at: u64, since: Option<u64>) -> Result<SnapshotFile>;
}

impl AdminApi for Keygate {
    fn create_organization(&mut self, slug: &str, name: Option<&str>, at: u64) -> Result<OrgView> {
        Keygate::create_organization(self, slug, name, at)
    }
    fn list_organizations(&mut self) -> Result<(Vec<OrgView>, Vec<String>)> {
        Keygate::list_organizations(self)
    }
    fn show_organization(&mut self, slug: &str, at: u64) -> Result<OrgView> {
        Keygate::show_organization(self, slug, at)
    }
    fn set_key_policy(
        &mut self,
        slug: &str,
        policy: KeyPolicyView,
        name: Option<&str>,
        at: u64,
    ) -> Result<PolicySet> {
        Keygate::set_key_policy(self, slug, policy, name, at)
    }
    fn delete_organization(&mut self, slug: &str, cascade: bool, at: u64) -> Result<OrgDeleted> {
        Keygate::delete_organization(self, slug, cascade, at)
    }
    fn create_project(&mut self, organization: &str, name: &str, at: u64) -> Result<ProjectView> {
        Keygate::create_project(self, organization, name, at)
    }
    fn list_projects(&mut self, organization: &str) -> Result<ProjectList> {
        Keygate::list_projects(self, organization)
    }
    fn show_project(&mut self, id: &str) -> Result<ProjectView> {
        Keygate::live_project(self, id)
    }
    fn delete_project(&mut self, id: &str, at: u64) -> Result<(ProjectView, Vec<String>)> {
        Keygate::delete_project(self, id, at)
    }
    fn create_key(&mut self, spec: KeySpec, at: u64) -> Result<Created> {
        Keygate::create_key(self, spec, at)
    }
    fn list_keys(
        &mut self,
        organization: &str,
        project: Option<&str>,
        at: u64,
    ) -> Result<Vec<KeyView>> {
        Keygate::list_keys(self, organization, project, at)
    }
    fn show_key(&mut self, id: &str, at: u64) -> Result<KeyView> {
        Keygate::show_key(self, id, at)
    }
    fn set_status(&mut self, id: &str, status: KeyStatus, at: u64) -> Result<(KeyView, bool)> {
        Keygate::set_status(self, id, status, at)
    }
    fn rotate_key(
        &mut self,
        id: &str,
        grace_seconds: u64,
        expiry: Option<ExpiryPolicy>,
        at: u64,
    ) -> Result<(Created, KeyView)> {
        Keygate::rotate_key(self, id, grace_seconds, expiry, at)
    }
    fn delete_key(&mut self, id: &str, at: u64) -> Result<Option<String>> {
        Keygate::delete_key(self, id, at)
    }
    fn audit(&mut self, organization: Option<&str>) -> Result<Vec<AuditEvent>> {
        Keygate::audit(self, organization)
    }
    fn issuer_key(&mut self) -> Result<IssuerKey> {
        Ok(self.issuer().trusted())
    }
    fn verify_json(
        &mut self,
        presented: &str,
        project: &str,
        action: &str,
        at: Option<u64>,
    ) -> Result<Value> {
        let asked_now = at.is_none();
        let at = match at {
            Some(at) => at,
            None => super::now()?,
        };
        let verdict = self.verify(presented, project, action, at)?;
        // A real use (now, allowed) is remembered for listings; failing to
        // remember it never changes the decision.
        if asked_now && let crate::runtime::bindings::Decision::Allow(ok) = &verdict.decision {
            let _ = self.record_uses(&[(ok.key_id.clone(), at)]);
        }
        Ok(verdict.to_json(action, at))
    }
    fn snapshot_file(&mut self, at: u64, since: Option<u64>) -> Result<SnapshotFile> {
        self.snapshot(at, since)
    }
}
