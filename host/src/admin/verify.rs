//! `verify`: one decision by the component's `evaluate`, over the signed
//! evidence the store holds for the presented key and the requested project.

use crate::error::Result;
use serde_json::{Value, json};

use crate::runtime::bindings::{
    Decision, DenyClass, Evidence, SignedBody, Text, ValidationRequest,
};

use super::Keygate;

/// The answer of [`Keygate::verify`].
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The component's decision.
    pub decision: Decision,
    /// For a deny: the reason's code and message, from the component.
    pub reason: Option<Text>,
    /// For a deny: whether it means "not authenticated" or "forbidden".
    pub class: Option<DenyClass>,
    /// The project asked about.
    pub project: String,
    /// The key id, when the presented key was well-formed.
    pub key_id: Option<String>,
}

impl Keygate {
    /// Would `presented` be allowed to do `action` on `project` at `at`?
    /// The host only fetches evidence: the key's record and tombstone, and
    /// the project's registration, all signed; the component checks every
    /// signature and takes the decision (the organization comes from the
    /// registration, never from the caller).
    pub fn verify(
        &mut self,
        presented: &str,
        project: &str,
        action: &str,
        at: u64,
    ) -> Result<Verdict> {
        let action = self.scope(action)?;
        let key_id = self.module.parse_key(presented)?.ok();
        let (mut key, tombstone) = match &key_id {
            Some(id) => (self.store.key(id)?, self.store.tombstone(id)?),
            None => (None, None),
        };
        // The organization the key's record names (its signature is the
        // component's to check, with the record's). A record its
        // organization's listing does not hold is no record: every key
        // that can be allowed is in its organization's listing.
        let mut organization = None;
        if let (Some(signed), Some(id)) = (&key, &key_id)
            && let Ok(SignedBody::Key(r)) = self.module.decode(&signed.canonical)?
        {
            if self.store.key_listed(&r.organization, id)? {
                organization = self.store.organization(&r.organization)?;
            } else {
                key = None;
            }
        }
        let evidence = Evidence {
            key,
            tombstone,
            project: self.store.project(project)?,
            organization,
        };
        let req = ValidationRequest {
            presented_key: presented.to_string(),
            project: project.to_string(),
            action,
            now: at,
        };
        let decision = self.module.evaluate(&req, &evidence, &self.trusted())?;
        let (reason, class) = match &decision {
            Decision::Allow(_) => (None, None),
            Decision::Deny(r) => (
                Some(self.module.deny_reason_text(*r)?),
                Some(self.module.classify_deny(*r)?),
            ),
        };
        Ok(Verdict {
            decision,
            reason,
            class,
            project: project.to_string(),
            key_id,
        })
    }
}

/// A decision as the CLI's `verify --json` and the service's
/// `POST /v1/keys/verify` write it: `{"decision": "allow", "key_id",
/// "name", "organization", "project", "action", "at", "record_version",
/// "expires_at"}` or `{"decision": "deny", "reason", "class", "message",
/// "key_id", "project", "action", "at"}`. Reason codes, classes and
/// messages come from the component.
pub fn decision_json(
    decision: &Decision,
    reason: Option<&Text>,
    class: Option<DenyClass>,
    key_id: Option<&str>,
    project: &str,
    action: &str,
    at: u64,
) -> Value {
    let at = super::rfc3339(at);
    match decision {
        Decision::Allow(ok) => json!({
            "decision": "allow", "key_id": ok.key_id, "name": ok.name,
            "organization": ok.organization, "project": project, "action": action,
            "at": at, "record_version": ok.record_version,
            "expires_at": ok.expires_at.map(super::rfc3339),
        }),
        Decision::Deny(_) => json!({
            "decision": "deny",
            "reason": reason.map(|t| t.code.as_str()),
            "class": class.map(|c| match c {
                DenyClass::Unauthenticated => "unauthenticated",
                DenyClass::Forbidden => "forbidden",
            }),
            "message": reason.map(|t| t.message.as_str()),
            "key_id": key_id, "project": project, "action": action, "at": at,
        }),
    }
}

impl Verdict {
    /// This verdict as [`decision_json`] writes it.
    pub fn to_json(&self, action: &str, at: u64) -> Value {
        decision_json(
            &self.decision,
            self.reason.as_ref(),
            self.class,
            self.key_id.as_deref(),
            &self.project,
            action,
            at,
        )
    }
}
