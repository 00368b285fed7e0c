//! Admin operations over an open store, every rule and every decision taken
//! by the embedded component. This is the library a Rust service embeds; the
//! `keygate` binary is a thin command-line front end over it.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::issuer::{self, Issuer};
use crate::runtime::bindings::{
    CreateRequest, Decision, DenyReason, EffectiveStatus, ExpiryPolicy, KeyLevel, KeyRecord,
    KeyStatus, LoadError, ProjectAccess, RecordError, Scope, SignedRecord, ValidationRequest,
};
use crate::runtime::{IssuedKey, Module, Runtime, ValidatorHandle};
use crate::schema::{AuditEvent, DeletedKey, Project};
use crate::store::{self, Batch, DirState, Store};

/// The deployment prefix used when `init` is not given one.
pub const DEFAULT_PREFIX: &str = "kg";

/// An open keygate: store, issuer key and component instance.
pub struct Keygate {
    store: Store,
    module: Module,
    issuer: Issuer,
    prefix: String,
    created: Option<DirState>,
    /// A component `validator` trusting the issuer, made on first use; it
    /// verifies stored records before any admin change relies on them.
    checker: Option<ValidatorHandle>,
}

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
    /// Scopes.
    pub scopes: Vec<Scope>,
}

/// A key just created or rotated in: the only moment its secret exists.
#[derive(Debug)]
pub struct Created {
    /// The key string (shown once) and id.
    pub issued: IssuedKey,
    /// Its metadata.
    pub view: KeyView,
}

/// Everything a listing shows about a key. Never the secret or its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyView {
    /// Key id.
    pub id: String,
    /// Label.
    pub name: String,
    /// Owning organization.
    pub organization: String,
    /// `organization` or `project`.
    pub level: &'static str,
    /// Owning project of a project-level key.
    pub project: Option<String>,
    /// Scope names.
    pub scopes: Vec<&'static str>,
    /// `all-projects`, or the selected project ids.
    pub access: AccessView,
    /// `active` or `inactive`.
    pub status: &'static str,
    /// Why inactive: `disabled`, `expired`, or `signature-invalid`.
    pub inactive_reason: Option<&'static str>,
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
}

/// Project access as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum AccessView {
    /// `"all-projects"`.
    All(&'static str),
    /// The selected project ids.
    Selected(Vec<String>),
}

impl std::fmt::Display for AccessView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccessView::All(s) => f.write_str(s),
            AccessView::Selected(ids) => f.write_str(&ids.join(",")),
        }
    }
}

/// The answer of [`Keygate::verify`].
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The component's decision.
    pub decision: Decision,
    /// The project asked about.
    pub project: Project,
    /// The key id, when the presented key was well-formed.
    pub key_id: Option<String>,
}

/// The name of a deny reason, as printed and in JSON.
pub fn reason_name(r: DenyReason) -> &'static str {
    match r {
        DenyReason::Malformed => "malformed key",
        DenyReason::BadChecksum => "bad checksum",
        DenyReason::UnknownKey => "unknown key",
        DenyReason::SecretMismatch => "secret mismatch",
        DenyReason::RecordSignatureInvalid => "record signature invalid",
        DenyReason::WrongOrganization => "wrong organization",
        DenyReason::Disabled => "key disabled",
        DenyReason::Expired => "key expired",
        DenyReason::ScopeNotGranted => "scope not granted",
        DenyReason::ProjectNotGranted => "project not granted",
    }
}

/// The machine name of a deny reason, as in the WIT and in JSON output.
pub fn reason_code(r: DenyReason) -> &'static str {
    match r {
        DenyReason::Malformed => "malformed",
        DenyReason::BadChecksum => "bad-checksum",
        DenyReason::UnknownKey => "unknown-key",
        DenyReason::SecretMismatch => "secret-mismatch",
        DenyReason::RecordSignatureInvalid => "record-signature-invalid",
        DenyReason::WrongOrganization => "wrong-organization",
        DenyReason::Disabled => "disabled",
        DenyReason::Expired => "expired",
        DenyReason::ScopeNotGranted => "scope-not-granted",
        DenyReason::ProjectNotGranted => "project-not-granted",
    }
}

