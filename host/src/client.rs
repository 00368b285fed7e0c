//! A client of `keygate serve`'s API: the same [`AdminApi`] as a local
//! store, over HTTP. The CLI uses it for `--server URL`; a Rust program can
//! too. The admin token is never shown by `Debug`, never put in a URL.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};
use ureq::Agent;

use crate::admin::{
    Access, AdminApi, Created, KeyPolicyView, KeySpec, KeyView, OrgDeleted, OrgView, PolicySet,
    ProjectList, ProjectView, SnapshotFile, audit_from_json,
};
use crate::error::{Error, Result};
use crate::runtime::bindings::{ExpiryPolicy, IssuerKey, KeyStatus};
use crate::runtime::{IssuedKey, Runtime};
use crate::schema::AuditEvent;

/// Everything but unreserved characters is escaped in a path segment or a
/// query value.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn enc(text: &str) -> String {
    utf8_percent_encode(text, COMPONENT).to_string()
}

/// A connection to a running `keygate serve`.
pub struct Client {
    agent: Agent,
    base: String,
    token: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

enum Method {
    Get,
    Post(Value),
    Delete,
}

impl Client {
    /// A client of the service at `url` (`http://host:port` or `https://…`),
    /// authenticating admin calls with `token` (`kgadmin_…`).
    pub fn new(url: &str, token: Option<String>) -> Result<Client> {
        let base = url.trim_end_matches('/').to_string();
        let authority = base
            .split("://")
            .nth(1)
            .unwrap_or("")
            .split('/')
            .next()
            .unwrap_or("");
        if authority.contains('@') {
            return Err(Error::System(
                "a --server URL must not hold credentials; the admin token goes in KEYGATE_ADMIN_TOKEN"
                    .into(),
            ));
        }
        if !(base.starts_with("http://") || base.starts_with("https://")) || base.contains('?') {
            return Err(Error::System(format!(
                "`{url}` is not a service URL (http://HOST:PORT or https://HOST)"
            )));
        }
        let agent = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(60)))
            .build()
            .into();
        Ok(Client { agent, base, token })
    }

    fn unreachable(&self, e: &ureq::Error) -> Error {
        Error::System(format!(
            "cannot reach the keygate service at {}: {e}",
            self.base
        ))
    }

    /// One call; `bearer` is the credential sent (an admin token, or the
    /// presented key for verify). Returns the status and the raw body.
    fn call(&self, method: Method, path: &str, bearer: Option<&str>) -> Result<(u16, Vec<u8>)> {
        self.call_with(method, path, bearer, None)
    }

    fn call_with(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        extra: Option<(&str, String)>,
    ) -> Result<(u16, Vec<u8>)> {
        let url = format!("{}{path}", self.base);
        let mut headers = Vec::new();
        if let Some(b) = bearer {
            headers.push(("Authorization", format!("Bearer {b}")));
        }
        if let Some((name, value)) = extra {
            headers.push((name, value));
        }
        // Snapshots may be big; JSON answers are not.
        let limit: u64 = if path.starts_with("/v1/snapshot") {
            4 << 30
        } else {
            256 << 20
        };
        fn with<B>(
            mut r: ureq::RequestBuilder<B>,
            headers: &[(&str, String)],
        ) -> ureq::RequestBuilder<B> {
            for (n, v) in headers {
                r = r.header(*n, v);
            }
            r
        }
        let sent = match method {
            Method::Get => with(self.agent.get(&url), &headers).call(),
            Method::Delete => with(self.agent.delete(&url), &headers).call(),
            Method::Post(body) => with(self.agent.post(&url), &headers).send_json(body),
        };
        let mut response = sent.map_err(|e| self.unreachable(&e))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| self.unreachable(&e))?;
        Ok((status, body))
    }

    fn token(&self) -> Result<&str> {
        self.token.as_deref().ok_or_else(|| Error::Remote {
            status: 401,
            code: "unauthenticated".into(),
            message: "no admin token: set KEYGATE_ADMIN_TOKEN (from `keygate admin-token create`)"
                .into(),
        })
    }

    /// An admin call answering JSON; a non-2xx answer is [`Error::Remote`].
    fn admin(&self, method: Method, path: &str) -> Result<Value> {
        let (status, body) = self.call(method, path, Some(self.token()?))?;
        checked(json_of(status, &body)?, &self.base)
    }

    /// A view of the key `id` (a service answering about another key is
    /// not believed).
    fn view_of(&self, v: Value, id: &str) -> Result<KeyView> {
        let view = self.view(v)?;
        if view.id == id {
            Ok(view)
        } else {
            Err(self.garbled())
        }
    }

    fn org(&self, v: Value) -> Result<OrgView> {
        OrgView::from_json(v).ok_or_else(|| self.garbled())
    }

    fn project(&self, v: Value) -> Result<ProjectView> {
        ProjectView::from_json(v).ok_or_else(|| self.garbled())
    }

    fn view(&self, v: Value) -> Result<KeyView> {
        KeyView::from_json(v).ok_or_else(|| self.garbled())
    }

    fn garbled(&self) -> Error {
        Error::System(format!(
            "the keygate service at {} answered something this keygate cannot read (another version?)",
            self.base
        ))
    }

    fn created(&self, mut v: Value) -> Result<Created> {
        let key = v
            .get_mut("key")
            .and_then(|k| k.as_str().map(str::to_string))
            .ok_or_else(|| self.garbled())?;
        if let Some(obj) = v.as_object_mut() {
            obj.remove("key");
        }
        let view = self.view(v)?;
        // The key must be a key, of the id the view names.
        if keygate_policy::parse_key(&key).ok() != Some(view.id.as_str()) {
            return Err(self.garbled());
        }
        Ok(Created {
            issued: IssuedKey::received(key, view.id.clone()),
            view,
        })
    }
}

