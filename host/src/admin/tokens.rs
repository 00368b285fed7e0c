//! Admin tokens: the credentials of `keygate serve`'s admin API. A token is
//! shown once; the store keeps only its SHA-256, in a record signed by the
//! issuer (the data directory is untrusted: a record written there by
//! someone else does not verify and is not a token). A token reaches one
//! organization, or the whole deployment; a read-only token may only read.

use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{Error, Result};
use crate::runtime::bindings::SignedRecord;
use crate::schema::AuditEvent;
use crate::store::Batch;

use super::{Keygate, random};

/// The prefix of every admin token, whatever the deployment's key prefix:
/// an admin token is never mistaken for an API key, nor one for the other.
pub const TOKEN_PREFIX: &str = "kgadmin";

/// The first bytes of a token record's signed bytes. Key records,
/// registrations and tombstones start with `KGR`, `KGP`, `KGT`: a signature
/// over a token record can never pass for one over a fact, nor the reverse.
const MAGIC: &[u8] = b"keygate admin token v1\n";

/// What is known of an admin token. Never the token or its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminToken {
    /// The token id (the 11 characters after `kgadmin_`).
    pub id: String,
    /// Label.
    pub name: String,
    /// The one organization it reaches; `None`: the whole deployment.
    pub organization: Option<String>,
    /// Whether it may only read (listings, audit, snapshots).
    pub read_only: bool,
    /// When it was created.
    pub created_at: u64,
    /// When it was revoked, if it was.
    pub revoked_at: Option<u64>,
}

impl AdminToken {
    /// Whether this token may act on `organization` (`None`: a
    /// deployment-wide resource such as a snapshot).
    pub fn reaches(&self, organization: Option<&str>) -> bool {
        match (&self.organization, organization) {
            (None, _) => true,
            (Some(mine), Some(theirs)) => mine == theirs,
            (Some(_), None) => false,
        }
    }
}

/// The stored form: the view and the SHA-256 of the token.
#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    token: AdminToken,
    hash: String,
}

/// A token just made. Its `Debug` never shows the token.
pub struct IssuedToken {
    token: String,
    /// What is stored about it.
    pub info: AdminToken,
}

impl IssuedToken {
    /// The token, for its one-time display.
    pub fn expose_token(&self) -> &str {
        &self.token
    }
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &"<redacted>")
            .field("info", &self.info)
            .finish()
    }
}

fn hex(bytes: &[u8]) -> String {
    crate::issuer::hex(bytes)
}

impl Keygate {
    fn token_record(&self, stored: &Stored) -> Result<SignedRecord> {
        let mut canonical = MAGIC.to_vec();
        serde_json::to_writer(&mut canonical, stored)
            .map_err(|e| Error::System(format!("cannot encode an admin token: {e}")))?;
        Ok(self.issuer.sign(canonical))
    }

    /// A stored token record, if its signature verifies against this
    /// store's issuer and it names its own id; `None` otherwise.
    fn open_token(&self, id: &str, signed: &SignedRecord) -> Option<Stored> {
        let public = VerifyingKey::from_bytes(&self.issuer.public_key()).ok()?;
        let signature = Signature::from_slice(&signed.signature).ok()?;
        if signed.issuer_key_id != self.issuer.id()
            || public.verify_strict(&signed.canonical, &signature).is_err()
        {
            return None;
        }
        let json = signed.canonical.strip_prefix(MAGIC)?;
        let stored: Stored = serde_json::from_slice(json).ok()?;
        (stored.token.id == id).then_some(stored)
    }

    /// Make an admin token. With `organization`, it reaches only that
    /// organization, which must already have a project or a key.
    pub fn create_admin_token(
        &mut self,
        name: &str,
        organization: Option<&str>,
        read_only: bool,
        at: u64,
    ) -> Result<IssuedToken> {
        let count = name.chars().count();
        if count == 0 || count > 100 || name.chars().any(char::is_control) {
            return Err(Error::BadTokenName);
        }
        if self.module.looks_like_key(name, None)? {
            return Err(Error::KeyLooking);
        }
        if let Some(org) = organization {
            self.live_organization(org)?;
        }
        let issued = loop {
            let issued = match self.module.make_key(TOKEN_PREFIX, &random::<40>()?)? {
                Ok(k) => k,
                Err(e) => return Err(Error::System(format!("cannot make an admin token: {e:?}"))),
            };
            if self.store.admin_token(&issued.id)?.is_none() {
                break issued;
            }
        };
        let info = AdminToken {
            id: issued.id.clone(),
            name: name.to_string(),
            organization: organization.map(str::to_string),
            read_only,
            created_at: at,
            revoked_at: None,
        };
        let stored = Stored {
            token: info.clone(),
            hash: hex(&issued.key_hash),
        };
        let record = self.token_record(&stored)?;
        let detail = match (&info.organization, read_only) {
            (None, false) => "deployment",
            (None, true) => "deployment, read-only",
            (Some(_), false) => "organization",
            (Some(_), true) => "organization, read-only",
        };
        self.commit_batch(Batch {
            put_tokens: vec![(info.id.clone(), record)],
            audit: vec![AuditEvent {
                sequence: 0,
                at,
                action: "admin-token.create".into(),
                organization: info.organization.clone(),
                subject: info.id.clone(),
                detail: Some(detail.into()),
                actor: None,
                chain: None,
            }],
            ..Batch::default()
        })?;
        Ok(IssuedToken {
            token: issued.expose_key().to_string(),
            info,
        })
    }