/// The name of a scope.
pub fn scope_name(s: Scope) -> &'static str {
    match s {
        Scope::TriggerWorkflows => "trigger-workflows",
    }
}

/// The scope with this name, or a clear error.
pub fn parse_scope(name: &str) -> Result<Scope> {
    match name {
        "trigger-workflows" => Ok(Scope::TriggerWorkflows),
        other => Err(Error::invalid(format!(
            "unknown scope `{other}` (known scopes: trigger-workflows)"
        ))),
    }
}

/// A one-line message for a policy error from the component.
pub fn record_error_message(e: &RecordError) -> String {
    match e {
        RecordError::BadKeyId => "key id must be 11 base62 characters".into(),
        RecordError::BadOrganization => {
            "organization must be 1 to 63 lowercase letters, digits or dashes, not starting or ending with a dash".into()
        }
        RecordError::NameEmpty => "name is empty".into(),
        RecordError::NameTooLong => "name is longer than 100 characters".into(),
        RecordError::NameControlCharacter => "name contains a control character".into(),
        RecordError::NoScope => "at least one scope is required".into(),
        RecordError::EmptyProjectSelection => "a selected-projects key needs at least one project".into(),
        RecordError::BadProjectId(id) => format!("`{id}` is not a valid project id"),
        RecordError::ProjectLevelAccess => "a project-level key acts on exactly its own project".into(),
        RecordError::ExpiryOutOfRange(d) => format!("expiry of {d} days is outside the policy (7 to 90 days, or never)"),
        RecordError::BadKeyHash => "key hash must be 32 bytes".into(),
        RecordError::InconsistentExpiry => "expiry time does not follow from the expiry policy".into(),
        RecordError::BadVersion => "record version must be at least 1".into(),
        RecordError::NotCanonical => "record is not canonical".into(),
        RecordError::GraceTooLong => "grace period is longer than 7 days".into(),
        RecordError::AlreadyRotated => "key was already rotated".into(),
    }
}

fn policy(e: RecordError) -> Error {
    Error::Invalid(record_error_message(&e))
}

/// The platform's default data directory: `<user data dir>/keygate`.
pub fn default_data_dir() -> Option<PathBuf> {
    dirs::data_dir().map(|d| d.join("keygate"))
}

/// Seconds since the epoch, now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn random<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b)
        .map_err(|e| Error::System(format!("the OS random source failed: {e}")))?;
    Ok(b)
}

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

fn runtime_for(dir: &Path) -> Result<Runtime> {
    Ok(Runtime::new(Some(&dir.join(store::CACHE_DIR)))?)
}

impl Keygate {
    /// Open the store in `dir`. With `create`, a missing or empty directory
    /// is initialised with the default prefix ([`Keygate::created`] then says so).
    pub fn open(dir: &Path, create: bool) -> Result<Keygate> {
        let state = store::dir_state(dir)?;
        match state {
            DirState::Store => {}
            DirState::Missing | DirState::Empty if create => {
                return Self::init_in(dir, DEFAULT_PREFIX, state);
            }
            DirState::Missing | DirState::Empty => return Err(Error::NoStore(dir.to_path_buf())),
            DirState::Foreign => return Err(Error::Foreign(dir.to_path_buf())),
        }
        let store = Store::open(dir)?;
        let mut module = runtime_for(dir)?.instantiate()?;
        let issuer = Issuer::load(&dir.join(issuer::FILE), &mut module)?;
        if store.issuer_id()? != issuer.id() {
            return Err(Error::Corrupt {
                path: dir.to_path_buf(),
                why: format!(
                    "`{}` is not the issuer key this store was created with",
                    issuer::FILE
                ),
            });
        }
        let prefix = store.prefix()?;
        Ok(Keygate {
            store,
            module,
            issuer,
            prefix,
            created: None,
            checker: None,
        })
    }

    /// Initialise a new store in a missing or empty directory.
    pub fn init(dir: &Path, prefix: &str) -> Result<Keygate> {
        let state = store::dir_state(dir)?;
        match state {
            DirState::Missing | DirState::Empty => Self::init_in(dir, prefix, state),
            DirState::Store => Err(Error::invalid(format!(
                "`{}` already holds a keygate store",
                dir.display()
            ))),
            DirState::Foreign => Err(Error::Foreign(dir.to_path_buf())),
        }
    }

