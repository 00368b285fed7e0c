//! An authenticated file cache of the compiled component.
//!
//! Loading compiled code means running native code from disk, so a cache file
//! is used only if it carries a MAC under a key that only the holder of the
//! issuer secret can compute ([`CacheKey`], derived with HKDF-SHA-256 from the
//! issuer seed). Anyone who can write the cache folder but cannot read the
//! issuer secret can only make keygate recompile; a file they wrote (another
//! store's cache, a recomputed hash, a cut or flipped file) fails the MAC, is
//! recompiled and overwritten, and the caller is told why.
//!
//! File layout: the 8 bytes `KGCWASM2`, the SHA-256 of the component bytes it
//! was compiled from (32), HMAC-SHA-256 under the cache key of everything
//! else in the file (magic, source hash, payload) (32), then the payload
//! (wasmtime's serialized component).

use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use wasmtime::Engine;
use wasmtime::component::Component;

const MAGIC: &[u8; 8] = b"KGCWASM2";
const HEADER: usize = 8 + 32 + 32;
/// The HKDF label of the cache key: changing it orphans every cache file.
const LABEL: &[u8] = b"keygate compile-cache hmac-sha256 v1";

/// The key that authenticates cache files. Its `Debug` shows nothing.
#[derive(Clone)]
pub struct CacheKey([u8; 32]);

impl std::fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheKey(<redacted>)")
    }
}

impl CacheKey {
    /// Derive the cache key from a secret (the issuer seed) with HKDF-SHA-256
    /// and a fixed label, so it reveals nothing about the secret.
    pub fn derive(secret: &[u8; 32]) -> CacheKey {
        let hk = hkdf::Hkdf::<Sha256>::new(None, secret);
        let mut okm = [0u8; 32];
        // 32 bytes is far below HKDF-SHA-256's limit of 255 * 32.
        let _ = hk.expand(LABEL, &mut okm);
        CacheKey(okm)
    }

    fn mac(&self, source: &[u8; 32], payload: &[u8]) -> Hmac<Sha256> {
        // HMAC takes keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable_hmac());
        mac.update(MAGIC);
        mac.update(source);
        mac.update(payload);
        mac
    }
}

#[allow(clippy::panic)]
fn unreachable_hmac() -> Hmac<Sha256> {
    // new_from_slice only fails for fixed-size-key MACs; HMAC has none.
    panic!("HMAC refused a 32-byte key")
}

/// What happened to the cache file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheOutcome {
    /// A valid file was loaded.
    Hit,
    /// No file: compiled and written (or it could not be written: `false`).
    Compiled {
        /// Whether the new file was written.
        written: bool,
    },
    /// A file was there but not trusted; compiled and overwritten.
    Rejected {
        /// Why the file was not used.
        why: &'static str,
        /// Whether the replacement was written.
        written: bool,
    },
}

/// Load the compiled form of `wasm` (whose SHA-256 is `source`) from `path`
/// if its MAC verifies under `key`, or compile it and store it there.
pub fn load_or_compile(
    engine: &Engine,
    wasm: &[u8],
    source: &[u8; 32],
    path: &Path,
    key: &CacheKey,
) -> wasmtime::Result<(Component, CacheOutcome)> {
    let rejected = match load(engine, source, path, key) {
        Loaded::Hit(c) => return Ok((c, CacheOutcome::Hit)),
        Loaded::Missing => None,
        Loaded::Rejected(why) => Some(why),
    };
    let component = Component::new(engine, wasm)?;
    let payload = component.serialize()?;
    let mut file = Vec::with_capacity(HEADER + payload.len());
    file.extend_from_slice(MAGIC);
    file.extend_from_slice(source);
    file.extend_from_slice(&key.mac(source, &payload).finalize().into_bytes());
    file.extend_from_slice(&payload);
    let written = write_atomically(path, &file);
    let outcome = match rejected {
        None => CacheOutcome::Compiled { written },
        Some(why) => CacheOutcome::Rejected { why, written },
    };
    Ok((component, outcome))
}

