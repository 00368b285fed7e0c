//! The issuer's ed25519 signing key: made from the OS random source at init,
//! kept in `issuer.key` in the data directory or in a file of the operator's
//! choice outside it, readable by its owner only.
//!
//! File format: the line `keygate-issuer-ed25519-v1`, then the 32-byte seed
//! in lowercase hex on the second line. The private key never leaves this
//! process and never enters the WebAssembly module; nothing prints it. The
//! trusted public key is always derived from it, never read from the store.
//! The key that authenticates the compile cache is derived from it too
//! ([`IssuerSecret::cache_key`]).

use std::io::Write;
use std::path::Path;

use ed25519_dalek::{Signer, SigningKey};

use crate::cache::CacheKey;
use crate::error::{Error, Result};
use crate::runtime::Module;
use crate::runtime::bindings::{IssuerKey, SignedRecord};

/// File name of the issuer key inside the data directory.
pub const FILE: &str = "issuer.key";
const HEADER: &str = "keygate-issuer-ed25519-v1";

/// The loaded issuer key. `Debug` shows only the public parts.
pub struct Issuer {
    signing: SigningKey,
    public: [u8; 32],
    id: String,
    audit_key: [u8; 32],
    change_key: [u8; 32],
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The issuer seed, read from its file but not yet checked by the component.
/// `Debug` shows nothing.
pub struct IssuerSecret {
    signing: SigningKey,
    cache_key: CacheKey,
    audit_key: [u8; 32],
    change_key: [u8; 32],
}

/// The HKDF label of the audit chain's key: changing it breaks every chain.
const AUDIT_LABEL: &[u8] = b"keygate audit chain hmac-sha256 v1";
/// The HKDF label of the change index's key (see [`Issuer::change_tag`]).
const CHANGE_LABEL: &[u8] = b"keygate change index hmac-sha256 v1";

impl std::fmt::Debug for IssuerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IssuerSecret(<redacted>)")
    }
}

impl IssuerSecret {
    /// A new key from the OS random source, in memory only.
    pub fn random() -> Result<IssuerSecret> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| Error::System(format!("the OS random source failed: {e}")))?;
        Ok(Self::from_seed(seed))
    }

    /// Write this key to `path` (which must not exist, not even as a link),
    /// mode 0600; the file and its directory are synced before this returns,
    /// so a crash cannot leave a store whose records were signed by a key
    /// that is not on disk.
    pub fn write_new(&self, path: &Path) -> Result<()> {
        let mut seed = self.signing.to_bytes();
        let text = format!("{HEADER}\n{}\n", hex(&seed));
        seed.fill(0);
        let cannot = |e: std::io::Error| {
            Error::Issuer(format!(
                "cannot write the issuer key `{}`: {e}",
                path.display()
            ))
        };
        let mut file = crate::fsutil::create_new(path, 0o600).map_err(cannot)?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(cannot)?;
        if let Some(parent) = path.parent() {
            sync_dir(parent).map_err(cannot)?;
        }
        Ok(())
    }

    /// Load the key at `path`, refusing a file that others can read or write.
    pub fn load(path: &Path) -> Result<IssuerSecret> {
        let meta = std::fs::metadata(path).map_err(|e| {
            Error::Issuer(format!(
                "cannot read the issuer key `{}`: {e}",
                path.display()
            ))
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(Error::Issuer(format!(
                    "the issuer key `{}` is accessible to other users (mode {mode:o}); run `chmod 600 {}`",
                    path.display(),
                    path.display()
                )));
            }
        }
        let _ = meta;
        // A regular file (a symlink to one is fine: secrets are often
        // mounted that way), never a FIFO or device, and small.
        let bytes = crate::fsutil::read_bounded(path, 4096, true).map_err(|e| {
            Error::Issuer(format!(
                "cannot read the issuer key `{}`: {e}",
                path.display()
            ))
        })?;
        let text = String::from_utf8_lossy(&bytes);
        let mut lines = text.lines();
        let seed = match (lines.next(), lines.next().and_then(unhex32), lines.next()) {
            (Some(HEADER), Some(seed), None) => seed,
            _ => {
                return Err(Error::Issuer(format!(
                    "the issuer key `{}` is damaged (not a keygate ed25519 issuer key)",
                    path.display()
                )));
            }
        };
        Ok(Self::from_seed(seed))
    }

    fn from_seed(mut seed: [u8; 32]) -> IssuerSecret {
        let signing = SigningKey::from_bytes(&seed);
        let cache_key = CacheKey::derive(&seed);
        let mut audit_key = [0u8; 32];
        // 32 bytes is far below HKDF-SHA-256's limit of 255 * 32.
        let _ = hkdf::Hkdf::<sha2::Sha256>::new(None, &seed).expand(AUDIT_LABEL, &mut audit_key);
        let mut change_key = [0u8; 32];
        let _ = hkdf::Hkdf::<sha2::Sha256>::new(None, &seed).expand(CHANGE_LABEL, &mut change_key);
        seed.fill(0);
        IssuerSecret {
            signing,
            cache_key,
            audit_key,
            change_key,
        }
    }

    /// The key that authenticates compiled-code cache files.
    pub fn cache_key(&self) -> &CacheKey {
        &self.cache_key
    }
}

