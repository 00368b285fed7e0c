//! The on-disk schema: every tree, every key encoding and every value
//! encoding of the sled store. Nothing else in keygate formats store keys.
//!
//! | tree           | key                          | value |
//! |----------------|------------------------------|-------|
//! | `meta`         | a name below                 | raw: `magic` = `keygate-store`, `schema` = u32 BE, `prefix` and `issuer` UTF-8, `sequence` = u64 BE, `created` = u64 BE |
//! | `keys`         | key id (11 base62 bytes)     | [`VALUE_FORMAT`] then a signed key record, see [`encode_signed`] |
//! | `deleted_keys` | key id                       | [`VALUE_FORMAT`] then a signed key tombstone |
//! | `projects`     | project id (`prj_` + 11 base62) | [`VALUE_FORMAT`] then a signed project registration |
//! | `organizations` | organization slug           | [`VALUE_FORMAT`] then a signed organization (with its key policy) |
//! | `audit`        | sequence number, u64 BE      | [`VALUE_FORMAT`] then JSON [`AuditEvent`] |
//! | `changes`      | a [`change_key`]: kind byte then id | u64 BE, the sequence of the fact's last change (for deltas) |
//! | `last_used`    | key id                       | u64 BE: when the key last allowed a request (display only, unsigned) |
//! | `keys_by_org`  | an [`org_key`]: slug, 0, key id | empty: the organization's listing (a key not here is not live, see below) |
//! | `admin_tokens` | admin token id (11 base62)   | [`VALUE_FORMAT`] then a signed admin token record (see `admin::tokens`) |
//!
//! Everything a decision depends on (key records, tombstones, registrations,
//! organizations)
//! is signed by the issuer and checked by the component; the tree key is only
//! an index (a value stored under the wrong key is caught because the signed
//! bytes name their own id). `sequence` counts admin writes; every committed
//! change takes the next number, so an export can say how recent it is.
//!
//! `keys_by_org` lists each live key under the organization its record
//! names, written in the same transaction as the record. It is unsigned and
//! needs no signature: a key counts as live only when its organization's
//! listing holds it (`verify`, snapshots and the service's validators treat
//! a record missing from it as no record), so removing an entry can only
//! deny a key, never hide a working one from its organization's listing;
//! an entry added under another organization names a record that says
//! otherwise and is not listed.

use serde::{Deserialize, Serialize};

use crate::runtime::bindings::SignedRecord;

/// Store schema version; a store with another one is refused. Version 2:
/// signed project registrations and key tombstones. Version 3: signed
/// organizations with their key policy. Version 4: each organization's
/// listing of its keys (`keys_by_org`).
pub const SCHEMA_VERSION: u32 = 4;
/// First byte of every value in the record trees.
pub const VALUE_FORMAT: u8 = 1;

/// Tree names.
pub mod tree {
    /// Store metadata.
    pub const META: &str = "meta";
    /// Live key records, signed.
    pub const KEYS: &str = "keys";
    /// Signed tombstones of deleted keys (ids are never reused).
    pub const DELETED_KEYS: &str = "deleted_keys";
    /// Signed project registrations, including deleted ones (ids are never reused).
    pub const PROJECTS: &str = "projects";
    /// Signed organizations, including deleted ones (slugs are never reused).
    pub const ORGANIZATIONS: &str = "organizations";
    /// Audit events.
    pub const AUDIT: &str = "audit";
    /// The sequence of each fact's last change, for snapshot deltas.
    pub const CHANGES: &str = "changes";
    /// Admin tokens of `keygate serve`: records signed by the issuer, each
    /// holding a token's SHA-256, never the token.
    pub const ADMIN_TOKENS: &str = "admin_tokens";
    /// When each key last allowed a request (u64 BE seconds): shown to
    /// people, never used in a decision, so not signed.
    pub const LAST_USED: &str = "last_used";
    /// Each organization's live keys: [`super::org_key`] → empty.
    pub const KEYS_BY_ORG: &str = "keys_by_org";
}

