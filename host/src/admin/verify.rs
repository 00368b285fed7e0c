//! `verify`: one decision by the component's `evaluate`, over the signed
//! evidence the store holds for the presented key and the requested project.

use crate::error::Result;
use crate::runtime::bindings::{Decision, DenyClass, Evidence, Text, ValidationRequest};

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
        let (key, tombstone) = match &key_id {
            Some(id) => (self.store.key(id)?, self.store.tombstone(id)?),
            None => (None, None),
        };
        let evidence = Evidence {
            key,
            tombstone,
            project: self.store.project(project)?,
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