/// fsync a directory, so that a file created or renamed in it survives a crash.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

impl Issuer {
    /// The usable issuer: its public key checked, and its id computed, by the
    /// component.
    pub fn new(secret: IssuerSecret, module: &mut Module) -> Result<Issuer> {
        let public = secret.signing.verifying_key().to_bytes();
        let id = module
            .issuer_key_id(&public)?
            .map_err(|e| Error::Issuer(format!("the issuer key is unusable: {e:?}")))?;
        Ok(Issuer {
            signing: secret.signing,
            public,
            id,
            audit_key: secret.audit_key,
            change_key: secret.change_key,
        })
    }

    /// The issuer key id (16 hex characters).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.public
    }

    /// The public key as validators take it.
    pub fn trusted(&self) -> IssuerKey {
        IssuerKey {
            id: self.id.clone(),
            public_key: self.public.to_vec(),
        }
    }

    /// The tag of a change-index entry: HMAC-SHA-256 over the fact's kind,
    /// id, the sequence of its change, and the stored value it changed to.
    /// A delta includes a fact unless its entry's tag verifies for the value
    /// stored now, so nobody without the secret can hide a change from a
    /// delta by lowering its sequence (putting a fact and its entry back
    /// together is the rollback of one fact, as for the fact alone).
    pub fn change_tag(&self, kind: u8, id: &str, sequence: u64, value: &[u8]) -> [u8; 32] {
        use hmac::{KeyInit, Mac};
        let Ok(mut mac) = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&self.change_key)
        else {
            return [0; 32];
        };
        mac.update(&[kind]);
        mac.update(&(id.len() as u64).to_be_bytes());
        mac.update(id.as_bytes());
        mac.update(&sequence.to_be_bytes());
        mac.update(&(value.len() as u64).to_be_bytes());
        mac.update(value);
        mac.finalize().into_bytes().into()
    }

    /// The audit chain's link after `prev` for an event's bytes.
    pub fn audit_link(&self, prev: &str, event: &[u8]) -> String {
        use hmac::{KeyInit, Mac};
        // HMAC takes keys of any length: this cannot fail.
        let Ok(mut mac) = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&self.audit_key)
        else {
            return String::new();
        };
        mac.update(prev.as_bytes());
        mac.update(b"\n");
        mac.update(event);
        hex(&mac.finalize().into_bytes())
    }

    /// Sign canonical record bytes.
    pub fn sign(&self, canonical: Vec<u8>) -> SignedRecord {
        let signature = self.signing.sign(&canonical).to_bytes().to_vec();
        SignedRecord {
            canonical,
            signature,
            issuer_key_id: self.id.clone(),
        }
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