/// The `keys_by_org` key of a key of an organization: the slug, a zero
/// byte (never in a slug), the key id. An organization's keys are the
/// range under `slug` and the zero byte.
pub fn org_key(slug: &str, id: &str) -> Vec<u8> {
    let mut k = org_prefix(slug);
    k.extend_from_slice(id.as_bytes());
    k
}

/// The prefix of an organization's range in `keys_by_org`.
pub fn org_prefix(slug: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(slug.len() + 12);
    k.extend_from_slice(slug.as_bytes());
    k.push(0);
    k
}

/// Keys of the `meta` tree.
pub mod meta {
    /// Marks a keygate store.
    pub const MAGIC: &[u8] = b"magic";
    /// Value of [`MAGIC`].
    pub const MAGIC_VALUE: &[u8] = b"keygate-store";
    /// Schema version (u32 BE).
    pub const SCHEMA: &[u8] = b"schema";
    /// Deployment key prefix.
    pub const PREFIX: &[u8] = b"prefix";
    /// Issuer key id.
    pub const ISSUER: &[u8] = b"issuer";
    /// Admin write sequence (u64 BE).
    pub const SEQUENCE: &[u8] = b"sequence";
    /// Store creation time (u64 BE seconds).
    pub const CREATED: &[u8] = b"created";
}

/// One admin action, as kept in the audit tree. Never holds a secret or hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Sequence number (the tree key).
    pub sequence: u64,
    /// When.
    pub at: u64,
    /// What: `init`, `project.create`, `key.rotate`, ...
    pub action: String,
    /// Organization concerned, if any.
    pub organization: Option<String>,
    /// The key or project id acted on.
    pub subject: String,
    /// Extra detail (a successor id, a count...).
    pub detail: Option<String>,
    /// Who: the OS user for the CLI, the admin token for the service.
    /// Events written before actors were kept have none.
    #[serde(default)]
    pub actor: Option<String>,
    /// HMAC-SHA-256 (hex) over the previous event's `chain` and this event
    /// with `chain` empty, under a key derived from the issuer secret: an
    /// edited or removed event breaks every link after it, and nobody
    /// without the secret can forge the links again. Events written before
    /// the chain existed have none.
    #[serde(default)]
    pub chain: Option<String>,
}

/// Kinds of facts in the `changes` tree.
pub mod change {
    /// A key record.
    pub const KEY: u8 = 1;
    /// A project registration.
    pub const PROJECT: u8 = 2;
    /// A key tombstone.
    pub const TOMBSTONE: u8 = 3;
    /// An organization.
    pub const ORGANIZATION: u8 = 4;
}

/// Key of the `changes` tree: the kind byte, then the id.
pub fn change_key(kind: u8, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + id.len());
    k.push(kind);
    k.extend_from_slice(id.as_bytes());
    k
}

/// A u64 as a tree key or meta value.
pub fn u64_key(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

/// Read a u64 written by [`u64_key`].
pub fn read_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// Whether bytes are a well-formed key id (tree key of `keys`, `deleted_keys`).
pub fn is_key_id(bytes: &[u8]) -> bool {
    bytes.len() == 11 && bytes.iter().all(u8::is_ascii_alphanumeric)
}

/// Whether bytes are a well-formed project id (tree key of `projects`).
pub fn is_project_id(bytes: &[u8]) -> bool {
    bytes.len() == 15
        && bytes.starts_with(b"prj_")
        && bytes[4..].iter().all(u8::is_ascii_alphanumeric)
}

/// Whether bytes are a well-formed organization slug (tree key of
/// `organizations`).
pub fn is_org_slug(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok_and(|s| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    })
}