/// An answer whose every string is free of control and invisible
/// formatting characters (the policy's `is_hidden`, the rule names are held
/// to): a service, or whatever answers in its place, cannot put terminal
/// escapes or fake lines into this process's output.
fn checked(v: Value, base: &str) -> Result<Value> {
    fn clean(v: &Value) -> bool {
        match v {
            Value::String(s) => !s
                .chars()
                .any(|c| c.is_control() || keygate_policy::record::is_hidden(c)),
            Value::Array(a) => a.iter().all(clean),
            Value::Object(o) => o
                .iter()
                .all(|(k, v)| clean(&Value::String(k.clone())) && clean(v)),
            _ => true,
        }
    }
    if clean(&v) {
        Ok(v)
    } else {
        Err(Error::System(format!(
            "the keygate service at {base} answered text with control or invisible characters; refused"
        )))
    }
}

/// The decision for a presented key that is not shaped like a key (it
/// cannot even travel in a header), taken by the embedded component.
fn local_malformed(presented: &str, project: &str, action: &str, at: Option<u64>) -> Result<Value> {
    use crate::runtime::bindings::{Decision, Evidence, ValidationRequest};
    let at = match at {
        Some(at) => at,
        None => crate::admin::now()?,
    };
    let mut m = Runtime::new()?.instantiate()?;
    let Some(scope) = m.scope_named(action)? else {
        let mut known = Vec::new();
        for s in m.scopes()? {
            known.push(m.scope_name(s)?);
        }
        return Err(Error::UnknownScope {
            name: action.to_string(),
            known: known.join(", "),
        });
    };
    let request = ValidationRequest {
        presented_key: presented.to_string(),
        project: project.to_string(),
        action: scope,
        now: at,
    };
    let empty = Evidence {
        key: None,
        tombstone: None,
        project: None,
        organization: None,
    };
    let decision = m.evaluate(&request, &empty, &[])?;
    let (text, class) = match &decision {
        Decision::Deny(r) => (Some(m.deny_reason_text(*r)?), Some(m.classify_deny(*r)?)),
        Decision::Allow(_) => (None, None),
    };
    Ok(crate::admin::decision_json(
        &decision,
        text.as_ref(),
        class,
        None,
        project,
        action,
        at,
    ))
}