/// Write then rename, so a reader never sees half a file. The temporary
/// file gets an unpredictable name and is created with `O_EXCL|O_NOFOLLOW`,
/// so a symlink planted in the cache folder is never written through.
fn write_atomically(path: &Path, bytes: &[u8]) -> bool {
    use std::io::Write;
    let mut nonce = [0u8; 8];
    if getrandom::fill(&mut nonce).is_err() {
        return false;
    }
    let tmp = path.with_extension(format!("tmp{:016x}", u64::from_le_bytes(nonce)));
    let Ok(mut file) = crate::fsutil::create_new(&tmp, 0o600) else {
        return false;
    };
    if file
        .write_all(bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .is_ok()
    {
        true
    } else {
        let _ = std::fs::remove_file(&tmp);
        false
    }
}

/// Largest cache file read: far above the ~0.6 MB compiled component.
const MAX_FILE: u64 = 64 << 20;

enum Loaded {
    Hit(Component),
    Missing,
    Rejected(&'static str),
}

fn load(engine: &Engine, source: &[u8; 32], path: &Path, key: &CacheKey) -> Loaded {
    // Not through a symlink, not from a FIFO or device, not unbounded.
    let file = match crate::fsutil::read_bounded(path, MAX_FILE, false) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Loaded::Missing,
        Err(_) => return Loaded::Rejected("it is not a readable regular file"),
    };
    if file.len() < HEADER || &file[..8] != MAGIC {
        return Loaded::Rejected("it is not a keygate cache file");
    }
    if &file[8..40] != source {
        return Loaded::Rejected("it was compiled from other component bytes");
    }
    let payload = &file[HEADER..];
    // `verify_slice` compares in constant time.
    if key
        .mac(source, payload)
        .verify_slice(&file[40..72])
        .is_err()
    {
        return Loaded::Rejected(
            "its authentication code does not verify (it was not written by this store's keygate)",
        );
    }
    match deserialize(engine, payload) {
        Some(c) => Loaded::Hit(c),
        None => Loaded::Rejected("wasmtime refused it (another version or configuration)"),
    }
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, payload: &[u8]) -> Option<Component> {
    // SAFETY: `Component::deserialize` requires bytes produced by
    // `Component::serialize` of a trusted component. These are: the payload
    // carries an HMAC-SHA-256, verified above in constant time, under a key
    // derived from the issuer secret, which the attacker of the threat model
    // (write access to the data directory, no read access to the secret)
    // cannot compute; only `load_or_compile` computes it, over the payload it
    // serialized from the embedded component (whose SHA-256 is also covered).
    // A forged file would need a MAC forgery or the secret. wasmtime itself
    // checks the version and configuration the payload was built for and
    // errors (not UB) on a mismatch.
    unsafe { Component::deserialize(engine, payload) }.ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::COMPONENT;
    use sha2::Digest;

    fn source() -> [u8; 32] {
        Sha256::digest(COMPONENT).into()
    }

    #[test]
    fn only_files_with_this_key_s_mac_are_loaded() {
        let engine = Engine::default();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.cwasm");
        let key = CacheKey::derive(&[7; 32]);
        let (_, first) = load_or_compile(&engine, COMPONENT, &source(), &path, &key).unwrap();
        assert_eq!(first, CacheOutcome::Compiled { written: true });
        let good = std::fs::read(&path).unwrap();
        assert_eq!(&good[..8], MAGIC);
        let (_, again) = load_or_compile(&engine, COMPONENT, &source(), &path, &key).unwrap();
        assert_eq!(again, CacheOutcome::Hit);

        // Another store's file (another secret) under the same name.
        let other = CacheKey::derive(&[8; 32]);
        let foreign_dir = tempfile::tempdir().unwrap();
        let foreign_path = foreign_dir.path().join("c.cwasm");
        load_or_compile(&engine, COMPONENT, &source(), &foreign_path, &other).unwrap();
        let foreign = std::fs::read(&foreign_path).unwrap();
        assert_ne!(foreign, good);

        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        let mut mac_flipped = good.clone();
        mac_flipped[50] ^= 1;
        let damaged: [(Vec<u8>, &str); 6] = [
            (foreign, "authentication code"),
            (flipped, "authentication code"),
            (mac_flipped, "authentication code"),
            (good[..good.len() / 2].to_vec(), "authentication code"),
            (b"garbage".to_vec(), "not a keygate cache file"),
            (
                [&good[..8], &[0u8; 32][..], &good[40..]].concat(),
                "other component bytes",
            ),
        ];
        for (bad, why) in damaged {
            std::fs::write(&path, &bad).unwrap();
            let (_, outcome) = load_or_compile(&engine, COMPONENT, &source(), &path, &key).unwrap();
            match outcome {
                CacheOutcome::Rejected { why: got, written } => {
                    assert!(got.contains(why), "{got}");
                    assert!(written);
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(
                std::fs::read(&path).unwrap(),
                good,
                "the cache file was not rewritten"
            );
        }
        // A file this key authenticates but wasmtime refuses (compiled for
        // another engine configuration) is recompiled, not trusted.
        let mut cfg = wasmtime::Config::new();
        cfg.memory_reservation(1 << 24).memory_guard_size(1 << 16);
        let other_engine = Engine::new(&cfg).unwrap();
        let (_, outcome) =
            load_or_compile(&other_engine, COMPONENT, &source(), &path, &key).unwrap();
        assert!(matches!(outcome, CacheOutcome::Rejected { why, .. } if why.contains("wasmtime")));
        let (_, outcome) =
            load_or_compile(&other_engine, COMPONENT, &source(), &path, &key).unwrap();
        assert_eq!(outcome, CacheOutcome::Hit);
    }

    #[test]
    fn the_cache_key_is_derived_and_never_printed() {
        let a = CacheKey::derive(&[1; 32]);
        assert_ne!(a.0, CacheKey::derive(&[2; 32]).0);
        assert_ne!(a.0, [1; 32]);
        assert_eq!(a.0, CacheKey::derive(&[1; 32]).0);
        assert_eq!(format!("{a:?}"), "CacheKey(<redacted>)");
    }
}