/// Why a signed value cannot be encoded: a field does not fit its length
/// prefix. Never cut, always refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {0} does not fit the stored format")]
pub struct TooLong(pub &'static str);

/// Value of the `keys`, `deleted_keys` and `projects` trees: format byte,
/// `u32` BE length and canonical bytes, `u8` length and signature, `u8`
/// length and issuer key id. A field too long for its length prefix is
/// refused, never cut.
pub fn encode_signed(s: &SignedRecord) -> Result<Vec<u8>, TooLong> {
    let canonical_len =
        u32::try_from(s.canonical.len()).map_err(|_| TooLong("canonical record"))?;
    let sig_len = u8::try_from(s.signature.len()).map_err(|_| TooLong("signature"))?;
    let id_len = u8::try_from(s.issuer_key_id.len()).map_err(|_| TooLong("issuer key id"))?;
    let mut out = Vec::with_capacity(1 + 4 + s.canonical.len() + 1 + 64 + 1 + 16);
    out.push(VALUE_FORMAT);
    out.extend_from_slice(&canonical_len.to_be_bytes());
    out.extend_from_slice(&s.canonical);
    out.push(sig_len);
    out.extend_from_slice(&s.signature);
    out.push(id_len);
    out.extend_from_slice(s.issuer_key_id.as_bytes());
    Ok(out)
}

/// Decode a signed value; `None` when damaged.
pub fn decode_signed(bytes: &[u8]) -> Option<SignedRecord> {
    let (&format, rest) = bytes.split_first()?;
    if format != VALUE_FORMAT {
        return None;
    }
    let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let rest = rest.get(4..)?;
    let canonical = rest.get(..len)?.to_vec();
    let rest = rest.get(len..)?;
    let (&sig_len, rest) = rest.split_first()?;
    let signature = rest.get(..usize::from(sig_len))?.to_vec();
    let rest = rest.get(usize::from(sig_len)..)?;
    let (&id_len, rest) = rest.split_first()?;
    if rest.len() != usize::from(id_len) {
        return None;
    }
    let issuer_key_id = String::from_utf8(rest.to_vec()).ok()?;
    Some(SignedRecord {
        canonical,
        signature,
        issuer_key_id,
    })
}

/// Encode a JSON value with the format byte.
pub fn encode_json<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = vec![VALUE_FORMAT];
    // Serializing these plain structs to a Vec cannot fail.
    serde_json::to_writer(&mut out, v).unwrap_or_default();
    out
}

/// Decode a JSON value with the format byte; `None` when damaged.
pub fn decode_json<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Option<T> {
    match bytes.split_first() {
        Some((&VALUE_FORMAT, json)) => serde_json::from_slice(json).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_values_round_trip_and_reject_damage() {
        let s = SignedRecord {
            canonical: b"KGR\x01abc".to_vec(),
            signature: vec![7; 64],
            issuer_key_id: "0123456789abcdef".into(),
        };
        let v = encode_signed(&s).unwrap();
        assert_eq!(decode_signed(&v), Some(s.clone()));
        for cut in 0..v.len() {
            assert_eq!(decode_signed(&v[..cut]), None);
        }
        let mut extra = v.clone();
        extra.push(0);
        assert_eq!(decode_signed(&extra), None);
        let mut wrong = v;
        wrong[0] = 2;
        assert_eq!(decode_signed(&wrong), None);
    }

    #[test]
    fn fields_that_do_not_fit_are_refused_not_cut() {
        let ok = SignedRecord {
            canonical: vec![1; 10],
            signature: vec![7; 255],
            issuer_key_id: "a".repeat(255),
        };
        assert!(encode_signed(&ok).is_ok());
        let long_sig = SignedRecord {
            signature: vec![7; 256],
            ..ok.clone()
        };
        assert_eq!(encode_signed(&long_sig), Err(TooLong("signature")));
        let long_id = SignedRecord {
            issuer_key_id: "a".repeat(256),
            ..ok
        };
        assert_eq!(encode_signed(&long_id), Err(TooLong("issuer key id")));
    }

    #[test]
    fn ids_are_shape_checked() {
        assert!(is_key_id(b"EcH3aVaFu27"));
        assert!(!is_key_id(b"EcH3aVaFu2"));
        assert!(!is_key_id(b"EcH3aVaFu2_"));
        assert!(is_project_id(b"prj_EcH3aVaFu27"));
        assert!(!is_project_id(b"prx_EcH3aVaFu27"));
    }
}