/// The JSON of a 2xx answer; the service's error otherwise.
fn json_of(status: u16, body: &[u8]) -> Result<Value> {
    let v: Option<Value> = serde_json::from_slice(body).ok();
    if (200..300).contains(&status) {
        return v.ok_or_else(|| Error::System("the keygate service answered with no JSON".into()));
    }
    let e = v.as_ref().and_then(|v| v.get("error"));
    let text = |k: &str| {
        e.and_then(|e| e.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    Err(Error::Remote {
        status,
        code: text("code").unwrap_or_else(|| "http".into()),
        message: text("message")
            .unwrap_or_else(|| format!("the keygate service answered {status}")),
    })
}

fn from<T: for<'de> serde::Deserialize<'de>>(v: Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| {
        Error::System(format!(
            "the keygate service answered something this keygate cannot read: {e}"
        ))
    })
}

impl AdminApi for Client {
    fn create_organization(&mut self, slug: &str, name: Option<&str>, _at: u64) -> Result<OrgView> {
        let v = self.admin(
            Method::Post(json!({"slug": slug, "name": name})),
            "/v1/orgs",
        )?;
        let o = self.org(v)?;
        if o.slug == slug {
            Ok(o)
        } else {
            Err(self.garbled())
        }
    }

    fn list_organizations(&mut self) -> Result<(Vec<OrgView>, Vec<String>)> {
        let list: Vec<Value> = from(self.admin(Method::Get, "/v1/orgs")?)?;
        let orgs = list
            .into_iter()
            .map(|v| self.org(v))
            .collect::<Result<_>>()?;
        Ok((orgs, Vec::new()))
    }

    fn show_organization(&mut self, slug: &str, _at: u64) -> Result<OrgView> {
        let o = self.org(self.admin(Method::Get, &format!("/v1/orgs/{}", enc(slug)))?)?;
        if o.slug == slug {
            Ok(o)
        } else {
            Err(self.garbled())
        }
    }

    fn set_key_policy(
        &mut self,
        slug: &str,
        policy: KeyPolicyView,
        name: Option<&str>,
        _at: u64,
    ) -> Result<PolicySet> {
        let mut body = json!(policy);
        if let Some(name) = name {
            body["name"] = json!(name);
        }
        let v = self.admin(
            Method::Post(body),
            &format!("/v1/orgs/{}/policy", enc(slug)),
        )?;
        let organization = self.org(v["organization"].clone())?;
        if organization.slug != slug {
            return Err(self.garbled());
        }
        Ok(PolicySet {
            organization,
            changed: from(v["changed"].clone())?,
        })
    }

    fn delete_organization(&mut self, slug: &str, cascade: bool, _at: u64) -> Result<OrgDeleted> {
        let v = self.admin(
            Method::Delete,
            &format!("/v1/orgs/{}?cascade={cascade}", enc(slug)),
        )?;
        let organization = self.org(v["deleted_organization"].clone())?;
        if organization.slug != slug || organization.deleted_at.is_none() {
            return Err(self.garbled());
        }
        Ok(OrgDeleted {
            organization,
            projects: from(v["deleted_projects"].clone())?,
            keys: from(v["deleted_keys"].clone())?,
        })
    }

    fn create_project(&mut self, organization: &str, name: &str, _at: u64) -> Result<ProjectView> {
        let v = self.admin(
            Method::Post(json!({"org": organization, "name": name})),
            "/v1/projects",
        )?;
        self.project(v)
    }

    fn list_projects(&mut self, organization: &str) -> Result<ProjectList> {
        let list: Vec<Value> = from(self.admin(
            Method::Get,
            &format!("/v1/projects?org={}", enc(organization)),
        )?)?;
        Ok(ProjectList {
            projects: list
                .into_iter()
                .map(|v| self.project(v))
                .collect::<Result<_>>()?,
            untrusted: Vec::new(),
        })
    }

    fn show_project(&mut self, id: &str) -> Result<ProjectView> {
        let p = self.project(self.admin(Method::Get, &format!("/v1/projects/{}", enc(id)))?)?;
        if p.id == id {
            Ok(p)
        } else {
            Err(self.garbled())
        }
    }

    fn delete_project(&mut self, id: &str, _at: u64) -> Result<(ProjectView, Vec<String>)> {
        let v = self.admin(Method::Delete, &format!("/v1/projects/{}", enc(id)))?;
        let p = self.project(v["deleted_project"].clone())?;
        if p.id != id {
            return Err(self.garbled());
        }
        Ok((p, from(v["deleted_keys"].clone())?))
    }

    fn create_key(&mut self, spec: KeySpec, _at: u64) -> Result<Created> {
        let mut body = json!({
            "name": spec.name,
            "expiry_days": match spec.expiry { ExpiryPolicy::Never => None, ExpiryPolicy::Days(d) => Some(d) },
            "scopes": spec.scopes,
        });
        if let Some(org) = spec.organization {
            body["org"] = json!(org);
        }
        match spec.access {
            Access::OwnProject(p) => body["project"] = json!(p),
            Access::AllProjects => body["access"] = json!("all-projects"),
            Access::Selected(ids) => body["access"] = json!(ids),
        }
        let v = self.admin(Method::Post(body), "/v1/keys")?;
        self.created(v)
    }

    fn list_keys(
        &mut self,
        organization: &str,
        project: Option<&str>,
        _at: u64,
    ) -> Result<Vec<KeyView>> {
        let mut path = format!("/v1/keys?org={}", enc(organization));
        if let Some(p) = project {
            path.push_str(&format!("&project={}", enc(p)));
        }
        let list: Vec<Value> = from(self.admin(Method::Get, &path)?)?;
        list.into_iter().map(|v| self.view(v)).collect()
    }

    fn show_key(&mut self, id: &str, _at: u64) -> Result<KeyView> {
        let v = self.admin(Method::Get, &format!("/v1/keys/{}", enc(id)))?;
        self.view_of(v, id)
    }

    fn set_status(&mut self, id: &str, status: KeyStatus, _at: u64) -> Result<(KeyView, bool)> {
        let verb = match status {
            KeyStatus::Active => "enable",
            KeyStatus::Disabled => "disable",
        };
        let v = self.admin(
            Method::Post(json!({})),
            &format!("/v1/keys/{}/{verb}", enc(id)),
        )?;
        let changed = v["changed"].as_bool().ok_or_else(|| self.garbled())?;
        Ok((self.view_of(v, id)?, changed))
    }

    fn rotate_key(
        &mut self,
        id: &str,
        grace_seconds: u64,
        expiry: Option<ExpiryPolicy>,
        _at: u64,
    ) -> Result<(Created, KeyView)> {
        let mut body = json!({"grace_seconds": grace_seconds});
        match expiry {
            None => {}
            Some(ExpiryPolicy::Never) => body["expiry_days"] = Value::Null,
            Some(ExpiryPolicy::Days(d)) => body["expiry_days"] = json!(d),
        }
        let mut v = self.admin(Method::Post(body), &format!("/v1/keys/{}/rotate", enc(id)))?;
        let old = v
            .as_object_mut()
            .and_then(|o| o.remove("rotated"))
            .ok_or_else(|| self.garbled())?;
        let created = self.created(v)?;
        if created.view.rotated_from.as_deref() != Some(id) {
            return Err(self.garbled());
        }
        Ok((created, self.view_of(old, id)?))
    }

    fn delete_key(&mut self, id: &str, _at: u64) -> Result<Option<String>> {
        let v = self.admin(Method::Delete, &format!("/v1/keys/{}", enc(id)))?;
        // Only an answer naming the deleted key is a deletion.
        if v["deleted_key"].as_str() != Some(id) {
            return Err(self.garbled());
        }
        Ok(v["organization"].as_str().map(str::to_string))
    }

    fn audit(&mut self, organization: Option<&str>) -> Result<Vec<AuditEvent>> {
        let path = match organization {
            Some(o) => format!("/v1/audit?org={}", enc(o)),
            None => "/v1/audit".to_string(),
        };
        let list: Vec<Value> = from(self.admin(Method::Get, &path)?)?;
        list.into_iter()
            .map(|v| audit_from_json(v).ok_or_else(|| self.garbled()))
            .collect()
    }

    fn issuer_key(&mut self) -> Result<IssuerKey> {
        let v = self.admin(Method::Get, "/v1/issuer")?;
        let id = v["issuer_key_id"].as_str().ok_or_else(|| self.garbled())?;
        let pk = v["public_key"].as_str().ok_or_else(|| self.garbled())?;
        let public_key = (0..pk.len() / 2)
            .map(|i| {
                pk.get(2 * i..2 * i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect::<Option<Vec<u8>>>()
            .filter(|b| b.len() == 32)
            .ok_or_else(|| self.garbled())?;
        Ok(IssuerKey {
            id: id.to_string(),
            public_key,
        })
    }

    fn verify_json(
        &mut self,
        presented: &str,
        project: &str,
        action: &str,
        at: Option<u64>,
    ) -> Result<Value> {
        // A key that cannot travel in a header (controls, spaces, non-ASCII)
        // is not shaped like a key: the embedded component decides it here,
        // exactly as the service's would.
        if presented.is_empty() || !presented.bytes().all(|b| b.is_ascii_graphic()) {
            return local_malformed(presented, project, action, at);
        }
        // The presented key is the credential of a verify call; it goes in
        // the Authorization header, never in the URL or the body. Asking
        // about another time needs the admin token too.
        let mut body = json!({"project": project, "action": action});
        let mut extra = None;
        if let Some(at) = at {
            body["at"] = json!(at);
            extra = Some((crate::serve::ADMIN_TOKEN_HEADER, self.token()?.to_string()));
        }
        let (status, bytes) = self.call_with(
            Method::Post(body),
            "/v1/keys/verify",
            Some(presented),
            extra,
        )?;
        let v = json_of(status, &bytes)?;
        checked(v, &self.base)
    }

    fn snapshot_file(&mut self, _at: u64, since: Option<u64>) -> Result<SnapshotFile> {
        let path = match since {
            Some(s) => format!("/v1/snapshot?since={s}"),
            None => "/v1/snapshot".to_string(),
        };
        let (status, bytes) = self.call(Method::Get, &path, Some(self.token()?))?;
        if status == 204 {
            let sequence = since.unwrap_or_default();
            return Err(Error::NothingSince {
                since: sequence,
                sequence,
            });
        }
        if status != 200 {
            return Err(json_of(status, &bytes)
                .err()
                .unwrap_or_else(|| self.garbled()));
        }
        // Checked here against the issuer the service names: a snapshot
        // that does not verify is never written.
        let trusted = self.issuer_key()?;
        let mut module = Runtime::new()?.instantiate()?;
        match module.inspect_snapshot(&bytes, &[trusted])? {
            Ok(info) if info.base != since => Err(Error::System(format!(
                "the service sent a snapshot with base {:?} when {since:?} was asked for",
                info.base
            ))),
            Ok(info) => Ok(SnapshotFile { bytes, info }),
            Err(e) => Err(Error::System(format!(
                "the snapshot the service sent is refused by its issuer key: {e:?}"
            ))),
        }
    }
}