    /// Every admin token whose record verifies, revoked ones included, and
    /// the ids of stored records that do not verify.
    pub fn list_admin_tokens(&mut self) -> Result<(Vec<AdminToken>, Vec<String>)> {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for (id, signed) in self.store.admin_tokens()? {
            match self.open_token(&id, &signed) {
                Some(s) => good.push(s.token),
                None => bad.push(id),
            }
        }
        Ok((good, bad))
    }

    /// Revoke a token for good; revoking a revoked token changes nothing.
    pub fn revoke_admin_token(&mut self, id: &str, at: u64) -> Result<(AdminToken, bool)> {
        if self.module.looks_like_key(id, Some(TOKEN_PREFIX))? {
            return Err(Error::KeyLooking);
        }
        let signed = self
            .store
            .admin_token(id)?
            .ok_or_else(|| Error::UnknownAdminToken(id.to_string()))?;
        let mut stored = self
            .open_token(id, &signed)
            .ok_or_else(|| Error::Tampered {
                kind: "admin token",
                id: id.to_string(),
            })?;
        if stored.token.revoked_at.is_some() {
            return Ok((stored.token, false));
        }
        stored.token.revoked_at = Some(at);
        let record = self.token_record(&stored)?;
        self.commit_batch(Batch {
            put_tokens: vec![(id.to_string(), record)],
            audit: vec![AuditEvent {
                sequence: 0,
                at,
                action: "admin-token.revoke".into(),
                organization: stored.token.organization.clone(),
                subject: id.to_string(),
                detail: None,
                actor: None,
                chain: None,
            }],
            ..Batch::default()
        })?;
        Ok((stored.token, true))
    }

    /// The token with this id, if it is still live (its record verifies,
    /// it is not revoked, its organization is live): what a session made
    /// from it asks on every request, so that revoking a token ends its
    /// sessions at once.
    pub fn live_admin_token(&mut self, id: &str) -> Result<Option<AdminToken>> {
        let Some(signed) = self.store.admin_token(id)? else {
            return Ok(None);
        };
        let Some(stored) = self.open_token(id, &signed) else {
            return Ok(None);
        };
        if stored.token.revoked_at.is_some() {
            return Ok(None);
        }
        if let Some(org) = &stored.token.organization {
            match self.live_organization(org) {
                // A token older than its organization was made for an
                // earlier organization of the same slug.
                Ok(o) if stored.token.created_at < o.created_at => return Ok(None),
                Ok(_) => {}
                Err(
                    Error::UnknownOrganization { .. }
                    | Error::OrganizationDeleted(_)
                    | Error::Tampered { .. },
                ) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        Ok(Some(stored.token))
    }

    /// The live token `presented` is, or `None`: not a token, unknown,
    /// revoked, a record that does not verify, the wrong secret, or its
    /// organization gone. The secret is compared as SHA-256 digests, in
    /// constant time.
    pub fn authenticate_admin(&mut self, presented: &str) -> Result<Option<AdminToken>> {
        if !presented.starts_with(TOKEN_PREFIX)
            || presented.as_bytes().get(TOKEN_PREFIX.len()) != Some(&b'_')
        {
            return Ok(None);
        }
        let Ok(id) = self.module.parse_key(presented)? else {
            return Ok(None);
        };
        let Some(signed) = self.store.admin_token(&id)? else {
            return Ok(None);
        };
        let Some(stored) = self.open_token(&id, &signed) else {
            return Ok(None);
        };
        let digest = hex(&Sha256::digest(presented.as_bytes()));
        let matches: bool = digest.as_bytes().ct_eq(stored.hash.as_bytes()).into();
        if !matches || stored.token.revoked_at.is_some() {
            return Ok(None);
        }
        // An organization's token ends with its organization.
        self.live_admin_token(&id)
    }
}