    fn init_in(dir: &Path, prefix: &str, state: DirState) -> Result<Keygate> {
        let result = (|| {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::System(format!(
                    "cannot create the data directory `{}`: {e}",
                    dir.display()
                ))
            })?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                if state == DirState::Missing {
                    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
                }
            }
            let mut module = runtime_for(dir)?.instantiate()?;
            if module.make_key(prefix, &[0; 40])?.is_err() {
                return Err(Error::invalid(format!(
                    "key prefix `{prefix}` must be 2 to 12 lowercase letters or digits, starting with a letter"
                )));
            }
            let issuer = Issuer::generate(&dir.join(issuer::FILE), &mut module)?;
            let at = now();
            let store = Store::create(dir, prefix, issuer.id(), at)?;
            let kg = Keygate {
                store,
                module,
                issuer,
                prefix: prefix.to_string(),
                created: Some(state),
                checker: None,
            };
            kg.store.commit(Batch {
                audit: vec![event(
                    at,
                    "init",
                    None,
                    kg.issuer.id(),
                    Some(format!("prefix {prefix}")),
                )],
                ..Batch::default()
            })?;
            Ok(kg)
        })();
        if result.is_err() {
            remove_new_store(dir, state);
        }
        result
    }

    /// Whether this call initialised the store (and from what state).
    pub fn created(&self) -> bool {
        self.created.is_some()
    }

    /// Undo a store this process just initialised (after a failed command),
    /// leaving the directory as it was found.
    pub fn discard_if_created(self) {
        if let Some(state) = self.created {
            let dir = self.store.dir().to_path_buf();
            drop(self);
            remove_new_store(&dir, state);
        }
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        self.store.dir()
    }

    /// The deployment key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The issuer key.
    pub fn issuer(&self) -> &Issuer {
        &self.issuer
    }

    /// The store (read access for exports and tests).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The admin write sequence number.
    pub fn sequence(&self) -> Result<u64> {
        self.store.sequence()
    }

    // ------------------------------------------------------------ projects

    /// Register a project in an organization.
    pub fn create_project(&mut self, organization: &str, name: &str, at: u64) -> Result<Project> {
        let name = self
            .module
            .check_project(organization, name)?
            .map_err(policy)?;
        let mut id = new_project_id()?;
        while self.store.project(&id)?.is_some() {
            id = new_project_id()?;
        }
        let project = Project {
            id,
            organization: organization.to_string(),
            name,
            created_at: at,
            deleted_at: None,
        };
        self.store.commit(Batch {
            put_projects: vec![project.clone()],
            audit: vec![event(
                at,
                "project.create",
                Some(organization),
                &project.id,
                Some(project.name.clone()),
            )],
            ..Batch::default()
        })?;
        Ok(project)
    }

    /// Refuse an organization that is not a valid slug (the component's
    /// project check, with a name that always passes).
    fn check_organization(&mut self, organization: &str) -> Result<()> {
        self.module
            .check_project(organization, "-")?
            .map_err(policy)?;
        Ok(())
    }

    /// The live projects of an organization.
    pub fn list_projects(&mut self, organization: &str) -> Result<Vec<Project>> {
        self.check_organization(organization)?;
        Ok(self
            .store
            .projects()?
            .into_iter()
            .filter(|p| p.organization == organization && p.deleted_at.is_none())
            .collect())
    }

    /// A live project, or why not.
    pub fn live_project(&self, id: &str) -> Result<Project> {
        match self.store.project(id)? {
            Some(p) if p.deleted_at.is_none() => Ok(p),
            Some(_) => Err(Error::not_found(format!("project `{id}` was deleted"))),
            None => Err(Error::not_found(format!("unknown project `{id}`"))),
        }
    }

    /// Delete a project and, in the same transaction, its project-level keys.
    /// Returns the project and the ids of the keys deleted with it.
    pub fn delete_project(&mut self, id: &str, at: u64) -> Result<(Project, Vec<String>)> {
        let mut project = self.live_project(id)?;
        let mut doomed = Vec::new();
        for (key_id, signed) in self.store.keys()? {
            // A record that does not decode cannot be project-level for sure;
            // decoding needs no trust for this purpose.
            if let Ok(rec) = self.module.decode_record(&signed.canonical)?
                && rec.level == KeyLevel::Project(id.to_string())
            {
                doomed.push(DeletedKey {
                    id: key_id,
                    organization: rec.organization,
                    deleted_at: at,
                    last_version: rec.version,
                });
            }
        }
        project.deleted_at = Some(at);
        let ids: Vec<String> = doomed.iter().map(|d| d.id.clone()).collect();
        let mut audit = vec![event(
            at,
            "project.delete",
            Some(&project.organization),
            id,
            Some(format!("{} keys deleted", ids.len())),
        )];
        audit.extend(ids.iter().map(|k| {
            event(
                at,
                "key.delete",
                Some(&project.organization),
                k,
                Some(format!("with project {id}")),
            )
        }));
        self.store.commit(Batch {
            delete_keys: doomed,
            put_projects: vec![project.clone()],
            audit,
            ..Batch::default()
        })?;
        Ok((project, ids))
    }

    // ------------------------------------------------------------ keys

    fn sign(&mut self, record: &KeyRecord) -> Result<SignedRecord> {
        let canonical = self.module.encode_record(record)?.map_err(policy)?;
        Ok(self.issuer.sign(canonical))
    }

    /// A live key's record, its signature verified by the component.
    fn verified(&mut self, id: &str) -> Result<KeyRecord> {
        let Some(signed) = self.store.key(id)? else {
            return Err(match self.store.deleted_key(id)? {
                Some(_) => Error::not_found(format!("key `{id}` was deleted")),
                None => Error::not_found(format!("unknown key id `{id}`")),
            });
        };
        self.open_signed(id, &signed)
    }

    fn open_signed(&mut self, id: &str, signed: &SignedRecord) -> Result<KeyRecord> {
        let v = match self.checker {
            Some(v) => v,
            None => {
                let v = self.module.validator(&[self.issuer.trusted()])?;
                self.checker = Some(v);
                v
            }
        };
        // `load` verifies the signature on every call, also for a version it
        // already holds (then it answers `stale`).
        match self.module.validator_load(v, signed)? {
            Ok(_) => {}
            Err(LoadError::SignatureInvalid | LoadError::NotCanonical | LoadError::Forgotten) => {
                return Err(Error::Tampered(id.to_string()));
            }
        }
        let record = self
            .module
            .decode_record(&signed.canonical)?
            .map_err(|_| Error::Tampered(id.to_string()))?;
        if record.id != id {
            return Err(Error::Tampered(id.to_string()));
        }
        Ok(record)
    }

    fn view(&mut self, r: &KeyRecord, at: u64) -> Result<KeyView> {
        let (status, reason) = match self.module.status_at(r, at)? {
            EffectiveStatus::Active => ("active", None),
            EffectiveStatus::Disabled => ("inactive", Some("disabled")),
            EffectiveStatus::Expired => ("inactive", Some("expired")),
        };
        Ok(KeyView {
            id: r.id.clone(),
            name: r.name.clone(),
            organization: r.organization.clone(),
            level: match r.level {
                KeyLevel::Organization => "organization",
                KeyLevel::Project(_) => "project",
            },
            project: match &r.level {
                KeyLevel::Organization => None,
                KeyLevel::Project(p) => Some(p.clone()),
            },
            scopes: r.scopes.iter().map(|s| scope_name(*s)).collect(),
            access: match &r.access {
                ProjectAccess::AllProjects => AccessView::All("all-projects"),
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
        })
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

    /// Create a key. The record is committed and flushed before this returns;
    /// the caller shows `issued` once and forgets it.
    pub fn create_key(&mut self, spec: KeySpec, at: u64) -> Result<Created> {
        let (organization, level, access) = match &spec.access {
            Access::OwnProject(pid) => {
                let project = self.live_project(pid)?;
                if let Some(org) = &spec.organization
                    && *org != project.organization
                {
                    return Err(Error::invalid(format!(
                        "project `{pid}` belongs to organization `{}`, not `{org}`",
                        project.organization
                    )));
                }
                (
                    project.organization,
                    KeyLevel::Project(pid.clone()),
                    ProjectAccess::AllProjects,
                )
            }
            other => {
                let org = spec
                    .organization
                    .clone()
                    .ok_or_else(|| Error::invalid("an organization-level key needs --org"))?;
                self.check_organization(&org)?;
                let access = match other {
                    Access::Selected(ids) => {
                        if ids.is_empty() {
                            return Err(Error::invalid("--projects needs at least one project id"));
                        }
                        for pid in ids {
                            let p = self.live_project(pid)?;
                            if p.organization != org {
                                return Err(Error::invalid(format!(
                                    "project `{pid}` belongs to organization `{}`, not `{org}`",
                                    p.organization
                                )));
                            }
                        }
                        ProjectAccess::Selected(ids.clone())
                    }
                    _ => ProjectAccess::AllProjects,
                };
                (org, KeyLevel::Organization, access)
            }
        };
        let issued = self.new_key()?;
        let req = CreateRequest {
            id: issued.id.clone(),
            organization: organization.clone(),
            name: spec.name,
            level,
            scopes: spec.scopes,
            access,
            expiry: spec.expiry,
            now: at,
            key_hash: issued.key_hash.clone(),
            rotated_from: None,
        };
        let record = self.module.check_create(&req)?.map_err(policy)?;
        let signed = self.sign(&record)?;
        self.store.commit(Batch {
            put_keys: vec![(record.id.clone(), signed)],
            audit: vec![event(
                at,
                "key.create",
                Some(&organization),
                &record.id,
                Some(record.name.clone()),
            )],
            ..Batch::default()
        })?;
        let view = self.view(&record, at)?;
        Ok(Created { issued, view })
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
        self.check_organization(organization)?;
        if let Some(pid) = project {
            let p = self.live_project(pid)?;
            if p.organization != organization {
                return Err(Error::invalid(format!(
                    "project `{pid}` belongs to organization `{}`, not `{organization}`",
                    p.organization
                )));
            }
        }
        let mut out = Vec::new();
        for (id, signed) in self.store.keys()? {
            let record = match self.open_signed(&id, &signed) {
                Ok(r) => r,
                Err(Error::Tampered(_)) => {
                    // Untrusted: show only what is needed to find and delete it.
                    if let Ok(r) = self.module.decode_record(&signed.canonical)?
                        && r.organization == organization
                    {
                        let mut v = self.view(&r, at)?;
                        v.status = "inactive";
                        v.inactive_reason = Some("signature-invalid");
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
            out.push(self.view(&record, at)?);
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
        let next = self.module.set_status(&r, status)?.map_err(policy)?;
        let signed = self.sign(&next)?;
        let action = match status {
            KeyStatus::Active => "key.enable",
            KeyStatus::Disabled => "key.disable",
        };
        self.store.commit(Batch {
            put_keys: vec![(id.to_string(), signed)],
            audit: vec![event(at, action, Some(&next.organization), id, None)],
            ..Batch::default()
        })?;
        let v = self.view(&next, at)?;
        Ok((v, true))
    }

    /// Rotate a key: a new key with the same settings; the old one keeps
    /// working for `grace_seconds` (at most 7 days), then expires. Both
    /// records change in one transaction.
    /// Returns the new key and the old key's new metadata.
    pub fn rotate_key(
        &mut self,
        id: &str,
        grace_seconds: u64,
        at: u64,
    ) -> Result<(Created, KeyView)> {
        let old = self.verified(id)?;
        if old.status == KeyStatus::Disabled {
            return Err(Error::invalid(format!(
                "key `{id}` is disabled; enable it before rotating it"
            )));
        }
        if let Some(next) = &old.rotated_to {
            return Err(Error::invalid(format!(
                "key `{id}` was already rotated to `{next}`"
            )));
        }
        let issued = self.new_key()?;
        let req = CreateRequest {
            id: issued.id.clone(),
            organization: old.organization.clone(),
            name: old.name.clone(),
            level: old.level.clone(),
            scopes: old.scopes.clone(),
            access: old.access.clone(),
            expiry: old.expiry,
            now: at,
            key_hash: issued.key_hash.clone(),
            rotated_from: Some(old.id.clone()),
        };
        let new = self.module.check_create(&req)?.map_err(policy)?;
        let retired = self
            .module
            .retire(&old, &new.id, at, grace_seconds)?
            .map_err(policy)?;
        let new_signed = self.sign(&new)?;
        let old_signed = self.sign(&retired)?;
        self.store.commit(Batch {
            put_keys: vec![(new.id.clone(), new_signed), (old.id.clone(), old_signed)],
            audit: vec![event(
                at,
                "key.rotate",
                Some(&old.organization),
                id,
                Some(format!("to {}", new.id)),
            )],
            ..Batch::default()
        })?;
        let view = self.view(&new, at)?;
        let old_view = self.view(&retired, at)?;
        Ok((Created { issued, view }, old_view))
    }

    /// Delete a key; it stops validating at once. Tampered records can be
    /// deleted too (that is how an operator gets rid of them).
    pub fn delete_key(&mut self, id: &str, at: u64) -> Result<DeletedKey> {
        let Some(signed) = self.store.key(id)? else {
            return Err(match self.store.deleted_key(id)? {
                Some(_) => Error::not_found(format!("key `{id}` was already deleted")),
                None => Error::not_found(format!("unknown key id `{id}`")),
            });
        };
        let (organization, last_version) = match self.module.decode_record(&signed.canonical)? {
            Ok(r) => (r.organization, r.version),
            Err(_) => (String::new(), 0),
        };
        let tomb = DeletedKey {
            id: id.to_string(),
            organization: organization.clone(),
            deleted_at: at,
            last_version,
        };
        self.store.commit(Batch {
            delete_keys: vec![tomb.clone()],
            audit: vec![event(
                at,
                "key.delete",
                Some(organization.as_str()).filter(|o| !o.is_empty()),
                id,
                None,
            )],
            ..Batch::default()
        })?;
        Ok(tomb)
    }

    /// Would `presented` be allowed to do `action` on `project` at `at`?
    /// The organization comes from the project's registration; the decision
    /// comes from the component's `evaluate` (signature checked).
    pub fn verify(
        &mut self,
        presented: &str,
        project: &str,
        action: Scope,
        at: u64,
    ) -> Result<Verdict> {
        let project = self.live_project(project)?;
        let key_id = self.module.parse_key(presented)?.ok();
        let record = match &key_id {
            Some(id) => self.store.key(id)?,
            None => None,
        };
        let req = ValidationRequest {
            presented_key: presented.to_string(),
            organization: project.organization.clone(),
            project: project.id.clone(),
            action,
            now: at,
        };
        let decision = self
            .module
            .evaluate(&req, record.as_ref(), &[self.issuer.trusted()])?;
        Ok(Verdict {
            decision,
            project,
            key_id,
        })
    }

    /// Audit events, oldest first, optionally of one organization.
    pub fn audit(&self, organization: Option<&str>) -> Result<Vec<AuditEvent>> {
        Ok(self
            .store
            .audit()?
            .into_iter()
            .filter(|e| organization.is_none() || e.organization.as_deref() == organization)
            .collect())
    }
}

fn event(
    at: u64,
    action: &str,
    organization: Option<&str>,
    subject: &str,
    detail: Option<String>,
) -> AuditEvent {
    AuditEvent {
        sequence: 0,
        at,
        action: action.to_string(),
        organization: organization.map(str::to_string),
        subject: subject.to_string(),
        detail,
    }
}

/// Remove what init wrote, leaving `dir` as it was found (missing or empty).
fn remove_new_store(dir: &Path, was: DirState) {
    let _ = std::fs::remove_dir_all(dir.join(store::DB_DIR));
    let _ = std::fs::remove_file(dir.join(issuer::FILE));
    let _ = std::fs::remove_dir_all(dir.join(store::CACHE_DIR));
    if was == DirState::Missing {
        let _ = std::fs::remove_dir(dir);
    }
}
